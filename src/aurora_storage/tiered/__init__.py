"""Tiered storage: a durable cold tier (history) with a hot tier (cache or projection).

::

    from aurora_storage.tiered import TieredRepository

    def orders(record, state):                 # history record -> projection updates
        event = record.value
        order = state.get(event["order"], {})
        state.put(event["order"], {**order, "status": event["status"]})

    repo = TieredRepository(
        hot=aurora_storage.open("lmdb:///var/data/projections"),
        cold=aurora_storage.open("rocksdb:///var/data/events"),
        projection=orders,
    )
    repo.put("acme", ("2026-11-23T10:00:00Z", 1), {"order": "o-1", "status": "created"})
    repo.get("acme", "o-1")                    # {'status': 'created'}

In a URL a projection is named (``tiered://?hot=...&cold=...&projection=orders``): it
must be registered (:func:`register_projection`) or published in the entry point group
``aurora_storage.projections``; a URL never imports code.

Errors say whether the event is durable in history: :class:`DurableWriteError` and its
subclasses (:class:`HotTierError`, :class:`HotTierFullError`,
:class:`TenantStoppedError`) mean it is, with ``durable=True``; a
:class:`ProjectionError` from a write (``durable=False``) means the projection rejected
the event and nothing was written.

See docs/tiered.md for the modes, the failure table, and the guarantees and their cost.
"""

from __future__ import annotations

from ._async import AsyncTieredRepository
from ._config import (
    ENTRY_POINT_GROUP,
    TieredConfig,
    register_projection,
    resolve_projection,
    unregister_projection,
)
from ._errors import (
    DurableWriteError,
    HotTierError,
    HotTierFullError,
    ProjectionError,
    TenantStoppedError,
)
from ._repository import TieredRepository
from ._types import (
    HistoryRecord,
    ParkedRecord,
    ProgressCallback,
    Projection,
    ProjectionState,
    RebuildProgress,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "AsyncTieredRepository",
    "DurableWriteError",
    "HistoryRecord",
    "HotTierError",
    "HotTierFullError",
    "ParkedRecord",
    "ProgressCallback",
    "Projection",
    "ProjectionError",
    "ProjectionState",
    "RebuildProgress",
    "TenantStoppedError",
    "TieredConfig",
    "TieredRepository",
    "register_projection",
    "resolve_projection",
    "unregister_projection",
]
