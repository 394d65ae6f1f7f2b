"""Catch-up over a hot tier with bounded atomic batches, for any lag and any bound.

The hot tier is a real memory engine behind the fault-injecting wrapper, declaring a
``max_batch`` (as a NATS bucket does) and refusing any batch over it, as NATS does. Hot
fails every commit while the writes are made (each durable in cold only), then heals:
catch-up must bring hot exactly to cold (each record applied once) without ever handing
it a batch over the bound. The same on a real NATS server:
tests/nats/test_nats_tiered_catchup_bound.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiered_helpers import Bounded, Counting, crashed, dump, flaky_repo, fold_counting

from aurora_storage import Repository
from aurora_storage.errors import ConfigurationError
from aurora_storage.tiered import HotTierError, TieredRepository
from aurora_storage.tiered._log import POS


def _lagging(
    bound: int, entries: list[int], projecting: bool
) -> tuple[TieredRepository[Any, Any], Bounded, Counting]:
    fb = Bounded(bound)
    proj = Counting()
    t: TieredRepository[Any, Any] = TieredRepository(
        hot=Repository(fb), cold=flaky_repo(), projection=proj if projecting else None
    )
    for i, n in enumerate(entries):
        fb.fail(when="before")  # the write's hot commit (or its catch-up's) fails
        with pytest.raises(HotTierError):
            t.put_many("acme", [((i, j), {"i": i, "mark": ""}) for j in range(n)])
    fb.heal()
    fb.largest = 0
    return t, fb, proj


@settings(max_examples=60, deadline=None)
@given(
    bound=st.integers(7, 20),
    entries=st.lists(st.integers(1, 5), min_size=1, max_size=40),
    projecting=st.booleans(),
)
def test_catch_up_never_exceeds_the_bound(bound: int, entries: list[int], projecting: bool) -> None:
    # Projection (Counting): an entry of n records is n + 1 hot operations, plus the
    # position: at most 7, so every entry fits; cache mode: n.
    t, fb, _ = _lagging(bound, entries, projecting)
    assert t.catch_up() == len(entries)
    assert fb.largest <= bound
    assert t.lag == 0
    if projecting:
        assert dump(t.hot) == fold_counting(t.history, set())
    else:
        assert dict(t.hot.items("acme")) == dict(t.history.items("acme"))


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
def test_an_entry_over_the_bound_is_refused_and_hot_stays_before_it(projecting: bool) -> None:
    # Entry 3 holds 8 records: cache 8 operations, projection 9 (+ the position). A live
    # write over the bound is refused before cold (test_tiered_live_write_bound.py), so
    # such an entry comes from a pair that had a larger bound, reopened with a smaller.
    t, fb, _ = _lagging(10, [1, 2, 8, 1], projecting)
    crashed(t)
    fb.max_batch = 7
    fb.largest = 0

    def reopen() -> TieredRepository[Any, Any]:
        proj = Counting() if projecting else None
        return TieredRepository(hot=t.hot, cold=t.cold, projection=proj)

    with pytest.raises(ConfigurationError, match=r"change-log entry 3 .*max_batch"):
        reopen()
    assert fb.largest <= 7
    # Entries 1 and 2 applied, 3 and 4 wait (cache mode records its position lazily:
    # it may replay entries 1 and 2, which is harmless, so only projection mode's is read).
    if projecting:
        assert (fb.get(POS) or b"")[:8] == (2).to_bytes(8, "big")  # then its nonce
    fb.max_batch = 10  # the pair reopened with a larger bound applies it
    with reopen() as again:
        assert again.lag == 0
        assert fb.largest <= 10
        if projecting:
            assert dump(again.hot) == fold_counting(again.history, set())
        else:
            assert dict(again.hot.items("acme")) == dict(again.history.items("acme"))
