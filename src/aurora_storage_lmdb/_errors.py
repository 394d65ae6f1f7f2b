"""Engine errors of py-lmdb as aurora-storage errors: the LMDB plugin's one translation
helper (:func:`translate`). The backend calls it only once an engine call failed and
its retries (map growth, resize races) are used up: the hot paths pay nothing for it."""

from __future__ import annotations

import errno
import os

import lmdb

from aurora_storage import decode_stored_key
from aurora_storage.errors import (
    CorruptionError,
    InvalidKeyError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    StoreLockedError,
    ValueTooLargeError,
)

from ._disk import disk_nearly_full

__all__ = ["MAX_RECORD_SIZE", "RACE_ERRORS", "translate", "value_too_large"]

# liblmdb's text for EIO (it raises a plain lmdb.Error with no errno attached).
_EIO_TEXT = os.strerror(errno.EIO)

#: The most bytes LMDB stores in one record (MAXDATASIZE in liblmdb's mdb.c: a node
#: keeps its data size in 32 bits); a larger one fails with MDB_BAD_VALSIZE.
MAX_RECORD_SIZE = 0xFFFFFFFF

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
    if isinstance(exc, lmdb.DiskError):
        # ENOSPC: the commit's pages could not be written; liblmdb rolled the
        # transaction back, the store is intact.
        return StorageFullError(
            f"{where}: the filesystem is full ({exc}); nothing of this write was stored. "
            "Free space and retry",
            backend="lmdb",
            path=path,
        )
    if isinstance(exc, lmdb.MapFullError | lmdb.TxnFullError):
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


def value_too_large(key: bytes, size: int, limit: int, path: str) -> ValueTooLargeError:
    """The error for a value of ``size`` bytes at the stored key ``key``, over the
    ``limit`` of the LMDB store at ``path`` (refused before the engine, nothing
    written). Names the user's tenant and key where the stored key decodes."""
    tenant: str | None = None
    user_key: object = None
    where = f"at stored key {key!r}"
    try:
        tenant, user_key = decode_stored_key(key)
    except (InvalidKeyError, ValueError):
        pass
    else:
        where = f"for tenant {tenant!r}, key {user_key!r}"
    return ValueTooLargeError(
        f"the value {where} is {size:,} bytes; an LMDB store takes values of at most "
        f"{limit:,} bytes (LMDB stores at most 4 GiB - 1 byte, {MAX_RECORD_SIZE:,} "
        "bytes, per record; the plugin adds a 4-byte checksum and keeps room for the "
        "change log's copy of the key). Nothing was written. Keep large blobs outside "
        "the store (a file, an object store) and store a reference, or split the value",
        tenant=tenant,
        key=user_key,
        backend="lmdb",
        path=path,
        stored_key=key,
        size=size,
        limit=limit,
    )
