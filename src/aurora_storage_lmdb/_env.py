"""The LMDB environment's life and its transactions, for :class:`._backend.LMDBBackend`.

What every operation of the backend stands on, kept apart from the operations
themselves so each module reads in one sitting:

* opening: the path and marker checks, the creation lock (a store without a marker is
  created by one process at a time), the open record and the structural check at open
  (``verify=auto``), the lock file's blocks reserved before liblmdb maps it, retries of
  a map resized by another process or a reader table full of dead readers;
* state: the one ``_dead`` flag the hot paths test, and what it means (closed,
  inherited across ``fork()``, or the writer's gate shut);
* transactions: a write transaction per call under the process write lock, retried as a
  whole after the map grows; short read transactions; the writer-preferring gate that
  lets an abort or a remap happen while readers loop.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import lmdb

from aurora_storage import _fork
from aurora_storage._stores import check_marker_backend, refuse_beside_a_restore
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    RepositoryClosedError,
    StorageError,
    StorageFullError,
    StoreLockedError,
)

from . import _eventstore
from ._config import LMDBConfig
from ._disk import (
    Created,
    CreationLock,
    OpenRecord,
    RecordLost,
    StoreMoved,
    alone_with,
    check_path,
    exclusive,
    lock_file_exclusive,
    lock_file_size,
    os_error,
    preallocate,
)
from ._errors import RACE_ERRORS, translate
from ._format import LIB_VERSION, precheck, verify_or_raise

__all__ = ["Environment"]

T = TypeVar("T")

_RETRIES = 64
# Maps beyond this are pointless on today's 64-bit systems (47-bit address space).
_ADDRESS_LIMIT = 1 << 46


class _Tries:
    """The retries of one unit of work, counted per cause (see Environment._recover)."""

    __slots__ = ("counts", "remaps")

    def __init__(self, remaps: int) -> None:
        self.counts: dict[str, int] = {}
        #: Environment._remaps when the unit began, or at its last race.
        self.remaps = remaps

    def count(self, cause: str, exc: Exception, env: Environment) -> int:
        """Count one more retry for ``cause``; raise the user-facing error once the
        cause has used up its retries."""
        n = self.counts.get(cause, 0) + 1
        self.counts[cause] = n
        if n > _RETRIES:
            raise env._translate(exc, "retrying") from exc
        return n


class Environment:
    """The environment half of :class:`._backend.LMDBBackend` (a mixin: the backend's
    constructor sets every attribute named here)."""

    config: LMDBConfig
    path: str
    marker_path: str | None
    _env: Any
    _begin: Callable[..., Any]
    _data_file: str
    _lock_file: str
    _grow_lock_file: str
    _create_lock_file: str
    _record: OpenRecord
    _created: Created
    _creation: CreationLock | None
    _verified_at_open: bool
    _wlock: threading.Lock
    _gate: threading.Condition
    _gate_shut: bool
    _closed: bool
    _forked: bool
    #: In a forked child: the inherited environment was kept open (see _forked_in_child).
    _kept_in_child = False
    _dead: bool
    _pid: int
    _log: _eventstore.StoreChangeLog | None
    #: When the next write transaction clears the reader slots of dead processes
    #: (time.monotonic(); see _clear_dead_readers).
    _next_reader_check = 0.0
    #: How many times the gate was shut (a remap or an abort that invalidates the
    #: transactions of other threads): tells a read's race with one from a real error.
    _remaps = 0

    def _committed(self, tid: int, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Record a committed transaction's changes (the backend's feed)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ opening

    def _open_env(self) -> Any:
        """Open the environment (see :meth:`_open_env_here`), again from the start when
        a lock file it waited for turned out to be another store's: a restore swapped
        a backup in while this open waited for it (the first opening found the old
        store's files, which the restore has moved away). Only the files at the path
        once its locks are granted are opened, so the environment's ``lock.mdb`` and
        ``data.mdb`` are always those of the store whose open record this process holds.

        Raises:
            StoreLockedError: the store was replaced again and again meanwhile.
        """
        for _ in range(_RETRIES):
            try:
                return self._open_env_here()
            except StoreMoved:
                # Nothing of the moved store is used again; what this open noted as
                # created there is gone with it (the paths now name the other store's
                # files, never to be removed by this open).
                self._creation_done()
                self._created.forget()
        raise StoreLockedError(
            f"cannot open the LMDB store at {self.path}: it was replaced again and again "
            "while this open waited (restores into it?); open it again once they are done",
            backend="lmdb",
            path=self.path,
        )

    def _open_env_here(self) -> Any:
        cfg = self.config
        check_path(self.path, subdir=cfg.subdir)
        if cfg.create and not os.path.exists(self._data_file):
            # Never an empty store beside what a restore left (aurora-storage restore):
            # finishing that restore would then move the backup into it.
            refuse_beside_a_restore(self.path, backend="lmdb")
        marker = self.marker_path
        # The marker first: it is written after the data file, so a marker seen before
        # the data file is found missing is a damaged store, while one seen after may
        # belong to another process that has just created the store.
        marked = marker is not None and os.path.exists(marker)
        if not marked:
            # Not a finished store (the core writes the marker last): it may be being
            # created right now, by this process or another. Creation is serialised
            # (see _disk.CreationLock); an open of a finished store skips this.
            self._take_creation_lock()
            marked = marker is not None and os.path.exists(marker)
        exists = os.path.exists(self._data_file)
        if not exists:
            check_marker_backend(marker, backend="lmdb", store_path=self.path)
        if not exists and marked:
            raise CorruptionError(
                f"the LMDB store {self.path} was initialised (it has {marker}) but "
                f"its data file {self._data_file} is missing; the store is damaged: restore "
                "it from a backup",
                backend="lmdb",
                path=self._data_file,
            )
        if exists and marked:
            with contextlib.suppress(OSError):
                if os.path.getsize(self._data_file) == 0:
                    # Checked before liblmdb sees the file: it would initialise an empty
                    # data file as a new store (a read-write open) or fail with EBADF.
                    raise CorruptionError(
                        f"the LMDB store {self.path} was initialised (it has {marker}) but "
                        f"its data file {self._data_file} is empty (truncated to 0 bytes): "
                        "every record is gone; nothing was changed. Restore the store from "
                        "a backup (aurora-storage restore); to start afresh instead, delete "
                        "the whole store directory",
                        backend="lmdb",
                        path=self._data_file,
                    )
        if not exists and not cfg.create:
            raise ConfigurationError(
                f"no LMDB store at {self.path}"
                + (" (opened read-only, so it is not created)" if cfg.read_only else ""),
                backend="lmdb",
                path=self.path,
            )
        if cfg.create and self._creation is not None and not exists:
            # This open creates the store, under the creation lock: no other process is
            # making these files or can use them before it is done, so what is missing
            # now is its own to remove if it fails. (An open that finds the store made
            # notes nothing: what it adds is not worth a race with the store's users.)
            self._created.note(
                self._data_file, self._lock_file, self._grow_lock_file, self._record.record_file
            )
        # An empty data file in a store without a marker is what a creator killed inside
        # liblmdb's open leaves (liblmdb creates the file, then writes its meta pages):
        # liblmdb initialises it like a missing one, and there is nothing to check.
        empty = False
        if exists and not marked:
            with contextlib.suppress(OSError):
                empty = os.path.getsize(self._data_file) == 0
        if empty and not cfg.create:
            # A read-only open cannot initialise it (liblmdb answered EBADF, and left a
            # lock file behind): there is no store here yet.
            raise ConfigurationError(
                f"no LMDB store at {self.path} yet: its data file {self._data_file} is "
                "empty (a creator stopped before initialising it) and a read-only open "
                "does not create or initialise a store; open it once without "
                "read_only=true to finish it",
                backend="lmdb",
                path=self.path,
            )
        if exists:
            precheck(self.path, self._data_file, cfg.subdir)
        try:
            with self._record.entering() as clean:
                if clean is None and cfg.lock:
                    # Others have the store open: they must share one lock file with it.
                    self._refuse_a_removed_lock_file()
                # verify=auto: the structural check runs when the file is not known clean
                # (not closed cleanly by this library, or no record of it: a read-only
                # open of a copied or restored store) and no other process has it open (a
                # live writer would make an outside walk of the file meaningless:
                # liblmdb's own lock on lock.mdb tells, for processes that do not use this
                # library too, and is held during the walk so none starts meanwhile).
                # Unchecked, a damaged page kills this process (SIGABRT in an engine
                # assertion) on the first scan, or - a damaged branch page - makes whole
                # subtrees unreachable: scans and counts silently miss their records.
                wanted = cfg.verify is True or (cfg.verify == "auto" and clean is False)
                if exists and not empty and wanted and clean is not None:
                    # Without coordination, a lock file this open may not probe says
                    # nothing: the store may be in use (another user's live store).
                    with alone_with(
                        self._lock_file, create=cfg.lock, unknown=self._record.coordinated
                    ) as alone:
                        if alone:
                            verify_or_raise(self.path, cfg.subdir, self._data_file)
                            self._verified_at_open = True
                if cfg.lock:
                    self._reserve_lock_file()
        except RecordLost as exc:
            # Other processes hold the data file, but not this record: the store's lock
            # files were removed under them (see OpenRecord._hold_data).
            raise self._removed_in_use(exc.what) from None
        for attempt in range(_RETRIES):
            try:
                env = self._open_env_once()
            except lmdb.MapResizedError as exc:
                # Another process grew the map between our open and the first read
                # transaction of py-lmdb's constructor: open again (adopts the size).
                if attempt == _RETRIES - 1:
                    raise self._translate(exc, "open") from exc
            except lmdb.ReadersFullError as exc:
                # py-lmdb needs a read transaction (a reader slot) to open, and closes
                # the environment when it gets none, so a table full of dead readers
                # cannot be cleaned from here. Live readers may still finish, and the
                # processes that have the store open clear dead slots at their writes
                # (once a second): wait a few seconds before giving up.
                if attempt >= 59:
                    raise StorageFullError(
                        f"cannot open the LMDB store at {self.path}: all of its reader "
                        "slots are taken. A new process cannot clear the slots of killed "
                        "processes itself (opening needs a free slot); the processes that "
                        "have the store open clear them at their next write (at most once "
                        "a second) or with LMDBRepository.reader_check(), and liblmdb "
                        "resets the table when every process has closed the store. If "
                        "the slots belong to live readers, raise max_readers (it takes "
                        "effect when the first process opens the store: stop them all)",
                        backend="lmdb",
                        path=self.path,
                    ) from exc
                time.sleep(0.05)
            else:
                # A store created by this open: its data file exists only now.
                self._record.hold_data()
                return env
        raise AssertionError("unreachable")  # pragma: no cover

    def _refuse_a_removed_lock_file(self) -> None:
        """Refuse to join processes that use a lock file no longer at its path.

        liblmdb's write lock, reader table and liveness locks all live in the lock file.
        If it was removed while processes use the store (an operator tidying lock
        files), they go on with the removed file, and liblmdb would make a new one for
        this process: two write locks, two writers at once, and the store destroyed
        (finding: MDB_CORRUPTED within seconds). Called while this process is registered
        in the open record beside the others and before anything is created.

        Raises:
            StoreLockedError: the lock file is missing, or is not the one the store's
                first current user recorded.
        """
        try:
            st = os.stat(self._lock_file)
        except FileNotFoundError:
            raise self._removed_in_use(f"its lock file {self._lock_file} is missing") from None
        except OSError:
            return  # cannot tell (permissions): liblmdb reports its own error
        held = self._record.lock_in_use
        if held is None or held == (st.st_dev, st.st_ino):
            return
        # The record names the lock file the store's first current user opened (every
        # first user, read-only ones included, rewrites it when it may; see
        # OpenRecord.entering), so another file at the path was made after that.
        raise self._removed_in_use(
            f"its lock file {self._lock_file} is not the one they opened (the open "
            f"record names another file: it was made anew since)"
        )

    def _removed_in_use(self, found: str) -> StoreLockedError:
        """The error of an open that found the store's lock files removed (or made
        anew) while other processes use it: ``found`` says what it found."""
        return StoreLockedError(
            f"cannot open the LMDB store at {self.path}: other processes have it open, but "
            f"{found}: the lock files were removed while they use the store. They go on "
            "with the removed files, and a process opening the store now would use other "
            "ones: two processes could then write at once and destroy the store. Nothing "
            "was created. Stop every process that uses the store, then open it again "
            "(LMDB makes a new lock file); never delete lock.mdb or aurora-open.lock while "
            "the store is in use",
            backend="lmdb",
            path=self.path,
        )

    def _reserve_lock_file(self) -> None:
        """Give lock.mdb real blocks before liblmdb maps it. liblmdb sizes it with
        ftruncate (a sparse file) and writes through the map: on a full filesystem
        that is SIGBUS, not an error. Only a process with exclusive access may size
        it (others map it at its current size); the others just fill its holes."""
        size = lock_file_size(self.config.max_readers)
        if not lock_file_exclusive(self._lock_file):
            size = 0  # keep the size; only allocate what is there
        try:
            preallocate(self._lock_file, size)
        except StorageError:
            if not self.config.read_only:
                raise
            # Read-only, maybe on a read-only filesystem: liblmdb then runs without
            # a lock file, or reports its own error.

    def _take_creation_lock(self) -> None:
        """Wait for any creation of this store in progress and, if this open may create
        it, hold the creation lock until the backend is built (released by
        :meth:`_creation_done`). An open that creates nothing waits only if the data
        file exists, and only if the lock file does: a creator makes the lock file
        before the data file, and removes it (only when it gives up) after the data
        file, so a data file without a lock file was not made by a creator of this
        library that is still at work."""
        cfg = self.config
        directory = self.path if cfg.subdir else os.path.dirname(self.path)
        if not cfg.create and not os.path.exists(self._data_file):
            return  # refused below (no store), nothing to wait for
        self._creation = CreationLock.take(
            self._create_lock_file,
            created=self._created if cfg.create else None,
            directory=directory,
            shared=cfg.read_only,
        )

    def _creation_done(self) -> None:
        """Release the creation lock (after the backend is built, or after a failed
        open removed what it created)."""
        creation, self._creation = self._creation, None
        if creation is not None:
            creation.release()

    def _abandon(self) -> None:
        """Undo a failed open: close the engine, leave the open record unclean, and
        remove the files and directories this open created. Only an open holding the
        creation lock created any (see :class:`._disk.Created`): no other process can
        have made them its store meanwhile, since every other opener waited for the
        lock."""
        env = self.__dict__.get("_env")
        self._closed = True
        self._dead = True
        _fork.release(self)
        if env is not None:
            with contextlib.suppress(lmdb.Error):
                env.close()
        self._record.leave(clean=False)
        self._created.remove()

    def _open_env_once(self) -> Any:
        cfg = self.config
        try:
            env = lmdb.open(
                self.path,
                map_size=cfg.map_size,
                subdir=cfg.subdir,
                readonly=cfg.read_only,
                metasync=cfg.metasync,
                sync=cfg.sync,
                create=cfg.create,
                readahead=cfg.readahead,
                lock=cfg.lock,
                max_readers=cfg.max_readers,
                max_dbs=0,
                max_spare_txns=1 if cfg.reader_cache else 0,
                lib_version=LIB_VERSION,
            )
        except lmdb.InvalidError as exc:
            raise CorruptionError(
                f"{self._data_file} is not a valid LMDB data file: {exc}",
                backend="lmdb",
                path=self.path,
            ) from exc
        except (lmdb.ReadersFullError, lmdb.MapResizedError):
            raise
        except lmdb.MemoryError as exc:
            raise ConfigurationError(
                f"cannot map the LMDB store at {self.path} with map_size={cfg.map_size}: "
                f"{exc}. This process may not map that much address space (ulimit -v, "
                "container limits): lower map_size (the map grows on demand)",
                backend="lmdb",
                path=self.path,
            ) from exc
        except lmdb.VersionMismatchError as exc:
            raise ConfigurationError(
                f"the LMDB store at {self.path} (or its lock file) was written by an "
                f"incompatible LMDB version: {exc}",
                backend="lmdb",
                path=self.path,
            ) from exc
        except lmdb.Error as exc:
            if "already open in this process" in str(exc):
                raise StoreLockedError(
                    f"the LMDB store at {self.path} is already open in this process; "
                    "share that repository (it is thread-safe) instead of opening it twice. "
                    "If this process is the child of a fork() and the parent had it open "
                    "(with reader_cache=true), open it only after the fork, use the "
                    "'spawn' start method, or set reader_cache=false",
                    backend="lmdb",
                    path=self.path,
                ) from exc
            raise self._translate(exc, "open") from exc
        except OSError as exc:
            raise os_error(exc, f"cannot open the LMDB store at {self.path}", self.path) from exc
        try:
            # Reclaim the reader slots of processes that died without ending their
            # read transactions (SIGKILL): they would otherwise fill the table.
            if cfg.lock:
                env.reader_check()
        except lmdb.Error:  # pragma: no cover - best effort, never fatal at open
            pass
        return env

    # ------------------------------------------------------------------ state

    def _forked_in_child(self) -> None:
        """See :class:`aurora_storage._fork.ForkAware`."""
        self._forked = True
        self._dead = True
        feed = self.__dict__.get("_feed")
        if feed is not None:
            # A watch inherited from the parent raises there too, instead of waiting
            # for changes nothing in this process records.
            feed.refuse(self._inherited_error)
        env = self.__dict__.get("_env")
        if env is None:
            return
        if self._wlock.locked() or self.config.reader_cache:
            # A parent thread was inside a write transaction, or a cached read
            # transaction holds one of the parent's reader slots: closing the copy here
            # would release the parent's writer or reader slot in the shared lock file.
            # Keep the copy untouched and never deallocated (so this process can never
            # open the store again: _check's message says so).
            self._kept_in_child = True
            _fork.keep_forever(env)
            return
        try:
            # Closing the inherited copy frees the path for a fresh open in the child;
            # liblmdb only clears reader slots owned by the closing (child) pid.
            env.close()
        except Exception:  # pragma: no cover - best effort
            _fork.keep_forever(env)

    def _check(self) -> None:
        if self._gate_shut:
            with self._gate:
                while self._gate_shut:
                    self._gate.wait()
        if self._forked:
            raise self._inherited_error()
        if self._closed:
            raise RepositoryClosedError(
                f"the LMDB store at {self.path} is closed", backend="lmdb", path=self.path
            )
        # Otherwise the gate was shut and is open again: the call goes on.

    def _inherited_error(self) -> StorageError:
        """The error of every call through an environment inherited across fork()."""
        return _fork.inherited_error(
            engine="LMDB",
            scheme="lmdb",
            path=self.path,
            opened_pid=self._pid,
            why="LMDB forbids using an inherited environment",
            fix=None
            if not self._kept_in_child
            else (
                "This process cannot open the store again either: the inherited copy "
                "stays open here, untouched, because closing it would release the "
                "parent's "
                + (
                    "cached reader slot (reader_cache=true)"
                    if self.config.reader_cache
                    else "write transaction"
                )
                + ". Open LMDB stores only after forking, use the 'spawn' "
                "multiprocessing start method, or open the store with "
                "reader_cache=false in the parent (its copy is then closed in the "
                "child, which may open the store again)"
            ),
        )

    def _translate(self, exc: Exception, what: str) -> StorageError:
        """The aurora-storage error for an engine error (the caller chains it)."""
        if self._dead:
            try:
                self._check()
            except StorageError as err:
                return err
        return translate(exc, what, path=self.path, max_readers=self.config.max_readers)

    # ------------------------------------------------------------------ retries

    def _recover(self, exc: Exception, tries: _Tries, *, writing: bool) -> None:
        """Make the failed unit of work retryable, or raise the user-facing error.

        Called with no transaction of this call open. ``writing`` tells whether the
        caller already holds the process write lock. ``tries`` counts the unit's retries
        per cause: one bound shared by all causes let the retries of a full reader table
        use up those of a read that raced a growth, whose engine error then leaked
        (finding).
        """
        if self._dead:
            self._check()
        if isinstance(exc, lmdb.MapFullError):
            tries.count("full", exc, self)
            self._grow()
        elif isinstance(exc, lmdb.MapResizedError):
            # Another process grew the map: adopt its size (needs no write txn here).
            tries.count("resized", exc, self)
            self._adopt_map_size(writing)
        elif isinstance(exc, lmdb.ReadersFullError):
            # Slots of killed processes are reclaimed; live readers just need a moment.
            n = tries.count("readers", exc, self)
            self._env.reader_check()
            time.sleep(min(0.001 * n, 0.05))
        elif not writing and type(exc) in RACE_ERRORS:
            # A read racing a resize of the map (or an abort behind the gate) by another
            # thread of this process fails fast (py-lmdb >= 2.3: "closed/deleted/dropped
            # object", or EINVAL from mdb_txn_begin). Growth holds the write lock: wait
            # for it, then retry. A race explained by a remap since the last one is
            # always retried (each needs a growth: progress); three in a row without
            # one are a real error.
            with self._wlock:
                pass
            remaps = self._remaps
            if remaps != tries.remaps:
                tries.remaps = remaps
            elif tries.count("race", exc, self) > 3:
                raise self._translate(exc, "operation") from exc
        else:
            raise self._translate(exc, "operation") from exc

    def _adopt_map_size(self, writing: bool) -> None:
        if writing:
            with self._gated():
                self._env.set_mapsize(0)
            return
        with self._wlock:
            if self._dead:
                self._check()
            with self._gated():
                self._env.set_mapsize(0)

    def _grow(self) -> None:
        """Grow the map geometrically (the caller holds the write lock; no write
        transaction is open). Growth is serialised across processes by a lock file."""
        env = self._env
        try:
            fd: int | None = os.open(self._grow_lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            fd = None  # a read-only directory: growth is then only serialised in-process
        try:
            with exclusive(fd) if fd is not None else contextlib.nullcontext(), self._gated():
                self._grow_locked(env)
        except lmdb.Error as exc:
            raise StorageFullError(
                f"cannot grow the map of the LMDB store at {self.path}: {exc}",
                backend="lmdb",
                path=self.path,
            ) from exc
        finally:
            if fd is not None:
                os.close(fd)

    def _grow_locked(self, env: Any) -> None:
        """The growth itself: the grow lock is held and the gate is shut."""
        old = env.info()["map_size"]
        # Another process may have grown it already: adopt the recorded size first.
        # (The recorded size only changes at a commit, so it may also be smaller
        # than ours: a grown but not yet committed map.)
        env.set_mapsize(0)
        if env.info()["map_size"] > old:
            return
        if self.config.lock and env.reader_check() > 0:
            # A read transaction of a killed process (a `verify` stopped by a timeout)
            # pinned the pages every later commit freed: only an open ran this check,
            # so a long-lived writer grew its map up to max_map_size and was then
            # refused (finding). The pages it frees are reusable from the next write
            # transaction on (liblmdb looks for the oldest reader when it allocates):
            # the caller retries in a new one before growing. Growth is rare, and the
            # check a scan of the reader table.
            env.set_mapsize(old)
            return
        limit = self.config.max_map_size or _ADDRESS_LIMIT
        if old >= limit:
            env.set_mapsize(old)
            raise StorageFullError(
                f"the LMDB store at {self.path} is full: its map reached "
                f"max_map_size ({limit} bytes)" + self._pinned_by_readers(env),
                backend="lmdb",
                path=self.path,
            )
        page = 1 << 20
        env.set_mapsize(min(limit, -(-int(old * self.config.growth_factor) // page) * page))

    def _pinned_by_readers(self, env: Any) -> str:
        """The end of a "map reached max_map_size" message: what to do, naming open read
        transactions as a likely cause when there are any (liblmdb cannot reuse a page
        freed after the oldest of them began, so the file grows meanwhile)."""
        try:
            table = env.readers()
        except lmdb.Error:  # pragma: no cover - best effort, the message only
            table = ""
        # Rows: "pid thread txnid"; a txnid of "-" is a slot kept for reuse, no snapshot.
        rows = [line.split() for line in table.splitlines()[1:]]
        reading = sorted({r[0] for r in rows if len(r) == 3 and r[2] != "-"})
        if not reading:
            return "; raise max_map_size"
        return (
            f". {len(reading)} process(es) hold read transactions open now "
            f"(pid {', '.join(reading)}): pages freed since the oldest of them began "
            "cannot be reused, so the file grows while a long read (a scan, an export, "
            "`aurora-storage verify`, a copy) runs beside a writer. Let them finish, "
            "or stop them, then write again (slots of killed processes are cleared "
            "before this error is raised); raise max_map_size if the live data needs "
            "the room"
        )

    def _write_txn(
        self,
        fn: Callable[[Any], T],
        first: Exception | None = None,
        *,
        changes: Callable[[T], Sequence[tuple[bytes, bytes | None]] | None] | None = None,
    ) -> T:
        """Run ``fn(txn)`` in one write transaction, retrying the whole unit after the
        map grows (or adopting another process's growth). Takes the write lock.
        ``changes(result)`` names the changes the transaction made (for the change log,
        written in the same transaction, and the in-process feed, recorded after the
        commit, still under the lock: in commit order)."""
        tries = _Tries(self._remaps)
        with self._wlock:
            if self._dead:
                self._check()
            if self._next_reader_check <= time.monotonic():
                self._clear_dead_readers()
            if first is not None:
                self._recover(first, tries, writing=True)
            while True:
                try:
                    txn = self._begin(write=True)
                    try:
                        result = fn(txn)
                        made = changes(result) if changes is not None else None
                        if made:
                            if self._log is not None:
                                self._log.write(txn, made)
                            tid = txn.id()
                    except BaseException:
                        self._abort_write(txn)
                        raise
                    txn.commit()  # a failed commit aborts inside LMDB (no wait)
                    if made:
                        self._committed(tid, made)
                    return result
                except lmdb.Error as exc:
                    self._recover(exc, tries, writing=True)

    def _clear_dead_readers(self) -> None:
        """Clear the reader slots of dead processes, at most once a second (the caller
        holds the write lock). A table full of the slots of killed processes otherwise
        kept every new process out for as long as one process had the store open
        (finding): a new process cannot clear them (py-lmdb's open needs a free slot
        before it returns the environment), and the live ones never find the table full
        (each reuses its own cached slot). A write transaction costs far more than this
        test of the clock, and the scan of the table runs once a second at most."""
        self._next_reader_check = time.monotonic() + 1.0
        if self.config.lock:
            with contextlib.suppress(lmdb.Error):  # best effort: the write goes on
                self._env.reader_check()

    @contextlib.contextmanager
    def _gated(self) -> Iterator[None]:
        """Shut the gate: calls of other threads of this process wait at their entry
        (in _check()) until the block ends. The caller holds the write lock."""
        with self._gate:
            self._gate_shut = True
            self._dead = True
            self._remaps += 1
        try:
            yield
        finally:
            with self._gate:
                self._gate_shut = False
                self._dead = self._closed or self._forked
                self._gate.notify_all()

    def _abort_write(self, txn: Any) -> None:
        """Abort a write transaction behind the gate: py-lmdb's abort waits until no
        thread is inside an LMDB call, which readers in a loop would otherwise never
        let happen (finding: one put_many blocked 16.9 s)."""
        with self._gated():
            txn.abort()

    def _env_read(self, fn: Callable[[Any], T]) -> T:
        """``fn(env)`` for a read of the environment outside a transaction (``info()``,
        ``stat()``), through the growth gate and retried as :meth:`_read_txn` retries:
        it races a resize of the map by another thread like a read transaction does
        (finding: a watch leaked ``mdb_env_info: Invalid argument``)."""
        tries = _Tries(self._remaps)
        while True:
            if self._dead:
                self._check()
            try:
                return fn(self._env)
            except lmdb.Error as exc:
                self._recover(exc, tries, writing=False)

    def _read_txn(self, fn: Callable[[Any], T], first: Exception | None = None) -> T:
        """Run ``fn(txn)`` in one read transaction, retrying transient failures."""
        tries = _Tries(self._remaps)
        if first is not None:
            self._recover(first, tries, writing=False)
        while True:
            if self._dead:
                self._check()
            try:
                with self._begin() as txn:
                    return fn(txn)
            except lmdb.Error as exc:
                self._recover(exc, tries, writing=False)
