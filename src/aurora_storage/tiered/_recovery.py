"""Opening a pair, catching hot up with the change log, drop_tenant, and parked records.

Opening checks what the stores record (the pair's identity and *mode* live in cold, so a
projection-mode store opened without its projection is refused rather than silently
turned into a cache), completes what a crash interrupted (a drop_tenant in cold, a
rebuild's switch), then applies every change-log entry after hot's position, each group of
entries in one hot batch together with the new position: each record exactly once.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import orjson

from .._keys import NS_DATA, NS_DATA_END, TENANT_END, decode_key_at
from ..backend import Op
from ..errors import ConfigurationError, CorruptionError
from . import _log, _rebuild
from ._apply import Applier, PoisonError
from ._core import CLEAR_CHUNK, Pair, _PositionMoved, checked_items, items, take
from ._log import (
    COLD_META,
    LOG_END,
    PAIR,
    PARKED,
    PARKED_END,
    POS,
    PROBE,
    REBUILD,
    RUNNING,
    STOPPED,
    log_key,
    seq_bytes,
    seq_of,
)
from ._types import ParkedRecord

__all__ = ["catch_up", "drop_tenant", "open_pair", "parked", "retry_parked"]

#: change-log entries applied per hot transaction during catch-up
GROUP = 256


def _load_meta(raw: bytes, where: str) -> dict[str, Any]:
    try:
        meta = orjson.loads(raw)
        if not isinstance(meta, dict) or not isinstance(meta["id"], str):
            raise TypeError("not a record with an id")
        return meta
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(f"the tiered metadata of {where} is damaged: {exc}") from exc


def open_pair(p: Pair) -> None:
    """Check the stores' records and bring hot to exactly what cold implies.

    Every check that can refuse the pair runs before anything is written: a refused open
    leaves both stores as they were (a new cold store is not stamped with a mode it was
    never used in).

    Raises:
        ConfigurationError: the store was created in the other mode, or hot belongs to
            another pair or holds foreign data, or hot is a pair's cold tier or cold a
            pair's hot tier (swapped tiers: said so), or hot and cold are one store under
            two names (proven by a probe record, see _misplaced).
        CorruptionError: the tiered metadata is damaged.
    """
    raw_hot = p.hot_get(PAIR)
    raw = p.cb.get(COLD_META)
    # A cold record in hot, or a hot record in cold: the tiers are swapped, a tier is
    # another pair's, or they are one store under two names (one NATS bucket as
    # ``localhost`` and as ``127.0.0.1``, which passes every check of the URLs). A
    # rebuild of such a "pair" would clear hot, i.e. a history.
    hot_cold_meta = p.hot_get(COLD_META)
    cold_pair = p.cb.get(PAIR)
    if hot_cold_meta is not None or cold_pair is not None:
        raise _misplaced(p, hot_cold_meta, cold_pair)
    hot_meta = None if raw_hot is None else _load_meta(raw_hot, f"the hot tier {p.hot_name()}")
    recorded: Any
    stamp = False  # cold's record is to be written (new, or an older version's)
    if raw is None:
        pair_id, recorded, stamp = uuid.uuid4().hex, p.mode, True
    else:
        meta = _load_meta(raw, f"the cold tier {p.cold_name()}")
        pair_id, recorded = meta["id"], meta.get("mode")
        if recorded is None:
            # Recorded by an older version, which kept the mode in hot only.
            same = hot_meta is not None and hot_meta["id"] == pair_id
            recorded = str(hot_meta.get("mode", p.mode)) if same and hot_meta else p.mode
            stamp = True
    if recorded == "projection" and p.mode == "cache" and p.read_only:
        # A reader of a projection-mode pair: it writes nothing (never catches up,
        # projects or rebuilds), so nothing is lost without the projection. It reads
        # the projection (hot) as the pair's records, like a pair opened with it.
        p.mode = "projection"
    if recorded != p.mode:
        raise ConfigurationError(_mode_message(p, str(recorded)), backend="tiered")
    if not p.read_only:
        if hot_meta is None and p.hb.first_key(NS_DATA, NS_DATA_END) is not None:
            raise ConfigurationError(
                f"the hot tier {p.hot_name()} holds data that this tiered repository did "
                "not write; give it an empty store (hot is derived from cold and is "
                "overwritten); nothing was written",
                backend="tiered",
            )
        if hot_meta is not None and hot_meta["id"] != pair_id:
            raise ConfigurationError(
                f"the hot tier {p.hot_name()} belongs to another tiered pair (cold tier "
                f"{p.cold_name()} is a different history); use an empty hot store; "
                "nothing was written",
                backend="tiered",
            )
        # Every check passed: from here on the pair writes.
        if stamp:
            p.cb.put(COLD_META, orjson.dumps({"id": pair_id, "mode": recorded}))
            if raw is None and p.hot_get(COLD_META) is not None:
                # A new cold's record showed up in hot: one store. Nothing stays written.
                p.cb.delete(COLD_META)
                raise _same_store(p)
    p.pair_meta = orjson.dumps({"id": pair_id, "mode": p.mode})
    # In this order, for another process writing the pair meanwhile (a shared hot):
    # a trim deletes only entries hot's position has passed, and hot's position names
    # only entries cold holds, so the log's first entry read before the position, and
    # the position read before the log's last entry, never look like a hot behind the
    # trimmed log or ahead of cold (which would derive hot again under that process).
    first = p.first_log_seq()
    p.reload_position()
    p.read_log()
    if p.read_only:
        return
    if hot_meta is None:
        reset_hot(p)
        return
    marker = p.hot_get(REBUILD)
    if (
        hot_meta.get("mode") != p.mode
        or not _same_timeline(p)
        or (marker is not None and not _rebuild.is_marker(marker))
        or p.pos > p.seq
        or (first is not None and p.pos < first - 1)
    ):
        # Hot is ours but cannot be caught up (an interrupted reset, hot restored from an
        # older or newer backup, or hot's position names an entry of another timeline):
        # derive it again.
        reset_hot(p)
        return
    finish_cold_drops(p)
    if marker is not None:
        _rebuild.recover(p, marker)
    running = p.mode == "cache" and p.hot_get(RUNNING) is not None
    if running:
        # The last run ended uncleanly: hot may hold writes past its recorded position,
        # which cold may no longer hold (restored from an older backup). Drop them.
        prune_cache(p)
    p.recovered = catch_up(p)
    if p.mode == "cache" and not running:
        p.hot_write([(RUNNING, b"1")])
    if p.seq - p.trimmed >= p.config.trim_every:
        p.trim()


def prune_cache(p: Pair) -> int:
    """Cache mode, at an open that found ``RUNNING`` (the last run ended without a clean
    close): delete from hot every record whose value cold does not hold; return how
    many.

    Why: a cache-mode pair records hot's position lazily (every ``trim_every`` writes),
    so after a kill hot may hold writes past its recorded position. If cold was then
    restored from an older backup of the same timeline, the entry at that position still
    carries the nonce hot recorded, and no position check can tell: only the values can.
    After the walk every hot record equals cold's (the cache's rule), and catching up
    from the recorded position copies cold's current values again (idempotent). What
    hot holds stays cached (a crash does not cost a cold cache); the walk reads each hot
    record and its cold value, in chunks (one ``get_many`` of cold per chunk).

    Raises:
        the hot or cold tier's error: the open fails; ``RUNNING`` stays, so the next
            open walks again (what was deleted so far was only what cold lacks).
    """
    dropped = 0
    chunk = min(CLEAR_CHUNK, p.hot_batch or CLEAR_CHUNK)
    start = NS_DATA
    while True:
        # A damaged hot record reads as None: it differs from cold's value, so it goes.
        got = take(checked_items(p.hb, start, NS_DATA_END, "deleted"), chunk)
        if not got:
            return dropped
        truth = p.cb.get_many([k for k, _ in got])
        ops: list[Op] = [
            (k, None) for (k, v), c in zip(got, truth, strict=True) if c is None or c != v
        ]
        if ops:
            p.hot_write(ops)
            dropped += len(ops)
        if len(got) < chunk:
            return dropped
        start = got[-1][0] + b"\x00"


def _same_timeline(p: Pair) -> bool:
    """Whether cold's change-log entry at hot's position is the one hot applied: its
    nonce is the one hot recorded with the position. Hot restored from an older backup
    after cold was restored from its own and written on has a matching number but
    another timeline's entry behind it. Trim keeps the entry at hot's saved position, so
    a current hot always finds it. True (no check possible) when cold no longer holds
    the entry, or either side was written before nonces (an 8-byte POS, an entry
    without nonce)."""
    if p.pos <= 0 or not p.pos_nonce:
        return True
    raw = p.cb.get(log_key(p.pos))
    if raw is None:
        return True
    nonce = _log.split(raw)[0]
    return not nonce or nonce == p.pos_nonce


def _misplaced(p: Pair, hot_cold_meta: bytes | None, cold_pair: bytes | None) -> ConfigurationError:
    """The error for a hot tier holding a pair's cold record (``hot_cold_meta``) or a
    cold tier holding a pair's hot record (``cold_pair``): "the same store" only when
    a probe proves it (a record written in cold is seen in hot, then removed: nothing
    stays written); else what each tier is (swapped tiers, another pair's tier)."""
    if _one_store(p):
        return _same_store(p)
    hot, cold = p.hot_name(), p.cold_name()
    if hot_cold_meta is not None and cold_pair is not None:
        pair_id = _pair_id(hot_cold_meta)
        same_pair = pair_id is not None and pair_id == _pair_id(cold_pair)
        what = "that pair's hot tier" if same_pair else "the hot (derived) tier of a tiered pair"
        message = (
            f"the hot tier {hot} is the cold (history) tier of a tiered pair, and the cold "
            f"tier {cold} is {what}: the tiers are given the wrong way round; swap the "
            "hot and cold URLs (hot=the derived store, cold=the history)"
        )
    elif hot_cold_meta is not None:
        message = (
            f"the hot tier {hot} is the cold (history) tier of a tiered pair (it holds "
            "that pair's history and change log; opening it as hot would overwrite it): "
            "if the URLs are the wrong way round, swap them; otherwise give hot an empty "
            "store of its own"
        )
    else:
        message = (
            f"the cold tier {cold} is the hot (derived) tier of a tiered pair (a "
            "projection or cache that pair overwrites at will, not a history): if the URLs "
            "are the wrong way round, swap them; otherwise give cold a store of its own"
        )
    return ConfigurationError(f"{message}; nothing was written", backend="tiered")


def _pair_id(raw: bytes) -> str | None:
    """The pair id of a tiered record (hot's PAIR or cold's COLD_META), if readable."""
    try:
        meta = orjson.loads(raw)
    except ValueError:
        return None
    found = meta.get("id") if isinstance(meta, dict) else None
    return found if isinstance(found, str) else None


def _one_store(p: Pair) -> bool:
    """Whether hot and cold are one store: a random record written in cold is seen in
    hot (then removed again). False when cold cannot be written (read-only): no probe."""
    if p.read_only:
        return False
    probe = os.urandom(16)
    p.cb.put(PROBE, probe)
    try:
        return p.hot_get(PROBE) == probe
    finally:
        p.cb.delete(PROBE)


def _same_store(p: Pair) -> ConfigurationError:
    return ConfigurationError(
        "the hot and cold tiers must be two different stores: the hot tier "
        f"{p.hot_name()} and the cold tier {p.cold_name()} are the same store (each sees "
        "the other's tiered record; their identity could not be told from the URLs, e.g. "
        "one server under two host names). Give hot a store of its own; nothing was "
        "written",
        backend="tiered",
    )


def _mode_message(p: Pair, recorded: str) -> str:
    if recorded == "projection":
        return (
            f"the tiered store {p.cold_name()} was created in projection mode: open it "
            "with its projection (projection=<function>, or projection=<registered name> "
            "in the URL); without it the projection would be lost"
        )
    return (
        f"the tiered store {p.cold_name()} was created in cache mode: it holds no "
        "history to project; give a projection its own (new) cold store"
    )


def reset_hot(p: Pair) -> None:
    """Hot from scratch: a full build in projection mode, an empty cache otherwise."""
    finish_cold_drops(p)
    if p.mode == "projection":
        _rebuild.fresh(p)
    else:
        marker = _rebuild.FRESH + seq_bytes(p.seq) + _rebuild.ALL
        p.hot_write([(REBUILD, marker), (PAIR, p.pair_meta)])
        p.clear_hot(NS_DATA, NS_DATA_END)
        # RUNNING: this pair writes hot from here on (cleared at its clean close). On a
        # hot of 2-operation batches it goes in a batch of its own, after the position:
        # a kill between leaves an empty hot at its exact position, which needs no mark.
        final: list[Op] = [(REBUILD, None), (RUNNING, b"1"), (POS, p.position_of(p.seq))]
        try:
            if p.hot_batch is None or p.hot_batch >= len(final):
                p.pos_write(final)
            else:
                p.pos_write([(REBUILD, None), final[-1]])
                p.hot_write([(RUNNING, b"1")])
        except _PositionMoved:
            # Another process writing the pair recorded a position meanwhile (guard):
            # what hot holds is what it wrote (cache copies of cold at its position;
            # the clear above only removed records): keep its position.
            p.hot_write([(REBUILD, None), (RUNNING, b"1")])
        p.reload_position()
    p.hot_lost = False  # only once hot is whole again: a failure above derives it again


def finish_cold_drops(p: Pair) -> None:
    """Complete in cold every drop_tenant whose intent is logged but not done."""
    start = log_key(p.pos + 1) if p.pos_known else log_key(0)
    intents = []
    for k, e in items(p.cb, start, LOG_END):
        nonce, entry = _log.split(e)
        if entry[0] == _log.DROP_INTENT:
            intents.append((k, nonce, entry))
    for k, nonce, entry in intents:
        prefix = entry[1:]
        p.cb.delete_range(prefix, prefix + TENANT_END)
        p.cb.put(k, _done(prefix, nonce))
    p.needs_drop_finish = False


def catch_up(p: Pair, group: int = GROUP) -> int:
    """Apply every change-log entry after hot's position; return how many.

    ``group`` starts small when a write retries a failed hot tier: a hot tier that is
    still down then costs one entry's work per write, not a whole group's.

    On a hot tier with bounded atomic batches (``p.hot_batch``) a group is committed
    before it would exceed the bound: the entry that overflows it is applied again at
    the start of the next group (the group's collected updates are discarded, nothing
    of them was written, and the entries before it are applied again into a fresh
    group of exactly that many entries).

    Another process writing the pair (on a hot tier it may write, ``Pair.guard``) may
    apply entries meanwhile: a group whose hot batch is refused for it
    (:class:`_PositionMoved`, nothing of the group written) is not an error; the position
    is re-read and the catch-up goes on from there. The count returned is of the
    entries this call applied.

    Raises:
        ConfigurationError: one change-log entry alone needs more hot operations than
            one hot batch may hold with the position (cache mode: than one batch may
            hold); nothing of it was applied.
        the hot or cold tier's error: nothing past the last committed group is applied;
            the position is re-read from hot before the next attempt.
    """
    p.ensure_seq()
    total = 0
    try:
        while True:
            done = [0]
            try:
                return total + _catch_up(p, group, done)
            except _PositionMoved:
                total += done[0]  # pos_known is false: re-read at the next round
    except BaseException:
        p.pos_known = False  # any hot error: what hot holds is re-read before the next try
        raise


def _catch_up(p: Pair, group: int, done: list[int]) -> int:
    """:func:`catch_up`'s work; ``done[0]``: the entries applied in committed batches
    so far (what counts when a later batch is refused)."""
    if p.swap_pending is not None:  # a switch a hot failure interrupted: finish it first
        _rebuild.finish_pending(p)
    p.ensure_position()
    if p.hot_lost:
        before = p.pos
        reset_hot(p)
        return p.seq - before
    if p.guard and p.pos > p.seq:
        # Another process wrote and applied entries this pair has not seen: nothing to
        # apply. The log is re-read by the next write (ensure_seq), never here: a write
        # that catches up before its cold batch has taken its entry number, and only
        # the head read with that number may condition the batch (see Pair.read_log).
        p.seq_known = False
        return 0
    applied = 0
    projecting = p.projection is not None
    limit = p.hot_batch
    redo = 0  # > 0: the next group is exactly this many entries (they fit, see below)
    while p.pos < p.seq:
        if redo:
            entries = take(items(p.cb, log_key(p.pos + 1), LOG_END), redo)
            redo = 0
        else:
            entries = take(items(p.cb, log_key(p.pos + 1), LOG_END), group)
            group = min(group * 4, GROUP)
        if not entries:
            raise CorruptionError(
                f"the change log of the cold tier {p.cold_name()} ends at {p.pos}, before "
                f"its last entry {p.seq}",
                backend="tiered",
            )
        ap = Applier(p, p.on_poison)
        last = p.pos
        held = 0  # entries collected in ap since the last commit
        nonce = p.pos_nonce  # of entry ``last``
        for k, stored in entries:
            s = seq_of(k)
            entry_nonce, entry = _log.split(stored)
            kind = entry[0]
            if kind in (_log.DROP_INTENT, _log.DROP_DONE):
                _flush(p, ap, last, nonce)
                done[0] = applied
                prefix = entry[1:]
                if kind == _log.DROP_INTENT:
                    p.cb.delete_range(prefix, prefix + TENANT_END)
                    p.cb.put(k, _done(prefix, entry_nonce))
                _drop_hot(p, prefix, s, entry_nonce)
                last, nonce = s, entry_nonce
                held = 0
                applied += 1
                done[0] = applied
                continue
            for full in _log.keys_of(entry):
                raw = p.cb.get(full)
                if not projecting:
                    ap.overlay[full] = raw
                elif raw is not None:  # None: the tenant's history was dropped since
                    ap.apply(full, raw, s)
            if limit is not None and ap.size() >= limit:  # its ops + POS > limit
                if held:
                    # Over the bound with this entry: commit the ones before it alone
                    # (the collected updates cannot be split per entry: built again).
                    redo = held
                    applied -= held
                    break
                if projecting or ap.size() > limit:
                    raise _entry_too_large(p, s, ap.size(), limit)
                # Cache mode: copying cold's values is idempotent, so an entry of exactly
                # ``limit`` keys (which a live write commits in one batch) goes in one
                # batch and its position in the next.
                p.hot_write(ap.ops())
                ap.reset()
                _flush(p, ap, s, entry_nonce)
                last, nonce = s, entry_nonce
                applied += 1
                done[0] = applied
                continue
            last, nonce = s, entry_nonce
            held += 1
            applied += 1
        if redo:
            continue
        _flush(p, ap, last, nonce)
        done[0] = applied
    return applied


def _entry_too_large(p: Pair, seq: int, size: int, limit: int) -> ConfigurationError:
    return ConfigurationError(
        f"change-log entry {seq} of the cold tier {p.cold_name()} needs {size} hot "
        f"operations plus the position, more than one atomic batch of the hot tier "
        f"{p.hot_name()} may hold ({limit}, its max_batch): it cannot be applied "
        "atomically, so hot stays at the entry before it (the entry is durable in cold). "
        f"Reopen the pair with a hot tier whose max_batch is at least {size + 1} (for "
        "NATS, raise the server's jetstream.limits.batch.max_msgs with it)",
        backend="tiered",
    )


def _done(prefix: bytes, nonce: bytes) -> bytes:
    """The DROP_DONE entry replacing a DROP_INTENT one, with its nonce (if it had one)."""
    done = _log.drop_done(prefix)
    return _log.nonced(done, nonce) if nonce else done


def _flush(p: Pair, ap: Applier, last: int, nonce: bytes) -> None:
    """Commit ``ap``'s updates with position ``last`` (whose entry has ``nonce``)."""
    if last == p.pos and ap.empty():
        return
    ops = ap.ops()
    ops.append((POS, seq_bytes(last) + nonce))
    p.pos_write(ops)
    p.pos = p.saved = last
    p.pos_nonce = nonce
    ap.reset()


def _drop_hot(p: Pair, prefix: bytes, seq: int, nonce: bytes) -> None:
    p.clear_hot(prefix, prefix + TENANT_END)
    p.clear_hot(PARKED + prefix, PARKED + prefix + TENANT_END)
    p.pos_write([(STOPPED + prefix, None), (POS, seq_bytes(seq) + nonce)])
    p.stopped.pop(prefix, None)
    p.pos = p.saved = seq
    p.pos_nonce = nonce


def drop_tenant(p: Pair, prefix: bytes) -> int:
    """Delete a tenant in both tiers (its history, projection and parked records);
    return how many records cold held. An intent is logged in cold first, so a crash in
    the middle is completed on the next open (or write).

    Raises:
        HotTierError: done in cold (durable); hot catches up.
    """
    p.ensure_seq()
    seq = p.seq + 1
    nonce = os.urandom(_log.NONCE_SIZE)
    p.cold_write([(log_key(seq), _log.nonced(_log.drop_intent(prefix), nonce))], seq)
    try:
        n = p.cb.delete_range(prefix, prefix + TENANT_END)
        p.cb.put(log_key(seq), _done(prefix, nonce))
    except BaseException:
        p.needs_drop_finish = True  # the next write finishes the drop first
        raise
    try:
        p.ensure_position()
        if p.pos != seq - 1 or p.swap_pending is not None:
            catch_up(p, 1)
        else:
            try:
                _drop_hot(p, prefix, seq, nonce)
            except _PositionMoved:
                catch_up(p, 1)  # another process applied meanwhile: go on from there
    except Exception as exc:
        raise p.hot_failed(seq, exc) from exc
    return n


def _parked_range(prefix: bytes | None) -> tuple[bytes, bytes]:
    if prefix is None:
        return PARKED, PARKED_END
    return PARKED + prefix, PARKED + prefix + TENANT_END


def parked(p: Pair, prefix: bytes | None) -> list[ParkedRecord]:
    """The parked records (of one tenant prefix, or all), in history key order."""
    p.ensure_position()
    lo, hi = _parked_range(prefix)
    out: list[ParkedRecord] = []
    for k, v in items(p.hb, lo, hi):
        full = k[len(PARKED) :]
        tenant, offset = p.split(full)
        meta = orjson.loads(v)
        try:
            key: Any = decode_key_at(full, offset)
        except Exception:
            key = None
        out.append(ParkedRecord(tenant, key, meta.get("seq"), meta["reason"], meta["cause"]))
    return out


def retry_parked(p: Pair, prefix: bytes | None) -> int:
    """Apply the parked records again (after the projection was fixed), per tenant in
    history key order; return how many applied.

    A record that still fails stays parked (with its new cause); under ``stop`` its
    tenant stays stopped there and its later records stay held. A tenant whose parked
    records all apply is no longer stopped.
    """
    catch_up(p)
    lo, hi = _parked_range(prefix)
    by_tenant: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for k, v in items(p.hb, lo, hi):
        _, offset = p.split(k[len(PARKED) :])
        by_tenant.setdefault(k[len(PARKED) : len(PARKED) + offset], []).append((k, v))
    applied = 0
    for tprefix, records in by_tenant.items():
        blocked = False
        for pkey, meta_raw in records:
            full = pkey[len(PARKED) :]
            meta = orjson.loads(meta_raw)
            raw = p.cb.get(full)
            if raw is None:  # its history is gone (drop_tenant)
                p.hot_write([(pkey, None)])
                continue
            if blocked:
                continue
            ap = Applier(p, "raise", stopped={})
            try:
                ap.apply(full, raw, meta.get("seq"))
            except PoisonError as exc:
                meta.update(reason=exc.reason, cause=exc.cause)
                ops: list[Op] = [(pkey, orjson.dumps(meta))]
                if p.on_poison == "stop" or exc.reason == "damaged":
                    # A damaged projection stops its tenant under either policy (see
                    # Applier._damaged): rebuild(tenant) is its remedy.
                    blocked = True
                    stop = p.stop_record(full, meta.get("seq"), exc.cause, reason=exc.reason)
                    ops.append((STOPPED + tprefix, stop))
                p.hot_write(ops)
                if blocked:
                    p.stopped[tprefix] = stop
                continue
            done = ap.ops()
            done.append((pkey, None))
            limit = p.hot_batch
            if limit is not None and len(done) > limit:
                # One atomic hot batch applies the record and unparks it; a bounded hot
                # tier would refuse it with its own error.
                raise ConfigurationError(
                    f"the parked record {full!r} of the cold tier {p.cold_name()} needs "
                    f"{len(done) - 1} hot operations plus unparking it, more than one "
                    f"atomic batch of the hot tier {p.hot_name()} may hold ({limit}, its "
                    "max_batch): it stays parked, and the records before it were "
                    f"applied. Reopen the pair with a max_batch of at least {len(done)} "
                    "(for NATS, raise the server's jetstream.limits.batch.max_msgs with "
                    "it), then retry_parked() again",
                    backend="tiered",
                )
            p.hot_write(done)
            applied += 1
        if not blocked and tprefix in p.stopped:
            p.hot_write([(STOPPED + tprefix, None)])
            p.stopped.pop(tprefix, None)
    return applied
