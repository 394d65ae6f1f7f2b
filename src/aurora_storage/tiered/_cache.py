"""Cache-mode writes and read fills: both tiers hold the same records.

A write is cold first (the record(s) + a change-log entry, one batch), then the same
puts/deletes in hot. Replaying an entry writes cold's *current* value, so cache updates
are idempotent: hot records its position only every ``trim_every`` writes and at close.
After a hot-tier error the position is uncertain and is re-read before the next write
applies anything (replaying from there is harmless).

On a hot tier other processes may write (``Pair.guard``: LMDB, NATS) every hot write
carries the position instead, conditioned on it (``Pair.pos_write``): two processes
writing one pair must not put an older value over a newer one (a write held between its
cold batch and its hot write while another process wrote the key again and brought hot
to it), and a refused write catches hot up from cold's current values. A fill (``miss``)
is conditioned on the position too.

Without the guard, hot may hold writes past the position it records. Open marks hot ``RUNNING``
and a clean close removes the mark with the exact position; an open that finds it prunes
hot against cold (_recovery.prune_cache), so a cold restored from an older backup after
a kill leaves no value in hot that cold lacks.
"""

from __future__ import annotations

import logging
from os import urandom
from typing import Any

from .._keys import NS_DATA, NS_DATA_END
from ..backend import Op
from ..errors import BatchTooLargeError, CorruptionError, KeyExistsError, StorageError
from . import _log, _recovery
from ._core import Pair, _PositionMoved, damage_text
from ._log import LOG, NONCE_SIZE, POS

__all__ = ["damaged", "insert", "miss", "over_bound", "put", "read", "write"]

log = logging.getLogger("aurora_storage.tiered")


def put(p: Pair, full: bytes, data: bytes) -> None:
    """One record: the hot path (cold batch, then one hot put)."""
    if not p.seq_known:
        p.ensure_seq()
    seq = p.seq + 1
    nonce = urandom(NONCE_SIZE)
    p.cold_write([(full, data), (LOG + seq.to_bytes(8, "big"), b"N" + nonce + b"k" + full)], seq)
    if not p.pos_known or p.pos != seq - 1 or p.swap_pending is not None:
        _catch_up_or_raise(p, seq)
        return
    if p.guard:
        _guarded(p, [(full, data)], seq, nonce)
        return
    try:
        p.hb.put(full, data)
    except BaseException as exc:
        p.pos_known = False
        if not isinstance(exc, Exception):
            raise
        raise p.hot_failed(seq, exc) from exc
    p.pos = seq
    p.pos_nonce = nonce
    if seq - p.saved >= p.config.trim_every:
        p.save_pos()


def insert(p: Pair, full: bytes, data: bytes, tenant: str, key: Any) -> None:
    """Store only if absent in cold (the truth).

    Raises:
        KeyExistsError: the key exists; nothing was written.
    """
    if p.cb.get(full) is not None:
        raise KeyExistsError(
            f"key {key!r} already exists for tenant {tenant!r}; use put() to overwrite",
            tenant=tenant,
            key=key,
            backend="tiered",
        )
    write(p, [(full, data)])


def write(p: Pair, ops: list[Op]) -> None:
    """Puts and deletes, atomically in each tier (recovery completes a crash between).

    Raises:
        BatchTooLargeError: more operations than the pair's bound (its
            ``capabilities.max_batch_ops``: what one batch of each bounded tier takes
            with the records the pair adds, see Pair.check_batch); nothing was written.
    """
    if p.batch_bound is not None:
        # Before cold: neither tier is handed a batch it cannot take (a guarded hot,
        # NATS, takes the position in the same batch, see Pair.pos_write).
        p.check_batch(len(ops))
    fulls = [k for k, _ in ops]
    entry = _log.one(fulls[0]) if len(fulls) == 1 else _log.many(fulls)
    if not p.seq_known:
        p.ensure_seq()
    seq = p.seq + 1
    nonce = urandom(NONCE_SIZE)
    p.cold_write([*ops, (_log.log_key(seq), _log.nonced(entry, nonce))], seq)
    if not p.pos_known or p.pos != seq - 1 or p.swap_pending is not None:
        _catch_up_or_raise(p, seq)
        return
    if p.guard:
        _guarded(p, ops, seq, nonce)
        return
    hb = p.hb
    try:
        if len(ops) == 1:
            k, v = ops[0]
            if v is None:
                hb.delete(k)
            else:
                hb.put(k, v)
        else:
            hb.write(ops)
    except BaseException as exc:
        p.pos_known = False
        if not isinstance(exc, Exception):
            raise
        raise p.hot_failed(seq, exc) from exc
    p.pos = seq
    p.pos_nonce = nonce
    if seq - p.saved >= p.config.trim_every:
        p.save_pos()


def _guarded(p: Pair, ops: list[Op], seq: int, nonce: bytes) -> None:
    """The hot write of entry ``seq`` with its position, conditioned on hot's position
    being the one this pair last saw (``Pair.guard``); refused, hot is caught up."""
    try:
        p.pos_write([*ops, (POS, _log.seq_bytes(seq) + nonce)])
    except _PositionMoved:
        _catch_up_or_raise(p, seq)  # another process moved it: copies cold's values
        return
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        raise p.hot_failed(seq, exc) from exc
    p.pos = p.saved = seq
    p.pos_nonce = nonce
    if seq - p.trimmed >= p.config.trim_every:
        p.trim()


def over_bound(p: Pair, size: int, limit: int, *, with_position: bool) -> BatchTooLargeError:
    """The error for a live write whose hot batch (``size`` operations, plus the
    position when ``with_position``) is over the hot tier's bound ``limit``: the core's
    BatchTooLargeError (an InvalidArgumentError), the type every engine refuses a batch
    over its bound with, which the pair states as ``capabilities.max_batch_ops``."""
    plus = " plus the position" if with_position else ""
    need = size + 1 if with_position else size
    return BatchTooLargeError(
        f"the write needs {size} hot operations{plus} in one atomic batch, more than the "
        f"hot tier {p.hot_name()} may hold ({limit}, its max_batch): hot could not apply "
        "it atomically, so it is refused; nothing was written to either tier. Split the "
        f"write into smaller ones, or open the pair with a hot max_batch of at least {need} "
        "(for NATS, raise the server's jetstream.limits.batch.max_msgs with it)",
        size=size,
        internal=int(with_position),
        limit=limit,
        backend="tiered",
    )


def _catch_up_or_raise(p: Pair, seq: int) -> None:
    try:
        _recovery.catch_up(p, 1)
    except Exception as exc:
        raise p.hot_failed(seq, exc) from exc


def read(p: Pair, full: bytes) -> bytes | None:
    """A point read of the cache: hot's value, else cold's (see :func:`miss`). A
    damaged hot record is read from cold instead, and removed from hot (see
    :func:`damaged`): hot is a cache of cold, never the only copy."""
    try:
        raw = p.hb.get(full)
    except CorruptionError as exc:
        damaged(p, full, exc)
        raw = None
    if raw is None:
        return miss(p, full)
    return raw


def damaged(p: Pair, full: bytes, exc: CorruptionError) -> None:
    """A cache read of ``full`` met a damaged hot record (``exc``: that record, or one
    beside a missing ``full`` that the engine could not rule out as its record): log a
    warning and delete the damaged record from hot, under the writers' lock, so that
    the read (and every later one) goes to cold, which fills hot again with its value
    (``fill="read"``). Deleting a cache record never serves a stale value, whoever
    writes meanwhile; a failed delete is only logged (the read still goes to cold). A
    read-only pair deletes nothing."""
    stored = full if exc.stored_key is None else exc.stored_key
    log.warning(
        "tiered %s: %s in the hot tier (a cache of cold): read from cold instead%s",
        p.describe(),
        damage_text(exc),
        "" if p.read_only else "; the damaged cache record is removed from hot",
    )
    if p.read_only or not NS_DATA <= stored < NS_DATA_END:
        return
    with p.lock:
        if p.closed:
            return
        try:
            p.hb.delete(stored)
        except StorageError as err:
            log.warning(
                "tiered %s: removing the damaged cache record %r from hot failed (%s: %s); "
                "rebuild() replaces it",
                p.describe(),
                stored,
                type(err).__name__,
                err,
            )


def miss(p: Pair, full: bytes) -> bytes | None:
    """A read that missed hot: cold's value, copied into hot when ``fill="read"``."""
    raw = p.cb.get(full)
    if raw is None or p.config.fill != "read" or p.read_only:
        return raw
    with p.lock:
        if p.guard and not p.closed:
            return _guarded_fill(p, full)
        # Re-read under the writers' lock: a write between the two reads must not be
        # overwritten in hot by the older value.
        fresh = p.cb.get(full)
        if fresh is not None and not p.closed:
            try:
                p.hb.put(full, fresh)
            except StorageError:
                pass  # a fill is an optimisation; the read itself succeeded
        return fresh


def _guarded_fill(p: Pair, full: bytes) -> bytes | None:
    """``miss``'s fill when other processes may write hot: hot's position is read
    before cold's value, and the fill commits only if the position is unchanged (it is
    written again, unchanged, because JetStream checks only a condition on a key the
    batch writes): another process's write of the key after the read moved it."""
    try:
        pos = p.hb.get_versioned(POS)
    except StorageError:
        pos = None  # hot is failing: no fill
    fresh = p.cb.get(full)
    if fresh is not None and pos is not None:
        try:
            p.hb.commit([(full, fresh), (POS, pos[0])], conditions=((POS, pos[1]),))
        except StorageError:
            pass  # refused (another process wrote) or failing: a fill is an optimisation
    return fresh
