"""Engine errors of py-lmdb as aurora-storage errors: the LMDB plugin's one translation
helper (:func:`translate`). The backend calls it only once an engine call failed and
its retries (map growth, resize races) are used up: the hot paths pay nothing for it."""

from __future__ import annotations

import errno
import os

import lmdb

from aurora_storage.errors import (
    CorruptionError,
    InvalidKeyError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    StoreLockedError,
)

from ._disk import disk_nearly_full

__all__ = ["RACE_ERRORS", "translate"]

# liblmdb's text for EIO (it raises a plain lmdb.Error with no errno attached).
_EIO_TEXT = os.strerror(errno.EIO)

#: Errors a read may see when it races a resize on another thread (retried).
RACE_ERRORS = (lmdb.Error, lmdb.InvalidParameterError, lmdb.BadTxnError, lmdb.BadRslotError)


def translate(exc: Exception, what: str, *, path: str, max_readers: int) -> StorageError:
    """The aurora-storage error for the engine error ``exc`` raised while doing ``what``
    on the store at ``path`` (the caller chains it: ``raise ... from exc``).

    The store's own state (closed, inherited across fork) is the backend's to check
    first; this reads the engine error only.
    """
    where = f"{what} on the LMDB store at {path}"
    if isinstance(exc, lmdb.ReadonlyError):
        return ReadOnlyError(f"{where}: the store is read-only", backend="lmdb", path=path)
    if isinstance(exc, lmdb.MapFullError | lmdb.TxnFullError | lmdb.DiskError):
        return StorageFullError(f"{where}: {exc}", backend="lmdb", path=path)
    if _EIO_TEXT in str(exc) and disk_nearly_full(path):
        # liblmdb reports a write cut short (the disk filled during the commit)
        # as EIO. The transaction was rolled back; the store is intact.
        return StorageFullError(
            f"{where}: the filesystem is full (a write was cut short: {exc}); nothing "
            "of this write was stored. Free space and retry",
            backend="lmdb",
            path=path,
        )
    if isinstance(exc, lmdb.ReadersFullError):
        return StorageFullError(
            f"{where}: all {max_readers} reader slots are in use by live "
            "processes/threads; raise max_readers (fixed by the first process to open "
            "the store)",
            backend="lmdb",
            path=path,
        )
    if isinstance(
        exc,
        lmdb.CorruptedError | lmdb.PageNotFoundError | lmdb.PanicError | lmdb.InvalidError,
    ):
        return CorruptionError(f"{where}: {exc}", backend="lmdb", path=path)
    if isinstance(exc, lmdb.BadValsizeError):
        return InvalidKeyError(f"{where}: {exc}", backend="lmdb", path=path)
    if isinstance(exc, lmdb.LockError):
        return StoreLockedError(f"{where}: {exc}", backend="lmdb", path=path)
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        return StorageFullError(f"{where}: disk full: {exc}", backend="lmdb", path=path)
    return StorageError(f"{where}: {exc}", backend="lmdb", path=path)
