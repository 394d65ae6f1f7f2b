"""The LMDB backend: py-lmdb behind the small bytes-level Backend interface.

Design choices (each is a reason, see docs/backends/lmdb.md for the user's view):

* One environment, the main DB only (``max_dbs=0``): keys already carry their tenant
  prefix, so named DBs would add nothing but a fixed limit.
* The on-disk format is pinned (``lib_version=0``: LMDB 0.9, data format v1) so an
  environment variable cannot switch new stores to another format.
* LMDB keeps no checksums, so each value is stored in a CRC envelope (see
  :mod:`._envelope`): a flipped byte in the value *or the key* raises CorruptionError
  instead of returning wrong data. The core's metadata record goes through the same
  envelope.
* Point reads are one short read transaction on the caller's thread (no thread hop).
  A read that finds nothing checks the envelopes of the records around the key (see
  ``_near``): a damaged key that keeps the order is one of them, and a miss must not
  hide it. Hits pay nothing for it.
* Values over LMDB's record size (:data:`MAX_VALUE_SIZE`) are refused before the
  engine, as values (its own refusal cannot tell a value from a key).
* A write transaction is bound to the OS thread that began it, so every write begins
  and commits inside one call, under a process lock. The lock also guarantees that no
  write transaction of this process is open while the map grows.
* Scans read chunks in short read transactions and re-seek after the last key, so a
  caller pausing mid-scan pins no pages and close() is always safe.

The plugin's other modules: ``_env`` (opening the environment, its state, its
transactions and their retries), ``_config`` (options), ``_envelope`` (the value envelope),
``_format`` (the data file's format and structure checks), ``_disk`` (the files around
the engine), ``_errors`` (engine errors translated), ``_eventstore`` (conditional
commits, change log), ``_repository`` (the repository class) and ``_plugin`` (the entry
point).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice, tee
from operator import itemgetter
from typing import Any, TypeVar

import lmdb

from aurora_storage import MAX_KEY_SIZE, _fork
from aurora_storage._stores import (
    MARKER_NAME,
    config_signature,
    open_stores,
)
from aurora_storage.backend import (
    MAX_REPORTED_PROBLEMS,
    Append,
    Backend,
    Capabilities,
    ChangeFeed,
    Chunk,
    Condition,
    Op,
    RecentChanges,
    RecordCheck,
    VerifyProblem,
    VerifyReport,
    chunk_items,
    chunk_keys,
)
from aurora_storage.config import URL
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    StorageError,
    StorageFullError,
)

from . import _eventstore
from ._config import LMDBConfig
from ._disk import (
    Created,
    OpenRecord,
)
from ._env import Environment
from ._envelope import (
    CRC_ENVELOPES,
    ENVELOPE_VERSION,
    INTACT,
    KEYED_ENVELOPES,
    PLUGIN_META_KEY,
    RESIDUE,
    SEEDS,
    TRAILERS,
    envelope_of_plugin_record,
    new_plugin_record,
    unwrap,
)
from ._envelope import crc as _crc
from ._envelope import pack as _pack
from ._envelope import xxh32 as _x32
from ._envelope import xxh32_digest as _x32d
from ._errors import MAX_RECORD_SIZE, value_too_large
from ._format import LMDB_DATA_VERSION, free_list_only, structure_problems

__all__ = ["LMDBBackend"]

T = TypeVar("T")

# put_many values are wrapped this many at a time (see write_iter).
_WRAP_SLICE = 1024
_first = itemgetter(0)
_second = itemgetter(1)
_payload = itemgetter(slice(None, -4))
_trailer = itemgetter(slice(-4, None))
_RETRIES = 64
# Maps beyond this are pointless on today's 64-bit systems (47-bit address space).
_ADDRESS_LIMIT = 1 << 46
#: The largest value a store takes (bytes): LMDB's record limit less the 4-byte
#: envelope and what a change-log record adds to the value (a tag byte, the key's 2-byte
#: length and the key). Larger values raise ValueTooLargeError before the engine sees
#: them (LMDB's own refusal, MDB_BAD_VALSIZE, cannot tell a value from a key). Read
#: when a store is opened.
MAX_VALUE_SIZE = MAX_RECORD_SIZE - 4 - 3 - MAX_KEY_SIZE
# Options that matter only while opening: two opens of one store may differ in them.
_OPEN_ONLY_OPTIONS = ("create", "verify")


class LMDBBackend(Environment, Backend):
    """A py-lmdb environment as an aurora-storage backend (see the module docstring).

    Build it with :meth:`from_url` or ``LMDBBackend(LMDBConfig(path=...))``; users
    normally go through :func:`aurora_storage.open` or :class:`LMDBRepository`.

    Raises (at construction):
        ConfigurationError: missing store with ``create=false``/``read_only``, or a store
            written by another LMDB data format or another envelope version.
        CorruptionError: the data file is truncated or not an LMDB file.
        StoreLockedError: the environment is already open in this process.
        InterruptedRestoreError: no store at the path, and a restore left
            ``<path>.replaced`` or ``<path>.restoring`` beside it (nothing created).
    """

    scheme = "lmdb"
    # write_iter wraps each value in a new exact-size envelope as it arrives.
    streams_writes = True

    def __init__(self, config: LMDBConfig) -> None:
        super().__init__()
        self.config = config
        self.path = os.path.abspath(config.path)
        self.capabilities = Capabilities(
            persistent=True,
            multi_process=True,
            thread_safe=True,
            blocking_writes=config.sync,
            read_only=config.read_only,
            # One write transaction each, across processes (see _eventstore). Read-only,
            # versions and sequence numbers are still read (writes raise ReadOnlyError);
            # its change feed is the store's change log (an in-process feed would never
            # see a change): open_change_log declares it.
            conditional_writes=True,
            sequences=True,
            change_feed=not config.read_only,
        )
        self._wlock = threading.Lock()
        # The in-process change feed, created by the first watch(), or the store's change
        # log (change_log=true); writes record changes while either exists.
        self._feed: RecentChanges | None = None
        self._log: _eventstore.StoreChangeLog | None = None
        self._recording = False
        self._closed = False
        self._forked = False
        # One flag the hot paths test: closed, inherited across fork(), or the writer's
        # gate is shut (see _gated); _check() sorts out which.
        self._dead = False
        # The writer-preferring gate: while a writer of this process aborts a write
        # transaction or remaps the map, py-lmdb waits until no thread is inside an
        # LMDB call. Readers looping on get() would starve it (a moment with none of
        # them inside may never come), so new calls wait at the gate instead.
        self._gate = threading.Condition(threading.Lock())
        self._gate_shut = False
        # The envelope of this store (decided by its plugin record) and its CRC seed.
        self._envelope = ENVELOPE_VERSION
        self._kseed: Callable[[bytes], int] = SEEDS[ENVELOPE_VERSION]
        # The checksum after each value: trailer(value, kseed(key)). The hot paths
        # branch on _xx (envelope v3, xxHash32) to keep v1/v2's CRC checks inline.
        self._trailer: Callable[[bytes, int], bytes] = TRAILERS[ENVELOPE_VERSION]
        self._xx = ENVELOPE_VERSION not in CRC_ENVELOPES
        # Whether the checksum covers the key (not in envelope v1): misses check the
        # records next to them (see _near).
        self._keyed = ENVELOPE_VERSION in KEYED_ENVELOPES
        self._pid = os.getpid()
        self._chunk = config.scan_chunk
        self._max_value = MAX_VALUE_SIZE
        self._data_file = os.path.join(self.path, "data.mdb") if config.subdir else self.path
        self._grow_lock_file = (
            os.path.join(self.path, "aurora-grow.lock") if config.subdir else self.path + "-grow"
        )
        self._lock_file = (
            os.path.join(self.path, "lock.mdb") if config.subdir else self.path + "-lock"
        )
        # Serialises the creation of the store across processes (see _disk.CreationLock):
        # beside the other coordination files, never in a directory above the store
        # (which this process may not be allowed to write).
        self._create_lock_file = (
            os.path.join(self.path, "aurora-create.lock")
            if config.subdir
            else self.path + "-create"
        )
        self._creation = None
        # Who has the store open and whether it was closed cleanly (see _disk.OpenRecord);
        # the growth lock doubles as the store's coordination lock.
        self._record = OpenRecord(
            os.path.join(self.path, "aurora-open.lock") if config.subdir else self.path + "-open",
            self._grow_lock_file,
            self._data_file,
            read_only=config.read_only,
            lock_file=self._lock_file if config.lock else None,
        )
        self._created = Created()
        self._verified_at_open = False
        # The core writes this marker once the store is initialised, and reports a store
        # whose marker exists but whose metadata record is gone as damaged.
        self.marker_path = (
            os.path.join(self.path, MARKER_NAME) if config.subdir else f"{self.path}-{MARKER_NAME}"
        )
        try:
            self._env = self._open_env()
            self._begin = self._env.begin
            _fork.guard(self)
            self._check_plugin_meta()
            _eventstore.open_change_log(self)
        except BaseException:
            self._abandon()
            raise
        finally:
            # The engine store is made (or what this open made is removed again): the
            # next process to create or open it may go on.
            self._creation_done()

    @classmethod
    def from_url(cls, url: URL, options: Mapping[str, Any]) -> LMDBBackend:
        """Open from ``lmdb:///abs/path?...`` (or ``lmdb:relative/path``); see
        :meth:`open`."""
        return cls.open(LMDBConfig.from_url(url, options))

    @classmethod
    def open(cls, config: LMDBConfig) -> LMDBBackend:
        """Open (or create) the store ``config`` describes, or share the handle already
        open on it in this process.

        A store has one live handle per process, whatever the spelling of its path
        (symlinks, ``..``, relative or absolute: the directory's device and inode decide,
        see :data:`aurora_storage.backend.open_stores`): a second open returns the same
        backend with one more user, and :meth:`close` closes the environment when its
        last user closes. LMDB itself refuses a second environment on one store in a
        process (its locks are per process).

        Raises:
            ConfigurationError: the store is already open in this process with other
                options (named in the message); and everything the constructor raises.
        """
        return open_stores.acquire(
            config.path,
            config_signature(config, ignore=_OPEN_ONLY_OPTIONS),
            lambda: cls(config),
            backend="lmdb",
        )

    # ------------------------------------------------------------------ opening

    def verify(self, *, check: RecordCheck | None = None) -> VerifyReport:
        """See :meth:`Backend.verify`. First LMDB's structural verifier walks every
        page of the data file (a read transaction is held meanwhile, so the pages it
        walks cannot be reused by writers); only a sound structure is then read
        through the engine (a damaged page could abort the process in an engine
        assertion), checking every record's envelope (key and value) and ``check``.
        Costs about 20 s per GiB for the walk plus the read (see
        benchmarks/lmdb_verify_cost.py)."""
        problems = self._structure_problems("verify")
        structural = tuple(
            VerifyProblem(f"{self._data_file}: {p}", path=self._data_file)
            for p in problems[:MAX_REPORTED_PROBLEMS]
        )
        if problems and not free_list_only(problems):
            # The records' own trees are damaged: reading them through the engine
            # could abort the process, so they are not read (how many, unknown).
            return VerifyReport(
                records=0,
                problems=structural,
                problem_count=len(problems),
                structure_checked=True,
                unchecked=None,
            )
        # Sound, or damaged only in the free list, which readers never consult: every
        # record is read and checked as usual (a writer would allocate from the
        # damaged free list, hence the store stays reported DAMAGED).
        report = super().verify(check=check)
        return VerifyReport(
            records=report.records,
            problems=(structural + report.problems)[:MAX_REPORTED_PROBLEMS],
            problem_count=len(problems) + report.problem_count,
            structure_checked=True,
            unchecked=report.unchecked,
        )

    def _structure_problems(self, op: str) -> list[str]:
        """:func:`structure_problems` of the data file, walked while a read
        transaction is held (so the pages it walks cannot be reused by writers)."""
        if self._dead:
            self._check()
        try:
            pin = self._begin()
        except lmdb.Error as exc:
            raise self._translate(exc, op) from exc
        try:
            problems = structure_problems(self.path, self.config.subdir)
            if problems:
                # A commit of another process racing the walk (the meta page it
                # read being rewritten) can look like damage: confirm once.
                problems = structure_problems(self.path, self.config.subdir)
        finally:
            pin.abort()
        return problems

    def salvage_check(self) -> list[str]:
        """The structural damage a salvage (``export --salvage``) reads past: the
        problems :func:`structure_problems` finds when they lie only in the free list
        (readers never consult it, so every record still reads), else none.

        Returns:
            The problems (to be named as skipped damage); empty for a sound file.

        Raises:
            CorruptionError: the records' own trees are damaged: reading them through
                the engine could abort the process, so the salvage is refused, naming
                the damage (restore a backup).
        """
        problems = self._structure_problems("export --salvage")
        if problems and not free_list_only(problems):
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise CorruptionError(
                f"{self._data_file} failed verification: {shown}{more}; the damage lies "
                "in the pages that hold the records, which liblmdb cannot read past "
                "safely (it may abort the process), so nothing can be salvaged through "
                "it: restore the store from a backup",
                backend="lmdb",
                path=self.path,
            )
        return [f"{self._data_file}: {p}" for p in problems]

    def _check_plugin_meta(self) -> None:
        """Read the plugin's record: it decides the store's envelope version (the
        record is itself wrapped in that envelope), or write it for a new store."""
        raw: bytes | None = self._read_txn(lambda txn: txn.get(PLUGIN_META_KEY))
        if raw is None:
            if self.config.read_only:
                return
            raw = self._write_txn(self._write_plugin_meta)
            if raw is None:
                return
        self._envelope = envelope_of_plugin_record(raw, self.path)
        self._kseed = SEEDS[self._envelope]
        self._trailer = TRAILERS[self._envelope]
        self._xx = self._envelope not in CRC_ENVELOPES
        self._keyed = self._envelope in KEYED_ENVELOPES

    def _write_plugin_meta(self, txn: Any) -> bytes | None:
        """The write transaction that settles a new store's shape: its plugin record
        and, with ``change_log=true``, its change log - together, so the first opener
        to commit decides for every process (an opener that finds the plugin record
        finds the change-log choice made with it). Returns the record another opener
        wrote first, if one did (``None``: this one wrote it)."""
        raw: bytes | None = txn.get(PLUGIN_META_KEY)
        if raw is not None:
            return raw
        txn.put(PLUGIN_META_KEY, self._wrap(PLUGIN_META_KEY, new_plugin_record(LMDB_DATA_VERSION)))
        if self.config.change_log:
            _eventstore.start_change_log(self, txn)
        return None

    # ------------------------------------------------------------------ envelope

    def _wrap(self, key: bytes, value: bytes) -> bytes:
        """The stored form of ``value`` at ``key``: the value, then the CRC32 of the
        store's envelope (little endian). put() and write_iter() build it inline."""
        return value + self._trailer(value, self._kseed(key))

    def _unwrap(self, key: bytes, raw: bytes) -> bytes:
        """The value inside the stored bytes ``raw`` at ``key``; CorruptionError if its
        checksum fails (see :func:`._envelope.unwrap`)."""
        return unwrap(raw, self._kseed(key), self._envelope, key=key, path=self.path)

    # ------------------------------------------------------------------ point ops

    def get(self, key: bytes) -> bytes | None:
        """See :meth:`Backend.get`: one short read transaction, on this thread."""
        if self._dead:
            self._check()
        txn = None
        try:
            # Explicit begin/abort: cheaper than the context manager on this hot path.
            txn = self._begin()
            raw: bytes | None = txn.get(key)
            if raw is None:
                # A miss: is a record next to it damaged (its key, say)? See _near.
                bad = self._near(txn, key)
                txn.abort()
                if bad is not None:
                    raise self._near_error(key, bad)
                return None
            txn.abort()
        except lmdb.Error as exc:
            if txn is not None:
                txn.abort()
            raw = self._get_slow(key, exc)
            if raw is None:
                return None
        if self._xx:
            payload: bytes = raw[:-4]
            if _x32d(payload, _x32(key)) != raw[-4:]:
                return self._unwrap(key, raw)  # raises CorruptionError
            return payload
        if _crc(raw, self._kseed(key)) != RESIDUE or len(raw) < 4:
            return self._unwrap(key, raw)
        return raw[:-4]

    def contains(self, key: bytes) -> bool:
        """See :meth:`Backend.contains`: presence only, so a found value's checksum is
        not checked (nothing is returned that could be wrong); a miss is checked like
        :meth:`get`'s (see :meth:`_near`). One cursor seek answers both: a hit copies
        no value, and a miss is already placed on the record after the key."""
        if self._dead:
            self._check()
        txn = None
        try:
            # Inlined like get() (a hot path too).
            txn = self._begin()
            cur = txn.cursor()
            found = cur.set_range(key)
            if found and cur.key() == key:
                txn.abort()
                return True
            bad = self._beside(cur, key, found) if self._keyed else None
            txn.abort()
        except lmdb.Error as exc:
            if txn is not None:
                txn.abort()
            return self._get_slow(key, exc) is not None
        if bad is not None:
            raise self._near_error(key, bad)
        return False

    def _get_slow(self, key: bytes, exc: Exception) -> bytes | None:
        raw: bytes | None = self._read_txn(lambda txn: self._lookup(txn, key), exc)
        return raw

    def _lookup(self, txn: Any, key: bytes) -> bytes | None:
        """The stored bytes at ``key`` in ``txn``, or ``None`` if the key is absent and
        no record next to it is damaged (else CorruptionError, see :meth:`_near`)."""
        raw: bytes | None = txn.get(key)
        if raw is None:
            bad = self._near(txn, key)
            if bad is not None:
                raise self._near_error(key, bad)
        return raw

    def _near(self, txn: Any, key: bytes) -> tuple[bytes, bytes] | None:
        """After a lookup of ``key`` in ``txn`` found nothing: a damaged record that may
        be the one stored under ``key``, as ``(stored key, stored bytes)``; ``None``
        when ``key`` is absent for sure.

        A damaged key that keeps the keys in order passes LMDB's structural check, and
        a lookup of the record's original key then finds nothing. The damaged key lies
        between the original key's neighbours, so it is the first stored key after
        ``key`` or the last one before it: one cursor seek (a B-tree descent, like the
        lookup) and one step check the envelopes of both, which cover the key. A
        cursor that finds ``key`` itself is returned too: the lookup missed a stored
        record (a damaged branch page). Envelope v1 covers the value only, so a
        damaged key cannot be told there: ``None``."""
        if not self._keyed:
            return None
        cur = txn.cursor()
        return self._beside(cur, key, cur.set_range(key))

    def _beside(self, cur: Any, key: bytes, found: bool) -> tuple[bytes, bytes] | None:
        """:meth:`_near` from the cursor ``cur`` just placed with ``set_range(key)``
        (``found``: whether it found a key at or after ``key``). The checks are
        inlined: every miss pays them."""
        xx = self._xx
        if found:
            k, raw = cur.item()
            if (
                k == key
                or len(raw) < 4
                or (
                    _x32d(raw[:-4], _x32(k)) != raw[-4:]
                    if xx
                    else _crc(raw, self._kseed(k)) != RESIDUE
                )
            ):
                return k, raw
            if not cur.prev():
                return None
        elif not cur.last():
            return None
        k, raw = cur.item()
        if len(raw) < 4 or (
            _x32d(raw[:-4], _x32(k)) != raw[-4:] if xx else _crc(raw, self._kseed(k)) != RESIDUE
        ):
            return k, raw
        return None

    def _damaged(self, key: bytes, raw: bytes) -> bool:
        """Whether the stored bytes ``raw`` fail their checksum at ``key``."""
        if len(raw) < 4:
            return True
        if self._xx:
            return _x32d(raw[:-4], _x32(key)) != raw[-4:]
        return _crc(raw, self._kseed(key)) != RESIDUE

    def _near_error(self, key: bytes, bad: tuple[bytes, bytes]) -> CorruptionError:
        """The CorruptionError of a lookup of ``key`` that found nothing next to the
        damaged record ``bad`` (see :meth:`_near`)."""
        stored, raw = bad
        if stored == key:
            what = (
                f"a lookup of key {key!r} in the LMDB store at {self.path} found nothing "
                "where a cursor finds the record: a branch page of the data file is "
                "damaged"
            )
        else:
            if not self._damaged(key, raw):
                # Its checksum holds under the wanted key: it is that record.
                whose = f"it is the record of key {key!r} with its key damaged"
            else:
                whose = f"the record of key {key!r}, not found, may be that one"
            what = (
                f"the record stored at key {stored!r} in the LMDB store at {self.path} "
                f"fails its checksum (its key or value is damaged); {whose}: the data "
                "file is damaged"
            )
        return CorruptionError(
            f"{what}. Restore it from a backup", backend="lmdb", path=self.path, stored_key=stored
        )

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """See :meth:`Backend.get_many`: all keys in one read transaction."""
        if self._dead:
            self._check()
        unwrap = self._unwrap
        lookup = self._lookup

        def work(txn: Any) -> list[bytes | None]:
            get = txn.get
            return [lookup(txn, k) if (raw := get(k)) is None else unwrap(k, raw) for k in keys]

        return self._read_txn(work)

    def put(self, key: bytes, value: bytes) -> None:
        """See :meth:`Backend.put`: one write transaction (durable per ``sync``)."""
        if self._dead:
            self._check()
        if len(value) > self._max_value:
            raise value_too_large(key, len(value), self._max_value, self.path)
        if self._xx:
            data = value + _x32d(value, _x32(key))
        else:
            data = value + _pack(_crc(value, self._kseed(key)))
        with self._wlock:
            if self._next_reader_check <= time.monotonic():
                self._clear_dead_readers()  # once a second (see there)
            try:
                txn = self._begin(write=True)
            except lmdb.Error as exc:
                first: Exception = exc
            else:
                try:
                    txn.put(key, data)
                    if self._recording:
                        if self._log is not None:
                            self._log.write(txn, ((key, value),))
                        tid = txn.id()
                except lmdb.Error as exc:
                    self._abort_write(txn)
                    first = exc
                else:
                    try:
                        txn.commit()
                    except lmdb.Error as exc:
                        first = exc
                    else:
                        if self._recording:
                            self._committed(tid, ((key, value),))
                        return
        self._put_slow(key, data, first)

    def _put_slow(self, key: bytes, data: bytes, exc: Exception) -> None:
        self._write_txn(
            lambda txn: txn.put(key, data), exc, changes=self._recorder(((key, data[:-4]),))
        )

    def _recorder(
        self, changes: Sequence[tuple[bytes, bytes | None]]
    ) -> Callable[[Any], Sequence[tuple[bytes, bytes | None]] | None] | None:
        """A ``changes`` provider for :meth:`_write_txn`: ``changes`` if the write took
        effect (a result other than ``False``); ``None`` while nothing records."""
        if not self._recording:
            return None
        return lambda result: None if result is False else changes

    def _committed(self, tid: int, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        # Under the write lock, right after the commit of transaction ``tid``.
        if self._feed is not None:
            self._feed.record(tid, changes)
        if self._log is not None:
            self._log.notify()

    def insert(self, key: bytes, value: bytes) -> bool:
        """See :meth:`Backend.insert`: LMDB's native create-only put, so it is atomic
        across processes too."""
        if self._dead:
            self._check()
        if len(value) > self._max_value:
            raise value_too_large(key, len(value), self._max_value, self.path)
        data = self._wrap(key, value)
        return bool(
            self._write_txn(
                lambda txn: self._create(txn, key, data),
                changes=self._recorder(((key, value),)),
            )
        )

    def _create(self, txn: Any, key: bytes, data: bytes) -> bool:
        """Put ``data`` at ``key`` in the write transaction ``txn`` if the key is absent
        (LMDB's no-overwrite put); return whether it was stored. The records around an
        absent key are checked first (:meth:`_gap`): a damaged one may be the key's own
        record, and CorruptionError is raised instead of creating the key again beside
        it."""
        if self._gap(txn, key) is None:
            return False
        return bool(txn.put(key, data, overwrite=False))

    def _gap(self, txn: Any, key: bytes) -> tuple[bytes | None, bytes | None] | None:
        """For a key the write transaction ``txn`` is about to create: ``None`` if it
        is stored; else the stored keys before and after it (``None``: none on that
        side), once their envelopes pass (CorruptionError if one fails: it may be this
        key's record, see :meth:`_near`). No record lies between the two: a batch that
        creates several keys in one gap (an aggregate's events) checks it once."""
        cur = txn.cursor()
        keyed, xx = self._keyed, self._xx
        after = before = None
        if cur.set_range(key):
            after, raw = cur.item()
            if after == key:
                return None
            if keyed and (
                len(raw) < 4
                or (
                    _x32d(raw[:-4], _x32(after)) != raw[-4:]
                    if xx
                    else _crc(raw, self._kseed(after)) != RESIDUE
                )
            ):
                raise self._near_error(key, (after, raw))
            found = cur.prev()
        else:
            found = cur.last()
        if found:
            before, raw = cur.item()
            if keyed and (
                len(raw) < 4
                or (
                    _x32d(raw[:-4], _x32(before)) != raw[-4:]
                    if xx
                    else _crc(raw, self._kseed(before)) != RESIDUE
                )
            ):
                raise self._near_error(key, (before, raw))
        return before, after

    def delete(self, key: bytes) -> bool:
        """See :meth:`Backend.delete`."""
        if self._dead:
            self._check()
        return bool(
            self._write_txn(lambda txn: txn.delete(key), changes=self._recorder(((key, None),)))
        )

    def write(self, ops: Sequence[Op]) -> None:
        """See :meth:`Backend.write`: every operation in one write transaction.

        A batch of up to ``_WRAP_SLICE`` operations while nothing records changes (the
        common small batch: a tiered write, an event) is written inline like
        :meth:`put`, without write_iter's slicing and the retry loop's frames; a failure
        there (a full map ...) and everything else go through :meth:`write_iter`, which
        recovers and retries."""
        if self._dead:
            self._check()
        if len(ops) > _WRAP_SLICE:
            self.write_iter(ops)
            return
        self._check_sizes(ops)
        kseed = self._kseed
        if self._xx:
            puts = [(k, None if v is None else v + _x32d(v, _x32(k))) for k, v in ops]
        else:
            puts = [(k, None if v is None else v + _pack(_crc(v, kseed(k)))) for k, v in ops]
        if not puts:
            return
        with self._wlock:
            if self._next_reader_check <= time.monotonic():
                self._clear_dead_readers()  # once a second (see there)
            if not self._recording:
                try:
                    txn = self._begin(write=True)
                except lmdb.Error:
                    pass  # the general path below retries (and recovers) it
                else:
                    try:
                        put, delete = txn.put, txn.delete
                        for k, v in puts:
                            if v is None:
                                delete(k)
                            else:
                                put(k, v)
                    except BaseException as exc:
                        self._abort_write(txn)
                        if not isinstance(exc, lmdb.Error):
                            raise
                    else:
                        try:
                            txn.commit()  # a failed commit aborts inside LMDB
                        except lmdb.Error:
                            pass
                        else:
                            return
        self.write_iter(ops)

    def write_iter(self, ops: Iterable[Op]) -> int:
        """See :meth:`Backend.write_iter`: ``ops`` is read in slices whose values are
        wrapped in their CRC envelopes (exact-size copies) at once, so the caller's
        encoded values are never held in bulk; then one write transaction."""
        if self._dead:
            self._check()
        it = iter(ops)
        puts: list[tuple[bytes, bytes | None]] = []
        only_puts = True
        while part := list(islice(it, _WRAP_SLICE)):
            self._check_sizes(part)
            keys = list(map(_first, part))
            vals = list(map(_second, part))
            wrapped: list[bytes | None]
            try:
                # All puts (the usual case): envelopes built with C-level maps.
                seeds = map(self._kseed, keys)
                if self._xx:
                    wrapped = list(map(bytes.__add__, vals, map(_x32d, vals, seeds)))
                else:
                    sums = map(_pack, map(_crc, vals, seeds))
                    wrapped = list(map(bytes.__add__, vals, sums))
            except TypeError:  # a delete (None) among the operations
                wrap = self._wrap
                wrapped = [
                    None if v is None else wrap(k, v) for k, v in zip(keys, vals, strict=True)
                ]
                only_puts = False
            puts += zip(keys, wrapped, strict=True)
        if not puts:
            return 0
        if only_puts:

            def put_all(txn: Any) -> None:
                consumed, _ = txn.cursor().putmulti(puts)
                if consumed != len(puts):  # py-lmdb#140: never let a short write pass
                    raise StorageError(
                        f"LMDB stored {consumed} of {len(puts)} records of a batch; "
                        "the batch was rolled back",
                        backend="lmdb",
                        path=self.path,
                    )

            self._write_txn(
                put_all,
                changes=self._recorder([(k, v[:-4]) for k, v in puts if v is not None])
                if self._recording
                else None,
            )
            return len(puts)

        changes: list[tuple[bytes, bytes | None]] = []

        def apply(txn: Any) -> None:
            put, delete = txn.put, txn.delete
            changes.clear()
            for k, v in puts:
                if v is None:
                    if delete(k):
                        changes.append((k, None))
                else:
                    put(k, v)
                    changes.append((k, v[:-4]))

        self._write_txn(apply, changes=self._recorder(changes))
        return len(puts)

    def write_puts(self, keys: Sequence[bytes], values: Iterable[bytes]) -> int:
        """See :meth:`Backend.write_puts`: each value is wrapped in its envelope as it is
        produced (C-level maps; the codec's buffer is dropped at once, never held in
        bulk), then one write transaction stores them all with ``putmulti``."""
        if self._dead:
            self._check()
        wrapped = self._wrap_all(keys, values)
        limit = self._max_value
        if wrapped and max(map(len, wrapped)) > limit + 4:
            # Checked once wrapped (the values stream in): still before the engine.
            for k, v in zip(keys, wrapped, strict=True):
                if len(v) > limit + 4:
                    raise value_too_large(k, len(v) - 4, limit, self.path)
        n = len(keys)
        # ``keys`` and ``wrapped`` are lists: the transaction is rerun whole after the
        # map grows.

        def put_all(txn: Any) -> None:
            consumed, _ = txn.cursor().putmulti(zip(keys, wrapped, strict=True))
            if consumed != n:  # py-lmdb#140: never let a short write pass
                raise StorageError(
                    f"LMDB stored {consumed} of {n} records of a batch; the batch was rolled back",
                    backend="lmdb",
                    path=self.path,
                )

        self._write_txn(
            put_all,
            changes=self._recorder([(k, v[:-4]) for k, v in zip(keys, wrapped, strict=True)])
            if self._recording
            else None,
        )
        return n

    def _wrap_all(self, keys: Sequence[bytes], values: Iterable[bytes]) -> list[bytes]:
        """The stored forms of ``values`` at ``keys``, each wrapped as it is produced:
        ``tee`` hands each value to the checksum and to the concatenation with a lag of
        one item (``islice``: never more than ``len(keys)`` values are asked for)."""
        for_data, for_sum = tee(islice(values, len(keys)))
        seeds = map(self._kseed, keys)
        if self._xx:
            return list(map(bytes.__add__, for_data, map(_x32d, for_sum, seeds)))
        return list(map(bytes.__add__, for_data, map(_pack, map(_crc, for_sum, seeds))))

    def _check_sizes(self, ops: Iterable[Op]) -> None:
        """Refuse the first value of ``ops`` over :data:`MAX_VALUE_SIZE` (nothing is
        written): a C-level pass over the sizes, a Python one only to name it."""
        limit = self._max_value
        sizes = list(map(len, filter(None, map(_second, ops))))
        if sizes and max(sizes) > limit:
            for k, v in ops:
                if v is not None and len(v) > limit:
                    raise value_too_large(k, len(v), limit, self.path)

    def delete_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.delete_range`: cursor deletes, in bounded transactions
        (one huge transaction could exceed LMDB's dirty-page limit)."""
        if self._dead:
            self._check()
        total = 0
        deleted: list[tuple[bytes, bytes | None]] = []
        recording = self._recording
        while True:

            def work(txn: Any) -> int:
                cur = txn.cursor()
                n = 0
                deleted.clear()
                if not cur.set_range(start):
                    return 0
                while n < 50_000:
                    k = cur.key()
                    if k >= stop:
                        break
                    if recording:
                        deleted.append((k, None))
                    cur.delete()
                    n += 1
                    if not cur.key():
                        break
                return n

            n: int = self._write_txn(work, changes=self._recorder(deleted))
            total += n
            if n < 50_000:
                return total

    # ------------------------------------------------------------------ event store

    def commit(
        self,
        ops: Sequence[Op],
        *,
        conditions: Sequence[Condition] = (),
        appends: Sequence[Append] = (),
    ) -> list[int]:
        """See :meth:`Backend.commit`: one write transaction, so atomic across threads
        and processes (see :mod:`aurora_storage_lmdb._eventstore`)."""
        return _eventstore.commit(self, ops, conditions, appends)

    def change_feed(self) -> ChangeFeed:
        """See :meth:`Backend.change_feed`: in-process, recording from the first call."""
        if self._dead:
            self._check()  # closed, or inherited through fork(): refused
        if self._log is not None:
            return self._log
        feed = self._feed
        return feed if feed is not None else _eventstore.start_feed(self)

    # ------------------------------------------------------------------ scans

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """See :meth:`Backend.scan`: chunks read in short read transactions with a
        re-seek after the last key, so no transaction stays open between items."""
        if self._dead:
            self._check()
        return chunk_items(self._chunks(start, stop, reverse, True))

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """See :meth:`Backend.scan_keys` (keys only; values are neither copied nor
        checked)."""
        if self._dead:
            self._check()
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
        """See :meth:`Backend.scan_chunks`: the chunks the scan reads anyway, values
        checked and unwrapped (no chunk reads past ``limit`` records)."""
        if self._dead:
            self._check()
        return self._chunks(start, stop, reverse, values, limit)

    def _chunk_fn(
        self, start: bytes, stop: bytes, reverse: bool, values: bool, after: bytes | None, n: int
    ) -> Callable[[Any], Any]:
        """The read of one chunk in a read transaction: its keys (a list), or with
        ``values`` its keys and stored values (two lists).

        Keys only are read at C speed (islice over the cursor iterator) and cut at the
        bound afterwards with a binary search. With values, each key is checked before
        its value is read (``cur.value()``): the cursor's item iterator copies a key and
        its value together, so a chunk cut afterwards would copy the value just past
        the range - another tenant's record, however big. The loop costs about what the
        item iterator did (no tuple per record)."""

        def place(cur: Any) -> bool:
            # On the first key of the chunk: at or after start (forward), or the
            # largest key below the bound (reverse); False if there is none.
            if not reverse:
                if not cur.set_range(after if after is not None else start):
                    return False
                return not (after is not None and cur.key() == after and not cur.next())
            if cur.set_range(after if after is not None else stop):
                return bool(cur.prev())
            return bool(cur.last())

        def keys_only(txn: Any) -> list[bytes]:
            cur = txn.cursor()
            if not place(cur):
                return []
            if reverse:
                out: list[bytes] = list(islice(cur.iterprev(keys=True, values=False), n))
                if out[-1] < start:
                    # Descending: cut at the first key below ``start``.
                    del out[bisect_left(out, True, key=lambda k: k < start) :]
            else:
                out = list(islice(cur.iternext(keys=True, values=False), n))
                if out[-1] >= stop:
                    del out[bisect_left(out, stop) :]
            return out

        def with_values(txn: Any) -> tuple[list[bytes], list[bytes]]:
            cur = txn.cursor()
            keys: list[bytes] = []
            raws: list[bytes] = []
            if not place(cur):
                return keys, raws
            add_key, add_raw, raw = keys.append, raws.append, cur.value
            if reverse:
                for k in islice(cur.iterprev(keys=True, values=False), n):
                    if k < start:
                        break
                    add_key(k)
                    add_raw(raw())
            else:
                for k in islice(cur.iternext(keys=True, values=False), n):
                    if k >= stop:
                        break
                    add_key(k)
                    add_raw(raw())
            return keys, raws

        return with_values if values else keys_only

    def _chunks(
        self, start: bytes, stop: bytes, reverse: bool, values: bool, limit: int | None = None
    ) -> Iterator[Chunk]:
        if start >= stop:
            return
        after: bytes | None = None
        # Small first chunk: a scan with limit=1 (first key, exists) stays cheap.
        n = min(32, self._chunk)
        left = limit
        while True:
            if left is not None:
                if left <= 0:
                    return
                n = min(n, left)
                left -= n
            chunk = self._read_txn(self._chunk_fn(start, stop, reverse, values, after, n))
            if values:
                keys, raws = chunk
                if not keys:
                    return
                # Checked a chunk at a time with C-level maps (no Python loop per
                # item): v1/v2 - every stored value, trailer included, has the CRC
                # residue; v3 - every trailer equals the digest of its payload.
                payloads = list(map(_payload, raws))
                if self._xx:
                    damaged = list(map(_x32d, payloads, map(_x32, keys))) != list(
                        map(_trailer, raws)
                    )
                else:
                    damaged = set(map(_crc, raws, map(self._kseed, keys))) != INTACT
                if damaged or min(map(len, raws)) < 4:
                    for k, raw in zip(keys, raws, strict=True):
                        self._unwrap(k, raw)  # raises for the first damaged value
                after = keys[-1]
                yield keys, payloads
            else:
                keys = chunk
                if not keys:
                    return
                after = keys[-1]
                yield keys, None
            if len(keys) < n:
                return
            n = min(n * 4, self._chunk)

    def count_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.count_range` (a key-only cursor walk, one transaction)."""
        if self._dead:
            self._check()
        if start >= stop:
            return 0

        def work(txn: Any) -> int:
            cur = txn.cursor()
            if not cur.set_range(start):
                return 0
            n = 0
            for k in cur.iternext(keys=True, values=False):
                if k >= stop:
                    break
                n += 1
            return n

        return self._read_txn(work)

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        """See :meth:`Backend.first_key` (one cursor seek)."""
        if self._dead:
            self._check()

        def work(txn: Any) -> bytes | None:
            cur = txn.cursor()
            if cur.set_range(start):
                k: bytes = cur.key()
                if k < stop:
                    return k
            return None

        return self._read_txn(work)

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        """See :meth:`Backend.last_key`: one short read transaction, one cursor seek
        (inlined like :meth:`get`: the newest-key lookup is a hot path)."""
        if self._dead:
            self._check()
        txn = None
        try:
            txn = self._begin()
            cur = txn.cursor()
            # The last key below stop: prev() of the first key at or after it.
            k = cur.key() if (cur.prev() if cur.set_range(stop) else cur.last()) else None
            txn.abort()
        except lmdb.Error as exc:
            if txn is not None:
                txn.abort()
            k = self._read_txn(lambda t: _last_in(t, stop), exc)
        return k if k is not None and k >= start else None

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        """Force the data and meta pages to disk (useful with ``sync=false``)."""
        if self._dead:
            self._check()
        if self.config.read_only:
            return
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise self._translate(exc, "sync") from exc

    def stats(self) -> dict[str, Any]:
        """Map size, pages used, headroom, entries, reader slots, file size, format."""
        if self._dead:
            self._check()
        # Through the growth gate, retried: both race a resize of the map by another
        # thread (finding: "mdb_env_stat: Invalid argument").
        info, stat = self._env_read(lambda env: (env.info(), env.stat()))
        psize = stat["psize"]
        used = (info["last_pgno"] + 1) * psize
        try:
            file_size = os.path.getsize(self._data_file)
        except OSError:
            file_size = None
        return {
            "path": self.path,
            "map_size": info["map_size"],
            "max_map_size": self.config.max_map_size,
            "page_size": psize,
            "used_pages": info["last_pgno"] + 1,
            "used_bytes": used,
            "headroom_bytes": info["map_size"] - used,
            "entries": stat["entries"],
            "depth": stat["depth"],
            "branch_pages": stat["branch_pages"],
            "leaf_pages": stat["leaf_pages"],
            "overflow_pages": stat["overflow_pages"],
            "reader_slots_used": info["num_readers"],
            "readers_active": _count_readers(self._env.readers()),
            "max_readers": info["max_readers"],
            "last_txnid": info["last_txnid"],
            "file_size": file_size,
            "lmdb_version": ".".join(map(str, self._env.lib_version())),
            "lmdb_data_format": LMDB_DATA_VERSION,
            "envelope_version": self._envelope,
            "verified_at_open": self._verified_at_open,
            "sync": self.config.sync,
        }

    def copy(self, path: str | os.PathLike[str], *, compact: bool = True) -> str:
        """Write a consistent copy of the store to the directory ``path`` (created if
        missing, must not already hold a store) while it stays in use.

        Args:
            compact: omit free pages and renumber (smaller, slower, and the copy's map is
                no larger than its data).

        Returns:
            The absolute path of the copy's directory.
        """
        if self._dead:
            self._check()
        target = os.path.abspath(os.fspath(path))
        if os.path.exists(os.path.join(target, "data.mdb")):
            raise ConfigurationError(
                f"{target} already holds an LMDB store; copy into an empty directory",
                backend="lmdb",
                path=target,
            )
        try:
            os.makedirs(target, exist_ok=True)
            self._env.copy(target, compact=compact)
        except lmdb.Error as exc:
            err = self._translate(exc, f"copy to {target}")
            if isinstance(err, StorageFullError):
                raise self._copy_full(target, exc) from exc
            raise err from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._copy_full(target, exc) from exc
            raise StorageError(
                f"cannot copy the LMDB store at {self.path} to {target}: {exc}",
                backend="lmdb",
                path=target,
            ) from exc
        return target

    def _copy_full(self, target: str, exc: Exception) -> StorageFullError:
        """The error of a copy to ``target`` that ran out of space: a copy only reads
        the store, so the space that ran out is the target's."""
        return StorageFullError(
            f"no space left at {target} for a copy of the LMDB store at {self.path}: the "
            "copy was not made; the store itself is unaffected. Free space on that "
            f"filesystem or copy elsewhere ({exc})",
            backend="lmdb",
            path=target,
        )

    def reader_check(self) -> int:
        """Free the reader slots of dead processes now; return how many were freed."""
        if self._dead:
            self._check()
        try:
            return int(self._env.reader_check())
        except lmdb.Error as exc:
            raise self._translate(exc, "reader_check") from exc

    def close(self) -> None:
        """Close the environment. Idempotent. Reference counted: a handle shared by
        several opens in this process (see :meth:`open`) closes the environment when the
        last of them closes. Iterators still held raise RepositoryClosedError when
        advanced. An inherited copy (after fork) is only marked closed: the parent owns
        it."""
        if self._closed:
            return
        open_stores.release(self, self._close_env)

    def _close_env(self) -> None:
        with self._wlock if not self._forked else contextlib.nullcontext():
            if self._closed:
                return
            self._closed = True
            self._dead = True
            _fork.release(self)
            if self._feed is not None:
                self._feed.close()
            if self._log is not None:
                self._log.close()
            if self._forked:
                self._record.abandon_in_child()
                return
            try:
                self._env.close()
            except lmdb.Error:  # pragma: no cover - py-lmdb's close does not fail
                pass
            # The last process to close records the data file as cleanly closed, so
            # the next open (verify=auto) can skip the structural check.
            self._record.leave(clean=True)

    def describe(self) -> str:
        """``lmdb://<path>``."""
        return f"lmdb://{self.path}"


def _last_in(txn: Any, stop: bytes) -> bytes | None:
    """The largest key below ``stop`` in ``txn``, or None."""
    cur = txn.cursor()
    found = cur.prev() if cur.set_range(stop) else cur.last()
    return cur.key() if found else None


def _count_readers(table: str) -> int:
    """Rows of ``env.readers()`` (a text table: a header, then one line per slot)."""
    return sum(1 for line in table.splitlines()[1:] if line.strip()[:1].isdigit())
