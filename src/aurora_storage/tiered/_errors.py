"""The errors of the tiered package (defined in :mod:`aurora_storage.errors`, re-exported
here for the old import path), and the one rule they follow.

**Truth rule.** Every error a tiered write raises says whether the event is durable in
history (the cold tier), by its type and by its ``durable`` attribute:

- :class:`DurableWriteError` and its subclasses (:class:`HotTierError`,
  :class:`HotTierFullError`, :class:`TenantStoppedError`): the record *is* in history
  (``durable is True``, ``seq`` is its change-log sequence number). Do not write it again;
  the hot tier catches up (or the record waits in the parked list).
- :class:`ProjectionError` from a write (``durable is False``): the projection raised on
  the new event, so the event was *rejected*: nothing was written to either tier. The
  projection runs before anything is written whenever hot is current, which is what
  makes this possible.
- Any other error from a write (``KeyExistsError``, ``SerializationError``, an error of
  the cold tier, ...): nothing was written.

The hierarchy::

    StorageError
    ├── DurableWriteError              the event is durable in history
    │   ├── HotTierError               ... but the hot tier failed to apply it
    │   │   └── HotTierFullError       ... because hot is full (also a StorageFullError)
    │   └── TenantStoppedError         ... but its tenant's projection is stopped
    └── ProjectionError                the projection raised (durable tells whether the
                                       record is in history)
"""

from __future__ import annotations

from ..errors import (
    DurableWriteError,
    HotTierError,
    HotTierFullError,
    ProjectionError,
    TenantStoppedError,
)

__all__ = [
    "DurableWriteError",
    "HotTierError",
    "HotTierFullError",
    "ProjectionError",
    "TenantStoppedError",
]
