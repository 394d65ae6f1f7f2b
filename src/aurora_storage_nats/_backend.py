"""NATSBackend: the bytes-level backend over a JetStream key-value bucket.

The synchronous methods run the asyncio client (:class:`._client.NATSCore`) on the
process's private event-loop thread (:mod:`._loop`) and wait for the result; the
native-async form (:meth:`NATSBackend.native_async`) awaits a client of the caller's own
loop instead. Scans list the subjects of one tenant server-side, then decode and sort
the keys client-side (JetStream does not keep keys in order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import threading
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Future
from typing import Any, TypeVar

from aurora_storage._keys import decode_stored_key
from aurora_storage.backend import (
    Append,
    AsyncBackend,
    Backend,
    Capabilities,
    Chunk,
    Condition,
    Op,
    value_version,
)
from aurora_storage.config import URL
from aurora_storage.errors import RepositoryClosedError, StorageError

from . import _loop
from ._client import WRITE_SENT, NATSCore
from ._config import NATSConfig, config_from_url
from ._connection import APPENDS_UNKNOWN
from ._errors import NATSConnectionError, NATSTimeoutError
from ._feed import NATSChangeFeed
from ._subjects import scan_filter

__all__ = ["NATSAsyncBackend", "NATSBackend"]

T = TypeVar("T")

_CHUNK = 1024
#: How often (seconds) close() cancels again a call that has not ended yet (nats-py
#: swallows a cancellation in places, e.g. while it flushes a full buffer).
_RECUT = 0.1


class _Call:
    """One call in flight on a repository: its task (the loop thread's, or the caller's
    own on a native-async loop), a future done once it has left the repository's code,
    and how many times close() cancelled it."""

    __slots__ = ("cuts", "left", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.left: asyncio.Future[None] = task.get_loop().create_future()
        self.cuts = 0

    def cut(self) -> None:
        """Cancel the call (on its task's loop) unless it has left."""
        if not self.left.done() and not self.task.done():
            self.cuts += 1
            self.task.cancel()


def _select(
    items: list[tuple[bytes, bytes | None]],
    start: bytes,
    stop: bytes,
    reverse: bool,
    limit: int | None,
) -> list[tuple[bytes, bytes | None]]:
    """The listed records within ``[start, stop)``, in byte order (or reversed), cut to
    ``limit``."""
    sel = [kv for kv in items if start <= kv[0] < stop]
    sel.sort(reverse=reverse)
    return sel if limit is None else sel[:limit]


def _named(key: bytes) -> str:
    """A stored key as the caller knows it: ``key 7 of tenant 'acme'`` (or its bytes,
    for a record of the store's own)."""
    try:
        tenant, user_key = decode_stored_key(key)
    except (StorageError, ValueError):
        return f"the stored key {key[:64]!r}"
    shown = repr(user_key)
    if len(shown) > 80:
        shown = shown[:77] + "..."  # a long key: its start names it well enough
    return f"key {shown} of tenant {tenant!r}"


def _range_cut(keys: list[bytes], i: int, step: int, failure: str) -> str:
    """The message of a range delete whose batch starting at ``keys[i]`` failed with
    ``failure`` (the batch's own error): the keys before it were deleted (their batches
    committed), those after it were not sent."""
    n = len(keys)
    end = min(i + step, n)
    batch = f"{_named(keys[i])} through {_named(keys[end - 1])}"
    if i:
        done = (
            f"the first {i} in key order, through {_named(keys[i - 1])}, were deleted "
            f"(their batches committed); the next {end - i}, {batch}, failed: {failure}"
        )
    else:
        done = f"the first {end}, {batch}, failed (no batch was committed before it): {failure}"
    rest = f"; the other {n - end} were not deleted" if end < n else ""
    return (
        f"deleting {n} keys in atomic batches of at most {step} (each batch is atomic, "
        f"the whole is not): {done}{rest}. Delete the range again (drop_tenant again) to "
        "delete what is left"
    )


def _chunks(sel: list[tuple[bytes, bytes | None]], values: bool) -> Iterator[Chunk]:
    for i in range(0, len(sel), _CHUNK):
        part = sel[i : i + _CHUNK]
        keys = [k for k, _ in part]
        if values:
            yield keys, [v if v is not None else b"" for _, v in part]
        else:
            yield keys, None


class NATSBackend(Backend):
    """A JetStream key-value bucket as an aurora-storage backend.

    Open it with :meth:`open` (a :class:`NATSConfig`) or :meth:`from_url`; usually
    through ``aurora_storage.open("nats://host:4222/bucket")``.
    """

    scheme = "nats"

    def __init__(self, config: NATSConfig) -> None:
        super().__init__()
        self.config = config
        # Every open makes its own client: the bucket, not this object, is the store a
        # tiered pair owns (see Backend.store_id).
        self.store_id = config.store_id
        self.capabilities = Capabilities(
            ordered_scans=True,
            atomic_batches=True,
            persistent=config.storage == "file",
            multi_process=True,
            thread_safe=True,
            blocking_writes=True,
            read_only=config.read_only,
            conditional_writes=True,
            sequences=True,
            # JetStream's atomic publish is bounded; the server's own limit
            # (jetstream.limits.batch.max_msgs) must be at least this (docs/backends/nats.md).
            max_batch_ops=config.max_batch,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        # Calls in flight (every loop's), ended by close(); `_ending` once close began.
        self._calls: set[_Call] = set()
        self._calls_lock = threading.Lock()
        self._ending = False
        self._lt = _loop.acquire()
        self._core = NATSCore(config)
        try:
            self._run(self._core.connect())
        except BaseException:
            _loop.release(self._lt)
            raise
        self._native: NATSAsyncBackend | None = None
        # Feeds with a consumer to stop at close (scoped feeds live as long as a watch).
        self._feeds: weakref.WeakSet[NATSChangeFeed] = weakref.WeakSet()
        self._feed: NATSChangeFeed | None = None
        # The stream incarnation's tag in change-feed positions (see _feed), once read.
        self._position_tag: int | None = None
        # Consumer stops of collected watches, still running on the loop.
        self._stopping: set[Future[None]] = set()
        if self._core.history >= 2:
            # Positions are stream sequences, shared by every writer (see _feed).
            self.capabilities = dataclasses.replace(
                self.capabilities, change_feed=True, multi_process_change_feed=True
            )

    @classmethod
    def open(cls, config: NATSConfig) -> NATSBackend:
        """Connect to the servers and open (or create) the bucket.

        Raises:
            NATSConnectionError: no server reachable within ``connect_timeout``.
            ConfigurationError: the bucket is missing and may not be created, or cannot
                be created with these options.
        """
        return cls(config)

    @classmethod
    def from_url(cls, url: URL, options: Mapping[str, Any]) -> NATSBackend:
        """Open from a ``nats://`` URL and options (see :func:`config_from_url`)."""
        return cls.open(config_from_url(url, options))

    # ------------------------------------------------------------------ plumbing

    def _run(self, coro: Coroutine[Any, Any, T], writes: bool = False) -> T:
        if self._closed:
            coro.close()
            raise self._closed_error(writes)
        try:
            fut = self._lt.submit(self._guarded(coro, writes))
        except BaseException:
            coro.close()
            raise
        return fut.result()

    def _closed_error(self, writes: bool = False) -> RepositoryClosedError:
        """The error of a call made once the repository is closed (or closing): for a
        write, it says nothing was sent (a range delete's later batch quotes it)."""
        outcome = "; the write was not sent: nothing was written" if writes else ""
        return RepositoryClosedError(
            f"the NATS repository {self.config.describe()} is closed{outcome}", backend="nats"
        )

    def _cut_error(self, writes: bool, sent: list[bool]) -> RepositoryClosedError:
        """The error of a call that close() ended while it was in flight (``sent``: the
        flags of :data:`~._client.WRITE_SENT`)."""
        if not writes:
            outcome = ""
        elif sent[0] and sent[1]:
            outcome = APPENDS_UNKNOWN.replace(
                "read it back", "open the repository again and read it back", 1
            )
        elif sent[0]:
            outcome = (
                "; the write may or may not have been applied (open the repository again "
                "and read it back, or repeat it)"
            )
        else:
            outcome = "; the write was not sent (a batch: its commit was not): nothing was written"
        return RepositoryClosedError(
            f"the NATS repository {self.config.describe()} was closed while this call was "
            f"in flight (close() ends every call in flight){outcome}",
            backend="nats",
        )

    async def _guarded(self, coro: Coroutine[Any, Any, T], writes: bool) -> T:
        """Await ``coro`` (on the running loop, in the running task) as a call in flight
        on this repository: close() cancels it, and the cancellation - or the closed
        connection it meets - is raised as RepositoryClosedError, saying whether a write
        may have been applied."""
        task = asyncio.current_task()
        assert task is not None
        with self._calls_lock:
            if self._ending:
                coro.close()
                raise self._closed_error(writes)
            call = _Call(task)
            self._calls.add(call)
        sent = [False, False]
        token = WRITE_SENT.set(sent)
        pending = task.cancelling()
        try:
            result = await coro
            if task.cancelling() > pending:
                # A cancel() of this task came while the call ran and was swallowed on
                # the way (nats-py drops some, Python 3.11's wait_for drops one that
                # arrives as its future completes): the call ended normally, but its
                # caller (or close()) cancelled it, so it ends as cancelled.
                raise asyncio.CancelledError
            return result
        except asyncio.CancelledError:
            if not call.cuts:
                raise
            for _ in range(call.cuts):
                task.uncancel()
            if task.cancelling() > pending:
                raise  # cancelled by its owner too: theirs to see
            raise self._cut_error(writes, sent) from None
        except (NATSConnectionError, NATSTimeoutError, RepositoryClosedError) as exc:
            if self._ending:
                # The connection closed under the call by close().
                raise self._cut_error(writes, sent) from exc
            raise
        finally:
            WRITE_SENT.reset(token)
            with self._calls_lock:
                self._calls.discard(call)
            if not call.left.done():
                call.left.set_result(None)

    async def _cut_calls(self) -> None:
        """Mark the repository ending and end every call in flight: those of the running
        loop are cancelled (again while they run on, up to ``timeout``) and waited for;
        those of other loops are cancelled there."""
        loop = asyncio.get_running_loop()
        with self._calls_lock:
            self._ending = True
            calls = list(self._calls)
        here: list[_Call] = []
        for call in calls:
            theirs = call.task.get_loop()
            if theirs is loop:
                here.append(call)
            elif not theirs.is_closed():
                try:
                    theirs.call_soon_threadsafe(call.cut)
                except RuntimeError:
                    pass  # that loop closed meanwhile
        deadline = loop.time() + self.config.timeout
        while here:
            for call in here:
                call.cut()
            wait = min(_RECUT, deadline - loop.time())
            if wait <= 0:
                break
            await asyncio.wait([c.left for c in here], timeout=wait)
            here = [c for c in here if not c.left.done()]

    # ------------------------------------------------------------------ required

    def get(self, key: bytes) -> bytes | None:
        """See :meth:`Backend.get` (one direct get)."""
        return self._run(self._core.get(key))

    def put(self, key: bytes, value: bytes) -> None:
        """See :meth:`Backend.put` (one publish, acknowledged by the stream)."""
        self._run(self._core.put(key, value), writes=True)

    def delete(self, key: bytes) -> bool:
        """See :meth:`Backend.delete` (a read, then a delete marker conditional on it)."""
        return self._run(self._core.delete(key), writes=True)

    def insert(self, key: bytes, value: bytes) -> bool:
        """See :meth:`Backend.insert`: the server checks the key's last sequence."""
        return self._run(self._core.insert(key, value), writes=True)

    def write(self, ops: Sequence[Op]) -> None:
        """See :meth:`Backend.write`: one JetStream atomic batch publish.

        Raises:
            BatchTooLargeError: more operations than ``max_batch``; nothing written.
            NotSupportedError: the server or stream has no atomic publish.
        """
        if ops:
            self._run(self._core.write(ops), writes=True)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """See :meth:`Backend.get_many` (the gets in flight together)."""
        return self._run(self._core.get_many(keys))

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """See :meth:`Backend.scan`."""
        for keys, vals in self.scan_chunks(start, stop, reverse=reverse):
            assert vals is not None
            yield from zip(keys, vals, strict=True)

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """See :meth:`Backend.scan_keys` (the server sends headers only)."""
        for keys, _ in self.scan_chunks(start, stop, reverse=reverse, values=False):
            yield from keys

    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> Iterator[Chunk]:
        """See :meth:`Backend.scan_chunks`. The records are read when the scan starts
        (one listing of the tenant's subjects), then handed out in order; a scan
        advanced after close raises RepositoryClosedError."""
        items = self._run(self._core.listing(scan_filter(start, stop), values))
        sel = _select(items, start, stop, reverse, limit)
        for chunk in _chunks(sel, values):
            if self._closed:
                raise RepositoryClosedError(
                    f"the NATS repository {self.config.describe()} was closed during a scan",
                    backend="nats",
                )
            yield chunk

    def count_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.count_range` (keys only)."""
        items = self._run(self._core.listing(scan_filter(start, stop), False))
        return sum(1 for k, _ in items if start <= k < stop)

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        """See :meth:`Backend.first_key`."""
        items = self._run(self._core.listing(scan_filter(start, stop), False))
        inside = [k for k, _ in items if start <= k < stop]
        return min(inside) if inside else None

    def list_keys(self, start: bytes, stop: bytes) -> list[bytes]:
        """Every key in ``[start, stop)``, sorted (one listing)."""
        items = self._run(self._core.listing(scan_filter(start, stop), False))
        return sorted(k for k, _ in items if start <= k < stop)

    def delete_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.delete_range`: delete markers in atomic batches of
        ``max_batch`` (a whole tenant too: the stream is not purged, so watchers see
        every delete; the values leave the stream as later changes push them out of the
        per-key history).

        The one call of this backend made of several atomic batches (``put_many`` and
        ``delete_many`` are one batch, refused whole above ``max_batch``), in key order.

        Raises:
            StorageError: a batch failed (its own type: RepositoryClosedError when
                close() cut it, NATSConnectionError or NATSTimeoutError when the
                connection was lost, ...). When the range took more than one batch, the
                message says which keys the committed batches deleted, which batch
                failed (and whether it may have been applied) and how many keys were
                not reached (a call writes nothing unless its error says so); when the
                listing of the keys to delete failed, that nothing was deleted.
        """
        self._check_writable()
        try:
            keys = self.list_keys(start, stop)
        except StorageError as exc:
            # A read's error ("was closed while this call was in flight") says nothing
            # of writes: say that none was made, as a cut between batches says which.
            exc.message = (
                f"{exc.message}; the range delete (drop_tenant) stopped while it listed "
                "the keys to delete, before its first batch: nothing was deleted. Delete "
                "the range again (drop_tenant again)"
            )
            exc.args = (exc.message,)
            raise
        if not keys:
            return 0
        step = self.config.max_batch
        for i in range(0, len(keys), step):
            # Just listed: not read again one by one (a whole tenant would cost a read
            # per key). A key another writer deletes in between gets a second marker.
            try:
                self._run(
                    self._core.write([(k, None) for k in keys[i : i + step]], present=True),
                    writes=True,
                )
            except StorageError as exc:
                if len(keys) > step:
                    # The error speaks of its own batch only ("nothing was written", "may
                    # or may not have been applied"): say what the call did as a whole.
                    exc.message = _range_cut(keys, i, step, exc.message)
                    exc.args = (exc.message,)
                raise
        return len(keys)

    def _check_writable(self) -> None:
        self._core._writable()

    # ------------------------------------------------------------------ event store

    def get_versioned(self, key: bytes) -> tuple[bytes, bytes] | None:
        """See :meth:`Backend.get_versioned` (versions derive from the value, like the
        embedded engines'; the engine's revision check makes commits atomic)."""
        raw = self.get(key)
        return None if raw is None else (raw, value_version(raw))

    def commit(
        self,
        ops: Sequence[Op],
        *,
        conditions: Sequence[Condition] = (),
        appends: Sequence[Append] = (),
    ) -> list[int]:
        """See :meth:`Backend.commit`: one atomic batch whose conditioned keys and
        sequence counters carry the subject sequences read before, so the server
        refuses the batch if any changed (checked across processes and servers)."""
        return self._run(self._core.commit(ops, conditions, appends, value_version), writes=True)

    # ------------------------------------------------------------------ lifecycle

    def change_feed(self) -> NATSChangeFeed:
        """See :meth:`Backend.change_feed`: the bucket's stream (see :mod:`._feed`);
        each watch reads a feed scoped to its tenant's subjects."""
        if not self.capabilities.change_feed:
            super().change_feed()  # raises NotSupportedError (history=1, see _feed)
        if self._feed is None:
            self._feed = NATSChangeFeed(self)
        return self._feed

    def native_async(self) -> NATSAsyncBackend:
        """The native-async form: awaits a client connected on the caller's loop."""
        if self._native is None:
            self._native = NATSAsyncBackend(self)
        return self._native

    def stats(self) -> dict[str, Any]:
        """The bucket's stream state: messages, bytes, first/last sequence, cluster."""
        info = self._run(self._core.stream_state())
        out: dict[str, Any] = {
            "servers": list(self.config.servers),
            "bucket": self.config.bucket,
            "messages": info.state.messages,
            "bytes": info.state.bytes,
            "first_seq": info.state.first_seq,
            "last_seq": info.state.last_seq,
            "replicas": info.config.num_replicas,
            "history": info.config.max_msgs_per_subject,
            "atomic_batches": bool(info.config.allow_atomic),
        }
        if info.cluster is not None:
            out["leader"] = info.cluster.leader
        return out

    async def _close_feeds(self) -> None:
        for feed in list(self._feeds):
            await feed.close()
        for fut in list(self._stopping):
            await asyncio.wrap_future(fut)

    def describe(self) -> str:
        """``nats://servers/bucket`` (secrets hidden)."""
        return self.config.describe()

    def close(self) -> None:
        """Close the connection(s) and release the loop thread. Idempotent.

        In a child process after ``fork()`` it only marks the repository closed: the
        connection and loop thread belong to the parent (the child has no loop thread
        to run a close on, and a message on the inherited socket would corrupt the
        parent's connection), so nothing is sent and nothing raises.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() != self._lt.pid:
            return
        if sys.is_finalizing():
            # Closed from a finaliser at interpreter exit (an object's __del__ run while
            # the modules are torn down): the loop runs in a daemon thread the
            # interpreter no longer schedules, so a close submitted to it would wait
            # forever. The process's exit closes the sockets; the server forgets the
            # client's consumers on the disconnect.
            return
        try:
            # The calls in flight end first (RepositoryClosedError), then the
            # connections close under nothing.
            self._lt.submit(self._cut_calls()).result()
            if self._native is not None:
                self._native.close_from_thread()
            self._lt.submit(self._close_feeds()).result()
            self._lt.submit(self._core.close()).result()
        finally:
            _loop.release(self._lt)


async def _closer(core: NATSCore) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await core.close()


class NATSAsyncBackend(AsyncBackend):
    """The native-async form of a :class:`NATSBackend`: each event loop that uses it
    gets its own client connection (asyncio objects belong to one loop), made on first
    use and closed by :meth:`aclose` (or when the backend closes)."""

    def __init__(self, backend: NATSBackend) -> None:
        self._backend = backend
        self._cores: dict[Any, NATSCore] = {}
        self._guards: dict[Any, AsyncGenerator[None, None]] = {}
        #: per loop: the asyncio lock its first calls take to connect once
        self._connecting: dict[Any, Any] = {}
        self._lock = threading.Lock()

    async def _core(self) -> NATSCore:
        import asyncio

        loop = asyncio.get_running_loop()
        core = self._cores.get(loop)
        if core is not None:
            return core
        # One connect per loop: the loop's first calls wait for it on an asyncio lock.
        # (Never wait on a thread lock across an await: a second task of the same loop
        # would block the loop's own thread on it, and the holder could never resume.)
        with self._lock:
            gate = self._connecting.get(loop)
            if gate is None:
                gate = self._connecting[loop] = asyncio.Lock()
        async with gate:
            core = self._cores.get(loop)
            if core is not None:
                return core
            if self._backend._closed:
                raise RepositoryClosedError(
                    f"the NATS repository {self._backend.config.describe()} is closed",
                    backend="nats",
                )
            core = NATSCore(self._backend.config)
            await core.connect()
            with self._lock:
                self._cores[loop] = core
            # asyncio.run() finalises live async generators before closing its loop:
            # this one closes the connection then, if the repository was not closed.
            guard = _closer(core)
            await guard.__anext__()
            self._guards[loop] = guard
        return core

    async def _call(self, op: Callable[[NATSCore], Awaitable[T]], writes: bool = False) -> T:
        """``op`` on this loop's client, as a call in flight that close() ends (see
        :meth:`NATSBackend._guarded`)."""

        async def run() -> T:
            return await op(await self._core())

        return await self._backend._guarded(run(), writes)

    async def get(self, key: bytes) -> bytes | None:
        """See :meth:`Backend.get`."""
        return await self._call(lambda c: c.get(key))

    async def put(self, key: bytes, value: bytes) -> None:
        """See :meth:`Backend.put`."""
        await self._call(lambda c: c.put(key, value), writes=True)

    async def delete(self, key: bytes) -> bool:
        """See :meth:`Backend.delete`."""
        return await self._call(lambda c: c.delete(key), writes=True)

    async def insert(self, key: bytes, value: bytes) -> bool:
        """See :meth:`Backend.insert`."""
        return await self._call(lambda c: c.insert(key, value), writes=True)

    async def write(self, ops: Sequence[Op]) -> None:
        """See :meth:`Backend.write`."""
        if ops:
            await self._call(lambda c: c.write(ops), writes=True)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """See :meth:`Backend.get_many`."""
        return await self._call(lambda c: c.get_many(keys))

    async def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> AsyncIterator[Chunk]:
        """See :meth:`Backend.scan_chunks`."""
        items = await self._call(lambda c: c.listing(scan_filter(start, stop), values))
        for chunk in _chunks(_select(items, start, stop, reverse, limit), values):
            if self._backend._closed:
                raise RepositoryClosedError(
                    f"the NATS repository {self._backend.config.describe()} was closed "
                    "during a scan",
                    backend="nats",
                )
            yield chunk

    async def aclose(self) -> None:
        """Close the client of the running loop (the async repository's close)."""
        import asyncio

        # The calls in flight (this loop's, and others') end first: RepositoryClosedError.
        await self._backend._cut_calls()
        loop = asyncio.get_running_loop()
        core = self._cores.pop(loop, None)
        guard = self._guards.pop(loop, None)
        self._connecting.pop(loop, None)
        if core is not None:
            await core.close()
        if guard is not None:
            await guard.aclose()

    def close_from_thread(self) -> None:
        """Close the clients of other loops (best effort: a loop that has stopped has
        closed its sockets with it)."""
        import asyncio

        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        self._connecting.clear()
        for loop, core in list(self._cores.items()):
            self._cores.pop(loop, None)
            self._guards.pop(loop, None)
            if loop.is_closed() or not loop.is_running():
                continue
            if here is not None and loop is here:
                # Waiting here would block the loop the close must run on.
                loop.create_task(core.close())
                continue
            try:
                asyncio.run_coroutine_threadsafe(core.close(), loop).result(timeout=5)
            except Exception:
                pass
