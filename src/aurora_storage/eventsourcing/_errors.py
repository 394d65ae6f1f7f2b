"""aurora-storage errors -> eventsourcing persistence errors, at the module's boundary.

eventsourcing's applications catch the PEP 249 style errors of
``eventsourcing.persistence`` (``IntegrityError`` for a conflicting aggregate version or
tracking record, ``OperationalError`` for a store that cannot work now, ...). Every
recorder method lets only those escape; the aurora error stays chained as
``__cause__`` so nothing of the original message is lost.
"""

from __future__ import annotations

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

from aurora_storage import errors as aerr

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
