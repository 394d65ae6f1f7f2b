"""The shadow rebuild: build the new projection aside, switch readers to it at once.

A rebuild streams history (per tenant in key order) into the *shadow* namespace of the
hot store (``SHADOW + live key``), in chunks of ``rebuild_chunk`` records, while readers
keep seeing the old projection. When the shadow is complete, the *switch* makes the live
scope equal to it: the difference between the two, walked together in key order (a live
key the shadow lacks is deleted, a shadow record the live scope lacks or holds with
another value is put), is committed in ONE hot batch together with the position and the
next marker. Readers see the old projection before that commit and the new one after it;
a rebuild whose new projection equals the old writes no live key at all. The shadow is
then removed in chunks (it is in the system namespace: readers never see it).

A marker in hot, ``REBUILD = phase + target seq + scope``, tells recovery where a crash
stopped:

- ``B`` (building): the shadow is incomplete. Recovery discards it; the old projection,
  untouched, is served and caught up as usual.
- ``R`` (removing the shadow): the switch is committed, the new projection is served.
  Recovery removes the rest of the shadow (idempotent).
- ``S`` (switching in batches): only on a hot tier whose atomic batches are bounded
  (:func:`~._core.batch_limit`, NATS's ``max_batch``) and a difference larger than one
  batch. The shadow is complete and stays whole until the switch ends, so recovery
  computes the (remaining) difference again and commits it; readers may see the switch
  half done meanwhile. If hot fails in the middle in a running process, the next write,
  ``catch_up()``, ``rebuild()`` or open finishes it before anything else is applied.
- ``C`` (clearing the live scope) and ``M`` (moving the shadow in): markers of earlier
  versions, which swapped by clearing the live scope and moving the shadow in chunk by
  chunk (each moved chunk removed from the shadow). A store such a version left killed
  in the middle of its swap is finished the way it was started (:func:`_finish_legacy`).
- ``F`` (a fresh build straight into an empty or unusable hot): redone from scratch.

Scope ``*`` is every tenant (with the parked and stopped records); otherwise it is one
tenant's encoded prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator

from .._keys import NS_DATA, NS_DATA_END, TENANT_END, in_tenant
from ..backend import Op
from ..errors import InvalidArgumentError
from ._apply import Applier
from ._config import close_unrun, returned_unrun
from ._core import CLEAR_CHUNK, PROGRESS, Pair, _PositionMoved, checked_items, items, take
from ._log import (
    PAIR,
    PARKED,
    PARKED_END,
    POS,
    REBUILD,
    SHADOW,
    SHADOW_END,
    STOPPED,
    STOPPED_END,
    seq_bytes,
)
from ._types import ProgressCallback, RebuildProgress

__all__ = [
    "ALL",
    "FRESH",
    "PROGRESS_FIX",
    "finish_pending",
    "fresh",
    "is_marker",
    "rebuild",
    "recover",
]

log = logging.getLogger("aurora_storage.tiered")

#: How to write a progress callback, for the messages that refuse one.
PROGRESS_FIX = (
    "Define it with `def`, without `async` or `yield`: the rebuild calls it and does not "
    "await what it returns (AsyncTieredRepository.rebuild runs the rebuild, and calls "
    "progress, in a worker thread; to hand progress over to async code, pass a plain "
    "function such as `lambda info: loop.call_soon_threadsafe(queue.put_nowait, info)`)"
)

BUILD, SWITCH, REMOVE, FRESH = b"B", b"S", b"R", b"F"
#: the phases of earlier versions' swap (see _finish_legacy)
CLEAR, MOVE = b"C", b"M"
ALL = b"*"


def is_marker(marker: bytes) -> bool:
    """Whether a REBUILD value has a layout this version recovers (the oldest layout,
    without a target seq, is not resumable)."""
    return len(marker) >= 10 and marker[:1] in (BUILD, SWITCH, REMOVE, CLEAR, MOVE, FRESH)


def _ranges(scope: bytes) -> list[tuple[bytes, bytes]]:
    """The live hot ranges a rebuild of ``scope`` replaces."""
    if scope == ALL:
        return [(NS_DATA, NS_DATA_END), (PARKED, PARKED_END), (STOPPED, STOPPED_END)]
    return [
        (scope, scope + TENANT_END),
        (PARKED + scope, PARKED + scope + TENANT_END),
        (STOPPED + scope, STOPPED + scope + b"\x00"),  # exactly the one key
    ]


def _cold_range(scope: bytes) -> tuple[bytes, bytes]:
    return (NS_DATA, NS_DATA_END) if scope == ALL else (scope, scope + TENANT_END)


def _marker(phase: bytes, target: int, scope: bytes) -> bytes:
    return phase + seq_bytes(target) + scope


def rebuild(p: Pair, scope: bytes, tenant: str | None, progress: ProgressCallback | None) -> int:
    """Recompute hot from cold for ``scope`` aside, then switch; return records applied.

    Raises:
        ProjectionError: policy ``stop`` and the projection failed on a record (its
            ``durable`` is true); the old projection is still served.
        KeyTooLargeError: a poison record to park under a history key longer than the
            pair's limit (written before it); the old projection is still served.
        the hot or cold tier's error: the old projection is still served, unless the
            switch itself failed on a hot tier with bounded batches (then it is finished
            first thing by the next write, ``catch_up()`` or open).
    """
    if p.projection is None:
        return _warm(p, scope, tenant, progress)
    target = p.seq
    p.hot_write([(REBUILD, _marker(BUILD, target, scope)), (PAIR, p.pair_meta)])
    try:
        p.clear_hot(SHADOW, SHADOW_END)  # a shadow left by an earlier failure
        done = _replay(p, scope, SHADOW, tenant, progress)
    except BaseException as exc:
        if isinstance(exc, Exception):
            _abandon(p)
        raise
    _switch(p, target, scope)
    return done


def fresh(p: Pair) -> None:
    """Build the whole projection straight into hot (nothing to keep serving).

    Built again from the start if another process writing the pair (a shared hot,
    ``Pair.guard``) applied meanwhile: its batch landed in a hot being cleared and
    rebuilt, so the final position write, conditioned on the position this pair read
    (see Pair.pos_write), is refused."""
    while True:
        target = p.seq
        p.hot_write([(REBUILD, _marker(FRESH, target, ALL)), (PAIR, p.pair_meta)])
        for lo, hi in _ranges(ALL):
            p.clear_hot(lo, hi)
        p.clear_hot(SHADOW, SHADOW_END)
        _replay(p, ALL, b"", None, None, fresh_build=True)
        try:
            p.pos_write([(REBUILD, None), (POS, p.position_of(target))])
        except _PositionMoved:
            # Built again to the same target (never a log re-read here: a write may be
            # catching up before the cold batch of the number it took).
            p.reload_position()  # the version the next attempt is conditioned on
            continue
        p.reload_position()
        return


def recover(p: Pair, marker: bytes) -> None:
    """Complete or undo the rebuild a crash interrupted (see the module docstring)."""
    phase, target, scope = marker[:1], int.from_bytes(marker[1:9], "big"), marker[9:]
    if phase == BUILD:
        _discard(p)
    elif phase == FRESH:
        fresh(p)
    elif phase == SWITCH:
        _switch(p, target, scope, resume=True)
    elif phase == REMOVE:
        _remove_shadow(p)
    else:
        _finish_legacy(p, phase, target, scope)


def finish_pending(p: Pair) -> None:
    """Finish a switch (or a swap of an earlier version's store) that a hot failure
    interrupted in this process."""
    if p.swap_pending is not None:
        recover(p, p.swap_pending)


def _discard(p: Pair) -> None:
    p.clear_hot(SHADOW, SHADOW_END)
    p.hot_write([(REBUILD, None)])


def _abandon(p: Pair) -> None:
    """Drop an incomplete shadow after a failure (the old projection stays served)."""
    try:
        _discard(p)
    except Exception:  # hot is failing: the next open (or rebuild) discards the shadow
        pass


# ---------------------------------------------------------------------- the switch


def _walk(
    live: Iterator[tuple[bytes, bytes | None]], new: Iterator[tuple[bytes, bytes]], cut: int
) -> Generator[tuple[bytes, Op | None, bool]]:
    """Walk the live records and the records they must become (both in key order; a
    key of ``new`` is ``cut`` bytes of prefix + the live key) together, in key order:
    ``(live key, the operation that makes it right or None, whether new holds it)``.
    A live value of ``None`` is a damaged record (see :func:`checked_items`): it
    differs from every value, so it is overwritten or deleted, never read."""
    try:
        a = next(live, None)
        b = next(new, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a[0] < b[0][cut:]):
                assert a is not None
                yield a[0], (a[0], None), False
                a = next(live, None)
            elif a is None or b[0][cut:] < a[0]:
                key = b[0][cut:]
                yield key, (key, b[1]), True
                b = next(new, None)
            else:
                yield a[0], None if a[1] == b[1] else (a[0], b[1]), True
                a = next(live, None)
                b = next(new, None)
    finally:
        for it in (live, new):
            close = getattr(it, "close", None)
            if close is not None:
                close()


def _diff(p: Pair, lo: bytes, hi: bytes) -> Iterator[Op]:
    """The switch's operations for the live range ``[lo, hi)``: make it equal to the
    shadow."""
    live = checked_items(p.hb, lo, hi, "replaced by the rebuild's switch")
    walk = _walk(live, items(p.hb, SHADOW + lo, SHADOW + hi), len(SHADOW))
    try:
        for _, op, _ in walk:
            if op is not None:
                yield op
    finally:
        walk.close()


def _switch(p: Pair, target: int, scope: bytes, *, resume: bool = False) -> None:
    """Make the live scope equal to the complete shadow, set the position, then remove
    the shadow. One hot batch when hot takes it (readers switch at once); in batches
    under marker ``S`` on a hot tier with bounded batches (``resume``: recovery of
    ``S``, the difference left to commit is computed again).

    Raises:
        the hot tier's error: the switch was not applied (the old projection is served
            and the shadow is discarded), or, in batches, it is finished first thing by
            the next write, ``catch_up()`` or open.
    """
    removing = _marker(REMOVE, target, scope)
    final: list[Op] = [(REBUILD, removing), (POS, p.position_of(target))]  # POS last
    limit = p.hot_batch
    ops: list[Op] = []
    fits = not resume
    if fits:
        room = None if limit is None else limit - len(final)
        for lo, hi in _ranges(scope):
            if room is None:
                ops.extend(_diff(p, lo, hi))
            else:
                ops.extend(take(_diff(p, lo, hi), room + 1 - len(ops)))
                if len(ops) > room:
                    fits = False
                    break
    if not fits:
        _switch_in_batches(p, target, scope, limit or CLEAR_CHUNK)
    else:
        ops.extend(final)
        try:
            p.pos_write(ops)  # THE switch: readers see the old projection, then the new
        except _PositionMoved:
            # Another process writing the pair applied since this pair read the position
            # (guard): the difference may be out of date. Computed again against the
            # live scope as it is now; the shadow is still the projection at ``target``.
            p.reload_position()
            _switch(p, target, scope, resume=resume)
            return
        except Exception:
            # Applied or not (a failure reported after the commit: a lost
            # acknowledgement)? The marker, written in the same batch, says. Either way
            # the shadow goes: discarded, or removed after the switch.
            try:
                switched = p.hb.get(REBUILD) == removing
            except Exception:
                switched = False  # unknown: the old or the new one is served, whole
            _abandon(p)
            if not switched:
                raise
    p.swap_pending = None
    p.reload_position()
    _remove_shadow(p, removing)


def _switch_in_batches(p: Pair, target: int, scope: bytes, step: int) -> None:
    """The switch on a hot tier that cannot take it in one batch: under marker ``S``, the
    difference in batches of ``step`` (the shadow stays whole, so it can be computed
    again after any failure), then the position and marker ``R`` together."""
    marker = _marker(SWITCH, target, scope)
    p.swap_pending = marker  # until the switch ends, every write finishes it first
    p.hot_write([(REBUILD, marker)])
    for lo, hi in _ranges(scope):
        start = lo
        while True:
            ops = take(_diff(p, start, hi), step)
            if not ops:
                break
            p.hot_write(ops)
            if len(ops) < step:
                break
            start = ops[-1][0] + b"\x00"
    position = (POS, p.position_of(target))
    removing = (REBUILD, _marker(REMOVE, target, scope))
    try:
        if step >= 2:
            p.pos_write([removing, position])  # POS last (see Pair.pos_write)
        else:  # the position first: under marker S, the switch is still redone after it
            p.pos_write([position])
            p.hot_write([removing])
    except _PositionMoved:
        # Another process applied meanwhile (guard): the difference is computed again.
        p.reload_position()
        _switch_in_batches(p, target, scope, step)


def _remove_shadow(p: Pair, switched: bytes | None = None) -> None:
    """Remove the shadow of a switched rebuild (marker ``R``), then the marker.

    ``switched``: the marker of the switch this process just committed. A hot failure
    then does not fail the rebuild (the new projection is served): it is logged, and
    the next write, ``catch_up()``, rebuild or open removes the rest.
    """
    try:
        p.clear_hot(SHADOW, SHADOW_END)
        p.hot_write([(REBUILD, None)])
    except Exception as exc:
        if switched is None:
            raise
        p.swap_pending = switched
        log.warning(
            "tiered %s: the rebuild switched to the new projection, but removing its "
            "shadow copy failed (%s: %s); the next write, catch_up() or open removes it",
            p.describe(),
            type(exc).__name__,
            exc,
        )
        return
    p.swap_pending = None


# ---------------------------------------------------------------------- earlier versions


def _finish_legacy(p: Pair, phase: bytes, target: int, scope: bytes) -> None:
    """Finish the swap of an earlier version, killed in its phase ``C`` (clearing the
    live scope) or ``M`` (moving the shadow in): the shadow is complete in ``C``, and in
    ``M`` the live scope holds exactly the moved part (each moved chunk was removed from
    the shadow in the same batch)."""
    if phase == CLEAR:
        for lo, hi in _ranges(scope):
            p.clear_hot(lo, hi)
        p.hot_write([(REBUILD, _marker(MOVE, target, scope))])
    # Redoing the clear phase after a move started would delete moved keys.
    p.swap_pending = _marker(MOVE, target, scope)
    step = max(1, min(CLEAR_CHUNK, (p.hot_batch or 2 * CLEAR_CHUNK) // 2))
    while True:
        chunk = take(items(p.hb, SHADOW, SHADOW_END), step)
        if not chunk:
            break
        ops: list[Op] = [(k[len(SHADOW) :], v) for k, v in chunk]
        ops.extend((k, None) for k, _ in chunk)
        p.hot_write(ops)
    try:
        p.pos_write([(REBUILD, None), (POS, p.position_of(target))])
    except _PositionMoved:
        # Another process (of this version, guard) wrote a position: it finished the
        # swap itself when it opened the store; its position stands.
        p.hot_write([(REBUILD, None)])
    p.swap_pending = None
    p.reload_position()


# ---------------------------------------------------------------------- building


def _warm(p: Pair, scope: bytes, tenant: str | None, progress: ProgressCallback | None) -> int:
    """Cache mode: make hot's records of ``scope`` equal to cold's (a full warm-up);
    return the cold records walked.

    No shadow: both tiers are walked together in key order and each chunk of the
    difference is committed as it comes (a cold record hot lacks or holds with another
    value is copied, a hot record cold lacks is deleted). Every hot record holds cold's
    value throughout, so a reader (who falls back to cold for what hot lacks) sees
    exactly what it would see without the warm-up, and a failure or a kill in the middle
    leaves an exact cache, partly warmed. Hot keys are cold's keys, so any key cold
    holds fits (no prefix is added).
    """
    lo, hi = _cold_range(scope)
    total = p.cb.count_range(lo, hi) if progress is not None else 0
    chunk = p.config.rebuild_chunk
    step = min(chunk, p.hot_batch or chunk)
    done = 0
    start = lo
    while True:
        ops: list[Op] = []
        walked = 0
        last: bytes | None = None
        live = checked_items(p.hb, start, hi, "copied from cold again by the warm-up")
        walk = _walk(live, items(p.cb, start, hi), 0)
        try:
            for key, op, in_cold in walk:
                if op is not None:
                    ops.append(op)
                walked += in_cold
                if walked >= chunk or len(ops) >= step:
                    last = key
                    break
        finally:
            walk.close()
        if ops:
            p.hot_write(ops)
        done += walked
        if last is None:
            break
        if progress is not None and walked >= chunk:
            _report(p, progress, RebuildProgress(done, max(total, done), tenant))
        start = last + b"\x00"
    if progress is not None:
        _report(p, progress, RebuildProgress(done, max(total, done), tenant))
    return done


def _replay(
    p: Pair,
    scope: bytes,
    space: bytes,
    tenant: str | None,
    progress: ProgressCallback | None,
    *,
    fresh_build: bool = False,
) -> int:
    lo, hi = _cold_range(scope)
    total = p.cb.count_range(lo, hi) if progress is not None else 0
    # Under "stop" a poison record abandons a rebuild (the old projection is kept); a
    # fresh build has nothing to keep, so it stops the tenant like catch-up does.
    policy = p.on_poison
    if policy == "stop" and not fresh_build:
        ap = Applier(p, "abort", space=space, stopped={})
    else:
        ap = Applier(p, policy, space=space, stopped={})
    projecting = p.projection is not None
    chunk = p.config.rebuild_chunk
    cur_prefix = b"\x00"  # never a data key's prefix
    cur_tenant, offset = "", 0
    done = pending = 0
    for full, raw in items(p.cb, lo, hi):
        if not projecting:  # cache mode: a fresh build (F) recovered copies cold in
            ap.overlay[full] = raw
        else:
            if not in_tenant(full, cur_prefix):
                cur_tenant, offset = p.split(full)
                cur_prefix = full[:offset]
            ap.apply(full, raw, None, cur_tenant, offset)
        done += 1
        pending += 1
        if pending >= chunk:
            p.hot_write_sliced(ap.ops())
            ap.reset()
            pending = 0
            if progress is not None:
                _report(p, progress, RebuildProgress(done, max(total, done), tenant))
    if not ap.empty():
        p.hot_write_sliced(ap.ops())
        ap.reset()
    if progress is not None:
        _report(p, progress, RebuildProgress(done, max(total, done), tenant))
    return done


def _report(p: Pair, progress: ProgressCallback, info: RebuildProgress) -> None:
    """Call the user's ``progress`` under the refusal a projection runs under: it runs
    holding the pair's (re-entrant) lock in the middle of the rebuild, so a write, a
    nested rebuild or close() from it would commit under the rebuild's feet (a nested
    rebuild left a wrong projection at lag 0). They raise ProjectionMisuseError; what
    ``progress`` raises abandons the rebuild (the old projection stays served).

    Raises:
        InvalidArgumentError: the call returned a coroutine, a generator or another
            awaitable (a wrapper the check at the call could not see through): its
            body did not run; what it returned is closed, and the rebuild abandoned.
    """
    # Returns None by contract; what a call really returned is checked below.
    call: Callable[[RebuildProgress], object] = progress
    p.projecting = PROGRESS
    try:
        result = call(info)
    finally:
        p.projecting = None
    if result is not None:
        kind = returned_unrun(result)
        if kind is not None:
            close_unrun(result)
            name = getattr(progress, "__qualname__", None) or repr(progress)
            kept = (
                "the previous projection is still served"
                if p.projection is not None
                else "hot stays an exact cache, partly warmed"
            )
            raise InvalidArgumentError(
                f"progress must be a plain synchronous function taking one "
                f"RebuildProgress, but its call ({name!r}) returned {kind}: its body did "
                f"not run. {PROGRESS_FIX}; the rebuild was abandoned ({kept})",
                backend="tiered",
            )
