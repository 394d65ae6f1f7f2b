"""A tiered pair refuses a write over its own stated bound, in its own terms.

A pair states ``capabilities.max_batch_ops``: what both tiers take in one write, less the
records the pair adds to each tier's batch (cold: the change-log entry, and HEAD when
cold is create-only; hot: the position when it is in the batch). A write of one record
more was handed to the cold tier, whose own refusal counted the pair's records into
``size`` and advised batches of the cold tier's bound, which fail again. It is now
refused by the pair before either tier is written: ``size`` the caller's records,
``limit`` the bounding tier's ``max_batch``, ``internal`` what the pair adds to it
(``limit - internal`` is the pair's bound, as for every BatchTooLargeError), and the
message advises writes of at most the pair's bound.

A tier bounded so tightly that no record fits beside what the pair adds (a cold
``max_batch`` of 1; a hot one of 1, below the pair's own two-operation hot batches) made
the pair state a bound of 1 that it refused, or fail at open with the engine's error: it
is now refused at open with ConfigurationError naming the tier and the least that works.

The tiers are the real memory engine stating a bound and refusing any batch over it, as
NATS does (the same on real NATS buckets: tests/nats/test_nats_tiered_cold_bound.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_storage import AsyncRepository, Repository
from aurora_storage.backend import Backend, Capabilities, Op, chunk_items
from aurora_storage.errors import BatchTooLargeError, ConfigurationError
from aurora_storage.memory._backend import MemoryBackend
from aurora_storage.testing import BatchTests
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository

Tiered = TieredRepository[Any, Any]


class _Bounded(MemoryBackend):
    """The memory engine stating ``bound`` as its ``max_batch_ops`` and refusing any
    batch over it (nothing written), as a NATS bucket does over its ``max_batch``;
    it counts the batches it was handed and the largest."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.capabilities = Capabilities(
            persistent=False,
            conditional_writes=True,
            sequences=True,
            change_feed=True,
            max_batch_ops=bound,
        )
        self.bound = bound
        self.largest = 0
        self.writes = 0

    def _count(self, n: int) -> None:
        self.writes += 1
        self.largest = max(self.largest, n)
        if n > self.bound:
            raise BatchTooLargeError(
                f"a batch of {n} operations is over {self.bound}", size=n, limit=self.bound
            )

    def write(self, ops: Sequence[Op]) -> None:
        self._count(len(ops))
        super().write(ops)

    def commit(self, ops: Sequence[Op], **kwargs: Any) -> Any:
        self._count(len(ops))
        return super().commit(ops, **kwargs)

    def put(self, key: bytes, value: bytes) -> None:
        self._count(1)
        super().put(key, value)

    def delete(self, key: bytes) -> bool:
        self._count(1)
        return super().delete(key)

    def delete_range(self, start: bytes, stop: bytes) -> int:
        return Backend.delete_range(self, start, stop)  # batches within the bound


def _within(*backends: Backend) -> None:
    """No bounded tier was ever handed a batch over its bound."""
    for b in backends:
        if isinstance(b, _Bounded):
            assert b.largest <= b.bound, (b.largest, b.bound)


def _tier(bound: int | None) -> Backend:
    return MemoryBackend() if bound is None else _Bounded(bound)


def _project(record: HistoryRecord, state: ProjectionState) -> None:
    # One hot update per record: the pair's stated bound is then exact.
    state.put(record.key, record.value)


def _pair(cold: Backend, hot: Backend, projecting: bool) -> Tiered:
    return TieredRepository(
        hot=Repository(hot), cold=Repository(cold), projection=_project if projecting else None
    )


def _raw(backend: Backend) -> list[tuple[bytes, bytes]]:
    return list(chunk_items(backend.scan_chunks(b"", b"\xff" * 16)))


def _write(t: Tiered, how: str, i: int, n: int) -> None:
    items = [((i, j), {"i": i}) for j in range(n)]
    if how == "put_many":
        t.put_many("acme", items)
    elif how == "batch":
        with t.batch() as b:
            for k, v in items:
                b.put("acme", k, v)
    else:  # delete_many (cache mode)
        t.delete_many("acme", [k for k, _ in items])


async def _write_async(t: Tiered, how: str, i: int, n: int) -> None:
    ar: AsyncRepository[Any, Any] = t.as_async()
    items = [((i, j), {"i": i}) for j in range(n)]
    if how == "put_many":
        await ar.put_many("acme", items)
    elif how == "batch":
        async with ar.batch() as b:
            for k, v in items:
                b.put("acme", k, v)
    else:
        await ar.delete_many("acme", [k for k, _ in items])


def _write_either(t: Tiered, how: str, i: int, n: int, sync: bool) -> None:
    if sync:
        _write(t, how, i, n)
    else:
        asyncio.run(_write_async(t, how, i, n))


# (cold bound, hot bound) -> (which tier bounds the pair, its max_batch, what it adds)
CASES = {
    "cold": ((7, None), "cold", 7),
    "hot": ((None, 5), "hot", 5),
    "both": ((6, 6), "cold", 6),  # cold adds its change-log entry: 5 < hot's 6 (cache)
}


#: (projection mode?, the write): delete_many only in cache mode (history is append-only)
WRITES = [(False, "put_many"), (False, "batch"), (False, "delete_many")]
WRITES += [(True, "put_many"), (True, "batch")]
WRITE_IDS = ["cache-put_many", "cache-batch", "cache-delete_many"]
WRITE_IDS += ["projection-put_many", "projection-batch"]


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
@pytest.mark.parametrize(("projecting", "how"), WRITES, ids=WRITE_IDS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_write_over_the_pairs_bound_is_refused_by_the_pair_with_nothing_written(
    case: str, projecting: bool, how: str, sync: bool
) -> None:
    (cb, hb), tier, limit = CASES[case]
    cold, hot = _tier(cb), _tier(hb)
    with _pair(cold, hot, projecting) as t:
        bound = t.capabilities.max_batch_ops
        # What the pair adds: cold its change-log entry; an unguarded hot the position
        # only in projection mode. ("both", projection: 5 either way; cold is named.)
        added = 1 if tier == "cold" else int(projecting)
        assert bound == limit - added
        t.put_many("acme", [((0, j), {"i": 0}) for j in range(bound)])  # exactly: written
        before = (_raw(cold), _raw(hot), t._p.seq)
        writes = [getattr(b, "writes", 0) for b in (cold, hot)]
        with pytest.raises(BatchTooLargeError) as info:
            _write_either(t, how, 1, bound + 1, sync)
        e = info.value
        assert type(e) is BatchTooLargeError  # the pair's, not a tier's engine error
        assert (e.size, e.limit, e.internal) == (bound + 1, limit, added)
        assert e.limit - e.internal == bound  # the advice every BatchTooLargeError gives
        assert f"at most {bound} records" in str(e)
        assert f"{tier} tier" in str(e)
        assert f"max_batch of at least {bound + 1 + added}" in str(e)
        assert "nothing was written to either tier" in str(e)
        # Neither tier was handed a batch, and nothing changed.
        assert [getattr(b, "writes", 0) for b in (cold, hot)] == writes
        assert (_raw(cold), _raw(hot), t._p.seq) == before
        # Following the advice works.
        _write(t, "put_many", 2, bound)
        assert t.lag == 0
    _within(cold, hot)


def test_both_tiers_over_the_bound_name_both_fixes() -> None:
    """A write over both tiers' bounds says the least max_batch of each: raising only
    the one named first would meet the other's refusal next."""
    with _pair(_Bounded(7), _Bounded(5), projecting=False) as t:
        assert t.capabilities.max_batch_ops == 5
        with pytest.raises(BatchTooLargeError) as info:
            _write(t, "put_many", 0, 7)
        assert (info.value.size, info.value.limit, info.value.internal) == (7, 5, 0)
        text = str(info.value)
        assert "a hot max_batch of at least 7" in text
        assert "a cold max_batch of at least 8" in text


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
@pytest.mark.parametrize(
    ("cold", "hot", "named"),
    [(1, None, ["cold"]), (None, 1, ["hot"]), (1, 1, ["cold", "hot"])],
    ids=["cold-1", "hot-1", "both-1"],
)
def test_a_tier_too_small_for_one_record_is_refused_at_open(
    cold: int | None, hot: int | None, named: list[str], projecting: bool
) -> None:
    cb, hb = _tier(cold), _tier(hot)
    c: Repository[Any, Any] = Repository(cb)
    h: Repository[Any, Any] = Repository(hb)
    before = (_raw(cb), _raw(hb))  # each store's metadata record
    with pytest.raises(ConfigurationError) as info:
        TieredRepository(hot=h, cold=c, projection=_project if projecting else None)
    text = str(info.value)
    for tier in named:  # the least that works: cold 2 (the record + its change-log
        # entry), hot 2 (the pair's own hot batches hold two operations)
        assert f"the {tier} tier" in text
        assert f"{tier} max_batch of at least 2" in text
    assert "nothing was written" in text
    # Refused before anything was written, and the tiers are the caller's again.
    assert (_raw(cb), _raw(hb)) == before
    c.put("t", "k", 1)
    h.put("t", "k", 1)
    c.close()
    h.close()


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
@pytest.mark.parametrize(("cold", "hot"), [(2, None), (None, 2), (2, 2)])
def test_the_least_bounds_that_work_take_every_write(
    cold: int | None, hot: int | None, projecting: bool
) -> None:
    cb, hb = _tier(cold), _tier(hot)
    with _pair(cb, hb, projecting) as t:
        bound = t.capabilities.max_batch_ops
        assert bound is not None
        assert bound >= 1
        t.put_many("acme", [(("a", j), j) for j in range(bound)])
        with t.batch() as b:
            for j in range(bound):
                b.put("acme", ("b", j), j)
        t.put("acme", "c", 1)
        t.insert("acme", "d", 1)
        if not projecting:
            t.delete("acme", "c")
            t.delete_many("acme", [("a", 0)])
        t.put("globex", "x", 1)
        assert t.drop_tenant("globex") == 1
        t.rebuild()
        t.rebuild("acme")
        assert t.catch_up() == 0
        assert t.lag == 0
        assert list(t.tenants()) == ["acme"]
    _within(cb, hb)


@settings(max_examples=60, deadline=None)
@given(
    cold=st.none() | st.integers(2, 8),
    hot=st.none() | st.integers(2, 8),
    projecting=st.booleans(),
    writes=st.lists(
        st.tuples(st.sampled_from(["put_many", "batch", "delete_many"]), st.integers(1, 9)),
        min_size=1,
        max_size=10,
    ),
)
def test_writes_are_refused_exactly_over_the_stated_bound(
    cold: int | None, hot: int | None, projecting: bool, writes: list[tuple[str, int]]
) -> None:
    cb, hb = _tier(cold), _tier(hot)
    with _pair(cb, hb, projecting) as t:
        bound = t.capabilities.max_batch_ops
        stated = [b - a for b, a in ((cold, 1), (hot, int(projecting))) if b is not None]
        assert bound == (min(stated) if stated else None)
        for i, (how, n) in enumerate(writes):
            if projecting and how == "delete_many":
                how = "put_many"
            before = (_raw(cb), _raw(hb))
            if bound is not None and n > bound:
                with pytest.raises(BatchTooLargeError) as info:
                    _write(t, how, i, n)
                e = info.value
                assert e.size == n
                assert e.limit - e.internal == bound
                assert (_raw(cb), _raw(hb)) == before
            else:
                _write(t, how, i, n)
            assert t.lag == 0
        if projecting:
            assert dict(t.items("acme")) == dict(t.history.items("acme"))
        else:
            assert list(t.hot.items("acme")) == list(t.cold.items("acme"))
    _within(cb, hb)


class TestBoundedPairBatchBound:
    """The conformance suite's batch-bound check (a batch of exactly
    ``max_batch_ops`` commits, one more is refused with nothing written) over pairs
    with bounded tiers."""

    max_batch_checked = BatchTests.max_batch_checked
    test_batch_of_max_batch_ops_commits_and_one_more_is_refused = (
        BatchTests.test_batch_of_max_batch_ops_commits_and_one_more_is_refused
    )

    @pytest.fixture(
        params=[
            (7, None, False),
            (None, 5, False),
            (None, 5, True),
            (2, None, True),
            (3, 2, False),
        ],
        ids=["cold7", "hot5", "hot5-projection", "cold2-projection", "cold3-hot2"],
    )
    def repo(self, request: pytest.FixtureRequest) -> Any:
        cold, hot, projecting = request.param
        t = _pair(_tier(cold), _tier(hot), projecting)
        yield t
        t.close()
