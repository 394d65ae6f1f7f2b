"""How a cancelled async write stops its sync worker before the commit point.

The async twin (:mod:`aurora_storage._async`) runs long writes in a worker thread and
passes them an ``abort()`` check; a write that sees it set before its commit point
raises :class:`Aborted`, so the backend discards it. Shared by the sync repository
(which raises it) and the async twin (which expects it), so neither imports the other.
"""

from __future__ import annotations

__all__ = ["Aborted"]


class Aborted(Exception):
    """Raised inside a write the async twin's caller cancelled before its commit point;
    the backend discards the write. Never reaches users (the cancellation does)."""
