"""A tiered pair's claim of its stores waits for the writes already in flight.

A write through a repository checks that its store is not claimed when it starts and
commits later (a big ``put_many`` encodes every value first). Before the fix a write
that had passed the check still landed after a tiered pair had opened and claimed the
store - after the pair's own first write, too: a foreign value in the projection, a
history record overwritten without a change-log entry. Now the claim sets the refusal,
then waits until no repository of the store has a write in flight (bounded by
``_owners.CLAIM_WAIT``; past it, or for a native-async write awaited on the claiming
thread's own loop, the claim is undone with ``StoreLockedError``).

The write is held inside its engine call by an observability tracer that blocks on an
``Event`` (real LMDB and RocksDB stores underneath, no engine mocked). The held write
is let go from ``_owners._pause``, which a claim calls only while it waits for a write
in flight: a claim that does not wait never lets it go, and the test sees the write
land after the pair opened. Deterministic both ways, no timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage import Repository, _owners
from aurora_storage._async import AsyncBatch, AsyncRepository, AsyncTenantView
from aurora_storage._batch import Batch
from aurora_storage._eventstore import insert_append
from aurora_storage._view import TenantView
from aurora_storage.backend import AsyncBackend, Chunk, Op
from aurora_storage.errors import KeyExistsError, ReadOnlyError, StoreLockedError
from aurora_storage.memory._backend import MemoryBackend
from aurora_storage.observability import instrument
from aurora_storage.tiered import TieredRepository

T = "plain"
#: The instrumented backend's names of the engine calls that write.
WRITE_OPS = {"put", "delete", "insert", "write", "commit", "delete_range"}
#: Longest wait for a thread of a test to reach its next step (a safety net for a broken
#: build: no assertion is about time).
STEP = 60.0


# ---------------------------------------------------------------------- the held write


class _Span:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class Hold:
    """An OpenTelemetry tracer provider and tracer whose first span of an engine write
    blocks until :attr:`go` is set: the write has passed every check and waits right
    before its engine call."""

    def __init__(self, repo: Repository[Any, Any]) -> None:
        self.repo = repo
        self.entered = threading.Event()
        self.go = threading.Event()
        self.recorded: bool | None = None
        self._armed = True

    def get_tracer(self, *args: Any, **kwargs: Any) -> Hold:
        return self

    def start_span(self, name: str, **kwargs: Any) -> _Span:
        if kwargs["attributes"]["db.operation.name"] in WRITE_OPS and self._armed:
            self._armed = False
            # The write being held is recorded as in flight by its repository.
            repo = self.repo
            self.recorded = bool(getattr(repo, "_writing", ()) or getattr(repo, "_awaiting", ()))
            self.entered.set()
            if not self.go.wait(STEP):
                raise RuntimeError("the held write was never let go")
        return _Span()


class Pauses:
    """The pauses of a claim that waits for writes in flight (``_owners._pause``):
    each runs :attr:`let_go` (releasing the held writes) and is counted."""

    def __init__(self) -> None:
        self.let_go: list[Callable[[], object]] = []
        self.count = 0


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> Pauses:
    got = Pauses()
    sleep = time.sleep

    def pause(seconds: float) -> None:
        got.count += 1
        for let_go in got.let_go:
            let_go()
        sleep(seconds)

    # raising=False: a build without the wait has no _pause (and never lets go).
    monkeypatch.setattr(_owners, "_pause", pause, raising=False)
    return got


class Writer(threading.Thread):
    """Runs one write; keeps its error, if any, for the test."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as exc:  # handed to the test
            self.error = exc


# ---------------------------------------------------------------------- the stores


def count(record: Any, state: Any) -> None:
    state.put("n", state.get("n", 0) + 1)


def last(record: Any, state: Any) -> None:
    state.put("last", record.value["by"])


@dataclass
class Stores:
    hot: str
    cold: str

    def url(self, tier: str) -> str:
        return self.hot if tier == "hot" else self.cold

    def pair(self, projection: Any = count) -> TieredRepository[Any, Any]:
        return TieredRepository(
            hot=aurora_storage.open(self.hot),
            cold=aurora_storage.open(self.cold),
            projection=projection,
        )


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    # LMDB with sync=true declares blocking writes: its async writes run in a worker
    # thread; RocksDB's run inline on the loop.
    return Stores(f"lmdb://{tmp_path}/hot?sync=true", f"rocksdb://{tmp_path}/cold")


def _held(repo: Repository[Any, Any]) -> Hold:
    hold = Hold(repo)
    instrument(repo, tracer_provider=hold, metrics=False)
    return hold


# ---------------------------------------------------------------------- every write path

Recipe = Callable[[Repository[Any, Any]], Any]


def _run(coro: Callable[[Repository[Any, Any]], Coroutine[Any, Any, Any]]) -> Recipe:
    return lambda repo: asyncio.run(coro(repo))


def _version(repo: Repository[Any, Any]) -> Any:
    return repo.get_versioned(T, "seed")[1]


async def _abatch(repo: Repository[Any, Any], add: Callable[[AsyncBatch[Any, Any]], Any]) -> None:
    async with repo.as_async().batch() as b:
        add(b)


async def _abatch_commit(repo: Repository[Any, Any]) -> None:
    b = repo.as_async().batch()
    b.put(T, "k", 1)
    await b.commit()


def _batch(repo: Repository[Any, Any], add: Callable[[Batch[Any, Any]], Any]) -> None:
    with repo.batch() as b:
        add(b)


def _batch_commit(repo: Repository[Any, Any]) -> None:
    b = repo.batch()
    b.put(T, "k", 1)
    b.commit()


#: Every public write of the API, as ``(class, method) -> a write through it`` (of
#: tenant T, which holds ``"seed": 0`` beforehand). test_every_write_is_listed keeps it
#: complete.
RECIPES: dict[tuple[Any, str], Recipe] = {
    (Repository, "put"): lambda r: r.put(T, "k", 1),
    (Repository, "put_many"): lambda r: r.put_many(T, [("k", 1), ("j", 2)]),
    (Repository, "insert"): lambda r: r.insert(T, "k", 1),
    (Repository, "delete"): lambda r: r.delete(T, "seed"),
    (Repository, "delete_many"): lambda r: r.delete_many(T, ["seed", "k"]),
    (Repository, "drop_tenant"): lambda r: r.drop_tenant(T),
    (Repository, "compare_and_set"): lambda r: r.compare_and_set(T, "seed", 1, version=_version(r)),
    (Batch, "put"): lambda r: _batch(r, lambda b: b.put(T, "k", 1)),
    (Batch, "delete"): lambda r: _batch(r, lambda b: b.delete(T, "seed")),
    (Batch, "insert"): lambda r: _batch(r, lambda b: b.insert(T, "k", 1)),
    (Batch, "compare_and_set"): lambda r: _batch(
        r, lambda b: b.compare_and_set(T, "k", 1, version=None)
    ),
    (Batch, "append"): lambda r: _batch(r, lambda b: b.append(T, "seq", 1)),
    (Batch, "commit"): _batch_commit,
    (TenantView, "put"): lambda r: r.tenant(T).put("k", 1),
    (TenantView, "put_many"): lambda r: r.tenant(T).put_many([("k", 1)]),
    (TenantView, "insert"): lambda r: r.tenant(T).insert("k", 1),
    (TenantView, "delete"): lambda r: r.tenant(T).delete("seed"),
    (TenantView, "delete_many"): lambda r: r.tenant(T).delete_many(["seed"]),
    (TenantView, "drop"): lambda r: r.tenant(T).drop(),
    (TenantView, "compare_and_set"): lambda r: r.tenant(T).compare_and_set("k", 1, version=None),
    (AsyncRepository, "put"): _run(lambda r: r.as_async().put(T, "k", 1)),
    (AsyncRepository, "put_many"): _run(lambda r: r.as_async().put_many(T, [("k", 1)])),
    (AsyncRepository, "insert"): _run(lambda r: r.as_async().insert(T, "k", 1)),
    (AsyncRepository, "delete"): _run(lambda r: r.as_async().delete(T, "seed")),
    (AsyncRepository, "delete_many"): _run(lambda r: r.as_async().delete_many(T, ["seed"])),
    (AsyncRepository, "drop_tenant"): _run(lambda r: r.as_async().drop_tenant(T)),
    (AsyncRepository, "compare_and_set"): _run(
        lambda r: r.as_async().compare_and_set(T, "k", 1, version=None)
    ),
    (AsyncBatch, "put"): _run(lambda r: _abatch(r, lambda b: b.put(T, "k", 1))),
    (AsyncBatch, "delete"): _run(lambda r: _abatch(r, lambda b: b.delete(T, "seed"))),
    (AsyncBatch, "insert"): _run(lambda r: _abatch(r, lambda b: b.insert(T, "k", 1))),
    (AsyncBatch, "compare_and_set"): _run(
        lambda r: _abatch(r, lambda b: b.compare_and_set(T, "k", 1, version=None))
    ),
    (AsyncBatch, "append"): _run(lambda r: _abatch(r, lambda b: b.append(T, "seq", 1))),
    (AsyncBatch, "commit"): _run(_abatch_commit),
    (AsyncTenantView, "put"): _run(lambda r: r.as_async().tenant(T).put("k", 1)),
    (AsyncTenantView, "put_many"): _run(lambda r: r.as_async().tenant(T).put_many([("k", 1)])),
    (AsyncTenantView, "insert"): _run(lambda r: r.as_async().tenant(T).insert("k", 1)),
    (AsyncTenantView, "delete"): _run(lambda r: r.as_async().tenant(T).delete("seed")),
    (AsyncTenantView, "delete_many"): _run(lambda r: r.as_async().tenant(T).delete_many(["seed"])),
    (AsyncTenantView, "drop"): _run(lambda r: r.as_async().tenant(T).drop()),
    (AsyncTenantView, "compare_and_set"): _run(
        lambda r: r.as_async().tenant(T).compare_and_set("k", 1, version=None)
    ),
    # The eventsourcing module's write (its direct path: one Backend.commit).
    (insert_append, "direct path"): lambda r: insert_append(
        r, T, ("agg",), [("e", [1, 2])], [{"a": 1}, {"a": 2}], "seq", [{"n": 1}, {"n": 2}]
    ),
}

#: The public methods that write nothing, by class.
NOT_WRITES = {
    "as_async",
    "batch",
    "close",
    "count",
    "discard",
    "flush",
    "get",
    "get_many",
    "get_versioned",
    "has",
    "items",
    "keys",
    "last_position",
    "last_sequence",
    "list",
    "stats",
    "tenant",
    "tenants",
    "values",
    "verify",
    "watch",
}


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


@pytest.mark.parametrize(
    "cls", [Repository, Batch, TenantView, AsyncRepository, AsyncBatch, AsyncTenantView]
)
def test_every_write_is_listed(cls: type) -> None:
    # A public method that is neither a read nor in RECIPES is a write path this file
    # does not prove covered: add its recipe (and make it record its write in flight).
    writes = {m for c, m in RECIPES if c is cls}
    assert _public(cls) - NOT_WRITES == writes


def _snapshot(repo: Repository[Any, Any]) -> list[tuple[Any, Any]]:
    return list(repo.items(T))


@pytest.mark.parametrize("tier", ["hot", "cold"])
@pytest.mark.parametrize("recipe", list(RECIPES), ids=lambda r: f"{r[0].__name__}.{r[1]}")
def test_claim_waits_for_the_write_in_flight(
    stores: Stores, pauses: Pauses, tier: str, recipe: tuple[Any, str]
) -> None:
    write = RECIPES[recipe]
    stores.pair().close()  # the stores exist, and belong to no one
    plain = aurora_storage.open(stores.url(tier))  # another repository on the store
    plain.put(T, "seed", 0)
    before = _snapshot(plain)
    hold = _held(plain)
    pauses.let_go.append(hold.go.set)
    writer = Writer(lambda: write(plain))
    writer.start()
    assert hold.entered.wait(STEP)
    pair = stores.pair()  # its claim lets the held write go, and waits for it
    try:
        reader = getattr(pair, tier)
        opened = _snapshot(reader)
        hold.go.set()  # (a claim that did not wait left it held until now)
        writer.join(STEP)
        assert not writer.is_alive()
        assert writer.error is None
        assert pauses.count, "the claim did not wait for the write in flight"
        assert opened != before, "the write in flight had not landed when the pair opened"
        assert _snapshot(reader) == opened, "a write landed after the pair opened"
        assert hold.recorded
        # A write begun after the claim is refused, and writes nothing.
        with pytest.raises(ReadOnlyError, match="tier of the tiered repository"):
            write(plain)
        assert _snapshot(reader) == opened
    finally:
        hold.go.set()
        pair.close()
        plain.close()


# ---------------------------------------------------------------------- the breaker's cases


def test_a_foreign_write_in_flight_lands_before_the_pair_projects(
    stores: Stores, pauses: Pauses
) -> None:
    # The hot store: a put_many in flight through another repository ends by
    # overwriting the projection's counter. It lands before the pair opens (the pair
    # then counts on from it), never after the pair's own write.
    pair = stores.pair()
    pair.put("acme", "e1", {})
    pair.close()
    plain_hot = aurora_storage.open(stores.hot)
    hold = _held(plain_hot)
    pauses.let_go.append(hold.go.set)
    items = [(("junk", i), i) for i in range(100)] + [("n", -999)]
    writer = Writer(lambda: plain_hot.put_many("acme", items))
    writer.start()
    assert hold.entered.wait(STEP)
    pair = stores.pair()
    try:
        pair.put("acme", "e2", {})
        hold.go.set()
        writer.join(STEP)
        assert writer.error is None
        assert pair.history.count("acme") == 2
        assert pair.get("acme", "n") == -998  # not -999: nothing landed after e2
    finally:
        hold.go.set()
        pair.close()
        plain_hot.close()


def test_a_foreign_history_write_in_flight_is_seen_by_the_pair(
    stores: Stores, pauses: Pauses
) -> None:
    # The cold store: a put_many in flight through another repository writes history
    # record e2. It lands before the pair opens, so the pair's own e2 is refused
    # (history is append-only), instead of being projected and then overwritten in
    # cold without a change-log entry.
    pair = stores.pair(last)
    pair.put("acme", "e1", {"by": "pair"})
    pair.close()
    plain_cold = aurora_storage.open(stores.cold)
    hold = _held(plain_cold)
    pauses.let_go.append(hold.go.set)
    items = [(("junk", i), {"by": "plain"}) for i in range(100)] + [("e2", {"by": "plain"})]
    writer = Writer(lambda: plain_cold.put_many("acme", items))
    writer.start()
    assert hold.entered.wait(STEP)
    pair = stores.pair(last)
    try:
        with pytest.raises(KeyExistsError, match="history record 'e2'"):
            pair.put("acme", "e2", {"by": "pair"})
        hold.go.set()
        writer.join(STEP)
        assert writer.error is None
        assert pair.history.get("acme", "e2") == {"by": "plain"}
        assert pair.get("acme", "last") == "pair"  # e1's; e2 was never projected
    finally:
        hold.go.set()
        pair.close()
        plain_cold.close()


# ---------------------------------------------------------------------- the bounded wait


def test_a_write_still_in_flight_after_the_bound_undoes_the_claim(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores.pair().close()
    paused: list[float] = []
    monkeypatch.setattr(_owners, "_pause", paused.append)  # lets nothing go
    monkeypatch.setattr(_owners, "CLAIM_WAIT", 0.0)
    plain = aurora_storage.open(stores.hot)
    hold = _held(plain)
    writer = Writer(lambda: plain.put(T, "k", "held"))
    writer.start()
    assert hold.entered.wait(STEP)
    hot, cold = aurora_storage.open(stores.hot), aurora_storage.open(stores.cold)
    try:
        with pytest.raises(StoreLockedError) as caught:
            TieredRepository(hot=hot, cold=cold, projection=count)
        message = str(caught.value)
        assert "a write through that repository began before" in message
        assert str(plain.url) in message
        assert "was still in flight after 0 s" in message
        assert "nothing was claimed, nothing written" in message
        assert paused  # it looked again before it gave up
        # The claim is undone: the held write lands, the repositories write and close.
        hold.go.set()
        writer.join(STEP)
        assert writer.error is None
        assert plain.get(T, "k") == "held"
        plain.put(T, "k", "after")
        hot.put(T, "j", 1)
        hot.close()
        cold.close()
        # With no write in flight, the pair opens (and waits for nothing).
        monkeypatch.setattr(_owners, "_pause", lambda s: pytest.fail("waited"))
        with stores.pair() as pair:
            assert pair.hot.get(T, "k") == "after"
    finally:
        hold.go.set()
        plain.close()


# ---------------------------------------------------------------------- native-async writes


class _NativeMemory(MemoryBackend):
    """The memory engine with a native-async form whose writes wait for :attr:`go`
    (looked at between turns of the loop that awaits them, so any thread may set it)
    before they reach the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def native_async(self) -> AsyncBackend:
        return _Native(self)


class _Native(AsyncBackend):
    def __init__(self, engine: _NativeMemory) -> None:
        self.engine = engine

    async def _hold(self) -> None:
        self.engine.entered.set()
        while not self.engine.go.is_set():
            await asyncio.sleep(0.001)

    async def get(self, key: bytes) -> bytes | None:
        return self.engine.get(key)

    async def put(self, key: bytes, value: bytes) -> None:
        await self._hold()
        self.engine.put(key, value)

    async def delete(self, key: bytes) -> bool:
        await self._hold()
        return self.engine.delete(key)

    async def insert(self, key: bytes, value: bytes) -> bool:
        await self._hold()
        return self.engine.insert(key, value)

    async def write(self, ops: Sequence[Op]) -> None:
        await self._hold()
        self.engine.write(ops)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.engine.get_many(keys)

    async def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> AsyncIterator[Chunk]:
        for chunk in self.engine.scan_chunks(start, stop, reverse=reverse, values=values):
            yield chunk


NATIVE: dict[str, Callable[[AsyncRepository[Any, Any]], Coroutine[Any, Any, Any]]] = {
    "put": lambda a: a.put(T, "k", 1),
    "insert": lambda a: a.insert(T, "k", 1),
    "delete": lambda a: a.delete(T, "seed"),
    "put_many": lambda a: a.put_many(T, [("k", 1)]),
    "batch": lambda a: _abatch_native(a),
}


async def _abatch_native(a: AsyncRepository[Any, Any]) -> None:
    async with a.batch() as b:
        b.put(T, "k", 1)


def _native_pair(engine: _NativeMemory) -> TieredRepository[Any, Any]:
    # The held store is cold: a new pair takes a cold store holding data (a fresh hot
    # store must be empty).
    return TieredRepository(
        hot=aurora_storage.open("memory://"), cold=Repository(engine), projection=count
    )


@pytest.mark.parametrize("method", list(NATIVE))
def test_claim_waits_for_a_native_async_write_of_another_loop(pauses: Pauses, method: str) -> None:
    engine = _NativeMemory()
    plain: Repository[Any, Any] = Repository(engine)
    plain.put(T, "seed", 0)
    before = _snapshot(plain)
    arepo = plain.as_async()
    assert arepo._native is not None
    writer = Writer(lambda: asyncio.run(NATIVE[method](arepo)))
    writer.start()
    assert engine.entered.wait(STEP)
    pauses.let_go.append(engine.go.set)
    pair = _native_pair(engine)
    try:
        opened = _snapshot(pair.cold)
        engine.go.set()  # (a claim that did not wait left it held until now)
        writer.join(STEP)
        assert writer.error is None
        assert pauses.count, "the claim did not wait for the native-async write"
        assert opened != before
        assert _snapshot(pair.cold) == opened
    finally:
        engine.go.set()
        writer.join(STEP)
        pair.close()


def test_a_native_async_write_awaited_on_the_claiming_thread_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The write waits for this thread's loop, which runs the pair's open: waiting for it
    # could never end. The claim is undone at once, naming the repository.
    monkeypatch.setattr(_owners, "_pause", lambda s: pytest.fail("waited"))
    engine = _NativeMemory()
    plain: Repository[Any, Any] = Repository(engine)
    arepo = plain.as_async()

    async def main() -> None:
        task = asyncio.create_task(arepo.put(T, "k", 1))
        while not engine.entered.is_set():
            await asyncio.sleep(0)
        with pytest.raises(StoreLockedError, match="is awaited on this thread's event loop"):
            _native_pair(engine)
        engine.go.set()
        await task  # the claim is undone: the write lands
        assert plain.get(T, "k") == 1
        monkeypatch.setattr(_owners, "_pause", time.sleep)
        with _native_pair(engine) as pair:
            assert pair.cold.get(T, "k") == 1
            with pytest.raises(ReadOnlyError):
                await arepo.put(T, "k", 2)  # refused before it awaits anything
            assert pair.cold.get(T, "k") == 1

    asyncio.run(main())
