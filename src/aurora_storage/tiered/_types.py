"""Public value types of the tiered package: records, projection state, progress, errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from .._keys import NS_DATA, NS_DATA_END
from ..errors import CorruptionError, KeyTooLargeError
from ._errors import HotTierError, ProjectionError
from ._log import HOT_KEY_LIMIT, key_too_long

if TYPE_CHECKING:
    from .._repository import Repository

__all__ = [
    "HistoryRecord",
    "HotTierError",
    "ParkedRecord",
    "Projection",
    "ProjectionError",
    "ProjectionState",
    "RebuildProgress",
]

_MISSING: Any = object()


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


_new = object.__new__
# The slots' member descriptors: setting through them bypasses the frozen __setattr__.
_slots: Any = HistoryRecord.__dict__
_set_tenant = _slots["tenant"].__set__
_set_key = _slots["key"].__set__
_set_value = _slots["value"].__set__
_set_seq = _slots["seq"].__set__


def new_record(tenant: str, key: Any, value: Any, seq: int | None) -> HistoryRecord:
    """``HistoryRecord(tenant, key, value, seq)``, built without the frozen dataclass's
    ``__init__`` (four ``object.__setattr__`` calls; this sets the slots directly, about
    half the cost, once per projected record). The same object in every respect."""
    record: HistoryRecord = _new(HistoryRecord)
    _set_tenant(record, tenant)
    _set_key(record, key)
    _set_value(record, value)
    _set_seq(record, seq)
    return record


class _HotReadError(Exception):
    """A hot-tier read failed while a projection ran (not the projection's fault)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _HotDamage(_HotReadError):
    """A projection's hot read met a damaged record of its own tenant's projection
    (the engine's ``CorruptionError``, ``cause``): the tenant cannot be projected on
    until it is derived again from history (see _apply.Applier.apply)."""


def _read_hot(hot: Repository[Any, Any], space: bytes, full: bytes, tenant: str) -> bytes | None:
    """``hot.backend.get(space + full)`` for a projection's read of ``tenant``.

    Raises:
        _HotDamage: the record, or another record of the tenant beside it, is damaged
            (live projection only).
        _HotReadError: any other failure of the read (a damaged record in a rebuild's
            shadow, or of the pair's own records, included).
    """
    try:
        return hot.backend.get(space + full)
    except CorruptionError as exc:
        stored = exc.stored_key
        own = space + hot._prefix(tenant)
        if stored is not None and not stored.startswith(own) and NS_DATA <= stored < NS_DATA_END:
            # A miss beside another tenant's damaged record (the engine checks a miss's
            # neighbours, see Pair.hot_get): this tenant's record could only be that one
            # if damage had changed its tenant as well as its value. Read as absent; the
            # damaged record stops its own tenant when that one is projected.
            return None
        if space or (stored is not None and not stored.startswith(own)):
            raise _HotReadError(exc) from exc
        raise _HotDamage(exc) from exc
    except Exception as exc:
        raise _HotReadError(exc) from exc


class ProjectionState:
    """The projection's view of one tenant's hot state while it projects one record.

    Reads see the hot tier plus the updates made earlier in the same group of records
    (so a projection can read-modify-write); writes are collected and committed to hot
    atomically together with the change-log position they correspond to. The updates of
    a record that raises are dropped whole: a record is applied entirely or not at all.

    Each projection call gets its own state, valid only during that call: once the call
    returns, every method raises :class:`~aurora_storage.errors.ProjectionMisuseError`
    (a kept handle must not slip updates into a later record, another tenant's maybe).
    A ``put``/``delete`` from another thread as the call ends either lands in the call's
    updates or raises, never neither.
    """

    __slots__ = ("_base", "_hot", "_lock", "_pending", "_space", "tenant")

    def __init__(
        self,
        hot: Repository[Any, Any],
        overlay: dict[bytes, bytes | None],
        *,
        space: bytes = b"",
        tenant: str = "",
    ) -> None:
        self._hot = hot
        self._base = overlay
        #: this call's updates; ``None`` once the call returned (see _close)
        self._pending: dict[bytes, bytes | None] | None = {}
        # b"" for the live projection, the shadow namespace during a rebuild.
        self._space = space
        self.tenant = tenant
        #: held by put/delete around check+store and by the close (see _close)
        self._lock = threading.Lock()

    @classmethod
    def _open(
        cls,
        hot: Repository[Any, Any],
        overlay: dict[bytes, bytes | None],
        space: bytes,
        tenant: str,
        lock: threading.Lock,
    ) -> ProjectionState:
        """``ProjectionState(hot, overlay, space=space, tenant=tenant)`` without the
        keyword-argument call (once per projected record), sharing ``lock`` (the
        applier's: its states are closed one after another, by one thread)."""
        state: ProjectionState = _new(cls)
        state._hot = hot
        state._base = overlay
        state._pending = {}
        state._space = space
        state.tenant = tenant
        state._lock = lock
        return state

    def _close(self) -> dict[bytes, bytes | None] | None:
        """End the call: return its updates (for the group) and make the state unusable.

        Under the lock that put/delete hold around their check and store: a mutation
        from another thread (a kept handle) lands in the returned updates or is
        refused, never stored into them after they were taken."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def _refuse(self) -> NoReturn:
        from ..errors import ProjectionMisuseError

        raise ProjectionMisuseError(
            f"this ProjectionState (tenant {self.tenant!r}) was used after the "
            "projection call it was passed to had returned; nothing was written. A "
            "projection updates only the state of its own call (recovery and "
            "rebuild() run it again): do not keep the handle",
            tenant=self.tenant,
            backend="tiered",
        )

    def get(self, key: Any, default: Any = None) -> Any:
        """The projected value under ``key`` (this tenant), or ``default``.

        Raises:
            ProjectionMisuseError: the projection call this state was given to returned.
        """
        pending = self._pending
        if pending is None:
            self._refuse()
        full = self._hot._full(self.tenant, key)
        raw = pending.get(full, _MISSING)
        if raw is _MISSING:
            raw = self._base.get(full, _MISSING)
        if raw is _MISSING:
            raw = _read_hot(self._hot, self._space, full, self.tenant)
        if raw is None:
            return default
        return self._hot._load(raw, self.tenant, key)

    def has(self, key: Any) -> bool:
        """Whether ``key`` holds a projected value."""
        return self.get(key, _MISSING) is not _MISSING

    def put(self, key: Any, value: Any) -> None:
        """Set the projected value under ``key``.

        Raises:
            SerializationError: the hot tier's codec cannot encode ``value``.
            KeyTooLargeError: the stored key (encoded tenant + key) is longer than the
                496 bytes a tiered pair's projection holds (a rebuild builds it under a
                15-byte prefix), however long (its ``limit`` is 496).
            ProjectionMisuseError: the projection call this state was given to returned.
        """
        pending = self._pending
        if pending is None:
            self._refuse()
        hot = self._hot
        try:
            data = hot._encode(value)
        except Exception:  # the typed error, with the value's path (re-encodes once)
            data = hot._value(value, self.tenant, key)
        try:
            full = hot._full(self.tenant, key)
        except KeyTooLargeError as exc:  # past every engine's limit: still the pair's
            if exc.stored_key is None:  # no key could be encoded (a number too large)
                raise
            raise key_too_long(exc.stored_key, "projection", self.tenant, key) from None
        if len(full) > HOT_KEY_LIMIT:  # a rebuild could not hold it in its shadow
            raise key_too_long(full, "projection", self.tenant, key)
        # Checked again under the lock _close takes: a store after the call ended would
        # return normally and be neither committed nor refused. (acquire/release: about
        # half the cost of a with statement, once per projected update.)
        lock = self._lock
        lock.acquire()
        try:
            if self._pending is None:
                self._refuse()
            pending[full] = data
        finally:
            lock.release()

    def delete(self, key: Any) -> None:
        """Remove ``key`` from the projection (no error if absent).

        Raises:
            ProjectionMisuseError: the projection call this state was given to returned.
        """
        if self._pending is None:
            self._refuse()
        full = self._hot._full(self.tenant, key)
        lock = self._lock
        lock.acquire()  # see put
        try:
            pending = self._pending
            if pending is None:
                self._refuse()
            pending[full] = None
        finally:
            lock.release()

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


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A history record the projection could not apply, set aside by the poison policy
    (see :meth:`TieredRepository.parked`).

    Attributes:
        tenant: its tenant.
        key: its history key, or ``None`` when the key itself cannot be decoded.
        seq: its change-log sequence number, or ``None`` when a rebuild parked it.
        reason: ``"raised"`` (the projection raised), ``"undecodable"`` (the record
            cannot be decoded), ``"held"`` (its tenant is stopped: it waits behind the
            tenant's first poison or damaged record) or ``"damaged"`` (its tenant's
            projection in the hot tier is damaged: ``rebuild(tenant)`` derives it again
            from history and applies it).
        cause: the error, as text (``TypeName: message``).
    """

    tenant: str
    key: Any
    seq: int | None
    reason: str
    cause: str


ProgressCallback = Callable[[RebuildProgress], None]
