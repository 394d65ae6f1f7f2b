"""TieredRepository: the public face of a tiered pair (a durable cold tier, history, and
a fast hot tier, cache or projection).

It composes its two repositories through a :class:`~._core.Pair` and routes each call to
the part that owns it: ``_cache`` (cache-mode writes), ``_append`` (projection-mode
writes), ``_recovery`` (open, catch-up, drop_tenant, parked records) and ``_rebuild``
(the shadow rebuild). It derives from :class:`~aurora_storage.Repository` only for its
type (``aurora_storage.open`` and ``AsyncRepository`` accept it); it overrides every
public method and runs no inherited code, and a method ``Repository`` gains that is not
implemented here refuses (it would bypass the change log).

How a write stays exactly-once (see docs/tiered.md for the whole argument):

1. cold, ONE atomic batch: the record(s) + a change-log entry ``LOG + seq`` naming them;
2. hot, ONE atomic batch: the cached/projected update(s) + ``POS = seq``.

After any hot-tier error the position is re-read from hot before anything is applied
again, and catch-up re-applies every entry after ``POS``: each record exactly once.
"""

from __future__ import annotations

import builtins
import dataclasses
import inspect
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Self, TypeVar

from .. import _args, _owners
from .._repository import Batch, Repository
from ..backend import Backend, Capabilities, Op, VerifyReport
from ..codecs import Codec
from ..config import URL
from ..errors import (
    ConfigurationError,
    InvalidArgumentError,
    KeyTooLargeError,
    NotSupportedError,
    RepositoryClosedError,
    StorageError,
    StoreLockedError,
)
from . import _append, _cache, _log, _rebuild, _recovery
from ._async import AsyncTieredRepository
from ._config import (
    Policy,
    TieredConfig,
    TieredURL,
    same_store,
    store_path,
    takes_args,
    unrunnable,
)
from ._core import Pair
from ._reads import TieredReads
from ._rebuild import PROGRESS_FIX
from ._types import ParkedRecord, ProgressCallback, Projection

__all__ = ["TieredRepository"]

K = TypeVar("K")
V = TypeVar("V")

Mode = Literal["cache", "projection"]


class TieredRepository(TieredReads[K, V], Repository[K, V]):
    """A hot repository in front of a durable cold one, kept exact under every fault.

    **Cache mode** (no ``projection``): both tiers hold the same records. Writes go to
    cold first (the durable truth), then hot; ``get``/``has``/``get_many`` try hot and
    fall back to cold (filling hot on a cold hit when ``fill="read"``); scans, counts and
    ``tenants()`` read cold, which always holds everything.

    **Projection mode**: cold holds append-only *history* (``put`` of an existing key
    raises :class:`~aurora_storage.errors.KeyExistsError`; ``delete`` raises
    :class:`~aurora_storage.errors.ReadOnlyError`; ``drop_tenant`` removes a tenant's
    history and projection). Every history record is passed to ``projection(record,
    state)``, which updates the tenant's hot state; every read (``get``, scans, counts,
    ``tenants()``) reads that projection. :attr:`history` reads the records themselves.

    The mode is recorded in the store: opening a projection-mode store without its
    projection, or a cache-mode store with one, raises ``ConfigurationError``. A
    read-only pair (either tier read-only) of a projection-mode store needs no
    projection: it writes nothing, so nothing can be lost; it reads the projection and
    :attr:`history` like the writer (:attr:`mode` ``"projection"``, :attr:`projection`
    ``None``).

    Errors say whether the event is durable in history: see
    :mod:`aurora_storage.tiered` (``DurableWriteError`` and its subclasses are durable;
    a ``ProjectionError`` from a write means the event was rejected, nothing written).

    The tiered repository owns both tiers: :meth:`close` closes them. Construction does
    not close them when it fails.

    Args:
        hot: the fast tier (e.g. ``lmdb://`` or ``memory://``).
        cold: the durable tier (e.g. ``rocksdb://``). The pair owns both stores from
            the start of its open until :meth:`close` (which closes the tiers): every
            repository on either store in this process, these two included, refuses
            writes (``ReadOnlyError`` naming the pair; reads are free), and these two
            refuse ``close()`` (``StoreLockedError``). A failed open gives them back,
            and so does a pair dropped without :meth:`close` once it is
            garbage-collected (use ``with``).
        projection: ``projection(record, state)``, a deterministic function of one
            :class:`HistoryRecord` that updates the :class:`ProjectionState`; ``None``
            for cache mode.
        fill: cache mode only (refused with a projection): ``"read"`` (default) copies
            a record found only in cold into hot on ``get``/``get_many``; ``"none"``
            never does.
        on_poison: projection mode only (refused without a projection): ``"stop"``
            (default) stops a tenant's projection at a history record that cannot be
            decoded or projected; ``"park"`` parks the record and goes on. See
            :meth:`parked` and :meth:`retry_parked`.
        url: the URL it was opened from, for messages (secrets hidden, tiers' included).
        trim_every: trim the applied change log every this many writes.
        rebuild_chunk: history records per hot transaction during a rebuild.
        config: all of the options above at once (a :class:`TieredConfig`, e.g. from
            :meth:`TieredConfig.from_options`); when given, they are ignored.

    Raises:
        ConfigurationError: a tier lacks atomic batches or ordered scans (the message
            names the tier and the capability), the tiers are the same store, cache mode
            with different codecs, the store was created in the other mode (a read-only
            pair of a projection-mode store needs no projection), a bad
            option or an option of the other mode (``fill`` with a projection,
            ``on_poison`` without), a projection that cannot be called as
            ``projection(record, state)`` or whose call would not run it (a coroutine,
            async generator or generator function), the hot store belongs to
            another pair, or a tier of a writable pair bounds its atomic batches so
            tightly that no record fits beside what the pair adds (cold ``max_batch``
            below 2, or 3 on a cold tier other processes may write, NATS; hot below 2:
            the message names the tier and the least that works).
        ProjectionError: (``durable=True``) the catch-up on open met a record the
            projection's call did not apply but returned a coroutine, a generator or
            another awaitable for; nothing of it was applied or parked (fix the
            projection and open again).
        StoreLockedError: a tier's store belongs to another open pair of this process
            (the message names it), or a write through another repository on a tier's
            store was still in flight after ``CLAIM_WAIT`` seconds (or is awaited on
            this thread's own event loop: it could never finish); nothing was written.
    """

    def __init__(
        self,
        hot: Repository[Any, Any],
        cold: Repository[Any, Any],
        *,
        projection: Projection | None = None,
        fill: Literal["read", "none"] | None = None,
        on_poison: Policy | None = None,
        url: URL | None = None,
        trim_every: int = 1024,
        rebuild_chunk: int = 2000,
        config: TieredConfig | None = None,
    ) -> None:
        # Not Repository.__init__: that wraps one backend; this class composes two.
        _check_tier("hot", hot)
        _check_tier("cold", cold)
        if (
            hot is cold
            or hot.backend is cold.backend
            or _owners.same_store(hot._store, cold._store)
            or same_store(store_path(hot), store_path(cold))
        ):
            raise ConfigurationError(
                "the hot and cold tiers must be two different stores (they are the same "
                f"store: {hot._describe()})",
                backend="tiered",
            )
        if config is None:
            config = TieredConfig(
                projection=projection,
                fill=fill,
                on_poison=on_poison,
                trim_every=trim_every,
                rebuild_chunk=rebuild_chunk,
            )
        projection = config.projection
        read_only = hot.capabilities.read_only or cold.capabilities.read_only
        # A read-only pair writes nothing: it may take the mode its store recorded
        # (projection mode without the projection, see _recovery.open_pair), so its
        # codec rule is checked once that mode is known, after the open.
        if projection is None and not read_only:
            _check_cache_codecs(hot, cold)
        self._p = Pair(hot, cold, config, None if url is None else TieredURL.of(url))
        self._p.check_bounds()  # before the stores are claimed or anything written
        self._close_lock = threading.Lock()
        self._codec = cold.codec if projection is None else hot.codec
        self._decode = self._codec.decode
        # The claim's holder names the pair and holds nothing of it: a pair dropped
        # without close() is collected, and this finaliser gives its stores back.
        owner = _owners.Owner(self._p.describe())
        self._release = weakref.finalize(self, _owners.release_collected, owner)
        self._release.atexit = False
        _own_stores(self._p, owner, hot, cold)
        try:
            _recovery.open_pair(self._p)
            if self._p.mode == "cache" and projection is None and read_only:
                _check_cache_codecs(hot, cold)
        except BaseException:
            self._give_back()  # the user's repositories write and close again, as before
            raise
        if self._p.mode == "projection" and projection is None:
            # A reader of a projection-mode store (read-only, opened without the
            # projection): its records are the projection, in hot's codec.
            self._codec = hot.codec
            self._decode = self._codec.decode

    def _give_back(self) -> None:
        """Release the pair's stores now (its close, a failed open); the finaliser,
        which would release them when the pair is collected, is spent."""
        info = self._release.detach()
        if info is not None:
            _owners.release(*info[2])

    # ------------------------------------------------------------------ properties

    @property
    def hot(self) -> Repository[Any, Any]:
        """The hot tier, to read (writes through it raise ``ReadOnlyError``: they would
        break the tiering)."""
        return self._p.hot

    @property
    def cold(self) -> Repository[Any, Any]:
        """The cold tier, to read (writes through it raise ``ReadOnlyError``: they would
        bypass the change log)."""
        return self._p.cold

    @property
    def history(self) -> Repository[Any, Any]:
        """The history records (the cold tier); same as :attr:`cold`."""
        return self._p.cold

    @property
    def config(self) -> TieredConfig:
        """The pair's frozen options."""
        return self._p.config

    @property
    def mode(self) -> Mode:
        """``"cache"`` or ``"projection"``."""
        return self._p.mode

    @property
    def projection(self) -> Projection | None:
        """The projection function, or ``None`` in cache mode (and in a read-only pair
        of a projection-mode store opened without it)."""
        return self._p.projection

    @property
    def lag(self) -> int:
        """Change-log entries written to cold and not yet applied to hot (0 normally).
        After a hot-tier error it is re-read from hot first.

        On a read-only pair both positions are read from the tiers at each call (the
        pair writes nothing, so another process may move them), and ``lag`` may be
        **negative**: hot has applied ``-lag`` entries that this pair's view of history
        does not show yet. That happens when the tiers are read at different moments:
        a read-only LMDB hot sees the writer's latest commit, while a read-only RocksDB
        cold (``mode=read_only``) is a snapshot taken when it was opened; the projection
        is then ahead of :attr:`history`. It is kept negative because that is what is
        true. To read a history that matches the projection, open the cold view again,
        or open it with ``mode=secondary`` and call ``repo.cold.catch_up()``.
        """
        p = self._p
        if p.closed:
            return p.seq - p.pos
        if p.read_only:
            with p.lock:
                try:
                    p.seq = p.last_seq()
                    p.reload_position()
                except Exception:  # a tier unreadable: report what is known
                    pass
        elif not p.pos_known or not p.seq_known:
            with p.lock:
                try:
                    p.ensure_seq()
                except Exception:  # cold unreadable: report what is known
                    pass
                try:
                    p.ensure_position()
                except Exception:  # hot unreadable: report what is known
                    pass
        return p.seq - p.pos

    @property
    def recovered_on_open(self) -> int:
        """Change-log entries the opening catch-up applied (non-zero after a crash)."""
        return self._p.recovered

    @property
    def capabilities(self) -> Capabilities:
        """Ordered scans and atomic batches (each tier's step is atomic and recovery
        completes the other); durable as the cold tier is; ``max_batch_ops`` what both
        tiers take in one write (see :meth:`Pair.max_batch_ops`)."""
        hc, cc = self._p.hot.capabilities, self._p.cold.capabilities
        return Capabilities(
            ordered_scans=True,
            atomic_batches=True,
            persistent=cc.persistent,
            multi_process=False,
            thread_safe=hc.thread_safe and cc.thread_safe,
            blocking_writes=hc.blocking_writes or cc.blocking_writes,
            read_only=self._p.read_only,
            max_batch_ops=self._p.max_batch_ops(),
        )

    @property
    def codec(self) -> Codec[Any]:
        """The codec of the values users read: cold's in cache mode, hot's in projection
        mode (history values use cold's codec)."""
        return self._codec

    @property
    def backend(self) -> Backend:
        """The cold tier's backend (the durable one)."""
        return self._p.cb

    @property
    def url(self) -> URL | None:
        """The URL it was opened from, if any (printed forms hide the tiers' secrets)."""
        return self._p.url

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._p.closed

    # ------------------------------------------------------------------ helpers
    # The Repository hooks that Batch and TenantView call.

    def _full(self, tenant: str, key: Any) -> bytes:
        # A batch's puts (and cache-mode deletes): history keys get the pair's limit.
        return self._p.history_key(tenant, key)

    def _value(self, value: Any, tenant: str, key: Any, **options: Any) -> bytes:
        # ``options``: whatever the core's Repository._value accepts (e.g. ``held``).
        return self._p.cold._value(value, tenant, key, **options)

    def _load(self, raw: bytes, tenant: str, key: Any) -> Any:
        return self._p.cold._load(raw, tenant, key)

    def _check_writable(self) -> None:
        self._check_open()
        if self._p.read_only:
            from ..errors import ReadOnlyError

            raise ReadOnlyError(
                f"the repository {self._describe()} was opened read-only", backend="tiered"
            )

    def _check_write(self, method: str) -> None:
        """Open, writable, not called by the user code the pair runs under its lock (its
        projection, a rebuild's progress callback), and no unfinished drop_tenant in
        cold (finished here). Call it holding ``self._p.lock``; ``method`` names the
        call in the refusal (``"put()"``)."""
        self._check_writable()
        if self._p.projecting:
            raise self._p.misuse(method)
        if self._p.needs_drop_finish:
            _recovery.finish_cold_drops(self._p)

    def _records(self, ops: list[Op], tenant: str | None) -> list[_append.Record]:
        p = self._p
        out: list[_append.Record] = []
        for full, data in ops:
            if data is None:
                p.no_history_deletes()
            if tenant is not None:
                out.append((tenant, len(p.cold._prefix(tenant)), full, data))
            else:
                t, off = p.split(full)
                out.append((t, off, full, data))
        return out

    # ------------------------------------------------------------------ writes

    def put(self, tenant: str, key: K, value: V) -> None:
        """Cache mode: store the record in cold, then hot. Projection mode: append a
        history record to cold and apply the projection to hot.

        Raises:
            KeyExistsError: projection mode, the history key exists (append-only).
            ProjectionError: projection mode, the projection raised (or returned an
                awaitable instead of applying the event); nothing written.
            HotTierError, TenantStoppedError, DurableWriteError: durable in history.
            KeyTooLargeError: the encoded tenant + key is over 511 bytes in cache mode;
                in projection mode, over the 481 bytes a history key may have (a record
                the projection cannot apply is parked under a 15-byte prefix, which a
                rebuild builds under another), however long (its ``limit`` is 481);
                nothing written.
            InvalidTenantError, InvalidKeyError, SerializationError, ReadOnlyError,
            RepositoryClosedError: as :meth:`Repository.put`.
        """
        p = self._p
        cold = p.cold
        try:  # p.history_key(tenant, key), inline (the write path)
            full = cold._full(tenant, key)
        except KeyTooLargeError:
            p.history_key(tenant, key)  # the pair's error, in projection mode
            raise
        if len(full) > p.key_limit:
            raise p.key_too_long(full, tenant, key)
        try:
            data = cold._encode(value)
        except Exception:  # the typed error, with the value's path (re-encodes once)
            data = cold._value(value, tenant, key)
        with p.lock:
            if p.closed or p.read_only or p.needs_drop_finish or p.projecting:
                self._check_write("put()")
            if p.projection is not None:
                off = len(cold._prefix(tenant))
                # A str key reads back from history as itself: the projection gets it
                # without a decode of the stored key.
                _append.append(
                    p,
                    [(tenant, off, full, data)],
                    b"k" + full,  # _log.one(full), inline
                    key if type(key) is str else _append.NO_KEY,
                )
            else:
                _cache.put(p, full, data)

    def insert(self, tenant: str, key: K, value: V) -> None:
        """Store only if ``(tenant, key)`` is absent (checked in cold, the truth).

        Raises:
            KeyExistsError: the key exists; nothing was written.
        """
        p = self._p
        full = p.history_key(tenant, key)
        data = p.cold._value(value, tenant, key)
        with p.lock:
            self._check_write("insert()")
            if p.projection is not None:
                off = len(p.cold._prefix(tenant))
                _append.append(p, [(tenant, off, full, data)], _log.one(full))
            else:
                _cache.insert(p, full, data, tenant, key)

    def delete(self, tenant: str, key: K) -> bool:
        """Cache mode: remove from cold, then hot; return whether it existed.

        Raises:
            ReadOnlyError: projection mode (history is append-only).
        """
        p = self._p
        full = p.cold._full(tenant, key)
        with p.lock:
            self._check_write("delete()")
            if p.projection is not None:
                p.no_history_deletes()
            existed = p.cb.get(full) is not None
            _cache.write(p, [(full, None)])
            return existed

    def put_many(self, tenant: str, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        """Store many records atomically (in each tier; recovery completes a crash
        between them); return how many. Projection mode: append history records, which
        are projected in the order given.

        Raises:
            BatchTooLargeError: more records than the pair takes in one write (its
                ``capabilities.max_batch_ops``: what a bounded tier's batch - NATS
                ``max_batch`` - takes with the records the pair adds), or, in
                projection mode, the projection's updates plus the position are more
                than hot's bound; refused by the pair, nothing written to either tier:
                split the write (``size``: its records; ``limit - internal``: the
                pair's bound). An InvalidArgumentError, as before it had a type of its
                own.
        """
        p = self._p
        cold = p.cold
        # Every key first, then the values: the order of the core's put_many, so a call
        # with both a bad key and a bad value raises the same error on every backend.
        keys, values = _args.split_pairs(items, "put_many")
        fulls = [p.history_key(tenant, k) for k in keys]
        ops: list[Op] = [
            (full, cold._value(v, tenant, k, held=True))
            for full, k, v in zip(fulls, keys, values, strict=True)
        ]
        if not ops:
            self._check_writable()
            cold._prefix(tenant)
            return 0
        self._write_ops(ops, tenant)
        return len(ops)

    def delete_many(self, tenant: str, keys: Iterable[K]) -> int:
        """Cache mode: remove ``keys`` atomically; return how many existed.

        Raises:
            ReadOnlyError: projection mode (history is append-only).
            BatchTooLargeError: more keys than the pair takes in one write (its
                ``capabilities.max_batch_ops``, as for :meth:`put_many`); nothing
                written to either tier: split the write.
        """
        p = self._p
        wanted = _args.key_list(keys, "delete_many")
        fulls = list(dict.fromkeys(p.cold._full(tenant, k) for k in wanted))
        with p.lock:
            self._check_write("delete_many()")
            if p.projection is not None:
                p.no_history_deletes()
            if not fulls:
                return 0
            present = sum(1 for raw in p.cb.get_many(fulls) if raw is not None)
            _cache.write(p, [(k, None) for k in fulls])
        return present

    def batch(self) -> Batch[K, V]:
        """Puts (and, in cache mode, deletes) across tenants, committed atomically when
        the ``with`` block ends (each tier in one batch; recovery completes a crash
        between them). Its commit raises like :meth:`put_many` (more records than
        ``capabilities.max_batch_ops``: BatchTooLargeError, nothing written)."""
        self._check_writable()
        return _TieredBatch(self)

    def _write(self, ops: list[Op]) -> None:
        # Batch.commit lands here.
        if ops:
            self._write_ops(ops, None)
        else:
            self._check_writable()

    def _write_ops(self, ops: list[Op], tenant: str | None) -> None:
        p = self._p
        p.check_keys(ops)
        with p.lock:
            self._check_write("put_many()" if tenant is not None else "a batch's commit")
            if p.projection is None:
                _cache.write(p, ops)
                return
            fulls = [k for k, _ in ops]
            entry = _log.one(fulls[0]) if len(fulls) == 1 else _log.many(fulls)
            _append.append(p, self._records(ops, tenant), entry)

    def drop_tenant(self, tenant: str) -> int:
        """Delete every record of ``tenant`` in both tiers (projection mode: its history,
        projection and parked records); return how many records cold held.

        An intent is logged in cold first, so a crash in the middle is completed when the
        pair is opened again (or at the next write).

        Raises:
            HotTierError: done in cold; hot catches up.
        """
        p = self._p
        prefix = p.cold._prefix(tenant)
        with p.lock:
            self._check_write("drop_tenant()")
            return _recovery.drop_tenant(p, prefix)

    # ------------------------------------------------------------------ maintenance

    def catch_up(self) -> int:
        """Apply to hot every change-log entry it has not seen; return how many.

        Call it after a :class:`HotTierError` once the hot tier is healthy again (the
        next tiered write does it too). Opening the pair always does it. A record the
        projection cannot apply is handled by the ``on_poison`` policy (it never stops
        other tenants); see :meth:`parked`. A record whose projection reads a damaged
        hot record of its tenant stops that tenant only (parked as ``damaged``; see
        :meth:`rebuild`).

        Raises:
            StorageError: a tier failed (``StorageFullError`` for a full disk); nothing
                is lost, run it again once the tier is repaired.
            ProjectionError: (``durable=True``) the projection's call returned a
                coroutine, a generator or another awaitable instead of applying a record:
                a programming error, not a poison record, so it is not parked; hot stays
                before that record (fix the projection, then call it again).
        """
        with self._p.lock:
            self._check_write("catch_up()")
            return _recovery.catch_up(self._p)

    def parked(self, tenant: str | None = None) -> builtins.list[ParkedRecord]:
        """The history records set aside by the poison policy (all tenants, or one), in
        history key order; empty in cache mode."""
        self._check_open()
        prefix = None if tenant is None else self._prefix(tenant)
        with self._p.lock:
            return _recovery.parked(self._p, prefix)

    def retry_parked(self, tenant: str | None = None) -> int:
        """Apply the parked records again, once the projection is fixed (per tenant, in
        history key order); return how many applied. A record that still fails stays
        parked (under ``stop``, its tenant stays stopped there).

        Raises:
            ConfigurationError: a bounded hot tier (NATS ``max_batch``) cannot hold a
                record's updates and its unparking in one atomic batch; it stays
                parked (the message names it and the bound needed).
            StorageError: a tier failed; run it again once it is repaired.
            ProjectionError: (``durable=True``) the projection's call returned a
                coroutine, a generator or another awaitable instead of applying a parked
                record; it stays parked (the ones before it were applied).
        """
        prefix = None if tenant is None else self._prefix(tenant)
        with self._p.lock:
            self._check_write("retry_parked()")
            if self._p.projection is None:
                return 0
            return _recovery.retry_parked(self._p, prefix)

    def rebuild(
        self, tenant: str | None = None, *, progress: ProgressCallback | None = None
    ) -> int:
        """Recompute hot from cold: all tenants, or one; return the records applied.

        The new projection is built aside (in hot's shadow namespace); when it is
        complete, readers are switched to it in one hot transaction (the difference
        between the old projection and the new one, with hot's position): they see the
        old projection or the new one, never a part. If the rebuild fails before the
        switch, or the process is killed, the old projection stays served; after the
        switch the new one is. A rebuild with the same function writes no live key. On a
        hot tier with bounded atomic batches (NATS ``max_batch``) a larger switch goes in
        batches, and readers may see it half done (a kill in the middle is finished by
        the next open). Streams history in key order (per tenant) in chunks of
        ``rebuild_chunk`` records, each one hot transaction, so memory stays flat while
        building; the switch holds the keys that change.
        ``progress`` is called after each chunk (and at the end) with a
        :class:`RebuildProgress`, holding the pair: like a projection, it may not call
        the pair's writes, maintenance or ``close()`` (they raise
        ``ProjectionMisuseError`` and do nothing). In cache mode it copies every cold
        record into hot (a full warm-up). A damaged hot record (its checksum fails) is
        replaced without being read, and a tenant stopped by one runs again: this is
        the remedy for a damaged hot tier (see docs/tiered.md, "A damaged hot tier").

        Raises:
            ProjectionError: (``on_poison="stop"``) the projection failed on a record, or
                (either policy) its call returned a coroutine, a generator or another
                awaitable instead of applying one; ``durable`` is true, the old
                projection is still served.
            StorageError: a tier failed; the old projection is still served (on a hot
                tier with bounded batches, a failure in the middle of the switch is
                finished first thing by the next write, ``catch_up()`` or open).
            ProjectionMisuseError: called from the pair's projection or ``progress``.
            InvalidArgumentError: ``progress`` is not a plain function of one argument
                (a coroutine, async generator or generator function is refused too: it
                is called, never awaited); nothing was written. Or a call of it
                returned a coroutine, a generator or another awaitable: the rebuild is
                abandoned, the old projection is still served.
            whatever ``progress`` raised: the rebuild is abandoned, the old projection
                is still served.
        """
        p = self._p
        _check_progress(progress)
        with p.lock:
            self._check_write("rebuild()")
            scope = _rebuild.ALL if tenant is None else p.cold._prefix(tenant)
            # A rebuild sets POS to cold's last entry, so everything must be current.
            _recovery.catch_up(p)
            return _rebuild.rebuild(p, scope, tenant, progress)

    # ------------------------------------------------------------------ lifecycle

    def stats(self) -> dict[str, Any]:
        """The mode, the change-log position of each tier, parked records, and both
        tiers' stats."""
        self._check_open()
        p = self._p
        lag = self.lag  # re-reads the positions first where they may have moved
        return {
            "backend": "tiered",
            "mode": p.mode,
            "codec": self._codec.name,
            "cold_seq": p.seq,
            "hot_applied": p.pos,
            "lag": lag,
            "recovered_on_open": p.recovered,
            "stopped_tenants": len(p.stopped),
            "hot": p.hot.stats(),
            "cold": p.cold.stats(),
        }

    def flush(self) -> None:
        """Flush both tiers (cold first)."""
        self._check_open()
        self._p.cold.flush()
        self._p.hot.flush()

    def verify(self) -> VerifyReport:
        """Verify both tiers (cold first; see :meth:`Repository.verify`): one report,
        each problem's message saying which tier it is in."""
        self._check_open()
        reports = {"cold": self._p.cold.verify(), "hot": self._p.hot.verify()}
        problems = tuple(
            dataclasses.replace(p, message=f"{tier} tier: {p.message}")
            for tier, report in reports.items()
            for p in report.problems
        )
        return VerifyReport(
            records=sum(r.records for r in reports.values()),
            problems=problems,
            problem_count=sum(r.problem_count for r in reports.values()),
            structure_checked=all(r.structure_checked for r in reports.values()),
        )

    def as_async(self) -> AsyncTieredRepository[K, V]:
        """The asynchronous twin, with :meth:`rebuild` and :meth:`catch_up` as coroutines."""
        return AsyncTieredRepository(self)

    def _native_async(self) -> None:
        # Never the cold backend's native-async form: awaiting it would write and read
        # cold directly, around the change log, the projection and the hot tier.
        return None

    def _blocking_reads(self) -> bool:
        # Reads go to hot, and to cold in cache mode: a network tier makes them wait.
        return any(t.backend.native_async() is not None for t in (self._p.hot, self._p.cold))

    def close(self) -> None:
        """Close both tiers. Idempotent.

        A cache-mode pair whose hot is current records hot's exact position first and
        removes hot's ``RUNNING`` mark in the same batch; a pair never closed (killed, or
        dropped) leaves the mark, and the next open deletes every hot record whose value
        cold does not hold before it catches up (see docs/tiered.md, Guarantees).

        Raises:
            ProjectionMisuseError: called from the pair's projection or a rebuild's
                ``progress`` (the pair stays open), even while another thread closes it.
        """
        p = self._p
        # Refused first, before any lock a closer holds: another thread inside close()
        # holds _close_lock while it waits for the pair's lock, which the caller may
        # be holding (its projection or progress callback is running). Only the lock's
        # owner can see ``projecting`` set, and taking a lock one owns never blocks.
        if p.lock.acquire(blocking=False):
            try:
                if p.projecting:
                    raise p.misuse("close()", "the pair stays open")
            finally:
                p.lock.release()
        with self._close_lock:
            if p.closed:
                return
            with p.lock:
                if not p.read_only and not p.hot.closed and p.pos_known and p.pos == p.seq:
                    try:
                        p.save_pos(closing=True)
                    except StorageError:
                        pass  # hot is failing: the next open catches up from its POS
                p.closed = True
                self._give_back()
                try:
                    p.hot.close()
                finally:
                    p.cold.close()

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._p.closed else "open"
        return f"<TieredRepository {self._p.mode} {self._describe()} {state}>"


def _refuse(name: str) -> Any:
    def refused(self: TieredRepository[Any, Any], *args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError(
            f"{name}() is not supported by a tiered repository yet: the inherited "
            "implementation would bypass the change log and the hot tier",
            backend="tiered",
        )

    refused.__name__ = name
    # The refused method keeps the signature it refuses (help(), the parity check).
    refused.__signature__ = inspect.signature(getattr(Repository, name))  # type: ignore[attr-defined]  # read by inspect.signature
    refused.__doc__ = (
        f"Not supported by a tiered repository: ``{name}()`` raises NotSupportedError."
    )
    return refused


# Guard: a public Repository method this class does not implement must not run the
# inherited code (it reads private fields this class does not have, and would write
# around the change log).
for _name in dir(Repository):
    if (
        not _name.startswith("_")
        and getattr(TieredRepository, _name) is getattr(Repository, _name)
        and callable(getattr(Repository, _name))
    ):
        setattr(TieredRepository, _name, _refuse(_name))


def _check_cache_codecs(hot: Repository[Any, Any], cold: Repository[Any, Any]) -> None:
    """Refuse a cache pair whose tiers use different codecs (records are copied between
    them as encoded bytes).

    Raises:
        ConfigurationError: the codecs differ.
    """
    if hot.codec.name != cold.codec.name:
        raise ConfigurationError(
            f"in cache mode both tiers must use the same codec: hot uses "
            f"{hot.codec.name!r}, cold {cold.codec.name!r}",
            backend="tiered",
        )


class _TieredBatch(Batch[K, V]):
    """A batch of a tiered repository; refuses deletes of history in projection mode."""

    _repo: TieredRepository[K, V]

    def delete(self, tenant: str, key: K) -> None:
        """Add a delete (cache mode only)."""
        if self._repo.mode == "projection":
            self._repo._p.no_history_deletes()
        super().delete(tenant, key)


def _own_stores(
    p: Pair, owner: _owners.Owner, hot: Repository[Any, Any], cold: Repository[Any, Any]
) -> None:
    """Make the pair (``owner``) the only writer of its two stores in this process,
    before it reads or writes them: every repository on either store (its shared live
    handle, or the store a backend declares, however it was opened) refuses writes from
    now until the pair closes, its open fails or it is garbage-collected. The pair's own
    tiers refuse ``close()`` meanwhile: that would close the store under it. A read-only
    pair writes nothing and owns no store, but its tiers are still its own to close.

    Raises:
        StoreLockedError: a store already belongs to another open pair, or a write
            through another repository on it did not finish within ``CLAIM_WAIT``
            seconds; nothing is claimed, nothing written.
    """
    tiers = (("hot", hot), ("cold", cold))
    pair = p.describe()
    own = [
        (
            tier,
            f"the repository {tier._describe()} is held by the open tiered repository "
            f"{pair} as its {name} tier: closing it would close the store under the pair, "
            "and a later open of it would write around the pair's change log: close that "
            "pair, which closes its tiers (a pair dropped without close() holds them "
            "until it is garbage-collected: use it in a with block); nothing changed",
        )
        for name, tier in tiers
    ]
    if p.read_only:
        _owners.claim(owner, [], own)
        return

    def why(name: str) -> _owners.Why:
        # The pair writes its tiers through their backends, history and change log in
        # one batch; a write through a repository would bypass the change log (or the
        # projection), so that hot no longer matched what history implies.
        return lambda repo: (
            f"the repository {repo._describe()} is the {name} tier of the tiered "
            f"repository {pair}: writing to it directly would bypass the pair's change "
            "log, so hot would no longer match history; write through the "
            "TieredRepository (reads are free); the store is writable again once the "
            "pair is closed (a pair dropped without close() holds it until it is "
            "garbage-collected)"
        )

    taken = _owners.claim(owner, [(tier._store, why(name)) for name, tier in tiers], own)
    if taken is None:
        return
    i, other = taken
    name, tier = tiers[i]
    raise StoreLockedError(
        f"the {name} tier {tier._describe()} already belongs to the open tiered "
        f"repository {other.name} in this process: a second pair on the same store would "
        "keep its own change log and position, and the two would overwrite each other's "
        "entries. Use the open tiered repository (open it once and share it), or close "
        "it first (a pair dropped without close() holds its stores until it is "
        "garbage-collected: use it in a with block); nothing was written",
        backend="tiered",
        path=store_path(tier),
    )


def _check_progress(progress: Any) -> None:
    """Refuse a ``progress`` that is not a function of one :class:`RebuildProgress`
    before the rebuild writes anything (it is first called after the first chunk)."""
    if progress is None:
        return
    if not callable(progress):
        raise InvalidArgumentError(
            "progress must be a function taking one RebuildProgress (or None), got "
            f"{type(progress).__name__}; nothing was written",
            backend="tiered",
        )
    kind = unrunnable(progress)
    if kind is not None:
        raise InvalidArgumentError(
            "progress must be a plain synchronous function taking one RebuildProgress, "
            f"but {getattr(progress, '__qualname__', progress)!r} is {kind[0]}: calling "
            f"it only creates {kind[1]}, so it would never run. {PROGRESS_FIX}; "
            "nothing was written",
            backend="tiered",
        )
    if not takes_args(progress, 1):
        raise InvalidArgumentError(
            "progress must be a function taking one RebuildProgress, but "
            f"{getattr(progress, '__qualname__', progress)!r} has the signature "
            f"{inspect.signature(progress)}; nothing was written",
            backend="tiered",
        )


def _check_tier(name: str, repo: Any) -> None:
    if isinstance(repo, TieredRepository):
        raise ConfigurationError(
            f"the {name} tier is itself a TieredRepository; nest plain repositories only",
            backend="tiered",
        )
    if not isinstance(repo, Repository):
        raise ConfigurationError(
            f"the {name} tier must be an aurora_storage Repository, got {type(repo).__name__}",
            backend="tiered",
        )
    if repo.closed:
        raise RepositoryClosedError(f"the {name} tier {repo._describe()} is closed")
    caps = repo.capabilities
    missing = [
        what
        for what, ok in (
            (
                "atomic_batches (the record and its change-log entry commit together)",
                caps.atomic_batches,
            ),
            ("ordered_scans (the change log is read in sequence order)", caps.ordered_scans),
        )
        if not ok
    ]
    if missing:
        raise ConfigurationError(
            f"the {name} tier {repo._describe()} ({repo.backend.scheme}) cannot be "
            f"tiered: it lacks {' and '.join(missing)}",
            backend=repo.backend.scheme,
        )
