"""rebuild() switches readers from the old projection to the new one atomically.

The swap used to clear the live scope in chunks (separate hot transactions) and then move
the shadow in, chunk by chunk: for the length of the swap readers saw an empty, then a
partial projection (0, 10000, 20000 of 30000 keys), even when the new projection equalled
the old. The switch is now the difference between the live scope and the complete
shadow, committed in ONE hot transaction with the position and the next marker; the
shadow is removed afterwards (readers never see it). A hot tier that declares a bound on
its atomic batches (NATS's ``max_batch``) gets the switch in batches (readers may then see
it half done; a crash is still finished by the next open).

Every committed hot state is checked here (an observing memory backend), readers in a
thread over the real engines, crashes at every hot commit of a rebuild (before and after
it applies), and stores left by the previous version in the middle of its swap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from tiered_helpers import (
    Broken,
    Crash,
    FlakyBackend,
    crashed,
    dump,
    fold_versioned,
    present,
    versioned,
)

import aurora_storage
from aurora_storage import Repository
from aurora_storage._keys import NS_DATA, NS_DATA_END
from aurora_storage.backend import Op
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository
from aurora_storage.tiered._log import (
    PARKED,
    PARKED_END,
    POS,
    REBUILD,
    SHADOW,
    SHADOW_END,
    STOPPED,
    STOPPED_END,
    seq_bytes,
)

Repo = Repository[Any, Any]
State = dict[bytes, bytes]

#: the live ranges readers (and recovery) see: the projection, parked records, stops
LIVE = [(NS_DATA, NS_DATA_END), (PARKED, PARKED_END), (STOPPED, STOPPED_END)]


class Observed(FlakyBackend):
    """A fault-injecting memory backend that shows each committed state to ``on_commit``
    and, like a NATS bucket, may refuse atomic batches over ``max_batch`` operations."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        super().__init__(data)
        self.on_commit: Callable[[Sequence[Op]], None] | None = None
        self.max_batch: int | None = None
        self.batches: list[int] = []

    def write(self, ops: Sequence[Op]) -> None:
        if self.max_batch is not None and len(ops) > self.max_batch:
            raise Broken(f"{len(ops)} operations in one batch, over max_batch={self.max_batch}")
        super().write(ops)
        self.batches.append(len(ops))
        if self.on_commit is not None:
            self.on_commit(list(ops))

    def put(self, key: bytes, value: bytes) -> None:
        super().put(key, value)
        if self.on_commit is not None:
            self.on_commit([(key, value)])

    def delete(self, key: bytes) -> bool:
        found = super().delete(key)
        if self.on_commit is not None:
            self.on_commit([(key, None)])
        return found


def live(backend: FlakyBackend) -> State:
    """What readers of hot see: every record of the live ranges, as stored."""
    data = backend.snapshot()
    return {k: v for k, v in data.items() if any(lo <= k < hi for lo, hi in LIVE)}


def leftovers(backend: FlakyBackend) -> list[bytes]:
    """Rebuild bookkeeping left in hot (a shadow record or a marker)."""
    data = backend.snapshot()
    return [k for k in data if SHADOW <= k < SHADOW_END or k == REBUILD]


def observed(repo: Repo) -> Observed:
    backend = repo.backend
    assert isinstance(backend, Observed)
    return backend


EVENTS = 120


def history(n: int = EVENTS) -> list[tuple[str, Any, Any]]:
    """Order events over three tenants: projected by ``versioned`` into one key per
    record and one per order."""
    return [
        (("acme", "globex", "initech")[i % 3], (i, "e"), {"order": f"o-{i % 7}"}) for i in range(n)
    ]


def pair(
    version: int, hot: Repo | None = None, cold: Repo | None = None, **kw: Any
) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=hot if hot is not None else Repository(Observed()),
        cold=cold if cold is not None else Repository(FlakyBackend()),
        projection=versioned(version),
        rebuild_chunk=kw.pop("rebuild_chunk", 16),
        **kw,
    )


def written(version: int = 1, **kw: Any) -> TieredRepository[Any, Any]:
    t = pair(version, **kw)
    for tenant, key, ev in history():
        t.put(tenant, key, ev)
    return t


def projection_of(t: TieredRepository[Any, Any], version: int, tenant: str | None) -> State:
    """The live hot state a complete rebuild with ``version`` (of ``tenant``) leaves,
    computed on a separate pair over a copy of the same history."""
    cold: Repo = Repository(FlakyBackend(_cold_data(t)))
    hot_data = observed(t.hot).snapshot()
    if tenant is None:
        hot: Repo = Repository(Observed())
        TieredRepository(hot=hot, cold=cold, projection=versioned(version)).close()
        return live(observed(hot))
    # One tenant rebuilt: the other tenants keep what they had.
    other: TieredRepository[Any, Any] = TieredRepository(
        hot=Repository(Observed(hot_data)), cold=cold, projection=versioned(version)
    )
    other.rebuild(tenant)
    state = live(observed(other.hot))
    other.close()
    return state


def _cold_data(t: TieredRepository[Any, Any]) -> dict[bytes, bytes]:
    backend = t.cold.backend
    assert isinstance(backend, FlakyBackend)
    return backend.snapshot()


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize("tenant", [None, "acme"])
@pytest.mark.parametrize("new_version", [1, 2], ids=["same-function", "new-function"])
@pytest.mark.parametrize("max_batch", [None, 100_000], ids=["unbounded", "bounded-large"])
def test_every_committed_hot_state_of_a_rebuild_is_the_old_or_the_new_projection(
    tenant: str | None, new_version: int, max_batch: int | None
) -> None:
    """Each hot commit of a rebuild leaves readers the old projection or the complete
    new one (the old swap left an empty live scope after its clearing commit)."""
    t = written(1)
    crashed(t)
    t = pair(new_version, hot=t.hot, cold=t.cold)
    old = live(observed(t.hot))
    new = projection_of(t, new_version, tenant)
    assert (new == old) == (new_version == 1)
    hot = observed(t.hot)
    hot.max_batch = max_batch
    seen: list[State] = []
    hot.on_commit = lambda _ops: seen.append(live(hot))
    assert t.rebuild(tenant) == (EVENTS if tenant is None else EVENTS // 3)
    hot.on_commit = None
    assert seen, "the rebuild committed nothing"
    mixed = [i for i, state in enumerate(seen) if state not in (old, new)]
    assert not mixed, f"commits {mixed} of {len(seen)} showed a partial projection"
    assert live(hot) == new
    assert leftovers(hot) == []
    assert t.lag == 0


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_a_same_function_rebuild_writes_nothing_to_the_live_projection(
    tenant: str | None,
) -> None:
    """The switch is a difference: when the new projection equals the old, no live key
    is written at all (before, every key was deleted and written again)."""
    t = written(1)
    before = live(observed(t.hot))
    touched: list[bytes] = []
    hot = observed(t.hot)
    hot.on_commit = lambda ops: touched.extend(
        k for k, _ in ops if any(lo <= k < hi for lo, hi in LIVE)
    )
    t.rebuild(tenant)
    hot.on_commit = None
    assert touched == []
    assert live(hot) == before
    assert leftovers(hot) == []


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_a_cache_warm_up_keeps_every_hot_record_equal_to_cold_at_every_commit(
    tenant: str | None,
) -> None:
    """Cache mode builds no shadow: the warm-up copies what differs chunk by chunk, and
    after every hot commit each hot record holds cold's value (readers, who fall back
    to cold for what hot lacks, see exactly cold)."""
    hot: Repo = Repository(Observed())
    cold: Repo = Repository(FlakyBackend())
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, rebuild_chunk=7)
    for i in range(60):
        t.put(("acme", "globex")[i % 2], i, i)
    crashed(t)
    cold.backend.write(  # written around the pair: the cache never saw them
        [(cold._full("acme", i), cold._value(-i, "acme", i)) for i in range(60, 90)]
    )
    t = TieredRepository(hot=hot, cold=cold, rebuild_chunk=7)
    data = observed(hot)
    commits: list[State] = []
    data.on_commit = lambda _ops: commits.append(live(data))
    assert t.rebuild(tenant) == (90 if tenant is None else 60)
    data.on_commit = None
    cold_backend = cold.backend
    assert isinstance(cold_backend, FlakyBackend)
    truth = cold_backend.snapshot()
    assert len(commits) > 1
    for state in commits:
        assert all(truth.get(k) == v for k, v in state.items())
    assert live(data) == {k: v for k, v in truth.items() if NS_DATA <= k < NS_DATA_END}
    assert leftovers(data) == []


def _open_engines(tmp_path: Path, version: int) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot?sync=false"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
        projection=_every_nth(version),
    )


def _every_nth(version: int) -> Callable[[HistoryRecord, ProjectionState], None]:
    """Version 1 projects every record, version 2 every second one (other values)."""

    def project(record: HistoryRecord, state: ProjectionState) -> None:
        if version == 1 or record.value % 2 == 0:
            state.put(record.key, {"v": version, "i": record.value})

    return project


READER_KEYS = 12_000


@pytest.mark.parametrize("new_version", [1, 2], ids=["same-function", "new-function"])
def test_a_reader_thread_sees_only_the_old_or_the_new_projection(
    tmp_path: Path, new_version: int
) -> None:
    """Over LMDB + RocksDB, a reader thread counting and reading the projection during
    rebuild() sees the old projection or the new one, never a part of either (it saw 0,
    10000, 20000 of 30000 keys)."""
    with _open_engines(tmp_path, 1) as t:
        t.put_many("acme", [(f"k{i:06d}", i) for i in range(READER_KEYS)])
    old_count = READER_KEYS
    new_count = READER_KEYS if new_version == 1 else READER_KEYS // 2
    probe = f"k{READER_KEYS - 2:06d}"  # even: in both projections, with other values
    allowed = {1, new_version}
    with _open_engines(tmp_path, new_version) as t:
        counts: list[int] = []
        probes: list[Any] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                counts.append(t.count("acme"))
                probes.append(t.get("acme", probe))

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            # Several rebuilds, so the reader meets some of them in their switch.
            for _ in range(3):
                t.rebuild()
        finally:
            stop.set()
            thread.join()
        assert counts
        assert set(counts) <= {old_count, new_count}, sorted(set(counts))
        assert all(p is not None and p["v"] in allowed for p in probes)
        assert t.count("acme") == new_count


# --------------------------------------------------------------------------- crashes


def _rebuilding(max_batch: int | None) -> TieredRepository[Any, Any]:
    """A pair of version 1 with its history, reopened with version 2 (about to rebuild)."""
    t = written(1)
    observed(t.hot).max_batch = max_batch
    crashed(t)
    return pair(2, hot=t.hot, cold=t.cold)


def _commits_of_a_rebuild(tenant: str | None, max_batch: int | None) -> list[list[Op]]:
    """The hot commits of a rebuild with version 2 over version 1, in order."""
    t = _rebuilding(max_batch)
    commits: list[list[Op]] = []
    observed(t.hot).on_commit = lambda ops: commits.append(list(ops))
    t.rebuild(tenant)
    return commits


def _is_switch(ops: Sequence[Op]) -> bool:
    """The commit that ends the switch: it sets the position."""
    return any(k == POS for k, _ in ops)


@pytest.mark.parametrize("applied", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize("tenant", [None, "acme"])
@pytest.mark.parametrize("max_batch", [None, 7], ids=["atomic", "bounded"])
def test_a_crash_at_any_hot_commit_of_a_rebuild_reopens_old_or_complete_new(
    tenant: str | None, max_batch: int | None, applied: bool
) -> None:
    """A kill (here: a BaseException inside the hot commit, before or after it applies)
    at every hot commit of a rebuild: the reopened pair serves the old projection or
    the complete new one, nothing of the rebuild is left behind, and lag is 0."""
    n = len(_commits_of_a_rebuild(tenant, max_batch))
    assert n >= 3
    outcomes = set()
    for k in range(n):
        t = _rebuilding(max_batch)
        hot = observed(t.hot)
        old = live(hot)
        new = projection_of(t, 2, tenant)
        hot.fail("write", after=k, exc=Crash, applied=applied)
        with pytest.raises(Crash):
            t.rebuild(tenant)
        hot.heal()
        crashed(t)
        t2 = pair(2, hot=t.hot, cold=t.cold)
        got = live(hot)
        assert got in (old, new), f"commit {k} of {n}: a partial projection after reopen"
        outcomes.add("old" if got == old else "new")
        assert leftovers(hot) == [], f"commit {k} of {n}"
        assert t2.lag == 0
        t2.close()
    assert outcomes == {"old", "new"}


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_hot_failure_at_the_switch_leaves_old_or_new_never_a_mix(when: str) -> None:
    """The switch commit fails in a running process: not applied, the rebuild raises and
    the old projection stays; applied but reported failed (a lost acknowledgement), the
    rebuild is done and the new projection is served. Either way nothing is left, and
    the next write applies once."""
    commits = _commits_of_a_rebuild(None, None)
    switch = [i for i, ops in enumerate(commits) if _is_switch(ops)]
    assert len(switch) == 1
    t = _rebuilding(None)
    hot = observed(t.hot)
    old = live(hot)
    new = projection_of(t, 2, None)
    hot.fail("write", after=switch[0], exc=Broken, applied=when == "after")
    if when == "before":
        with pytest.raises(Broken):
            t.rebuild()
        assert live(hot) == old
    else:
        assert t.rebuild() == EVENTS
        assert live(hot) == new
    hot.heal()
    assert leftovers(hot) == []
    t.put("acme", (10_000, "e"), {"order": "o-1"})
    assert t.lag == 0
    t.rebuild()
    assert dump(t.hot) == fold_versioned(t.history, 2)


# --------------------------------------------------------------------------- bounded hot


def test_a_bounded_hot_tier_gets_the_switch_in_batches_and_a_failure_is_finished_first() -> None:
    """A hot tier that refuses batches over ``max_batch`` gets the switch in batches (none
    over the bound); a hot failure in the middle is finished by the next write before it
    is applied, so the write lands on the complete new projection."""
    t = written(1)
    hot = observed(t.hot)
    hot.max_batch = 5
    crashed(t)
    t = pair(2, hot=t.hot, cold=t.cold)
    new = projection_of(t, 2, None)
    start = len(hot.batches)
    t.rebuild()
    assert max(hot.batches[start:]) <= 5
    assert live(hot) == new
    # Again, with a failure in the middle of the switch.
    t.close()
    t = written(1)
    hot = observed(t.hot)
    hot.max_batch = 5
    crashed(t)
    t = pair(2, hot=t.hot, cold=t.cold)
    new = projection_of(t, 2, None)
    marker: list[bytes] = []

    def watch(ops: Sequence[Op]) -> None:
        for k, v in ops:
            if k == REBUILD and v is not None and v[:1] == b"S" and not marker:
                marker.append(v)
                hot.fail("write", after=3, exc=Broken)

    hot.on_commit = watch
    with pytest.raises(Broken):
        t.rebuild()
    hot.on_commit = None
    assert marker
    t.put("acme", (10_000, "e"), {"order": "o-1"})  # finishes the switch first
    assert t.lag == 0
    assert dump(t.hot) == fold_versioned(t.history, 2)
    assert leftovers(hot) == []


# --------------------------------------------------------------------------- old stores


@pytest.mark.parametrize(
    ("phase", "done"),
    [("C", 0.0), ("C", 0.5), ("C", 1.0), ("M", 0.0), ("M", 0.5), ("M", 1.0)],
)
@pytest.mark.parametrize("tenant", [None, "acme"])
def test_a_store_killed_in_the_previous_versions_swap_is_finished_on_open(
    phase: str, done: float, tenant: str | None
) -> None:
    """The previous version swapped by clearing the live scope (marker ``C``) and then
    moving the shadow in, each moved chunk removed from the shadow (marker ``M``). A
    store it left killed in either phase, at any point, is finished on open: the complete
    new projection."""
    t = written(1)
    new = projection_of(t, 2, tenant)
    seq = t.stats()["cold_seq"]
    crashed(t)
    hot = observed(t.hot)
    scope = b"*" if tenant is None else t.cold._prefix(tenant)
    ranges = LIVE if tenant is None else _tenant_ranges(scope)
    data = hot.snapshot()
    live_keys = sorted(k for k in data if any(lo <= k < hi for lo, hi in ranges))
    shadow = sorted(
        (SHADOW + k, v) for k, v in new.items() if any(lo <= k < hi for lo, hi in ranges)
    )
    ops: list[Op] = [(k, v) for k, v in shadow]
    if phase == "C":
        ops += [(k, None) for k in live_keys[: int(len(live_keys) * done)]]
    else:
        ops += [(k, None) for k in live_keys]
        moved = shadow[: int(len(shadow) * done)]
        ops += [(k[len(SHADOW) :], v) for k, v in moved]
        ops += [(k, None) for k, _ in moved]
    ops.append((REBUILD, phase.encode() + seq_bytes(seq) + scope))
    hot.write(ops)
    assert present(hot.get(POS))[:8] == seq_bytes(seq)  # then the entry's nonce
    t2 = pair(2, hot=t.hot, cold=t.cold)
    assert live(hot) == new
    assert leftovers(hot) == []
    assert t2.lag == 0


def _tenant_ranges(prefix: bytes) -> list[tuple[bytes, bytes]]:
    from aurora_storage._keys import TENANT_END

    return [
        (prefix, prefix + TENANT_END),
        (PARKED + prefix, PARKED + prefix + TENANT_END),
        (STOPPED + prefix, STOPPED + prefix + b"\x00"),
    ]
