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

See docs/tiered.md for the modes, the crash-safety guarantees and their cost.
"""

from __future__ import annotations

from ._async import AsyncTieredRepository
from ._repository import TieredRepository, resolve_projection
from ._types import (
    HistoryRecord,
    HotTierError,
    ProgressCallback,
    Projection,
    ProjectionError,
    ProjectionState,
    RebuildProgress,
)

__all__ = [
    "AsyncTieredRepository",
    "HistoryRecord",
    "HotTierError",
    "ProgressCallback",
    "Projection",
    "ProjectionError",
    "ProjectionState",
    "RebuildProgress",
    "TieredRepository",
    "resolve_projection",
]
