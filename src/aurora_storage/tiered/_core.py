"""The state one tiered pair shares between its parts, and the primitives they all use.

:class:`Pair` holds the two tiers, the frozen config, the change-log positions and the
writers' lock. The rule that makes every record apply exactly once under any fault lives
here: **after any error from the hot tier** - raised before, during or after its commit,
so hot may or may not hold the batch - ``pos_known`` becomes false, and
:meth:`Pair.ensure_position` re-reads the position from hot (where it is committed in
the same batch as the updates) before anything is applied again.

On a hot tier that other processes may write (``multi_process`` and
``conditional_writes``: LMDB, NATS) a second rule holds: **every hot batch that moves the
position is conditioned on hot's position record being the version this pair last read
or wrote** (:meth:`Pair.pos_write`). Two processes writing one pair share its hot store,
and one that read the position (say 5) and then applied entry 6 would otherwise commit
it even though the other process had applied entry 6 meanwhile: applied twice. A refused
batch (:class:`_PositionMoved`, nothing of it written) means another process applied
meanwhile: the pair re-reads the position and goes on from there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, NoReturn

import orjson

from .._keys import MAX_KEY_SIZE, NS_DATA, NS_DATA_END, decode_key_at, decode_tenant_key
from .._repository import Repository
from ..backend import Backend, Op, chunk_items, chunk_keys
from ..errors import (
    BatchTooLargeError,
    ConditionFailed,
    ConfigurationError,
    CorruptionError,
    KeyTooLargeError,
    ProjectionMisuseError,
    StorageError,
    StorageFullError,
    VersionConflictError,
)
from ._config import Policy, TieredConfig, TieredURL
from ._errors import DurableWriteError, HotTierError, HotTierFullError
from ._log import (
    HEAD,
    HISTORY_KEY_LIMIT,
    LOG,
    LOG_END,
    PAIR,
    POS,
    RUNNING,
    STOPPED,
    STOPPED_END,
    key_too_long,
    log_key,
    position,
    seq_bytes,
    seq_of,
    split,
)

__all__ = [
    "PROGRESS",
    "Pair",
    "TierBound",
    "_PositionMoved",
    "batch_limit",
    "checked_items",
    "damage_text",
    "damaged_tenant",
    "first",
    "items",
    "keys_of",
    "take",
]

log = logging.getLogger("aurora_storage.tiered")

#: keys deleted per hot transaction when clearing a range (flat memory)
CLEAR_CHUNK = 10_000

#: ``Pair.projecting`` while a rebuild's progress callback runs
PROGRESS = "progress"


def first(it: Iterator[Any]) -> Any:
    """The first item of an iterator (closing it), or ``None``."""
    try:
        for item in it:
            return item
        return None
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def items(backend: Backend, lo: bytes, hi: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The ``(key, value)`` records of ``[lo, hi)`` in key order, read through the one
    read path of every backend (:meth:`Backend.scan_chunks`)."""
    return chunk_items(backend.scan_chunks(lo, hi))


def keys_of(backend: Backend, lo: bytes, hi: bytes) -> Iterator[bytes]:
    """The keys of ``[lo, hi)`` in key order (:meth:`Backend.scan_chunks`, keys only)."""
    return chunk_keys(backend.scan_chunks(lo, hi, values=False))


def _close(it: Iterator[Any]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


def damage_text(exc: CorruptionError) -> str:
    """What the engine's ``exc`` says is damaged, without its remedy: the engine advises
    restoring its store from a backup, while a damaged record of a tiered pair's hot
    tier is derived again from cold (see :meth:`Pair.damage_error`)."""
    if exc.stored_key is not None:
        return f"the record stored at key {exc.stored_key!r} fails its integrity check"
    text = str(exc)
    cut = text.find(" Restore it from a backup")
    return text[:cut] if cut > 0 else text


def damaged_tenant(exc: CorruptionError) -> str | None:
    """The tenant whose stored record ``exc`` names as damaged (its ``stored_key``, a
    data key), or ``None`` (a system record, or a key that cannot be read)."""
    stored = exc.stored_key
    if stored is None or not NS_DATA <= stored < NS_DATA_END:
        return None
    try:
        return decode_tenant_key(stored)[0]
    except ValueError:
        return None


def checked_items(
    backend: Backend, lo: bytes, hi: bytes, what: str = ""
) -> Iterator[tuple[bytes, bytes | None]]:
    """:func:`items` of a hot range that goes on past damaged records: a record whose
    stored value fails its integrity check (``CorruptionError`` naming its own key) is
    yielded with ``None`` as its value - unknown, so it differs from every value - and
    logged (``what``: what is done with it). For the pair's repairs of its derived tier
    (a rebuild's switch, a cache warm-up or prune), which replace such a record without
    needing to read it: before, the first damaged record failed them all, so nothing
    could repair it. Any other error (a damaged page structure) is raised.

    Cost: nothing while no record is damaged; a failed chunk is read again key by key
    (a key scan, which reads no values, and one point read per key) up to the damaged
    record, then the chunked scan goes on after it.
    """
    start = lo
    while True:
        it = items(backend, start, hi)
        try:
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    return
                except CorruptionError:
                    break  # the chunk after ``start`` holds a damaged record
                start = item[0] + b"\x00"
                yield item
        finally:
            _close(it)
        found = False
        keys = keys_of(backend, start, hi)
        try:
            for k in keys:
                try:
                    raw = backend.get(k)
                except CorruptionError as exc:
                    if exc.stored_key is not None and exc.stored_key != k:
                        raise
                    log.warning(
                        "%s in the hot tier; hot is derived from cold, so it is %s",
                        damage_text(exc),
                        what or "replaced",
                    )
                    found = True
                    start = k + b"\x00"
                    yield k, None
                    break
                if raw is not None:  # None: deleted since the key scan read it
                    yield k, raw
        finally:
            _close(keys)
        if not found:
            return


def take(it: Iterator[Any], n: int) -> list[Any]:
    """Up to ``n`` items of an iterator (closing it)."""
    out: list[Any] = []
    try:
        for item in it:
            out.append(item)
            if len(out) >= n:
                break
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return out


def batch_limit(backend: Backend) -> int | None:
    """The most operations one atomic :meth:`Backend.write` of ``backend`` may hold, if
    it declares a bound (``capabilities.max_batch_ops``: a NATS bucket's ``max_batch``,
    JetStream's atomic publish is bounded), else ``None`` (an embedded engine's
    transaction is not). A backend written before that capability existed may still
    state it as a ``max_batch`` attribute (of itself or of its ``config``)."""
    declared = backend.capabilities.max_batch_ops
    if declared is not None:
        return declared
    for holder in (backend, getattr(backend, "config", None)):
        limit = getattr(holder, "max_batch", None)
        if type(limit) is int and limit > 0:
            return limit
    return None


class TierBound(NamedTuple):
    """One bounded tier's share of a pair's bound on a write (see
    :meth:`Pair.max_batch_ops`): its ``limit`` (``max_batch``) less the ``added``
    records the pair writes in the same batch as a write's records (``what``), and the
    ``least`` limit the pair works with at all."""

    tier: str  # "cold" or "hot"
    limit: int
    added: int
    what: str
    least: int

    @property
    def room(self) -> int:
        """The most records of a write this tier's batch takes."""
        return self.limit - self.added


class _PositionMoved(VersionConflictError):
    """A guarded hot batch (:meth:`Pair.pos_write`) was refused: hot's position record
    is not the version this pair last read or wrote, because another process writing the
    pair applied change-log entries meanwhile. Nothing of the batch was written, and
    ``pos_known`` is false (the position is re-read before anything is applied again).
    Internal: the pair's catch-up and writes handle it and go on from hot's position;
    the message is for the rare path that passes it on (a rebuild's switch that keeps
    losing to another process is redone, never passed on)."""


class Pair:
    """Two tiers, their config, and where each stands in the change log.

    Attributes:
        seq: the last change-log sequence number in cold (valid only while
            ``seq_known``).
        seq_known: false after a cold batch whose outcome could not be confirmed (its
            answer was lost and the log could not be read), or whose change-log entry
            another writer had taken, until :meth:`ensure_seq` re-reads it from cold.
        pos: the last one applied to hot (valid only while ``pos_known``).
        saved: the last one recorded in hot (``POS``); cache mode records it lazily.
        pos_known: false after any hot-tier error, until the position is re-read.
        guard: hot may be written by other processes: every hot batch that moves the
            position is conditioned on ``pos_version`` (see :meth:`pos_write`), and cache
            mode records the position with every write (not lazily).
        pos_version: ``guard``: the version of hot's position record as this pair last
            read or wrote it (``None``: absent).
        stopped: tenant prefix -> stop record, for tenants stopped by a poison record.
    """

    def __init__(
        self,
        hot: Repository[Any, Any],
        cold: Repository[Any, Any],
        config: TieredConfig,
        url: TieredURL | None,
    ) -> None:
        self.hot = hot
        self.cold = cold
        self.config = config
        self.projection = config.projection
        self.mode = config.mode
        #: the poison policy (projection mode; a cache pair applies no projection, and
        #: its config has no on_poison: this is then only a placeholder)
        self.on_poison: Policy = config.on_poison or "stop"
        #: the longest stored key the pair's writes take: every engine's in cache mode
        #: (no shadow), less the parked and shadow prefixes for history (see _log)
        self.key_limit = MAX_KEY_SIZE if self.projection is None else HISTORY_KEY_LIMIT
        self.url = url
        self.read_only = hot.capabilities.read_only or cold.capabilities.read_only
        #: the most operations one hot batch may hold (None: no bound); see batch_limit
        self.hot_batch = batch_limit(self.hb)
        self.lock = threading.RLock()
        self.closed = False
        self.seq = 0
        self.seq_known = True
        caps = cold.capabilities
        #: cold may be written by another process, or may apply a batch whose answer was
        #: lost after the pair re-read its log (a network engine): each change-log entry
        #: is then written create-only (see cold_write). Off for a single-process cold
        #: (RocksDB), whose outcome is always known: a plain batch, no condition to check.
        self.create_only = caps.multi_process and caps.conditional_writes
        #: create_only: the version of cold's HEAD record this pair last saw (None:
        #: absent), read with ``seq`` (see read_log) or set by its own cold batch. Every
        #: create-only batch is conditioned on it and writes HEAD again, so a batch of a
        #: pair whose ``seq`` is stale is refused even when the entry it would take was
        #: written by another process and trimmed since (see cold_batch).
        self.head: bytes | None = None
        #: create_only: the next batch also checks that its change-log entry is absent
        #: (HEAD is missing - a store written before HEAD existed - or names another
        #: entry than the log's last, see read_log)
        self.check_entry = True
        hcaps = hot.capabilities
        self.guard = hcaps.multi_process and hcaps.conditional_writes and not self.read_only
        #: the bounded tiers' shares of the bound on a write (see max_batch_ops), and
        #: that bound (None: neither tier is bounded); a writable pair whose bound is
        #: below 1 is refused at open (check_bounds)
        self.tier_bounds = self._tier_bounds()
        self.batch_bound = min((b.room for b in self.tier_bounds), default=None)
        self.pos_version: bytes | None = None
        self.pos = 0
        #: the nonce of change-log entry ``pos`` (b"": not known, or an entry written
        #: before nonces); recorded in hot with the position (see _log.NONCED)
        self.pos_nonce = b""
        self.saved = 0
        self.pos_known = True
        #: hot lost the pair's record while the pair ran (see ensure_position): the next
        #: catch_up derives it again from cold
        self.hot_lost = False
        self.trimmed = 0
        self.needs_drop_finish = False
        #: the REBUILD marker of a switch (or its shadow removal) a hot failure
        #: interrupted in this process: the next write, catch_up() or rebuild finishes it
        self.swap_pending: bytes | None = None
        self.stopped: dict[bytes, bytes] = {}
        self.pair_meta = b""
        self.recovered = 0
        #: projection mode: the writes' reusable Applier (see _append.append), or None
        self.writer: Any = None
        #: who is running user code under ``lock``, which the pair's writes, maintenance
        #: and close() then refuse (ProjectionMisuseError): the HistoryRecord being
        #: projected (Applier.apply), PROGRESS during a rebuild's progress callback, or
        #: None. Set and cleared by the thread holding ``lock``, so only that thread can
        #: see it set.
        self.projecting: Any = None

    # ------------------------------------------------------------------ backends

    @property
    def hb(self) -> Backend:
        """The hot tier's backend, as the hot repository has it NOW: read on each use,
        never kept, so :func:`~aurora_storage.observability.instrument` (which puts a
        wrapper between a repository and its backend after the pair is built) and
        ``uninstrument`` reach the pair's own calls too."""
        return self.hot._backend

    @property
    def cb(self) -> Backend:
        """The cold tier's backend, as the cold repository has it now (see :attr:`hb`)."""
        return self.cold._backend

    # ------------------------------------------------------------------ naming

    def describe(self) -> str:
        """The pair in messages (secrets hidden, nested tier URLs included)."""
        if self.url is not None:
            return str(self.url)
        return f"tiered(hot={self.hot._describe()}, cold={self.cold._describe()})"

    def hot_name(self) -> str:
        return self.hot._describe()

    def cold_name(self) -> str:
        return self.cold._describe()

    # ------------------------------------------------------------------ positions

    def last_seq(self) -> int:
        """The last change-log sequence number in cold (0 if none)."""
        k = self.cb.last_key(LOG, LOG_END)
        return 0 if k is None else seq_of(k)

    def read_log(self) -> None:
        """Read where cold's change log stands: ``seq`` (its last entry) and, when
        ``create_only``, the HEAD record's version that the next cold batch is
        conditioned on.

        HEAD is read FIRST: any entry another process writes after that read changes
        HEAD, so the next batch is refused (a needless refusal at worst, never a reused
        number) even if ``seq`` was read after that entry was written.

        Raises:
            the cold tier's error: nothing was changed in the pair.
        """
        if not self.create_only:
            self.seq = self.last_seq()
            self.seq_known = True
            return
        got = self.cb.get_versioned(HEAD)
        seq = self.last_seq()
        self.seq, self.seq_known = seq, True
        if got is None:
            self.head, self.check_entry = None, True
        else:
            self.head = got[1]
            self.check_entry = got[0][:8] != seq_bytes(seq)

    def ensure_seq(self) -> None:
        """Re-read the last sequence number from cold if a cold batch's outcome was left
        unknown, or another writer took an entry (see ``seq_known``). Every operation that
        writes a change-log entry calls this before it takes ``seq + 1``.

        Raises:
            the cold tier's error: the log could not be read; nothing was written.
        """
        if not self.seq_known:
            self.read_log()

    def hot_get(self, key: bytes) -> bytes | None:
        """Hot's value of one of the pair's own records (``key``, a system key), read as
        absent when the lookup of an absent key fails only because a record beside it
        is damaged (LMDB checks a miss's neighbours, see below).

        Why: LMDB's checksum covers key and value, so a lookup that finds nothing checks
        the records around the key, since one of them may be the wanted record with its
        key damaged; when a neighbour fails its check under its own key and under the
        wanted one too, the engine cannot rule out a record whose key AND value were
        both damaged, and raises. For a generic store that is right (a silent miss could
        make a create-only write a second copy). Here the neighbour is a projection or
        cache record of a tenant (a data key): the pair's record could only be it if
        damage had moved its key out of the system namespace as well as damaged its
        value, and the damaged record itself is met, and repaired, where it is read
        (its tenant is stopped, or read from cold). A damaged record of the pair's own
        is still raised.

        Raises:
            CorruptionError: the record itself (or a system record beside it) is
                damaged.
        """
        try:
            return self.hb.get(key)
        except CorruptionError as exc:
            stored = exc.stored_key
            if stored is None or stored == key or not NS_DATA <= stored < NS_DATA_END:
                raise
            log.warning(
                "tiered %s: the lookup of the pair's record %r found a damaged record "
                "of a tenant beside it (%s): read as absent",
                self.describe(),
                key,
                damage_text(exc),
            )
            return None

    def damage_error(self, exc: CorruptionError, tenant: str | None = None) -> CorruptionError:
        """The error for a read of the hot tier that met a damaged record (``exc``, the
        engine's): hot is derived, so the remedy is to derive it again, never to restore
        it from a backup. ``tenant``: the tenant read, when the engine's error names no
        tenant's record."""
        whose = damaged_tenant(exc) or tenant
        if self.mode == "projection":  # (a read-only reader without the projection too)
            fix = (
                f"rebuild({whose!r}) re-derives it from history"
                if whose is not None
                else "rebuild() re-derives it from history"
            )
        else:
            fix = "rebuild() copies cold into it again"
        return CorruptionError(
            f"a record of the hot tier {self.hot_name()} is damaged: {damage_text(exc)}. "
            "The hot tier "
            f"is derived from the cold tier {self.cold_name()}, which is intact: {fix} "
            "(or close the pair, delete the hot store and open the pair again: an empty "
            "hot is derived from cold at open); the cold tier needs no restore",
            backend="tiered",
            tenant=whose,
            stored_key=exc.stored_key,
        )

    def position_of(self, seq: int) -> bytes:
        """Hot's POS record for position ``seq``: the number and the nonce of cold's
        change-log entry ``seq`` (read from cold: for rebuilds and resets, never on the
        write path; no nonce when there is no such entry or it has none)."""
        raw = self.cb.get(log_key(seq)) if seq > 0 else None
        return seq_bytes(seq) + (b"" if raw is None else split(raw)[0])

    def first_log_seq(self) -> int | None:
        k = self.cb.first_key(LOG, LOG_END)
        return None if k is None else seq_of(k)

    def reload_position(self) -> None:
        """Read hot's recorded position and stopped tenants (what hot really holds), and,
        when ``guard``, the position record's version the next position write is
        conditioned on (read first: a batch applied after this read moves it)."""
        if self.guard:
            got = self.hb.get_versioned(POS)
            raw, self.pos_version = (None, None) if got is None else got
        else:
            raw = self.hb.get(POS)
        self.pos, self.pos_nonce = position(raw)
        self.saved = self.pos
        stopped = {k[len(STOPPED) :]: v for k, v in items(self.hb, STOPPED, STOPPED_END)}
        self.stopped.clear()  # in place: appliers hold this dict
        self.stopped.update(stopped)
        self.pos_known = True

    def ensure_position(self) -> None:
        """Re-read the position from hot if a hot-tier error made it uncertain.

        Cache mode keeps its in-memory position: it is never ahead of what hot holds,
        and replaying a cache entry writes cold's current value (idempotent), whereas
        hot's recorded position is saved lazily and would only replay more. Not when
        ``guard``: then every cache write records the position (it is exact), and the
        version read with it is what the next write is conditioned on.
        """
        if not self.pos_known:
            if not self.read_only and self.hot_get(PAIR) is None:
                # Hot lost the pair's record under the running pair (a NATS bucket
                # deleted and created again): its position says nothing about what it
                # holds. catch_up derives it from scratch (reset_hot), never from 0
                # against a trimmed log.
                self.hot_lost = True
            if self.mode == "cache" and not self.hot_lost and not self.guard:
                self.pos_known = True
            else:
                self.reload_position()

    # ------------------------------------------------------------------ tier writes

    def hot_write(self, ops: Sequence[Op]) -> None:
        """One atomic hot batch; any error leaves the position uncertain."""
        try:
            self.hb.write(ops)
        except BaseException:
            self.pos_known = False
            raise

    def pos_write(self, ops: Sequence[Op]) -> None:
        """One atomic hot batch whose LAST operation writes the position record ``POS``.

        When ``guard``, it is committed only if ``POS`` is still the version this pair
        last read or wrote (``pos_version``, then set to the written value's version):
        a batch projected on what another process has since changed, or applying an
        entry it has since applied, is refused. Cost: one read of ``POS`` inside the
        write (LMDB: in its write transaction; NATS: the conditional commit's round of
        reads).

        Raises:
            _PositionMoved: another process moved the position; nothing was written.
            the hot tier's error: the position is uncertain (re-read before applying).
        """
        try:
            if self.guard:
                self.hb.commit(ops, conditions=((POS, self.pos_version),))
                key, value = ops[-1]
                assert key == POS  # the convention this method documents
                assert value is not None
                self.pos_version = self.hb.version_of(value)
            else:
                self.hb.write(ops)
        except ConditionFailed as exc:
            self.pos_known = False
            raise self.position_moved() from exc
        except BaseException:
            self.pos_known = False
            raise

    def position_moved(self) -> _PositionMoved:
        """The refusal of a guarded hot batch (see :meth:`pos_write`)."""
        return _PositionMoved(
            f"the position of the hot tier {self.hot_name()} was moved by another process "
            "writing this tiered pair since this process read it: nothing of this hot "
            "batch was written; the position is re-read before anything is applied "
            "again (hot is caught up from there)",
            expected=self.pos_version,
            backend="tiered",
        )

    def cold_write(self, ops: Sequence[Op], seq: int) -> None:
        """Step 1 of a write: one atomic cold batch holding change-log entry ``seq``
        (the last operation of ``ops``). Guarded when ``create_only`` (see
        :meth:`cold_batch`).

        Raises:
            DurableWriteError: cold reported an error but the batch is there (e.g. a
                failed sync after the commit): the write is durable.
            VersionConflictError: another writer took change-log entry ``seq`` (another
                process writes this pair, or an earlier write whose answer was lost
                landed): nothing of this write was written.
            the cold tier's error: nothing was written, or (when the outcome could not be
                confirmed) the next write re-reads the log first.
        """
        try:
            if self.create_only:
                self.cold_batch(ops, seq)
            else:
                self.cb.write(ops)
        except ConditionFailed as exc:
            raise self.log_taken(seq) from exc
        except BaseException as exc:
            self.cold_failed(exc, seq, ops[-1][1])
        self.seq = seq

    def cold_batch(self, ops: Sequence[Op], seq: int) -> None:
        """The create-only cold batch of change-log entry ``seq`` (the last operation of
        ``ops``, nonced): ``ops`` plus cold's HEAD record (``seq`` + the entry's nonce),
        committed only if HEAD is still the version this pair last saw - no other writer
        wrote an entry since this pair read or wrote the log. A check of the entry's key
        alone is not enough: a trim deletes applied entries, so the entry a stale pair
        would take may be absent again although another process wrote it. HEAD lies
        outside the log range and no trim deletes it. On a store without HEAD (written
        before it existed) the batch is conditioned on HEAD being absent AND on the
        entry being absent.

        Cost: one small put in the batch; the condition's read replaces the entry's
        (LMDB: inside the write transaction; NATS: the one round of reads the
        conditional commit makes, with the server refusing the batch if HEAD changed).

        Raises:
            ConditionFailed: HEAD (or the entry) is not as this pair last saw it;
                nothing was written.
            the cold tier's error.
        """
        entry_key, entry = ops[-1]
        assert entry is not None
        head = seq_bytes(seq) + split(entry)[0]
        if self.check_entry:
            conditions: tuple[tuple[bytes, bytes | None], ...] = (
                (HEAD, self.head),
                (entry_key, None),
            )
        else:
            conditions = ((HEAD, self.head),)
        self.cb.commit([*ops, (HEAD, head)], conditions=conditions)
        self.head = self.cb.version_of(head)
        self.check_entry = False

    def log_taken(self, seq: int) -> VersionConflictError:
        """The error for a create-only cold batch refused because change-log entry
        ``seq`` was taken by another writer (it exists, or cold's HEAD moved past this
        pair's view: written and maybe trimmed since): nothing was written, and both
        positions are re-read before the next write (the log and hot moved without this
        pair)."""
        self.seq_known = False
        self.pos_known = False
        return VersionConflictError(
            f"change-log entry {seq} of the cold tier {self.cold_name()} was already taken "
            "by another writer: another process writes this tiered pair, or an earlier "
            "write of this pair whose answer was lost landed after all. Nothing of this "
            "write was written; the pair re-reads the log before its next write, so "
            "writing it again is safe. Keep one writing process per pair",
            expected=None,
            actual=seq,
            backend="tiered",
        )

    def cold_failed(self, exc: BaseException, seq: int, entry: bytes | None = None) -> NoReturn:
        """Raise the error for cold batch ``seq`` (change-log ``entry``) that raised
        ``exc`` (see :meth:`cold_write`; called from its ``except``)."""
        # Take the sequence number from the log itself, so the next entry never
        # overwrites one that exists, and tell the truth about this one.
        try:
            got = self.cb.get(log_key(seq)) if entry is not None else None
            self.read_log()  # seq, and the HEAD a late landing of this batch would move
        except Exception:
            # The outcome is unknown (the answer was lost and the log cannot be read):
            # the batch may have committed. The next write re-reads the log first.
            self.seq_known = False
            raise exc from None
        last = self.seq
        ours = got == entry if entry is not None else last >= seq
        if ours and isinstance(exc, Exception):
            raise DurableWriteError(
                f"the cold tier {self.cold_name()} reported {type(exc).__name__}: {exc}, "
                f"but the write is durable in history (change-log seq {seq}); do not "
                "write it again. Hot catches up on the next write, catch_up() or open",
                seq=seq,
                backend="tiered",
            ) from exc
        raise exc

    def hot_failed(self, seq: int, exc: BaseException) -> HotTierError:
        """The error for a write that is in cold but not applied to hot."""
        cls = HotTierFullError if isinstance(exc, StorageFullError) else HotTierError
        return cls(
            f"the write is durable in the cold tier {self.cold_name()} (history, "
            f"change-log seq {seq}) but the hot tier {self.hot_name()} failed to apply "
            f"it: {type(exc).__name__}: {exc}. Nothing is lost: hot catches up on the "
            "next write, catch_up() or open",
            seq=seq,
            backend="tiered",
        )

    def save_pos(self, *, closing: bool = False) -> None:
        """Cache mode: record hot's position in hot, then trim the log behind it.

        ``closing``: the clean close of a pair whose hot is current (``pos == seq``):
        the same hot batch also removes the ``RUNNING`` mark (cache mode), because hot
        then holds nothing past the position it records; an open that finds the mark
        prunes hot against cold (see _recovery.prune_cache)."""
        if not self.pos_known:
            return
        ops: list[Op] = []
        if closing and self.mode == "cache":
            ops.append((RUNNING, None))
        moved = self.pos != self.saved
        if moved:
            ops.append((POS, seq_bytes(self.pos) + self.pos_nonce))  # last: see pos_write
        if not ops:
            return
        try:
            if moved:
                self.pos_write(ops)
            else:
                self.hot_write(ops)
        except _PositionMoved:
            return  # another process recorded a position since: nothing to add (guard)
        except Exception as exc:
            raise self.hot_failed(self.pos, exc) from exc
        self.saved = self.pos
        self.trim()

    def trim(self) -> None:
        """Delete the applied change log (up to hot's recorded position), keeping the last
        entry, whose key tells the next sequence number."""
        upto = min(self.saved, self.seq)
        if upto <= self.trimmed:
            return
        try:
            self.cb.delete_range(log_key(self.trimmed), log_key(upto))
        except StorageError:
            return  # housekeeping only: retried at the next trim
        self.trimmed = upto

    def _tier_bounds(self) -> list[TierBound]:
        """The bounded tiers' shares of the pair's bound (see :meth:`max_batch_ops`),
        cold first: the tier named when both bound a write alike."""
        bounds = []
        cold = batch_limit(self.cb)
        if cold is not None:
            if self.create_only:  # see cold_batch
                bounds.append(TierBound("cold", cold, 2, "its change-log entry and HEAD record", 3))
            else:
                bounds.append(TierBound("cold", cold, 1, "its change-log entry", 2))
        if self.hot_batch is not None:
            # The position: projection mode always writes it with the updates; cache mode
            # when guard (see _cache.write). The least is 2 in every mode: the pair's own
            # hot batches hold two records (a rebuild's marker with the pair's record or
            # with the position; the position with a stopped tenant's record).
            added = 1 if self.projection is not None else int(self.guard)
            bounds.append(TierBound("hot", self.hot_batch, added, "the position", 2))
        return bounds

    def max_batch_ops(self) -> int | None:
        """The most records one write of the pair may hold (its
        ``capabilities.max_batch_ops``), or ``None`` when neither tier is bounded.

        Cold's bound less what the pair adds to the cold batch: the change-log entry,
        and HEAD when ``create_only`` (see :meth:`cold_batch`). Hot's bound less the
        position: cache mode adds it to the hot batch when ``guard`` (see
        :func:`._cache.write`); projection mode always, and counts one hot update per
        record - a projection that writes more per record can still exceed hot's bound,
        which refuses that write (BatchTooLargeError, nothing written). A write of more
        records is refused by the pair itself (:meth:`check_batch`).
        """
        bound = self.batch_bound
        if bound is None:
            return None
        # A writable pair's bound is at least 1 (check_bounds refuses it at open). A
        # read-only pair writes nothing and is not refused for a tier too small to write
        # through; it states the capability's floor.
        return max(1, bound)

    def check_bounds(self) -> None:
        """Refuse to open a writable pair with a tier too small for it: a cold
        ``max_batch`` that takes no record beside what the pair adds to each write, or a
        hot one below the two records the pair writes in one hot batch itself (see
        :meth:`_tier_bounds`). Such a pair would state a bound (at least 1, the
        capability's floor) that it then refuses, breaking the rule that a batch of
        exactly ``max_batch_ops`` commits.

        Raises:
            ConfigurationError: names each tier too small, its ``max_batch``, why, and
                the least that works; nothing was written (called before the pair
                claims or writes either store).
        """
        if self.read_only:
            return
        small = [b for b in self.tier_bounds if b.limit < b.least]
        if not small:
            return
        parts = []
        for b in small:
            name = self.cold_name() if b.tier == "cold" else self.hot_name()
            if b.tier == "cold":
                why = (
                    f"each write adds {b.what} to its records there, so not even one "
                    "record would fit"
                )
            else:
                why = (
                    "the pair writes two records in one hot batch itself (a rebuild's "
                    "marker with the pair's record, the position with a record)"
                )
            ops = "operation" if b.limit == 1 else "operations"
            parts.append(
                f"the {b.tier} tier {name} takes at most {b.limit} {ops} in one atomic "
                f"batch (max_batch={b.limit}), but {why}"
            )
        fixes = " and ".join(f"a {b.tier} max_batch of at least {b.least}" for b in small)
        raise ConfigurationError(
            f"the tiered pair {self.describe()} cannot write through its tiers: "
            f"{'; '.join(parts)}. Open the pair with {fixes} (for NATS, the max_batch "
            "option of the bucket's URL; the server's jetstream.limits.batch.max_msgs "
            "must allow it too); nothing was written",
            backend="tiered",
        )

    def check_batch(self, size: int) -> None:
        """Refuse a write of ``size`` records over the pair's bound (:meth:`max_batch_ops`)
        before either tier is written. Refused before cold, because a write cold took
        that hot cannot apply in one batch would stop every later catch-up at it (the
        entry cannot be split); and by the pair, because a tier's own refusal counts the
        records the pair adds into its ``size`` and advises the tier's bound, which the
        pair's writes cannot reach.

        Raises:
            BatchTooLargeError: ``size`` the write's records, ``limit`` the bounding
                tier's ``max_batch`` and ``internal`` the records the pair adds to that
                tier's batch (``limit - internal`` is the pair's bound); the message
                advises writes of at most the pair's bound, or the least ``max_batch``
                of each tier the write is over. Nothing was written.
        """
        bound = self.batch_bound
        if bound is not None and size > bound:
            raise self.too_large(size, bound)

    def too_large(self, size: int, bound: int) -> BatchTooLargeError:
        """The error for a write of ``size`` records over the pair's ``bound`` (see
        :meth:`check_batch`)."""
        over = [b for b in self.tier_bounds if size > b.room]
        first = min(over, key=lambda b: b.room)  # the bound the pair states (cold first)
        name = self.cold_name() if first.tier == "cold" else self.hot_name()
        plus = f" plus {first.what}" if first.added else ""
        fixes = " and ".join(f"a {b.tier} max_batch of at least {size + b.added}" for b in over)
        more = (
            " (more if the projection writes more than one update per record)"
            if self.projection is not None and any(b.tier == "hot" for b in over)
            else ""
        )
        return BatchTooLargeError(
            f"the write needs {size} {first.tier} operations{plus} in one atomic batch, "
            f"more than the {first.tier} tier {name} may hold ({first.limit}, its "
            f"max_batch): this tiered pair takes at most {bound} records in one write "
            "(its capabilities.max_batch_ops), so the write is refused; nothing was "
            f"written to either tier. Split it into writes of at most {bound} records, or "
            f"open the pair with {fixes}{more} (for NATS, raise the server's "
            "jetstream.limits.batch.max_msgs with it)",
            size=size,
            internal=first.added,
            limit=first.limit,
            backend="tiered",
        )

    def hot_write_sliced(self, ops: Sequence[Op]) -> None:
        """Hot batches of at most ``hot_batch`` operations each (one batch when hot
        declares no bound): for writes whose atomicity nothing relies on (the shadow a
        rebuild builds, which a failure discards whole; a range being cleared)."""
        step = self.hot_batch
        if step is None or len(ops) <= step:
            self.hot_write(ops)
            return
        for i in range(0, len(ops), step):
            self.hot_write(ops[i : i + step])

    def clear_hot(self, lo: bytes, hi: bytes) -> None:
        """Delete a hot key range in bounded transactions."""
        chunk = min(CLEAR_CHUNK, self.hot_batch or CLEAR_CHUNK)
        while True:
            keys = take(keys_of(self.hb, lo, hi), chunk)
            if not keys:
                return
            self.hot_write([(k, None) for k in keys])
            if len(keys) < chunk:
                return
            lo = keys[-1] + b"\x00"

    # ------------------------------------------------------------------ helpers

    def misuse(self, method: str, outcome: str = "nothing was written") -> ProjectionMisuseError:
        """The error for ``method`` (``"put()"``) called on this pair by the user code it
        is running under its lock (``projecting``: a projection, or a rebuild's progress
        callback). ``outcome``: what the refused call did instead."""
        who = self.projecting
        if who is PROGRESS:
            tenant, key = None, None
            caller, during = "the progress callback of a rebuild", "the rebuild was running"
            fix = f"call {method} after rebuild() returns"
        else:
            tenant, key = who.tenant, who.key
            caller = f"a projection, applying the record {key!r} of tenant {tenant!r},"
            during = "that record was being applied"
            fix = (
                "projections must be free of side effects (recovery and rebuild() run "
                f"them again): call {method} after the write returns"
            )
        return ProjectionMisuseError(
            f"{caller} called {method} on its own tiered repository {self.describe()} "
            f"while {during}; {outcome}. Fix: {fix}",
            tenant=tenant,
            key=key,
            backend="tiered",
        )

    def history_key(self, tenant: str, key: Any) -> bytes:
        """The stored key of the record ``(tenant, key)`` a write puts in cold (validated,
        encoded), held to :attr:`key_limit`.

        Raises:
            KeyTooLargeError: longer than :attr:`key_limit`: in projection mode the
                pair's error (its limit and why) for every such key, also one past the
                511 bytes of every engine, which the repository's own check refuses
                first with that limit; nothing was written.
            InvalidTenantError, InvalidKeyError: as :meth:`Repository.put`.
        """
        try:
            full = self.cold._full(tenant, key)
        except KeyTooLargeError as exc:
            # stored_key is None when no key could be encoded (a number too large)
            if self.projection is None or exc.stored_key is None:
                raise
            raise self.key_too_long(exc.stored_key, tenant, key) from None
        if len(full) > self.key_limit:
            raise self.key_too_long(full, tenant, key)
        return full

    def key_too_long(self, full: bytes, tenant: str, key: Any) -> KeyTooLargeError:
        """The error for a history key longer than :attr:`key_limit` (cache mode never
        gets here: the repository's own check holds its keys to every engine's limit)."""
        return key_too_long(full, "history", tenant, key)

    def check_keys(self, ops: Sequence[Op]) -> None:
        """Refuse a write holding a put whose key is longer than :attr:`key_limit`.

        Raises:
            KeyTooLargeError: names the key and the pair's limit; nothing was written.
        """
        limit = self.key_limit
        for full, data in ops:
            if data is not None and len(full) > limit:
                tenant, offset = self.split(full)
                raise self.key_too_long(full, tenant, decode_key_at(full, offset))

    def split(self, full: bytes) -> tuple[str, int]:
        """(tenant, key offset) of a stored data key."""
        try:
            return decode_tenant_key(full)
        except ValueError as exc:
            raise CorruptionError(f"a history key has a damaged tenant: {exc}") from exc

    def no_history_deletes(self) -> NoReturn:
        from ..errors import ReadOnlyError

        raise ReadOnlyError(
            "history is append-only in projection mode: records cannot be deleted or "
            "overwritten (drop_tenant() removes a tenant's history and projection)",
            backend="tiered",
        )

    def stop_record(
        self, key: bytes, seq: int | None, cause: str, *, reason: str = "poison"
    ) -> bytes:
        """The STOPPED record of a tenant stopped at history record ``key``: ``reason``
        ``poison`` (the projection cannot apply it: fix the projection, retry_parked())
        or ``damaged`` (its projection in hot is damaged: rebuild(tenant))."""
        return orjson.dumps({"key": key.hex(), "seq": seq, "cause": cause, "reason": reason})

    def stop_reason(self, prefix: bytes) -> str:
        """Why the tenant of ``prefix`` is stopped (see :meth:`stop_record`; ``poison``
        for records written before the reason was recorded)."""
        raw = self.stopped.get(prefix)
        try:
            reason = orjson.loads(raw)["reason"] if raw is not None else "poison"
        except (ValueError, KeyError, TypeError):
            return "poison"
        return reason if isinstance(reason, str) else "poison"
