"""The small bytes-level interface an engine implements.

A backend stores opaque byte keys and values in byte order. Everything users touch -
tenancy, key encoding, codecs, validation, batches, views, async, tiering - lives in
:class:`~aurora_storage.Repository`, written once. An engine plugin implements the six
abstract methods below, may override the documented defaults where the engine does
better, and translates its engine's exceptions into :mod:`aurora_storage.errors`
(chaining the cause) at this boundary.

Event-store primitives are optional and declared in :class:`Capabilities`: a conditional
atomic commit (:meth:`Backend.commit`: puts and deletes, conditions "absent" / "has version
V", and gap-free sequence numbers, all applied atomically in the engine), versioned reads
(:meth:`Backend.get_versioned`) and a change feed (:meth:`Backend.change_feed`). The
repository raises :class:`~aurora_storage.errors.NotSupportedError` for any that a backend
does not declare; it never emulates one with a check-then-write race. :func:`plan_commit`
and :class:`RecentChanges` are the I/O-free pieces an engine composes its implementation
from.

Keys reaching a backend are at most :data:`~aurora_storage.MAX_KEY_SIZE` bytes and never
empty. The repository never calls a backend after :meth:`Backend.close`, except through
iterators the user still holds: a scan iterator must then raise
:class:`~aurora_storage.errors.RepositoryClosedError` (not crash) when advanced.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, NoReturn, Protocol

from ._commits import (
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
from ._keys import KEY_SPACE_END
from ._stores import (
    StoreHandles,
    config_signature,
    create_store_dir,
    marker_path,
    open_stores,
    plan_store_dir,
    remove_created,
)
from .errors import (
    ConditionFailed,
    CorruptionError,
    InvalidArgumentError,
    NotSupportedError,
    StorageError,
)

__all__ = [
    "Append",
    "AsyncBackend",
    "Backend",
    "Capabilities",
    "ChangeFeed",
    "ChangeRecord",
    "Chunk",
    "Condition",
    "ConditionFailed",
    "Op",
    "RecentChanges",
    "RecordCheck",
    "StoreHandles",
    "VerifyProblem",
    "VerifyReport",
    "chunk_items",
    "chunk_keys",
    "config_signature",
    "create_store_dir",
    "decode_counter",
    "encode_counter",
    "foreign_position",
    "marker_path",
    "open_stores",
    "plan_commit",
    "plan_store_dir",
    "read_past_damage",
    "remove_created",
    "value_version",
]

_RANGE_CHUNK = 10_000
_SCAN_CHUNK = 256
#: A verification stops listing problems after this many (the count goes on).
MAX_REPORTED_PROBLEMS = 1000


class RecordCheck(Protocol):
    """A per-record check run by :meth:`Backend.verify`: called with a stored key and
    value (bytes), it returns a description of what is wrong with them, or ``None`` if
    they are fine."""

    def __call__(self, key: bytes, value: bytes, /) -> str | None: ...


#: One piece of a chunked scan: the keys, and the values at the same positions (``None``
#: for a keys-only scan).
Chunk = tuple[list[bytes], list[bytes] | None]


def chunk_items(chunks: Iterator[Chunk]) -> Iterator[tuple[bytes, bytes]]:
    """The ``(key, value)`` pairs of a chunked scan, one at a time: :meth:`Backend.scan`
    for an engine that implements :meth:`Backend.scan_chunks` natively."""
    for keys, vals in chunks:
        yield from zip(keys, vals, strict=True)  # type: ignore[arg-type]  # vals is a list: scanned with values=True


def chunk_keys(chunks: Iterator[Chunk]) -> Iterator[bytes]:
    """The keys of a chunked scan, one at a time (:meth:`Backend.scan_keys` likewise)."""
    for keys, _ in chunks:
        yield from keys


@dataclass(frozen=True, slots=True)
class VerifyProblem:
    """One problem found by a verification.

    Attributes:
        message: what is wrong, in words.
        key: the record's key where known: the stored key (bytes) in a backend's
            report, the decoded key in :meth:`Repository.verify`'s (the stored bytes
            when they do not decode).
        tenant: the record's tenant where known (repository reports only; for damage
            with no known key, the tenant of ``after``).
        path: the file involved, where known.
        after: for damage whose key is unknown (the engine only says a read failed),
            the last intact key read before it (stored bytes, or decoded in a
            repository's report).
        resume: for damage whose key is unknown, the first key read after it (as
            ``after``); ``None`` when nothing after it could be read. The records
            between ``after`` and ``resume`` could not be read or checked.
        resume_tenant: the tenant of ``resume`` (repository reports only; it may
            differ from ``tenant``, the tenant of ``after``).
    """

    message: str
    key: Any = None
    tenant: str | None = None
    path: str | None = None
    after: Any = None
    resume: Any = None
    resume_tenant: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of a verification (:meth:`Backend.verify`, ``Repository.verify()``).

    Attributes:
        records: how many records were read and checked.
        problems: what was found (at most :data:`MAX_REPORTED_PROBLEMS` of them).
        problem_count: how many problems were found in all.
        structure_checked: whether the engine's own file structure was checked too
            (not only the records read through it).
        unchecked: how many records lie in damaged regions that could not be read
            (see :attr:`VerifyProblem.resume`): 0 when every record was reached, an
            estimate where the engine can make one (RocksDB: from its key-count
            estimate), ``None`` when records were skipped and their number is unknown.
    """

    records: int
    problems: tuple[VerifyProblem, ...] = ()
    problem_count: int = 0
    structure_checked: bool = False
    unchecked: int | None = 0

    @property
    def ok(self) -> bool:
        """Whether nothing was found."""
        return self.problem_count == 0 and not self.problems


#: Records read one at a time after a chunk fails, looking for the damage, before the
#: failure is reported as one that did not repeat (a chunk fails as a whole, and the
#: damage may lie anywhere in it: more than any engine's chunk, RocksDB's are 4096).
_STEP_RECORDS = _RANGE_CHUNK
#: How deep :func:`read_past_damage` looks for records between damaged regions found
#: by one seek (each level is one more damaged block between them).
_MAX_DEPTH = 16
_DID_NOT_REPEAT = (
    "(the records after it then read one by one without this error: a read failure "
    "that did not repeat; verify again, and check the disk)"
)


def read_past_damage(
    backend: Backend,
    start: bytes,
    stop: bytes,
    damaged: Callable[[VerifyProblem], None],
    chunks: Callable[[bytes, bytes], Iterable[Chunk]] | None = None,
    *,
    _last: bytes | None = None,
    _depth: int = 0,
) -> Iterator[Chunk]:
    """The ``(keys, values)`` chunks of ``[start, stop)`` that read intact, in order,
    going on past damage; ``damaged`` is told of each damage as a
    :class:`VerifyProblem`. Used by :meth:`Backend.verify` and ``aurora-storage export
    --salvage``.

    A :class:`~aurora_storage.errors.CorruptionError` that names its stored key is one
    damaged record: the problem has that ``key`` and the read resumes after it. One
    that names none is a damaged region (RocksDB stops at a table block whose checksum
    fails, and cannot say which keys the block held): the records after the last
    intact one are read one by one up to the damage, then the first key whose seek
    reads again is found by bisection of the key space between there and ``stop``, and
    the read resumes from it. That problem has ``key=None``, ``after`` (the last key
    read before it) and ``resume`` (the first key read after it, ``None`` when nothing
    after it reads); the records between could not be read. A seek that lands between
    two damaged blocks may take both as one region: what is reported unread is never
    claimed read. An unordered engine cannot seek: its first keyless damage ends the
    read.

    Args:
        backend: the store.
        start: first key of the range.
        stop: end of the range (exclusive).
        damaged: called with each problem.
        chunks: how to read ``[lo, hi)`` in key order (default: ``backend.scan_chunks``).

    Raises:
        StorageError: any other failure of the store.
    """
    read = chunks if chunks is not None else backend.scan_chunks
    ordered = backend.capabilities.ordered_scans
    pos = start  # everything below it has been read, or reported
    last = _last  # the last key read intact
    while pos < stop:
        try:
            for keys, values in read(pos, stop):
                yield keys, values
                last = keys[-1]
                pos = last + b"\x00"
            return
        except CorruptionError as exc:
            bad = exc.stored_key
            if bad is None and isinstance(exc.key, bytes):
                bad = exc.key  # a backend written before stored_key existed
            if isinstance(bad, bytes) and pos <= bad < stop:
                # A chunk fails as a whole: read the records before the damaged one
                # again (a forward scan reports the first damaged key of a chunk).
                try:
                    for keys, values in read(pos, bad):
                        yield keys, values
                        last = keys[-1]
                        pos = last + b"\x00"
                except CorruptionError:
                    pass  # reported below, as a damaged region, from pos
                else:
                    damaged(VerifyProblem(str(exc), key=bad, path=exc.path))
                    pos = bad + b"\x00"
                    continue
            first = exc
        if not ordered:
            damaged(VerifyProblem(str(first), path=first.path, after=last))
            return
        # Up to the damage one record at a time: the records of the failed chunk
        # before it still read.
        stepped = 0
        before = last
        while stepped < _STEP_RECORDS:
            try:
                k = backend.first_key(pos, stop)
            except CorruptionError as exc:
                first = exc
                break
            if k is None:
                # Every record read after all: still a failed read, reported.
                damaged(VerifyProblem(f"{first} {_DID_NOT_REPEAT}", path=first.path, after=before))
                return
            try:
                v = backend.get(k)
            except CorruptionError as exc:
                damaged(VerifyProblem(str(exc), key=k, path=exc.path))
                pos = k + b"\x00"
                continue
            if v is not None:
                yield [k], [v]
                last = k
            pos = k + b"\x00"
            stepped += 1
        else:
            # No damage within reach of a seek: report the failed read, then read in
            # chunks again.
            damaged(VerifyProblem(f"{first} {_DID_NOT_REPEAT}", path=first.path, after=before))
            continue
        resume_at = _seek_past(backend, pos, stop)
        resume = None
        if resume_at is not None:
            try:
                resume = backend.first_key(resume_at, stop)
            except CorruptionError:
                resume = None
        if resume is None:
            # Nothing after the damage reads, up to stop (a nested call's stop is the
            # first key its caller read after it).
            end = stop if _depth else None
            damaged(VerifyProblem(str(first), path=first.path, after=last, resume=end))
            return
        # The seek may have jumped over records that read between two damaged blocks:
        # walk down from ``resume`` to the lowest key that reads.
        low, below = resume, None
        try:
            for keys, _ in backend.scan_chunks(pos, resume, reverse=True, values=False):
                low = keys[-1]
        except CorruptionError as exc:
            below = exc
        if below is not None and str(below) != str(first) and _depth < _MAX_DEPTH:
            # Other damage lies below them: read [pos, low) the same way (it reports
            # the damage at pos, and any records that read before the other one).
            told: list[str] = []

            def tell(problem: VerifyProblem, told: list[str] = told) -> None:
                told.append(problem.message)
                damaged(problem)

            for keys, values in read_past_damage(
                backend, pos, low, tell, chunks, _last=last, _depth=_depth + 1
            ):
                yield keys, values
                last = keys[-1]
            if str(below) not in told:  # both in one region: name the other file too
                damaged(VerifyProblem(str(below), path=below.path, after=last, resume=low))
        else:
            damaged(VerifyProblem(str(first), path=first.path, after=last, resume=low))
        pos = low


def _seek_past(backend: Backend, bad: bytes, stop: bytes) -> bytes | None:
    """A key in ``(bad, stop)`` from which a seek reads again (the first such key found
    by bisection of the byte strings between them), or ``None`` when every seek after
    ``bad`` fails. ``backend.first_key(bad, stop)`` is known to fail."""
    # Bytes past the longest key near the damage add nothing but seeks: a stop longer
    # than that (the key space's end) is cut to a prefix, which sorts before it.
    width = len(bad) + 16
    lo = int.from_bytes(bad.ljust(width, b"\x00"), "big")
    hi = int.from_bytes(stop[:width].ljust(width, b"\x00"), "big")
    ok: bytes | None = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        key = mid.to_bytes(width, "big")
        try:
            backend.first_key(key, stop)
        except CorruptionError:
            lo = mid
        else:
            hi, ok = mid, key
    return ok


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend supports. Compositions check these up front; the conformance
    suite skips the tests of anything not declared, with the reason.

    Attributes:
        ordered_scans: scans return keys in byte order, with start/stop bounds.
        atomic_batches: :meth:`Backend.write` applies all operations or none.
        persistent: data survives close and reopen.
        multi_process: several processes may open the same store for writing.
        thread_safe: one instance may be used from several threads at once.
        blocking_writes: a single write may block for long (fsync, network); async
            callers run writes in a worker thread instead of inline.
        read_only: this instance refuses writes with ReadOnlyError.
        conditional_writes: :meth:`Backend.commit` checks conditions (create-only,
            compare-and-set on :meth:`Backend.get_versioned` versions) atomically with
            its writes, in the engine (across processes too if ``multi_process``).
        sequences: :meth:`Backend.commit` assigns gap-free sequence numbers atomically
            with its writes.
        change_feed: :meth:`Backend.change_feed` delivers every change committed through
            this instance (in-process).
        multi_process_change_feed: the change feed also delivers the changes other
            processes commit to the same store.
        max_batch_ops: the most records one atomic batch (:meth:`Backend.write`,
            :meth:`Backend.commit`) may write - its operations, appended records and one
            counter record per sequence appended to - or ``None`` when the engine has no
            bound (the embedded engines: a transaction holds any number). A larger batch
            raises :class:`~aurora_storage.errors.BatchTooLargeError` with nothing
            written. NATS states its ``max_batch`` (JetStream's atomic publish is
            bounded). Writers of many records (the command line's import and copy, the
            default :meth:`Backend.delete_range`, a tiered pair's rebuild and catch-up)
            write batches of at most this many; the conformance suite checks that a
            batch of exactly this size commits and one more is refused.
    """

    ordered_scans: bool = True
    atomic_batches: bool = True
    persistent: bool = False
    multi_process: bool = False
    thread_safe: bool = True
    blocking_writes: bool = False
    read_only: bool = False
    conditional_writes: bool = False
    sequences: bool = False
    change_feed: bool = False
    multi_process_change_feed: bool = False
    max_batch_ops: int | None = None

    def __post_init__(self) -> None:
        bound = self.max_batch_ops
        if bound is not None and (type(bound) is not int or bound < 1):
            raise InvalidArgumentError(
                f"Capabilities.max_batch_ops must be None (no bound) or an int of at least "
                f"1, got {bound!r}: it is the most records one atomic batch may write"
            )


class AsyncBackend(ABC):
    """The optional native-async form of a backend whose engine client is asyncio (a
    network engine such as NATS): :class:`~aurora_storage.AsyncRepository` awaits these
    coroutines directly on the caller's event loop, with no thread hop per call.

    A backend offers it by returning an instance from :meth:`Backend.native_async`; the
    methods mean exactly what the synchronous ones of :class:`Backend` mean, and raise
    the same errors. Everything else the async repository does (counts, tenant drops,
    event-store calls) goes through the synchronous backend in a worker thread, so the
    backend must accept synchronous calls from a worker thread while its async form is
    in use on a loop. Embedded engines do not implement it: their calls take
    microseconds and run inline (see ``docs/concepts/async.md``).
    """

    @abstractmethod
    async def get(self, key: bytes) -> bytes | None:
        """See :meth:`Backend.get`."""

    @abstractmethod
    async def put(self, key: bytes, value: bytes) -> None:
        """See :meth:`Backend.put`."""

    @abstractmethod
    async def delete(self, key: bytes) -> bool:
        """See :meth:`Backend.delete`."""

    @abstractmethod
    async def insert(self, key: bytes, value: bytes) -> bool:
        """See :meth:`Backend.insert`."""

    @abstractmethod
    async def write(self, ops: Sequence[Op]) -> None:
        """See :meth:`Backend.write`."""

    @abstractmethod
    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """See :meth:`Backend.get_many`."""

    @abstractmethod
    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> AsyncIterator[Chunk]:
        """See :meth:`Backend.scan_chunks` (an async iterator)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook; nothing to release by default
        """Release what this form holds on the running loop (the async repository's
        close calls it before closing the backend)."""


def _first(it: Iterator[bytes]) -> bytes | None:
    """The first item of ``it`` (then closed), or ``None``."""
    try:
        return next(it, None)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _takes_limit(backend: Backend) -> bool:
    """Whether ``backend.scan_chunks`` accepts ``limit`` (an override written before
    the parameter existed does not)."""
    import inspect

    try:
        params = inspect.signature(backend.scan_chunks).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return "limit" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _raise_outside_range(
    backend: Backend, method: str, key: bytes, start: bytes, stop: bytes
) -> NoReturn:
    """Raise the error for a backend that returned ``key`` outside ``[start, stop)``
    from ``method``: a broken range contract, which the core refuses to act on."""
    raise StorageError(
        f"the {backend.describe()} backend's {method} returned the key {key!r}, outside "
        f"the range asked for [{start!r}, {stop!r}); the backend breaks the range "
        "contract of aurora_storage.backend (a plugin bug: run the conformance suite on "
        "it). Nothing was written.",
        backend=backend.scheme,
    )


class Backend(ABC):
    """Bytes in, bytes out, ordered scans, atomic batches, close.

    Subclasses set :attr:`scheme` and :attr:`capabilities` and implement the six abstract
    methods (:meth:`get`, :meth:`put`, :meth:`delete`, :meth:`write`, :meth:`scan`,
    :meth:`close`); the other methods have defaults built on those, which an engine
    overrides where it does better. ``docs/extending/writing-a-backend.md`` has the whole
    interface as one table (contract, errors, callers, default).

    **Errors.** Every method may raise only :mod:`aurora_storage.errors` exceptions,
    with the engine's exception chained. Besides what each method lists: every method
    raises :class:`~aurora_storage.errors.RepositoryClosedError` once :meth:`close` ran,
    :class:`~aurora_storage.errors.CorruptionError` when the engine detects damage, and
    :class:`~aurora_storage.errors.StoreLockedError`,
    :class:`~aurora_storage.errors.StorageFullError` or another
    :class:`~aurora_storage.errors.StorageError` for engine failures; writes raise
    :class:`~aurora_storage.errors.ReadOnlyError` on a read-only instance.

    **One read path.** Every read of many records - the repository's scans (sync and
    async), :meth:`verify`, ``tiered``'s reads of its tiers, the command line's export
    and copy, and the defaults of :meth:`count_range`, :meth:`first_key`,
    :meth:`last_key` and :meth:`delete_range` - goes through :meth:`scan_chunks`. Its
    default is built on :meth:`scan`; an engine that reads in chunks anyway overrides it
    and defines :meth:`scan` / :meth:`scan_keys` with :func:`chunk_items` /
    :func:`chunk_keys` over it.

    **Unordered engines** (``capabilities.ordered_scans`` false) still filter scans to
    ``[start, stop)`` but return keys in any order; the repository orders them (see
    ``aurora_storage._ordering``), and the defaults below are correct for them too.
    """

    #: The URL scheme this backend serves (used in messages and ``stats()``).
    scheme: str = "?"
    #: What this instance supports.
    capabilities: Capabilities = Capabilities()
    #: Whether :meth:`write_iter` copies each operation into the engine's own batch as
    #: it is produced (RocksDB's WriteBatch). The repository then hands it freshly
    #: encoded values it does not keep, instead of the exact-size copies it makes for
    #: values held until one write (see :attr:`~aurora_storage.codecs.Codec.encode_held`).
    streams_writes: bool = False
    #: Where this store's initialisation marker lives (a file-based engine sets it,
    #: usually ``aurora_storage.backend.marker_path(store_path)``); ``None`` for engines
    #: that keep no files. The repository writes the marker when it creates the store's
    #: metadata record, and refuses with CorruptionError a store whose marker exists but
    #: whose metadata record is gone, instead of initialising it again.
    marker_path: str | None = None
    #: The engine's own point read for ``Repository.get``'s fast path, or ``None`` (the
    #: default: the repository calls :meth:`get`). ``fast_get(key)`` returns what
    #: :meth:`get` returns, but may raise anything - the engine's exceptions,
    #: untranslated: the repository then asks :meth:`get` the same question, which
    #: raises the typed error (or returns the value, if the failure has passed). So an
    #: engine whose read needs no work of its own (no checksum, no copy) can be called
    #: without a Python frame in between, and errors are translated only when they
    #: happen. The repository reads the attribute at every call: an engine that swaps
    #: its read function (a reopen, a close, a fork) swaps this one with it.
    fast_get: Callable[[bytes], bytes | None] | None = None
    #: The identity of the store this instance reaches, for an engine whose separate
    #: instances in one process can reach one store (a network bucket: every open makes
    #: its own client), or ``None`` (the default: the instance is its own identity, right
    #: for engines that share one live handle per store, see :data:`open_stores`). Two
    #: instances with equal identities are one store to a tiered pair's ownership: while
    #: a pair owns it, every repository on either refuses writes. Any hashable value;
    #: leave credentials and client options out of it.
    store_id: Hashable | None = None

    def __init__(self) -> None:
        # Serialises the default read-then-write insert(); engines with a native
        # create-only write (LMDB's overwrite=False) override insert() instead.
        self._insert_lock = threading.Lock()

    @property
    def repository_class(self) -> type[Any] | None:
        """The :class:`~aurora_storage.Repository` subclass that
        :func:`aurora_storage.open` wraps this backend in, or ``None`` (the default) for
        ``Repository`` itself. An engine plugin returns its own subclass to add
        engine-specific methods (NATS's repository); the subclass is
        built through ``Repository._from_backend(backend, codec=..., url=...)``, so its
        ``__init__`` may take its own arguments. A class attribute of the same name works
        too."""
        return None

    # ------------------------------------------------------------------ required

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored at ``key``, or ``None`` if absent.

        Called by ``Repository.get`` and ``last_sequence``, the store's metadata check
        at open, and the defaults of :meth:`contains` (``has``), :meth:`insert` and
        :meth:`get_versioned`. Required."""

    @abstractmethod
    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` at ``key``, replacing any previous value. Durable per the
        backend's documented settings once it returns.

        Called by ``Repository.put``, the metadata record of a new store, and the
        :meth:`insert` default. Required."""

    @abstractmethod
    def delete(self, key: bytes) -> bool:
        """Remove ``key``; return whether it was present.

        Called by ``Repository.delete``. Required."""

    @abstractmethod
    def write(self, ops: Sequence[Op]) -> None:
        """Apply puts (``(k, v)``) and deletes (``(k, None)``) in order, atomically if
        ``capabilities.atomic_batches``: after a crash either all are visible or none,
        and a concurrent reader sees all or none.

        Called by ``Batch.commit`` (a batch without conditions), ``delete_many``, and the
        :meth:`write_iter` and :meth:`delete_range` defaults. Required."""

    @abstractmethod
    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` for ``start <= key < stop`` in byte order (descending if
        ``reverse``); in any order when ``capabilities.ordered_scans`` is false, but
        still only the keys of the range.

        A scan must never end early silently: an engine error (corruption) raises
        :class:`~aurora_storage.errors.CorruptionError` from the iterator, and an
        iterator advanced after :meth:`close` raises
        :class:`~aurora_storage.errors.RepositoryClosedError`.

        The primitive of the read path: the :meth:`scan_chunks` and :meth:`scan_keys`
        defaults call it; nothing else does. Required."""

    @abstractmethod
    def close(self) -> None:
        """Release the store (locks, files, maps). Idempotent. Live scan iterators must
        afterwards raise RepositoryClosedError rather than keep the store open.

        Called by ``Repository.close`` (and when an open fails after the backend was
        created). Required."""

    # ------------------------------------------------------------------ defaults

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """Like :meth:`scan` but keys only. Override when the engine can skip values.

        Called by the :meth:`scan_chunks` default for a keys-only scan. Default: the
        keys of :meth:`scan`."""
        for k, _ in self.scan(start, stop, reverse=reverse):
            yield k

    def write_iter(self, ops: Iterable[Op]) -> int:
        """Like :meth:`write`, for operations produced one at a time: ``ops`` is consumed
        once, and if producing it raises, nothing is written and that exception propagates
        unchanged. Returns how many operations were applied.

        Called by ``put_many``, so its keys and values are encoded while the batch is
        built. The default collects ``ops`` and calls :meth:`write`; engines with a batch
        object of their own override it (and set :attr:`streams_writes`).
        """
        batch = list(ops)
        if batch:
            self.write(batch)
        return len(batch)

    def write_puts(self, keys: Sequence[bytes], values: Iterable[bytes]) -> int:
        """Store ``values`` at ``keys`` (the i-th value at the i-th key) atomically, like
        :meth:`write` with puts only; return how many (``len(keys)``).

        ``values`` is an iterator producing the encoded values one at a time (the
        repository's codec runs as it is consumed): read it exactly once, in step with
        ``keys``, and do not ask it for more than ``len(keys)`` values. If producing a
        value raises, nothing is written and that exception propagates unchanged; an
        engine failure raises a typed :class:`~aurora_storage.errors.StorageError` with
        nothing written. ``keys`` is never empty; a key listed twice (the caller's items
        held it twice) ends with its later value, as in :meth:`write`.

        Called by ``put_many`` (``Repository.put_many`` and ``TenantView.put_many``, not
        the async twin's cancellable path, which uses :meth:`write_iter`). The keys come
        ready in one list, so an engine with a batch call of its own (RocksDB's
        WriteBatch, LMDB's ``putmulti``) fills it without a Python frame per item.
        Default: :meth:`write_iter` over the pairs (which defaults to :meth:`write`).
        """
        # Not strict: zip asks ``values`` for nothing past the last key.
        return self.write_iter(zip(keys, values, strict=False))

    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> Iterator[Chunk]:
        """The same records as :meth:`scan` (or :meth:`scan_keys` when ``values`` is
        false), as a stream of ``(keys, values)`` list pairs. Never yields an empty chunk.
        With ``limit``, at most that many records in all: an engine reads no more than
        it needs (``keys(t, prefix=p, reverse=True, limit=1)`` is one seek).

        The repository passes ``limit`` only to overrides that accept it (an older
        third-party override without the parameter still works: the repository then
        cuts the stream itself).

        **The read path** (see the class docstring): the repository's ``keys``,
        ``values``, ``items`` and ``list`` (sync and async), :meth:`verify`, ``tiered``,
        the command line's export and copy, and the defaults of :meth:`count_range`,
        :meth:`first_key`, :meth:`last_key` and :meth:`delete_range` read through it.
        Per-item work then happens in one Python loop (the caller's) instead of two
        stacked generators, and keys are decoded a chunk at a time. Engines that read in
        chunks anyway (RocksDB, LMDB, NATS) override it to hand their chunks over
        directly. The default cuts :meth:`scan` / :meth:`scan_keys` into chunks of 256
        records.

        Raises what :meth:`scan` raises, from the iterator.
        """
        src: Iterator[Any] = (
            self.scan(start, stop, reverse=reverse)
            if values
            else self.scan_keys(start, stop, reverse=reverse)
        )
        left = limit
        try:
            while left is None or left > 0:
                n = _SCAN_CHUNK if left is None else min(_SCAN_CHUNK, left)
                part = list(islice(src, n))
                if not part:
                    return
                if left is not None:
                    left -= len(part)
                if values:
                    yield [k for k, _ in part], [v for _, v in part]
                else:
                    yield part, None
        finally:
            close = getattr(src, "close", None)
            if close is not None:
                close()

    def contains(self, key: bytes) -> bool:
        """Whether ``key`` is present. Override when the engine can answer without
        reading (or verifying) the value.

        Called by ``Repository.has``. Default: ``get(key) is not None``."""
        return self.get(key) is not None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values for ``keys`` in order, ``None`` for absent ones.

        Called by ``Repository.get_many`` and ``delete_many`` (to count what it deletes).
        Default: :meth:`get` per key."""
        get = self.get
        return [get(k) for k in keys]

    def insert(self, key: bytes, value: bytes) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it was stored.

        Called by ``Repository.insert``. The default is correct for backends owned by one
        process (a read then a write under a lock); multi-process engines must override
        it with a native operation.
        """
        with self._insert_lock:
            if self.get(key) is not None:
                return False
            self.put(key, value)
            return True

    def _keys(self, start: bytes, stop: bytes, reverse: bool = False) -> Iterator[bytes]:
        """The keys of ``[start, stop)`` through the read path (:meth:`scan_chunks`)."""
        return chunk_keys(self.scan_chunks(start, stop, reverse=reverse, values=False))

    def _one_key(self, start: bytes, stop: bytes, reverse: bool) -> bytes | None:
        """The first key of an ordered scan, reading one record where the engine's
        :meth:`scan_chunks` takes ``limit`` (an older override without it reads one
        chunk)."""
        if _takes_limit(self):
            chunks = self.scan_chunks(start, stop, reverse=reverse, values=False, limit=1)
        else:
            chunks = self.scan_chunks(start, stop, reverse=reverse, values=False)
        return _first(chunk_keys(chunks))

    def delete_range(self, start: bytes, stop: bytes) -> int:
        """Delete every key in ``[start, stop)``; return how many there were.

        Called by ``Repository.drop_tenant`` (and ``TenantView.drop``). The default
        reads the keys through :meth:`scan_chunks` and deletes them with :meth:`write`
        in batches of 10,000 (or ``capabilities.max_batch_ops``, if smaller), so memory
        stays flat however large the range (it is therefore not one atomic batch). After
        each batch an ordered engine re-seeks after the batch's last key; an unordered
        one (``ordered_scans=False``) scans the range again from ``start``, since its
        batch's keys are in no order and the deleted ones are gone (``ceil(N / 10,000)``
        scans of what is left)."""
        total, lo = 0, start
        ordered = self.capabilities.ordered_scans
        step = min(_RANGE_CHUNK, self.capabilities.max_batch_ops or _RANGE_CHUNK)
        while True:
            scan = self._keys(lo, stop)
            try:
                keys = list(islice(scan, step))
            finally:
                # Released before writing: some engines refuse writes under a live
                # iterator, and a dict-backed one would see its size change.
                close = getattr(scan, "close", None)
                if close is not None:
                    close()
            if keys:
                if not start <= min(keys) or not max(keys) < stop:
                    # Deleting a key the scan should not have returned would delete
                    # another tenant's record: refuse, nothing deleted in this batch.
                    bad = next(k for k in keys if not start <= k < stop)
                    _raise_outside_range(self, "scan_chunks", bad, start, stop)
                self.write([(k, None) for k in keys])
                total += len(keys)
            if len(keys) < step:
                return total
            if ordered:
                lo = keys[-1] + b"\x00"

    def count_range(self, start: bytes, stop: bytes) -> int:
        """Number of keys in ``[start, stop)``.

        Called by ``Repository.count``. Default: counts the keys of :meth:`scan_chunks`
        chunk by chunk."""
        return sum(len(keys) for keys, _ in self.scan_chunks(start, stop, values=False))

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        """The smallest key in ``[start, stop)``, or ``None``.

        Called by ``Repository.tenants`` (one call per tenant) and by
        ``keys(..., limit=1)``. The default takes the first key of :meth:`scan_chunks`
        on an ordered engine, and the smallest of the whole range on an unordered one."""
        if not self.capabilities.ordered_scans:
            return min(self._keys(start, stop), default=None)
        return self._one_key(start, stop, False)

    # ------------------------------------------------------------------ event store

    def get_versioned(self, key: bytes) -> tuple[bytes, bytes] | None:
        """The value at ``key`` and its version, or ``None`` if absent.

        A version is opaque bytes that :meth:`commit` conditions compare with ``==``. The
        default derives it from the value (:func:`value_version`), which is what
        :func:`plan_commit` checks against; an engine with native revisions overrides
        both. Called by ``Repository.get_versioned``.
        """
        raw = self.get(key)
        return None if raw is None else (raw, value_version(raw))

    def version_of(self, value: bytes) -> bytes:
        """The version a conditionally written ``value`` has after :meth:`commit` (the
        repository returns it from ``compare_and_set``). Default: :func:`value_version`."""
        return value_version(value)

    def commit(
        self,
        ops: Sequence[Op],
        *,
        conditions: Sequence[Condition] = (),
        appends: Sequence[Append] = (),
    ) -> list[int]:
        """Apply ``ops`` atomically, only if every condition holds, numbering the records
        of ``appends`` with gap-free sequence numbers - all in one atomic step of the
        engine (one transaction, or under the write lock every write of the store takes).

        Conditions are evaluated against the state before the commit; ``ops`` then apply
        in order, then each append's records, then the counter updates. A backend that
        implements this declares ``capabilities.conditional_writes`` (and ``sequences``
        for appends); :func:`plan_commit` does the checking and numbering.

        Called by ``Batch.commit`` when the batch holds an ``insert``,
        ``compare_and_set`` or ``append``, and by ``Repository.compare_and_set``.

        Returns:
            The first number assigned to each append, in order.

        Raises:
            ConditionFailed: conditions failed; nothing was written.
            NotSupportedError: the default (the backend does not implement it).
        """
        raise NotSupportedError(
            f"the {self.scheme} backend does not support conditional commits or sequences "
            "(capabilities.conditional_writes / sequences are false)",
            backend=self.scheme,
        )

    def change_feed(self) -> ChangeFeed:
        """The store's change feed (``capabilities.change_feed``): every change committed
        after the feed starts, in commit order. Called by ``Repository.watch`` and
        ``Repository.last_position``; must return the same object on every call.

        Raises:
            NotSupportedError: the default (no change feed).
        """
        raise NotSupportedError(
            f"the {self.scheme} backend has no change feed (capabilities.change_feed is "
            "false); poll with scans instead",
            backend=self.scheme,
        )

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        """The largest key in ``[start, stop)``, or ``None``: "the newest key of this
        prefix", what ``Repository.keys(..., reverse=True, limit=1)`` asks. Override
        with the engine's seek-for-previous when the engine has one. Default: the first
        key of a reverse :meth:`scan_chunks` on an ordered engine, the largest of the
        whole range on an unordered one."""
        if not self.capabilities.ordered_scans:
            return max(self._keys(start, stop), default=None)
        return self._one_key(start, stop, True)

    def native_async(self) -> AsyncBackend | None:
        """The backend's native-async form (:class:`AsyncBackend`), or ``None`` (the
        default): the async repository then runs calls inline or in worker threads.

        Called once by ``AsyncRepository`` when it is created. An unordered engine's
        scans still go through the synchronous repository (which orders them)."""
        return None

    def flush(self) -> None:  # noqa: B027 - optional hook; a no-op is right for memory
        """Make every acknowledged write durable against an OS crash (fsync).

        Called by ``Repository.flush``. Default: nothing (right for memory)."""

    def stats(self) -> dict[str, Any]:
        """Engine figures: size on disk, key counts, engine-specific properties.

        Called by ``Repository.stats`` and ``aurora-storage info``. Default: ``{}``."""
        return {}

    def verify(self, *, check: RecordCheck | None = None) -> VerifyReport:
        """Read and check every record of the store; report what is damaged.

        Called by ``Repository.verify`` and ``aurora-storage verify``.

        Optional: the default scans the whole key space through :meth:`scan_chunks`,
        so every integrity check the engine makes on a read runs on every record, and
        calls ``check(key, value)`` on each (the repository passes one that decodes
        every key and value). Each :class:`~aurora_storage.errors.CorruptionError` from
        the scan becomes a problem and the scan goes on past the damage
        (:func:`read_past_damage`): after the damaged key when the error names it, else
        (a damaged region, such as a RocksDB table block) from the first key that reads
        again, found by seeking; the problem's ``after`` and ``resume`` bound the
        records that could not be read. ``unchecked`` is 0 when nothing was skipped,
        else ``None`` (an engine that can estimate the skipped records overrides this
        and fills it in). Engines that can check their file structure offline override
        this and run that check first (LMDB: its structural verifier).

        Returns:
            A :class:`VerifyReport`; a healthy store gives ``report.ok``.

        Raises:
            RepositoryClosedError: the backend is closed. Damage is reported, not
                raised, unless it stops the scan before it can begin.
        """
        records = 0
        problems: list[VerifyProblem] = []
        count = 0
        unchecked = 0

        def found(problem: VerifyProblem) -> None:
            nonlocal count
            count += 1
            if len(problems) < MAX_REPORTED_PROBLEMS:
                problems.append(problem)

        def damaged(problem: VerifyProblem) -> None:
            nonlocal records, unchecked
            if problem.key is not None:
                records += 1  # the damaged record was reached (and is the problem)
            else:
                unchecked = -1  # records were skipped; how many, the engine may estimate
            found(problem)

        for keys, values in read_past_damage(self, b"", KEY_SPACE_END, damaged):
            assert values is not None
            records += len(keys)
            if check is not None:
                for k, v in zip(keys, values, strict=True):
                    message = check(k, v)
                    if message is not None:
                        found(VerifyProblem(message, key=k))
        return VerifyReport(
            records=records,
            problems=tuple(problems),
            problem_count=count,
            unchecked=None if unchecked < 0 else 0,
        )

    def describe(self) -> str:
        """Short text naming this store in messages (e.g. its path).

        Called by the repository's error messages and ``repr``. Default: the scheme."""
        return self.scheme
