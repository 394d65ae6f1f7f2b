"""Catch-up on a NATS hot tier respects the bucket's ``max_batch``.

Catch-up applied up to 256 change-log entries in one hot batch with the new position. A
NATS bucket refuses an atomic batch larger than its ``max_batch`` (BatchTooLargeError),
so a pair whose hot tier lagged by more entries than that (after a hot outage, or on
reopen) failed every catch-up: every reopen raised, every write was only durable in
cold. Now a group is committed before it would exceed the bound, each entry still
atomic with the position; a single entry larger than the bound is refused with a
ConfigurationError naming its change-log number and the bound. Real nats-server (the
test's own, stopped for the outage and restarted on its store), real RocksDB cold tier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats_servers import Server

import aurora_storage
from aurora_storage.errors import ConfigurationError
from aurora_storage.tiered import HistoryRecord, HotTierError, ProjectionState, TieredRepository

Tiered = TieredRepository[Any, Any]

#: the hot bucket's bound in these tests: far below the catch-up group of 256
BOUND = 8


def _project(record: HistoryRecord, state: ProjectionState) -> None:
    # A hot key per record plus a shared one: a group's op count is not its entry count.
    state.put(("n",), state.get(("n",), 0) + 1)
    state.put(("seen", *record.key), record.value)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """A server of the test's own (the test stops and restarts it)."""
    own = Server(tmp_path, "own")
    own.start()
    try:
        yield own
    finally:
        own.stop()


def _hot_url(server: Server, bound: int = BOUND) -> str:
    # No reconnect: once the server is gone, every hot call fails at once.
    return f"nats://{server.address}/hot?max_batch={bound}&timeout=1&max_reconnect_attempts=0"


def _pair(server: Server, tmp: Path, projecting: bool, bound: int = BOUND) -> Tiered:
    return TieredRepository(
        hot=aurora_storage.open(_hot_url(server, bound)),
        cold=aurora_storage.open(f"rocksdb://{tmp}/history"),
        projection=_project if projecting else None,
    )


def _lagging(
    server: Server,
    tmp: Path,
    projecting: bool,
    writes: int,
    many: int = 1,
    first: int = 1,
    bound: int = BOUND,
) -> None:
    """A pair (hot ``max_batch=bound``) whose hot tier's server went away while
    ``writes`` writes were made: each is durable in cold only, and hot lags by that many
    entries once the server is back."""
    t = _pair(server, tmp, projecting, bound)
    if first == 1:
        t.put("acme", (0, 0), {"i": 0})  # hot holds the pair's records: a lagging pair
    server.stop()
    for i in range(first, first + writes):
        with pytest.raises(HotTierError):
            t.put_many("acme", [((i, j), {"i": i}) for j in range(many)])
    try:
        t.close()
    except Exception:
        pass  # closing with the hot tier down may report its error; cold is closed
    server.start()


def _expected(t: Tiered, projecting: bool) -> dict[Any, Any]:
    if not projecting:
        return dict(t.history.items("acme"))
    out: dict[Any, Any] = {("n",): 0}
    for key, value in t.history.items("acme"):
        out[("n",)] += 1
        out[("seen", *key)] = value
    return out


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
def test_reopen_catches_up_a_lag_larger_than_max_batch(
    server: Server, tmp_path: Path, projecting: bool
) -> None:
    _lagging(server, tmp_path, projecting, writes=10)
    # Before the fix the reopen raised BatchTooLargeError (a batch of 12+ operations
    # over max_batch=8), on every attempt.
    with _pair(server, tmp_path, projecting) as t:
        assert t.lag == 0
        assert dict(t.hot.items("acme")) == _expected(t, projecting)
        t.put("acme", (100, 0), {"i": 100})  # and the pair writes on
        assert dict(t.hot.items("acme")) == _expected(t, projecting)


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
def test_entries_of_several_records_are_each_atomic_with_the_position(
    server: Server, tmp_path: Path, projecting: bool
) -> None:
    # Entries of 3 records each (cache: 3 ops; projection: 4): a group holds at most
    # two, so catch-up commits in many groups, never splitting an entry.
    _lagging(server, tmp_path, projecting, writes=6, many=3)
    with _pair(server, tmp_path, projecting) as t:
        assert t.lag == 0
        assert dict(t.hot.items("acme")) == _expected(t, projecting)


def test_an_entry_larger_than_max_batch_is_refused_by_name(server: Server, tmp_path: Path) -> None:
    _lagging(server, tmp_path, False, writes=3)
    # Entry 5: one key more than a batch holds. A live write over the bound is refused
    # before cold (test_nats_tiered_live_bound.py), so it is written by a pair whose hot
    # had a larger max_batch, then reopened with the smaller one.
    _lagging(server, tmp_path, False, writes=1, many=BOUND + 1, first=4, bound=2 * BOUND)
    with pytest.raises(ConfigurationError, match=r"change-log entry 5 .*max_batch.* least 10"):
        _pair(server, tmp_path, False)
    # Nothing of entry 5 was applied; the entries before it were.
    hot = aurora_storage.open(_hot_url(server))
    try:
        assert sorted(k for k, _ in hot.items("acme")) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    finally:
        hot.close()


def test_cache_entries_of_exactly_max_batch_keys_catch_up(server: Server, tmp_path: Path) -> None:
    # Entries of max_batch keys (an earlier version's live cache write committed them in
    # one batch; now a NATS hot's cache write takes the position too, so they are
    # written here through a pair with a larger bound); catch-up commits each in one
    # batch (copying cold's values is idempotent: the position follows in the next).
    _lagging(server, tmp_path, False, writes=3, many=BOUND, bound=BOUND + 1)
    with _pair(server, tmp_path, False) as t:
        assert t.lag == 0
        assert dict(t.hot.items("acme")) == _expected(t, False)
