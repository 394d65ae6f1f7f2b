"""Live writes through a pair whose hot tier has bounded atomic batches.

A write whose hot batch would exceed the hot tier's ``max_batch`` (cache mode: its keys;
projection mode: the projection's updates plus the position) used to be committed in
cold, refused by hot, and then stopped every catch-up at it: the pair was wedged until
reopened with a larger bound. It is now refused before anything is written
(BatchTooLargeError, an InvalidArgumentError), and every write within the bound works.
The hot tier is a real memory engine behind the fault-injecting wrapper, refusing any
batch over its bound as NATS does. The same on a real NATS server:
tests/nats/test_nats_tiered_live_bound.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiered_helpers import Bounded, Counting, dump, flaky_repo, fold_counting

from aurora_storage import Repository
from aurora_storage.errors import BatchTooLargeError, InvalidArgumentError
from aurora_storage.tiered import TieredRepository


def _pair(bound: int, projecting: bool) -> tuple[TieredRepository[Any, Any], Bounded]:
    fb = Bounded(bound)
    t: TieredRepository[Any, Any] = TieredRepository(
        hot=Repository(fb), cold=flaky_repo(), projection=Counting() if projecting else None
    )
    return t, fb


def _hot_ops(projecting: bool, n: int) -> int:
    # Counting: a record's "seen" key, the tenant's "n", and the position.
    return n + 2 if projecting else n


def _write(t: TieredRepository[Any, Any], how: str, i: int, n: int) -> None:
    items = [((i, j), {"i": i, "mark": ""}) for j in range(n)]
    if how == "put_many":
        t.put_many("acme", items)
    elif how == "batch":
        with t.batch() as b:
            for k, v in items:
                b.put("acme", k, v)
    else:  # delete_many (cache mode): keys that may or may not exist
        t.delete_many("acme", [(i - 1, j) for j in range(n)])


def _state(t: TieredRepository[Any, Any]) -> tuple[int, Any, Any]:
    return t._p.seq, dump(t.history), dump(t.hot)


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
@pytest.mark.parametrize("how", ["put_many", "batch"])
def test_a_write_over_the_bound_is_refused_with_nothing_written(projecting: bool, how: str) -> None:
    t, fb = _pair(4, projecting)
    with t:
        t.put("acme", "first", {"i": -1, "mark": ""})
        before = _state(t)
        n = 5 if not projecting else 3  # cache: 5 keys; projection: 3 + 1 + POS = 5
        with pytest.raises(InvalidArgumentError, match=r"needs \d+ hot operations.*max_batch"):
            _write(t, how, 0, n)
        assert _state(t) == before  # no change-log entry, nothing in either tier
        assert fb.largest <= 4
        # Never wedged: catch-up has nothing to do, the next write works.
        assert t.catch_up() == 0
        _write(t, how, 1, n - 1)
        assert t.lag == 0


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
def test_the_pair_states_its_bound_and_refuses_one_more(projecting: bool) -> None:
    # capabilities.max_batch_ops: what the command line's import and copy size their
    # batches by. Cache mode: hot's bound (the position is not in the batch of an
    # unguarded hot); projection mode: less the position, one update per record assumed.
    t, fb = _pair(4, projecting)
    with t:
        bound = t.capabilities.max_batch_ops
        assert bound == (3 if projecting else 4)
        if not projecting:
            _write(t, "put_many", 0, bound)  # exactly the bound: written
            assert t.count("acme") == bound
        with pytest.raises(BatchTooLargeError) as info:
            _write(t, "batch", 1, bound + 1)
        assert isinstance(info.value, InvalidArgumentError)  # the type it had before
        assert info.value.limit == 4
        assert info.value.size + info.value.internal > 4
        assert fb.largest <= 4


@settings(max_examples=80, deadline=None)
@given(
    bound=st.integers(2, 8),  # a fresh pair writes 2 hot operations at once
    projecting=st.booleans(),
    writes=st.lists(
        st.tuples(st.sampled_from(["put_many", "batch", "delete_many"]), st.integers(1, 10)),
        min_size=1,
        max_size=12,
    ),
)
def test_writes_are_refused_exactly_when_hot_could_not_apply_them(
    bound: int, projecting: bool, writes: list[tuple[str, int]]
) -> None:
    t, fb = _pair(bound, projecting)
    with t:
        for i, (how, n) in enumerate(writes):
            if projecting and how == "delete_many":
                how = "put_many"  # history is append-only
            before = _state(t)
            if _hot_ops(projecting, n) > bound:
                # Over the pair's stated bound (projection: one update per record plus
                # the position) the pair refuses it before projecting, naming that
                # least; within it, the projection's extra update is over hot's bound.
                need = n + 1 if projecting and n > bound - 1 else _hot_ops(projecting, n)
                with pytest.raises(InvalidArgumentError, match=f"at least {need}"):
                    _write(t, how, i, n)
                assert _state(t) == before
            else:
                _write(t, how, i, n)
            assert t.lag == 0  # never wedged: hot holds every accepted write
        assert fb.largest <= bound
        assert t.catch_up() == 0
        if projecting:
            assert dump(t.hot) == fold_counting(t.history, set())
        else:
            assert dump(t.hot) == dump(t.history)


def test_retry_parked_refuses_a_record_over_the_bound_and_keeps_it_parked() -> None:
    """A parked record whose fixed projection writes more than one bounded hot batch can
    hold is refused by name (ConfigurationError), stays parked and writes nothing; it
    handed the hot tier an oversized batch (its own engine error) before."""
    from aurora_storage.errors import ConfigurationError

    stage = {"now": "written"}

    def projection(record: Any, state: Any) -> None:
        if record.key == "bad":
            if stage["now"] == "poisoned":  # a rebuild with a broken projection parks it
                raise ValueError("poison")
            if stage["now"] == "fixed":
                for j in range(6):  # six updates: with the unparking, over a bound of 4
                    state.put(("bad", j), j)
                return
        state.put(("seen", record.key), True)

    fb = Bounded(4)
    t: TieredRepository[Any, Any] = TieredRepository(
        hot=Repository(fb), cold=flaky_repo(), projection=projection, on_poison="park"
    )
    with t:
        t.put("acme", "bad", {"i": 0})
        t.put("acme", "good", {"i": 1})
        stage["now"] = "poisoned"
        t.rebuild()
        assert len(t.parked("acme")) == 1
        stage["now"] = "fixed"
        before = dump(t.hot)
        with pytest.raises(ConfigurationError, match="max_batch of at least 7"):
            t.retry_parked("acme")
        assert dump(t.hot) == before
        assert len(t.parked("acme")) == 1
        assert fb.largest <= 4
