"""The async twin: AsyncRepository plus the tiered-only operations."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Generic, TypeVar

from .._async import AsyncRepository
from ._types import ParkedRecord, ProgressCallback

if TYPE_CHECKING:
    # Types only: the sync repository imports this module (its as_async).
    from ._repository import TieredRepository

__all__ = ["AsyncTieredRepository"]

K = TypeVar("K")
V = TypeVar("V")


class AsyncTieredRepository(AsyncRepository[K, V], Generic[K, V]):
    """:class:`~aurora_storage.AsyncRepository` over a :class:`TieredRepository`, plus
    :meth:`rebuild`, :meth:`catch_up`, :meth:`parked` and :meth:`retry_parked` as
    coroutines (run in a worker thread). No logic of its own: every call goes through
    the :class:`TieredRepository`'s methods, never a tier's native-async form (it would
    bypass the change log and the projection; see ``TieredRepository._native_async``).

    ``AsyncRepository(tiered)`` also works for the common API; this class adds the
    tiered operations. Point writes run in a worker thread when either tier declares
    ``blocking_writes``, as for any repository; reads do too when a tier is a network
    engine (one with a native-async form, NATS).
    """

    def __init__(self, repository: TieredRepository[K, V]) -> None:
        super().__init__(repository)
        self._tiered = repository

    @property
    def sync(self) -> TieredRepository[K, V]:
        """The underlying synchronous :class:`TieredRepository`."""
        return self._tiered

    @property
    def lag(self) -> int:
        """See :attr:`TieredRepository.lag`."""
        return self._tiered.lag

    async def catch_up(self) -> int:
        """See :meth:`TieredRepository.catch_up`."""
        return await asyncio.to_thread(self._tiered.catch_up)

    async def rebuild(
        self, tenant: str | None = None, *, progress: ProgressCallback | None = None
    ) -> int:
        """See :meth:`TieredRepository.rebuild` (``progress`` is called from the worker
        thread, and never awaited: like the sync method, this refuses an ``async def``
        progress, or a generator function, with ``InvalidArgumentError`` before anything
        is written. The rebuild runs in the worker thread holding the pair, so awaiting
        a callback on the event loop could deadlock with the very tasks it would await;
        hand progress over with a plain function, e.g. ``lambda info:
        loop.call_soon_threadsafe(queue.put_nowait, info)``)."""
        return await asyncio.to_thread(lambda: self._tiered.rebuild(tenant, progress=progress))

    async def parked(self, tenant: str | None = None) -> list[ParkedRecord]:
        """See :meth:`TieredRepository.parked`."""
        return await asyncio.to_thread(self._tiered.parked, tenant)

    async def retry_parked(self, tenant: str | None = None) -> int:
        """See :meth:`TieredRepository.retry_parked`."""
        return await asyncio.to_thread(self._tiered.retry_parked, tenant)

    def __repr__(self) -> str:
        return f"<AsyncTieredRepository of {self._tiered!r}>"
