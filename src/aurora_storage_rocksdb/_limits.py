"""The largest record RocksDB stores, checked before anything is written, and the error
for one over it (:class:`ValueTooLargeError`). Light: imports no engine.

RocksDB keeps the lengths of a record in 32 bits, in three places (RocksDB 9.8,
``db/write_batch.cc``, ``db/memtable.cc``, ``table/block_based/block.h``):

* a write batch refuses a key or value over ``2**32 - 1`` bytes with
  ``InvalidArgument("value is too large")`` - a status rocksdict's ``WriteBatch.put``
  discards (the C API returns nothing), so such a value was silently left out of a
  batch whose other records were then written;
* the memtable stores a whole entry (key, 8 bytes of sequence number, value and their
  varint lengths) under one ``uint32_t`` length: a record within the write batch's limit
  but within a few dozen bytes of it wraps that length round. A value of
  ``2**32 - 1`` bytes crashed the writing process (SIGSEGV) after it had reached the
  write-ahead log, and every later open crashed again replaying the log;
* a table block's restart offset is a ``uint32_t`` too.

So the plugin refuses any record whose key and value together exceed
:data:`MAX_RECORD_SIZE`, 1 KiB below 4 GiB, with a margin under what was verified end
to end (a 511-byte key and a value of ``2**32 - 1024`` bytes written, flushed to a
table file, reopened and read back) for the framing. Keys reaching a backend are at
most 511 bytes (:data:`aurora_storage.MAX_KEY_SIZE`), so every value up to
``MAX_RECORD_SIZE - 511`` bytes is accepted whatever its key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aurora_storage import errors
from aurora_storage._keys import NS_DATA, decode_stored_key
from aurora_storage.errors import InvalidKeyError, StorageError

__all__ = ["MAX_RECORD_SIZE", "ValueTooLargeError", "check_batch", "check_records", "too_large"]

#: The most bytes a record's key and value may hold together (4 GiB - 1 KiB). Read at
#: each call (``_limits.MAX_RECORD_SIZE``), so a test can lower it.
MAX_RECORD_SIZE = 2**32 - 1024


class ValueTooLargeError(errors.ValueTooLargeError):
    """A value (with its key) is larger than RocksDB can store: a record's key and value
    together may hold at most :data:`MAX_RECORD_SIZE` bytes (4 GiB - 1 KiB). Nothing of
    the call was written (a batch is refused as a whole). It is an
    :class:`aurora_storage.errors.ValueTooLargeError` (an ``InvalidArgumentError``, so
    also a ``ValueError``).

    Attributes:
        size: the value's size in bytes (0 for a delete whose key is too large).
        key_size: the stored key's size in bytes.
        limit: the largest value this key may hold (``MAX_RECORD_SIZE - key_size``).
    """

    #: Always known here (the core class allows ``None`` for engines that cannot tell).
    size: int
    limit: int

    def __init__(
        self, message: str, *, size: int, key_size: int, limit: int, **context: Any
    ) -> None:
        super().__init__(message, size=size, limit=limit, **context)
        self.key_size = key_size


def too_large(key: bytes, value: bytes | None, path: str) -> ValueTooLargeError:
    """The error for the record ``(key, value)`` over the limit, naming its tenant and
    key where the stored key is a user record's."""
    size = 0 if value is None else len(value)
    limit = MAX_RECORD_SIZE - len(key)
    tenant: str | None = None
    user_key: Any = None
    named = f"stored key {bytes(key[:64])!r}"
    if key[:1] == NS_DATA:
        try:
            tenant, user_key = decode_stored_key(bytes(key))
        except InvalidKeyError:
            pass  # not a user record's key: named by its bytes
        else:
            named = f"key {user_key!r} of tenant {tenant!r}"
    what = f"the value for {named} is {size:,} bytes" if value is not None else named
    return ValueTooLargeError(
        f"{what} (the key {len(key):,} bytes): too large for RocksDB, which stores at "
        f"most {MAX_RECORD_SIZE:,} bytes (4 GiB - 1 KiB) of key and value together, here "
        f"a value of at most {max(limit, 0):,} bytes (its write batch and memtable keep "
        "a record's length in 32 bits). Nothing was written. Keep large blobs outside "
        "the store (a file, an object store) and store a reference to them, or split "
        "the value over several keys",
        size=size,
        key_size=len(key),
        limit=limit,
        tenant=tenant,
        key=user_key,
        backend="rocksdb",
        path=path,
        stored_key=bytes(key),
    )


def check_records(records: Iterable[tuple[bytes, bytes | None]], path: str) -> None:
    """Raise :class:`ValueTooLargeError` for the first record (a put, or a delete:
    value ``None``) over :data:`MAX_RECORD_SIZE`."""
    limit = MAX_RECORD_SIZE
    for key, value in records:
        if len(key) + (0 if value is None else len(value)) > limit:
            raise too_large(key, value, path)


def check_batch(records: Iterable[tuple[bytes, bytes | None]], path: str, *, lost: bool) -> None:
    """The batch paths' slow path, taken after a write batch took ``records`` and either
    grew by more than :data:`MAX_RECORD_SIZE` or holds fewer records than it was given
    (``lost``: it dropped one over its own limit). A batch that grew by no more than the
    limit holds no record over it, so the fast path costs two calls per batch (or per
    chunk) and nothing per record; here each record is measured.

    Raises:
        ValueTooLargeError: a record over the limit.
        StorageError: the batch lost a record that is not over the limit (never seen).
    """
    check_records(records, path)
    if lost:
        raise StorageError(
            f"RocksDB's write batch left out a record of {path} that is within its limit; "
            "nothing was written. Report this as a bug",
            backend="rocksdb",
            path=path,
        )
