"""Event-store primitives of the repository: versions, sequence slots, the change feed.

I/O-free pieces and the ``watch()`` iterators; :class:`~aurora_storage.Repository` and
:class:`~aurora_storage.Batch` hold the public methods and call into here.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from ._element import _POS_HEAD, _SMALL
from ._keys import NS_SYSTEM, decode_key_at, encode_key, encode_prefix, prefix_successor
from .backend import Append, ChangeFeed, ChangeRecord
from .codecs import RAW, locate_unencodable
from .errors import (
    ConditionFailed,
    InvalidArgumentError,
    InvalidKeyError,
    NotSupportedError,
    SerializationError,
    StorageError,
)

if TYPE_CHECKING:
    import asyncio

    from ._repository import Repository

__all__ = ["AsyncWatch", "Change", "Slot", "Version", "Watch"]

K = TypeVar("K")
V = TypeVar("V")

#: Changes read from the feed per call.
_READ = 1024
#: The largest sequence number a record key is sized for (the counter is 64-bit).
_MAX_NUMBER = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Version:
    """The opaque version of a stored record, for compare-and-set.

    Get one from :meth:`Repository.get_versioned` (or ``compare_and_set``'s return
    value), compare it with ``==`` and hand it back; never build one. On the embedded
    engines it is derived from the stored bytes, so a value that goes A -> B -> A has
    A's version again (fine for forward-only records such as a projection's tracking
    position); engines with native revisions use those.
    """

    token: bytes

    def __repr__(self) -> str:
        return f"Version({self.token.hex()[:16]})"


@dataclass(frozen=True, slots=True)
class Change(Generic[K, V]):
    """One committed change, as ``watch()`` delivers it.

    Attributes:
        position: strictly increasing per store in commit order (not consecutive); pass
            the last one seen as ``watch(after=...)`` to resume without missing or
            repeating a change.
        tenant: the tenant of the record.
        key: the record's key.
        value: the new value, ``None`` for a delete.
        deleted: whether the change removed the record.
    """

    position: int
    tenant: str
    key: K
    value: V | None
    deleted: bool


class Slot:
    """The number :meth:`Batch.append` reserves: readable as :attr:`number` once the
    batch committed."""

    __slots__ = ("_number", "sequence", "tenant")

    def __init__(self, tenant: str, sequence: str) -> None:
        self.tenant = tenant
        self.sequence = sequence
        self._number: int | None = None

    @property
    def number(self) -> int:
        """The record's gap-free number ``n`` (its key is ``(sequence, n)``).

        Raises:
            StorageError: the batch has not committed (yet, or it failed).
        """
        if self._number is None:
            raise StorageError(
                f"the number of this append to sequence {self.sequence!r} (tenant "
                f"{self.tenant!r}) is assigned when its batch commits; that has not "
                "happened (the batch is still open, or it failed and wrote nothing)",
                tenant=self.tenant,
            )
        return self._number

    def __repr__(self) -> str:
        n = "uncommitted" if self._number is None else self._number
        return f"<Slot {self.tenant!r}/{self.sequence!r} {n}>"


def require(repo: Repository[Any, Any], capability: str, what: str) -> None:
    """Raise NotSupportedError unless ``repo`` declares ``capability`` (the repository's
    capabilities: a composition such as the tiered repository declares its own)."""
    caps = repo.capabilities
    if not getattr(caps, capability):
        if capability == "change_feed" and caps.read_only:
            # The embedded engines' in-process feeds record this process's commits: a
            # read-only one has none to deliver.
            fix = (
                "it is read-only, and an in-process change feed only sees the commits of "
                "its own process. Watch from a writable repository, or open an LMDB "
                "store with ?change_log=true, whose change log read-only processes follow"
            )
        else:
            fix = (
                "use a repository that declares it - memory://, lmdb://, rocksdb:// or "
                "nats:// (a tiered pair declares none of the event-store primitives; "
                "aurora-storage never emulates one with a racy check-then-write)"
            )
        raise NotSupportedError(
            f"{what} needs a repository whose capabilities declare {capability}; "
            f"{repo._describe()} does not: {fix}",
            backend=repo.backend.scheme,
        )


def check_sequence(sequence: Any) -> str:
    """A sequence name is a non-empty ``str``; a ``str`` subclass (a ``(str, Enum)``
    member, say) is read as its plain string value, without calling anything it
    overrides - as tenants are (:func:`~aurora_storage._keys.plain_tenant`)."""
    if type(sequence) is not str:
        if not isinstance(sequence, str):
            raise InvalidKeyError(
                "a sequence name must be a non-empty str, got "
                f"{type(sequence).__name__} {sequence!r}",
            )
        sequence = str.__str__(sequence)
    if not sequence:
        raise InvalidKeyError("a sequence name must be a non-empty str, got ''")
    name: str = sequence
    return name


def append_value_error(
    repo: Repository[Any, Any], tenant: str, sequence: str, value: Any, exc: BaseException
) -> SerializationError:
    """The error for a value :meth:`Batch.append` cannot encode: it names the sequence
    (the record's number, hence its key, is assigned only at the commit)."""
    path, reason = locate_unencodable(repo._codec, value, exc)
    return SerializationError(
        f"the {repo._codec.name} codec cannot store the record appended to sequence "
        f"{sequence!r} (tenant {tenant!r}): {path}: {reason}; nothing was written",
        tenant=tenant,
        backend=repo._backend.scheme,
        value_path=path,
    )


def sequence_prefix(tenant_prefix: bytes, sequence: str) -> bytes:
    """The stored-key prefix of the records of one sequence: ``(sequence, n)`` keys."""
    return tenant_prefix + encode_prefix((sequence,))


def counter_key(seq_prefix: bytes) -> bytes:
    """The key of a sequence's counter record (the store's own namespace: never in a
    tenant's scans, and not removed by ``drop_tenant``, so numbers are never reused)."""
    return NS_SYSTEM + b"aurora:seq:" + seq_prefix


def record_key_fn(seq_prefix: bytes) -> Callable[[int], bytes]:
    """Builds the stored key of record ``n`` of a sequence: ``(sequence, n)``."""

    heads = [seq_prefix + h for h in _POS_HEAD]

    def key(n: int) -> bytes:
        if 0 < n < _SMALL:
            # encode_key(n) inlined (POS, byte count, big-endian n, END), then the
            # tuple's END: the key of every numbered record a commit writes.
            nb = (n.bit_length() + 7) >> 3
            return heads[nb] + n.to_bytes(nb, "big") + b"\x00\x00"
        return seq_prefix + encode_key(n) + b"\x00"

    return key


@dataclass(frozen=True, slots=True)
class SequenceKeys:
    """The stored keys of one ``(tenant, sequence)``, computed once per repository.

    Attributes:
        prefix: the stored-key prefix of the records, ``(sequence, n)`` keys.
        counter: the key of the sequence's counter record.
        key: builds the stored key of record ``n``.
        span: ``(prefix, successor)``: the range holding every key under ``prefix``.
    """

    prefix: bytes
    counter: bytes
    key: Callable[[int], bytes]
    span: tuple[bytes, bytes]


#: Sequences cached per repository before the cache starts over.
_SEQUENCE_CACHE_MAX = 4096


def sequence_keys(repo: Repository[Any, Any], tenant: str, sequence: str) -> SequenceKeys:
    """The :class:`SequenceKeys` of ``(tenant, sequence)``: validated and encoded on
    first use, then cached on the repository (``Batch.append`` calls this per record).

    Raises:
        InvalidTenantError, InvalidKeyError: a bad tenant or sequence name, or one so
        long that a record key ``(sequence, 2**64 - 1)`` would exceed the key limit.
    """
    cache = repo._sequences
    # The cache is a dict: a str subclass lying in __eq__/__hash__ would match another
    # tenant's (or sequence's) entry. It only ever sees plain str; anything else takes
    # the validating path below (a subclass tenant or sequence name is read as its
    # plain str value there, and only a plain tenant's entry is stored).
    if type(tenant) is str and type(sequence) is str:
        try:
            return cache[(tenant, sequence)]
        except KeyError:
            pass
    name = check_sequence(sequence)
    prefix = sequence_prefix(repo._prefix(tenant), name)
    # Sized for the largest number the 64-bit counter can reach (raises KeyTooLargeError).
    repo._full(tenant, (name, _MAX_NUMBER))
    keys = SequenceKeys(
        prefix, counter_key(prefix), record_key_fn(prefix), (prefix, prefix_successor(prefix))
    )
    if type(tenant) is str:
        if len(cache) >= _SEQUENCE_CACHE_MAX:
            cache.clear()
        cache[(tenant, name)] = keys
    return keys


#: The Repository methods :func:`insert_append`'s direct path stands in for: a class
#: that replaces any of them (the tiered repository) takes the batch.
_BATCH_PATH = (
    "batch",
    "capabilities",
    "_commit",
    "_conflict",
    "_check_writable",
    "_full",
    "_prefix",
    "_numbered_fulls",
)
#: Per repository class: whether insert_append may take its direct path.
_DIRECT: dict[type, bool] = {}


#: ``zip(keys, _NONES)``: the create-only conditions of keys, made in C.
_NONES = repeat(None)
_SLOTS = [Append.__dict__[f].__set__ for f in ("counter", "key", "values", "span")]


def _append(
    counter: bytes,
    key: Callable[[int], bytes],
    values: Sequence[bytes],
    span: tuple[bytes, bytes] | None,
    _new: Callable[[type[Append]], Append] = Append.__new__,
    _c: Callable[[Append, Any], None] = _SLOTS[0],
    _k: Callable[[Append, Any], None] = _SLOTS[1],
    _v: Callable[[Append, Any], None] = _SLOTS[2],
    _s: Callable[[Append, Any], None] = _SLOTS[3],
) -> Append:
    """``Append(counter, key, values, span)``, filled through its slots: the frozen
    dataclass's ``__init__`` (an ``object.__setattr__`` per field) costs about
    twice as much, once per save."""
    a = _new(Append)
    _c(a, counter)
    _k(a, key)
    _v(a, values)
    _s(a, span)
    return a


def _direct(cls: Any) -> bool:
    ok = _DIRECT.get(cls)
    if ok is None:
        ok = _DIRECT[cls] = not any(map(cls._overrides, _BATCH_PATH))
    return ok


def insert_append(
    repo: Repository[Any, Any],
    tenant: str,
    base: tuple[Any, ...],
    runs: Sequence[tuple[Any, Sequence[Any]]],
    values: Sequence[Any],
    sequence: str,
    notes: Sequence[Any] | None,
) -> list[int]:
    """Create-only records and, with ``notes``, one numbered record each, in one atomic
    commit: what this batch does - the same stored bytes, checks and errors - in less
    Python (the write of an eventsourcing ``save()``)::

        slots = []
        with repo.batch() as b:
            i = 0
            for name, numbers in runs:
                for n in numbers:
                    b.insert(tenant, (*base, name, n), values[i])
                    if notes is not None:
                        slots.append(b.append(tenant, sequence, notes[i]))
                    i += 1
        return [slot.number for slot in slots]

    ``values`` (and ``notes``) hold one value per key, in the keys' order. The direct
    path builds the keys with :meth:`~TenantKeys._numbered_fulls` (the head of
    ``(tenant, base, name)`` encoded once), encodes the values in one pass, and hands
    one :meth:`Backend.commit` the inserts (create-only conditions) and one
    :class:`Append`, with no :class:`Batch`, :class:`Slot` or per-record bookkeeping.
    It commits only when every input passes on it; otherwise (a key or value it does
    not take, a capability missing, a key repeated) it takes the batch above, which
    raises the precise error, and nothing was written before.

    Returns:
        The numbers of the notes' records, in order (empty without ``notes``).

    Raises:
        KeyExistsError: an inserted key exists (or repeats); nothing written.
        NotSupportedError, RepositoryClosedError, ReadOnlyError, InvalidTenantError,
        InvalidKeyError, KeyTooLargeError, SerializationError: as the batch raises them.
    """
    if _direct(type(repo)):
        # A write in flight from before its check until its commit is done (see
        # Repository._writing: a claim of the store waits for it).
        writing = repo._writing
        writing.append(None)
        try:
            done = _insert_append(repo, tenant, base, runs, values, sequence, notes)
        finally:
            writing.pop()
        if done is not None:
            return done
    slots: list[Slot] = []
    with repo.batch() as b:
        insert = b.insert
        i = 0
        for name, numbers in runs:
            for n in numbers:
                insert(tenant, (*base, name, n), values[i])
                if notes is not None:
                    slots.append(b.append(tenant, sequence, notes[i]))
                i += 1
    return [slot.number for slot in slots]


def _insert_append(
    repo: Repository[Any, Any],
    tenant: str,
    base: tuple[Any, ...],
    runs: Sequence[tuple[Any, Sequence[Any]]],
    values: Sequence[Any],
    sequence: str,
    notes: Sequence[Any] | None,
) -> list[int] | None:
    """:func:`insert_append`'s direct path; ``None``: declined, nothing written. Call
    it with the write recorded in ``repo._writing`` (as insert_append does)."""
    repo._check_writable()  # as repo.batch() does first
    caps = repo.capabilities
    if not caps.conditional_writes or (notes is not None and not caps.sequences):
        return None
    if len(runs) == 1:
        name, numbers = runs[0]
        fulls = repo._numbered_fulls(tenant, base, name, numbers)
        if fulls is None:
            return None
    else:
        fulls = []
        for name, numbers in runs:
            part = repo._numbered_fulls(tenant, base, name, numbers)
            if part is None:
                return None
            fulls += part
    count = len(fulls)
    if not count:
        return None  # nothing to insert: the batch decides what an empty one does
    if len(values) != count or (notes is not None and len(notes) != count):
        return None
    if len(set(fulls)) != count:
        return None  # a key inserted twice: the batch names it (and what exists)
    encode = repo._encode_held
    raw = repo._codec is RAW
    try:
        # The raw codec stores a bytes value as that very object: no call per value
        # when all are exact bytes (one C pass over their types).
        if raw and len(set(map(type, values))) == 1 and type(values[0]) is bytes:
            data = values
        else:
            data = list(map(encode, values))
        if notes is not None:
            seq = sequence_keys(repo, tenant, sequence)
            if raw and len(set(map(type, notes))) == 1 and type(notes[0]) is bytes:
                encoded = notes
            else:
                encoded = list(map(encode, notes))
            appends = [_append(seq.counter, seq.key, encoded, seq.span)]
        else:
            appends = []
    except Exception:  # the batch raises the typed error, with the value's path
        return None
    try:
        firsts = repo._backend.commit(
            [*zip(fulls, data, strict=False)],  # of equal lengths (checked above)
            conditions=[*zip(fulls, _NONES, strict=False)],  # create-only
            appends=appends,
        )
    except ConditionFailed as exc:
        failed = exc.failed
        # As Repository._commit: the user's error keeps no engine frames alive.
        exc.__traceback__ = None
    else:
        if notes is None:
            return []
        first: int = firsts[0]
        return list(range(first, first + count))
    kinds = [
        ("insert", (tenant, (*base, name, n)), None) for name, numbers in runs for n in numbers
    ]
    raise repo._conflict(kinds, failed) from None


#: The largest ``watch(after=...)``. Positions of the embedded engines' feeds are
#: ``(commit << 32) + i`` with a 64-bit commit number (LMDB's transaction id, RocksDB's
#: sequence number), so they pass 2**64 once a store has made 2**32 commits (LMDB) or
#: key writes (RocksDB) - about 9 hours of 127,000 LMDB transactions a second.
_MAX_POSITION = (1 << 96) - 1


def watch_arguments(after: Any, timeout: Any) -> tuple[int | None, float | None]:
    """``watch()``'s ``after`` and ``timeout``, checked for every backend (sync and
    async) before a feed sees them.

    ``after``: ``None`` or an ``int`` in ``[0, 2**96 - 1]`` (a ``bool`` is refused).
    ``timeout``: ``None`` or a real number ``>= 0`` (not NaN, not a ``bool``); ``inf``,
    and any value past :data:`threading.TIMEOUT_MAX` (about 292 years), means no
    timeout, as ``None`` does.

    Returns:
        ``(after, timeout)`` as the watch uses them (``timeout`` a float or ``None``).

    Raises:
        InvalidArgumentError: either is out of its range or of another type.
    """
    if after is not None and (type(after) is not int or not 0 <= after <= _MAX_POSITION):
        raise InvalidArgumentError(
            "after must be None or an int from 0 to 2**96 - 1 (a Change.position, "
            f"Watch.position or last_position() of this store), got "
            f"{_shown(after)}"
        )
    if timeout is None:
        return after, None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgumentError(
            f"timeout must be None or a number of seconds >= 0, got {timeout!r}"
        )
    if isinstance(timeout, int):
        seconds = math.inf if timeout > threading.TIMEOUT_MAX else float(int(timeout))
    else:
        seconds = float(timeout)
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgumentError(
            f"timeout must be None or a number of seconds >= 0, got {timeout!r}"
        )
    if seconds > threading.TIMEOUT_MAX:  # inf included: no timeout
        return after, None
    return after, seconds


def _shown(value: object) -> str:
    """``value`` in a message: its repr, with its type named when the type is not the one
    its repr suggests (an int subclass shows as a plain number)."""
    if type(value) in (int, str, float, bool) or value is None:
        return repr(value)
    shown = int.__repr__(value) if isinstance(value, int) else repr(value)
    return f"{shown} (of type {type(value).__qualname__})"


class Watch(Generic[K, V]):
    """The iterator :meth:`Repository.watch` returns: committed changes of one tenant
    (optionally under a prefix) in commit order, waiting for new ones.

    Iteration ends (``StopIteration``) when ``timeout`` seconds pass without a matching
    change, or after :meth:`close`. :attr:`position` is the feed position up to which
    changes have been examined: resume with ``watch(..., after=w.position)``.

    Several threads may iterate one watch: they take turns, and each change is
    delivered to exactly one of them (in commit order for each). A thread waiting for
    its turn counts the wait against ``timeout``. For every thread to see every change,
    open one watch per thread.

    Raises (when advanced):
        PositionExpiredError: the changes after ``after`` are no longer retained.
        RepositoryClosedError: the repository was closed.
    """

    def __init__(
        self,
        repo: Repository[K, V],
        tenant: str,
        lo: bytes,
        hi: bytes,
        plen: int,
        feed: ChangeFeed,
        after: int,
        timeout: float | None,
    ) -> None:
        self._repo = repo
        self._tenant = tenant
        self._lo, self._hi, self._plen = lo, hi, plen
        self._feed = feed
        self._after = after
        self._timeout = timeout
        self._buf: deque[Change[K, V]] = deque()
        self._closed = False
        #: Held by the thread inside ``__next__`` (see there).
        self._turn = threading.Lock()
        #: The process that made the watch (see _check_process).
        self._pid = os.getpid()

    @property
    def position(self) -> int:
        """Position up to which changes were examined (delivered or filtered out)."""
        if self._buf:
            return self._buf[0].position - 1
        return self._after

    def _fill(self) -> bool:
        """Read the next changes into the buffer; whether any were read at all."""
        records = self._feed.read(self._after, _READ)
        if not records:
            return False
        if records[0][0] <= self._after:
            raise self._not_after(records[0][0])
        self._after = records[-1][0]
        self._buf.extend(self._decode(records))
        return True

    async def _fill_async(self) -> bool:
        """:meth:`_fill` for the async watch (the feed's :meth:`ChangeFeed.read_async`)."""
        records = await self._feed.read_async(self._after, _READ)
        if not records:
            return False
        if records[0][0] <= self._after:
            raise self._not_after(records[0][0])
        self._after = records[-1][0]
        self._buf.extend(self._decode(records))
        return True

    def _not_after(self, position: int) -> StorageError:
        """The error for a feed read that answered a position at or before the one
        asked after: a backend bug (ChangeFeed.read returns positions > ``after``).
        Taken as it came, a change would be delivered twice - or, outside the watched
        range, read again and again without an await, holding the event loop."""
        return StorageError(
            f"the change feed of the {self._repo._backend.scheme} backend answered "
            f"position {position} to a read after {self._after}: a bug in the backend "
            "(ChangeFeed.read must return only positions greater than `after`); the "
            "watch stops rather than deliver a change twice",
            backend=self._repo._backend.scheme,
        )

    def _decode(self, records: list[ChangeRecord]) -> Iterator[Change[K, V]]:
        lo, hi, plen, tenant, repo = self._lo, self._hi, self._plen, self._tenant, self._repo
        for pos, k, raw in records:
            if lo <= k < hi:
                key = decode_key_at(k, plen)
                if raw is None:
                    yield Change(pos, tenant, key, None, True)
                else:
                    yield Change(pos, tenant, key, repo._load(raw, tenant, key), False)

    def _check_process(self) -> None:
        """In a process other than the one that made this watch (a ``fork()`` child):
        raise the store's InheritedHandleError if its backend refuses inherited handles,
        as every other call through the inherited repository does. Otherwise the watch
        goes on here, with a fresh turn lock (the parent's may have been held by a
        thread that does not exist in this process)."""
        self._feed._check_inherited()
        self._repo._check_open()
        self._turn = threading.Lock()
        self._pid = os.getpid()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Change[K, V]:
        if self._pid != os.getpid():
            self._check_process()
        timeout = self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        turn = self._turn
        # Threads sharing one watch take turns: a read after a position another thread
        # has already moved past would be answered with changes "at or before" it (and
        # taken for a backend bug). Uncontended, one lock acquire and release.
        if not turn.acquire(False) and not turn.acquire(timeout=-1 if timeout is None else timeout):
            raise StopIteration  # no turn within the timeout: no change for this call
        try:
            while True:
                if self._closed:
                    raise StopIteration
                self._repo._check_open()
                if self._buf:
                    return self._buf.popleft()
                if self._fill():
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise StopIteration
                self._feed.wait(self._after, left)
        finally:
            turn.release()

    def close(self) -> None:
        """Stop: iteration ends, and a thread blocked in ``next()`` wakes up."""
        self._closed = True
        self._feed.wake()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Watch {self._tenant!r} after {self.position}>"


class AsyncWatch(Generic[K, V]):
    """The async iterator :meth:`AsyncRepository.watch` returns: the same changes as
    :class:`Watch`. Waiting never blocks the event loop or holds a thread: the feed
    wakes the loop (``call_soon_threadsafe``) when changes are committed.

    It is subscribed to the feed only while a ``__anext__`` reads and waits: a watch
    left by ``break``, an exception or a cancelled task holds no subscription (which
    every later commit of the store would call)."""

    def __init__(self, watch: Watch[K, V]) -> None:
        self._watch = watch

    @property
    def position(self) -> int:
        """See :attr:`Watch.position`."""
        return self._watch.position

    def __aiter__(self) -> AsyncIterator[Change[K, V]]:
        return self

    async def __anext__(self) -> Change[K, V]:
        import asyncio  # here, not at the top: `import aurora_storage` loads no asyncio

        w = self._watch
        if w._pid != os.getpid():
            w._check_process()
        deadline = None if w._timeout is None else time.monotonic() + w._timeout
        event: asyncio.Event | None = None
        wake: Callable[[], None] | None = None
        while True:
            if w._closed:
                raise StopAsyncIteration
            w._repo._check_open()
            if w._buf:
                return w._buf.popleft()
            if event is None:
                event = asyncio.Event()
                wake = _waker(event, asyncio.get_running_loop())
            assert wake is not None
            # Cleared and subscribed before reading: a commit after the read sets it
            # again, so no wakeup is lost between the read and the wait. Unsubscribed
            # in the finally, whatever ends the wait (a change, the timeout, close(),
            # the task's cancellation).
            event.clear()
            unsubscribe = w._feed.subscribe(wake)
            try:
                if await w._fill_async():
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise StopAsyncIteration
                if w._closed:  # closed between the check above and the subscription
                    raise StopAsyncIteration
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancellation of this task was dropped during the read: on
                    # Python 3.11 asyncio.wait_for (nats-py's requests use it) returns
                    # its result when the answer and the cancellation come together.
                    # Waiting now would wait for a change that may never come, the task
                    # "cancelling" for ever: deliver it.
                    raise asyncio.CancelledError
                try:
                    await asyncio.wait_for(event.wait(), left)
                except TimeoutError:
                    pass
            finally:
                unsubscribe()

    async def aclose(self) -> None:
        """Stop the iteration (see :meth:`Watch.close`)."""
        self.close()

    def close(self) -> None:
        """Stop the iteration; a pending ``__anext__`` ends with StopAsyncIteration."""
        self._watch.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AsyncWatch {self._watch._tenant!r} after {self.position}>"


def _waker(event: asyncio.Event, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """The feed's callback for an async watch: sets ``event`` on its loop (from any
    thread)."""

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    return wake
