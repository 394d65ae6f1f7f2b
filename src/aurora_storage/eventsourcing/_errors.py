"""aurora-storage errors -> eventsourcing persistence errors, at the module's boundary.

eventsourcing's applications catch the PEP 249 style errors of
``eventsourcing.persistence`` (``IntegrityError`` for a conflicting aggregate version or
tracking record, ``OperationalError`` for a store that cannot work now, ...). Every
recorder method lets only those escape; the aurora error stays chained as
``__cause__`` so nothing of the original message is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)

from aurora_storage import errors as aerr
from aurora_storage.errors import (
    BatchTooLargeError,
    InvalidKeyError,
    KeyExistsError,
    SerializationError,
    StorageError,
)

from ._records import id_text

__all__ = ["translate"]

# Most specific first: the lookup walks the aurora exception's MRO.
_MAP: dict[type[BaseException], type[PersistenceError]] = {
    aerr.KeyExistsError: IntegrityError,
    aerr.VersionConflictError: IntegrityError,
    aerr.NotSupportedError: NotSupportedError,
    aerr.InvalidKeyError: DataError,  # includes KeyTooLargeError (a very long originator id)
    aerr.InvalidTenantError: ProgrammingError,
    aerr.InvalidArgumentError: ProgrammingError,
    aerr.SerializationError: DataError,
    aerr.ConfigurationError: ProgrammingError,
    aerr.BackendNotFoundError: InterfaceError,
    aerr.RepositoryClosedError: InterfaceError,
    aerr.ReadOnlyError: OperationalError,
    aerr.StoreLockedError: OperationalError,
    aerr.StorageFullError: OperationalError,
    aerr.CorruptionError: DatabaseError,
    aerr.StorageError: OperationalError,
}


def translate(exc: BaseException, doing: str) -> PersistenceError:
    """The eventsourcing error for an aurora-storage error ``exc``.

    Args:
        exc: an exception raised by the repository (a ``StorageError``).
        doing: what the recorder was doing, for the message (``"insert events"``).

    Returns:
        A new :class:`eventsourcing.persistence.PersistenceError` subclass instance; the
        caller raises it ``from exc``.
    """
    for klass in type(exc).__mro__:
        target = _MAP.get(klass)
        if target is not None:
            return target(f"could not {doing}: {exc}")
    return PersistenceError(f"could not {doing}: {exc}")


def _version_error(stored_events: Sequence[StoredEvent], event: StoredEvent) -> InvalidKeyError:
    """The error for ``event``'s version, which is not an int."""
    i = next(i for i, s in enumerate(stored_events) if s is event)
    v = event.originator_version
    return InvalidKeyError(
        f"event {i} of the call (originator_id {event.originator_id!r:.80}): "
        f"originator_version must be an int, got {type(v).__name__} {v!r:.80}; "
        "eventsourcing numbers an aggregate's events 1, 2, 3, ... (True is no version: "
        "it would be stored as a second version 1); nothing was written"
    )


def _exists_error(stored_events: Sequence[StoredEvent], exc: KeyExistsError) -> Exception:
    """The IntegrityError for the batch's KeyExistsError: when the call itself repeats
    an ``(originator_id, originator_version)``, it says so (nothing was stored under
    it); otherwise the translated error (a version that exists already)."""
    seen: set[tuple[str, int]] = set()
    repeated: list[StoredEvent] = []
    try:
        for s in stored_events:
            k = (id_text(s.originator_id), s.originator_version)
            if k in seen:
                repeated.append(s)
            seen.add(k)
    except Exception:  # pragma: no cover - the batch built these keys: they are valid
        return translate(exc, "insert events")
    if not repeated:
        return translate(exc, "insert events")
    named = ", ".join(
        f"originator {s.originator_id} version {s.originator_version}" for s in repeated[:5]
    )
    more = " ..." if len(repeated) > 5 else ""
    also = (
        "; some of the call's other versions also exist already (see the cause)"
        if len(exc.keys) > len(repeated)
        else ""
    )
    return IntegrityError(
        f"could not insert events: {named}{more} is repeated in this call (each "
        "(originator_id, originator_version) may appear once in one insert_events)"
        f"{also}; nothing was written"
    )


def _batch_too_large(exc: StorageError, *, notify: bool, tracking: bool) -> ProgrammingError | None:
    """The ProgrammingError for a batch the backend refuses as larger than one atomic
    write may ever be (:class:`~aurora_storage.errors.BatchTooLargeError`, with ``size``,
    ``limit`` and ``internal``; the NATS plugin's subclasses it), in events per save;
    ``None`` for any other error.

    Retrying cannot help (so not OperationalError), and the caller of
    ``Application.save()`` cannot split the batch: the message says how many events one
    save may hold and what to change.
    """
    limit = getattr(exc, "limit", None)
    internal = getattr(exc, "internal", None)
    if (
        not isinstance(exc, BatchTooLargeError)  # ValueTooLargeError: a value, not a batch
        or type(limit) is not int
        or type(internal) is not int
        or type(getattr(exc, "size", None)) is not int
    ):
        return None
    per_event = 2 if notify else 1
    what = (
        "each event is 2 operations (the event and its notification) + the counter"
        if notify
        else "each event is 1 operation"
    )
    if tracking:
        what += " + the tracking record"
    room = limit - internal - (1 if tracking else 0)
    if limit > 0 and room >= 0:
        most = f"at most {room // per_event} events per save on this bucket"
    else:
        most = (
            "fewer events per save on this bucket than this one holds (the server did "
            "not say how many)"
        )
    return ProgrammingError(
        f"could not insert events: {most} ({what}); raise max_batch and the server's "
        "jetstream batch limit (jetstream.limits.batch.max_msgs) together, or save fewer "
        f"events at once; nothing was written ({exc})"
    )


def _packing_error(exc: BaseException) -> SerializationError:
    """A packer's error no single field explains, as a SerializationError."""
    error = SerializationError(
        f"the events' records cannot be packed ({type(exc).__name__}: {exc}); nothing was written"
    )
    error.__cause__ = exc
    return error
