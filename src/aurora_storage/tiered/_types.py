"""Public value types of the tiered package: records, projection state, progress, errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StorageError

if TYPE_CHECKING:
    from .._repository import Repository

__all__ = [
    "HistoryRecord",
    "HotTierError",
    "Projection",
    "ProjectionError",
    "ProjectionState",
    "RebuildProgress",
]

_MISSING: Any = object()


class HotTierError(StorageError):
    """The write reached the durable cold tier (history) but the hot tier failed to
    apply it (disk full, closed, broken).

    Nothing is lost: the record is durable in cold, and the hot tier catches up on the
    next open, on :meth:`TieredRepository.catch_up`, or before the next tiered write.

    Attributes:
        seq: the change-log sequence number of the durable write.
        durable: always ``True`` (the record is in cold).
    """

    def __init__(self, message: str, *, seq: int, **context: Any) -> None:
        super().__init__(message, **context)
        self.seq = seq
        self.durable = True


class ProjectionError(StorageError):
    """The user's projection function raised. When this comes from a write, nothing was
    written to either tier; from ``catch_up()``/``rebuild()``, hot stays at the last
    record that projected cleanly (fix the projection, then call ``catch_up()``)."""


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One record of history (the cold tier), as handed to a projection.

    Attributes:
        tenant: the tenant it belongs to.
        key: its key in history (as decoded from the store: lists come back as tuples).
        value: its value (as decoded by the cold tier's codec).
        seq: its change-log sequence number, or ``None`` during :meth:`rebuild`, which
            reads history itself rather than the (trimmed) change log.
    """

    tenant: str
    key: Any
    value: Any
    seq: int | None = None


class _HotReadError(Exception):
    """A hot-tier read failed while a projection ran (not the projection's fault)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class ProjectionState:
    """The projection's view of one tenant's hot state while it projects a record.

    Reads see the hot tier plus the updates made earlier in the same group of records
    (so a projection can read-modify-write); writes are collected and committed to hot
    atomically together with the change-log position they correspond to.
    """

    __slots__ = ("_hot", "_overlay", "tenant")

    def __init__(self, hot: Repository[Any, Any], overlay: dict[bytes, bytes | None]) -> None:
        self._hot = hot
        self._overlay = overlay
        self.tenant = ""

    def _bind(self, tenant: str) -> ProjectionState:
        self.tenant = tenant
        return self

    def get(self, key: Any, default: Any = None) -> Any:
        """The projected value under ``key`` (this tenant), or ``default``."""
        full = self._hot._full(self.tenant, key)
        raw = self._overlay.get(full, _MISSING)
        if raw is _MISSING:
            try:
                raw = self._hot.backend.get(full)
            except Exception as exc:
                raise _HotReadError(exc) from exc
        if raw is None:
            return default
        return self._hot._load(raw, self.tenant, key)

    def has(self, key: Any) -> bool:
        """Whether ``key`` holds a projected value."""
        return self.get(key, _MISSING) is not _MISSING

    def put(self, key: Any, value: Any) -> None:
        """Set the projected value under ``key``."""
        self._overlay[self._hot._full(self.tenant, key)] = self._hot._value(value, self.tenant, key)

    def delete(self, key: Any) -> None:
        """Remove ``key`` from the projection (no error if absent)."""
        self._overlay[self._hot._full(self.tenant, key)] = None

    def __repr__(self) -> str:
        return f"<ProjectionState tenant={self.tenant!r}>"


class Projection(Protocol):
    """A projection: ``projection(record, state) -> None``.

    It reads ``record.value`` (one history record) and updates ``state`` (the tenant's
    hot state: ``get``/``put``/``delete``). It must be deterministic - the same record
    and state give the same updates - because crash recovery and :meth:`rebuild` run it
    again; it must not have other side effects for the same reason.
    """

    def __call__(self, record: HistoryRecord, state: ProjectionState, /) -> None: ...


@dataclass(frozen=True, slots=True)
class RebuildProgress:
    """Progress of a rebuild, reported after each committed chunk.

    Attributes:
        done: history records applied so far.
        total: records to apply (counted before the rebuild starts).
        tenant: the tenant being rebuilt, or ``None`` for all tenants.
    """

    done: int
    total: int
    tenant: str | None


ProgressCallback = Callable[[RebuildProgress], None]
