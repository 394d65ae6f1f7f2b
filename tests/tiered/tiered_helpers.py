"""Shared helpers of the tiered tests: a fault-injecting memory backend, the seed's
order projection, and model checks."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from aurora_storage import Repository
from aurora_storage.backend import Backend, Op
from aurora_storage.errors import StorageError
from aurora_storage.memory._backend import MemoryBackend
from aurora_storage.tiered import (
    HistoryRecord,
    ProjectionState,
    TieredRepository,
    register_projection,
)


class Crash(BaseException):
    """Stands for SIGKILL inside one backend call: nothing after it runs (not even
    ``except Exception`` handlers), like a process that dies there."""


class Broken(StorageError):
    """A run-time failure of a tier (full disk, I/O error)."""


T = TypeVar("T")


def present(value: T | None) -> T:
    """``value``, asserted to be there (a read that must find its record)."""
    assert value is not None
    return value


class FlakyBackend(MemoryBackend):
    """The memory reference backend with scheduled failures.

    ``fail("write", after=2, exc=Crash)`` makes the third ``write`` call raise ``Crash``
    (before applying anything); ``partial=True`` on ``delete_range`` deletes half the
    range first, ``applied=True`` on ``write`` applies the batch, then raises.
    """

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        if data:
            self._data.update(data)
            self._sorted.update(data)
        self._plans: dict[str, list[Any]] = {}

    def fail(
        self,
        method: str,
        *,
        after: int = 0,
        exc: type[BaseException] = Crash,
        partial: bool = False,
        applied: bool = False,
    ) -> None:
        self._plans[method] = [after, exc, partial, applied]

    def fail_writes(self, *, exc: type[BaseException] = Crash) -> None:
        """Fail the next write of any kind (put, delete or batch)."""
        self.fail("any", exc=exc)

    def heal(self) -> None:
        self._plans.clear()

    def _trip(self, method: str) -> tuple[type[BaseException], bool, bool] | None:
        plan = self._plans.get(method)
        if plan is None and method in ("put", "delete", "write"):
            method = "any"
            plan = self._plans.get(method)
        if plan is None:
            return None
        if plan[0] > 0:
            plan[0] -= 1
            return None
        del self._plans[method]
        return plan[1], plan[2], plan[3]

    def close(self) -> None:
        # Keep the data, so a test can "reopen" it: flaky_repo(backend.snapshot()).
        with self._lock:
            self._closed = True

    def snapshot(self) -> dict[bytes, bytes]:
        return dict(self._data)

    def write(self, ops: Sequence[Op]) -> None:
        trip = self._trip("write")
        if trip is not None:
            exc, _, applied = trip
            if applied:
                super().write(ops)
            raise exc("injected write failure")
        super().write(ops)

    def put(self, key: bytes, value: bytes) -> None:
        trip = self._trip("put")
        if trip is not None:
            raise trip[0]("injected put failure")
        super().put(key, value)

    def delete(self, key: bytes) -> bool:
        trip = self._trip("delete")
        if trip is not None:
            raise trip[0]("injected delete failure")
        return super().delete(key)

    def delete_range(self, start: bytes, stop: bytes) -> int:
        trip = self._trip("delete_range")
        if trip is not None:
            exc, partial, _ = trip
            if partial:
                keys = self._range(start, stop)
                for k in keys[: len(keys) // 2]:
                    super().delete(k)
            raise exc("injected delete_range failure")
        return super().delete_range(start, stop)


def flaky_repo(data: dict[bytes, bytes] | None = None) -> Repository[Any, Any]:
    return Repository(FlakyBackend(data))


def flaky(repo: Repository[Any, Any]) -> FlakyBackend:
    backend = repo.backend
    assert isinstance(backend, FlakyBackend)
    return backend


STATUS = {
    "OrderCreated": "created",
    "OrderPaid": "paid",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
}


def orders(record: HistoryRecord, state: ProjectionState) -> None:
    """The seed's projection: events keyed (time, id) in history -> each order's current
    status, keyed by order id. ``events`` counts applications (exactly-once check)."""
    event = record.value
    order = state.get(event["order"], {"events": 0, "total": 0})
    order["status"] = STATUS[event["type"]]
    order["events"] += 1
    order["total"] += event.get("amount", 0)
    state.put(event["order"], order)


# URLs name projections (they never import code): register the test projection.
register_projection("orders", orders, replace=True)


def event(kind: str, order: str, amount: int = 0) -> dict[str, Any]:
    return {"type": kind, "order": order, "amount": amount}


def dump(repo: Repository[Any, Any]) -> dict[tuple[str, Any], Any]:
    """Every (tenant, key) -> value of a plain repository."""
    return {(t, k): v for t in list(repo.tenants()) for k, v in repo.items(t)}


def fold_orders(history: Repository[Any, Any]) -> dict[tuple[str, Any], Any]:
    """What the projection must hold: the history folded in key order, from scratch."""
    out: dict[tuple[str, Any], Any] = {}
    for tenant in list(history.tenants()):
        for _, ev in history.items(tenant):
            cur = out.get((tenant, ev["order"]), {"events": 0, "total": 0})
            cur = {**cur, "status": STATUS[ev["type"]]}
            cur["events"] += 1
            cur["total"] += ev.get("amount", 0)
            out[(tenant, ev["order"])] = cur
    return out


def iter_events(
    n: int, tenants: Sequence[str] = ("acme", "globex")
) -> Iterator[tuple[str, Any, Any]]:
    kinds = list(STATUS)
    for i in range(n):
        tenant = tenants[i % len(tenants)]
        yield tenant, (i, "e"), event(kinds[(i // 7) % 4], f"o-{i % 5}", i)


class FaultBackend(Backend):
    """A wrapping backend that injects faults into the commits of any inner backend.

    ``fail(when=...)`` schedules the next commit (``write``, ``put`` or ``delete``, after
    ``after`` clean ones) to raise ``exc``: ``"before"`` the inner commit (nothing
    applied), or ``"after"`` it (applied, then reported as failed: a lost
    acknowledgement or a timeout). ``chaos(rate, rnd)`` makes every commit fail with
    probability ``rate``, before or after at random. Reads pass through.
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__()
        self.inner = inner
        self.scheme = inner.scheme
        self.capabilities = inner.capabilities
        self._plan: list[Any] | None = None
        self._rate = 0.0
        self._rnd: random.Random | None = None
        self.injected = 0

    def fail(
        self, *, when: str = "before", after: int = 0, exc: type[BaseException] = Broken
    ) -> None:
        assert when in ("before", "after")
        self._plan = [after, when, exc]

    def chaos(self, rate: float, rnd: random.Random) -> None:
        self._rate, self._rnd = rate, rnd

    def heal(self) -> None:
        self._plan, self._rate = None, 0.0

    def _trip(self) -> tuple[str, type[BaseException]] | None:
        if self._plan is not None:
            if self._plan[0] > 0:
                self._plan[0] -= 1
                return None
            _, when, exc = self._plan
            self._plan = None
            return when, exc
        if self._rate and self._rnd is not None and self._rnd.random() < self._rate:
            return self._rnd.choice(("before", "after")), Broken
        return None

    def _commit(self, fn: Any, *args: Any) -> Any:
        trip = self._trip()
        if trip is None:
            return fn(*args)
        when, exc = trip
        self.injected += 1
        if when == "after":
            fn(*args)
        raise exc(f"injected hot-tier fault ({when} the commit)")

    def write(self, ops: Sequence[Op]) -> None:
        self._commit(self.inner.write, list(ops))

    def put(self, key: bytes, value: bytes) -> None:
        self._commit(self.inner.put, key, value)

    def delete(self, key: bytes) -> bool:
        return bool(self._commit(self.inner.delete, key))

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.inner.get_many(keys)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(start, stop, reverse=reverse)

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        return self.inner.scan_keys(start, stop, reverse=reverse)

    def count_range(self, start: bytes, stop: bytes) -> int:
        return self.inner.count_range(start, stop)

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        return self.inner.first_key(start, stop)

    def contains(self, key: bytes) -> bool:
        return self.inner.contains(key)

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return "faulty " + self.inner.describe()


def faulty_repo(inner: Backend | None = None) -> tuple[Repository[Any, Any], FaultBackend]:
    """A repository over a fault-injecting wrapper (of a fresh memory backend)."""
    fb = FaultBackend(inner if inner is not None else MemoryBackend())
    return Repository(fb), fb


class Counting:
    """A projection that counts, in the projection itself, how often each history record
    was applied (``("seen", key)``, and ``"n"`` in all): the exactly-once check. It can
    be told to raise on chosen records (by their value's ``mark``)."""

    def __init__(self) -> None:
        self.poison: set[Any] = set()
        self.calls = 0

    def __call__(self, record: HistoryRecord, state: ProjectionState) -> None:
        self.calls += 1
        if record.value.get("mark") in self.poison:
            raise ValueError(f"poison record {record.key!r}")
        state.put("n", state.get("n", 0) + 1)
        seen = ("seen", record.key)
        state.put(seen, state.get(seen, 0) + 1)


def fold_counting(
    history: Repository[Any, Any], skip: set[tuple[str, Any]]
) -> dict[tuple[str, Any], Any]:
    """What a Counting projection of ``history`` holds, leaving out ``skip`` records:
    every record seen exactly once."""
    out: dict[tuple[str, Any], Any] = {}
    for tenant in list(history.tenants()):
        n = 0
        for key in history.keys(tenant):
            if (tenant, key) in skip:
                continue
            n += 1
            out[(tenant, ("seen", key))] = 1
        if n:
            out[(tenant, "n")] = n
    return out


def versioned(version: int) -> Any:
    """Projection version ``version`` of order events: each order's event count, tagged
    with the version that computed it (so a served projection shows which build it is)."""

    def project(record: HistoryRecord, state: ProjectionState) -> None:
        order = record.value["order"]
        cur = state.get(order, {"n": 0})
        state.put(order, {"v": version, "n": cur["n"] + 1})
        # one key per record too: a projection as large as history makes the swap long
        state.put(("r", record.key), {"v": version})

    return project


def fold_versioned(history: Repository[Any, Any], version: int) -> dict[tuple[str, Any], Any]:
    """What projection ``versioned(version)`` of ``history`` holds, built from scratch."""
    out: dict[tuple[str, Any], Any] = {}
    for tenant in list(history.tenants()):
        for key, ev in history.items(tenant):
            cur = out.get((tenant, ev["order"]), {"n": 0})
            out[(tenant, ev["order"])] = {"v": version, "n": cur["n"] + 1}
            out[(tenant, ("r", key))] = {"v": version}
    return out


def tamper(repo: Repository[Any, Any], tenant: str, items: dict[Any, Any]) -> None:
    """Write ``items`` into a tier behind its pair's back, through the tier's backend (the
    tier repository itself refuses writes while it belongs to a pair): what a bug or an
    outside writer could leave there, for tests of rebuild and recovery."""
    repo.backend.write(
        [(repo._full(tenant, k), repo._value(v, tenant, k)) for k, v in items.items()]
    )


def crashed(repo: TieredRepository[Any, Any]) -> None:
    """Stand for the death of the process that held the pair ``repo`` (what a ``Crash``
    inside a backend call simulates): nothing is closed or flushed, and its stores are
    free for the next pair, as they are for the next process. (Within one process a pair
    owns its stores until ``close()``, and its tiers refuse ``close()``: a second pair
    over them raises StoreLockedError.)"""
    repo._give_back()  # what a pair's finaliser does when it is garbage-collected


class Bounded(FaultBackend):
    """Atomic batches of at most ``max_batch`` operations (more: refused, nothing
    written), as a NATS bucket's ``max_batch``; records the largest batch it was handed."""

    def __init__(self, max_batch: int) -> None:
        super().__init__(MemoryBackend())
        self.max_batch = max_batch
        self.largest = 0

    def write(self, ops: Sequence[Op]) -> None:
        self.largest = max(self.largest, len(ops))
        if len(ops) > self.max_batch:
            raise ValueError(f"a batch of {len(ops)} operations over {self.max_batch}")
        super().write(ops)
