"""A tiered pair over NATS buckets refuses a write over its stated bound in its terms.

With a cold bucket of ``max_batch=7`` the pair states ``max_batch_ops = 5`` (each write
adds its change-log entry and HEAD to the cold batch), but a write of 6 records reached
the cold bucket, whose own BatchTooLargeError said ``size=8 internal=0`` and advised
batches of at most 7, which fail again. The pair now refuses it before either tier is
written: ``size`` 6 (the caller's records), ``limit`` 7 and ``internal`` 2 (so
``limit - internal`` is the pair's bound), advising writes of at most 5 records; the
same for a hot bucket's bound (less the position the pair writes with every batch).

A cold bucket of ``max_batch=2`` (or a hot one of 1) takes no record beside what the pair
adds, yet the pair stated a bound of 1 and refused a 1-record write: such a pair is
refused at open (ConfigurationError naming the tier and the least max_batch that works).
Real nats-server (the session's), real LMDB hot tier where the hot tier is not NATS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from nats_servers import Server

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import BatchTooLargeError, ConfigurationError
from aurora_storage.testing import BatchTests
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository
from aurora_storage.tiered._core import items
from conftest import delete_bucket

Tiered = TieredRepository[Any, Any]


def _project(record: HistoryRecord, state: ProjectionState) -> None:
    state.put(record.key, record.value)  # one hot update per record


@pytest.fixture
def buckets(nats_server: Server) -> Iterator[list[str]]:
    """Two fresh bucket names (cold, hot), deleted after the test."""
    names = ["c" + uuid.uuid4().hex[:16], "h" + uuid.uuid4().hex[:16]]
    yield names
    for name in names:
        delete_bucket(nats_server.address, name)


def _nats(server: Server, bucket: str, max_batch: int) -> str:
    return f"nats://{server.address}/{bucket}?max_batch={max_batch}"


def _pair(cold: str, hot: str, projecting: bool) -> Tiered:
    return TieredRepository(
        hot=aurora_storage.open(hot),
        cold=aurora_storage.open(cold),
        projection=_project if projecting else None,
    )


def _raw(repo: Repository[Any, Any]) -> list[tuple[bytes, bytes]]:
    return list(items(repo._backend, b"", b"\xff" * 16))


def _write(t: Tiered, how: str, i: int, n: int) -> None:
    records = [((i, j), {"i": i}) for j in range(n)]
    if how == "put_many":
        t.put_many("acme", records)
    elif how == "batch":
        with t.batch() as b:
            for k, v in records:
                b.put("acme", k, v)
    else:
        t.delete_many("acme", [k for k, _ in records])


async def _write_async(t: Tiered, how: str, i: int, n: int) -> None:
    ar = t.as_async()
    records = [((i, j), {"i": i}) for j in range(n)]
    if how == "put_many":
        await ar.put_many("acme", records)
    elif how == "batch":
        async with ar.batch() as b:
            for k, v in records:
                b.put("acme", k, v)
    else:
        await ar.delete_many("acme", [k for k, _ in records])


def _write_either(t: Tiered, how: str, i: int, n: int, sync: bool) -> None:
    if sync:
        _write(t, how, i, n)
    else:
        asyncio.run(_write_async(t, how, i, n))


#: (projection mode?, the write): delete_many only in cache mode (history is append-only)
WRITES = [(False, "put_many"), (False, "batch"), (False, "delete_many")]
WRITES += [(True, "put_many"), (True, "batch")]
WRITE_IDS = ["cache-put_many", "cache-batch", "cache-delete_many"]
WRITE_IDS += ["projection-put_many", "projection-batch"]


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("projecting", "how"),
    WRITES,
    ids=WRITE_IDS,
)
def test_a_write_over_the_cold_buckets_bound_is_refused_by_the_pair(
    nats_server: Server,
    buckets: list[str],
    tmp_path: Path,
    projecting: bool,
    how: str,
    sync: bool,
) -> None:
    cold = _nats(nats_server, buckets[0], 7)
    with _pair(cold, f"lmdb://{tmp_path}/hot", projecting) as t:
        assert t.capabilities.max_batch_ops == 5  # 7 less the change-log entry and HEAD
        t.put_many("acme", [((0, j), {"i": 0}) for j in range(5)])  # exactly: written
        before = (_raw(t.cold), _raw(t.hot), t._p.seq)
        with pytest.raises(BatchTooLargeError) as info:
            _write_either(t, how, 1, 6, sync)
        e = info.value
        assert type(e) is BatchTooLargeError  # the pair's, not the bucket's own
        assert (e.size, e.limit, e.internal) == (6, 7, 2)
        text = str(e)
        assert "at most 5 records" in text
        assert "cold max_batch of at least 8" in text
        assert "nothing was written to either tier" in text
        assert (_raw(t.cold), _raw(t.hot), t._p.seq) == before  # not even a log entry
        _write(t, "put_many", 2, 5)  # following the advice works
        assert t.lag == 0


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
@pytest.mark.parametrize(
    ("cold_max", "hot_max", "bound", "tier", "limit", "internal"),
    [(7, 7, 5, "cold", 7, 2), (9, 5, 4, "hot", 5, 1)],
    ids=["cold-bounds", "hot-bounds"],
)
def test_two_nats_buckets_the_pair_refuses_over_the_tighter_one(
    nats_server: Server,
    buckets: list[str],
    projecting: bool,
    cold_max: int,
    hot_max: int,
    bound: int,
    tier: str,
    limit: int,
    internal: int,
) -> None:
    # A NATS hot tier takes the position in every write's batch (the pair guards it).
    cold = _nats(nats_server, buckets[0], cold_max)
    hot = _nats(nats_server, buckets[1], hot_max)
    with _pair(cold, hot, projecting) as t:
        assert t.capabilities.max_batch_ops == bound
        before = (_raw(t.cold), _raw(t.hot))
        for how in ("put_many", "batch"):
            with pytest.raises(BatchTooLargeError) as info:
                _write(t, how, 1, bound + 1)
            e = info.value
            assert (e.size, e.limit, e.internal) == (bound + 1, limit, internal)
            assert f"the {tier} tier" in str(e)
            assert f"at most {bound} records" in str(e)
        assert (_raw(t.cold), _raw(t.hot)) == before
        _write(t, "put_many", 2, bound)
        assert t.lag == 0


@pytest.mark.parametrize(
    ("cold_max", "hot_max", "tier", "least"),
    [(2, None, "cold", 3), (1, None, "cold", 3), (7, 1, "hot", 2)],
    ids=["cold2", "cold1", "hot1"],
)
@pytest.mark.parametrize(
    ("via_url", "projecting"),
    [(False, False), (False, True), (True, False)],  # a projection is no URL option
    ids=["constructor-cache", "constructor-projection", "url-cache"],
)
def test_a_bucket_too_small_for_one_record_is_refused_at_open(
    nats_server: Server,
    buckets: list[str],
    tmp_path: Path,
    projecting: bool,
    cold_max: int,
    hot_max: int | None,
    tier: str,
    least: int,
    via_url: bool,
) -> None:
    cold = _nats(nats_server, buckets[0], cold_max)
    hot = f"lmdb://{tmp_path}/hot" if hot_max is None else _nats(nats_server, buckets[1], hot_max)
    if via_url:
        url = f"tiered://?hot={quote(hot, safe='')}&cold={quote(cold, safe='')}"
        with pytest.raises(ConfigurationError) as info:
            aurora_storage.open(url)
    else:
        h, c = aurora_storage.open(hot), aurora_storage.open(cold)
        before = (_raw(c), _raw(h))  # each store's metadata record
        with pytest.raises(ConfigurationError) as info:
            TieredRepository(hot=h, cold=c, projection=_project if projecting else None)
        # Nothing written, and the tiers are the caller's again.
        assert (_raw(c), _raw(h)) == before
        c.put("t", "k", 1)
        h.put("t", "k", 1)
        c.close()
        h.close()
    text = str(info.value)
    assert f"the {tier} tier" in text
    assert f"max_batch={[cold_max, hot_max][tier == 'hot']}" in text
    assert f"{tier} max_batch of at least {least}" in text
    assert "nothing was written" in text


@pytest.mark.parametrize("projecting", [False, True], ids=["cache", "projection"])
def test_the_least_buckets_that_work_take_every_write(
    nats_server: Server, buckets: list[str], projecting: bool
) -> None:
    # cold 3: a record, its change-log entry and HEAD; hot 2: a record and the position
    cold = _nats(nats_server, buckets[0], 3)
    hot = _nats(nats_server, buckets[1], 2)
    for _ in range(2):  # and open again
        with _pair(cold, hot, projecting) as t:
            assert t.capabilities.max_batch_ops == 1
            n = t.count("acme")
            t.put_many("acme", [((n, 0), n)])
            with t.batch() as b:
                b.put("acme", (n, 1), n)
            t.put("acme", (n, 2), n)
            t.insert("acme", (n, 3), n)
            if not projecting:
                t.delete("acme", (n, 2))
                t.delete_many("acme", [(n, 3)])
            t.put("globex", "x", 1)
            assert t.drop_tenant("globex") == 1
            t.rebuild()
            assert t.catch_up() == 0
            assert t.lag == 0
            assert list(t.tenants()) == ["acme"]
    with _pair(cold, hot, projecting) as t:
        assert t.count("acme") == (8 if projecting else 4)


class TestNATSPairBatchBound:
    """The conformance suite's batch-bound check over pairs with NATS buckets: a batch
    of exactly ``max_batch_ops`` commits, one more is refused with nothing written."""

    max_batch_checked = BatchTests.max_batch_checked
    test_batch_of_max_batch_ops_commits_and_one_more_is_refused = (
        BatchTests.test_batch_of_max_batch_ops_commits_and_one_more_is_refused
    )

    @pytest.fixture(
        params=[(7, None, False), (7, None, True), (3, 2, False), (9, 5, True)],
        ids=["cold7-lmdb", "cold7-lmdb-projection", "cold3-hot2", "cold9-hot5-projection"],
    )
    def repo(
        self,
        request: pytest.FixtureRequest,
        nats_server: Server,
        buckets: list[str],
        tmp_path: Path,
    ) -> Iterator[Tiered]:
        cold_max, hot_max, projecting = request.param
        cold = _nats(nats_server, buckets[0], cold_max)
        hot = (
            f"lmdb://{tmp_path}/hot" if hot_max is None else _nats(nats_server, buckets[1], hot_max)
        )
        t = _pair(cold, hot, projecting)
        yield t
        t.close()
