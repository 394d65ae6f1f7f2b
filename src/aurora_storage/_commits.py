"""The event-store pieces of the backend interface, I/O-free, that an engine composes its
:meth:`~aurora_storage.backend.Backend.commit` and
:meth:`~aurora_storage.backend.Backend.change_feed` from: value versions, sequence
counters, :class:`Append`, :func:`plan_commit`, :class:`ChangeFeed` and
:class:`RecentChanges`. Public through :mod:`aurora_storage.backend`, which re-exports
every name here; plugins import them from there."""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import (
    ConditionFailed,
    CorruptionError,
    InvalidKeyError,
    PositionExpiredError,
    RepositoryClosedError,
    StorageError,
)

__all__ = [
    "Append",
    "ChangeFeed",
    "ChangeRecord",
    "Condition",
    "Op",
    "RecentChanges",
    "decode_counter",
    "encode_counter",
    "foreign_position",
    "plan_commit",
    "value_version",
]

#: One write in an atomic batch: ``(key, value)`` puts, ``(key, None)`` deletes.
Op = tuple[bytes, bytes | None]

#: One condition of a conditional commit: ``(key, version)``; the key must currently have
#: that version (:meth:`Backend.get_versioned`), or be absent when ``version`` is ``None``.
Condition = tuple[bytes, bytes | None]

#: One committed change of a change feed: ``(position, key, value)``, ``value`` ``None``
#: for a delete. Positions are strictly increasing in commit order (not consecutive).
ChangeRecord = tuple[int, bytes, bytes | None]


def value_version(value: bytes) -> bytes:
    """The version of a stored value for engines without native revisions: a 128-bit
    BLAKE2b digest of its bytes. A value that goes A -> B -> A has A's version again
    (fine for the forward-only records compare-and-set is meant for; a collision of two
    different values is as likely as guessing a random 128-bit number)."""
    return hashlib.blake2b(value, digest_size=16).digest()


_COUNTER = struct.Struct(">Q")


def encode_counter(n: int) -> bytes:
    """The stored form of a sequence counter (8 bytes, big endian)."""
    return _COUNTER.pack(n)


def decode_counter(raw: bytes | None, key: bytes = b"") -> int:
    """The value of a stored sequence counter (0 when absent).

    Raises:
        CorruptionError: the record is not 8 bytes.
    """
    if raw is None:
        return 0
    if len(raw) != 8:
        raise CorruptionError(
            f"the sequence counter record {key!r} is damaged ({len(raw)} bytes, not 8)"
        )
    n: int = _COUNTER.unpack(raw)[0]
    return n


@dataclass(frozen=True, slots=True)
class Append:
    """Records to number with the next values of one gap-free sequence, inside a
    :meth:`Backend.commit`.

    Attributes:
        counter: the key of the sequence's counter record (its last assigned number,
            :func:`encode_counter`; absent means 0).
        key: the stored key of record number ``n`` (built by the repository).
        values: the encoded values; they get numbers ``last + 1, last + 2, ...`` in order.
        span: ``(start, stop)``, the stored-key range holding every key of the sequence
            (``key(n)`` for every ``n``, and any other key under the sequence's prefix),
            or ``None``; lets :func:`plan_commit` prove the slots free with one seek, and
            find the newest record when the counter is behind. ``start`` is the
            sequence's key prefix, ``key(n)`` being ``start`` + the key encoding of
            ``n`` + the tuple's end.
    """

    counter: bytes
    key: Callable[[int], bytes]
    values: Sequence[bytes]
    span: tuple[bytes, bytes] | None = None


def plan_commit(
    read: Callable[[bytes], bytes | None],
    ops: Sequence[Op],
    conditions: Sequence[Condition],
    appends: Sequence[Append],
    *,
    version: Callable[[bytes], bytes] = value_version,
    last: Callable[[bytes, bytes], bytes | None] | None = None,
    seek_free: bool = True,
) -> tuple[list[Op], list[int]]:
    """The I/O-free core of a conditional commit, for engines that evaluate it under
    their own write lock or inside one write transaction.

    ``read`` reads the current state (inside the lock or transaction). Every condition
    is checked against the state before the commit (all of them, so the error can name
    every conflict); then each :class:`Append` reads its counter and numbers its values
    from the counter's next number when those slots are free once ``ops`` are applied (a
    key ``ops`` delete, and do not put again, is free). When one of them is occupied -
    the counter is behind records written at ``(sequence, n)`` without an append (an
    older ``aurora-storage import``, a ``put``, or ``ops``) - the numbers go past the
    newest numbered record of the sequence (the highest key exactly ``(sequence, n)``
    with an int ``n``, once ``ops`` apply; keys of other shapes under the prefix occupy
    no number), never into a hole below it: an append never replaces a record, and a
    follower that read up to the newest record misses nothing. A record put past a
    free number after the counter is not looked for (that would cost every append a
    seek): the number after the counter is taken.

    ``last`` is the engine's newest key in ``[start, stop)``, read in the same lock or
    transaction. It finds the newest numbered record (seeking down past keys of other
    shapes and keys ``ops`` delete); without it the numbers go past occupied slots one
    by one, which can fill a hole below a record (the conformance suite's
    ``test_append_goes_past_the_newest_record_never_into_a_hole`` refuses that). With
    ``last``, an append of two or more values that names its key range
    (:attr:`Append.span`) also proves every slot past the counter free with one seek
    when the sequence's newest key is not past the counter's record (the usual case);
    otherwise the slots are read. (A single value's one slot read is cheaper than a
    seek on every engine measured.) An engine whose ``last`` is dear (a listing, not a
    seek) passes ``seek_free=False``: ``last`` is then called only for a counter
    behind its records.

    Returns:
        The operations to apply atomically (``ops``, then the numbered records, then the
        counter updates), and the first number assigned to each append.

    Raises:
        ConditionFailed: one or more conditions failed; nothing may be written.
        InvalidKeyError: a record put by hand at or past ``2**64 - 1`` (any int, an
            integral float) leaves no 64-bit number past the sequence's newest record;
            the error names the tenant and sequence.
    """
    failed: list[tuple[int, bytes | None]] = []
    for i, (key, expected) in enumerate(conditions):
        raw = read(key)
        if raw is None:
            if expected is not None:
                failed.append((i, None))
        elif expected is None:  # create-only: any record fails it (no digest needed)
            failed.append((i, version(raw)))
        else:
            actual = version(raw)
            if actual != expected:
                failed.append((i, actual))
    if failed:
        raise ConditionFailed(failed)
    out = list(ops)
    if not appends:
        return out, []
    firsts: list[int] = []
    counters: dict[bytes, int] = {}
    # Each key the ops write, and whether a record is there once they are applied (the
    # last op of a key decides): a key the batch deletes is free for an append, one it
    # puts is occupied, whatever was stored before.
    written = {k: v is not None for k, v in ops}
    for app in appends:
        n_last = counters.get(app.counter)
        if n_last is None:
            n_last = decode_counter(read(app.counter), app.counter)
        record, values, span = app.key, app.values, app.span
        n = len(values)
        # Free past the counter: no stored key of the sequence sorts after its record.
        clear = False
        if seek_free and last is not None and span is not None and n > 1:  # one read beats a seek
            top = last(span[0], span[1])
            clear = top is None or top <= record(n_last)
        if not _free(None if clear else read, written, record, n_last, n):
            # A counter behind its records (records written at (sequence, n) without
            # append: an import, a put): the numbers go past the newest numbered
            # record, never into a hole below it - a follower that read up to that
            # record never looks below it again.
            if last is not None and span is not None:
                n_last = max(n_last, _newest(read, last, written, record, span[0]))
            # Checked before any slot past it is built: a record put at 2**2040 leaves
            # no key for the number after it.
            _check_room(app, n_last, n)
            # Past the newest, every slot is free; read anyway, so an engine whose
            # `last` can lag (or none: slot by slot, see above) never replaces a record.
            while not _free(read, written, record, n_last, n):
                n_last += 1
                _check_room(app, n_last, n)
        keys = [record(n_last + j) for j in range(1, n + 1)]
        firsts.append(n_last + 1)
        out += zip(keys, values, strict=True)
        written.update(dict.fromkeys(keys, True))
        counters[app.counter] = n_last + n
    out += [(k, encode_counter(n)) for k, n in counters.items()]
    return out, firsts


#: The largest sequence number (the counter is 64-bit).
_MAX_NUMBER = (1 << 64) - 1
#: The element code of a positive number in a stored key (aurora_storage._element.POS),
#: then the byte count of its integer part (1 to 255): ``(sequence, n)`` for every int
#: ``n >= 1`` (an integral float is the same key) lies in ``[prefix + _FIRST, prefix +
#: _PAST)``, ``_PAST`` being the code of ``+inf``, the next element type.
_FIRST = b"\x13\x01"
_PAST = b"\x14"


def _check_room(app: Append, n_last: int, n: int) -> None:
    """Refuse numbering ``n`` records past ``n_last`` beyond what the 64-bit counter
    holds (a record put by hand at or past ``2**64 - 1``).

    Raises:
        InvalidKeyError: no room; names the tenant and sequence.
    """
    if n_last + n <= _MAX_NUMBER:
        return
    digits = str(n_last) if n_last < 10**30 else f"a {len(str(n_last))}-digit number"
    raise InvalidKeyError(
        f"{_sequence_name(app)} cannot number {n} more record(s): its newest numbered "
        f"record is at {digits}, and sequence numbers are 64-bit (the counter holds at "
        f"most 2**64 - 1 = {_MAX_NUMBER}); that record was put at (sequence, n) without "
        "an append - delete it (or move it under another key), or append to another "
        "sequence; nothing was written"
    )


def _sequence_name(app: Append) -> str:
    """``sequence 'name' of tenant 't'`` for an error, read back from the append's
    counter key (the store's own prefix, then the sequence's key prefix; the raw key
    when it does not decode)."""
    from ._keys import decode_key, decode_tenant_key  # the error path only

    head = b"\x00aurora:seq:"
    if not app.counter.startswith(head):
        return f"the sequence counted at {app.counter!r}"
    prefix = app.counter[len(head) :]

    try:
        tenant, offset = decode_tenant_key(prefix)
        (name,) = decode_key(prefix + b"\x00", offset)
    except (ValueError, TypeError):
        return f"the sequence at {prefix!r}"
    return f"sequence {name!r} of tenant {tenant!r}"


def _free(
    read: Callable[[bytes], bytes | None] | None,
    written: dict[bytes, bool],
    record: Callable[[int], bytes],
    n_last: int,
    n: int,
) -> bool:
    """Whether the ``n`` slots past ``n_last`` are free once the batch's ops apply
    (``read`` None: the stored state is known to hold none of them)."""
    for j in range(1, n + 1):
        slot = record(n_last + j)
        put = written.get(slot)
        if put is None:
            put = read is not None and read(slot) is not None
        if put:
            return False
    return True


def _number(key: bytes, prefix: bytes, record: Callable[[int], bytes]) -> int | None:
    """``n`` when ``key`` sorts among the records ``(sequence, n)`` of ``prefix`` (it
    may be a longer key under ``(sequence, n)``, or a fraction of ``n``), else None."""
    head = len(prefix)
    if not key.startswith(prefix) or key[head : head + 1] != _FIRST[:1]:
        return None
    nb = key[head + 1] if len(key) > head + 1 else 0
    if not nb or len(key) < head + 2 + nb:
        return None
    return int.from_bytes(key[head + 2 : head + 2 + nb], "big")


def _newest(
    read: Callable[[bytes], bytes | None],
    last: Callable[[bytes, bytes], bytes | None],
    written: dict[bytes, bool],
    record: Callable[[int], bytes],
    prefix: bytes,
) -> int:
    """The highest ``n`` with a record at exactly ``(sequence, n)`` once the batch's ops
    apply (0: none). Seeks down from the top of the numbered range: a key of another
    shape (``(sequence, n, "x")``, a fraction) sends the search to ``(sequence, n)``
    itself, and a record the batch deletes is passed over, so each seek rules out at
    least one number."""
    best = 0
    for k, put in written.items():
        if put:
            m = _number(k, prefix, record)
            if m is not None and m > best and record(m) == k:
                best = m
    lo, stop = prefix + _FIRST, prefix + _PAST
    while True:
        top = last(lo, stop)
        if top is None:
            return best
        m = _number(top, prefix, record)
        if m is None:  # pragma: no cover - every key in [lo, stop) has a number head
            stop = top
            continue
        if m <= best:
            return best
        key = record(m)
        present = written.get(key)
        if present is None:
            present = True if key == top else read(key) is not None
        if present:
            return m
        stop = key


class ChangeFeed(ABC):
    """The committed changes of a store, in commit order (see :meth:`Backend.change_feed`).

    Positions are ints, strictly increasing in commit order, not consecutive. The
    repository's ``watch()`` reads through this interface and filters by tenant and prefix.
    """

    @abstractmethod
    def last_position(self) -> int:
        """The position of the newest committed change (a watch started now sees only
        changes after it)."""

    @abstractmethod
    def read(self, after: int, limit: int) -> list[ChangeRecord]:
        """Up to ``limit`` changes with position > ``after``, in order.

        Raises:
            PositionExpiredError: some change after ``after`` is no longer retained, or
                ``after`` is past :meth:`last_position` - a position this feed never
                gave (:func:`foreign_position` words it).
        """

    @abstractmethod
    def wait(self, after: int, timeout: float | None) -> bool:
        """Block until a change with position > ``after`` exists (True), the timeout (in
        seconds; ``None``: no limit) passes, the feed is closed, or :meth:`wake` is called
        (False)."""

    @abstractmethod
    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from any thread, quickly, never raising) after new changes
        are committed; returns the function that unsubscribes it. Async watchers wake up
        this way instead of blocking a thread."""

    @abstractmethod
    def wake(self) -> None:
        """Wake every thread blocked in :meth:`wait` (a watch being closed)."""

    async def read_async(self, after: int, limit: int) -> list[ChangeRecord]:
        """:meth:`read` for an async watch, awaited on the watch's event loop. The
        default calls :meth:`read` inline (embedded engines read in microseconds); a
        network engine overrides it so the loop is not held for a round trip."""
        return self.read(after, limit)

    def _check_inherited(self) -> None:
        """Raise the store's InheritedHandleError if this feed belongs to a handle
        inherited through ``fork()``. A :class:`~aurora_storage._eventstore.Watch` calls
        it first thing in a process other than the one that made it. The default does
        nothing: a feed of a backend without a fork guard goes on in the child."""
        return

    def scoped(self, start: bytes, stop: bytes) -> ChangeFeed:
        """The feed one ``watch()`` reads: one holding at least the changes of the keys
        in ``[start, stop)`` (one tenant, optionally a prefix), with the same positions.
        The default is this feed (the watch filters). An engine that filters on the
        server returns a feed reading only that range (NATS: the tenant's subjects)."""
        return self


def foreign_position(after: int, last: int, **context: Any) -> PositionExpiredError:
    """The error for ``read(after)`` with ``after`` past the feed's ``last`` position: a
    position this feed never gave (feeds share it, so each says it alike)."""
    return PositionExpiredError(
        f"position {after} is past the last position of this store's change feed "
        f"({last}): it was not given by this feed - it comes from another store, or from "
        "this store before a compacting copy or restore numbered its changes anew; "
        "re-read the state with a scan, then watch from last_position()",
        position=after,
        oldest=last,
        **context,
    )


class RecentChanges(ChangeFeed):
    """An in-process change feed: the most recent changes in memory.

    The backend calls :meth:`record` under its write lock, in commit order, with a
    strictly increasing ``commit`` number per commit (an engine sequence number,
    transaction id, or a counter); the changes of commit ``c`` get positions
    ``(c << 32) + i``. Only user data (keys from ``0x01``) is recorded; the store's own
    records (``0x00...``: metadata, counters) are not changes.

    At most ``max_changes`` changes and ``max_bytes`` of keys and values are kept; reading
    after an older position raises :class:`~aurora_storage.errors.PositionExpiredError`.

    Args:
        start: the last commit number before recording starts (positions after
            ``(start << 32) + 0xFFFFFFFF`` are the first ones a watcher can resume from).
    """

    def __init__(
        self, *, start: int = 0, max_changes: int = 100_000, max_bytes: int = 64 << 20
    ) -> None:
        self._log: deque[ChangeRecord] = deque()
        self._bytes = 0
        self._max_changes = max_changes
        self._max_bytes = max_bytes
        self._last = (start << 32) | 0xFFFFFFFF if start else 0
        #: Everything up to this position is gone (or was never recorded).
        self._floor = self._last
        #: Which limit dropped the change at the floor ("changes", "bytes"), or None:
        #: nothing dropped yet (the floor is where recording started).
        self._dropped_by: str | None = None
        self._cond = threading.Condition(threading.Lock())
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        self._closed = False
        self._wakes = 0
        #: Set in a fork() child (see refuse): the error every read and wait raises.
        self._refused: Callable[[], StorageError] | None = None

    def refuse(self, error: Callable[[], StorageError]) -> None:
        """From now on :meth:`read` and :meth:`wait` raise ``error()``: the backend's
        handle was inherited through ``fork()``, and nothing in this process records
        into the feed (a watch would otherwise wait for ever, or end as if nothing
        changed). Called in the child inside ``os.fork()``: takes no lock (a parent
        thread may have held this feed's at the fork)."""
        self._refused = error

    def _check_inherited(self) -> None:
        """See :meth:`ChangeFeed._check_inherited`."""
        refused = self._refused
        if refused is not None:
            raise refused()

    def record(self, commit: int, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Record the changes of one commit (the caller serialises commits)."""
        base = commit << 32
        with self._cond:
            if base <= self._last:
                # Never reuse a position, whatever the caller's numbering did.
                base = (self._last | 0xFFFFFFFF) + 1
            log = self._log
            i = 0
            size = self._bytes
            for k, v in changes:
                if k[:1] == b"\x00":
                    continue
                log.append((base + i, k, v))
                size += len(k) + (0 if v is None else len(v)) + 64
                i += 1
            if not i:
                return
            self._last = base + i - 1
            while log and (len(log) > self._max_changes or size > self._max_bytes):
                self._dropped_by = "changes" if len(log) > self._max_changes else "bytes"
                pos, k, v = log.popleft()
                size -= len(k) + (0 if v is None else len(v)) + 64
                self._floor = pos
            self._bytes = size
            self._cond.notify_all()
            subscribers = list(self._subscribers.values())
        for cb in subscribers:
            cb()

    def last_position(self) -> int:
        """See :meth:`ChangeFeed.last_position`."""
        return self._last

    def read(self, after: int, limit: int) -> list[ChangeRecord]:
        """See :meth:`ChangeFeed.read`."""
        if self._refused is not None:
            raise self._refused()
        with self._cond:
            if self._closed:
                raise RepositoryClosedError("the change feed's store is closed")
            if after < self._floor:
                raise PositionExpiredError(
                    f"the changes after position {after} are no longer retained ("
                    f"{self._retention()}); re-read the state with a scan, then watch from "
                    "last_position()",
                    position=after,
                    oldest=self._floor,
                )
            if after > self._last:
                # Never given by this feed: another store's position, or this store's
                # from before a compacting copy restarted its commit numbers. Taken as
                # a place here, it would skip every change up to it without a word.
                raise foreign_position(after, self._last)
            log = self._log
            if not log or log[-1][0] <= after:
                return []
            # Binary search on the positions (a deque supports indexing).
            lo, hi = 0, len(log)
            while lo < hi:
                mid = (lo + hi) // 2
                if log[mid][0] <= after:
                    lo = mid + 1
                else:
                    hi = mid
            return [log[j] for j in range(lo, min(lo + limit, len(log)))]

    def _retention(self) -> str:
        """Why the changes up to the floor are gone: the limit that dropped the last
        of them, or (nothing dropped) that recording started there."""
        if self._dropped_by == "bytes":
            cap = self._max_bytes
            size = f"{cap >> 20} MiB" if cap >= 1 << 20 and not cap % (1 << 20) else f"{cap} bytes"
            return (
                f"this in-process feed keeps at most {size} of changes (keys, values and "
                f"64 bytes each), and large changes reached that before its "
                f"{self._max_changes}-change limit; it holds this session's changes from "
                f"position {self._floor}"
            )
        if self._dropped_by == "changes":
            return (
                f"this in-process feed keeps the latest {self._max_changes} changes of "
                f"this session, from position {self._floor}"
            )
        return (
            "this in-process feed holds only the changes committed since it started in "
            f"this session, from position {self._floor}"
        )

    def wait(self, after: int, timeout: float | None) -> bool:
        """See :meth:`ChangeFeed.wait`."""
        if self._refused is not None:
            raise self._refused()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            wakes = self._wakes
            while self._last <= after and not self._closed and self._wakes == wakes:
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            return self._last > after

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """See :meth:`ChangeFeed.subscribe`."""
        with self._cond:
            token = self._next_id
            self._next_id += 1
            self._subscribers[token] = callback

        def unsubscribe() -> None:
            with self._cond:
                self._subscribers.pop(token, None)

        return unsubscribe

    def wake(self) -> None:
        """See :meth:`ChangeFeed.wake`."""
        with self._cond:
            self._wakes += 1
            self._cond.notify_all()
        for cb in list(self._subscribers.values()):
            cb()

    def close(self) -> None:
        """Wake every waiter for good (the store is closing); later reads raise."""
        with self._cond:
            self._closed = True
            self._log.clear()
            self._cond.notify_all()
            subscribers = list(self._subscribers.values())
        for cb in subscribers:
            cb()
