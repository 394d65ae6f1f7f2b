"""TieredRepository over memory tiers: both modes, the API, and every crash interleaving
we can name (a crash is simulated by a fault that raises a BaseException inside one tier
call; "reopening" builds a new TieredRepository over the same two stores)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from tiered_helpers import (
    Broken,
    Crash,
    crashed,
    dump,
    event,
    flaky,
    flaky_repo,
    fold_orders,
    iter_events,
    orders,
    present,
    tamper,
)

import aurora_storage
from aurora_storage import Capabilities, Repository
from aurora_storage.errors import (
    ConfigurationError,
    InvalidURLError,
    KeyExistsError,
    NotSupportedError,
    ReadOnlyError,
    RepositoryClosedError,
    StorageError,
)
from aurora_storage.memory._backend import MemoryBackend
from aurora_storage.tiered import (
    AsyncTieredRepository,
    DurableWriteError,
    HistoryRecord,
    HotTierError,
    ProjectionError,
    ProjectionState,
    RebuildProgress,
    TieredRepository,
)
from aurora_storage.tiered._log import LOG, LOG_END

Repo = Repository[Any, Any]


def cache_pair(**kw: Any) -> tuple[TieredRepository[Any, Any], Repo, Repo]:
    hot, cold = flaky_repo(), flaky_repo()
    return TieredRepository(hot=hot, cold=cold, **kw), hot, cold


def proj_pair(**kw: Any) -> tuple[TieredRepository[Any, Any], Repo, Repo]:
    hot, cold = flaky_repo(), flaky_repo()
    return TieredRepository(hot=hot, cold=cold, projection=orders, **kw), hot, cold


def log_size(cold: Repo) -> int:
    return sum(1 for _ in cold.backend.scan_keys(LOG, LOG_END))


def assert_projection_consistent(tiered: TieredRepository[Any, Any]) -> None:
    """Hot holds exactly the history folded from scratch: each record applied once."""
    assert tiered.lag == 0
    assert dump(tiered.hot) == fold_orders(tiered.cold)


def assert_cache_consistent(tiered: TieredRepository[Any, Any]) -> None:
    """Every record in hot has cold's value (hot is a subset of cold, never ahead)."""
    assert tiered.lag == 0
    cold = dump(tiered.cold)
    for tk, value in dump(tiered.hot).items():
        assert cold.get(tk) == value, tk


# --------------------------------------------------------------------------- construction


class _NoBatches(MemoryBackend):
    capabilities = Capabilities(atomic_batches=False)


class _Unordered(MemoryBackend):
    capabilities = Capabilities(ordered_scans=False)


@pytest.mark.parametrize(
    ("which", "backend_cls", "missing"),
    [("hot", _NoBatches, "atomic_batches"), ("cold", _Unordered, "ordered_scans")],
)
def test_construction_names_the_tier_and_missing_capability(
    which: str, backend_cls: type[MemoryBackend], missing: str
) -> None:
    tiers = {"hot": flaky_repo(), "cold": flaky_repo(), which: Repository(backend_cls())}
    with pytest.raises(ConfigurationError, match=rf"the {which} tier .* lacks {missing}"):
        TieredRepository(hot=tiers["hot"], cold=tiers["cold"])


def test_construction_refuses_bad_pairs() -> None:
    a = flaky_repo()
    with pytest.raises(ConfigurationError, match="two different stores"):
        TieredRepository(hot=a, cold=a)
    with pytest.raises(ConfigurationError, match="same codec"):
        TieredRepository(hot=Repository(MemoryBackend(), codec="msgpack"), cold=flaky_repo())
    with pytest.raises(ConfigurationError, match="must be an aurora_storage Repository"):
        TieredRepository(hot={}, cold=flaky_repo())  # type: ignore[arg-type]  # wrong on purpose
    inner, _, _ = cache_pair()
    with pytest.raises(ConfigurationError, match="itself a TieredRepository"):
        TieredRepository(hot=inner, cold=flaky_repo())
    closed = flaky_repo()
    closed.close()
    with pytest.raises(RepositoryClosedError):
        TieredRepository(hot=closed, cold=flaky_repo())
    with pytest.raises(ConfigurationError, match="fill"):
        TieredRepository(hot=flaky_repo(), cold=flaky_repo(), fill="always")  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(ConfigurationError, match="callable"):
        TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=42)  # type: ignore[arg-type]  # wrong on purpose


def test_mixed_codecs_allowed_in_projection_mode() -> None:
    hot: Repository[Any, Any] = Repository(MemoryBackend(), codec="msgpack")
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=flaky_repo(), projection=orders)
    t.put("acme", (1, "e"), event("OrderCreated", "o-1", 5))
    assert t.get("acme", "o-1") == {"events": 1, "total": 5, "status": "created"}
    assert t.codec.name == "msgpack"


def test_hot_with_foreign_data_is_refused() -> None:
    hot = flaky_repo()
    hot.put("acme", "mine", 1)
    with pytest.raises(ConfigurationError, match="did not write"):
        TieredRepository(hot=hot, cold=flaky_repo())
    assert hot.get("acme", "mine") == 1  # untouched


def test_hot_of_another_pair_is_refused() -> None:
    # The hot store records its pair: after that pair is closed, another cold cannot
    # adopt it. (While the pair is open, its stores are refused to a second pair first:
    # StoreLockedError, see test_tiered_store_ownership.py.)
    t1, hot, _ = cache_pair()
    t1.put("acme", "k", 1)
    t1.close()
    with pytest.raises(ConfigurationError, match="another tiered pair"):
        TieredRepository(hot=flaky_repo(flaky(hot).snapshot()), cold=flaky_repo())


def test_every_public_repository_method_is_overridden_or_works() -> None:
    public = [n for n in dir(Repository) if not n.startswith("_")]
    inherited = [n for n in public if getattr(TieredRepository, n) is getattr(Repository, n)]
    # What is inherited must be generic over the overridden methods: check each works.
    # Every public name is the class's own: the event-store primitives refuse
    # (NotSupportedError) rather than run inherited code around the change log.
    assert inherited == [], inherited
    event_store = {"get_versioned", "compare_and_set", "last_sequence", "last_position", "watch"}
    t, _, cold = cache_pair()
    calls: dict[str, Callable[[], object]] = {
        "get_versioned": lambda: t.get_versioned("acme", "k"),
        "compare_and_set": lambda: t.compare_and_set("acme", "k", 1, version=None),
        "last_sequence": lambda: t.last_sequence("acme", "log"),
        "last_position": t.last_position,
        "watch": lambda: t.watch("acme"),
    }
    for name in sorted(event_store):
        with pytest.raises(NotSupportedError):
            calls[name]()
    view = t.tenant("acme")
    view.put("k", 1)
    assert view.get("k") == 1
    assert view.list() == ["k"]
    assert view.count() == 1
    assert t.url is None
    assert t.closed is False
    assert t.backend is cold.backend
    for name in public:
        if inspect.isfunction(getattr(TieredRepository, name, None)):
            assert getattr(TieredRepository, name).__doc__, f"{name} has no docstring"


def test_open_by_url_and_options() -> None:
    url = f"tiered://?hot={quote('memory://', safe='')}&cold={quote('memory://', safe='')}"
    with aurora_storage.open(url) as repo:
        assert isinstance(repo, TieredRepository)
        assert repo.mode == "cache"
        repo.put("acme", "k", {"v": 1})
        assert repo.get("acme", "k") == {"v": 1}
    purl = url + "&projection=orders"  # registered by tiered_helpers
    with aurora_storage.open(purl) as repo:
        assert isinstance(repo, TieredRepository)
        assert repo.projection is orders
        repo.put("acme", (1, "e"), event("OrderPaid", "o-9", 3))
        assert present(repo.get("acme", "o-9"))["status"] == "paid"
    with aurora_storage.open(url, projection=orders, on_poison="park") as repo:
        assert isinstance(repo, TieredRepository)
        assert repo.mode == "projection"
        assert repo.config.on_poison == "park"
    with pytest.raises(ConfigurationError, match="fill='none' applies to cache mode only"):
        aurora_storage.open(url, projection=orders, fill="none")  # a cache-mode option
    with pytest.raises(InvalidURLError, match="valid options: hot, cold"):
        aurora_storage.open(url + "&bogus=1")
    with pytest.raises(InvalidURLError, match="needs option 'cold'"):
        aurora_storage.open(f"tiered://?hot={quote('memory://', safe='')}")
    with pytest.raises(ConfigurationError, match="no projection named 'nothing'"):
        aurora_storage.open(url + "&projection=nothing")


# --------------------------------------------------------------------------- cache mode


def test_cache_write_goes_to_cold_then_hot() -> None:
    t, hot, cold = cache_pair()
    t.put("acme", ("o", 1), {"s": "new"})
    assert cold.get("acme", ("o", 1)) == hot.get("acme", ("o", 1)) == {"s": "new"}
    # cold first: if cold refuses, hot is untouched
    flaky(cold).fail("write", exc=Broken)
    with pytest.raises(Broken):
        t.put("acme", ("o", 2), 2)
    assert not hot.has("acme", ("o", 2))
    assert not cold.has("acme", ("o", 2))
    t.put("acme", ("o", 3), 3)
    assert_cache_consistent(t)


def test_cache_read_falls_back_to_cold_and_fills_hot_by_policy() -> None:
    hot, cold = flaky_repo(), flaky_repo()
    cold.put("acme", "old", "from-history")  # written before the tiering existed
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold)
    assert not hot.has("acme", "old")
    assert t.get("acme", "old") == "from-history"
    assert hot.get("acme", "old") == "from-history"  # fill="read"
    assert t.get("acme", "absent", "dflt") == "dflt"
    assert not hot.has("acme", "absent")
    crashed(t)
    nofill: TieredRepository[Any, Any] = TieredRepository(hot=flaky_repo(), cold=cold, fill="none")
    assert nofill.get("acme", "old") == "from-history"
    assert not nofill.hot.has("acme", "old")
    assert nofill.get_many("acme", ["old", "absent"], 0) == ["from-history", 0]
    assert nofill.has("acme", "old")
    assert not nofill.has("acme", "absent")


def test_cache_fill_failure_does_not_fail_the_read() -> None:
    hot, cold = flaky_repo(), flaky_repo()
    cold.put("acme", "k", 1)
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold)
    flaky(hot).fail("put", exc=Broken)
    assert t.get("acme", "k") == 1
    assert t.get_many("acme", ["k"]) == [1]
    assert hot.get("acme", "k") == 1


def _failing_batch(t: TieredRepository[Any, Any]) -> None:
    with t.batch() as b:
        b.put("globex", "never", 1)
        raise ZeroDivisionError


def test_cache_full_api() -> None:
    t, hot, cold = cache_pair()
    assert t.put_many("acme", {i: i * 10 for i in range(5)}) == 5
    t.insert("acme", 9, 90)
    with pytest.raises(KeyExistsError):
        t.insert("acme", 9, 91)
    assert t.delete("acme", 0) is True
    assert t.delete("acme", 0) is False
    assert t.delete_many("acme", [1, 2, 77]) == 2
    with t.batch() as b:
        b.put("globex", "g", 1)
        b.delete("acme", 3)
    with pytest.raises(ZeroDivisionError):
        _failing_batch(t)
    assert t.list("acme") == [4, 9]
    assert t.count("acme") == 2
    assert list(t.keys("acme", reverse=True)) == [9, 4]
    assert list(t.values("acme")) == [40, 90]
    assert list(t.items("acme", start=5)) == [(9, 90)]
    assert list(t.tenants()) == ["acme", "globex"]
    assert t.get_many("acme", [4, 9, 3]) == [40, 90, None]
    assert dump(hot) == dump(cold)
    assert t.drop_tenant("acme") == 2
    assert list(hot.tenants()) == list(cold.tenants()) == ["globex"]
    stats = t.stats()
    assert stats["mode"] == "cache"
    assert stats["lag"] == 0
    assert "hot" in stats
    t.flush()
    assert t.put_many("acme", []) == 0
    assert t.delete_many("acme", []) == 0
    t.close()
    t.close()
    assert hot.closed
    assert cold.closed
    with pytest.raises(RepositoryClosedError):
        t.put("acme", "k", 1)
    with pytest.raises(RepositoryClosedError):
        t.list("acme")


def test_cache_rebuild_warms_hot_from_cold() -> None:
    hot, cold = flaky_repo(), flaky_repo()
    cold.put_many("acme", {i: i for i in range(50)})
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, rebuild_chunk=7)
    seen: list[RebuildProgress] = []
    assert t.rebuild(progress=seen.append) == 50
    assert dump(hot) == dump(cold)
    assert seen[-1] == RebuildProgress(50, 50, None)
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_log_is_trimmed() -> None:
    t, _, cold = cache_pair(trim_every=10)
    for i in range(95):
        t.put("acme", i, i)
    assert log_size(cold) <= 11
    # the newest entry is kept: it tells a reopened pair the next sequence number
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=t.hot, cold=cold)
    t2.put("acme", "after", 1)
    assert t2.stats()["cold_seq"] == 96


def test_async_twin() -> None:
    async def main() -> None:
        t, _, _ = proj_pair()
        a = AsyncTieredRepository(t)
        await a.put("acme", (1, "e"), event("OrderCreated", "o-1"))
        assert present(await a.get("acme", "o-1"))["status"] == "created"
        assert await a.catch_up() == 0
        assert a.lag == 0
        assert await a.rebuild("acme") == 1
        assert [k async for k in a.keys("acme")] == ["o-1"]
        assert a.sync is t
        await a.close()
        assert t.closed

    asyncio.run(main())


# --------------------------------------------------------------------------- projection


def test_seed_example_projection() -> None:
    t, _hot, _cold = proj_pair()
    t.put("acme", ("2026-11-23T10:00:00Z", 1), event("OrderCreated", "o-1", 30))
    t.put("acme", ("2026-11-23T10:00:05Z", 2), event("OrderPaid", "o-1", 12))
    t.put("globex", ("2026-11-23T10:00:06Z", 3), event("OrderCreated", "o-1"))
    assert t.get("acme", "o-1") == {"status": "paid", "events": 2, "total": 42}
    assert t.get("globex", "o-1") == {"status": "created", "events": 1, "total": 0}
    assert t.list("acme") == ["o-1"]
    assert t.count("acme") == 1
    assert list(t.tenants()) == ["acme", "globex"]
    assert t.history.count("acme") == 2
    assert next(iter(t.history.keys("acme"))) == ("2026-11-23T10:00:00Z", 1)
    assert t.has("acme", "o-1")
    assert not t.has("acme", "o-2")
    assert_projection_consistent(t)


def test_projection_record_and_state() -> None:
    seen: list[HistoryRecord] = []

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        seen.append(record)
        assert state.tenant == record.tenant
        state.put("n", state.get("n", 0) + 1)
        state.put("tmp", 1)
        assert state.has("tmp")
        state.delete("tmp")
        assert not state.has("tmp")

    t: TieredRepository[Any, Any] = TieredRepository(
        hot=flaky_repo(), cold=flaky_repo(), projection=proj
    )
    t.put_many("acme", [(("a", 1), "x"), (("a", 2), "y")])  # same group: read-your-writes
    assert t.get("acme", "n") == 2
    assert not t.has("acme", "tmp")
    assert seen[0] == HistoryRecord("acme", ("a", 1), "x", 1)
    with t.batch() as b:
        b.put("acme", ("a", 3), "z")
        b.put("b", ("a", 1), "w")
    assert t.get("acme", "n") == 3
    assert t.get("b", "n") == 1
    assert seen[-1].seq == 2
    assert seen[-1].tenant == "b"
    assert t.rebuild() == 4
    rebuilt = seen[-1]  # read again: the rebuild appended to ``seen``
    assert rebuilt.seq is None  # rebuild reads history, not the change log
    assert t.get("acme", "n") == 3


def test_history_is_append_only() -> None:
    t, _, _ = proj_pair()
    t.put("acme", (1, "e"), event("OrderCreated", "o-1"))
    with pytest.raises(KeyExistsError, match="append-only"):
        t.put("acme", (1, "e"), event("OrderPaid", "o-1"))
    with pytest.raises(KeyExistsError):
        t.insert("acme", (1, "e"), event("OrderPaid", "o-1"))
    with pytest.raises(KeyExistsError, match="twice"):
        t.put_many("acme", [((2, "e"), event("OrderPaid", "o-1"))] * 2)
    with pytest.raises(ReadOnlyError, match="append-only"):
        t.delete("acme", (1, "e"))
    with pytest.raises(ReadOnlyError):
        t.delete_many("acme", [(1, "e")])
    with pytest.raises(ReadOnlyError), t.batch() as b:
        b.delete("acme", (1, "e"))
    assert present(t.get("acme", "o-1"))["events"] == 1
    assert_projection_consistent(t)


def test_failing_projection_writes_nothing() -> None:
    t, _hot, cold = proj_pair()
    t.put("acme", (1, "e"), event("OrderCreated", "o-1"))
    with pytest.raises(ProjectionError, match=r"KeyError.*OrderLost"):
        t.put("acme", (2, "e"), event("OrderLost", "o-1"))
    assert not cold.has("acme", (2, "e"))
    assert t.lag == 0
    assert_projection_consistent(t)


def test_rebuild_one_tenant_and_progress() -> None:
    t, hot, _cold = proj_pair(rebuild_chunk=10)
    for tenant, key, ev in iter_events(100, ("acme", "globex", "a:b")):
        t.put(tenant, key, ev)
    tamper(hot, "acme", {"o-1": "tampered"})  # a projection gone wrong
    tamper(hot, "globex", {"o-1": "tampered-too"})
    seen: list[RebuildProgress] = []
    assert t.rebuild("acme", progress=seen.append) == 34
    assert seen[-1] == RebuildProgress(34, 34, "acme")
    assert len(seen) == 4  # three full chunks and the end
    assert hot.get("globex", "o-1") == "tampered-too"  # other tenants untouched
    assert t.rebuild() == 100
    assert_projection_consistent(t)


def test_tenant_isolation_in_rebuild() -> None:
    t, _, _ = proj_pair()
    for tenant in ("a", "a\x00b", "a:b", "ab"):
        t.put(tenant, (1, "e"), event("OrderCreated", f"{tenant}-order"))
    t.rebuild()
    for tenant in ("a", "a\x00b", "a:b", "ab"):
        assert t.list(tenant) == [f"{tenant}-order"]
    assert t.drop_tenant("a") == 1
    assert sorted(t.tenants()) == ["a\x00b", "a:b", "ab"]
    assert_projection_consistent(t)


# --------------------------------------------------------------------------- interleavings


@pytest.mark.parametrize("mode", ["cache", "projection"])
def test_crash_in_cold_step_leaves_nothing(mode: str) -> None:
    t, hot, cold = proj_pair() if mode == "projection" else cache_pair()
    t.put("acme", (1, "e"), event("OrderCreated", "o-1"))
    flaky(cold).fail("write")
    with pytest.raises(Crash):
        t.put("acme", (2, "e"), event("OrderPaid", "o-1"))
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=t.projection)
    # cache mode records hot's position lazily and re-applies (idempotently) the
    # entries after the recorded one: here the first put
    assert t2.recovered_on_open == (0 if mode == "projection" else 1)
    assert not t2.cold.has("acme", (2, "e"))
    check = assert_projection_consistent if mode == "projection" else assert_cache_consistent
    check(t2)


def _write_op(t: TieredRepository[Any, Any], op: str) -> None:
    if op == "put":
        t.put("acme", (100, "e"), event("OrderPaid", "o-1", 7))
    elif op == "put_many":
        t.put_many("acme", [((100 + i, "e"), event("OrderPaid", "o-1", i)) for i in range(3)])
    elif op == "batch":
        with t.batch() as b:
            b.put("acme", (100, "e"), event("OrderShipped", "o-2"))
            b.put("globex", (100, "e"), event("OrderShipped", "o-2"))
    elif op == "drop":
        t.drop_tenant("acme")
    else:
        t.delete("acme", (0, "e"))


@pytest.mark.parametrize(
    ("mode", "op"),
    [(m, o) for m in ("cache", "projection") for o in ("put", "put_many", "batch", "drop")]
    + [("cache", "delete")],  # history deletes are refused in projection mode
)
def test_crash_between_cold_and_hot_is_caught_up_on_open(mode: str, op: str) -> None:
    t, hot, cold = proj_pair() if mode == "projection" else cache_pair()
    for tenant, key, ev in iter_events(20):
        t.put(tenant, key, ev)
    flaky(hot).fail_writes()
    with pytest.raises(Crash):
        _write_op(t, op)
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=t.projection)
    # projection: exactly the one entry; cache: every entry after hot's recorded
    # position, re-applied idempotently (20 puts + the crashed one)
    assert t2.recovered_on_open == (1 if mode == "projection" else 21)
    if mode == "projection":
        assert_projection_consistent(t2)
    else:
        assert dump(hot) == dump(cold)
    assert t2.catch_up() == 0  # exactly once: nothing left to apply


@pytest.mark.parametrize("mode", ["cache", "projection"])
def test_hot_failure_at_run_time_is_durable_and_repaired(mode: str) -> None:
    t, hot, cold = proj_pair() if mode == "projection" else cache_pair()
    t.put("acme", (1, "e"), event("OrderCreated", "o-1"))
    flaky(hot).fail_writes(exc=Broken)
    with pytest.raises(HotTierError, match="durable in the cold tier") as info:
        t.put("acme", (2, "e"), event("OrderPaid", "o-1", 5))
    assert info.value.seq == 2
    assert info.value.durable
    assert isinstance(info.value.__cause__, Broken)
    assert cold.has("acme", (2, "e"))
    assert t.lag == 1
    # hot still broken for the next write: that one is durable too, order is kept
    flaky(hot).fail_writes(exc=Broken)
    with pytest.raises(HotTierError):
        t.put("acme", (3, "e"), event("OrderShipped", "o-1"))
    assert t.lag == 2
    assert t.catch_up() == 2
    assert t.lag == 0
    t.put("acme", (4, "e"), event("OrderShipped", "o-2"))
    if mode == "projection":
        assert t.get("acme", "o-1") == {"status": "shipped", "events": 3, "total": 5}
        assert_projection_consistent(t)
    else:
        assert dump(hot) == dump(cold)


def test_hot_failure_repaired_by_next_write() -> None:
    t, hot, _cold = proj_pair()
    flaky(hot).fail("write", exc=Broken)
    with pytest.raises(HotTierError):
        t.put("acme", (1, "e"), event("OrderCreated", "o-1"))
    t.put("acme", (2, "e"), event("OrderPaid", "o-1"))  # catches up first, in order
    assert present(t.get("acme", "o-1"))["events"] == 2
    assert_projection_consistent(t)


def test_projection_failing_in_catch_up_stops_its_tenant_until_retried() -> None:
    calls = {"fail": False}

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        if calls["fail"] and record.value == "bad":
            raise ValueError("cannot project")
        state.put("last", record.value)

    hot, cold = flaky_repo(), flaky_repo()
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=proj)
    flaky(hot).fail("write", exc=Broken)
    with pytest.raises(HotTierError):
        t.put("acme", 1, "bad")
    calls["fail"] = True
    assert t.catch_up() == 1  # the entry is consumed: the record is parked, acme stopped
    assert t.lag == 0
    [parked] = t.parked()
    assert (parked.tenant, parked.key, parked.seq, parked.reason) == ("acme", 1, 1, "raised")
    assert "cannot project" in parked.cause
    assert cold.get("acme", 1) == "bad"
    assert t.get("acme", "last") is None
    calls["fail"] = False  # the projection is fixed
    assert t.retry_parked() == 1
    assert t.get("acme", "last") == "bad"
    assert t.parked() == []


def test_crash_during_catch_up_resumes_exactly_once() -> None:
    t, hot, cold = proj_pair()
    flaky(hot).fail("write", exc=Broken)
    with pytest.raises(HotTierError):
        t.put("acme", (0, "e"), event("OrderCreated", "o-0"))
    # 600 more records reach cold only (hot stays behind: each attempt fails)
    for i in range(1, 601):
        flaky(hot).fail("write", exc=Broken)
        with pytest.raises(HotTierError):
            t.put("acme", (i, "e"), event("OrderPaid", f"o-{i % 3}", 1))
    assert t.lag == 601
    flaky(hot).fail("write", after=1)  # die after the first group of entries
    with pytest.raises(Crash):
        t.catch_up()
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=orders)
    assert 0 < t2.recovered_on_open < 601
    assert_projection_consistent(t2)


@pytest.mark.parametrize("mode", ["cache", "projection"])
@pytest.mark.parametrize(
    "fault",
    [
        ("cold", "delete_range", {}),  # intent logged, cold untouched
        ("cold", "delete_range", {"partial": True}),  # cold half deleted
        ("cold", "put", {}),  # cold deleted, intent not marked done
        ("hot", "write", {}),  # cold done, hot not cleared
    ],
)
def test_crash_inside_drop_tenant(mode: str, fault: tuple[str, str, dict[str, Any]]) -> None:
    t, hot, cold = proj_pair() if mode == "projection" else cache_pair()
    for tenant, key, ev in iter_events(300, ("acme", "globex", "acme-corp")):
        t.put(tenant, key, ev)
    tier, method, kw = fault
    flaky(hot if tier == "hot" else cold).fail(method, **kw)
    with pytest.raises(Crash):
        t.drop_tenant("acme")
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=t.projection)
    assert "acme" not in list(cold.tenants())
    assert "acme" not in list(hot.tenants())
    assert cold.count("globex") == cold.count("acme-corp") == 100
    t2.put("acme", (1000, "e"), event("OrderCreated", "o-new"))
    t2.put("globex", (1000, "e"), event("OrderCreated", "o-new"))
    if mode == "projection":
        assert present(t2.get("acme", "o-new"))["events"] == 1
        assert_projection_consistent(t2)
    else:
        assert dump(hot) == dump(cold)


def test_cold_failure_inside_drop_is_finished_by_the_next_write() -> None:
    t, _hot, cold = proj_pair()
    for tenant, key, ev in iter_events(40):
        t.put(tenant, key, ev)
    flaky(cold).fail("delete_range", exc=Broken, partial=True)
    with pytest.raises(Broken):
        t.drop_tenant("acme")
    t.put("acme", (1000, "e"), event("OrderCreated", "o-new"))  # finishes the drop first
    assert t.history.count("acme") == 1
    assert t.list("acme") == ["o-new"]
    assert_projection_consistent(t)


def test_cold_error_after_apply_does_not_reuse_the_sequence_number() -> None:
    t, hot, cold = cache_pair()
    t.put("acme", 1, 1)
    flaky(cold).fail("write", exc=Broken, applied=True)  # e.g. fsync failed after the write
    with pytest.raises(DurableWriteError, match="durable in history") as info:
        t.put("acme", 2, 2)
    assert info.value.durable
    assert info.value.seq == 2
    assert isinstance(info.value.__cause__, Broken)
    t.put("acme", 3, 3)  # must get seq 3, not overwrite entry 2
    assert t.stats()["cold_seq"] == 3
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold)
    assert t2.recovered_on_open == 0  # the catch-up inside the write of 3 recorded POS
    assert dump(hot) == dump(cold) == {("acme", 1): 1, ("acme", 2): 2, ("acme", 3): 3}


@pytest.mark.parametrize("tenant", [None, "acme"])
@pytest.mark.parametrize("after", [0, 1, 3])
def test_crash_during_rebuild_is_redone_on_open(tenant: str | None, after: int) -> None:
    t, hot, cold = proj_pair(rebuild_chunk=10)
    for tn, key, ev in iter_events(80):
        t.put(tn, key, ev)
    flaky(hot).fail("write", after=after)  # 0: marker; then clearing/chunks
    with pytest.raises(Crash):
        t.rebuild(tenant)
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(
        hot=hot, cold=cold, projection=orders, rebuild_chunk=10
    )
    assert_projection_consistent(t2)


@pytest.mark.parametrize("after", [0, 1, 3])
def test_crash_during_cache_rebuild_leaves_an_exact_cache(after: int) -> None:
    t, hot, cold = cache_pair(rebuild_chunk=10)
    t.put_many("acme", {i: i for i in range(50)})
    tamper(cold, "acme", {i: -i for i in range(50, 80)})  # history the cache never saw
    tamper(hot, "acme", dict.fromkeys(range(80, 85), 0))  # a record cold lacks
    flaky(hot).fail("write", after=after)
    with pytest.raises(Crash):
        t.rebuild()
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, rebuild_chunk=10)
    # The warm-up copies cold's records chunk by chunk, with no shadow: after a kill,
    # hot holds the part it copied, each record with cold's value.
    warmed = dump(hot)
    assert {k: v for k, v in warmed.items() if k[1] < 80} == {
        k: v for k, v in dump(cold).items() if k in warmed
    }
    assert {("acme", i) for i in range(50)} <= warmed.keys()
    assert t2.lag == 0
    assert t2.rebuild() == 80
    assert dump(hot) == dump(cold)


def test_fresh_hot_is_rebuilt_from_history() -> None:
    t, _hot, cold = proj_pair()
    for tn, key, ev in iter_events(30):
        t.put(tn, key, ev)
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(
        hot=flaky_repo(), cold=cold, projection=orders
    )
    assert_projection_consistent(t2)
    # cache mode over an existing cold store: an empty cache, filled by reads
    c0, _, ccold = cache_pair()
    c0.put("acme", (0, "e"), event("OrderCreated", "o-0", 0))
    c: TieredRepository[Any, Any] = TieredRepository(
        hot=flaky_repo(), cold=flaky_repo(flaky(ccold).snapshot())
    )
    assert dump(c.hot) == {}
    assert c.get("acme", (0, "e")) == event("OrderCreated", "o-0", 0)


def test_hot_ahead_of_cold_is_rebuilt() -> None:
    t, hot, cold = proj_pair()
    t.put("acme", (1, "e"), event("OrderCreated", "o-1"))
    old_cold = flaky(cold).snapshot()  # a backup of history taken here
    t.put("acme", (2, "e"), event("OrderPaid", "o-1"))
    restored = flaky_repo(old_cold)
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=restored, projection=orders)
    assert present(t2.get("acme", "o-1"))["status"] == "created"  # never ahead of cold
    assert_projection_consistent(t2)


def test_hot_behind_the_trimmed_log_is_rebuilt() -> None:
    t, hot, cold = proj_pair(trim_every=5)
    t.put("acme", (0, "e"), event("OrderCreated", "o-1"))
    old_hot = flaky(hot).snapshot()  # a backup of the projection taken here
    for i in range(1, 30):
        t.put("acme", (i, "e"), event("OrderPaid", "o-1", 1))
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(
        hot=flaky_repo(old_hot), cold=cold, projection=orders
    )
    assert present(t2.get("acme", "o-1"))["events"] == 30
    assert_projection_consistent(t2)


def test_mode_is_recorded_in_the_store() -> None:
    # Case 5: forgetting projection= on a projection-mode store used to switch it to
    # cache mode and wipe the projection.
    t, hot, cold = proj_pair()
    for tn, key, ev in iter_events(10):
        t.put(tn, key, ev)
    before = dump(hot)
    crashed(t)
    with pytest.raises(ConfigurationError, match="created in projection mode"):
        TieredRepository(hot=hot, cold=cold)
    assert dump(hot) == before  # nothing wiped
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=orders)
    assert t2.recovered_on_open == 0
    assert_projection_consistent(t2)
    c, chot, ccold = cache_pair()
    c.put("acme", 1, 1)
    crashed(c)
    with pytest.raises(ConfigurationError, match="created in cache mode"):
        TieredRepository(hot=chot, cold=ccold, projection=orders)


def test_read_only_tier_makes_a_read_only_pair() -> None:
    class _RO(MemoryBackend):
        capabilities = Capabilities(read_only=True)

    t: TieredRepository[Any, Any] = TieredRepository(hot=flaky_repo(), cold=Repository(_RO()))
    assert t.capabilities.read_only
    with pytest.raises(ReadOnlyError):
        t.put("acme", 1, 1)
    with pytest.raises(StorageError):
        t.rebuild()


def test_replayed_drop_never_deletes_later_history() -> None:
    t, hot, cold = proj_pair()
    t.put("acme", (1, "e"), event("OrderCreated", "o-1"))
    flaky(hot).fail("write", exc=Broken)  # hot cannot apply the drop
    with pytest.raises(HotTierError):
        t.drop_tenant("acme")
    flaky(hot).fail("write", exc=Broken)
    with pytest.raises(HotTierError):
        t.put("acme", (2, "e"), event("OrderCreated", "o-2"))
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=orders)
    assert t2.recovered_on_open == 2
    assert cold.list("acme") == [(2, "e")]  # the drop's replay kept the later record
    assert t2.list("acme") == ["o-2"]
    assert_projection_consistent(t2)


def test_cache_mode_records_hot_position_lazily() -> None:
    t, hot, cold = cache_pair(trim_every=10)
    for i in range(25):
        t.put("acme", i, i)
    # a crash now: at most trim_every entries are re-applied, idempotently
    crashed(t)
    t2: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, trim_every=10)
    assert 0 < t2.recovered_on_open <= 10
    assert dump(hot) == dump(cold)
    t2.close()  # a clean close records the position: nothing to re-apply
    hot2, cold2 = flaky_repo(flaky(hot).snapshot()), flaky_repo(flaky(cold).snapshot())
    assert TieredRepository(hot=hot2, cold=cold2).recovered_on_open == 0
