"""The error tree of aurora-storage: every error the core raises is defined here.

Every failure a user can cause raises one of these; engine exceptions are translated at
the backend boundary and chained as ``__cause__``. Where a user's ``except`` clause for a
builtin would naturally expect the error, the builtin is mixed in::

    StorageError
    ├── InvalidKeyError            (ValueError)   key of an unsupported type, NaN, ...
    │   └── KeyTooLargeError                      encoded key over the size limit
    ├── InvalidTenantError         (ValueError)   tenant not a non-empty str
    ├── InvalidArgumentError (TypeError, ValueError) a str where keys are expected, ...
    │   ├── ValueTooLargeError                    a value over the engine's record size
    │   └── BatchTooLargeError                    an atomic batch over the engine's bound
    ├── KeyExistsError             (KeyError)     insert() on an existing key
    ├── VersionConflictError                      compare-and-set found another version
    ├── ConditionFailed                           backend -> repository only: a
    │                                             conditional commit failed
    ├── NotSupportedError          (NotImplementedError) the backend does not declare it
    ├── PositionExpiredError       (LookupError)  watch(after=N): N is no longer retained
    ├── SerializationError         (ValueError)   value the codec cannot encode/decode
    ├── ConfigurationError         (ValueError)   bad or conflicting options, codec mismatch
    │   ├── InvalidURLError                       malformed URL, unknown/malformed option
    │   └── ForeignStoreError                     the path holds a store aurora-storage
    │                                             did not write (a TypeScript store)
    ├── BackendNotFoundError       (LookupError)  no plugin for the URL scheme
    │   └── PluginError                           an installed plugin is broken
    │       └── PluginConflictError               two distributions claim one scheme
    ├── RepositoryClosedError      (RuntimeError) use after close()
    │   └── InheritedHandleError                  a handle used in a fork() child
    ├── ReadOnlyError              (PermissionError) write to a read-only repository
    ├── StoreLockedError           (OSError)      another writer holds the store
    ├── InterruptedRestoreError                   no store at a path a restore left its
    │                                             copies beside: not created there
    ├── StorageFullError           (OSError)      disk or map full and cannot grow
    ├── CorruptionError                           damaged data detected
    ├── SeedKeyError               (ValueError)   import-seed: a stored key splits only by guessing
    ├── SeedSourceError     (FileNotFoundError)   import-seed: no TypeScript store at the source
    ├── DurableWriteError                         tiered: the event is durable in history
    │   ├── HotTierError                          ... but the hot tier failed to apply it
    │   │   └── HotTierFullError   (StorageFullError) ... because hot is full
    │   └── TenantStoppedError                    ... but its tenant's projection is stopped
    ├── ProjectionError                           tiered: the projection raised
    └── ProjectionMisuseError      (RuntimeError) tiered: a projection wrote to its own
                                                  pair, or used a state after its call

Engine plugins add their own subclasses in their packages, as a third party's would
(``aurora_storage_nats``: ``NATSConnectionError``, ``NATSTimeoutError``,
``BatchTooLargeError``; each engine's ``ValueTooLargeError`` and ``BatchTooLargeError``
subclass the ones here).

Errors carry their context as attributes, so handlers need not parse messages:

- ``tenant`` and ``key``: the user's tenant and key (never the encoded bytes), where known;
- ``stored_key``: the encoded stored key (bytes), where an error comes from below the
  repository (a backend names the record by its stored key; the repository then fills in
  ``tenant`` and ``key``);
- ``backend``: the URL scheme of the backend (``"memory"``, ``"rocksdb"``, ``"tiered"``...);
- ``path``: the file or directory involved, where there is one.

Tiered's rule for its errors (whether a failed write is durable in history) is in
:mod:`aurora_storage.tiered`; its classes are defined here and re-exported there.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendNotFoundError",
    "BatchTooLargeError",
    "ConditionFailed",
    "ConfigurationError",
    "CorruptionError",
    "DurableWriteError",
    "ForeignStoreError",
    "HotTierError",
    "HotTierFullError",
    "InheritedHandleError",
    "InterruptedRestoreError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidTenantError",
    "InvalidURLError",
    "KeyExistsError",
    "KeyTooLargeError",
    "NotSupportedError",
    "PluginConflictError",
    "PluginError",
    "PositionExpiredError",
    "ProjectionError",
    "ProjectionMisuseError",
    "ReadOnlyError",
    "RepositoryClosedError",
    "SeedKeyError",
    "SeedSourceError",
    "SerializationError",
    "StorageError",
    "StorageFullError",
    "StoreLockedError",
    "TenantStoppedError",
    "ValueTooLargeError",
    "VersionConflictError",
]


class StorageError(Exception):
    """Root of every error raised by aurora-storage.

    Args:
        message: what went wrong and how to fix it.
        tenant: the user's tenant involved, if known.
        key: the user's key involved, if known (never its encoding: see
            ``stored_key``).
        backend: the URL scheme of the backend involved, if known.
        path: the filesystem path involved, if any.
        stored_key: the encoded stored key (bytes) of the record involved, when the
            error comes from a backend (which sees only stored keys).
    """

    def __init__(
        self,
        message: str,
        *,
        tenant: str | None = None,
        key: Any = None,
        backend: str | None = None,
        path: str | None = None,
        stored_key: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.tenant = tenant
        self.key = key
        self.backend = backend
        self.path = path
        self.stored_key = stored_key

    def __str__(self) -> str:
        # KeyError's default __str__ repr-quotes the message; keep messages readable.
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle (and ``copy``) support for every class of the tree: the error is
        rebuilt without calling its constructor, then given its ``args`` and its
        attributes back (see :func:`_rebuilt`).

        Exception's own ``__reduce__`` calls ``type(error)(*error.args)`` when
        unpickling, which a constructor with required keyword-only arguments
        (``KeyTooLargeError(message, size=, limit=)``) or another first argument
        (``ConditionFailed(failed)``) refuses or misreads: the error pickled, but the
        receiving process (multiprocessing, ``concurrent.futures``) failed with a
        ``TypeError``. As for any exception, ``__cause__``, ``__context__`` and the
        traceback are not pickled (an engine's exception may not pickle at all);
        ``add_note`` notes are kept.
        """
        return (_rebuilt, (type(self), self.args), dict(self.__dict__))


def _rebuilt(cls: type[StorageError], args: tuple[Any, ...]) -> StorageError:
    """An instance of ``cls`` holding ``args``, its constructor not called: pickle then
    restores its attributes (``BaseException.__setstate__``). See
    :meth:`StorageError.__reduce__`."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class InvalidKeyError(StorageError, ValueError):
    """A key of an unsupported type or value (NaN, a set, an object, ...)."""


class KeyTooLargeError(InvalidKeyError):
    """The encoded tenant + key is larger than the limit every backend shares.

    Attributes:
        size: the encoded size in bytes.
        limit: the maximum encoded size in bytes.
    """

    def __init__(self, message: str, *, size: int, limit: int, **context: Any) -> None:
        super().__init__(message, **context)
        self.size = size
        self.limit = limit


class InvalidTenantError(StorageError, ValueError):
    """A tenant id that is not a non-empty ``str``."""


class InvalidArgumentError(StorageError, TypeError, ValueError):
    """An argument of the wrong type or value other than a tenant or key: a ``str`` where
    an iterable of keys is expected, an item of ``put_many`` that is not a ``(key,
    value)`` pair, a scan ``limit`` that is not a non-negative int, ``reverse`` that is
    not a bool. It is a ``TypeError`` and a ``ValueError``, so either ``except`` catches
    it; nothing was written.
    """


class ValueTooLargeError(InvalidArgumentError):
    """A value is larger than the engine can store in one record, refused before the
    engine: nothing of the call was written (a batch is refused as a whole). The limit
    is the engine's: LMDB stores at most 4 GiB - 1 byte per record (``MAXDATASIZE``),
    RocksDB 4 GiB - 1 KiB of key and value (32-bit lengths in its write batch and
    memtable), NATS the bucket's ``max_value_size`` or the server's ``max_payload``
    (1 MiB by default); each backend's page gives the exact figure. Keep large blobs
    outside the store (a file, an object store) and store a reference to them.

    Attributes:
        size: the value's size in bytes, where known (else ``None``).
        limit: the largest value the engine takes there, in bytes, where known.
    """

    def __init__(
        self, message: str, *, size: int | None = None, limit: int | None = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.size = size
        self.limit = limit


class BatchTooLargeError(InvalidArgumentError):
    """An atomic batch holds more records than the engine writes in one atomic batch
    (the backend's ``Capabilities.max_batch_ops``: NATS's ``max_batch``, 1,000 by
    default; a tiered pair's is what both tiers take, see ``docs/tiered.md``). Nothing
    of the batch was written. Split it into batches of at most ``limit - internal``
    operations (each then atomic on its own), or raise the engine's bound; the
    embedded engines (RocksDB, LMDB, memory) have none.

    Attributes:
        size: the caller's operations in the batch (puts, deletes, inserts,
            compare-and-sets, appended records); -1 where not known.
        internal: records the repository adds to them (one sequence counter per
            sequence a ``Batch.append`` writes to), which count against ``limit`` too.
        limit: the most records one atomic batch may write; -1 where not known (a
            server that refused the batch without saying its own limit).
    """

    def __init__(
        self, message: str, *, size: int, limit: int, internal: int = 0, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.size = size
        self.internal = internal
        self.limit = limit


class KeyExistsError(StorageError, KeyError):
    """``insert()`` (or a batch's ``insert``) found the key already present; nothing was
    written.

    Attributes:
        keys: every user key that existed (a batch reports all of its conflicts; ``key``
            is the first of them).
    """

    def __init__(self, message: str, *, keys: list[Any] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.keys: list[Any] = list(keys) if keys is not None else [self.key]


class VersionConflictError(StorageError):
    """A compare-and-set condition failed: the record's current version is not the
    expected one. Nothing was written (for a batch: nothing of the whole batch).

    Attributes:
        expected: the version the caller expected (``None``: "absent").
        actual: the version found (``None``: the key is absent).
    """

    def __init__(
        self, message: str, *, expected: Any = None, actual: Any = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.expected = expected
        self.actual = actual


class ConditionFailed(StorageError):
    """Raised by :meth:`Backend.commit <aurora_storage.backend.Backend.commit>` when
    conditions fail; nothing was written. The repository turns it into
    :class:`KeyExistsError` / :class:`VersionConflictError`, so users never see it.

    Attributes:
        failed: ``(index into conditions, actual version or None when absent)`` of every
            failed condition, in order.
    """

    def __init__(self, failed: list[tuple[int, bytes | None]], **context: Any) -> None:
        super().__init__(f"{len(failed)} condition(s) of a conditional commit failed", **context)
        self.failed = failed


class NotSupportedError(StorageError, NotImplementedError):
    """The backend does not declare the capability an operation needs (conditional
    writes, sequences, a change feed). The core never emulates one with a racy
    check-then-write; choose a backend whose ``capabilities`` declare it."""


class PositionExpiredError(StorageError, LookupError):
    """``watch(after=N)``: the changes after position ``N`` are no longer all retained
    (the change log was trimmed, or ``N`` comes from an earlier session of an in-process
    feed), or ``N`` was never given by this store's feed (it is past its last position:
    another store's, or from before a compacting copy or restore). Re-read the current
    state with a scan, then watch from
    :meth:`~aurora_storage.Repository.last_position`.

    Attributes:
        position: the position the feed was asked to read after. For a watch, its
            :attr:`~aurora_storage.Watch.position` when it raised: the ``after`` it was
            opened with, or a later one once it had examined changes (a watch moves on
            as it reads, also past changes its tenant or prefix filters out).
        oldest: the oldest position from which the feed can resume.
    """

    def __init__(self, message: str, *, position: int, oldest: int, **context: Any) -> None:
        super().__init__(message, **context)
        self.position = position
        self.oldest = oldest


class SerializationError(StorageError, ValueError):
    """The value codec could not encode (nothing written) or decode a value.

    A value is stored only if the codec returns an equal one (round-trip or refuse), so
    this is also raised for values a codec could write but not read back (a NaN in
    JSON, a tuple map key in msgpack).

    Attributes:
        value_path: where the offending part sits inside the value (``value["temp"]``,
            ``value[0]``, ``value[(1, 2)]`` for a map key), or ``None`` if unknown.
    """

    def __init__(self, message: str, *, value_path: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.value_path = value_path


class ConfigurationError(StorageError, ValueError):
    """Options that are invalid, conflicting, or disagree with the store's metadata."""


class InvalidURLError(ConfigurationError):
    """A malformed URL, or an unknown or malformed option in it."""


class ForeignStoreError(ConfigurationError):
    """The path holds an engine store without ``aurora-store.json`` that another program
    wrote: records but no aurora-storage metadata record, or (RocksDB) a column family
    besides the default one, which aurora-storage never creates - such as the
    TypeScript package's RocksDB store. It is refused before anything is written to it
    (``aurora-storage restore`` refuses to replace it); import a TypeScript store with
    ``aurora-storage import-seed``."""


class BackendNotFoundError(StorageError, LookupError):
    """No installed plugin handles the URL scheme (or its plugin failed to load)."""


class PluginError(BackendNotFoundError):
    """An installed plugin for the scheme is broken: its module failed to import, it
    registers no hook, it serves another scheme than its entry point's name, or its
    engine failed to import when a URL was opened. Recorded in
    :func:`aurora_storage.plugins.plugin_failures` and listed by ``aurora-storage
    backends``; the original error is chained.

    Also raised, not recorded, when a backend's ``open`` raises an error that is not a
    :class:`StorageError` (a ``PermissionError`` its engine let out), and by
    :func:`~aurora_storage.codecs.get_codec` for an unknown codec while a codec plugin
    is broken (its ``aurora_storage_codecs()`` raised or returned no list of codecs).

    Attributes:
        backend: the scheme (the entry point's name; a codec plugin's name).
        distribution: the installed distribution that provides the plugin, if known.
    """

    def __init__(self, message: str, *, distribution: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.distribution = distribution


class PluginConflictError(PluginError):
    """Two or more installed distributions claim the same URL scheme. Choose one with
    :func:`aurora_storage.plugins.prefer_plugin` or the ``AURORA_STORAGE_PLUGINS``
    environment variable (``scheme=distribution``), or uninstall the other.

    Attributes:
        backend: the scheme.
        distributions: the names of the distributions that claim it, sorted.
    """

    def __init__(self, message: str, *, distributions: list[str], **context: Any) -> None:
        super().__init__(message, **context)
        self.distributions = distributions


class RepositoryClosedError(StorageError, RuntimeError):
    """The repository (or the iterator's repository) was closed."""


class InheritedHandleError(RepositoryClosedError):
    """A repository opened before ``fork()`` was used in the child process.

    Engine handles cannot cross ``fork()`` (a RocksDB child's writes would be lost, LMDB
    forbids using an inherited environment), so every engine plugin refuses them through
    the core's one fork guard (:mod:`aurora_storage._fork`). Open the store again in the
    child, or use the ``spawn`` multiprocessing start method.
    """


class ReadOnlyError(StorageError, PermissionError):
    """A write was attempted on a repository opened read-only."""


class StoreLockedError(StorageError, OSError):
    """Another writer (this process or another) holds the store's lock."""


class InterruptedRestoreError(StorageError):
    """A file store would be created at a path beside which a restore left (or is
    writing) ``<path>.replaced`` (the store that was there) or ``<path>.restoring`` (a
    copy of a backup): an empty store there would hide both, and finishing the restore
    afterwards would move the backup into it. Nothing is created; the message says which
    directory holds what and how to finish or undo the restore
    (``aurora-storage restore``, docs/operations.md)."""


class StorageFullError(StorageError, OSError):
    """The disk (or a map that cannot grow further) is full; the write was not applied."""


class CorruptionError(StorageError):
    """Stored data failed an integrity check; it is never returned as if it were valid."""


# --------------------------------------------------------------------------- import-seed
# Raised by aurora_storage.migrate (which re-exports them under the same names).


class SeedKeyError(StorageError, ValueError):
    """A stored key of a TypeScript store that cannot be split into tenant and key
    without guessing (:func:`aurora_storage.migrate.split_seed_key`).

    Attributes:
        reason: ``unsplittable`` (no ``:`` is followed by a JSON text, and no known
            tenant resolves it), ``ambiguous`` (more than one reading fits: the
            ``candidates``), ``unknown-tenant`` (the only reading names a tenant that is
            not in the list of known tenants).
        candidates: the tenant ids of the readings that fit (may be empty).
    """

    def __init__(self, message: str, *, reason: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.candidates = candidates


class SeedSourceError(StorageError, FileNotFoundError):
    """No RocksDB store in the TypeScript package's layout at the source path of
    :func:`aurora_storage.migrate.import_seed`: the path is missing, holds no RocksDB
    store, holds an aurora-storage store (copy that one with ``aurora-storage
    copy``), or holds records in a column family other than RocksDB's default one (the
    only one the TypeScript package writes and the import reads)."""


# --------------------------------------------------------------------------- tiered


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
    """The user's projection function raised, returned an awaitable or generator (an
    ``async def`` or generator function that a wrapper hid: its body never ran), or a
    history record could not be decoded.

    From a write (``durable is False``): the event was rejected, nothing was written to
    either tier. From :meth:`TieredRepository.rebuild` (``durable is True``, the records
    are in history): the rebuild was abandoned and the previous projection is still
    served. From a catch-up (``catch_up()``, or the one an open makes; ``durable is
    True``): the records from ``seq`` on stay unapplied, and ``lag`` counts them.

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


class ProjectionMisuseError(StorageError, RuntimeError):
    """A tiered projection broke its contract, in one of two ways:

    - it called a write (or ``catch_up``, ``retry_parked``, ``rebuild``, ``drop_tenant``,
      ``close``) on the tiered repository it belongs to while it was being applied: that
      write would commit in the middle of the one being projected, ahead of it in
      history and change log. A rebuild's ``progress`` callback is refused the same
      calls (it runs in the middle of the rebuild); the message names the call;
    - it used a :class:`~aurora_storage.tiered.ProjectionState` after its own call had
      returned (a kept handle): its updates would land in whatever record is projected
      next, possibly another tenant's.

    The refused call writes nothing. If the projection lets the error propagate, it
    fails the outer write like any raising projection (:class:`ProjectionError`,
    nothing written) or meets the ``on_poison`` policy at catch-up; if it catches it,
    the outer write goes on without the refused call. Propagated out of ``progress``,
    it abandons the rebuild. A projection only updates the ``state`` it is given,
    during its call (recovery and ``rebuild()`` run it again); derive further records
    outside it, after the write returns.
    """
