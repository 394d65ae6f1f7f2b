"""A read-only open of a projection-mode pair needs no projection (break-tiered4 F4).

A read-only pair writes nothing: it never catches up, projects or rebuilds, so nothing
can be lost without its projection. Before, such an open was refused ("created in
projection mode: open it with its projection ... without it the projection would be
lost"), so a reader (the command line's ``info``/``verify``/``export``, or any
read-only process) could not open a pair whose projection is a plain function. A
writable open still needs it. Real engines: LMDB hot, RocksDB cold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import aurora_storage
from aurora_storage._ordering import scan_in_order
from aurora_storage.errors import ConfigurationError, ReadOnlyError
from aurora_storage.tiered import TieredRepository


def _count(record: Any, state: Any) -> None:
    state.put(record.value["order"], state.get(record.value["order"], 0) + 1)


def _make(tmp_path: Path, hot_codec: str = "json") -> None:
    """A projection-mode pair with a projection no URL can name (a local function)."""
    with TieredRepository[Any, Any](
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot?codec={hot_codec}"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
        projection=_count,
    ) as repo:
        repo.put("acme", ("2026-11-23T10:00:01.000Z", 1), {"order": "o-1"})
        repo.put("acme", ("2026-11-23T10:00:02.000Z", 2), {"order": "o-1"})
        repo.put("acme", ("2026-11-23T10:00:03.000Z", 3), {"order": "o-2"})


def _read_only_tiers(tmp_path: Path) -> tuple[Any, Any]:
    return (
        aurora_storage.open(f"lmdb://{tmp_path}/hot?read_only=true"),
        aurora_storage.open(f"rocksdb://{tmp_path}/cold?mode=read_only"),
    )


def _dump(tmp_path: Path) -> list[list[tuple[bytes, bytes]]]:
    """Every stored record of both tiers (their tiered records included)."""
    out = []
    for url in (
        f"lmdb://{tmp_path}/hot?read_only=true",
        f"rocksdb://{tmp_path}/cold?mode=read_only",
    ):
        with aurora_storage.open(url) as repo:
            out.append(
                [
                    p
                    for keys, vals in scan_in_order(repo._backend, b"", b"\xff" * 8)
                    for p in zip(keys, vals or [], strict=True)
                ]
            )
    return out


@pytest.mark.parametrize("hot_codec", ["json", "msgpack"])
def test_a_read_only_open_of_a_projection_pair_needs_no_projection(
    tmp_path: Path, hot_codec: str
) -> None:
    _make(tmp_path, hot_codec)
    hot, cold = _read_only_tiers(tmp_path)
    with TieredRepository[Any, Any](hot=hot, cold=cold) as repo:
        assert repo.mode == "projection"  # the mode the store recorded
        assert repo.projection is None  # none given: it projects nothing
        assert repo.capabilities.read_only
        assert repo.codec.name == hot_codec  # the projection's values
        # Reads read the projection (hot), as with the projection given.
        assert repo.get("acme", "o-1") == 2
        assert repo.get_many("acme", ["o-1", "o-2", "o-3"]) == [2, 1, None]
        assert repo.has("acme", "o-2")
        assert not repo.has("acme", "o-3")
        assert repo.list("acme") == ["o-1", "o-2"]
        assert repo.count("acme") == 2
        assert list(repo.tenants()) == ["acme"]
        assert len(list(repo.history.items("acme"))) == 3
        assert repo.lag == 0
        assert repo.parked() == []
        assert not repo.verify().problems
        with pytest.raises(ReadOnlyError):
            repo.put("acme", ("2026-11-23T10:00:04.000Z", 4), {"order": "o-3"})
        with pytest.raises(ReadOnlyError):
            repo.rebuild()
        with pytest.raises(ReadOnlyError):
            repo.catch_up()
        with pytest.raises(ReadOnlyError):
            repo.retry_parked()


def test_a_read_only_open_by_url_needs_no_projection(tmp_path: Path) -> None:
    _make(tmp_path)
    url = (
        "tiered://?hot="
        + quote(f"lmdb://{tmp_path}/hot?read_only=true", safe="")
        + "&cold="
        + quote(f"rocksdb://{tmp_path}/cold?mode=read_only", safe="")
    )
    with aurora_storage.open(url) as repo:
        assert isinstance(repo, TieredRepository)
        assert repo.mode == "projection"
        assert repo.get("acme", "o-1") == 2
    arepo = aurora_storage.open_async(url)
    try:
        import asyncio

        assert asyncio.run(arepo.get("acme", "o-2")) == 1
    finally:
        import asyncio

        asyncio.run(arepo.close())


def test_a_writable_open_still_needs_the_projection_and_writes_nothing(tmp_path: Path) -> None:
    _make(tmp_path)
    before = _dump(tmp_path)
    assert before[0]
    assert before[1]
    hot = aurora_storage.open(f"lmdb://{tmp_path}/hot")
    cold = aurora_storage.open(f"rocksdb://{tmp_path}/cold")
    try:
        with pytest.raises(ConfigurationError, match="created in projection mode"):
            TieredRepository(hot=hot, cold=cold)
    finally:
        hot.close()
        cold.close()
    assert _dump(tmp_path) == before
    # One tier read-only is enough: the pair is read-only, so it opens.
    hot = aurora_storage.open(f"lmdb://{tmp_path}/hot?read_only=true")
    cold = aurora_storage.open(f"rocksdb://{tmp_path}/cold")
    with TieredRepository[Any, Any](hot=hot, cold=cold) as repo:
        assert repo.capabilities.read_only
        assert repo.get("acme", "o-1") == 2


def test_a_read_only_open_of_a_cache_pair_with_a_projection_is_still_refused(
    tmp_path: Path,
) -> None:
    # A cache store holds no history to project: reading it as a projection would
    # serve the cache's subset as if it were derived state.
    with TieredRepository[Any, Any](
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
    ) as repo:
        repo.put("acme", "k", 1)
    hot, cold = _read_only_tiers(tmp_path)
    try:
        with pytest.raises(ConfigurationError, match="created in cache mode"):
            TieredRepository(hot=hot, cold=cold, projection=_count)
    finally:
        hot.close()
        cold.close()
