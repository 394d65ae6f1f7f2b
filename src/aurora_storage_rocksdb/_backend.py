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
  only the upper bound is used and lower bounds are checked here.
* A handle inherited across ``fork()`` is poisoned in the child (writes through it would
  be lost silently, and dropping it would flush into the parent's files).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, NoReturn, cast

import rocksdict

from aurora_storage._stores import (
    MARKER_NAME,
    config_signature,
    create_store_dir,
    open_stores,
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
    chunk_items,
    chunk_keys,
)
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    ReadOnlyError,
    RepositoryClosedError,
    StorageError,
    StorageFullError,
    StoreLockedError,
)

from . import _eventstore
from ._config import RocksDBConfig, config_from_url
from ._damage import (
    LogTail,
    damaged_files,
    dropped_in_info_log,
    manifest_log_number,
    scan_log,
    wal_files,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aurora_storage.config import URL

__all__ = ["InheritedHandleError", "RocksDBBackend"]

_FIRST_CHUNK = 64
_MAX_CHUNK = 4096

_COMPRESSION = {
    "none": rocksdict.DBCompressionType.none,
    "snappy": rocksdict.DBCompressionType.snappy,
    "zstd": rocksdict.DBCompressionType.zstd,
    "lz4": rocksdict.DBCompressionType.lz4,
}

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
#: Info log files (LOG and LOG.old.*) RocksDB keeps; older ones are deleted at open.
_KEEP_INFO_LOGS = 3
_log = logging.getLogger("aurora_storage.rocksdb")
#: Seconds close() waits for calls in flight on other threads before giving up.
_CLOSE_WAIT = 300.0
#: Free bytes below which a store that hit a full disk does not try to reopen yet.
_REVIVE_MIN_FREE = 256 * 1024
#: Options that matter only when a store is opened, not to the live handle: a second
#: open of a store already open in this process may differ in them.
_OPEN_ONLY_OPTIONS = ("create_if_missing", "error_if_exists")


class InheritedHandleError(RepositoryClosedError):
    """A RocksDB repository was used in a child process that inherited it through
    ``fork()``; open the store again in the child (or use the ``spawn`` start method)."""


# Live backends, so a fork() child can poison the handles it inherited.
_LIVE: weakref.WeakSet[RocksDBBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for backend in list(_LIVE):
        backend._poison_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _translate(exc: BaseException, config: RocksDBConfig, doing: str) -> StorageError:
    """The typed error for an engine exception (the caller chains it)."""
    if isinstance(exc, StorageError):
        return exc
    path = config.path
    if isinstance(exc, rocksdict.DbClosedError):
        return RepositoryClosedError(
            f"the RocksDB store {path} is closed; open it again", backend="rocksdb", path=path
        )
    text = str(exc)
    low = text.lower()
    if "lock hold by current process" in low or (
        "/lock" in low
        and ("resource temporarily unavailable" in low or "no locks available" in low)
    ):
        return StoreLockedError(
            f"the RocksDB store {path} is locked by another writer "
            f"({'this process' if 'current process' in low else 'another process'}); RocksDB "
            "allows one writer at a time. Close the other repository, or open this one with "
            "mode=read_only (a view as of open time) or mode=secondary (follows the writer, "
            f"call catch_up()). Engine message: {text}",
            backend="rocksdb",
            path=path,
        )
    if "corruption" in low or "checksum mismatch" in low:
        files = damaged_files(text)
        return CorruptionError(
            f"the RocksDB store {path} is damaged ({doing}): {text}",
            backend="rocksdb",
            path=files[0] if len(files) == 1 else path,
        )
    if "no space left" in low or "disk full" in low:
        return StorageFullError(
            f"no space left for the RocksDB store {path} ({doing}); the write was not "
            f"applied: {text}",
            backend="rocksdb",
            path=path,
        )
    if "read only mode" in low or "not supported operation in read only" in low:
        return ReadOnlyError(
            f"the RocksDB store {path} was opened {config.mode}; it refuses writes",
            backend="rocksdb",
            path=path,
        )
    return StorageError(f"RocksDB error on {path} ({doing}): {text}", backend="rocksdb", path=path)


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
            # store); see _eventstore.
            conditional_writes=config.mode == "read_write",
            sequences=config.mode == "read_write",
            change_feed=config.mode == "read_write",
        )
        # The in-process change feed, created by the first watch() (see _eventstore).
        self._feed: RecentChanges | None = None
        self._db = db
        self._secondary_tmp = secondary_tmp
        self._pid = os.getpid()
        self._closed = False
        self._full = False
        self.marker_path = os.path.join(config.path, MARKER_NAME)
        #: What opening recovered from (a crash's torn log tail, or what
        #: ``wal_recovery=point_in_time`` dropped), or ``None``; also in :meth:`stats`.
        self.recovery: dict[str, Any] | None = None
        self._poisoned: str | None = None
        # Serialises chunk reads with close(), so close() never races an engine iterator.
        self._lock = threading.RLock()
        # Bound once: the hot paths call these directly (swapped out on close and fork).
        self._get: Callable[[bytes], bytes | None] = db.get
        self._put: Callable[[bytes, bytes], None] = db.put
        _LIVE.add(self)

    @property
    def repository_class(self) -> type[Any]:
        """What :func:`aurora_storage.open` wraps this backend in."""
        from ._repository import RocksDBRepository

        return RocksDBRepository

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
            StoreLockedError: another writer holds the store.
            CorruptionError: the store's files are damaged (the message names the file).
            StorageFullError: no space left to create the store.
        """
        path = config.path
        exists = os.path.exists(os.path.join(path, "CURRENT"))
        if not exists and os.path.exists(os.path.join(path, MARKER_NAME)):
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
        if exists and config.error_if_exists:
            raise ConfigurationError(
                f"a RocksDB store already exists at {path} (error_if_exists is true)",
                backend="rocksdb",
                path=path,
            )
        if config.mode != "read_write":
            return cls._open_engine(config)
        return open_stores.acquire(
            path,
            config_signature(config, ignore=_OPEN_ONLY_OPTIONS),
            lambda: cls._open_engine(config),
            backend="rocksdb",
        )

    @classmethod
    def _open_engine(cls, config: RocksDBConfig) -> RocksDBBackend:
        path = config.path
        _check_raw_mode(path)
        created = create_store_dir(path, backend="rocksdb") if config.mode == "read_write" else []
        secondary_tmp = None
        try:
            if config.mode == "secondary" and config.secondary_path is None:
                secondary_tmp = tempfile.mkdtemp(prefix="aurora-rocksdb-secondary-")
            db, recovery = _open_db(config, secondary_tmp)
        except BaseException:
            # rocksdict creates the directory before RocksDB validates anything.
            remove_created(created)
            if secondary_tmp is not None:
                shutil.rmtree(secondary_tmp, ignore_errors=True)
            raise
        backend = cls(config, db, secondary_tmp)
        backend.recovery = recovery
        return backend

    # ------------------------------------------------------------------ state

    def _unusable(self) -> StorageError:
        if self._poisoned is not None:
            return InheritedHandleError(self._poisoned, backend="rocksdb", path=self.config.path)
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

    def _error(self, exc: BaseException, doing: str) -> StorageError:
        if self._closed:
            return self._unusable()
        err = _translate(exc, self.config, doing)
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
        self._get = self._reviving_get
        self._put = self._reviving_put

    def _reviving_get(self, key: bytes) -> bytes | None:
        self._revive(reading=True)
        if self._full:
            # Still full: the broken engine refuses writes only; it reads as before.
            return cast(bytes | None, self._db.get(key))
        return self._get(key)

    def _reviving_put(self, key: bytes, value: bytes) -> None:
        self._revive()
        self._put(key, value)

    def _revive(self, *, reading: bool = False) -> None:
        """Reopen the engine after a full disk; StorageFullError while still full -
        except for a read (``reading``), which goes on through the broken engine: a full
        disk stops writes, never reads."""
        with self._lock:
            if self._closed:
                raise self._unusable()
            if not self._full:
                return
            path = self.config.path
            try:
                st = os.statvfs(path)
                free = st.f_bavail * st.f_frsize
            except OSError:
                free = _REVIVE_MIN_FREE
            if free < _REVIVE_MIN_FREE:
                if reading and self._db is not None:
                    return
                # Reopening needs room (a MANIFEST, a log, the memtable's table file);
                # trying on a full disk would only litter it with info logs.
                raise StorageFullError(
                    f"no space left for the RocksDB store {path} ({free} bytes free): free "
                    "some space and retry; the store reopens itself then, with every "
                    "acknowledged write",
                    backend="rocksdb",
                    path=path,
                )
            old, self._db = self._db, None
            if old is not None:
                try:
                    _close_when_free(old)
                except Exception:
                    pass  # the broken engine cannot flush; its log holds every write
                del old
            try:
                db, recovery = _open_db(self.config, None)
            except StorageFullError:
                raise
            except StorageError as exc:
                if "no space" in str(exc).lower():
                    raise StorageFullError(
                        str(exc), backend="rocksdb", path=self.config.path
                    ) from exc
                raise
            self._db = db
            self._get = db.get
            self._put = db.put
            self._full = False
            if recovery is not None:
                self.recovery = recovery
            _log.info("RocksDB store %s reopened after its disk was full", self.config.path)

    def _poison_after_fork(self) -> None:
        if self._closed:
            return
        # Keep the inherited engine object alive forever in the child: dropping it would
        # flush the parent's memtable into the parent's files from this process.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self._db))
        self._poisoned = (
            f"this RocksDB repository ({self.config.path}) was opened in process {self._pid} "
            f"and inherited by fork() into process {os.getpid()}; RocksDB handles cannot "
            "cross fork() (the child's writes would be lost). Open the store after forking, "
            "or use the 'spawn' multiprocessing start method"
        )
        self._closed = True
        self._get = self._put = _closed_op
        self._secondary_tmp = None

    # ------------------------------------------------------------------ point ops

    def get(self, key: bytes) -> bytes | None:
        """See :meth:`Backend.get`."""
        try:
            return self._get(key)
        except Exception as exc:
            raise self._error(exc, "get") from exc

    def put(self, key: bytes, value: bytes) -> None:
        """See :meth:`Backend.put`."""
        try:
            # Under the write lock: a conditional commit reads then writes under it.
            with self._insert_lock:
                self._put(key, value)
                if self._feed is not None:
                    _eventstore.record(self, ((key, value),))
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
        try:
            return list(self._db[list(keys)])
        except Exception as exc:
            raise self._error(exc, "get_many") from exc

    def insert(self, key: bytes, value: bytes) -> bool:
        """See :meth:`Backend.insert`: the default's read-then-write under the insert
        lock (one writer process per store), calling the engine directly instead of
        through :meth:`get` and :meth:`put` (two Python frames of a ~5 us operation)."""
        try:
            with self._insert_lock:
                if self._get(key) is not None:
                    return False
                self._put(key, value)
                if self._feed is not None:
                    _eventstore.record(self, ((key, value),))
                return True
        except Exception as exc:
            raise self._error(exc, "insert") from exc

    def delete(self, key: bytes) -> bool:
        """See :meth:`Backend.delete`."""
        try:
            with self._insert_lock:
                if self._get(key) is None:
                    return False
                self._db.delete(key)  # after _get: a full disk's reopen is done
                if self._feed is not None:
                    _eventstore.record(self, ((key, None),))
                return True
        except Exception as exc:
            raise self._error(exc, "delete") from exc

    def write(self, ops: Sequence[Op]) -> None:
        """See :meth:`Backend.write`: one atomic WriteBatch."""
        self.write_iter(ops)

    def write_iter(self, ops: Iterable[Op]) -> int:
        """See :meth:`Backend.write_iter`: each operation goes into the WriteBatch as it
        is produced; the batch is written only once ``ops`` is exhausted."""
        self._check()
        wb = rocksdict.WriteBatch(raw_mode=True)
        put, delete = wb.put, wb.delete
        # Kept for the change feed only while one is recording.
        changes: list[Op] | None = [] if self._feed is not None else None
        # Outside the engine-error translation: an exception from producing ``ops`` (a
        # bad key or value) reaches the caller unchanged, and the batch is dropped.
        for k, v in ops:
            if v is None:
                delete(k)
            else:
                put(k, v)
            if changes is not None:
                changes.append((k, v))
        n: int = wb.len()
        if n:
            try:
                with self._insert_lock:
                    self._db.write(wb)
                    if changes is not None:
                        _eventstore.record(self, changes)
            except Exception as exc:
                raise self._error(exc, "write batch") from exc
        return n

    # ------------------------------------------------------------------ scans

    def _chunk(
        self, lo: bytes, hi: bytes, reverse: bool, n: int, values: bool
    ) -> tuple[list[bytes], list[bytes] | None, bool]:
        """Up to ``n`` keys (and their values) of ``[lo, hi)``; the flag says whether
        more may follow."""
        with self._lock:
            self._check(reading=True)
            db = self._db
            try:
                ro = rocksdict.ReadOptions()
                ro.set_iterate_upper_bound(hi)
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
                    # descend, so the ones to keep come first).
                    cut = sum(1 for k in keys if k >= lo)
                    return keys[:cut], None if vals is None else vals[:cut], False
                if len(keys) == n:
                    return keys, vals, True
                lo2, hi2 = (lo, last) if reverse else (last + b"\x00", hi)
                return keys, vals, self._more(lo2, hi2, reverse)
            except Exception as exc:
                raise self._error(exc, "scan") from exc

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
        bounded above by ``stop``, whose ``status()`` raises on corruption."""
        with self._lock:
            self._check(reading=True)
            try:
                ro = rocksdict.ReadOptions()
                ro.set_iterate_upper_bound(stop)
                it = self._db.iter(ro)
                try:
                    it.seek_for_prev(stop)
                    if it.valid() and it.key() >= stop:
                        it.prev()
                    if it.valid():
                        k: bytes = it.key()
                        return k if k >= start else None
                    it.status()
                    return None
                finally:
                    # A live iterator keeps the database (and its LOCK) alive.
                    del it
            except Exception as exc:
                raise self._error(exc, "last_key") from exc

    def delete_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.delete_range`: one range tombstone over the key range."""
        self._check()
        with self._insert_lock:
            # A recording feed needs the keys (one delete change each).
            keys = list(self.scan_keys(start, stop)) if self._feed is not None else None
            count = len(keys) if keys is not None else self.count_range(start, stop)
            if count:
                try:
                    wb = rocksdict.WriteBatch(raw_mode=True)
                    wb.delete_range(start, stop)
                    self._db.write(wb)
                    if keys is not None:
                        _eventstore.record(self, [(k, None) for k in keys])
                except Exception as exc:
                    raise self._error(exc, "delete_range") from exc
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
        return feed if feed is not None else _eventstore.start_feed(self)

    # ------------------------------------------------------------------ maintenance

    def flush(self, *, memtables: bool = False) -> None:
        """fsync the write-ahead log, so every acknowledged write survives an OS crash;
        with ``memtables`` also write the memtables out as table files."""
        self._check()
        if self.capabilities.read_only:
            return
        try:
            self._db.flush_wal(True)
            if memtables:
                self._db.flush(True)
        except Exception as exc:
            raise self._error(exc, "flush") from exc

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
        try:
            self._db.compact_range(None, None)
        except Exception as exc:
            raise self._error(exc, "compact") from exc

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
        try:
            cp = rocksdict.Checkpoint(self._db)
            try:
                cp.create_checkpoint(target)
            finally:
                # A live Checkpoint keeps the database (and its LOCK) alive.
                del cp
        except Exception as exc:
            raise self._error(exc, "checkpoint") from exc
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
        try:
            self._db.try_catch_up_with_primary()
        except Exception as exc:
            raise self._error(exc, "catch up") from exc

    def stats(self) -> dict[str, Any]:
        """Size on disk, estimated keys, and the RocksDB properties used for tuning."""
        self._check(reading=True)
        db = self._db
        props: dict[str, Any] = {}
        try:
            for name in _INT_PROPERTIES:
                props[name] = db.property_int_value(name)
            for level in range(_LEVELS):
                props[f"rocksdb.num-files-at-level{level}"] = db.property_int_value(
                    f"rocksdb.num-files-at-level{level}"
                )
            seq = db.latest_sequence_number()
        except Exception as exc:
            raise self._error(exc, "stats") from exc
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

    def property(self, name: str) -> str | None:
        """Any RocksDB property as text (``rocksdb.stats``, ``rocksdb.levelstats`` ...);
        ``None`` if unknown."""
        self._check(reading=True)
        try:
            value = self._db.property_value(name)
        except Exception as exc:
            raise self._error(exc, "property") from exc
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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._get = self._put = _closed_op
            db, self._db = self._db, None
            _LIVE.discard(self)
            if self._feed is not None:
                self._feed.close()
            try:
                if db is not None and os.getpid() == self._pid:
                    _close_when_free(db)
            except Exception as exc:
                err = _translate(exc, self.config, "close")
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


def _close_when_free(db: Any) -> None:
    """Close the engine once no other thread is inside a call on it.

    rocksdict refuses ``close()`` with "Already borrowed" while another thread is inside
    a call that released the GIL (a multi-get, an iterator step). New calls can no
    longer reach the engine (the backend dropped its reference before calling this), so
    the calls in flight finish and the close then goes through.
    """
    deadline = time.monotonic() + _CLOSE_WAIT
    delay = 0.0005
    while True:
        try:
            db.close()
            return
        except Exception as exc:
            if "already borrowed" not in str(exc).lower() or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _open_db(config: RocksDBConfig, secondary_tmp: str | None) -> tuple[Any, dict[str, Any] | None]:
    """Open the engine on ``config.path`` (which exists): the damage checks, strict
    write-ahead log recovery with a crash's torn tail dropped, or point-in-time recovery
    when asked. Returns the engine and what recovery did (``None``: nothing).

    Raises:
        CorruptionError: damaged files (named), StoreLockedError, StorageFullError, ...
    """
    path = config.path
    recovery: dict[str, Any] | None = None
    try:
        if config.mode != "secondary" and os.path.exists(os.path.join(path, "CURRENT")):
            missing_wal = _check_manifest(config)
        else:
            missing_wal = None
        if config.mode == "read_only":
            access = rocksdict.AccessType.read_only()
        elif config.mode == "secondary":
            sec = config.secondary_path or secondary_tmp
            assert sec is not None  # _open_engine makes a temporary one
            access = rocksdict.AccessType.secondary(sec)
        else:
            access = rocksdict.AccessType.read_write()
        try:
            db = rocksdict.Rdict(path, options=_engine_options(config), access_type=access)
        except Exception as exc:
            if config.mode == "secondary" or not _is_corruption(exc):
                raise
            if config.wal_recovery == "point_in_time" or config.mode == "read_only":
                raise _corruption(exc, config) from exc
            # Strict: the engine refused any damage in the logs. A crash's torn tail
            # is no damage: drop it (as RocksDB's default mode does) and say so.
            tail = None if damaged_files(str(exc)) else _crash_torn_tail(path)
            if tail is None:
                raise _corruption(exc, config) from exc
            db = rocksdict.Rdict(
                path, options=_engine_options(config, tolerate_tail=True), access_type=access
            )
            recovery = {
                "mode": "strict",
                "torn_tail": {
                    "file": tail.path,
                    "bytes_dropped": tail.size - tail.complete_end,
                },
            }
            _log.info(
                "RocksDB store %s: dropped the torn tail of %s (%d bytes: the record "
                "being written when the process died)",
                path,
                tail.path,
                tail.size - tail.complete_end,
            )
        if config.wal_recovery == "point_in_time" and config.mode != "secondary":
            dropped = dropped_in_info_log(path)
            if missing_wal is not None:
                dropped.insert(
                    0, (os.path.join(path, f"{missing_wal:06d}.log"), 0, "the log file is missing")
                )
            if dropped:
                recovery = {
                    "mode": "point_in_time",
                    "dropped": [{"file": f, "bytes": n, "reason": why} for f, n, why in dropped],
                    "bytes_dropped": sum(n for _, n, _ in dropped),
                }
                _log.warning(
                    "RocksDB store %s opened with wal_recovery=point_in_time dropped "
                    "%d bytes of its write-ahead log: %s",
                    path,
                    recovery["bytes_dropped"],
                    "; ".join(f"{f}: {n} bytes ({why})" for f, n, why in dropped),
                )
        if config.sync:
            wo = rocksdict.WriteOptions()
            wo.sync = True
            db.set_write_options(wo)
    except Exception as exc:
        if not isinstance(exc, StorageError) and _is_corruption(exc):
            raise _corruption(exc, config) from exc
        raise _translate(exc, config, "opening") from exc
    return db, recovery


def _is_corruption(exc: BaseException) -> bool:
    low = str(exc).lower()
    return "corruption" in low or "checksum mismatch" in low


def _corruption(exc: BaseException, config: RocksDBConfig) -> CorruptionError:
    """The CorruptionError of a refused open, naming the damaged file(s)."""
    path = config.path
    text = str(exc)
    files = damaged_files(text)
    wal = False
    if not files and "CURRENT" in text:
        files = [os.path.join(path, "CURRENT")]
    if not files:
        files = list(dict.fromkeys(f for f, _, _ in dropped_in_info_log(path)))
        wal = bool(files)
    if not files and ("record" in text or "checksum mismatch" in text.lower()):
        files, wal = wal_files(path), True
    named = ", ".join(files) if files else "(the engine named no file)"
    hint = "Restore the store from a backup"
    if wal and config.mode == "read_write" and config.wal_recovery == "strict":
        hint += (
            ", or open it with wal_recovery=point_in_time to keep every record before the "
            "damage and drop the rest (what is dropped is logged and reported in "
            "stats()['recovery'])"
        )
    return CorruptionError(
        f"the RocksDB store {path} is damaged: {named}: {text}. {hint}",
        backend="rocksdb",
        path=files[0] if len(files) == 1 else path,
    )


def _crash_torn_tail(path: str) -> LogTail | None:
    """The torn tail a crash left in the newest write-ahead log, if that is the only
    thing wrong with the logs (every older log complete), else ``None``."""
    logs = wal_files(path)
    if not logs:
        return None
    try:
        tails = [scan_log(f) for f in logs]
    except OSError:
        return None
    *older, newest = tails
    if any(t.torn or t.problem for t in older):
        return None
    if newest.problem or not newest.torn or not newest.crash_shaped:
        return None
    return newest


def _check_manifest(config: RocksDBConfig) -> int | None:
    """Refuse a MANIFEST that was cut short: RocksDB would open the state of its last
    complete record without a word - and then delete the table files the lost records
    listed (a store of 20,000 records reopened with a fraction of them, or none)."""
    path = config.path
    try:
        with open(os.path.join(path, "CURRENT"), encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
    except OSError:
        return None  # the engine reports a missing or unreadable CURRENT itself
    if not re.fullmatch(r"MANIFEST-\d+", name):
        raise CorruptionError(
            f"the RocksDB store {path} is damaged: its CURRENT file does not name a "
            f"MANIFEST ({name[:40]!r}). Restore the store from a backup",
            backend="rocksdb",
            path=os.path.join(path, "CURRENT"),
        )
    manifest = os.path.join(path, name)
    if not os.path.exists(manifest):
        raise CorruptionError(
            f"the RocksDB store {path} is damaged: its CURRENT file names {name}, which does "
            "not exist (CURRENT or the MANIFEST is damaged or was deleted). Restore the store "
            "from a backup",
            backend="rocksdb",
            path=os.path.join(path, "CURRENT"),
        )
    for attempt in range(3):
        try:
            tail = scan_log(manifest)
        except OSError:
            return None  # the engine reports a missing MANIFEST itself
        if tail.problem is None and (not tail.torn or tail.crash_shaped):
            return _check_wal_present(config, manifest)
        if config.mode != "read_only" or attempt == 2:
            break
        # A read-only open beside a live writer may see its MANIFEST mid-append.
        time.sleep(0.05)
    what = tail.problem or (
        f"it ends inside a record ({tail.size} bytes, the last complete record ends at "
        f"{tail.complete_end}): the file was cut short"
    )
    raise CorruptionError(
        f"the RocksDB store {path} is damaged: {manifest}: {what}. Restore the store from a backup",
        backend="rocksdb",
        path=manifest,
    )


def _check_wal_present(config: RocksDBConfig, manifest: str) -> int | None:
    """Refuse a store whose write-ahead log was deleted: the MANIFEST names the oldest
    log that still holds data (its ``log_number``; RocksDB keeps that log, or a newer
    one, on disk at all times), and RocksDB would open without it - every acknowledged
    write only in that log gone, without a word. With ``wal_recovery=point_in_time``
    the open goes on; the missing log's number is returned for the recovery report."""
    if not os.path.exists(os.path.join(config.path, MARKER_NAME)):
        # Only a store this library initialised in place is known to keep a log: a
        # RocksDB checkpoint (a backup) legitimately holds none when its memtables were
        # flushed, and carries no marker; its first open here writes one.
        return None
    number = manifest_log_number(manifest)
    if number is None or number == 0:
        return None
    if any(int(os.path.basename(f)[:-4]) >= number for f in wal_files(config.path)):
        return None
    if config.wal_recovery == "point_in_time" and config.mode == "read_write":
        return number
    raise CorruptionError(
        f"the RocksDB store {config.path} is damaged: its write-ahead log {number:06d}.log "
        f"(named by {os.path.basename(manifest)}) is missing, so the writes acknowledged "
        "since the last flush to table files are gone. Restore the store from a backup, or "
        "open it with wal_recovery=point_in_time to keep what the table files hold",
        backend="rocksdb",
        path=os.path.join(config.path, f"{number:06d}.log"),
    )


def _engine_options(config: RocksDBConfig, *, tolerate_tail: bool = False) -> Any:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(config.create_if_missing)
    if config.error_if_exists:
        opts.set_error_if_exists(True)
    opts.set_compression_type(_COMPRESSION[config.compression]())
    opts.set_write_buffer_size(config.write_buffer_size)
    opts.set_max_write_buffer_number(config.max_write_buffer_number)
    opts.set_max_open_files(config.max_open_files)
    opts.set_max_background_jobs(config.max_background_jobs)
    # Corruption found while reading is reported instead of skipped.
    opts.set_paranoid_checks(True)
    # Every read-write open starts a new info LOG and renames the old one to LOG.old.*;
    # without a bound, one file per open piles up (38 after 38 command-line writes).
    opts.set_keep_log_file_num(_KEEP_INFO_LOGS)
    modes = rocksdict.DBRecoveryMode
    if config.mode == "secondary":
        pass  # a secondary follows the live logs of its primary: the engine's default
    elif config.mode == "read_only" or tolerate_tail:
        # A read-only open may run beside a live writer whose newest record is still
        # being written; damage before the tail is still refused.
        opts.set_wal_recovery_mode(modes.tolerate_corrupted_tail_records())
    elif config.wal_recovery == "point_in_time":
        opts.set_wal_recovery_mode(modes.point_in_time())
    else:
        # Strict: every record of every log must be whole; open() tells a crash's torn
        # tail from damage itself (see _damage.py).
        opts.set_wal_recovery_mode(modes.absolute_consistency())
    table = rocksdict.BlockBasedOptions()
    if config.bloom_filter:
        table.set_bloom_filter(config.bloom_bits_per_key, False)
    table.set_block_cache(rocksdict.Cache(config.block_cache_size))
    opts.set_block_based_table_factory(table)
    return opts


def _check_raw_mode(path: str) -> None:
    """Refuse a store written by rocksdict in its default (pickle) mode: opening it in raw
    mode would rewrite its side file and hand back pickled bytes."""
    side = os.path.join(path, "rocksdict-config.json")
    try:
        with open(side, "rb") as f:
            text = f.read()
    except OSError:
        return
    import json

    try:
        raw = json.loads(text).get("raw_mode", True)
    except (ValueError, AttributeError):
        return
    if raw is False:
        raise ConfigurationError(
            f"{path} was written by rocksdict in its default (pickle) mode, not by "
            "aurora-storage; it cannot be opened as an aurora-storage store",
            backend="rocksdb",
            path=path,
        )


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
