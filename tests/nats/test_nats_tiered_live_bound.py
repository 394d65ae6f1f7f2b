"""A live write through a pair whose NATS hot tier bounds its atomic batches.

A write whose hot batch exceeded the bucket's ``max_batch`` (cache mode: a ``put_many``
or batch of more keys; projection mode: a write whose projection makes more updates than
fit with the position) was committed in cold, refused by hot (BatchTooLargeError), and
from then on every catch_up() raised ConfigurationError and every write HotTierError:
the pair was wedged until reopened with a larger max_batch. It is now refused before
anything is written (InvalidArgumentError naming the operations, the bound and the fix),
and the pair writes on. Real nats-server (the session's), real RocksDB cold tier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats_servers import Server

import aurora_storage
from aurora_storage.errors import InvalidArgumentError
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository

Tiered = TieredRepository[Any, Any]

#: the hot bucket's bound in these tests
BOUND = 4


def _project(record: HistoryRecord, state: ProjectionState) -> None:
    # A hot key per record plus a shared one: a write of n records is n + 1 updates.
    state.put(("n",), state.get(("n",), 0) + 1)
    state.put(("seen", *record.key), record.value)


def _pair(server: Server, bucket: str, tmp: Path, projecting: bool) -> Tiered:
    return TieredRepository(
        hot=aurora_storage.open(f"nats://{server.address}/{bucket}?max_batch={BOUND}"),
        cold=aurora_storage.open(f"rocksdb://{tmp}/history"),
        projection=_project if projecting else None,
    )


def _write(t: Tiered, how: str, i: int, n: int) -> None:
    items = [((i, j), {"i": i}) for j in range(n)]
    if how == "put_many":
        t.put_many("acme", items)
    else:
        with t.batch() as b:
            for k, v in items:
                b.put("acme", k, v)


def _state(t: Tiered) -> tuple[int, Any, Any]:
    return t._p.seq, list(t.history.items("acme")), list(t.hot.items("acme"))


@pytest.mark.parametrize("how", ["put_many", "batch"])
@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
def test_a_write_over_max_batch_is_refused_and_the_pair_writes_on(
    nats_server: Server, bucket: str, tmp_path: Path, projecting: bool, how: str
) -> None:
    # Cache: 4 keys + the position (a NATS hot may be written by other processes, so
    # every cache write records it, see tiered/_core.py) over max_batch=4. Projection: 3
    # records make 4 updates + the position = 5. Before the fix both were durable in
    # cold and wedged the pair.
    n = 3 if projecting else BOUND
    with _pair(nats_server, bucket, tmp_path, projecting) as t:
        t.put("acme", (0, 0), {"i": 0})
        before = _state(t)
        with pytest.raises(
            InvalidArgumentError, match=r"needs \d+ hot op.*\(4, its max_batch\).*at least 5"
        ):
            _write(t, how, 1, n)
        assert _state(t) == before  # nothing in either tier, no change-log entry
        assert t.lag == 0
        assert t.catch_up() == 0  # not wedged
        _write(t, how, 2, n - 1)  # within the bound: one hot batch
        t.put("acme", (3, 0), {"i": 3})
        assert t.lag == 0
    # Reopens with the same bound and nothing to catch up.
    with _pair(nats_server, bucket, tmp_path, projecting) as t:
        assert t.recovered_on_open == 0
        hot = dict(t.hot.items("acme"))
        if projecting:
            assert hot[("n",)] == n + 1
        else:
            assert hot == dict(t.history.items("acme"))
        assert (1, 0) not in dict(t.history.items("acme"))


def test_cache_delete_many_over_max_batch_is_refused(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    with _pair(nats_server, bucket, tmp_path, False) as t:
        # Each cache write takes the position too (see above): BOUND - 1 keys at most.
        t.put_many("acme", [((0, j), {"i": j}) for j in range(BOUND - 1)])
        t.put("acme", (1, 0), {"i": 1})
        before = _state(t)
        keys = [(0, j) for j in range(BOUND - 1)] + [(1, 0)]
        with pytest.raises(InvalidArgumentError, match=r"plus the position.*at least 5"):
            t.delete_many("acme", keys)
        assert _state(t) == before
        assert t.delete_many("acme", keys[: BOUND - 1]) == BOUND - 1
        assert t.lag == 0
        assert dict(t.hot.items("acme")) == dict(t.history.items("acme")) == {(1, 0): {"i": 1}}
