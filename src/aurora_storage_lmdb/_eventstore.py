"""Event-store primitives of the LMDB backend (kept apart from the adapter's I/O paths).

A conditional commit is one LMDB write transaction: the conditions and sequence counters
are read, and the writes, numbered records and counter updates applied, inside it. LMDB
allows one write transaction at a time per environment, across processes (its own lock
file), so the commit is atomic against every other writer of the store - other threads
and other processes alike - with no lock file of ours.

Change feeds. Positions are ``(tid << 32) + i``, ``i`` the change's index in its write
transaction and ``tid`` that transaction's LMDB id - raised, when needed, above the newest
log record's: a compacting copy (``repo.copy()``, ``mdb_copy -c``, a restored backup)
restarts LMDB's ids near zero but keeps the log records, so the id alone would number
new changes below old ones. The check is one cursor seek in the logging transaction, so
it holds whatever tool made the copy, and positions never repeat nor go back.

* By default the feed is in-process (:class:`~aurora_storage.backend.RecentChanges`),
  recording from the first ``watch()`` / ``last_position()``: a write pays one flag test
  until then, and nothing is stored.
* With ``change_log=true`` (chosen when the store is created, then recorded in it) every
  write also stores its changes as log records, in the same transaction, under
  ``0x00 "aurora:log:" txn_id(8) index(4)``; :class:`StoreChangeLog` reads them, so a
  watcher sees the changes of every process. Other processes' commits are noticed by
  polling the environment's last transaction id every few milliseconds while someone
  waits (no lock file, no extra process); this process's commits wake waiters at once.
  The log keeps the last ``change_log_retention`` write transactions (trimmed in the
  writing transaction every 256 transactions). Its record says up to which position the
  log begins (``floor``) and up to which one a trim dropped changes (``dropped``; 0:
  never): a position below the floor but not below ``dropped`` misses nothing (the store
  was new when its log began), so it is read from the log's start.
* A writer SIGKILLed inside its commit after writing the meta page, before publishing
  the new transaction id in the lock file, leaves every reader on the previous snapshot
  until the next writer takes LMDB's write lock (which repairs the published id). A
  waiting watcher, the subscription poller and :meth:`StoreChangeLog.last_position`
  notice that the newest meta page is ahead of the snapshot for longer than a commit
  takes, and repair it by taking the write lock themselves (a write transaction begun
  and aborted, in a helper thread, so a waiting watcher is never stuck behind a writer).
  A read-only process cannot take the write lock: it sees the batch once any writer
  writes again.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import lmdb
import orjson

from aurora_storage.backend import (
    Append,
    ChangeFeed,
    ChangeRecord,
    Condition,
    Op,
    RecentChanges,
    decode_counter,
    encode_counter,
    foreign_position,
    plan_commit,
    value_version,
)
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    PositionExpiredError,
    RepositoryClosedError,
)

from ._errors import value_too_large

if TYPE_CHECKING:
    from ._backend import LMDBBackend

__all__ = ["StoreChangeLog", "commit", "open_change_log", "start_change_log", "start_feed"]

#: The record that says the store keeps a change log (JSON: the trimmed-up-to position).
CHANGELOG_KEY = b"\x00aurora:lmdb:changelog"
LOG_PREFIX = b"\x00aurora:log:"
LOG_END = b"\x00aurora:log;"
_POS = struct.Struct(">QI")
_KLEN = struct.Struct(">H")
#: Seconds between checks for other processes' commits while someone waits.
POLL_INTERVAL = 0.002
_TRIM_EVERY = 256
#: Polls the snapshot readers get may lag the newest meta page before it is repaired
#: (a live writer publishes its id microseconds after writing the meta page).
_GRACE_POLLS = 3
#: Seconds last_position() waits for the repair (a live writer holding the write lock
#: has repaired it already; see StoreChangeLog._repair).
_REPAIR_WAIT = 1.0


class _Occupied(Exception):
    """The fast path of :func:`commit` met an occupied key: its transaction is aborted
    and the general path decides (raises ConditionFailed, or numbers past the slot)."""


def commit(
    backend: LMDBBackend,
    ops: Sequence[Op],
    conditions: Sequence[Condition],
    appends: Sequence[Append],
) -> list[int]:
    """:meth:`Backend.commit` for LMDB: everything in one write transaction.

    This is the path of every event-store write (an eventsourcing ``save()``). The usual
    batch - create-only conditions (``insert``, ``compare_and_set`` against absence) and
    appends, no deletes - takes :func:`_commit_fast`: each create-only record and each
    numbered record is written with LMDB's own no-overwrite put, which finds an existing
    key in the same B-tree descent as the write, instead of a read before the write.
    When such a put finds its key taken (a conflict, or a slot occupied by a record
    written without an append), that transaction is aborted - nothing of it is written
    - and the general path (:func:`_commit_general`, the conditions read first by
    :func:`plan_commit`) runs in a new one and decides, exactly as if it had run alone.

    A batch whose conditions are all on versions (compare-and-set against a current
    record: a tiered pair's head and position records), with no append, takes
    :func:`_commit_versions`: each condition is one read in the write transaction,
    then the writes, without the planner; a condition that fails aborts it and the
    general path decides (it names every failed condition).
    """
    if not appends and conditions:
        for _, expected in conditions:
            if expected is None:
                break
        else:
            try:
                return _commit_versions(backend, ops, conditions)
            except _Occupied:
                return _commit_general(backend, ops, conditions, appends)
    fast = True
    for _, expected in conditions:
        if expected is not None:
            fast = False
            break
    if fast:
        for _, v in ops:
            if v is None:
                fast = False
                break
    if fast:
        try:
            return _commit_fast(backend, ops, conditions, appends)
        except _Occupied:
            pass
    return _commit_general(backend, ops, conditions, appends)


def _commit_fast(
    backend: LMDBBackend,
    ops: Sequence[Op],
    conditions: Sequence[Condition],
    appends: Sequence[Append],
) -> list[int]:
    """:func:`commit` of a batch whose conditions are all create-only and whose ops hold
    no delete; raises :class:`_Occupied` (nothing written) when a key it must create is
    taken, or when a condition's key is not written by the batch (only a read checks
    that one).

    Why it writes exactly what the general path would: with no delete in the batch, a
    key absent before the transaction stays absent until this batch writes it, so a
    no-overwrite put succeeds exactly when the key was absent before the batch and no
    earlier write of the batch took it - the general path's condition (checked against
    the state before the batch), and its rule for a free slot (not stored, not written
    by the batch; the ops are applied first, as the general path orders them)."""
    kseed, trailer = backend._kseed, backend._trailer
    unwrap, gap_of, lookup = backend._unwrap, backend._gap, backend._lookup
    created = {key for key, _ in conditions}
    limit = backend._max_value
    done: list[Op] = []

    def work(txn: Any) -> list[int]:
        put = txn.put
        done.clear()  # a retried transaction starts over
        # Read under the write lock, as in the general path.
        recording = backend._recording
        found = 0
        # The last gap between stored records found intact (see LMDBBackend._gap): a
        # key to create inside it needs no second check.
        lo: bytes | None = None
        hi: bytes | None = None
        checked = False
        for k, v in ops:
            if v is None:  # pragma: no cover - commit() sends no deletes here
                raise _Occupied
            if len(v) > limit:  # refused before the engine (the transaction aborts)
                raise value_too_large(k, len(v), limit, backend.path)
            if k in created:
                # The records around the key are checked before its no-overwrite put:
                # a damaged one may be this key's own (CorruptionError, as the general
                # path's read of the condition raises it).
                if not (checked and (lo is None or lo < k) and (hi is None or k < hi)):
                    gap = gap_of(txn, k)
                    if gap is None:
                        raise _Occupied
                    lo, hi = gap
                    checked = True
                if not put(k, v + trailer(v, kseed(k)), overwrite=False):
                    raise _Occupied
                found += 1
            else:
                put(k, v + trailer(v, kseed(k)))
        if found != len(created):
            # A condition on a key the batch does not write (Backend.commit allows it):
            # only a read can check it; the general path does.
            raise _Occupied
        if recording:
            done.extend(ops)
        firsts: list[int] = []
        if not appends:
            return firsts
        get = txn.get
        counters: dict[bytes, int] = {}
        for app in appends:
            counter = app.counter
            n = counters.get(counter)
            if n is None:
                raw = get(counter)
                if raw is None:
                    raw = lookup(txn, counter)  # a new sequence, or a damaged counter
                n = 0 if raw is None else decode_counter(unwrap(counter, raw), counter)
            firsts.append(n + 1)
            record = app.key
            for v in app.values:
                n += 1
                k = record(n)
                if len(v) > limit:
                    raise value_too_large(k, len(v), limit, backend.path)
                if not put(k, v + trailer(v, kseed(k)), overwrite=False):
                    raise _Occupied
                if recording:
                    done.append((k, v))
            counters[counter] = n
        for counter, n in counters.items():
            v = encode_counter(n)
            put(counter, v + trailer(v, kseed(counter)))
            if recording:
                done.append((counter, v))
        return firsts

    return backend._write_txn(work, changes=lambda _: done)


def _commit_versions(
    backend: LMDBBackend, ops: Sequence[Op], conditions: Sequence[Condition]
) -> list[int]:
    """:func:`commit` of a batch without appends whose every condition is on a version;
    raises :class:`_Occupied` (nothing written) when one does not hold.

    Why it writes exactly what the general path would: the general path reads each
    condition's key in its write transaction before any write (a miss checked for a
    damaged record next to it, see LMDBBackend._near), compares :func:`value_version`
    of the value, and, when all hold and there is no append, applies ``ops`` in order
    (:func:`plan_commit` returns them unchanged) after checking their sizes. This does
    the same reads and writes in the same order; a failed condition is handed to the
    general path, which raises ConditionFailed naming every failed one."""
    unwrap = backend._unwrap
    lookup = backend._lookup
    done: list[Op] = []

    def work(txn: Any) -> list[int]:
        get = txn.get
        for key, expected in conditions:
            raw = get(key)
            if raw is None:
                raw = lookup(txn, key)  # absent (the condition fails) or damaged
            if raw is None or value_version(unwrap(key, raw)) != expected:
                raise _Occupied
        backend._check_sizes(ops)
        _write(backend, txn, ops, done)
        return []

    return backend._write_txn(work, changes=lambda _: done)


def _commit_general(
    backend: LMDBBackend,
    ops: Sequence[Op],
    conditions: Sequence[Condition],
    appends: Sequence[Append],
) -> list[int]:
    """:func:`commit` of any batch: the conditions and slots read first (plan_commit),
    then the writes, in one write transaction. Each value's CRC envelope is built
    inline, and the changes are collected only while a feed records them."""
    unwrap = backend._unwrap
    lookup = backend._lookup
    # The keys whose misses are checked for a damaged record next to them (see
    # LMDBBackend._near): the conditions' and the counters', as in _commit_fast. A free
    # slot past a counter is not: a record is there only if written without an append.
    checked = {key for key, _ in conditions}
    checked.update(app.counter for app in appends)
    done: list[Op] = []

    def work(txn: Any) -> list[int]:
        get = txn.get

        def read(key: bytes) -> bytes | None:
            raw = get(key)
            if raw is None:
                if key not in checked:
                    return None
                raw = lookup(txn, key)
                if raw is None:
                    return None
            return unwrap(key, raw)

        def last(start: bytes, stop: bytes) -> bytes | None:
            # The sequence's newest key: one cursor seek in this transaction.
            cur = txn.cursor()
            found = cur.prev() if cur.set_range(stop) else cur.last()
            if not found:
                return None
            k: bytes = cur.key()
            return k if k >= start else None

        final, firsts = plan_commit(read, ops, conditions, appends, last=last)
        backend._check_sizes(final)
        _write(backend, txn, final, done)
        return firsts

    return backend._write_txn(work, changes=lambda _: done)


def _write(backend: LMDBBackend, txn: Any, ops: Sequence[Op], done: list[Op]) -> None:
    """Apply ``ops`` in ``txn`` (each value in its CRC envelope); while a feed records,
    collect into ``done`` the changes made (a delete of an absent key is none)."""
    trailer, kseed = backend._trailer, backend._kseed
    put, delete = txn.put, txn.delete
    done.clear()  # a retried transaction starts over
    # Read under the write lock (start_feed sets it there): a commit after the feed's
    # start is always recorded.
    if not backend._recording:
        for k, v in ops:
            if v is None:
                delete(k)
            else:
                put(k, v + trailer(v, kseed(k)))
        return
    for k, v in ops:
        if v is None:
            if delete(k):
                done.append((k, None))
        else:
            put(k, v + trailer(v, kseed(k)))
            done.append((k, v))


def start_feed(backend: LMDBBackend) -> RecentChanges:
    """The in-process feed, created (under the write lock) on first use; it starts
    after the store's last committed transaction."""
    with backend._wlock:
        if backend._dead:
            backend._check()
        if backend._feed is None:
            backend._feed = RecentChanges(start=backend._env.info()["last_txnid"])
            backend._recording = True
        return backend._feed


def start_change_log(backend: LMDBBackend, txn: Any) -> None:
    """Give a new store its change log, in the write transaction ``txn`` that writes the
    store's plugin record (so whoever finds that record finds the choice made with it;
    see ``LMDBBackend._write_plugin_meta``). Not for a store that already holds the
    core's metadata record without a plugin record (made before the plugin record
    existed): processes already write it without logging."""
    from aurora_storage._repository import META_KEY

    if txn.get(META_KEY) is not None:
        return
    floor = (txn.id() << 32) | 0xFFFFFFFF
    # "dropped": 0 - nothing was ever dropped (the store is new: nothing came before).
    txn.put(
        CHANGELOG_KEY,
        backend._wrap(CHANGELOG_KEY, orjson.dumps({"floor": floor, "dropped": 0})),
    )


def open_change_log(backend: LMDBBackend) -> None:
    """At open (after the plugin record is read or written): adopt the store's change
    log if it has one; refuse ``change_log=true`` for a store created without one. Sets
    the capability ``multi_process_change_feed`` accordingly.

    Whether a store logs is settled once, by the first opener to write its plugin record
    (:func:`start_change_log` in the same transaction): a ``change_log=false`` opener
    racing a ``change_log=true`` creator either made the store without a log (the
    creator is then refused) or finds the log and writes it too - never a store where
    some processes log and others do not."""
    import dataclasses

    recorded = backend.get(CHANGELOG_KEY) is not None
    if not recorded and backend.config.change_log:
        raise ConfigurationError(
            f"change_log=true: the LMDB store at {backend.path} was created without a "
            "change log, and one cannot be added later (a process already writing "
            "it would not log, and watchers would miss its changes). Create a new "
            "store with change_log=true and copy the data into it",
            backend="lmdb",
            path=backend.path,
        )
    if recorded:
        backend._log = StoreChangeLog(backend)
        backend._recording = True
        # Also read-only: a follower process is the natural watcher of a change log.
        backend.capabilities = dataclasses.replace(
            backend.capabilities, change_feed=True, multi_process_change_feed=True
        )


def _encode(key: bytes, value: bytes | None) -> bytes:
    head = _KLEN.pack(len(key)) + key
    return b"\x00" + head if value is None else b"\x01" + head + value


class StoreChangeLog(ChangeFeed):
    """The change feed of an LMDB store with ``change_log=true``: the log records in the
    store, shared by every process (see the module docstring)."""

    def __init__(self, backend: LMDBBackend) -> None:
        self._backend = backend
        self._retention = backend.config.change_log_retention
        self._cond = threading.Condition(threading.Lock())
        self._wakes = 0
        self._closed = False
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        self._poller: threading.Thread | None = None
        self._repairer: threading.Thread | None = None

    # ---------------------------------------------------------------- writing

    def write(self, txn: Any, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Store ``changes`` as log records inside the writing transaction ``txn``, at
        positions above every position the log ever held (see the module docstring)."""
        logged = [(k, v) for k, v in changes if k[:1] != b"\x00"]  # not the store's own
        if not logged:
            return
        wrap = self._backend._wrap
        tid = txn.id()
        newest = self._newest_tid(txn)
        if tid <= newest:
            tid = newest + 1  # the ids restarted below the log (a compacting copy)
        put = txn.put
        for i, (k, v) in enumerate(logged):
            log_key = LOG_PREFIX + _POS.pack(tid, i)
            put(log_key, wrap(log_key, _encode(k, v)))
        if tid % _TRIM_EVERY == 0 and tid > self._retention:
            self._trim(txn, tid - self._retention)

    def _newest_tid(self, txn: Any) -> int:
        """The transaction part of the newest position the log holds or held: its newest
        record's, or the floor's when it holds none."""
        cur = txn.cursor()
        found = cur.prev() if cur.set_range(LOG_END) else cur.last()
        if found:
            k: bytes = cur.key()
            if k.startswith(LOG_PREFIX):
                return int(_POS.unpack(k[len(LOG_PREFIX) :])[0])
        floor = self._state(txn)[0]
        return floor >> 32  # the floor's transaction id (positions are tid << 32 | i)

    def _trim(self, txn: Any, below_tid: int) -> None:
        floor, known = self._state(txn)
        # Unknown (an older record): everything before the floor may have been dropped.
        dropped = floor if known is None else known
        cur = txn.cursor()
        end = LOG_PREFIX + _POS.pack(below_tid, 0)
        last: bytes | None = None
        if cur.set_range(LOG_PREFIX):
            while (k := cur.key()) and k < end:
                last = k
                if not cur.delete():
                    break
        if last is not None:
            tid, i = _POS.unpack(last[len(LOG_PREFIX) :])
            dropped = max(dropped, (tid << 32) + i)
        floor = max(floor, (below_tid << 32) - 1)
        record = orjson.dumps({"floor": floor, "dropped": dropped})
        txn.put(CHANGELOG_KEY, self._backend._wrap(CHANGELOG_KEY, record))

    def notify(self) -> None:
        """This process committed: wake local waiters and subscribers now."""
        with self._cond:
            self._cond.notify_all()
            subscribers = list(self._subscribers.values())
        for cb in subscribers:
            cb()

    # ---------------------------------------------------------------- reading

    def _state(self, txn: Any) -> tuple[int, int | None]:
        """``(floor, dropped)`` of the log's record: it holds no change at or below
        ``floor``, and no trim dropped one above ``dropped`` (``None``: unknown - a
        record written before ``dropped`` was recorded)."""
        raw = txn.get(CHANGELOG_KEY)
        if raw is None:
            return 0, 0
        data = self._backend._unwrap(CHANGELOG_KEY, raw)
        try:
            record = orjson.loads(data)
            floor = int(record["floor"])
            dropped = None if "dropped" not in record else int(record["dropped"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(
                f"the change-log record of the LMDB store at {self._backend.path} is "
                f"damaged: {exc}",
                backend="lmdb",
                path=self._backend.path,
            ) from exc
        return floor, dropped

    def _check(self) -> None:
        if self._closed:
            raise RepositoryClosedError("the change feed's store is closed", backend="lmdb")

    def _check_inherited(self) -> None:
        """See :meth:`ChangeFeed._check_inherited`."""
        if self._backend._forked:
            raise self._backend._inherited_error()

    def _position(self) -> tuple[int, int]:
        """The newest position (the newest log record's, or the floor) and the id of the
        snapshot it was read from."""

        def work(txn: Any) -> tuple[int, int]:
            cur = txn.cursor()
            # The last record below the log's end: prev() of the first key after it.
            found = cur.prev() if cur.set_range(LOG_END) else cur.last()
            if found:
                k: bytes = cur.key()
                if k.startswith(LOG_PREFIX):
                    tid, i = _POS.unpack(k[len(LOG_PREFIX) :])
                    return int((tid << 32) + i), int(txn.id())
            return self._state(txn)[0], int(txn.id())

        return self._backend._read_txn(work)

    def _newest_meta(self) -> int:
        """The id of the newest committed transaction, from the meta pages (which a
        writer killed inside its commit may have written without publishing it)."""
        return int(self._backend._env_read(_info)["last_txnid"])

    def last_position(self) -> int:
        """See :meth:`ChangeFeed.last_position`: the newest log record (or the floor).

        If the snapshot readers get stays behind the newest meta page for longer than a
        commit takes (a writer was killed inside its commit), the write lock is taken
        once, which makes LMDB publish the newest transaction (waits for that at most
        :data:`_REPAIR_WAIT` seconds)."""
        self._check()
        newest = self._newest_meta()
        pos, snap = self._position()
        if snap >= newest or self._backend.config.read_only:
            return pos
        for _ in range(_GRACE_POLLS):
            time.sleep(POLL_INTERVAL)
            pos, snap = self._position()
            if snap >= newest:
                return pos
        self._repair(_REPAIR_WAIT)
        return self._position()[0]

    def _repair(self, wait: float) -> None:
        """Take and release LMDB's write lock in a helper thread (one at a time): a lock
        whose owner died makes LMDB publish the newest meta page's transaction
        (``mdb_mutex_failed``); a live owner has published it already. Waits up to
        ``wait`` seconds for it."""
        with self._cond:
            if self._closed:
                return
            helper = self._repairer
            if helper is None or not helper.is_alive():
                helper = threading.Thread(
                    target=self._take_write_lock, name="aurora-lmdb-repair", daemon=True
                )
                self._repairer = helper
                helper.start()
        if wait > 0:
            helper.join(wait)

    def _take_write_lock(self) -> None:
        backend = self._backend
        with backend._wlock:
            if backend._dead or self._closed:
                return
            try:
                txn = backend._begin(write=True)
            except lmdb.Error:
                return  # e.g. another process grew the map: the lock was taken anyway
            backend._abort_write(txn)

    def read(self, after: int, limit: int) -> list[ChangeRecord]:
        """See :meth:`ChangeFeed.read`. A position below the log's start misses nothing
        unless a trim dropped changes after it: then PositionExpiredError."""
        self._check()
        backend = self._backend
        nxt = after + 1

        def work(txn: Any) -> list[ChangeRecord]:
            floor, dropped = self._state(txn)
            if after < floor and (dropped is None or after < dropped):
                if dropped is None:
                    why = (
                        f"may not all be in the change log of {backend.path}: it holds "
                        f"none at or before position {floor} and was written by an "
                        "earlier version, which did not record whether it dropped any"
                    )
                else:
                    why = (
                        f"are no longer all in the change log of {backend.path}: it "
                        f"dropped those up to position {dropped} and holds none at or "
                        f"before position {floor}"
                    )
                raise PositionExpiredError(
                    f"the changes after position {after} {why} (this handle keeps the "
                    f"last {self._retention} write transactions, change_log_retention; "
                    "every writing process trims the shared log to its own setting, so "
                    "the smallest setting of any writer decides); re-read the state "
                    "with a scan, then watch from last_position()",
                    position=after,
                    oldest=floor,
                    backend="lmdb",
                    path=backend.path,
                )
            out: list[ChangeRecord] = []
            cur = txn.cursor()
            if nxt >> 96 or not cur.set_range(LOG_PREFIX + _POS.pack(nxt >> 32, nxt & 0xFFFFFFFF)):
                _check_given(txn, floor)
                return out
            for k, raw in cur.iternext():
                if not k.startswith(LOG_PREFIX) or len(out) >= limit:
                    break
                tid, i = _POS.unpack(k[len(LOG_PREFIX) :])
                data = backend._unwrap(k, raw)
                (klen,) = _KLEN.unpack_from(data, 1)
                key = data[3 : 3 + klen]
                value = data[3 + klen :] if data[0] == 1 else None
                out.append(((tid << 32) + i, key, value))
            if not out:
                _check_given(txn, floor)
            return out

        def _check_given(txn: Any, floor: int) -> None:
            # Nothing after `after`: fine if it is the newest position, but one past it
            # was never given here (another store's; or from before a compacting copy
            # that this store's positions have not caught up with): taken, it would
            # skip every change up to it without a word.
            cur = txn.cursor()
            newest = floor
            found = cur.prev() if cur.set_range(LOG_END) else cur.last()
            if found and cur.key().startswith(LOG_PREFIX):
                tid, i = _POS.unpack(cur.key()[len(LOG_PREFIX) :])
                newest = max(newest, (tid << 32) + i)
            if after > newest:
                raise foreign_position(after, newest, backend="lmdb", path=backend.path)

        return backend._read_txn(work)

    def wait(self, after: int, timeout: float | None) -> bool:
        """See :meth:`ChangeFeed.wait`: this process's commits wake at once; other
        processes' are noticed within :data:`POLL_INTERVAL` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            wakes = self._wakes
        seen = -1
        behind = 0  # polls the snapshot has lagged the newest meta page
        repairable = not self._backend.config.read_only
        while True:
            if self._closed:
                return False
            txnid = self._newest_meta()
            if txnid != seen or behind:
                seen = txnid
                pos, snap = self._position()
                if pos > after:
                    return True
                if snap < txnid and repairable:
                    behind += 1
                    if behind >= _GRACE_POLLS:
                        self._repair(0)  # the next polls see it repaired
                else:
                    behind = 0
            left = POLL_INTERVAL
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    return False
            with self._cond:
                if self._wakes != wakes:
                    return False
                self._cond.wait(left)
                if self._wakes != wakes:
                    return False

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """See :meth:`ChangeFeed.subscribe`: a poller thread watches for other
        processes' commits while anyone is subscribed."""
        with self._cond:
            token = self._next_id
            self._next_id += 1
            self._subscribers[token] = callback
            if self._poller is None or not self._poller.is_alive():
                self._poller = threading.Thread(
                    target=self._poll, name="aurora-lmdb-changelog", daemon=True
                )
                self._poller.start()

        def unsubscribe() -> None:
            with self._cond:
                self._subscribers.pop(token, None)

        return unsubscribe

    def _poll(self) -> None:
        # Subscribers are called when the newest meta page's id or the snapshot readers
        # get changes (the latter also when a repair - see wait() - publishes it).
        seen: tuple[int, int] | None = None
        behind = 0
        repairable = not self._backend.config.read_only
        while True:
            with self._cond:
                if self._closed or not self._subscribers:
                    self._poller = None
                    return
                subscribers = list(self._subscribers.values())
            try:
                txnid = self._newest_meta()
                if seen is None or txnid != seen[0] or behind:
                    state = (txnid, self._position()[1])
                else:
                    state = seen
            except Exception:  # the environment closed under us: stop quietly
                return
            if seen is not None and state != seen:
                for cb in subscribers:
                    cb()
            seen = state
            if state[1] < state[0] and repairable:
                behind += 1
                if behind >= _GRACE_POLLS:
                    self._repair(0)
            else:
                behind = 0
            time.sleep(POLL_INTERVAL)

    def wake(self) -> None:
        """See :meth:`ChangeFeed.wake`."""
        with self._cond:
            self._wakes += 1
            self._cond.notify_all()
            subscribers = list(self._subscribers.values())
        for cb in subscribers:
            cb()

    def close(self) -> None:
        """The store is closing: waiters wake, the poller stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            subscribers = list(self._subscribers.values())
        for cb in subscribers:
            cb()


def _info(env: Any) -> dict[str, int]:
    """The environment's info (for :meth:`Environment._env_read`)."""
    info: dict[str, int] = env.info()
    return info
