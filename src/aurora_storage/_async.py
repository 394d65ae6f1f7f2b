"""The asynchronous twin of Repository.

All logic (validation, encoding, codecs, tenancy) lives in the sync
:class:`~aurora_storage.Repository`; this class only decides *where* each call runs:

* Point operations on embedded engines take microseconds, far less than a thread hop
  (``asyncio.to_thread`` costs ~50 us), so they run inline on the event loop. Writes run
  in a worker thread when the backend declares ``blocking_writes`` (e.g. an fsync per
  commit).
* Long work - batches, ``drop_tenant``, ``count`` - runs in a worker thread.
* Scans are async iterators: the first small chunk is read inline (a tiny scan costs no
  thread hop), later chunks are read in a worker thread, so a big scan never blocks the
  loop for long.

Cancellation (docs/concepts/async.md): a worker thread cannot be interrupted, so a
cancelled call never leaves one running unsupervised. A cancelled scan closes its
iterator once the worker's chunk is done (closing it while the worker runs it would fail
with "generator already executing"). A cancelled write tells its worker to give up at
the commit point and waits for it: the write is either discarded whole (cancelled before
the commit point) or committed whole (the engine's commit had begun), and it is settled
when the ``CancelledError`` reaches the caller.

A backend whose client is asyncio itself (a network engine) offers a native-async form
(:meth:`~aurora_storage.backend.Backend.native_async`): point operations, ``put_many``,
``get_many``, plain batches and scans then await it directly on the caller's loop (a
cancelled call is then the engine client's own cancellation); the rest goes through the
sync backend in a worker thread. The repository decides whether that form applies
(``Repository._native_async``): one whose own methods do more than its backend (a tiered
pair: change log, projection) never gets it, and its reads run in a worker thread when
they may wait on a network engine (``Repository._blocking_reads``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._args import check_scan, key_list
from ._cancel import Aborted
from ._eventstore import AsyncWatch, Slot, Version
from ._keys import decode_keys
from .backend import AsyncBackend, Backend, Capabilities, Chunk, VerifyReport
from .codecs import Codec
from .errors import KeyExistsError

if TYPE_CHECKING:
    # Types only: the sync repository imports this module (its as_async), never the
    # other way round.
    from ._repository import Batch, Repository
    from .config import URL

__all__ = ["AsyncBatch", "AsyncRepository", "AsyncTenantView"]

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

#: Items read inline before a scan moves to a worker thread, and per thread hop after.
FIRST_CHUNK = 64
CHUNK = 1024


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _close(it: Iterator[Any]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


def _close_after(worker: asyncio.Future[Any], it: Iterator[Any]) -> None:
    """Close ``it`` once the worker reading it is done; the chunk (or the error) it read
    is dropped: the scan was cancelled."""
    if not worker.cancelled():
        worker.exception()  # retrieved, so asyncio does not log it as never retrieved
    _close(it)


def _in_thread(fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
    """``fn(*args)`` in the default executor with the caller's context (as
    :func:`asyncio.to_thread`), returning the future itself so that a cancelled caller
    can still wait for, or attach to, the work it started."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return loop.run_in_executor(None, functools.partial(ctx.run, fn, *args))


async def _stream(it: Iterator[Any], inline: bool = True) -> AsyncIterator[Any]:
    """``it`` as an async iterator: the first chunk read inline (unless ``inline`` is
    false: reads that may wait on a network engine), later ones in a worker thread."""
    worker: asyncio.Future[list[Any]] | None = None
    try:
        size = FIRST_CHUNK
        if inline:
            chunk = _take(it, size)
        else:
            worker = _in_thread(_take, it, size)
            chunk = await asyncio.shield(worker)
            worker = None
        while True:
            for item in chunk:
                yield item
            if len(chunk) < size:
                return
            size = CHUNK
            worker = _in_thread(_take, it, size)
            # Shielded: cancelling the caller must not cancel the future of a chunk the
            # worker is still reading, or the iterator would be closed under it.
            chunk = await asyncio.shield(worker)
            worker = None
    finally:
        if worker is not None and not worker.done():
            # Cancelled while a worker reads a chunk: close the iterator when it is done
            # (on the loop thread; the chunk is dropped).
            worker.add_done_callback(lambda f: _close_after(f, it))
        else:
            _close(it)


async def _write(fn: Callable[..., R], *args: Any) -> R:
    """Run the write ``fn(*args, abort)`` in a worker thread; on cancellation ask it to
    stop at its commit point, wait until it has either discarded or committed the whole
    write, then let the cancellation go on."""
    stop = threading.Event()
    worker = _in_thread(fn, *args, stop.is_set)
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        stop.set()
        while not worker.done():
            try:
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                continue  # cancelled again: still settle the write first
            except BaseException:
                break
        if not worker.cancelled():
            # Retrieved so asyncio does not report it: an aborted or failed write wrote
            # nothing, a finished one committed whole; the caller gets the cancellation.
            worker.exception()
        raise


class _Awaited:
    """A native-async write in flight through ``repo``, from before its writability
    check until the awaited engine call has returned or raised: recorded in
    ``repo._awaiting`` as the ident of the thread whose event loop awaits it (a claim of
    the store waits for it, and refuses at once when that loop is its own thread's: the
    write cannot go on while the claim waits; see Repository._writing and _owners)."""

    __slots__ = ("awaiting", "ident")

    def __init__(self, repo: Repository[Any, Any]) -> None:
        self.awaiting = repo._awaiting
        self.ident = threading.get_ident()

    def __enter__(self) -> None:
        self.awaiting.append(self.ident)

    def __exit__(self, *exc: object) -> None:
        self.awaiting.remove(self.ident)


def _guarded(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` with a trailing ``abort`` argument checked once before it starts (for
    writes that are one engine call, so their commit point is their start)."""

    def run(*args: Any) -> R:
        abort = args[-1]
        if abort():
            raise Aborted
        return fn(*args[:-1])

    return run


class AsyncRepository(Generic[K, V]):
    """The same methods as :class:`~aurora_storage.Repository`, as coroutines and async
    iterators. Get one from :func:`aurora_storage.open_async` or wrap a repository.

    ``async with`` closes it at the end.
    """

    def __init__(self, repository: Repository[K, V]) -> None:
        self._repo = repository
        self._offload_writes = repository.capabilities.blocking_writes
        #: The backend's native-async form, awaited directly when there is one and the
        #: repository's behaviour is its backend's (not a tiered pair's: it would bypass
        #: the pair's change log and projection).
        self._native: AsyncBackend | None = repository._native_async()
        #: No native form to await, but reads may wait on a network engine: point reads
        #: and scans run in a worker thread instead of blocking the loop.
        self._offload_reads = self._native is None and repository._blocking_reads()
        #: Scans await the native form only on an ordered engine; an unordered one is
        #: put in key order by the synchronous repository (aurora_storage._ordering).
        self._native_scans = self._native is not None and repository.capabilities.ordered_scans
        # A subclass's own bulk writes (tiered) run as one step; the core's are
        # cancellable up to their commit point.
        self._own_put_many = type(repository)._overrides("put_many")
        self._own_delete_many = type(repository)._overrides("delete_many")

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.to_thread(fn, *args)

    @property
    def sync(self) -> Repository[K, V]:
        """The underlying synchronous repository."""
        return self._repo

    @property
    def backend(self) -> Backend:
        """See :attr:`Repository.backend`."""
        return self._repo.backend

    @property
    def url(self) -> URL | None:
        """See :attr:`Repository.url`."""
        return self._repo.url

    @property
    def capabilities(self) -> Capabilities:
        """See :attr:`Repository.capabilities`."""
        return self._repo.capabilities

    @property
    def codec(self) -> Codec[Any]:
        """See :attr:`Repository.codec`."""
        return self._repo.codec

    @property
    def closed(self) -> bool:
        """See :attr:`Repository.closed`."""
        return self._repo.closed

    # point operations: inline (microseconds), writes offloaded if the backend blocks
    async def get(self, tenant: str, key: K, default: V | None = None) -> V | None:
        """See :meth:`Repository.get`."""
        if self._native is not None:
            repo = self._repo
            repo._check_open()
            raw = await self._native.get(repo._full(tenant, key))
            return default if raw is None else repo._load(raw, tenant, key)
        if self._offload_reads:
            return await self._run(self._repo.get, tenant, key, default)
        return self._repo.get(tenant, key, default)

    async def has(self, tenant: str, key: K) -> bool:
        """See :meth:`Repository.has`."""
        if self._native is not None:
            self._repo._check_open()
            return await self._native.get(self._repo._full(tenant, key)) is not None
        if self._offload_reads:
            return await self._run(self._repo.has, tenant, key)
        return self._repo.has(tenant, key)

    async def put(self, tenant: str, key: K, value: V) -> None:
        """See :meth:`Repository.put`."""
        if self._native is not None:
            repo = self._repo
            with _Awaited(repo):
                repo._check_writable()
                full = repo._full(tenant, key)
                await self._native.put(full, repo._value(value, tenant, key))
        elif self._offload_writes:
            await _write(_guarded(self._repo.put), tenant, key, value)
        else:
            self._repo.put(tenant, key, value)

    async def delete(self, tenant: str, key: K) -> bool:
        """See :meth:`Repository.delete`."""
        if self._native is not None:
            with _Awaited(self._repo):
                self._repo._check_writable()
                return await self._native.delete(self._repo._full(tenant, key))
        if self._offload_writes:
            return await _write(_guarded(self._repo.delete), tenant, key)
        return self._repo.delete(tenant, key)

    async def insert(self, tenant: str, key: K, value: V) -> None:
        """See :meth:`Repository.insert`."""
        if self._native is not None:
            repo = self._repo
            with _Awaited(repo):
                repo._check_writable()
                full = repo._full(tenant, key)
                inserted = await self._native.insert(full, repo._value(value, tenant, key))
            if not inserted:
                raise KeyExistsError(
                    f"key {key!r} already exists for tenant {tenant!r}; use put() to overwrite",
                    tenant=tenant,
                    key=key,
                    backend=repo.backend.scheme,
                )
        elif self._offload_writes:
            await _write(_guarded(self._repo.insert), tenant, key, value)
        else:
            self._repo.insert(tenant, key, value)

    # long work: a worker thread
    async def put_many(self, tenant: str, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        """See :meth:`Repository.put_many`. Cancelled, it writes all or nothing (see
        docs/concepts/async.md)."""
        repo = self._repo
        if self._native is not None and not self._own_put_many:
            with _Awaited(repo):
                repo._check_writable()
                ops: list[tuple[bytes, bytes | None]] = list(
                    repo._encoded(tenant, items, repo._encode_held)
                )
                await self._native.write(ops)
            return len(ops)
        if not self._own_put_many:
            return await _write(repo._put_many, tenant, items)
        # A subclass's own put_many (tiered): its commit point is its start.
        return await _write(_guarded(repo.put_many), tenant, items)

    async def get_many(
        self, tenant: str, keys: Iterable[K], default: V | None = None
    ) -> list[V | None]:
        """See :meth:`Repository.get_many`."""
        if self._native is not None:
            repo = self._repo
            repo._check_open()
            repo._prefix(tenant)  # a bad tenant fails even with no keys
            wanted = key_list(keys, "get_many")
            raws = await self._native.get_many([repo._full(tenant, k) for k in wanted])
            return [
                default if raw is None else repo._load(raw, tenant, k)
                for k, raw in zip(wanted, raws, strict=True)
            ]
        return await self._run(self._repo.get_many, tenant, key_list(keys, "get_many"), default)

    async def delete_many(self, tenant: str, keys: Iterable[K]) -> int:
        """See :meth:`Repository.delete_many`. Cancelled, it deletes all or nothing."""
        repo = self._repo
        wanted = key_list(keys, "delete_many")
        if not self._own_delete_many:
            return await _write(repo._delete_many, tenant, wanted)
        return await _write(_guarded(repo.delete_many), tenant, wanted)

    async def count(self, tenant: str, *, prefix: Any = None) -> int:
        """See :meth:`Repository.count`."""
        return await asyncio.to_thread(lambda: self._repo.count(tenant, prefix=prefix))

    async def list(self, tenant: str, prefix: Any = None) -> list[K]:
        """See :meth:`Repository.list`."""
        return [k async for k in self.keys(tenant, prefix=prefix)]

    async def drop_tenant(self, tenant: str) -> int:
        """See :meth:`Repository.drop_tenant`."""
        return await _write(_guarded(self._repo.drop_tenant), tenant)

    async def stats(self) -> dict[str, Any]:
        """See :meth:`Repository.stats`."""
        return await self._run(self._repo.stats)

    async def flush(self) -> None:
        """See :meth:`Repository.flush`."""
        await self._run(self._repo.flush)

    async def verify(self) -> VerifyReport:
        """See :meth:`Repository.verify` (runs in a worker thread: it reads everything)."""
        return await self._run(self._repo.verify)

    # scans: async iterators; arguments are validated when called, not at first item
    def keys(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[K]:
        """See :meth:`Repository.keys`."""
        if self._native_scans:
            return self._native_scan(tenant, 0, prefix, start, stop, reverse, limit)
        return _stream(
            self._repo.keys(
                tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
            ),
            not self._offload_reads,
        )

    def values(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[V]:
        """See :meth:`Repository.values`."""
        if self._native_scans:
            return self._native_scan(tenant, 1, prefix, start, stop, reverse, limit)
        return _stream(
            self._repo.values(
                tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
            ),
            not self._offload_reads,
        )

    def items(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[K, V]]:
        """See :meth:`Repository.items`."""
        if self._native_scans:
            return self._native_scan(tenant, 2, prefix, start, stop, reverse, limit)
        return _stream(
            self._repo.items(
                tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
            ),
            not self._offload_reads,
        )

    def _native_scan(
        self,
        tenant: str,
        mode: int,
        prefix: Any,
        start: Any,
        stop: Any,
        reverse: bool,
        limit: int | None,
    ) -> AsyncIterator[Any]:
        # Validated now (like the sync scans), read when iterated.
        repo = self._repo
        repo._check_open()
        lo, hi, plen = repo._bounds(tenant, prefix, start, stop)
        check_scan(reverse, limit)
        assert self._native is not None
        chunks = self._native.scan_chunks(lo, hi, reverse=reverse, values=mode != 0, limit=limit)
        return self._native_items(chunks, plen, mode, limit, tenant)

    async def _native_items(
        self, chunks: AsyncIterator[Chunk], plen: int, mode: int, limit: int | None, tenant: str
    ) -> AsyncIterator[Any]:
        repo = self._repo
        left = limit
        if left == 0:
            return
        async for keys, raws in chunks:
            if left is not None:
                keys = keys[:left]
                left -= len(keys)
            decoded = decode_keys(keys, plen)
            if mode == 0:
                for key in decoded:
                    repo._check_open()
                    yield key
            else:
                assert raws is not None
                for key, raw in zip(decoded, raws, strict=False):
                    repo._check_open()
                    value = repo._load(raw, tenant, key)
                    yield value if mode == 1 else (key, value)
            if left == 0:
                return

    def tenants(self) -> AsyncIterator[str]:
        """See :meth:`Repository.tenants`."""
        return _stream(self._repo.tenants(), not self._offload_reads)

    # event store: point operations inline (like get/put), watch waits without a thread
    async def get_versioned(self, tenant: str, key: K) -> tuple[V | None, Version | None]:
        """See :meth:`Repository.get_versioned`."""
        return self._repo.get_versioned(tenant, key)

    async def compare_and_set(
        self, tenant: str, key: K, value: V, *, version: Version | None
    ) -> Version:
        """See :meth:`Repository.compare_and_set`."""
        if self._offload_writes:
            cas = functools.partial(self._repo.compare_and_set, version=version)
            return await _write(_guarded(cas), tenant, key, value)
        return self._repo.compare_and_set(tenant, key, value, version=version)

    async def last_sequence(self, tenant: str, sequence: str) -> int:
        """See :meth:`Repository.last_sequence`."""
        return self._repo.last_sequence(tenant, sequence)

    async def last_position(self) -> int:
        """See :meth:`Repository.last_position`."""
        return self._repo.last_position()

    def watch(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        after: int | None = None,
        timeout: float | None = None,
    ) -> AsyncWatch[K, V]:
        """See :meth:`Repository.watch`: an async iterator of the same
        :class:`~aurora_storage.Change` objects. Waiting for changes never blocks the
        event loop (the feed wakes it when a commit lands)."""
        return AsyncWatch(self._repo.watch(tenant, prefix=prefix, after=after, timeout=timeout))

    def batch(self) -> AsyncBatch[K, V]:
        """``async with arepo.batch() as b: b.put(...)``; commits in a worker thread (a
        plain batch on a native-async backend: awaited directly)."""
        return AsyncBatch(self._repo.batch(), self._native)

    def tenant(self, tenant: str) -> AsyncTenantView[K, V]:
        """A view bound to one tenant."""
        return AsyncTenantView(self, self._repo.tenant(tenant).tenant)

    async def close(self) -> None:
        """See :meth:`Repository.close`."""
        self._repo._check_closable()  # a tier of an open pair: refused before anything
        if self._native is not None:
            await self._native.aclose()
        await self._run(self._repo.close)

    async def __aenter__(self) -> AsyncRepository[K, V]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncRepository of {self._repo!r}>"


class AsyncBatch(Generic[K, V]):
    """An async context manager around a :class:`~aurora_storage.Batch`. Adding
    operations is synchronous (it only encodes); the commit runs in a worker thread."""

    def __init__(self, batch: Batch[K, V], native: AsyncBackend | None = None) -> None:
        self._batch = batch
        self._native = native

    def put(self, tenant: str, key: K, value: V) -> None:
        """See :meth:`Batch.put`."""
        self._batch.put(tenant, key, value)

    def delete(self, tenant: str, key: K) -> None:
        """See :meth:`Batch.delete`."""
        self._batch.delete(tenant, key)

    def insert(self, tenant: str, key: K, value: V) -> None:
        """See :meth:`Batch.insert`."""
        self._batch.insert(tenant, key, value)

    def compare_and_set(self, tenant: str, key: K, value: V, *, version: Version | None) -> None:
        """See :meth:`Batch.compare_and_set`."""
        self._batch.compare_and_set(tenant, key, value, version=version)

    def append(self, tenant: str, sequence: str, value: V) -> Slot:
        """See :meth:`Batch.append`."""
        return self._batch.append(tenant, sequence, value)

    def discard(self) -> None:
        """See :meth:`Batch.discard`."""
        self._batch.discard()

    def __len__(self) -> int:
        return len(self._batch)

    async def commit(self) -> None:
        """Write everything atomically now. Cancelled, it writes all or nothing (see
        docs/concepts/async.md)."""
        b = self._batch
        if self._native is not None and not b._conditions and not b._appends:
            b._check()
            b._done = True
            with _Awaited(b._repo):
                b._repo._check_writable()
                if b._ops:
                    await self._native.write(b._ops)
            return
        await _write(self._batch._commit)

    async def __aenter__(self) -> AsyncBatch[K, V]:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self.commit()
        else:
            self._batch.discard()


class AsyncTenantView(Generic[K, V]):
    """An async repository bound to one tenant."""

    def __init__(self, repo: AsyncRepository[K, V], tenant: str) -> None:
        self.repository = repo
        self.tenant = tenant

    async def put(self, key: K, value: V) -> None:
        """See :meth:`Repository.put`."""
        await self.repository.put(self.tenant, key, value)

    async def get(self, key: K, default: V | None = None) -> V | None:
        """See :meth:`Repository.get`."""
        return await self.repository.get(self.tenant, key, default)

    async def has(self, key: K) -> bool:
        """See :meth:`Repository.has`."""
        return await self.repository.has(self.tenant, key)

    async def delete(self, key: K) -> bool:
        """See :meth:`Repository.delete`."""
        return await self.repository.delete(self.tenant, key)

    async def insert(self, key: K, value: V) -> None:
        """See :meth:`Repository.insert`."""
        await self.repository.insert(self.tenant, key, value)

    async def put_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        """See :meth:`Repository.put_many`."""
        return await self.repository.put_many(self.tenant, items)

    async def get_many(self, keys: Iterable[K], default: V | None = None) -> list[V | None]:
        """See :meth:`Repository.get_many`."""
        return await self.repository.get_many(self.tenant, keys, default)

    async def delete_many(self, keys: Iterable[K]) -> int:
        """See :meth:`Repository.delete_many`."""
        return await self.repository.delete_many(self.tenant, keys)

    def keys(
        self,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[K]:
        """See :meth:`Repository.keys`."""
        return self.repository.keys(
            self.tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def values(
        self,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[V]:
        """See :meth:`Repository.values`."""
        return self.repository.values(
            self.tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def items(
        self,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[K, V]]:
        """See :meth:`Repository.items`."""
        return self.repository.items(
            self.tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    async def list(self, prefix: Any = None) -> list[K]:
        """See :meth:`Repository.list`."""
        return await self.repository.list(self.tenant, prefix)

    async def count(self, *, prefix: Any = None) -> int:
        """See :meth:`Repository.count`."""
        return await self.repository.count(self.tenant, prefix=prefix)

    async def drop(self) -> int:
        """See :meth:`Repository.drop_tenant`."""
        return await self.repository.drop_tenant(self.tenant)

    async def get_versioned(self, key: K) -> tuple[V | None, Version | None]:
        """See :meth:`Repository.get_versioned`."""
        return await self.repository.get_versioned(self.tenant, key)

    async def compare_and_set(self, key: K, value: V, *, version: Version | None) -> Version:
        """See :meth:`Repository.compare_and_set`."""
        return await self.repository.compare_and_set(self.tenant, key, value, version=version)

    async def last_sequence(self, sequence: str) -> int:
        """See :meth:`Repository.last_sequence`."""
        return await self.repository.last_sequence(self.tenant, sequence)

    def watch(
        self, *, prefix: Any = None, after: int | None = None, timeout: float | None = None
    ) -> AsyncWatch[K, V]:
        """See :meth:`AsyncRepository.watch`."""
        return self.repository.watch(self.tenant, prefix=prefix, after=after, timeout=timeout)
