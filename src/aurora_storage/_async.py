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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from ._eventstore import AsyncWatch, Slot, Version
from ._repository import Batch, Repository
from .backend import Capabilities
from .codecs import Codec

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


async def _stream(it: Iterator[Any]) -> AsyncIterator[Any]:
    try:
        size = FIRST_CHUNK
        chunk = _take(it, size)
        while True:
            for item in chunk:
                yield item
            if len(chunk) < size:
                return
            size = CHUNK
            chunk = await asyncio.to_thread(_take, it, size)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class AsyncRepository(Generic[K, V]):
    """The same methods as :class:`~aurora_storage.Repository`, as coroutines and async
    iterators. Get one from :func:`aurora_storage.open_async` or wrap a repository.

    ``async with`` closes it at the end.
    """

    def __init__(self, repository: Repository[K, V]) -> None:
        self._repo = repository
        self._offload_writes = repository.capabilities.blocking_writes

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.to_thread(fn, *args)

    @property
    def sync(self) -> Repository[K, V]:
        """The underlying synchronous repository."""
        return self._repo

    @property
    def capabilities(self) -> Capabilities:
        """See :attr:`Repository.capabilities`."""
        return self._repo.capabilities

    @property
    def codec(self) -> Codec:
        """See :attr:`Repository.codec`."""
        return self._repo.codec

    @property
    def closed(self) -> bool:
        """See :attr:`Repository.closed`."""
        return self._repo.closed

    # point operations: inline (microseconds), writes offloaded if the backend blocks
    async def get(self, tenant: str, key: K, default: V | None = None) -> V | None:
        """See :meth:`Repository.get`."""
        return self._repo.get(tenant, key, default)

    async def has(self, tenant: str, key: K) -> bool:
        """See :meth:`Repository.has`."""
        return self._repo.has(tenant, key)

    async def put(self, tenant: str, key: K, value: V) -> None:
        """See :meth:`Repository.put`."""
        if self._offload_writes:
            await self._run(self._repo.put, tenant, key, value)
        else:
            self._repo.put(tenant, key, value)

    async def delete(self, tenant: str, key: K) -> bool:
        """See :meth:`Repository.delete`."""
        if self._offload_writes:
            return await self._run(self._repo.delete, tenant, key)
        return self._repo.delete(tenant, key)

    async def insert(self, tenant: str, key: K, value: V) -> None:
        """See :meth:`Repository.insert`."""
        if self._offload_writes:
            await self._run(self._repo.insert, tenant, key, value)
        else:
            self._repo.insert(tenant, key, value)

    # long work: a worker thread
    async def put_many(self, tenant: str, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        """See :meth:`Repository.put_many`."""
        return await self._run(self._repo.put_many, tenant, items)

    async def get_many(
        self, tenant: str, keys: Iterable[K], default: V | None = None
    ) -> list[V | None]:
        """See :meth:`Repository.get_many`."""
        return await self._run(self._repo.get_many, tenant, list(keys), default)

    async def delete_many(self, tenant: str, keys: Iterable[K]) -> int:
        """See :meth:`Repository.delete_many`."""
        return await self._run(self._repo.delete_many, tenant, list(keys))

    async def count(self, tenant: str, *, prefix: Any = None) -> int:
        """See :meth:`Repository.count`."""
        return await asyncio.to_thread(lambda: self._repo.count(tenant, prefix=prefix))

    async def list(self, tenant: str, prefix: Any = None) -> list[K]:
        """See :meth:`Repository.list`."""
        return [k async for k in self.keys(tenant, prefix=prefix)]

    async def drop_tenant(self, tenant: str) -> int:
        """See :meth:`Repository.drop_tenant`."""
        return await self._run(self._repo.drop_tenant, tenant)

    async def stats(self) -> dict[str, Any]:
        """See :meth:`Repository.stats`."""
        return await self._run(self._repo.stats)

    async def flush(self) -> None:
        """See :meth:`Repository.flush`."""
        await self._run(self._repo.flush)

    # scans: async iterators; arguments are validated when called, not at first item
    def keys(self, tenant: str, **scan: Any) -> AsyncIterator[K]:
        """See :meth:`Repository.keys` (``prefix``, ``start``, ``stop``, ``reverse``, ``limit``)."""
        return _stream(self._repo.keys(tenant, **scan))

    def values(self, tenant: str, **scan: Any) -> AsyncIterator[V]:
        """See :meth:`Repository.values`."""
        return _stream(self._repo.values(tenant, **scan))

    def items(self, tenant: str, **scan: Any) -> AsyncIterator[tuple[K, V]]:
        """See :meth:`Repository.items`."""
        return _stream(self._repo.items(tenant, **scan))

    def tenants(self) -> AsyncIterator[str]:
        """See :meth:`Repository.tenants`."""
        return _stream(self._repo.tenants())

    # event store: point operations inline (like get/put), watch waits without a thread
    async def get_versioned(self, tenant: str, key: K) -> tuple[V | None, Version | None]:
        """See :meth:`Repository.get_versioned`."""
        return self._repo.get_versioned(tenant, key)

    async def compare_and_set(
        self, tenant: str, key: K, value: V, *, version: Version | None
    ) -> Version:
        """See :meth:`Repository.compare_and_set`."""
        if self._offload_writes:
            return await asyncio.to_thread(
                lambda: self._repo.compare_and_set(tenant, key, value, version=version)
            )
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
        """``async with arepo.batch() as b: b.put(...)``; commits in a worker thread."""
        return AsyncBatch(self._repo.batch())

    def tenant(self, tenant: str) -> AsyncTenantView[K, V]:
        """A view bound to one tenant."""
        self._repo.tenant(tenant)
        return AsyncTenantView(self, tenant)

    async def close(self) -> None:
        """See :meth:`Repository.close`."""
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

    def __init__(self, batch: Batch[K, V]) -> None:
        self._batch = batch

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

    def __len__(self) -> int:
        return len(self._batch)

    async def commit(self) -> None:
        """Write everything atomically now."""
        await asyncio.to_thread(self._batch.commit)

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

    def keys(self, **scan: Any) -> AsyncIterator[K]:
        """See :meth:`Repository.keys`."""
        return self.repository.keys(self.tenant, **scan)

    def values(self, **scan: Any) -> AsyncIterator[V]:
        """See :meth:`Repository.values`."""
        return self.repository.values(self.tenant, **scan)

    def items(self, **scan: Any) -> AsyncIterator[tuple[K, V]]:
        """See :meth:`Repository.items`."""
        return self.repository.items(self.tenant, **scan)

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
