"""A damaged record in the hot tier never wedges the pair: hot is derived from history.

Real LMDB hot and RocksDB cold stores; the damage is made as a disk would make it: one
digit of one hot record changed in a copy of ``data.mdb`` (its checksum then fails).

Projection mode: the damaged tenant is stopped (its records parked, the CorruptionError
as the reason), every other tenant goes on, the pair reopens, and ``rebuild(tenant)`` or
``rebuild()`` re-derive the tenant from history without reading the damaged value.
Cache mode: a damaged cache record is read from cold (and repaired in hot), and
``rebuild()`` overwrites it.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import CorruptionError
from aurora_storage.tiered import (
    HistoryRecord,
    ProjectionState,
    TenantStoppedError,
    TieredRepository,
)

BIG = 123456789
SUM = 5 * BIG  # 617283945: the damaged tenant's projected sum, as digits in data.mdb


def total(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("sum", state.get("sum", 0) + record.value["v"])


def _open(d: Path, *, projection: bool = True, **options: Any) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open(f"lmdb://{d}/hot"),
        cold=aurora_storage.open(f"rocksdb://{d}/cold"),
        projection=total if projection else None,
        **options,
    )


def _damaged_copies(base: Path, digits: bytes, tmp: Path) -> Iterator[Path]:
    """Copies of the pair at ``base`` with one digit of one copy of ``digits`` in hot's
    data file changed (the checksum stays the old one): one copy per place it occurs
    (a freed page may hold a stale copy; the caller keeps the copy whose live record
    fails)."""
    data = (base / "hot" / "data.mdb").read_bytes()
    for n, m in enumerate(re.finditer(re.escape(digits), data)):
        d = tmp / f"copy{n}"
        shutil.copytree(base, d)
        with open(d / "hot" / "data.mdb", "r+b") as f:
            f.seek(m.start())
            f.write(b"7" if digits[:1] != b"7" else b"8")
        yield d


def _projection_pair(tmp: Path, fillers: int) -> Path:
    base = tmp / "base"
    with _open(base) as r:
        for t in range(fillers):
            r.put(f"b{t:03}", (0,), {"v": 1})
        for i in range(1, 6):
            r.put("zacme", (i,), {"v": BIG})
    return base


def _damage(tmp: Path, base: Path, digits: bytes, read: Callable[[Path], Any]) -> Path:
    """The first damaged copy in which ``read(copy)`` raises CorruptionError."""
    for d in _damaged_copies(base, digits, tmp):
        try:
            read(d)
        except CorruptionError:
            return d
    raise AssertionError("no copy of the record was the live one")  # pragma: no cover


def _raw_get(d: Path, tenant: str, key: Any) -> Any:
    with aurora_storage.open(f"lmdb://{d}/hot") as hot:
        return hot.get(tenant, key)


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 400 filler tenants keep the damaged tenant's page away from the pair's records.
    return _projection_pair(tmp_path_factory.mktemp("big"), 400)


@pytest.mark.parametrize("policy", ["stop", "park"])
def test_a_damaged_projection_record_stops_only_its_tenant(
    big_pair: Path, tmp_path: Path, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = _damage(tmp_path, big_pair, str(SUM).encode(), lambda d: _raw_get(d, "zacme", "sum"))
    with _open(d, on_poison=policy) as r:
        with pytest.raises(CorruptionError, match=r"rebuild\('zacme'\)") as info:
            r.get("zacme", "sum")
        assert "Restore it from a backup" not in str(info.value)
        assert isinstance(info.value.__cause__, CorruptionError)
        # A new event of the damaged tenant is durable in history; its tenant stops.
        with (
            caplog.at_level(logging.ERROR, logger="aurora_storage.tiered"),
            pytest.raises(TenantStoppedError, match=r"rebuild\('zacme'\)") as stopped,
        ):
            r.put("zacme", (6,), {"v": 1})
        assert stopped.value.durable
        assert "zacme" in caplog.text
        assert r.history.get("zacme", (6,)) == {"v": 1}
        assert r.stats()["stopped_tenants"] == 1
        [parked] = r.parked("zacme")
        assert (parked.key, parked.reason) == ((6,), "damaged")
        assert "CorruptionError" in parked.cause
        assert "rebuild('zacme')" in parked.cause
        # Later events of the tenant wait behind it; every other tenant goes on.
        with pytest.raises(TenantStoppedError, match=r"rebuild\('zacme'\)"):
            r.put("zacme", (7,), {"v": 1})
        r.put("b001", (1,), {"v": 1})
        r.put("b002", (1,), {"v": 1})
        assert r.catch_up() == 0
        assert r.lag == 0
        assert r.get("b001", "sum") == 2
        assert r.get("b002", "sum") == 2
    # The pair reopens and serves the other tenants.
    with _open(d, on_poison=policy) as r:
        assert r.get("b001", "sum") == 2
        with pytest.raises(CorruptionError, match=r"rebuild\('zacme'\)"):
            r.get("zacme", "sum")
        # rebuild(tenant) re-derives the tenant from history, replacing the damaged
        # record without reading it, and releases its stop.
        assert r.rebuild("zacme") == 7
        assert r.get("zacme", "sum") == SUM + 2
        assert r.parked() == []
        assert r.stats()["stopped_tenants"] == 0
        r.put("zacme", (8,), {"v": 1})
        assert r.get("zacme", "sum") == SUM + 3
        assert r.lag == 0
    with _open(d) as r:
        assert r.get("zacme", "sum") == SUM + 3


def test_a_pair_with_an_event_of_a_damaged_tenant_in_history_reopens(
    big_pair: Path, tmp_path: Path
) -> None:
    d = _damage(tmp_path, big_pair, str(SUM).encode(), lambda d: _raw_get(d, "zacme", "sum"))
    with _open(d) as r, pytest.raises(TenantStoppedError):
        r.put("zacme", (6,), {"v": 1})
    # Reopen: nothing is wedged; the stop and the parked record are kept.
    with _open(d) as r:
        assert r.lag == 0
        r.put("b003", (1,), {"v": 1})
        assert r.get("b003", "sum") == 2
        assert [p.reason for p in r.parked()] == ["damaged"]
        # retry_parked() cannot apply it over the damaged projection: it stays parked.
        assert r.retry_parked() == 0
        assert [p.reason for p in r.parked()] == ["damaged"]
        assert r.stats()["stopped_tenants"] == 1


def test_rebuild_all_replaces_a_damaged_projection_record(big_pair: Path, tmp_path: Path) -> None:
    d = _damage(tmp_path, big_pair, str(SUM).encode(), lambda d: _raw_get(d, "zacme", "sum"))
    with _open(d) as r:
        r.rebuild()
        assert r.get("zacme", "sum") == SUM
        assert r.get("b123", "sum") == 1
    with aurora_storage.open(f"lmdb://{d}/hot") as hot:
        assert hot.verify().ok


def test_a_damaged_record_beside_the_pairs_own_records_does_not_fail_the_open(
    tmp_path: Path,
) -> None:
    # A small store: the damaged record shares its LMDB page with the pair's records, and
    # the lookups of the pair's absent records (the rebuild marker) land beside it.
    base = _projection_pair(tmp_path, 0)
    d = _damage(tmp_path, base, str(SUM).encode(), lambda d: _raw_get(d, "zacme", "sum"))
    # The engine cannot rule out that the damaged record is the marker's own (its key
    # and value both damaged), so the lookup raises; the pair reads it absent.
    with (
        aurora_storage.open(f"lmdb://{d}/hot") as hot,
        pytest.raises(CorruptionError, match="may be that one"),
    ):
        hot.backend.get(b"\x00tiered:rebuild")
    with _open(d) as r:
        with pytest.raises(CorruptionError, match=r"rebuild\('zacme'\)"):
            r.get("zacme", "sum")
        r.put("other", (1,), {"v": 2})
        assert r.get("other", "sum") == 2
        r.rebuild("zacme")
        assert r.get("zacme", "sum") == SUM
        assert r.lag == 0


@pytest.fixture(scope="module")
def cache_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cache") / "base"
    with _open(base, projection=False) as r:
        for t in range(300):
            r.put(f"b{t:03}", "k", {"v": 1})
        r.put("zacme", "k", {"v": BIG})
    return base


def test_a_damaged_cache_record_is_read_from_cold_and_repaired(
    cache_pair: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = _damage(tmp_path, cache_pair, str(BIG).encode(), lambda d: _raw_get(d, "zacme", "k"))
    with _open(d, projection=False) as r:
        with caplog.at_level(logging.WARNING, logger="aurora_storage.tiered"):
            assert r.get("zacme", "k") == {"v": BIG}
        assert "fails its integrity check" in caplog.text
        assert r.get_many("zacme", ["k", "nope"]) == [{"v": BIG}, None]
        # Repaired in hot: hot itself reads it again.
        assert r.hot.get("zacme", "k") == {"v": BIG}


def test_a_damaged_cache_record_in_get_many_is_read_from_cold(
    cache_pair: Path, tmp_path: Path
) -> None:
    d = _damage(tmp_path, cache_pair, str(BIG).encode(), lambda d: _raw_get(d, "zacme", "k"))
    with _open(d, projection=False) as r:
        assert r.get_many("zacme", ["k"]) == [{"v": BIG}]
        assert r.hot.get("zacme", "k") == {"v": BIG}


def test_cache_rebuild_overwrites_a_damaged_cache_record(cache_pair: Path, tmp_path: Path) -> None:
    d = _damage(tmp_path, cache_pair, str(BIG).encode(), lambda d: _raw_get(d, "zacme", "k"))
    with _open(d, projection=False) as r:
        r.rebuild()
        assert r.hot.get("zacme", "k") == {"v": BIG}
        assert r.get("b007", "k") == {"v": 1}
    with aurora_storage.open(f"lmdb://{d}/hot") as hot:
        assert hot.verify().ok
