"""The shadow rebuild: build the new projection aside, switch to it only when complete.

A rebuild streams history (per tenant in key order) into the *shadow* namespace of the
hot store (``SHADOW + live key``), in chunks of ``rebuild_chunk`` records, each one hot
transaction, while readers keep seeing the old projection. Only when the shadow is
complete is it swapped in. A marker in hot, ``REBUILD = phase + target seq + scope``,
tells recovery where a crash stopped:

- ``B`` (building): the shadow is incomplete. Recovery discards it; the old projection,
  untouched, is served and caught up as usual.
- ``C`` (clearing the live scope) and ``M`` (moving the shadow in): the new projection
  is complete in the shadow. Recovery finishes the swap (clearing is idempotent, and a
  chunk is moved and removed from the shadow in one batch), then sets ``POS`` to the
  target seq in the batch that removes the marker. If the hot tier fails in the middle
  of a swap in a running process, the next write, ``catch_up()``, ``rebuild()`` or open
  finishes it before anything else is applied (reads in between may see the swap half
  done; they never see it once any write has returned).
- ``F`` (a fresh build straight into an empty or unusable hot): redone from scratch.

Scope ``*`` is every tenant (with the parked and stopped records); otherwise it is one
tenant's encoded prefix.
"""

from __future__ import annotations

from .._keys import NS_DATA, NS_DATA_END, TENANT_END, in_tenant
from ._apply import Applier
from ._core import CLEAR_CHUNK, PROGRESS, Pair, items, take
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

__all__ = ["ALL", "FRESH", "finish_pending", "fresh", "is_marker", "rebuild", "recover"]

BUILD, CLEAR, MOVE, FRESH = b"B", b"C", b"M", b"F"
ALL = b"*"


def is_marker(marker: bytes) -> bool:
    """Whether a REBUILD value has this version's layout (older ones are not resumable)."""
    return len(marker) >= 10 and marker[:1] in (BUILD, CLEAR, MOVE, FRESH)


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


def rebuild(p: Pair, scope: bytes, tenant: str | None, progress: ProgressCallback | None) -> int:
    """Recompute hot from cold for ``scope`` aside, then swap; return records applied.

    Raises:
        ProjectionError: policy ``stop`` and the projection failed on a record (its
            ``durable`` is true); the old projection is still served.
        the hot or cold tier's error: the old projection is still served.
    """
    target = p.seq
    p.hot_write([(REBUILD, BUILD + seq_bytes(target) + scope), (PAIR, p.pair_meta)])
    try:
        p.clear_hot(SHADOW, SHADOW_END)  # a shadow left by an earlier failure
        done = _replay(p, scope, SHADOW, tenant, progress)
    except BaseException as exc:
        if isinstance(exc, Exception):
            try:
                _discard(p)
            except Exception:  # hot is failing: the next open discards the shadow
                pass
        raise
    # From here the new projection is complete: a failure no longer abandons it, the
    # swap is finished first thing by the next write, catch_up() or open.
    p.swap_pending = CLEAR + seq_bytes(target) + scope
    p.hot_write([(REBUILD, p.swap_pending)])
    _finish_swap(p, CLEAR, target, scope)
    return done


def fresh(p: Pair) -> None:
    """Build the whole projection straight into hot (nothing to keep serving)."""
    target = p.seq
    p.hot_write([(REBUILD, FRESH + seq_bytes(target) + ALL), (PAIR, p.pair_meta)])
    for lo, hi in _ranges(ALL):
        p.clear_hot(lo, hi)
    p.clear_hot(SHADOW, SHADOW_END)
    _replay(p, ALL, b"", None, None, fresh_build=True)
    p.hot_write([(REBUILD, None), (POS, seq_bytes(target))])
    p.reload_position()


def recover(p: Pair, marker: bytes) -> None:
    """Complete or undo the rebuild a crash interrupted (see the module docstring)."""
    phase, target, scope = marker[:1], int.from_bytes(marker[1:9], "big"), marker[9:]
    if phase == BUILD:
        _discard(p)
    elif phase == FRESH:
        fresh(p)
    else:
        _finish_swap(p, phase, target, scope)


def finish_pending(p: Pair) -> None:
    """Finish a swap that failed in this process (hot failed in the middle of it)."""
    if p.swap_pending is not None:
        recover(p, p.swap_pending)


def _discard(p: Pair) -> None:
    p.clear_hot(SHADOW, SHADOW_END)
    p.hot_write([(REBUILD, None)])


def _finish_swap(p: Pair, phase: bytes, target: int, scope: bytes) -> None:
    if phase == CLEAR:
        for lo, hi in _ranges(scope):
            p.clear_hot(lo, hi)
        p.hot_write([(REBUILD, MOVE + seq_bytes(target) + scope)])
    # Redoing the clear phase after a move started would delete moved keys.
    p.swap_pending = MOVE + seq_bytes(target) + scope
    while True:
        chunk = take(items(p.hb, SHADOW, SHADOW_END), CLEAR_CHUNK)
        if not chunk:
            break
        ops: list[tuple[bytes, bytes | None]] = [(k[len(SHADOW) :], v) for k, v in chunk]
        ops.extend((k, None) for k, _ in chunk)
        p.hot_write(ops)
    p.hot_write([(REBUILD, None), (POS, seq_bytes(target))])
    p.swap_pending = None
    p.reload_position()


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
    policy = p.config.on_poison
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
        if not projecting:
            ap.overlay[full] = raw
        else:
            if not in_tenant(full, cur_prefix):
                cur_tenant, offset = p.split(full)
                cur_prefix = full[:offset]
            ap.apply(full, raw, None, cur_tenant, offset)
        done += 1
        pending += 1
        if pending >= chunk:
            p.hot_write(ap.ops())
            ap.reset()
            pending = 0
            if progress is not None:
                _report(p, progress, RebuildProgress(done, max(total, done), tenant))
    if not ap.empty():
        p.hot_write(ap.ops())
        ap.reset()
    if progress is not None:
        _report(p, progress, RebuildProgress(done, max(total, done), tenant))
    return done


def _report(p: Pair, progress: ProgressCallback, info: RebuildProgress) -> None:
    """Call the user's ``progress`` under the refusal a projection runs under: it runs
    holding the pair's (re-entrant) lock in the middle of the rebuild, so a write, a
    nested rebuild or close() from it would commit under the rebuild's feet (a nested
    rebuild left a wrong projection at lag 0). They raise ProjectionMisuseError; what
    ``progress`` raises abandons the rebuild (the old projection stays served)."""
    p.projecting = PROGRESS
    try:
        progress(info)
    finally:
        p.projecting = None
