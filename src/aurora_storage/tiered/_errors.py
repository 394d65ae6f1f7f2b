"""The errors of the tiered package, and the one rule they follow.

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

from typing import Any

from ..errors import StorageError, StorageFullError

__all__ = [
    "DurableWriteError",
    "HotTierError",
    "HotTierFullError",
    "ProjectionError",
    "TenantStoppedError",
]


class DurableWriteError(StorageError):
    """The write is durable in history (the cold tier), but did not fully complete.

    Never write the same event again after this error: it is in history. The message says
    what did not complete and what repairs it.

    Attributes:
        seq: the change-log sequence number of the durable write.
        durable: always ``True``.
    """

    def __init__(self, message: str, *, seq: int, **context: Any) -> None:
        super().__init__(message, **context)
        self.seq = seq
        self.durable = True


class HotTierError(DurableWriteError):
    """The write reached history (cold) but the hot tier failed to apply it (disk full,
    closed, broken, or a commit that reported failure).

    Nothing is lost: the pair re-reads its position from hot before applying anything
    again, and hot catches up on the next write, on
    :meth:`TieredRepository.catch_up`, or on the next open. Each record is applied once.
    """


class HotTierFullError(HotTierError, StorageFullError):
    """A :class:`HotTierError` whose cause is a full hot tier: durable in history, not
    applied to hot. Free space (or give LMDB a larger ``map_size``), then call
    :meth:`TieredRepository.catch_up`. Also an ``OSError`` (via ``StorageFullError``)."""


class TenantStoppedError(DurableWriteError):
    """The write is durable in history, but the tenant's projection is stopped by an
    earlier poison record (policy ``on_poison="stop"``), so the new record is parked
    behind it. Fix the projection, then :meth:`TieredRepository.retry_parked`."""


class ProjectionError(StorageError):
    """The user's projection function raised (or could not decode a history record).

    From a write (``durable is False``): the event was rejected, nothing was written to
    either tier. From :meth:`TieredRepository.rebuild` (``durable is True``, the records
    are in history): the rebuild was abandoned and the previous projection is still
    served.

    Attributes:
        durable: whether the record the projection failed on is in history.
        seq: its change-log sequence number when known, else ``None``.
    """

    def __init__(
        self, message: str, *, durable: bool = False, seq: int | None = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.durable = durable
        self.seq = seq
