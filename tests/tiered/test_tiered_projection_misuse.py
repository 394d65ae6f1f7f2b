"""A projection that breaks its contract is refused, not half-applied: writing to its own
tiered pair while being applied, or using its ``ProjectionState`` after its call returned.

Projections must be free of side effects (recovery and ``rebuild()`` run them again). A
projection that nevertheless called ``put()`` (or any other write, or ``catch_up()``) on
the pair it belongs to used to re-enter the pair's write path under its re-entrant lock:
the inner write took the same change-log number as the outer one, and the outer write's
cold batch then overwrote the inner write's change-log entry (and in catch-up, the outer
hot batch moved the applied position back, so the inner record was applied twice). Now
the inner call raises :class:`ProjectionMisuseError`, which the outer write reports as the
projection's failure (policy ``reject``: nothing written) or handles by its poison
policy at catch-up.

A kept ``state`` handle used to stay usable: since one applier serves many writes, its
updates were committed with whatever record was projected next, another tenant's too.
Each call now gets its own state, closed when the call returns.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiered_helpers import dump, flaky, flaky_repo

import aurora_storage
from aurora_storage.errors import ProjectionMisuseError, ReadOnlyError
from aurora_storage.tiered import (
    HistoryRecord,
    ProjectionError,
    ProjectionState,
    RebuildProgress,
    TieredRepository,
)

Tiered = TieredRepository[Any, Any]


def _batch_put_two(t: Tiered) -> None:
    with t.batch() as b:
        b.put("A", "a1", 1)
        b.put("B", "b1", 2)


def _batch_put(t: Tiered) -> None:
    with t.batch() as b:
        b.put("acme", "derived", {"n": 1})


#: What a misbehaving projection may call on its own pair.
_CALLS: dict[str, Callable[[Tiered], Any]] = {
    "put": lambda t: t.put("acme", "derived", {"n": 1}),
    "insert": lambda t: t.insert("acme", "derived", {"n": 1}),
    "put_many": lambda t: t.put_many("acme", [("derived", {"n": 1})]),
    "batch": lambda t: _batch_put(t),
    "catch_up": lambda t: t.catch_up(),
    "retry_parked": lambda t: t.retry_parked(),
    "drop_tenant": lambda t: t.drop_tenant("other"),
    "rebuild": lambda t: t.rebuild(),
}


def _writing_projection(
    pair: list[Tiered], call: Callable[[Tiered], Any], caught: list[BaseException]
) -> Any:
    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        if record.key == "trigger":
            try:
                call(pair[0])
            except BaseException as exc:  # recorded, then raised on: the write must fail
                caught.append(exc)
                raise
        state.put(record.key, record.value)

    return proj


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_a_projection_writing_to_its_own_pair_is_refused_and_nothing_is_written(
    name: str,
) -> None:
    pair: list[Tiered] = []
    caught: list[BaseException] = []
    t: Tiered = TieredRepository(
        hot=flaky_repo(),
        cold=flaky_repo(),
        projection=_writing_projection(pair, _CALLS[name], caught),
    )
    pair.append(t)
    t.put("acme", "first", {"n": 0})
    cold_before, hot_before = dump(t.cold), dump(t.hot)

    with pytest.raises(ProjectionError) as info:
        t.put("acme", "trigger", {"n": 1})

    assert info.value.durable is False
    (inner,) = caught
    assert isinstance(inner, ProjectionMisuseError)
    message = str(inner)
    assert "projection" in message
    assert "own tiered repository" in message
    # It names the call and the record being projected, and says how to fix it.
    called = "a batch's commit" if name == "batch" else f"{name}()"
    assert f"called {called} on" in message
    assert "record 'trigger' of tenant 'acme'" in message
    assert (inner.tenant, inner.key) == ("acme", "trigger")
    assert "after the write returns" in message
    # Nothing of the outer write nor of the refused inner one reached either tier.
    assert dump(t.cold) == cold_before
    assert dump(t.hot) == hot_before
    assert t.lag == 0
    # The pair is not wedged: the next write goes through and is applied once.
    t.put("acme", "second", {"n": 2})
    assert t.get("acme", "second") == {"n": 2}
    assert list(t.history.keys("acme")) == ["first", "second"]


def test_a_projection_that_swallows_the_refusal_leaves_one_log_entry_per_record() -> None:
    # The original failure: the inner write committed "derived" under change-log number
    # N+1, then the outer write's cold batch overwrote that entry with its own, so the
    # change log lost a record (a hot tier rebuilt from the log never saw "derived").
    # A projection that catches the refusal and goes on must leave history and change
    # log in step, and a new hot tier caught up from the log must equal the live one.
    pair: list[Tiered] = []
    refused: list[BaseException] = []

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        if record.key == "trigger":
            try:
                pair[0].put("acme", "derived", 1)
            except ProjectionMisuseError as exc:
                refused.append(exc)
        state.put(record.key, record.value)

    cold = flaky_repo()
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=cold, projection=proj)
    pair.append(t)
    for i in range(3):
        t.put("acme", f"k{i}", i)
    t.put("acme", "trigger", 9)

    assert len(refused) == 1
    assert sorted(t.history.keys("acme")) == ["k0", "k1", "k2", "trigger"]
    assert t.stats()["cold_seq"] == 4  # one change-log entry per history record
    live = dump(t.hot)
    replayed: Tiered = TieredRepository(
        hot=flaky_repo(), cold=flaky_repo(flaky(cold).snapshot()), projection=proj
    )
    assert dump(replayed.hot) == live


def test_reads_from_inside_a_projection_are_still_allowed() -> None:
    pair: list[Tiered] = []

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        # Reading the pair (not writing it) is harmless: hot as committed so far.
        state.put(record.key, {"seen_before": pair[0].get("acme", "first") is not None})

    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=proj)
    pair.append(t)
    t.put("acme", "first", 1)
    t.put("acme", "second", 2)
    assert t.get("acme", "second") == {"seen_before": True}


def _keeping(kept: list[ProjectionState], wait_on: str | None = None) -> Any:
    go, hold = threading.Event(), threading.Event()

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        kept.append(state)
        state.put(record.key, record.value)
        if record.tenant == wait_on:
            go.set()
            assert hold.wait(10)

    proj.go, proj.hold = go, hold  # type: ignore[attr-defined]  # test handles on the function
    return proj


def test_a_kept_state_refuses_every_use_after_its_call_and_changes_nothing() -> None:
    kept: list[ProjectionState] = []
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=_keeping(kept))
    t.put("A", "k1", 1)
    stale = kept[0]
    with pytest.raises(ProjectionMisuseError) as info:
        stale.put("STALE", "late")
    assert info.value.tenant == "A"
    with pytest.raises(ProjectionMisuseError):
        stale.delete("k1")
    with pytest.raises(ProjectionMisuseError):
        stale.get("k1")
    with pytest.raises(ProjectionMisuseError):
        stale.has("k1")
    t.put("B", "k2", 2)
    # Neither A's projection nor B's got the stale updates; hot is what history implies.
    assert dict(t.items("A")) == {"k1": 1}
    assert dict(t.items("B")) == {"k2": 2}
    live = dump(t.hot)
    t.rebuild()
    assert dump(t.hot) == live


def test_a_kept_state_cannot_reach_another_threads_projection() -> None:
    # The reviewer's case: the state object was shared by every write of the pair, so a
    # handle kept from tenant A's write, used while tenant B's projection ran in another
    # thread, put its update into B's projection.
    kept: list[ProjectionState] = []
    proj = _keeping(kept, wait_on="B")
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=proj)
    t.put("A", "k1", 1)
    stale = kept[0]
    writer = threading.Thread(target=t.put, args=("B", "k2", 2))
    writer.start()
    try:
        assert proj.go.wait(10)
        with pytest.raises(ProjectionMisuseError):
            stale.put("INJECTED", "via A's state")
    finally:
        proj.hold.set()
        writer.join(10)
    assert dict(t.items("B")) == {"k2": 2}
    assert dict(t.items("A")) == {"k1": 1}


def test_a_state_kept_from_an_earlier_record_of_the_same_write_rejects_the_write() -> None:
    kept: list[ProjectionState] = []

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        if kept:
            kept[0].put("leak", record.key)  # the first record's state, its call over
        kept.append(state)
        state.put(record.key, record.value)

    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=proj)
    with pytest.raises(ProjectionError) as info:
        _batch_put_two(t)
    assert isinstance(info.value.__cause__, ProjectionMisuseError)
    assert dump(t.cold) == {}
    assert dump(t.hot) == {}


_TIER_WRITES: dict[str, Callable[[Any], Any]] = {
    "put": lambda r: r.put("acme", "sneak", 1),
    "insert": lambda r: r.insert("acme", "sneak", 1),
    "put_many": lambda r: r.put_many("acme", [("sneak", 1), ("sneak2", 2)]),
    "delete": lambda r: r.delete("acme", "first"),
    "delete_many": lambda r: r.delete_many("acme", ["first"]),
    "batch": lambda r: _tier_batch(r),
    "drop_tenant": lambda r: r.drop_tenant("acme"),
    "tenant view": lambda r: r.tenant("acme").put("sneak", 1),
}


def _tier_batch(r: Any) -> None:
    with r.batch() as b:
        b.put("acme", "sneak", 1)


@pytest.mark.parametrize("tier", ["hot", "cold", "history"])
@pytest.mark.parametrize("name", sorted(_TIER_WRITES))
def test_the_tiers_of_a_pair_refuse_direct_writes_and_stay_readable(tier: str, name: str) -> None:
    # A write through repo.history (or cold, or hot) bypassed the change log: a history
    # record no change-log entry announces, or a hot record rebuild() would remove.
    t: Tiered = TieredRepository(
        hot=flaky_repo(), cold=flaky_repo(), projection=_writing_projection([], lambda _: None, [])
    )
    t.put("acme", "first", {"n": 0})
    cold_before, hot_before = dump(t.cold), dump(t.hot)
    with pytest.raises(ReadOnlyError) as info:
        _TIER_WRITES[name](getattr(t, tier))
    assert "tier of the tiered repository" in str(info.value)
    assert dump(t.cold) == cold_before
    assert dump(t.hot) == hot_before
    assert getattr(t, tier).get("acme", "first") == {"n": 0}  # reads stay free
    t.put("acme", "second", {"n": 2})  # the pair itself still writes its tiers
    assert t.get("acme", "second") == {"n": 2}


def test_a_projection_writing_through_history_is_refused() -> None:
    # The reviewer's case: the projection wrote repo.history.put(...) for one record.
    pair: list[Tiered] = []
    t: Tiered = TieredRepository(
        hot=flaky_repo(),
        cold=flaky_repo(),
        projection=_writing_projection(pair, lambda r: r.history.put("acme", "sneak", {}), []),
    )
    pair.append(t)
    t.put("acme", "e0", 0)
    with pytest.raises(ProjectionError) as info:
        t.put("acme", "trigger", 1)
    assert isinstance(info.value.__cause__, ReadOnlyError)
    assert sorted(t.history.keys("acme")) == ["e0"]
    assert t.stats()["cold_seq"] == 1


def test_close_from_inside_a_projection_is_refused_and_the_pair_stays_open() -> None:
    pair: list[Tiered] = []
    caught: list[BaseException] = []
    t: Tiered = TieredRepository(
        hot=flaky_repo(),
        cold=flaky_repo(),
        projection=_writing_projection(pair, lambda r: r.close(), caught),
    )
    pair.append(t)
    t.put("acme", "first", 0)
    with pytest.raises(ProjectionError):
        t.put("acme", "trigger", 1)
    (inner,) = caught
    assert isinstance(inner, ProjectionMisuseError)
    assert "called close() on" in str(inner)
    assert "the pair stays open" in str(inner)
    assert not t.closed
    assert not t.hot.closed
    assert not t.cold.closed
    t.put("acme", "second", 2)
    assert sorted(t.history.keys("acme")) == ["first", "second"]
    t.close()
    assert t.closed


def _count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)


def _disk_pair(tmp_path: Path, **options: Any) -> Tiered:
    return TieredRepository(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
        projection=_count,
        **options,
    )


#: What a rebuild's progress callback may call on the pair it reports on.
_PROGRESS_CALLS: dict[str, Callable[[Tiered], Any]] = {**_CALLS, "close": lambda t: t.close()}


@pytest.mark.parametrize("name", sorted(_PROGRESS_CALLS))
def test_a_progress_callback_calling_its_pair_is_refused_and_the_rebuild_completes(
    name: str,
) -> None:
    # The progress callback runs holding the pair's re-entrant lock, in the middle of the
    # rebuild: a nested rebuild() from it left a wrong projection at lag 0 (3 events
    # counted of 4, for good), a put() was acknowledged and then not readable, close()
    # failed the rebuild. Each is refused now, writing nothing; a callback that swallows
    # the refusal gets a correct rebuild.
    t: Tiered = TieredRepository(
        hot=flaky_repo(), cold=flaky_repo(), projection=_count, rebuild_chunk=1
    )
    for i in range(4):
        t.put("acme", f"e{i}", {})
    cold_before = dump(t.cold)
    refused: list[BaseException] = []

    def progress(info: RebuildProgress) -> None:
        try:
            _PROGRESS_CALLS[name](t)
        except ProjectionMisuseError as exc:
            refused.append(exc)

    assert t.rebuild(progress=progress) == 4
    assert len(refused) == 5  # after each of the 4 chunks, and at the end
    message = str(refused[0])
    called = "a batch's commit" if name == "batch" else f"{name}()"
    assert f"progress callback of a rebuild called {called} on" in message
    assert "after rebuild() returns" in message
    assert dump(t.cold) == cold_before
    assert t.get("acme", "n") == 4
    assert t.lag == 0
    assert not t.closed
    t.put("acme", "e4", {})
    assert t.get("acme", "n") == 5


def test_a_nested_rebuild_from_progress_fails_the_rebuild_cleanly_and_survives_reopen(
    tmp_path: Path,
) -> None:
    # The reviewer's case, with the refusal left to propagate: the error raised inside
    # progress abandons the rebuild (the old projection stays served) and reaches the
    # caller; the projection is right, and stays right after reopening.
    t = _disk_pair(tmp_path, rebuild_chunk=1)
    for i in range(4):
        t.put("t", f"e{i}", {})
    calls: list[RebuildProgress] = []

    def progress(info: RebuildProgress) -> None:
        calls.append(info)
        if len(calls) == 1:
            t.rebuild()

    with pytest.raises(ProjectionMisuseError, match=r"called rebuild\(\) on"):
        t.rebuild(progress=progress)
    assert (t.get("t", "n"), t.history.count("t"), t.lag) == (4, 4, 0)
    t.close()
    t = _disk_pair(tmp_path)
    assert (t.get("t", "n"), t.lag) == (4, 0)
    assert t.rebuild() == 4
    assert t.get("t", "n") == 4
    t.close()


def test_a_put_from_progress_is_refused_not_acknowledged_and_lost() -> None:
    t: Tiered = TieredRepository(
        hot=flaky_repo(), cold=flaky_repo(), projection=_count, rebuild_chunk=1
    )
    for i in range(3):
        t.put("acme", f"e{i}", {})

    def progress(info: RebuildProgress) -> None:
        t.put("acme", f"late{info.done}", {})

    with pytest.raises(ProjectionMisuseError, match=r"called put\(\) on"):
        t.rebuild(progress=progress)
    assert sorted(t.history.keys("acme")) == ["e0", "e1", "e2"]
    assert (t.get("acme", "n"), t.lag) == (3, 0)


def test_close_from_a_projection_while_another_thread_closes_is_refused_not_deadlocked() -> None:
    # Another thread inside close() holds the close lock while it waits for the pair's
    # lock, held by the write being projected; the projection's close() waited for the
    # close lock instead of raising: both threads waited forever.
    pair: list[Tiered] = []
    caught: list[BaseException] = []
    closing = threading.Event()

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        state.put(record.key, 1)
        if record.key == "trigger":
            closing.set()
            # Wait (bounded) until the closer holds the close lock and waits for ours.
            deadline = time.monotonic() + 10
            while not pair[0]._close_lock.locked() and time.monotonic() < deadline:
                time.sleep(0.001)
            try:
                pair[0].close()
            except ProjectionMisuseError as exc:
                caught.append(exc)

    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=proj)
    pair.append(t)
    writer = threading.Thread(target=t.put, args=("acme", "trigger", 0), daemon=True)
    writer.start()
    assert closing.wait(10)
    closer = threading.Thread(target=t.close, daemon=True)
    closer.start()
    writer.join(10)
    closer.join(10)
    assert not writer.is_alive(), "the projecting writer deadlocked in close()"
    assert not closer.is_alive()
    (inner,) = caught
    assert "called close() on" in str(inner)
    assert t.closed  # the other thread's close went through once the write was done


def test_a_kept_state_used_from_another_thread_as_the_call_ends_lands_or_raises() -> None:
    # ProjectionState.put read its pending updates, encoded, then stored into them: when
    # the call closed the state in between, the put returned normally and its update was
    # neither committed nor refused (about half of these writes lost one). A thread that
    # outlives the call puts increasing values under one key until it is refused: the
    # last put that returned must be the value committed.
    threads: list[threading.Thread] = []
    last: dict[str, int] = {}

    def hammer(state: ProjectionState, late: str) -> None:
        n = 0
        while True:
            try:
                state.put(late, n)
            except ProjectionMisuseError:
                return
            last[late] = n
            n += 1

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        th = threading.Thread(target=hammer, args=(state, f"{record.key}.late"))
        threads.append(th)
        th.start()
        state.put(record.key, record.value)

    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=proj)
    lost: list[str] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for i in range(100):
            t.put("acme", f"e{i}", i)
            threads.pop().join(10)
            late = f"e{i}.late"
            if t.get("acme", late) != last.get(late):
                lost.append(late)
    finally:
        sys.setswitchinterval(interval)
    assert lost == []
