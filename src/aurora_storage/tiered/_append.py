"""Projection-mode writes: append history records and project them.

The rule for a projection that raises on a new event: **the projection runs before
anything is written**, so a raising projection *rejects* the event
(:class:`ProjectionError`, ``durable=False``, nothing in either tier). For that, hot must
be current first: a write catches hot up (with the poison policy) before projecting.

If hot cannot be brought current or read (the hot tier is failing), the event is still
appended to history - a failing hot tier never blocks history - and the caller gets
:class:`HotTierError` (``durable=True``); the projection then runs at catch-up, where a
raising projection is handled by the poison policy. An event for a tenant stopped by a
poison record is appended and parked behind it: :class:`TenantStoppedError`
(``durable=True``).
"""

from __future__ import annotations

from os import urandom
from typing import Any

from .._keys import decode_key_at
from ..backend import Op
from ..errors import ConditionFailed, KeyExistsError
from . import _recovery
from ._apply import NO_KEY, Applier
from ._cache import over_bound
from ._core import Pair
from ._errors import ProjectionError, TenantStoppedError
from ._log import LOG, NONCE_SIZE, POS
from ._types import _HotDamage

__all__ = ["NO_KEY", "Record", "append"]

#: (tenant, key offset in the full key, full key, encoded value)
Record = tuple[str, int, bytes, bytes]


def _check_absent(p: Pair, records: list[Record]) -> None:
    if len(records) == 1:
        if p.cb.get(records[0][2]) is None:
            return  # the common write: one new record
        existing: list[bytes | None] = [b""]
    else:
        fulls = [r[2] for r in records]
        if len(set(fulls)) != len(fulls):
            raise KeyExistsError(
                "the same history key is given twice in one write; history is append-only",
                backend="tiered",
            )
        existing = p.cb.get_many(fulls)
    for (tenant, offset, full, _), raw in zip(records, existing, strict=True):
        if raw is not None:
            key = decode_key_at(full, offset)
            raise KeyExistsError(
                f"history record {key!r} of tenant {tenant!r} already exists; history is "
                "append-only in projection mode (write each event under a new key)",
                tenant=tenant,
                key=key,
                backend="tiered",
            )


def append(p: Pair, records: list[Record], entry: bytes, key: Any = NO_KEY) -> None:
    """Append ``records`` to history (one cold batch with change-log ``entry``) and
    apply them to the projection (one hot batch with the new position).

    ``key``: for one record, its key as read back from history (a ``str`` key: itself),
    so the projection's record is built without decoding it again.

    Raises:
        KeyExistsError: a history key exists; nothing was written.
        ProjectionError: the projection raised on a new record (or returned an
            awaitable, on it or on an earlier record the catch-up before it met);
            nothing was written.
        BatchTooLargeError: more records than the pair's bound (its
            ``capabilities.max_batch_ops``, see Pair.check_batch), or the projection's
            updates plus the position are more operations than one hot batch may hold
            (a bounded hot tier, ``p.hot_batch``: a projection writing more than one
            update per record); nothing was written.
        HotTierError: durable in history; hot catches up later.
        TenantStoppedError: durable in history; parked behind its tenant's stop (a
            poison record, or its projection in hot is damaged: the write that meets
            the damage stops the tenant).
        DurableWriteError: cold reported an error after committing; durable.
        VersionConflictError: another writer took change-log entry ``p.seq + 1``
            (another process writes the pair, or an earlier write whose answer was lost
            landed); nothing was written (see :meth:`Pair.cold_write`).
    """
    if p.batch_bound is not None:
        p.check_batch(len(records))  # before anything is read, projected or written
    # Required: history is append-only, and an overwritten record would be projected a
    # second time. One engine read; the pair is the store's only writer (one live handle
    # per store per process, and every write of the pair holds ``p.lock``), so the key
    # cannot appear between this read and the cold batch.
    if len(records) != 1 or p.cb.get(records[0][2]) is not None:
        _check_absent(p, records)
    if not p.seq_known:
        p.ensure_seq()  # an earlier cold batch's outcome was unknown; nothing written
    seq = p.seq + 1
    cause: BaseException | None = None
    # The pair's reusable applier (policy ``reject``), taken out while in use: a write
    # that fails drops it, and a nested write (a projection that writes to the pair,
    # which it must not) builds its own.
    ap: Applier | None = p.writer
    p.writer = None
    try:
        if not p.pos_known or p.pos < p.seq or p.swap_pending is not None:
            _recovery.catch_up(p, 1)
        if ap is None:
            ap = Applier(p, "reject")
        if len(records) == 1:
            tenant, offset, full, data = records[0]
            ap.apply(full, data, seq, tenant, offset, key)
        else:
            for tenant, offset, full, data in records:
                ap.apply(full, data, seq, tenant, offset)
    except ProjectionError as exc:
        if exc.durable:
            # From the catch-up: the projection returned an awaitable instead of
            # applying an earlier record (see _apply). This event is not written.
            tenant, offset, full, _ = records[0]
            raise ProjectionError(
                "before the new event is projected, hot is brought up to date with "
                f"history, and that failed: {exc}. The new event "
                f"{decode_key_at(full, offset)!r} of tenant {tenant!r} was rejected; "
                "nothing was written",
                durable=False,
                tenant=tenant,
                key=decode_key_at(full, offset),
                backend="tiered",
            ) from exc
        raise
    except Exception as exc:
        # Hot could not be brought current or read: history is still written; the
        # projection runs at catch-up.
        cause, ap = exc, None
        p.pos_known = False  # any hot error: what hot holds is re-read before applying
    limit = p.hot_batch
    if limit is not None and ap is not None and ap.size() >= limit:  # + POS > limit
        # Refused before cold: catch-up could never apply this entry atomically with
        # its position, so every later write and catch-up would stop at it.
        size = ap.size()
        ap.clear()
        p.writer = ap
        raise over_bound(p, size, limit, with_position=True)
    position = seq.to_bytes(8, "big")  # seq_bytes(seq); log_key(seq) is LOG + this
    nonce = urandom(NONCE_SIZE)  # hot records it with the position (see _log.NONCED)
    entry = b"N" + nonce + entry  # _log.nonced(entry, nonce), inline
    if len(records) == 1:
        ops: list[Op] = [(records[0][2], records[0][3]), (LOG + position, entry)]
    else:
        ops = [(full, data) for _, _, full, data in records]
        ops.append((LOG + position, entry))
    try:  # Pair.cold_write, inline
        if p.create_only:
            p.cold_batch(ops, seq)
        else:
            p.cb.write(ops)
    except ConditionFailed as exc:
        if ap is not None:
            ap.clear()
            p.writer = ap
        raise p.log_taken(seq) from exc
    except BaseException as exc:
        p.cold_failed(exc, seq, entry)
    p.seq = seq
    if ap is None:
        assert cause is not None
        if isinstance(cause, _HotDamage):
            _stop_damaged(p, seq, records, cause)
            return  # applied after all (see _stop_damaged)
        raise p.hot_failed(seq, cause) from cause
    hot_ops = ap.ops()
    hot_ops.append((POS, position + nonce))
    try:  # Pair.pos_write, inline
        if p.guard:
            p.hb.commit(hot_ops, conditions=((POS, p.pos_version),))
            p.pos_version = p.hb.version_of(position + nonce)
        else:
            p.hb.write(hot_ops)
    except ConditionFailed:
        # Another process writing the pair moved hot's position after this pair read it
        # (it applied this entry from cold, or changed what the projection read):
        # nothing of the batch was written. The write is durable in cold; hot is caught
        # up from where it is now.
        p.pos_known = False
        try:
            _recovery.catch_up(p, 1)
        except Exception as exc:
            raise p.hot_failed(seq, exc) from exc
    except BaseException as exc:
        p.pos_known = False  # hot may or may not hold the batch: re-read before applying
        if not isinstance(exc, Exception):
            raise
        raise p.hot_failed(seq, exc) from exc
    else:
        p.pos = p.saved = seq
        p.pos_nonce = nonce
    if seq - p.trimmed >= p.config.trim_every:
        p.trim()
    if ap.held:
        tenant, held_key = ap.held[0]
        raise _stopped(p, seq, tenant, held_key)
    ap.clear()
    p.writer = ap


def _stopped(p: Pair, seq: int, tenant: str, key: Any) -> TenantStoppedError:
    """The error for a write durable in history whose record ``key`` of ``tenant`` is
    parked behind its tenant's stop (a poison record, or a damaged projection)."""
    if p.stop_reason(p.cold._prefix(tenant)) == "damaged":
        why = "is stopped because its projection in the hot tier is damaged"
        fix = f"rebuild({tenant!r}) derives it again from history and applies the record"
    else:
        why = "is stopped by an earlier poison record"
        fix = "fix the projection, then call retry_parked()"
    return TenantStoppedError(
        f"the write is durable in history (change-log seq {seq}), but tenant {tenant!r}'s "
        f"projection {why}, so record {key!r} is parked behind it; {fix}",
        seq=seq,
        tenant=tenant,
        key=key,
        backend="tiered",
    )


def _stop_damaged(p: Pair, seq: int, records: list[Record], cause: _HotDamage) -> None:
    """A new event's projection read a damaged record of its tenant's projection: the
    event is durable in history (history is never blocked by hot); catch-up applies it
    now, parking it and stopping its tenant (see Applier._damaged), so that no later
    write of any other tenant meets it.

    Raises:
        TenantStoppedError: the tenant is stopped (durable; the engine's error chained).
        HotTierError: the catch-up failed (durable; hot catches up later).
    """
    try:
        _recovery.catch_up(p, 1)
    except Exception as exc:
        raise p.hot_failed(seq, exc) from exc
    for tenant, offset, full, _ in records:
        if full[:offset] in p.stopped:
            raise _stopped(p, seq, tenant, decode_key_at(full, offset)) from cause.cause
    # Applied after all (a rebuild by another process repaired hot meanwhile): done.
