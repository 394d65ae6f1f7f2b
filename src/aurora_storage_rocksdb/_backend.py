"""The RocksDB backend: a thin adapter from the Backend interface to rocksdict (raw mode).

Design points (see the project's engine notes for the verified facts behind them):

* Always ``Options(raw_mode=True)``: our key encoding already orders bytes correctly and
  values are encoded by the repository's codec; the binding's default mode pickles.
* Scans read in chunks: an engine iterator lives only while one chunk is read, then the
  next chunk seeks past the last key. rocksdict keeps the database (and its LOCK) alive
  while any iterator exists, so long-lived engine iterators would stop ``close()`` from
  releasing the store. Chunks use the binding's native iterators for speed; those swallow
  engine errors, so a chunk that ends short is confirmed with an ``RdictIter`` whose
  ``status()`` raises on corruption: a scan never just stops early.
* ``ReadOptions.set_iterate_lower_bound`` of rocksdict 0.3.29 sets the *upper* bound, so
  only the upper bound is used and lower bounds are checked here. A reverse chunk with
  values is read with an ``RdictIter`` whose key is checked before its value is read
  (``_reverse_items``): a scan never copies the value of a key outside its range.
* A handle inherited across ``fork()`` is poisoned in the child by the core's fork guard
  (:mod:`aurora_storage._fork`): writes through it would be lost silently, and dropping
  it would flush into the parent's files.

The plugin's other modules: ``_config`` (options), ``_engine`` (opening and closing the
engine, damage checks), ``_errors`` (engine errors translated), ``_damage`` (log files
read), ``_limits`` (the largest record, checked before a write), ``_eventstore``
(conditional commits, change feed), ``_repository`` (the repository class) and
``_plugin`` (the entry point).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, NoReturn, cast

import rocksdict

from aurora_storage import _fork
from aurora_storage._stores import (
    MARKER_NAME,
    check_marker_backend,
    config_signature,
    create_store_dir,
    open_stores,
    refuse_beside_a_restore,
    remove_created,
)
from aurora_storage.backend import (
    Append,
    Backend,
    Capabilities,
    ChangeFeed,
    Chunk,
    Condition,
    Op,
    RecentChanges,
    RecordCheck,
    VerifyReport,
    chunk_items,
    chunk_keys,
)
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    InheritedHandleError,
    ReadOnlyError,
    RepositoryClosedError,
    StorageError,
    StorageFullError,
    StoreLockedError,
)

from . import _eventstore, _limits
from ._config import RocksDBConfig, config_from_url
from ._engine import (
    OPEN_MARGIN,
    check_raw_mode,
    close_when_free,
    free_bytes,
    open_db,
    open_space,
)
from ._errors import EngineCall, translate
from ._foreign import SIDE_FILE, check_opened, refuse_foreign

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aurora_storage.config import URL

# InheritedHandleError is defined in aurora_storage.errors; the name stays importable
# from here (and from aurora_storage_rocksdb) as before.
__all__ = ["InheritedHandleError", "RocksDBBackend"]

_FIRST_CHUNK = 64
_MAX_CHUNK = 4096
#: Records write_puts adds to its batch between two checks of the batch's size.
_PUT_CHUNK = 512

#: Properties reported by stats(): the figures a user tunes with.
_INT_PROPERTIES = (
    "rocksdb.estimate-num-keys",
    "rocksdb.total-sst-files-size",
    "rocksdb.live-sst-files-size",
    "rocksdb.estimate-live-data-size",
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.size-all-mem-tables",
    "rocksdb.num-immutable-mem-table",
    "rocksdb.num-entries-active-mem-table",
    "rocksdb.num-deletes-active-mem-table",
    "rocksdb.estimate-pending-compaction-bytes",
    "rocksdb.num-running-compactions",
    "rocksdb.num-running-flushes",
    "rocksdb.compaction-pending",
    "rocksdb.mem-table-flush-pending",
    "rocksdb.background-errors",
    "rocksdb.estimate-table-readers-mem",
    "rocksdb.block-cache-usage",
    "rocksdb.block-cache-capacity",
    "rocksdb.num-live-versions",
    "rocksdb.is-write-stopped",
    "rocksdb.actual-delayed-write-rate",
)
_LEVELS = 7
_log = logging.getLogger("aurora_storage.rocksdb")
#: Options that matter only when a store is opened, not to the live handle: a second
#: open of a store already open in this process may differ in them.
_OPEN_ONLY_OPTIONS = ("create_if_missing", "error_if_exists")


#: ``_consume(iterator, 0)`` runs an iterator to its end in C, keeping nothing.
_consume = deque


def _closed_op(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise rocksdict.DbClosedError("DB instance already closed")


class RocksDBBackend(Backend):
    """RocksDB through rocksdict, raw mode.

    Build one with :meth:`open` (or :meth:`from_url`); the repository owns and closes it.
    """

    scheme = "rocksdb"
    streams_writes = True

    def __init__(self, config: RocksDBConfig, db: Any, secondary_tmp: str | None) -> None:
        super().__init__()
        self.config = config
        self.capabilities = Capabilities(
            persistent=True,
            multi_process=False,
            thread_safe=True,
            blocking_writes=config.sync,
            read_only=config.mode != "read_write",
            # Atomic under the write lock every write takes (one writer process per
            # store); see _eventstore. read_only / secondary still read versions and
            # sequence numbers (writes raise ReadOnlyError); their in-process feed would
            # never see a change (no writes here), so they have none.
            conditional_writes=True,
            sequences=True,
            change_feed=config.mode == "read_write",
        )
        # The in-process change feed, created by the first watch() (see _eventstore).
        self._feed: RecentChanges | None = None
        self._db = db
        self._secondary_tmp = secondary_tmp
        self._pid = os.getpid()
        self._closed = False
        self._full = False
        # Free bytes after the last reopen that failed for lack of space (see _revive).
        self._reopen_failed_free: int | None = None
        self.marker_path = os.path.join(config.path, MARKER_NAME)
        #: What opening recovered from (a crash's torn log tail, or what
        #: ``wal_recovery=point_in_time`` dropped), or ``None``; also in :meth:`stats`.
        self.recovery: dict[str, Any] | None = None
        self._forked = False
        # Serialises chunk reads with close(), so close() never races an engine iterator.
        self._lock = threading.RLock()
        # Bound once: the hot paths call these directly (swapped out on close and fork).
        self._get: Callable[[bytes], bytes | None] = db.get
        # Backend.fast_get: always the same callable as _get (swapped with it).
        self.fast_get: Callable[[bytes], bytes | None] | None = db.get
        self._put: Callable[[bytes, bytes], None] = db.put
        _fork.guard(self)

    # ------------------------------------------------------------------ opening

    @classmethod
    def from_url(cls, url: URL, options: Mapping[str, Any]) -> RocksDBBackend:
        """Open the store a ``rocksdb://`` URL names."""
        return cls.open(config_from_url(url, options))

    @classmethod
    def open(cls, config: RocksDBConfig) -> RocksDBBackend:
        """Open (or create) the store ``config`` describes, or share the handle already
        open on it in this process.

        A writer (``mode=read_write``) is one live handle per store per process, whatever
        the path's spelling (symlinks, ``..``, relative or absolute): a second open of the
        same store returns the same backend with one more user, and :meth:`close`
        closes the engine when its last user closes. ``mode=read_only`` and
        ``mode=secondary`` write nothing into the store, so each gets its own engine
        handle, beside a writer in this process or another (as RocksDB allows).

        Raises:
            ConfigurationError: no store at the path while ``create_if_missing`` is false or
                the mode is read-only/secondary (no directory is left behind), a store
                exists while ``error_if_exists`` is true, the path cannot be a store
                directory, the store is already open in this process with other options
                (named in the message), or the store was written by rocksdict in pickle
                mode.
            ForeignStoreError: the path holds a RocksDB store with records but no
                aurora-storage metadata (no marker, no metadata record), or without a
                marker and with a column family besides the default one, such as the
                TypeScript package's; nothing is written to it (see ``_foreign``).
            StoreLockedError: another writer holds the store.
            InterruptedRestoreError: no store at the path, and a restore left
                ``<path>.replaced`` or ``<path>.restoring`` beside it (nothing created).
            CorruptionError: the store's files are damaged (the message names the file).
            StorageFullError: no space left to create the store.
        """
        path = config.path
        # The marker first: it is written after CURRENT, so a marker seen before CURRENT
        # is found missing is a damaged store, while one seen after may belong to
        # another opener that has just created the store.
        marked = os.path.exists(os.path.join(path, MARKER_NAME))
        exists = os.path.exists(os.path.join(path, "CURRENT"))
        if not exists:
            check_marker_backend(
                os.path.join(path, MARKER_NAME), backend="rocksdb", store_path=path
            )
        if not exists and marked:
            raise CorruptionError(
                f"the RocksDB store {path} was initialised (it holds {MARKER_NAME}) but its "
                "CURRENT file is missing; the store is damaged: restore it from a backup",
                backend="rocksdb",
                path=os.path.join(path, "CURRENT"),
            )
        if not exists and (not config.create_if_missing or config.mode != "read_write"):
            why = (
                f"mode={config.mode} opens only an existing store"
                if config.mode != "read_write"
                else "create_if_missing is false"
            )
            raise ConfigurationError(
                f"no RocksDB store at {path} ({why})", backend="rocksdb", path=path
            )
        if not exists:
            # Never an empty store beside what a restore left (aurora-storage restore):
            # finishing that restore would then move the backup into it.
            refuse_beside_a_restore(path, backend="rocksdb")
        if exists and config.error_if_exists:
            raise ConfigurationError(
                f"a RocksDB store already exists at {path} (error_if_exists is true)",
                backend="rocksdb",
                path=path,
            )
        check_after = False
        if exists and not marked:
            # Not necessarily ours: another program's store (the TypeScript package's,
            # at the path both READMEs use) is refused before the engine writes to it;
            # when the look inside is inconclusive, the opened engine is checked.
            check_raw_mode(path)
            check_after = refuse_foreign(path, read_write=config.mode == "read_write")
        if config.mode != "read_write":
            return cls._open_engine(config, check_foreign=check_after)
        return open_stores.acquire(
            path,
            config_signature(config, ignore=_OPEN_ONLY_OPTIONS),
            lambda: cls._open_engine(config, check_foreign=check_after),
            backend="rocksdb",
        )

    @classmethod
    def _open_engine(cls, config: RocksDBConfig, *, check_foreign: bool = False) -> RocksDBBackend:
        """Open the engine; with ``check_foreign`` (the look before the open was
        inconclusive, see ``_foreign``) refuse a store that holds records but no
        aurora-storage metadata record before anything uses it."""
        path = config.path
        check_raw_mode(path)
        side_file_existed = os.path.exists(os.path.join(path, SIDE_FILE))
        created = create_store_dir(path, backend="rocksdb") if config.mode == "read_write" else []
        secondary_tmp = None
        try:
            if config.mode == "secondary" and config.secondary_path is None:
                secondary_tmp = tempfile.mkdtemp(prefix="aurora-rocksdb-secondary-")
            db, recovery = open_db(config, secondary_tmp)
            if check_foreign:
                try:
                    check_opened(
                        db,
                        path,
                        side_file_existed=side_file_existed,
                        read_write=config.mode == "read_write",
                    )
                except BaseException:
                    close_when_free(db)
                    raise
        except BaseException as exc:
            # rocksdict creates the directory before RocksDB validates anything. A store
            # locked by another writer is that writer's (another process creating the
            # same store got the lock first, in the directory this open made): keep it.
            if not isinstance(exc, StoreLockedError):
                remove_created(created)
            if secondary_tmp is not None:
                shutil.rmtree(secondary_tmp, ignore_errors=True)
            raise
        backend = cls(config, db, secondary_tmp)
        backend.recovery = recovery
        return backend

    # ------------------------------------------------------------------ state

    def _unusable(self) -> StorageError:
        if self._forked:
            return _fork.inherited_error(
                engine="RocksDB",
                scheme="rocksdb",
                path=self.config.path,
                opened_pid=self._pid,
                why="RocksDB handles cannot cross fork() (the child's writes would be lost)",
                fix="Nor can this process open the store for writing: RocksDB's lock of "
                "the store, inherited from the parent, stays held here. Open it with "
                "mode=read_only or mode=secondary in the child, open RocksDB stores only "
                "after forking, or use the 'spawn' multiprocessing start method",
            )
        return RepositoryClosedError(
            f"the RocksDB store {self.config.path} is closed; open it again",
            backend="rocksdb",
            path=self.config.path,
        )

    def _check(self, *, reading: bool = False) -> None:
        if self._closed:
            raise self._unusable()
        if self._full:
            self._revive(reading=reading)

    def _engine(self, doing: str) -> EngineCall:
        """``with self._engine("flush"): ...``: engine errors raised inside the block
        become typed errors (:meth:`_error`), chained to the engine's."""
        return EngineCall(self._error, doing)

    def _error(self, exc: BaseException, doing: str) -> StorageError:
        """The typed error for an engine exception ``exc`` raised while ``doing``: the
        store's state first (closed, inherited across fork), then the engine's message
        (see :func:`._errors.translate`); a full disk also starts the reopen cycle."""
        if self._closed:
            return self._unusable()
        err = translate(exc, self.config, doing)
        if isinstance(err, StorageFullError) or (
            self._full and "previous error" in str(exc).lower()
        ):
            self._mark_full()
            if not isinstance(err, StorageFullError):
                err = StorageFullError(
                    f"no space left for the RocksDB store {self.config.path} ({doing}); "
                    f"the call was not applied: {exc}",
                    backend="rocksdb",
                    path=self.config.path,
                )
        return err

    # ------------------------------------------------------------------ full disks
    #
    # After a write fails for lack of space, RocksDB's write-ahead log writer refuses
    # every later write ("Writer has previous error") until the engine is reopened -
    # even once space is free. So the backend reopens the engine itself: the next call
    # after a full disk closes the broken engine and opens it again (every acknowledged
    # write is in the log and is recovered), and raises StorageFullError while the disk
    # is still full. Calls in flight hold self._lock or go through the swapped-in
    # point-call wrappers, so no thread sees the engine half reopened.

    def _mark_full(self) -> None:
        if self._full or self._closed:
            return
        self._full = True
        self._get = self.fast_get = self._reviving_get
        self._put = self._reviving_put

    def _reviving_get(self, key: bytes) -> bytes | None:
        self._revive(reading=True)
        if self._full:
            # _revive returns while full only with an engine to read through.
            # Still full: the broken engine refuses writes only; it reads as before.
            return cast(bytes | None, self._db.get(key))
        return self._get(key)

    def _reviving_put(self, key: bytes, value: bytes) -> None:
        self._revive()
        self._put(key, value)

    def _revive(self, *, reading: bool = False) -> None:
        """Reopen the engine after a full disk; StorageFullError while too little space
        is free for the reopen - except for a read (``reading``), which goes on through
        the broken engine: a full disk stops writes, never reads.

        A reopen writes the write-ahead log out as a table file (about the log's size,
        less where compression shrinks it: :func:`._engine.open_space`), and the old
        engine must be closed before it (it holds the LOCK). So it is tried only with at
        least ``OPEN_MARGIN`` free, never without compression while less than the log's
        size is free, and - after a reopen failed for lack of space - not again until
        ``OPEN_MARGIN`` more is free than then. A failed reopen leaves a read-only engine
        (it replays the log in memory, writing nothing) in the old one's place, so reads
        go on; retries write nothing to the disk meanwhile.
        """
        with self._lock:
            if self._closed:
                raise self._unusable()
            if not self._full:
                return
            path = self.config.path
            needed, wal = open_space(path)
            free = free_bytes(path)
            failed = self._reopen_failed_free
            if free is not None and (
                free < OPEN_MARGIN
                or (self.config.compression == "none" and free < needed)
                or (failed is not None and free < failed + OPEN_MARGIN)
            ):
                if reading and self._db is not None:
                    return
                last = "" if failed is None else f"; a reopen failed with {failed:,} bytes free"
                # A read gets here only when no engine is left to read through.
                refused = "no engine is open to read" if reading else "the write was not applied"
                raise StorageFullError(
                    f"no space left for the RocksDB store {path}; {refused}. After a full "
                    "disk RocksDB refuses writes until the store is "
                    "reopened, and reopening writes the records of its write-ahead log "
                    f"({wal:,} bytes) out as a table file: it needs up to about "
                    f"{needed:,} bytes free (less where compression shrinks the "
                    f"records){last}; {free:,} bytes free now. Free more space and retry: "
                    "the store reopens itself then, with every acknowledged write"
                    + (". Reads go on meanwhile" if self._db is not None else ""),
                    backend="rocksdb",
                    path=path,
                )
            old, self._db = self._db, None
            if old is not None:
                try:
                    close_when_free(old)
                except Exception:
                    pass  # the broken engine cannot flush; its log holds every write
                del old
            try:
                db, recovery = open_db(self.config, None)
            except StorageError as exc:
                self._db = self._read_only_engine()
                if isinstance(exc, StorageFullError) or "no space" in str(exc).lower():
                    after = free_bytes(path)
                    self._reopen_failed_free = free if after is None else after
                    if reading and self._db is not None:
                        return  # the read goes on through the read-only engine
                    refused = (
                        "no engine is open to read" if reading else "the write was not applied"
                    )
                    raise StorageFullError(
                        f"no space left for the RocksDB store {path}; {refused}. "
                        f"Reopening the store after its disk filled failed: {exc}"
                        + (". Reads go on meanwhile" if self._db is not None else ""),
                        backend="rocksdb",
                        path=path,
                    ) from exc
                raise
            self._db = db
            self._get = self.fast_get = db.get
            self._put = db.put
            self._full = False
            self._reopen_failed_free = None
            if recovery is not None:
                self.recovery = recovery
            _log.info("RocksDB store %s reopened after its disk was full", self.config.path)

    def _read_only_engine(self) -> Any:
        """A read-only engine on the store (``None`` if that fails too), for reads while
        a reopen after a full disk cannot be done: a read-only open replays the
        write-ahead log in memory and writes no table file."""
        try:
            db, _ = open_db(dataclasses.replace(self.config, mode="read_only"), None)
        except StorageError as exc:
            _log.warning(
                "RocksDB store %s: no read-only engine while the disk is full: %s",
                self.config.path,
                exc,
            )
            return None
        return db

    def _forked_in_child(self) -> None:
        """See :class:`aurora_storage._fork.ForkAware`."""
        if self._closed:
            return
        # Keep the inherited engine object alive forever in the child: dropping it would
        # flush the parent's memtable into the parent's files from this process.
        _fork.keep_forever(self._db)
        self._forked = True
        self._closed = True
        if self._feed is not None:
            # A watch inherited from the parent raises there too, instead of waiting
            # for changes nothing in this process records.
            self._feed.refuse(self._unusable)
        self._get = self._put = self.fast_get = _closed_op
        self._secondary_tmp = None

    # ------------------------------------------------------------------ point ops

    def get(self, key: bytes) -> bytes | None:
        """See :meth:`Backend.get`."""
        try:
            return self._get(key)
        except Exception as exc:
            raise self._error(exc, "get") from exc

    def put(self, key: bytes, value: bytes) -> None:
        """See :meth:`Backend.put`.

        Raises:
            ValueTooLargeError: key and value over ``_limits.MAX_RECORD_SIZE``.
        """
        try:
            if len(key) + len(value) > _limits.MAX_RECORD_SIZE:
                raise _limits.too_large(key, value, self.config.path)
            # Under the write lock: a conditional commit reads then writes under it.
            with self._insert_lock:
                self._put(key, value)
                if self._feed is not None:
                    _eventstore.record(self, ((key, value),))
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(exc, "put") from exc

    def contains(self, key: bytes) -> bool:
        """See :meth:`Backend.contains`: one engine get, without the default's extra
        Python frame."""
        try:
            return self._get(key) is not None
        except Exception as exc:
            raise self._error(exc, "contains") from exc

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """See :meth:`Backend.get_many`: one multi-get."""
        self._check(reading=True)
        if not keys:
            return []
        with self._engine("get_many"):
            return list(self._db[list(keys)])

    def insert(self, key: bytes, value: bytes) -> bool:
        """See :meth:`Backend.insert`: the default's read-then-write under the insert
        lock (one writer process per store), calling the engine directly instead of
        through :meth:`get` and :meth:`put` (two Python frames of a ~5 us operation)."""
        with self._engine("insert"), self._insert_lock:
            if len(key) + len(value) > _limits.MAX_RECORD_SIZE:
                raise _limits.too_large(key, value, self.config.path)
            if self._get(key) is not None:
                return False
            self._put(key, value)
            if self._feed is not None:
                _eventstore.record(self, ((key, value),))
            return True

    def delete(self, key: bytes) -> bool:
        """See :meth:`Backend.delete`."""
        with self._engine("delete"), self._insert_lock:
            if self._get(key) is None:
                return False
            self._db.delete(key)  # after _get: a full disk's reopen is done
            if self._feed is not None:
                _eventstore.record(self, ((key, None),))
            return True

    def write(self, ops: Sequence[Op]) -> None:
        """See :meth:`Backend.write`: one atomic WriteBatch. The errors are translated
        with an inline ``try`` (not :class:`EngineCall`): batches of one or two records
        (a tiered write, an event) are a hot path too."""
        if self._feed is not None:
            self.write_iter(ops)  # records the changes for the feed
            return
        self._check()
        if not ops:
            return
        wb = rocksdict.WriteBatch(raw_mode=True)
        put, delete = wb.put, wb.delete
        for k, v in ops:
            if v is None:
                delete(k)
            else:
                put(k, v)
        # A record over the engine's limit: the batch holds it, or dropped it without a
        # word (see _limits). Two calls per batch, nothing per record.
        lost = wb.len() != len(ops)
        if lost or wb.size_in_bytes() > _limits.MAX_RECORD_SIZE:
            _limits.check_batch(ops, self.config.path, lost=lost)
        try:
            with self._insert_lock:
                self._db.write(wb)
        except Exception as exc:
            err = self._error(exc, "write batch")
            if err is exc:
                raise
            raise err from exc

    def write_iter(self, ops: Iterable[Op]) -> int:
        """See :meth:`Backend.write_iter`: each operation goes into the WriteBatch as it
        is produced; the batch is written only once ``ops`` is exhausted."""
        self._check()
        wb = rocksdict.WriteBatch(raw_mode=True)
        put, delete = wb.put, wb.delete
        # Kept for the change feed only while one is recording.
        changes: list[Op] | None = [] if self._feed is not None else None
        # Outside the engine-error translation: an exception from producing ``ops`` (a
        # bad key or value) reaches the caller unchanged, and the batch is dropped. A
        # record over the engine's limit is refused before the batch takes it (the
        # batch would drop it without a word, see _limits).
        limit = _limits.MAX_RECORD_SIZE
        for k, v in ops:
            if v is None:
                if len(k) > limit:
                    raise _limits.too_large(k, v, self.config.path)
                delete(k)
            elif len(k) + len(v) > limit:
                raise _limits.too_large(k, v, self.config.path)
            else:
                put(k, v)
            if changes is not None:
                changes.append((k, v))
        n: int = wb.len()
        if n:
            with self._engine("write batch"), self._insert_lock:
                # Read before the write: a delete of an absent key is no change.
                recorded = None if changes is None else _eventstore.effective(self, changes)
                self._db.write(wb)
                if recorded is not None:
                    _eventstore.record(self, recorded)
        return n

    def write_puts(self, keys: Sequence[bytes], values: Iterable[bytes]) -> int:
        """See :meth:`Backend.write_puts`: the pairs go into one WriteBatch through a
        C-level ``map`` over the batch's ``put`` (no Python frame per item); the batch is
        written once ``keys`` is exhausted.

        Records over the engine's limit (``_limits.MAX_RECORD_SIZE``) are found by the
        batch's size and record count, read every ``_PUT_CHUNK`` records (see
        :func:`._limits.check_batch`): only a chunk that grew the batch by more than the
        limit, or lost a record (the batch drops a value of 4 GiB or more without a
        word), has its records measured, so the values of one chunk are kept until it
        is checked. A value just under 4 GiB is copied into the batch before it is
        refused; one of 4 GiB or more never is.

        Raises:
            ValueTooLargeError: a record over the limit; nothing is written.
        """
        if self._feed is not None:
            # A change feed records each pair: the general path keeps them.
            return self.write_iter(zip(keys, values, strict=False))
        self._check()
        if type(keys) is not list:
            keys = list(keys)  # sliced by chunks below
        wb = rocksdict.WriteBatch(raw_mode=True)
        put, size, count = wb.put, wb.size_in_bytes, wb.len
        limit = _limits.MAX_RECORD_SIZE
        source = iter(values)
        before = size()
        # Outside the engine-error translation, as in write_iter: an exception from
        # producing a value reaches the caller unchanged, and the batch is dropped.
        for start in range(0, len(keys), _PUT_CHUNK):
            chunk_keys = keys[start : start + _PUT_CHUNK]
            chunk_values = list(islice(source, len(chunk_keys)))
            _consume(map(put, chunk_keys, chunk_values), 0)
            now = size()
            lost = count() != start + len(chunk_values)
            if lost or now - before > limit:
                records = zip(chunk_keys, chunk_values, strict=False)
                _limits.check_batch(records, self.config.path, lost=lost)
            before = now
            if len(chunk_values) < len(chunk_keys):
                break  # values ran out (as map() stops at the shorter)
        with self._engine("write batch"), self._insert_lock:
            self._db.write(wb)
        return len(keys)

    # ------------------------------------------------------------------ scans

    def _chunk(
        self, lo: bytes, hi: bytes, reverse: bool, n: int, values: bool
    ) -> tuple[list[bytes], list[bytes] | None, bool]:
        """Up to ``n`` keys (and their values) of ``[lo, hi)``; the flag says whether
        more may follow."""
        with self._lock:
            self._check(reading=True)
            db = self._db
            with self._engine("scan"):
                ro = rocksdict.ReadOptions()
                ro.set_iterate_upper_bound(hi)
                if reverse and values:
                    return self._reverse_items(db, ro, lo, hi, n)
                read = db.items if values else db.keys
                if reverse:
                    src = read(backwards=True, from_key=hi, read_opt=ro)
                else:
                    src = read(from_key=lo, read_opt=ro)
                if values:
                    # Flattened as they are read: each (key, value) tuple dies at once.
                    # A chunk of live tuples would set off the garbage collector
                    # (gen 0/1 passes every 700 of them, 0.14 us per scanned item).
                    flat = list(chain.from_iterable(islice(src, n)))
                    keys: list[bytes] = flat[0::2]
                    vals: list[bytes] | None = flat[1::2]
                    del flat
                else:
                    keys, vals = list(islice(src, n)), None
                del src
                # A chunk that ends short (here or below) is confirmed with an iterator
                # that reports errors: the native one swallows them.
                if not keys:
                    return keys, vals, self._more(lo, hi, reverse)
                last = keys[-1]
                if reverse and last < lo:
                    # No working lower bound in the binding: stop at lo here (keys
                    # descend, so the ones to keep come first). Keys only: the values
                    # of a reverse chunk are read by _reverse_items, key checked first.
                    cut = sum(1 for k in keys if k >= lo)
                    return keys[:cut], None if vals is None else vals[:cut], False
                if len(keys) == n:
                    return keys, vals, True
                lo2, hi2 = (lo, last) if reverse else (last + b"\x00", hi)
                return keys, vals, self._more(lo2, hi2, reverse)

    @staticmethod
    def _reverse_items(
        db: Any, ro: Any, lo: bytes, hi: bytes, n: int
    ) -> tuple[list[bytes], list[bytes], bool]:
        """Up to ``n`` records of ``[lo, hi)`` from the top down, and whether more may
        follow: an engine iterator whose key is checked before its value is read.

        The binding has no working lower bound and its native iterators read a key and
        its value together, so a reverse chunk read natively and cut at ``lo``
        afterwards would copy the values below ``lo`` into Python first: the record
        stored just before the range - another aggregate's snapshot, another tenant's
        record - however big. Python steps cost about what the native iterator does
        here (a reverse step of the engine dominates), and ``status()`` raises the
        error an iterator stopped on, so no chunk needs confirming."""
        it = db.iter(ro)
        try:
            it.seek_for_prev(hi)
            key, value, prev = it.key, it.value, it.prev
            # key() is None where the iterator is not valid (rocksdict).
            k: bytes | None = key()
            if k is not None and k >= hi:
                prev()
                k = key()
            keys: list[bytes] = []
            vals: list[bytes] = []
            add_key, add_value = keys.append, vals.append
            while k is not None and k >= lo:
                add_key(k)
                add_value(value())
                if len(keys) == n:
                    # No step past the chunk (a reverse step is the costly part, and a
                    # scan with limit=n reads no further): more may follow.
                    return keys, vals, True
                prev()
                k = key()
            if k is None:
                it.status()
            return keys, vals, False
        finally:
            # A live iterator keeps the database (and its LOCK) alive.
            del it

    def _more(self, lo: bytes, hi: bytes, reverse: bool) -> bool:
        """Whether ``[lo, hi)`` still holds a key; raises the engine's error if the
        iterator stopped because of one."""
        if lo >= hi:
            return False
        ro = rocksdict.ReadOptions()
        ro.set_iterate_upper_bound(hi)
        it = self._db.iter(ro)
        try:
            if reverse:
                it.seek_for_prev(hi)
                if it.valid():
                    k = it.key()
                    if k >= hi:
                        it.prev()
                if it.valid():
                    return bool(it.key() >= lo)
            else:
                it.seek(lo)
                if it.valid():
                    return True
            it.status()
            return False
        finally:
            del it

    def _chunks(
        self, start: bytes, stop: bytes, reverse: bool, values: bool, limit: int | None = None
    ) -> Iterator[Chunk]:
        """The engine's chunks of ``[start, stop)``, as (keys, values or None); at most
        ``limit`` records in all (no chunk reads past it)."""
        lo, hi, n = start, stop, _FIRST_CHUNK
        left = limit
        chunk = self._chunk
        while lo < hi:
            if left is not None:
                if left <= 0:
                    return
                n = min(n, left)
            keys, vals, more = chunk(lo, hi, reverse, n, values)
            if keys:
                if reverse:
                    hi = keys[-1]
                else:
                    lo = keys[-1] + b"\x00"
                if left is not None:
                    left -= len(keys)
                yield keys, vals
            if not more:
                return
            if n < _MAX_CHUNK:
                n *= 2
            if self._closed:
                raise self._unusable()

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """See :meth:`Backend.scan`."""
        self._check(reading=True)
        return chunk_items(self._chunks(start, stop, reverse, True))

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """See :meth:`Backend.scan_keys`."""
        self._check(reading=True)
        return chunk_keys(self._chunks(start, stop, reverse, False))

    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> Iterator[Chunk]:
        """See :meth:`Backend.scan_chunks`: the chunks the engine is read in anyway (the
        first of at most ``limit`` records)."""
        self._check(reading=True)
        return self._chunks(start, stop, reverse, values, limit)

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        """See :meth:`Backend.first_key`."""
        keys, _, _ = self._chunk(start, stop, False, 1, False)
        return keys[0] if keys else None

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        """See :meth:`Backend.last_key`: one ``seek_for_prev`` of an engine iterator
        bounded above by ``stop``, whose ``status()`` raises on corruption.

        The newest-key lookup's hot path: the engine's error translation is an inline
        ``try`` (free until an error) rather than :meth:`_engine`'s context manager, and
        the key is read once."""
        with self._lock:
            if self._closed or self._full:
                self._check(reading=True)
            it = None
            try:
                ro = rocksdict.ReadOptions()
                ro.set_iterate_upper_bound(stop)
                it = self._db.iter(ro)
                it.seek_for_prev(stop)
                # key() is None where the iterator is not valid (rocksdict).
                k: bytes | None = it.key()
                if k is not None and k >= stop:
                    it.prev()
                    k = it.key()
                if k is None:
                    it.status()
            except Exception as exc:
                raise self._error(exc, "last_key") from exc
            finally:
                # A live iterator keeps the database (and its LOCK) alive.
                it = None
        return k if k is not None and k >= start else None

    def delete_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.delete_range`: one range tombstone over the key range."""
        self._check()
        with self._insert_lock:
            # A recording feed needs the keys (one delete change each).
            keys = list(self.scan_keys(start, stop)) if self._feed is not None else None
            count = len(keys) if keys is not None else self.count_range(start, stop)
            if count:
                with self._engine("delete_range"):
                    wb = rocksdict.WriteBatch(raw_mode=True)
                    wb.delete_range(start, stop)
                    self._db.write(wb)
                    if keys is not None:
                        _eventstore.record(self, [(k, None) for k in keys])
        return count

    # ------------------------------------------------------------------ event store

    def commit(
        self,
        ops: Sequence[Op],
        *,
        conditions: Sequence[Condition] = (),
        appends: Sequence[Append] = (),
    ) -> list[int]:
        """See :meth:`Backend.commit`: planned and written as one WriteBatch under the
        write lock (see :mod:`aurora_storage_rocksdb._eventstore`)."""
        return _eventstore.commit(self, ops, conditions, appends)

    def change_feed(self) -> ChangeFeed:
        """See :meth:`Backend.change_feed`: in-process, recording from the first call."""
        feed = self._feed
        if feed is None:
            return _eventstore.start_feed(self)
        if self._closed:
            # Closed, or inherited through fork(): a watch made now would wait on a
            # feed nothing records into any more.
            raise self._unusable()
        return feed

    # ------------------------------------------------------------------ maintenance

    def flush(self, *, memtables: bool = False) -> None:
        """fsync the write-ahead log, so every acknowledged write survives an OS crash;
        with ``memtables`` also write the memtables out as table files."""
        self._check()
        if self.capabilities.read_only:
            return
        with self._engine("flush"):
            self._db.flush_wal(True)
            if memtables:
                self._db.flush(True)

    def compact(self) -> None:
        """Compact the whole key range (drops deleted and overwritten data)."""
        self._check()
        if self.capabilities.read_only:
            raise ReadOnlyError(
                f"the RocksDB store {self.config.path} was opened {self.config.mode}; "
                "compact it from the writer",
                backend="rocksdb",
                path=self.config.path,
            )
        with self._engine("compact"):
            self._db.compact_range(None, None)

    def checkpoint(self, path: str | os.PathLike[str]) -> str:
        """A consistent online copy at ``path`` (hard links where possible) that opens as
        a store; ``path`` must not exist. Returns the absolute path."""
        self._check()
        target = os.path.abspath(os.fspath(path))
        if os.path.exists(target):
            raise ConfigurationError(
                f"the checkpoint target {target} already exists; pick a new directory",
                backend="rocksdb",
                path=target,
            )
        cp = None
        try:
            cp = rocksdict.Checkpoint(self._db)
            cp.create_checkpoint(target)
        except Exception as exc:
            text = str(exc)
            low = text.lower()
            if ("no space left" in low or "disk full" in low) and target in text:
                # The target's filesystem is full, not the store's: the store stays as
                # it was (no reopen cycle), and RocksDB removed its partial checkpoint.
                raise StorageFullError(
                    f"no space left at {target} for a checkpoint of the RocksDB store "
                    f"{self.config.path}: the checkpoint was not made; the store itself "
                    "is unaffected. Free space on that filesystem or choose a target "
                    f"elsewhere. Engine message: {text}",
                    backend="rocksdb",
                    path=target,
                ) from exc
            raise self._error(exc, "checkpoint") from exc
        finally:
            # A live Checkpoint keeps the database (and its LOCK) alive.
            del cp
        return target

    def catch_up(self) -> None:
        """A secondary: replay what the primary wrote since the last catch-up."""
        self._check()
        if self.config.mode != "secondary":
            raise ConfigurationError(
                f"catch_up() needs mode=secondary; this store is {self.config.mode}",
                backend="rocksdb",
                path=self.config.path,
            )
        with self._engine("catch up"):
            self._db.try_catch_up_with_primary()

    def stats(self) -> dict[str, Any]:
        """Size on disk, estimated keys, and the RocksDB properties used for tuning."""
        self._check(reading=True)
        db = self._db
        props: dict[str, Any] = {}
        with self._engine("stats"):
            for name in _INT_PROPERTIES:
                props[name] = db.property_int_value(name)
            for level in range(_LEVELS):
                props[f"rocksdb.num-files-at-level{level}"] = db.property_int_value(
                    f"rocksdb.num-files-at-level{level}"
                )
            seq = db.latest_sequence_number()
        files = _dir_files(self.config.path)
        return {
            "path": self.config.path,
            "mode": self.config.mode,
            "compression": self.config.compression,
            "sync": self.config.sync,
            "size_on_disk": sum(files.values()),
            "sst_files": sum(1 for f in files if f.endswith(".sst")),
            "wal_files": sum(1 for f in files if f.endswith(".log")),
            "estimated_keys": props["rocksdb.estimate-num-keys"],
            "latest_sequence_number": seq,
            "recovery": self.recovery,
            "properties": props,
        }

    def verify(self, *, check: RecordCheck | None = None) -> VerifyReport:
        """See :meth:`Backend.verify`: the default read of every record (past damaged
        table blocks), with ``unchecked`` estimated when records were skipped: RocksDB
        cannot count the records of a block it cannot read, so the estimate is its
        key-count estimate less the records read (``None`` when that gives nothing)."""
        report = super().verify(check=check)
        if report.unchecked is not None:
            return report
        with self._engine("verify"):
            estimate = self._db.property_int_value("rocksdb.estimate-num-keys")
        if not estimate or estimate <= report.records:
            return report
        return dataclasses.replace(report, unchecked=estimate - report.records)

    def property(self, name: str) -> str | None:
        """Any RocksDB property as text (``rocksdb.stats``, ``rocksdb.levelstats`` ...);
        ``None`` if unknown."""
        self._check(reading=True)
        with self._engine("property"):
            value = self._db.property_value(name)
        return None if value is None else str(value)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """See :meth:`Backend.close`. Reference counted: a writer's handle shared by
        several opens in this process (see :meth:`open`) closes its engine when the last
        of them closes. Releases the LOCK at once: no engine iterator or snapshot
        outlives a chunk read.

        Safe while other threads are inside calls on this store: calls already inside
        the engine finish (or raise RepositoryClosedError), then the engine closes; later
        calls raise RepositoryClosedError.

        Raises:
            StorageFullError: the engine could not write its memtable out for lack of
                space; every acknowledged write is still in the write-ahead log and is
                recovered by the next open.
        """
        if self._closed:
            return
        open_stores.release(self, self._close_engine)

    def _close_engine(self) -> None:
        # The write lock first (the order every write takes the two in): a write
        # holding it has written its batch and not yet recorded it in the change feed
        # (which reads the engine's sequence number). Dropping the engine between the
        # two made a stored write raise "closed" (finding); now the write ends first,
        # and a write after this finds the store closed before touching the engine.
        with self._insert_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            self._get = self._put = self.fast_get = _closed_op
            db, self._db = self._db, None
            _fork.release(self)
            if self._feed is not None:
                self._feed.close()
            try:
                if db is not None and os.getpid() == self._pid:
                    close_when_free(db)
            except Exception as exc:
                err = translate(exc, self.config, "close")
                if self._full or isinstance(err, StorageFullError):
                    raise StorageFullError(
                        f"no space left to close the RocksDB store {self.config.path} "
                        "cleanly; it is closed anyway, and every acknowledged write is in "
                        "its write-ahead log: the next open (with space free) recovers "
                        f"them. Engine message: {exc}",
                        backend="rocksdb",
                        path=self.config.path,
                    ) from exc
                raise err from exc
            finally:
                del db
                if self._secondary_tmp is not None:
                    shutil.rmtree(self._secondary_tmp, ignore_errors=True)
                    self._secondary_tmp = None

    def describe(self) -> str:
        """``rocksdb://<path>``."""
        return f"rocksdb://{self.config.path}"


def _dir_files(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with os.scandir(path) as entries:
            for e in entries:
                try:
                    if e.is_file(follow_symlinks=False):
                        out[e.name] = e.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
    except OSError:
        pass
    return out
