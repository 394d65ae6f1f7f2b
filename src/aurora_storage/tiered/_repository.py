"""TieredRepository: a durable cold tier (history) and a fast hot tier (cache or projection).

How a write stays crash-safe (see docs/tiered.md for the full argument):

1. cold, ONE atomic batch: the record(s) + a change-log entry ``LOG + seq`` naming them;
2. hot, ONE atomic batch: the cached/projected update(s) + ``POS = seq``.

A crash between or inside the steps leaves ``POS < seq``; opening the pair again (or
``catch_up()``) re-applies every change-log entry after ``POS`` in order, each in one hot
batch with its new ``POS``, so every record is applied exactly once and hot is never
ahead of cold. ``drop_tenant`` and ``rebuild`` are multi-batch and therefore leave an
intent record first (``D`` entry in cold, ``REBUILD`` marker in hot) that recovery
completes. Writes are serialised by a lock (one writer per pair).
"""

from __future__ import annotations

import importlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from .. import _args
from .._keys import NS_DATA, NS_DATA_END, decode_tenant_key
from .._repository import Batch, Repository, _decode_key_at
from ..backend import Backend, Capabilities, Op
from ..codecs import Codec
from ..config import URL
from ..errors import (
    ConfigurationError,
    CorruptionError,
    KeyExistsError,
    ReadOnlyError,
    RepositoryClosedError,
    StorageError,
)
from . import _log

if TYPE_CHECKING:
    from ._async import AsyncTieredRepository
from ._log import COLD_META, LOG, LOG_END, PAIR, POS, REBUILD, log_key, seq_bytes, seq_of
from ._types import (
    _MISSING,
    HistoryRecord,
    HotTierError,
    ProgressCallback,
    Projection,
    ProjectionError,
    ProjectionState,
    RebuildProgress,
    _HotReadError,
)

__all__ = ["TieredRepository"]

K = TypeVar("K")
V = TypeVar("V")

_TENANT_END = b"\xff"
#: change-log entries applied per hot transaction during catch-up
_GROUP = 256
#: keys deleted per hot transaction when clearing a range (flat memory)
_CLEAR_CHUNK = 10_000
#: REBUILD marker values besides a tenant prefix (data prefixes start with 0x01)
_ALL = b"*"  # a full rebuild is under way
_CLEARING = b"-"  # cache mode: hot is being emptied (reset)
#: the modes
Mode = Literal["cache", "projection"]


def _first(it: Iterator[Any]) -> Any:
    try:
        for item in it:
            return item
        return None
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _take(it: Iterator[Any], n: int) -> list[Any]:
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


def resolve_projection(spec: str) -> Projection:
    """Import a projection named ``package.module:function`` (the URL's ``projection=``).

    Raises:
        ConfigurationError: the name is malformed, or the module or attribute is missing.
    """
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigurationError(
            f"projection={spec!r} must name a function as 'package.module:function'",
            backend="tiered",
        )
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"cannot load projection {spec!r}: {type(exc).__name__}: {exc}", backend="tiered"
        ) from exc
    if not callable(obj):
        raise ConfigurationError(f"projection {spec!r} is not callable", backend="tiered")
    return obj  # type: ignore[no-any-return]


class TieredRepository(Repository[K, V]):
    """A hot repository in front of a durable cold one, kept consistent across crashes.

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

    Both modes: after a crash at any moment, constructing the pair again brings hot back
    to exactly what cold implies (each record applied once, hot never ahead). If the hot
    tier fails at run time, the write still succeeded in cold and the caller gets a
    :class:`HotTierError`; the next write, :meth:`catch_up` or open repairs hot.

    The tiered repository owns both tiers: :meth:`close` closes them. Construction does
    not close them when it fails.

    Args:
        hot: the fast tier (e.g. ``lmdb://`` or ``memory://``).
        cold: the durable tier (e.g. ``rocksdb://``).
        projection: ``projection(record, state)``, a deterministic function of one
            :class:`HistoryRecord` that updates the :class:`ProjectionState`; ``None``
            for cache mode.
        fill: cache mode: ``"read"`` copies a record found only in cold into hot on
            ``get``/``get_many``; ``"none"`` never does.
        url: the URL it was opened from, for messages.
        trim_every: trim the applied change log every this many writes.
        rebuild_chunk: history records per hot transaction during a rebuild.

    Raises:
        ConfigurationError: a tier lacks atomic batches or ordered scans (the message
            names the tier and the capability), the tiers are the same store, cache mode
            with different codecs, or the hot store belongs to another pair.
    """

    def __init__(
        self,
        hot: Repository[Any, Any],
        cold: Repository[Any, Any],
        *,
        projection: Projection | None = None,
        fill: Literal["read", "none"] = "read",
        url: URL | None = None,
        trim_every: int = 1024,
        rebuild_chunk: int = 2000,
    ) -> None:
        _check_tier("hot", hot)
        _check_tier("cold", cold)
        if hot is cold or hot.backend is cold.backend:
            raise ConfigurationError(
                "the hot and cold tiers must be two different stores", backend="tiered"
            )
        if projection is not None and not callable(projection):
            raise ConfigurationError(
                f"projection must be callable, got {type(projection).__name__}", backend="tiered"
            )
        if projection is None and hot.codec.name != cold.codec.name:
            raise ConfigurationError(
                f"in cache mode both tiers must use the same codec: hot uses "
                f"{hot.codec.name!r}, cold {cold.codec.name!r}",
                backend="tiered",
            )
        if fill not in ("read", "none"):
            raise ConfigurationError(
                f"fill must be 'read' or 'none', got {fill!r}", backend="tiered"
            )
        if trim_every < 1 or rebuild_chunk < 1:
            raise ConfigurationError(
                "trim_every and rebuild_chunk must be positive", backend="tiered"
            )
        self._hot: Repository[Any, Any] = hot
        self._cold: Repository[Any, Any] = cold
        self._hb: Backend = hot.backend
        # Bound once for the hot paths.
        self._hb_put = hot.backend.put
        self._hb_get = hot.backend.get
        self._cb_write = cold.backend.write
        self._cold_encode = cold.codec.encode
        self._cb: Backend = cold.backend
        self._projection = projection
        self._mode: Mode = "cache" if projection is None else "projection"
        self._fill = fill == "read"
        self._trim_every = trim_every
        self._chunk = rebuild_chunk
        # The Repository fields the inherited helpers rely on (Repository.__init__ is
        # not called: it wraps one backend and would write metadata to it).
        self._backend = cold.backend
        self._url = url
        self._closed = False
        self._close_lock = threading.Lock()
        self._codec = cold.codec if projection is None else hot.codec
        self._decode: Callable[[bytes], Any] = self._codec.decode
        self._read_only = hot.capabilities.read_only or cold.capabilities.read_only
        self._lock = threading.RLock()
        self._seq = 0
        self._pos = 0  # applied to hot (in memory)
        self._saved = 0  # applied to hot and recorded there (POS)
        self._trimmed = 0
        self._needs_recovery = False
        self._recovered = 0
        self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        raw = self._cb.get(COLD_META)
        if raw is None:
            pair_id = uuid.uuid4().hex
            if not self._read_only:
                self._cb.put(COLD_META, orjson.dumps({"id": pair_id}))
        else:
            try:
                pair_id = str(orjson.loads(raw)["id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise CorruptionError(
                    f"the tiered metadata of the cold tier {self._cold._describe()} is "
                    f"damaged: {exc}",
                    backend="tiered",
                ) from exc
        self._pair = orjson.dumps({"id": pair_id, "mode": self._mode})
        self._seq = self._last_seq()
        pos = self._hb.get(POS)
        self._pos = self._saved = int.from_bytes(pos, "big") if pos is not None else 0
        if self._read_only:
            return
        hot_pair = self._hb.get(PAIR)
        if hot_pair is None:
            if self._hb.first_key(NS_DATA, NS_DATA_END) is not None:
                raise ConfigurationError(
                    f"the hot tier {self._hot._describe()} holds data that this tiered "
                    "repository did not write; give it an empty store (hot is derived from "
                    "cold and is overwritten)",
                    backend="tiered",
                )
            self._reset_hot()
            return
        try:
            hot_meta = orjson.loads(hot_pair)
            hot_id, hot_mode = str(hot_meta["id"]), str(hot_meta["mode"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(
                f"the tiered marker of the hot tier {self._hot._describe()} is damaged: {exc}",
                backend="tiered",
            ) from exc
        if hot_id != pair_id:
            raise ConfigurationError(
                f"the hot tier {self._hot._describe()} belongs to another tiered pair "
                f"(cold tier {self._cold._describe()} is a different history); use an "
                "empty hot store",
                backend="tiered",
            )
        first = self._first_log_seq()
        marker = self._hb.get(REBUILD)
        if (
            hot_mode != self._mode
            or marker == _CLEARING
            or self._pos > self._seq
            or (first is not None and self._pos < first - 1)
        ):
            # Hot is ours but cannot be caught up (mode changed, an interrupted reset,
            # hot restored from an older or newer backup): derive it again.
            self._reset_hot()
            return
        self._finish_cold_drops()
        if marker == _ALL:
            # An interrupted full rebuild: redo it (it reads all of cold, log included).
            self._rebuild_range(NS_DATA, NS_DATA_END, _ALL, None, None)
            return
        self._recovered = self._catch_up_locked()
        if marker is not None:
            self._rebuild_range(marker, marker + _TENANT_END, marker, None, None)
        if self._seq - self._trimmed >= self._trim_every:
            self._trim()

    def _reset_hot(self) -> None:
        """Hot from scratch: a full rebuild in projection mode, an empty cache otherwise."""
        self._finish_cold_drops()
        if self._mode == "projection":
            self._rebuild_range(NS_DATA, NS_DATA_END, _ALL, None, None)
            return
        self._hb.write([(REBUILD, _CLEARING), (PAIR, self._pair)])
        self._clear_hot(NS_DATA, NS_DATA_END)
        self._hb.write([(REBUILD, None), (POS, seq_bytes(self._seq))])
        self._pos = self._saved = self._seq

    def _last_seq(self) -> int:
        k = _first(self._cb.scan_keys(LOG, LOG_END, reverse=True))
        return 0 if k is None else seq_of(k)

    def _first_log_seq(self) -> int | None:
        k = self._cb.first_key(LOG, LOG_END)
        return None if k is None else seq_of(k)

    # ------------------------------------------------------------------ properties

    @property
    def hot(self) -> Repository[Any, Any]:
        """The hot tier (read it freely; writing to it directly breaks the tiering)."""
        return self._hot

    @property
    def cold(self) -> Repository[Any, Any]:
        """The cold tier (read it freely; writing to it directly bypasses the change log,
        so only :meth:`rebuild` would see such writes)."""
        return self._cold

    @property
    def history(self) -> Repository[Any, Any]:
        """The history records (the cold tier); same as :attr:`cold`."""
        return self._cold

    @property
    def mode(self) -> Mode:
        """``"cache"`` or ``"projection"``."""
        return self._mode

    @property
    def projection(self) -> Projection | None:
        """The projection function, or ``None`` in cache mode."""
        return self._projection

    @property
    def lag(self) -> int:
        """Change-log entries written to cold and not yet applied to hot (0 normally)."""
        return self._seq - self._pos

    @property
    def recovered_on_open(self) -> int:
        """Change-log entries the opening catch-up applied (non-zero after a crash)."""
        return self._recovered

    @property
    def capabilities(self) -> Capabilities:
        """Ordered scans and atomic batches (each tier's step is atomic and recovery
        completes the other); durable as the cold tier is."""
        hc, cc = self._hot.capabilities, self._cold.capabilities
        return Capabilities(
            ordered_scans=True,
            atomic_batches=True,
            persistent=cc.persistent,
            multi_process=False,
            thread_safe=hc.thread_safe and cc.thread_safe,
            blocking_writes=hc.blocking_writes or cc.blocking_writes,
            read_only=self._read_only,
        )

    @property
    def codec(self) -> Codec:
        """The codec of the values users read: cold's in cache mode, hot's in projection
        mode (history values use cold's codec)."""
        return self._codec

    # ------------------------------------------------------------------ helpers

    def _describe(self) -> str:
        if self._url is not None:
            return str(self._url)
        return f"tiered(hot={self._hot._describe()}, cold={self._cold._describe()})"

    def _prefix(self, tenant: str) -> bytes:
        return self._cold._prefix(tenant)

    def _full(self, tenant: str, key: Any) -> bytes:
        return self._cold._full(tenant, key)

    def _value(self, value: Any, tenant: str, key: Any, **options: Any) -> bytes:
        # ``options``: whatever the core's Repository._value accepts (e.g. ``held``).
        return self._cold._value(value, tenant, key, **options)

    def _load(self, raw: bytes, tenant: str, key: Any) -> Any:
        return self._cold._load(raw, tenant, key)

    def _no_history_deletes(self) -> None:
        raise ReadOnlyError(
            "history is append-only in projection mode: records cannot be deleted or "
            "overwritten (drop_tenant() removes a tenant's history and projection)",
            backend="tiered",
        )

    def _check_write(self) -> None:
        """Open, writable, and no unfinished drop_tenant in cold (finished here)."""
        if self._closed or self._read_only:
            self._check_writable()
        if self._needs_recovery:
            self._finish_cold_drops()
            self._needs_recovery = False

    def _cold_write(self, ops: list[Op], seq: int) -> None:
        try:
            self._cb.write(ops)
        except BaseException:
            self._resync_seq()
            raise
        self._seq = seq

    def _resync_seq(self) -> None:
        # The batch is atomic, but an error can come after it was applied (e.g. a failed
        # fsync): take the sequence number from the log itself so the next entry never
        # overwrites one that exists.
        try:
            self._seq = self._last_seq()
        except Exception:  # the original error is the one to raise
            pass

    def _hot_failed(self, seq: int, exc: BaseException) -> HotTierError:
        return HotTierError(
            f"the write is durable in the cold tier {self._cold._describe()} (history, "
            f"change-log seq {seq}) but the hot tier {self._hot._describe()} failed to "
            f"apply it: {type(exc).__name__}: {exc}. Nothing is lost: hot catches up on the "
            "next write, catch_up() or open",
            seq=seq,
            backend="tiered",
        )

    def _hot_apply(self, ops: list[Op], seq: int) -> None:
        """Step 2 for cache mode (``ops`` are the same puts/deletes as in cold).

        Cache updates are idempotent (replay writes cold's current value), so hot's
        position is recorded only every ``trim_every`` writes and at close: a direct hot
        write per tiered write, and at most ``trim_every`` entries re-applied after a
        crash. Projection mode records it with every update (exactly once).
        """
        if self._pos != seq - 1:
            self._catch_up_or_raise(seq)
            return
        hb = self._hb
        try:
            if len(ops) == 1:
                k, v = ops[0]
                if v is None:
                    hb.delete(k)
                else:
                    hb.put(k, v)
            else:
                hb.write(ops)
        except Exception as exc:
            raise self._hot_failed(seq, exc) from exc
        self._pos = seq
        if seq - self._saved >= self._trim_every:
            self._save_pos()

    def _save_pos(self) -> None:
        """Record hot's position in hot (cache mode), then trim the log behind it."""
        if self._pos == self._saved:
            return
        try:
            self._hb.put(POS, seq_bytes(self._pos))
        except Exception as exc:
            raise self._hot_failed(self._pos, exc) from exc
        self._saved = self._pos
        self._trim()

    def _catch_up_or_raise(self, seq: int) -> None:
        try:
            self._catch_up_locked(1)
        except ProjectionError:
            raise
        except Exception as exc:
            raise self._hot_failed(seq, exc) from exc

    def _trim(self) -> None:
        # Entries up to the recorded POS are applied; keep the last one, whose key tells
        # the next seq.
        upto = min(self._saved, self._seq)
        if upto <= self._trimmed:
            return
        try:
            self._cb.delete_range(log_key(self._trimmed), log_key(upto))
        except StorageError:
            return  # housekeeping only: retried at the next trim
        self._trimmed = upto

    def _clear_hot(self, lo: bytes, hi: bytes) -> None:
        while True:
            keys = _take(self._hb.scan_keys(lo, hi), _CLEAR_CHUNK)
            if not keys:
                return
            self._hb.write([(k, None) for k in keys])
            if len(keys) < _CLEAR_CHUNK:
                return
            lo = keys[-1] + b"\x00"

    # ------------------------------------------------------------------ projecting

    def _project(
        self,
        state: ProjectionState,
        tenant: str,
        offset: int,
        full: bytes,
        data: bytes,
        seq: int | None,
    ) -> None:
        assert self._projection is not None
        try:
            key = _decode_key_at(full, offset)
            value = self._cold.codec.decode(data)
        except Exception as exc:
            raise CorruptionError(
                f"history record {full!r} of tenant {tenant!r} cannot be decoded: {exc}",
                tenant=tenant,
                backend="tiered",
            ) from exc
        try:
            self._projection(HistoryRecord(tenant, key, value, seq), state._bind(tenant))
        except _HotReadError as exc:
            raise exc.cause from exc.cause.__cause__
        except Exception as exc:
            raise ProjectionError(
                f"the projection failed on history record {key!r} of tenant {tenant!r}"
                f"{'' if seq is None else f' (change-log seq {seq})'}: "
                f"{type(exc).__name__}: {exc}",
                tenant=tenant,
                key=key,
                backend="tiered",
            ) from exc

    def _append(self, records: list[tuple[str, int, bytes, bytes]], entry: bytes) -> None:
        """Projection mode: append history records (tenant, key offset, full key, value)."""
        if len(records) == 1:
            existing = [self._cb.get(records[0][2])]
        else:
            fulls = [r[2] for r in records]
            if len(set(fulls)) != len(fulls):
                raise KeyExistsError(
                    "the same history key is given twice in one write; history is append-only",
                    backend="tiered",
                )
            existing = self._cb.get_many(fulls)
        for rec, raw in zip(records, existing, strict=True):
            if raw is not None:
                tenant = rec[0]
                key = _decode_key_at(rec[2], rec[1])
                raise KeyExistsError(
                    f"history record {key!r} of tenant {tenant!r} already exists; history "
                    "is append-only in projection mode (write each event under a new key)",
                    tenant=tenant,
                    key=key,
                    backend="tiered",
                )
        seq = self._seq + 1
        overlay: dict[bytes, bytes | None] | None = None
        if self._pos == self._seq:
            # Hot is current: project first, so a failing projection writes nothing.
            overlay = {}
            state = ProjectionState(self._hot, overlay)
            try:
                for tenant, offset, full, data in records:
                    self._project(state, tenant, offset, full, data, seq)
            except ProjectionError:
                raise
            except Exception:
                # Hot failed to read: history is still written; hot catches up later
                # (the catch-up below fails the same way and reports HotTierError).
                overlay = None
        ops: list[Op] = [(f, d) for _, _, f, d in records]
        ops.append((log_key(seq), entry))
        self._cold_write(ops, seq)
        if overlay is None:
            self._catch_up_or_raise(seq)
            return
        hot_ops: list[Op] = list(overlay.items())
        hot_ops.append((POS, seq_bytes(seq)))
        try:
            self._hb.write(hot_ops)
        except Exception as exc:
            raise self._hot_failed(seq, exc) from exc
        self._pos = self._saved = seq
        if seq - self._trimmed >= self._trim_every:
            self._trim()

    # ------------------------------------------------------------------ recovery

    def _finish_cold_drops(self) -> None:
        """Complete in cold every drop_tenant whose intent is logged but not done."""
        intents = [
            (k, e)
            for k, e in self._cb.scan(log_key(self._pos + 1), LOG_END)
            if e[0] == _log.DROP_INTENT
        ]
        for k, entry in intents:
            prefix = entry[1:]
            self._cb.delete_range(prefix, prefix + _TENANT_END)
            self._cb.put(k, _log.drop_done(prefix))

    def _catch_up_locked(self, group: int = _GROUP) -> int:
        # ``group`` starts small when a write retries a failed hot tier: a hot tier that
        # is still down then costs one entry's work per write, not a whole group's.
        applied = 0
        projecting = self._projection is not None
        while self._pos < self._seq:
            entries = _take(self._cb.scan(log_key(self._pos + 1), LOG_END), group)
            group = min(group * 4, _GROUP)
            if not entries:
                raise CorruptionError(
                    f"the change log of the cold tier {self._cold._describe()} ends at "
                    f"{self._pos}, before its last entry {self._seq}",
                    backend="tiered",
                )
            overlay: dict[bytes, bytes | None] = {}
            state = ProjectionState(self._hot, overlay)
            last = self._pos
            for k, entry in entries:
                s = seq_of(k)
                kind = entry[0]
                if kind in (_log.DROP_INTENT, _log.DROP_DONE):
                    self._flush(overlay, last)
                    prefix = entry[1:]
                    if kind == _log.DROP_INTENT:
                        self._cb.delete_range(prefix, prefix + _TENANT_END)
                        self._cb.put(k, _log.drop_done(prefix))
                    self._clear_hot(prefix, prefix + _TENANT_END)
                    self._hb.write([(POS, seq_bytes(s))])
                    self._pos = self._saved = last = s
                    applied += 1
                    continue
                for full in _log.keys_of(entry):
                    raw = self._cb.get(full)
                    if not projecting:
                        overlay[full] = raw
                    elif raw is not None:  # None: the tenant's history was dropped since
                        tenant, offset = self._split(full)
                        self._project(state, tenant, offset, full, raw, s)
                last = s
                applied += 1
            self._flush(overlay, last)
        return applied

    def _split(self, full: bytes) -> tuple[str, int]:
        try:
            return decode_tenant_key(full)
        except ValueError as exc:
            raise CorruptionError(f"a history key has a damaged tenant: {exc}") from exc

    def _flush(self, overlay: dict[bytes, bytes | None], last: int) -> None:
        if last == self._pos and not overlay:
            return
        ops: list[Op] = list(overlay.items())
        ops.append((POS, seq_bytes(last)))
        self._hb.write(ops)
        overlay.clear()
        self._pos = self._saved = last

    def catch_up(self) -> int:
        """Apply to hot every change-log entry it has not seen; return how many.

        Call it after a :class:`HotTierError` once the hot tier is healthy again (the
        next tiered write does it too). Opening the pair always does it.

        Raises:
            ProjectionError: the projection failed; hot stays at the last good record.
            StorageError: a tier failed; run it again once the tier is repaired.
        """
        with self._lock:
            self._check_write()
            return self._catch_up_locked()

    def rebuild(
        self, tenant: str | None = None, *, progress: ProgressCallback | None = None
    ) -> int:
        """Recompute hot from cold: all tenants, or one; return the records applied.

        Streams history in key order (per tenant) in chunks of ``rebuild_chunk`` records,
        each committed in one hot transaction, so memory stays flat however long history
        is. ``progress`` is called after each chunk with a :class:`RebuildProgress`. A
        rebuild interrupted by a crash is redone when the pair is opened again. In cache
        mode it copies every cold record into hot (a full warm-up).
        """
        with self._lock:
            self._check_write()
            if tenant is None:
                lo, hi, marker = NS_DATA, NS_DATA_END, _ALL
            else:
                lo = self._cold._prefix(tenant)
                hi, marker = lo + _TENANT_END, lo
                # A one-tenant rebuild keeps POS, so everything else must be current.
                self._catch_up_locked()
            return self._rebuild_range(lo, hi, marker, tenant, progress)

    def _rebuild_range(
        self,
        lo: bytes,
        hi: bytes,
        marker: bytes,
        tenant: str | None,
        progress: ProgressCallback | None,
    ) -> int:
        total = self._cb.count_range(lo, hi) if progress is not None else 0
        self._hb.write([(REBUILD, marker), (PAIR, self._pair)])
        self._clear_hot(lo, hi)
        done = self._replay_range(lo, hi, total, tenant, progress)
        self._hb.write([(REBUILD, None), (POS, seq_bytes(self._seq))])
        self._pos = self._saved = self._seq
        return done

    def _replay_range(
        self,
        lo: bytes,
        hi: bytes,
        total: int,
        tenant: str | None,
        progress: ProgressCallback | None,
    ) -> int:
        overlay: dict[bytes, bytes | None] = {}
        state = ProjectionState(self._hot, overlay)
        projecting = self._projection is not None
        chunk = self._chunk
        cur_prefix = b"\x00"  # never a data key's prefix
        cur_tenant, offset = "", 0
        done = pending = 0
        for full, raw in self._cb.scan(lo, hi):
            if not projecting:
                overlay[full] = raw
            else:
                # A key of another tenant may start with this tenant's prefix (a vs
                # a\x00b); element type codes are never 0xFF, the escape byte.
                if not (full.startswith(cur_prefix) and full[offset] != 0xFF):
                    cur_tenant, offset = self._split(full)
                    cur_prefix = full[:offset]
                self._project(state, cur_tenant, offset, full, raw, None)
            done += 1
            pending += 1
            if pending >= chunk:
                self._hb.write(list(overlay.items()))
                overlay.clear()
                pending = 0
                if progress is not None:
                    progress(RebuildProgress(done, max(total, done), tenant))
        if overlay:
            self._hb.write(list(overlay.items()))
        if progress is not None:
            progress(RebuildProgress(done, max(total, done), tenant))
        return done

    # ------------------------------------------------------------------ writes

    def put(self, tenant: str, key: K, value: V) -> None:
        """Cache mode: store the record in cold, then hot. Projection mode: append a
        history record to cold and apply the projection to hot.

        Raises:
            KeyExistsError: projection mode, the history key exists (append-only).
            ProjectionError: projection mode, the projection raised; nothing written.
            HotTierError: durable in cold; hot will catch up.
            InvalidTenantError, InvalidKeyError, KeyTooLargeError, SerializationError,
            ReadOnlyError, RepositoryClosedError: as :meth:`Repository.put`.
        """
        cold = self._cold
        full = cold._full(tenant, key)
        try:
            data = self._cold_encode(value)
        except Exception:
            data = cold._value(value, tenant, key)
        with self._lock:
            if self._closed or self._read_only or self._needs_recovery:
                self._check_write()
            if self._projection is not None:
                self._append([(tenant, len(cold._prefix(tenant)), full, data)], _log.one(full))
                return
            # The hot path, inlined: cold batch (record + log entry), then hot put.
            seq = self._seq + 1
            try:
                self._cb_write([(full, data), (LOG + seq.to_bytes(8, "big"), b"k" + full)])
            except BaseException:
                self._resync_seq()
                raise
            self._seq = seq
            if self._pos != seq - 1:
                self._catch_up_or_raise(seq)
                return
            try:
                self._hb_put(full, data)
            except Exception as exc:
                raise self._hot_failed(seq, exc) from exc
            self._pos = seq
            if seq - self._saved >= self._trim_every:
                self._save_pos()

    def insert(self, tenant: str, key: K, value: V) -> None:
        """Store only if ``(tenant, key)`` is absent (checked in cold, the truth).

        Raises:
            KeyExistsError: the key exists; nothing was written.
        """
        cold = self._cold
        full = cold._full(tenant, key)
        data = cold._value(value, tenant, key)
        with self._lock:
            self._check_write()
            if self._projection is not None:
                self._append([(tenant, len(cold._prefix(tenant)), full, data)], _log.one(full))
                return
            if self._cb.get(full) is not None:
                raise KeyExistsError(
                    f"key {key!r} already exists for tenant {tenant!r}; use put() to overwrite",
                    tenant=tenant,
                    key=key,
                    backend="tiered",
                )
            seq = self._seq + 1
            self._cold_write([(full, data), (log_key(seq), _log.one(full))], seq)
            self._hot_apply([(full, data)], seq)

    def delete(self, tenant: str, key: K) -> bool:
        """Cache mode: remove from cold, then hot; return whether it existed.

        Raises:
            ReadOnlyError: projection mode (history is append-only).
        """
        full = self._cold._full(tenant, key)
        with self._lock:
            self._check_write()
            if self._projection is not None:
                self._no_history_deletes()
            existed = self._cb.get(full) is not None
            seq = self._seq + 1
            self._cold_write([(full, None), (log_key(seq), _log.one(full))], seq)
            self._hot_apply([(full, None)], seq)
            return existed

    def put_many(self, tenant: str, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        """Store many records atomically (in each tier; recovery completes a crash
        between them); return how many. Projection mode: append history records, which
        are projected in the order given."""
        cold = self._cold
        ops: list[Op] = []
        for i, item in enumerate(_args.pairs(items, "put_many")):
            k, v = _args.pair(item, i, "put_many")
            ops.append((cold._full(tenant, k), cold._value(v, tenant, k, held=True)))
        if not ops:
            cold._prefix(tenant)
            return 0
        self._write_ops(ops, tenant)
        return len(ops)

    def get_many(self, tenant: str, keys: Iterable[K], default: V | None = None) -> list[V | None]:
        """Values for ``keys`` in order; cache mode fills hot with cold hits."""
        if self._projection is not None:
            return self._hot.get_many(tenant, keys, default)
        key_list = _args.key_list(keys, "get_many")
        out: list[Any] = self._hot.get_many(tenant, key_list, _MISSING)
        for i, v in enumerate(out):
            if v is _MISSING:
                out[i] = self._miss(tenant, key_list[i], default)
        return out

    def delete_many(self, tenant: str, keys: Iterable[K]) -> int:
        """Cache mode: remove ``keys`` atomically; return how many existed.

        Raises:
            ReadOnlyError: projection mode (history is append-only).
        """
        wanted = _args.key_list(keys, "delete_many")
        fulls = list(dict.fromkeys(self._cold._full(tenant, k) for k in wanted))
        with self._lock:
            self._check_write()
            if self._projection is not None:
                self._no_history_deletes()
            if not fulls:
                return 0
            present = sum(1 for raw in self._cb.get_many(fulls) if raw is not None)
            self._write_locked([(k, None) for k in fulls], None)
        return present

    def batch(self) -> Batch[K, V]:
        """Puts (and, in cache mode, deletes) across tenants, committed atomically when
        the ``with`` block ends (each tier in one batch; recovery completes a crash
        between them)."""
        self._check_writable()
        return _TieredBatch(self)

    def _write(self, ops: list[Op]) -> None:
        # Batch.commit lands here.
        if ops:
            self._write_ops(ops, None)
        else:
            self._check_writable()

    def _write_ops(self, ops: list[Op], tenant: str | None) -> None:
        with self._lock:
            self._check_write()
            self._write_locked(ops, tenant)

    def _write_locked(self, ops: list[Op], tenant: str | None) -> None:
        fulls = [k for k, _ in ops]
        entry = _log.one(fulls[0]) if len(fulls) == 1 else _log.many(fulls)
        if self._projection is not None:
            records: list[tuple[str, int, bytes, bytes]] = []
            for full, data in ops:
                if data is None:
                    self._no_history_deletes()
                    return
                if tenant is not None:
                    records.append((tenant, len(self._cold._prefix(tenant)), full, data))
                else:
                    t, off = self._split(full)
                    records.append((t, off, full, data))
            self._append(records, entry)
            return
        seq = self._seq + 1
        cold_ops = list(ops)
        cold_ops.append((log_key(seq), entry))
        self._cold_write(cold_ops, seq)
        self._hot_apply(list(ops), seq)

    def drop_tenant(self, tenant: str) -> int:
        """Delete every record of ``tenant`` in both tiers (projection mode: its history
        and its projection); return how many records cold held.

        An intent is logged in cold first, so a crash in the middle is completed when the
        pair is opened again (or at the next write).
        """
        prefix = self._cold._prefix(tenant)
        with self._lock:
            self._check_write()
            seq = self._seq + 1
            self._cold_write([(log_key(seq), _log.drop_intent(prefix))], seq)
            try:
                n = self._cb.delete_range(prefix, prefix + _TENANT_END)
                self._cb.put(log_key(seq), _log.drop_done(prefix))
            except BaseException:
                self._needs_recovery = True  # the next write finishes the drop first
                raise
            if self._pos != seq - 1:
                self._catch_up_or_raise(seq)
                return n
            try:
                self._clear_hot(prefix, prefix + _TENANT_END)
                self._hb.write([(POS, seq_bytes(seq))])
            except Exception as exc:
                raise self._hot_failed(seq, exc) from exc
            self._pos = self._saved = seq
            return n

    # ------------------------------------------------------------------ reads

    def get(self, tenant: str, key: K, default: V | None = None) -> V | None:
        """Projection mode: the projected value. Cache mode: hot, else cold (filling hot
        when ``fill="read"``)."""
        if self._projection is not None:
            return self._hot.get(tenant, key, default)
        # Inlined hot read (both tiers share the key encoding and, in cache mode, the
        # codec): a hit costs what a direct hot get costs.
        if self._closed:
            self._check_open()
        full = self._cold._full(tenant, key)
        raw = self._hb_get(full)
        if raw is not None:
            try:
                return self._decode(raw)  # type: ignore[no-any-return]
            except Exception:
                return self._hot._load(raw, tenant, key)  # type: ignore[no-any-return]
        return self._miss(tenant, key, default, full)  # type: ignore[no-any-return]

    def _miss(self, tenant: str, key: Any, default: Any, full: bytes | None = None) -> Any:
        if full is None:
            full = self._cold._full(tenant, key)
        raw = self._cb.get(full)
        if raw is None:
            return default
        if self._fill and not self._read_only:
            with self._lock:
                # Re-read under the writers' lock: a write between the two reads must
                # not be overwritten in hot by the older value.
                fresh = self._cb.get(full)
                if fresh is not None and not self._closed:
                    try:
                        self._hb.put(full, fresh)
                    except StorageError:
                        pass  # a fill is an optimisation; the read itself succeeded
                    raw = fresh
        return self._cold._load(raw, tenant, key)

    def has(self, tenant: str, key: K) -> bool:
        """Whether ``(tenant, key)`` holds a value (projection mode: in the projection)."""
        if self._projection is not None:
            return self._hot.has(tenant, key)
        return self._hot.has(tenant, key) or self._cold.has(tenant, key)

    def _reader(self) -> Repository[Any, Any]:
        if self._closed:
            self._check_open()
        # Cache mode: cold holds every record, hot only a subset.
        return self._cold if self._projection is None else self._hot

    def keys(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[K]:
        """See :meth:`Repository.keys` (cache mode reads cold, projection mode hot)."""
        return self._reader().keys(
            tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def values(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[V]:
        """See :meth:`Repository.values`."""
        return self._reader().values(
            tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def items(
        self,
        tenant: str,
        *,
        prefix: Any = None,
        start: K | None = None,
        stop: K | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[K, V]]:
        """See :meth:`Repository.items`."""
        return self._reader().items(
            tenant, prefix=prefix, start=start, stop=stop, reverse=reverse, limit=limit
        )

    def list(self, tenant: str, prefix: Any = None) -> list[K]:
        """See :meth:`Repository.list`."""
        return self._reader().list(tenant, prefix)

    def count(self, tenant: str, *, prefix: Any = None) -> int:
        """See :meth:`Repository.count`."""
        return self._reader().count(tenant, prefix=prefix)

    def tenants(self) -> Iterator[str]:
        """See :meth:`Repository.tenants` (projection mode: tenants with projected data)."""
        return self._reader().tenants()

    # ------------------------------------------------------------------ lifecycle

    def stats(self) -> dict[str, Any]:
        """The mode, the change-log position of each tier, and both tiers' stats."""
        self._check_open()
        return {
            "backend": "tiered",
            "mode": self._mode,
            "codec": self._codec.name,
            "cold_seq": self._seq,
            "hot_applied": self._pos,
            "lag": self._seq - self._pos,
            "recovered_on_open": self._recovered,
            "hot": self._hot.stats(),
            "cold": self._cold.stats(),
        }

    def flush(self) -> None:
        """Flush both tiers (cold first)."""
        self._check_open()
        self._cold.flush()
        self._hot.flush()

    def as_async(self) -> AsyncTieredRepository[K, V]:
        """The asynchronous twin, with :meth:`rebuild` and :meth:`catch_up` as coroutines."""
        from ._async import AsyncTieredRepository

        return AsyncTieredRepository(self)

    def close(self) -> None:
        """Close both tiers. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            with self._lock:
                if not self._read_only and not self._hot.closed and self._pos == self._seq:
                    try:
                        self._save_pos()
                    except StorageError:
                        pass  # hot is failing: the next open catches up from its POS
                self._closed = True
                try:
                    self._hot.close()
                finally:
                    self._cold.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<TieredRepository {self._mode} {self._describe()} {state}>"


class _TieredBatch(Batch[K, V]):
    """A batch of a tiered repository; refuses deletes of history in projection mode."""

    _repo: TieredRepository[K, V]

    def delete(self, tenant: str, key: K) -> None:
        """Add a delete (cache mode only)."""
        if self._repo.mode == "projection":
            self._repo._no_history_deletes()
        super().delete(tenant, key)


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
