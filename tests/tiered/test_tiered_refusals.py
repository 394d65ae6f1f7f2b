"""What a tiered pair refuses, it refuses before it writes anything; what it reports on a
read-only view, it reports as it is.

- A refused open (hot holds foreign data, hot belongs to another pair, the store was
  created in the other mode) used to stamp a brand-new cold store with the pair's mode
  first, so a later pair of the other mode was refused with a misleading "was created in
  projection mode". Every check now runs before the first write.
- ``rebuild(progress=<not a function of one argument>)`` raised a raw ``TypeError`` after
  the first chunk was built; it is refused at the call (``InvalidArgumentError``), and a
  projection that cannot take ``(record, state)`` is refused when the pair is opened.
- A read-only pair over a cold view older than its hot reports a negative ``lag`` (the
  projection is ahead of this view of history) and writes nothing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from tiered_helpers import FlakyBackend, crashed

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import (
    ConfigurationError,
    InvalidArgumentError,
    ProjectionMisuseError,
    ReadOnlyError,
)
from aurora_storage.tiered import (
    HistoryRecord,
    ProjectionState,
    TieredRepository,
    register_projection,
    unregister_projection,
)
from aurora_storage.tiered._log import COLD_META, PAIR, REBUILD, SHADOW, SHADOW_END

Repo = Repository[Any, Any]


def count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)


def tiered(**kw: Any) -> TieredRepository[Any, Any]:
    return TieredRepository(**kw)


def raw(repo: Repo) -> dict[bytes, bytes]:
    """Every record of a store, system records included."""
    return dict(repo.backend.scan(b"\x00", b"\xff"))


def memory(data: dict[bytes, bytes] | None = None) -> Repo:
    return Repository(FlakyBackend(data))


# --------------------------------------------------------------------------- refused opens


def _foreign_hot() -> tuple[Repo, Repo]:
    hot = memory()
    hot.put("x", "foreign", 1)
    return hot, memory()


def _hot_of_another_pair(mode: str) -> tuple[Repo, Repo]:
    hot, cold = memory(), memory()
    other = tiered(hot=hot, cold=cold, projection=count if mode == "p" else None)
    other.put("acme", "e", {})
    crashed(other)
    return hot, memory()  # a new cold store: another history


def _cold_of_the_other_mode(mode: str) -> tuple[Repo, Repo]:
    hot, cold = memory(), memory()
    other = tiered(hot=hot, cold=cold, projection=None if mode == "p" else count)
    other.put("acme", "e", {})
    crashed(other)
    return memory(), cold  # a new hot store


def _legacy_cold_of_another_pair(mode: str) -> tuple[Repo, Repo]:
    """A cold store whose record has no mode (written by an older version), with a hot
    store of another pair."""
    hot, cold = _hot_of_another_pair(mode)
    other = tiered(hot=memory(), cold=cold, projection=count if mode == "p" else None)
    crashed(other)
    meta = orjson.loads(cold.backend.get(COLD_META) or b"{}")
    cold.backend.put(COLD_META, orjson.dumps({"id": meta["id"]}))
    return hot, cold


CASES = {
    "hot holds foreign data, cold is new": lambda mode: _foreign_hot(),
    "hot belongs to another pair, cold is new": _hot_of_another_pair,
    "cold was created in the other mode, hot is new": _cold_of_the_other_mode,
    "cold of an older version, hot of another pair": _legacy_cold_of_another_pair,
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", ["p", "c"], ids=["projection", "cache"])
def test_a_refused_open_writes_nothing_to_either_store(case: str, mode: str) -> None:
    hot, cold = CASES[case](mode)
    before = raw(hot), raw(cold)
    with pytest.raises(ConfigurationError):
        tiered(hot=hot, cold=cold, projection=count if mode == "p" else None)
    assert (raw(hot), raw(cold)) == before


def test_a_new_cold_store_refused_for_its_hot_stays_free_for_either_mode(
    tmp_path: Path,
) -> None:
    """The breaker's case over the engines: a projection pair refused because its hot
    holds foreign data leaves the new cold store unstamped, so a cache pair (or a
    projection pair) with an empty hot opens it afterwards."""
    hot = aurora_storage.open(f"lmdb://{tmp_path}/hot")
    hot.put("x", "foreign", 1)
    cold = aurora_storage.open(f"rocksdb://{tmp_path}/cold")
    with pytest.raises(ConfigurationError, match="holds data"):
        tiered(hot=hot, cold=cold, projection=count)
    assert cold.backend.get(COLD_META) is None
    hot.close()
    cold.close()
    with tiered(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot2"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
    ) as cache:
        cache.put("acme", "k", 1)
        assert cache.mode == "cache"


def test_a_new_cold_store_refused_for_a_hot_of_another_pair_stays_unstamped(
    tmp_path: Path,
) -> None:
    with tiered(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
        projection=count,
    ) as t:
        t.put("acme", "e", {})
    fresh = aurora_storage.open(f"rocksdb://{tmp_path}/cold4")
    hot = aurora_storage.open(f"lmdb://{tmp_path}/hot")
    hot_before = raw(hot)
    with pytest.raises(ConfigurationError, match="belongs to another tiered pair"):
        tiered(hot=hot, cold=fresh, projection=count)
    assert fresh.backend.get(COLD_META) is None
    assert raw(hot) == hot_before
    hot.close()
    fresh.close()


# --------------------------------------------------------------------------- read-only lag


WRITER = textwrap.dedent(
    """
    import sys
    import aurora_storage
    from aurora_storage.tiered import TieredRepository

    def count(record, state):
        state.put("n", state.get("n", 0) + 1)

    d = sys.argv[1]
    with TieredRepository(
        hot=aurora_storage.open(f"lmdb://{d}/hot"),
        cold=aurora_storage.open(f"rocksdb://{d}/cold"),
        projection=count,
    ) as w:
        for i in range(2, 7):
            w.put("acme", f"e{i}", {})
    """
)


@pytest.mark.parametrize("cold_mode", ["read_only", "secondary"])
def test_a_read_only_pair_behind_its_hot_reports_negative_lag_and_writes_nothing(
    tmp_path: Path, cold_mode: str
) -> None:
    """A read-only RocksDB cold view opened before another process wrote 5 more events,
    an LMDB hot read live: the projection (n=6) is ahead of this view of history (1
    record), and ``lag`` says so (-5) rather than 0 or an error. The pair writes
    nothing. A secondary view that catches up brings lag back to 0."""
    with tiered(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
        projection=count,
    ) as w:
        w.put("acme", "e1", {})
    view = aurora_storage.open(f"rocksdb://{tmp_path}/cold?mode={cold_mode}")
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], check=True)
    hot = aurora_storage.open(f"lmdb://{tmp_path}/hot?read_only=true")
    hot_before = raw(hot)
    cold_before = raw(view)
    with tiered(hot=hot, cold=view, projection=count) as r:
        assert r.capabilities.read_only
        assert r.lag == -5
        assert r.stats()["lag"] == -5
        assert r.get("acme", "n") == 6
        assert r.history.count("acme") == 1
        with pytest.raises(ReadOnlyError):
            r.put("acme", "e9", {})
        with pytest.raises(ReadOnlyError):
            r.rebuild()
        assert raw(hot) == hot_before
        assert raw(view) == cold_before
        if cold_mode == "secondary":
            r.cold.catch_up()  # type: ignore[attr-defined]  # a RocksDB repository's method
            assert r.lag == 0
            assert r.history.count("acme") == 6


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "progress",
    [5, "log", object(), lambda: None, lambda a, b: None],
    ids=["int", "str", "object", "no-argument", "two-arguments"],
)
def test_a_bad_progress_is_refused_before_anything_is_written(progress: Any) -> None:
    hot, cold = memory(), memory()
    t = tiered(hot=hot, cold=cold, projection=count)
    t.put("acme", "e1", {})
    before = raw(hot), raw(cold)
    with pytest.raises(InvalidArgumentError, match="progress must be a function") as info:
        t.rebuild(progress=progress)
    assert isinstance(info.value, TypeError)
    assert (raw(hot), raw(cold)) == before
    assert hot.backend.get(REBUILD) is None
    assert list(hot.backend.scan(SHADOW, SHADOW_END)) == []
    seen: list[Any] = []
    assert t.rebuild(progress=seen.append) == 1
    assert seen


@pytest.mark.parametrize(
    "projection",
    [lambda record: None, lambda: None, lambda a, b, c: None],
    ids=["one-argument", "no-argument", "three-arguments"],
)
def test_a_projection_that_cannot_take_record_and_state_is_refused(projection: Any) -> None:
    """It would fail on every record (poison), stopping every tenant at its first one;
    the pair refuses it at open, before anything is written."""
    hot, cold = memory(), memory()
    before = raw(hot), raw(cold)
    with pytest.raises(ConfigurationError, match=r"projection\(record, state\)"):
        tiered(hot=hot, cold=cold, projection=projection)
    assert (raw(hot), raw(cold)) == before
    assert hot.backend.get(PAIR) is None
    with pytest.raises(ConfigurationError, match=r"projection\(record, state\)"):
        register_projection("bad-arity", projection)
    unregister_projection("bad-arity")


def test_callables_of_any_kind_are_accepted() -> None:
    """Bound methods, callable objects, defaults and *args all take (record, state)."""

    class Proj:
        def __call__(self, record: HistoryRecord, state: ProjectionState, extra: int = 0) -> None:
            count(record, state)

        def method(self, *args: Any) -> None:
            count(*args)

    for fn in (Proj(), Proj().method, count):
        with tiered(hot=memory(), cold=memory(), projection=fn) as t:
            t.put("acme", "e", {})
            assert t.get("acme", "n") == 1


# --------------------------------------------------------------------------- misuse


def test_a_projection_that_swallows_its_misuse_lets_the_outer_write_succeed() -> None:
    """What docs/tiered.md says: a write from inside a projection raises
    ProjectionMisuseError there and writes nothing; only if the projection lets it
    propagate does the outer write fail (ProjectionError, nothing written)."""
    t: TieredRepository[Any, Any]
    caught: list[Exception] = []

    def swallowing(record: HistoryRecord, state: ProjectionState) -> None:
        count(record, state)
        try:
            t.put("acme", ("derived", record.key), {})
        except ProjectionMisuseError as exc:
            caught.append(exc)

    t = tiered(hot=memory(), cold=memory(), projection=swallowing)
    t.put("acme", "e1", {})
    assert len(caught) == 1
    assert list(t.history.keys("acme")) == ["e1"]
    assert t.get("acme", "n") == 1
