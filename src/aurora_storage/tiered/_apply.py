"""Applying history records to a projection, one group per hot transaction, with the
poison policy.

A *poison* record is one the projection cannot apply: it cannot be decoded, or the
projection raises on it. What happens then depends on who applies it:

- a new write (``reject``): the write is refused before anything is written;
- catch-up (the pair's ``on_poison``): ``park`` sets the record aside and goes on;
  ``stop`` also stops its tenant, whose later records wait (parked as ``held``) behind
  it. Other tenants go on either way, and the parked list and the stop are committed in
  the same hot batch as the position, so they are exact after any fault;
- a rebuild under ``stop`` (``abort``): the rebuild is abandoned, the old projection
  stays; under ``park`` it parks like catch-up;
- a retry of parked records (``raise``): reported to the retry, which keeps it parked.

A projection *call* that returns a coroutine, a generator, an async generator or any
awaitable did not run its body (a wrapper of an ``async def`` function, say, that the
check at open could not see through): the record is not poison, the projection is
wrong. Whatever the policy, nothing of that call is kept, what it returned is closed,
and :class:`ProjectionError` is raised: a write is rejected (``durable=False``);
catch-up, a rebuild and a retry stop there (``durable=True``), parking nothing, so that
the records wait, unapplied, for the fixed projection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal, NoReturn

import orjson

from .._keys import MAX_KEY_SIZE, decode_key_at
from ..backend import Op
from ..errors import ConfigurationError, CorruptionError, KeyTooLargeError
from ._config import PROJECTION_FIX, close_unrun, returned_unrun
from ._core import Pair, damage_text
from ._errors import ProjectionError
from ._log import HISTORY_KEY_LIMIT, PARKED, STOPPED
from ._types import HistoryRecord, ProjectionState, _HotDamage, _HotReadError, new_record

__all__ = ["NO_KEY", "Applier", "PoisonError"]

log = logging.getLogger("aurora_storage.tiered")

Policy = Literal["stop", "park", "reject", "abort", "raise"]

#: ``Applier.apply``'s "no key given": the key is decoded from the full key
NO_KEY: Any = object()


class PoisonError(Exception):
    """Internal: a record could not be applied under policy ``raise``."""

    def __init__(self, reason: str, cause: str) -> None:
        super().__init__(cause)
        self.reason = reason
        self.cause = cause


class Applier:
    """Collects the hot updates of a group of records (plus parked/stopped entries).

    Args:
        pair: the pair.
        policy: see the module docstring.
        space: ``b""`` for the live projection, the shadow prefix during a rebuild.
        stopped: tenant prefix -> stop record, the tenants whose records are held.
    """

    def __init__(
        self,
        pair: Pair,
        policy: Policy,
        *,
        space: bytes = b"",
        stopped: dict[bytes, bytes] | None = None,
    ) -> None:
        self.p = pair
        self.policy = policy
        self.space = space
        self.stopped = pair.stopped if stopped is None else stopped
        self.overlay: dict[bytes, bytes | None] = {}
        self.extra: dict[bytes, bytes | None] = {}
        self.new_stopped: dict[bytes, bytes] = {}
        self.held: list[tuple[str, Any]] = []
        self.parked = 0
        self._hot = pair.hot
        #: the projection states' lock (ProjectionState._close)
        self._lock = threading.Lock()
        # Returns None by contract; what a call really returned is checked (apply).
        self.projection: Callable[[HistoryRecord, ProjectionState], object] | None = pair.projection
        self._decode = pair.cold.codec.decode

    def empty(self) -> bool:
        return not self.overlay and not self.extra

    def size(self) -> int:
        """How many hot operations :meth:`ops` would return."""
        return len(self.overlay) + len(self.extra)

    def ops(self) -> list[Op]:
        """The hot operations collected so far (in this applier's key space)."""
        sp = self.space
        if not sp:  # the live projection (every write): the keys as they are
            out: list[Op] = list(self.overlay.items())
            if self.extra:
                out += self.extra.items()
            return out
        out = [(sp + k, v) for k, v in self.overlay.items()]
        out.extend((sp + k, v) for k, v in self.extra.items())
        return out

    def clear(self) -> None:
        """Forget everything collected (committed, or abandoned after an error), so the
        applier can serve the next group; the stops it found are not kept. Only for a
        policy that never stops a tenant (``reject``, ``raise``): their ``new_stopped``
        stays empty."""
        self.overlay.clear()
        if self.extra or self.held or self.new_stopped or self.parked:
            self.extra.clear()
            self.new_stopped.clear()
            self.held.clear()
            self.parked = 0

    def reset(self) -> None:
        """After the collected operations were committed (the new stops now hold)."""
        self.overlay.clear()
        self.extra.clear()
        self.stopped.update(self.new_stopped)
        self.new_stopped.clear()

    def apply(
        self,
        full: bytes,
        raw: bytes,
        seq: int | None,
        tenant: str | None = None,
        offset: int = 0,
        key: Any = NO_KEY,
    ) -> None:
        """Project one history record (its full key and raw value) into the group.

        ``key``: the record's key as :func:`decode_key_at` would read it back from
        ``full`` (a caller that holds a ``str`` key passes it: a ``str`` reads back as
        itself), so it is not decoded again.

        Raises:
            ProjectionError: policy ``reject`` (durable=False) or ``abort`` (durable=True);
                under any policy, the projection call returned a coroutine, a generator
                or another awaitable (durable=False for ``reject``, else True).
            PoisonError: policy ``raise``.
            the hot tier's error: a hot read failed (not the record's fault).
        """
        projection = self.projection
        assert projection is not None
        if tenant is None:
            tenant, offset = self.p.split(full)
        if self.stopped or self.new_stopped:
            prefix = full[:offset]
            if prefix in self.stopped or prefix in self.new_stopped:
                self._hold(full, tenant, offset, seq)
                return
        try:
            if key is NO_KEY:
                key = decode_key_at(full, offset)
            value = self._decode(raw)
        except Exception as exc:
            self._poison(full, tenant, offset, seq, "undecodable", exc)
            return
        # A state per call, closed when it returns: a kept handle cannot slip updates
        # into a later record (the applier serves many records and, on the write path,
        # many writes).
        lock = self._lock
        state = ProjectionState._open(self._hot, self.overlay, self.space, tenant, lock)
        p = self.p
        record = new_record(tenant, key, value, seq)
        # A projection that writes to its own pair would re-enter the write that is
        # projecting (p.lock is re-entrant) and commit ahead of it under the same
        # change-log number: the pair's writes, maintenance and close() refuse while
        # this is set (naming the record).
        p.projecting = record
        try:
            result = projection(record, state)
        except _HotDamage as exc:
            self._damaged(full, tenant, offset, seq, exc)
            return
        except _HotReadError as exc:
            raise exc.cause from exc.cause.__cause__
        except Exception as exc:  # its updates are dropped whole (state closed below)
            self._poison(full, tenant, offset, seq, "raised", exc)
            return
        finally:
            p.projecting = None
            # ProjectionState._close, inline: under the lock its put/delete hold, so a
            # racing put from another thread lands in ``pending`` or raises.
            lock.acquire()
            pending = state._pending
            state._pending = None
            lock.release()
        if result is not None:
            kind = returned_unrun(result)
            if kind is not None:  # its body did not run: drop the call's updates
                close_unrun(result)
                self._unrun(full, tenant, offset, seq, kind)
        if pending:
            self.overlay.update(pending)

    def _damaged(
        self, full: bytes, tenant: str, offset: int, seq: int | None, exc: _HotDamage
    ) -> None:
        """The projection read a damaged record of its tenant's projection (``exc``):
        the record cannot be applied on it, and neither can the tenant's later ones,
        whatever the poison policy (parking them one by one would drop each silently).
        Catch-up parks the record (reason ``damaged``) and stops the tenant; other
        tenants go on. The remedy is ``rebuild(tenant)``, which derives the tenant again
        from history, replacing the damaged records without reading them.

        Raises:
            _HotDamage: policy ``reject`` (a new write: it goes to history, and the
                catch-up after it stops the tenant, see _append.append).
            PoisonError: policy ``raise`` (a retry: the record stays parked).
            CorruptionError: policy ``abort`` (a rebuild: its projection reads its
                shadow, so this is not expected there).
        """
        cause_exc = exc.cause
        assert isinstance(cause_exc, CorruptionError)
        cause = (
            f"CorruptionError: tenant {tenant!r}'s projection in the hot tier is damaged "
            f"({damage_text(cause_exc)}); rebuild({tenant!r}) derives it again from "
            "history (the history is intact)"
        )
        if self.policy == "reject":
            raise exc
        if self.policy == "raise":
            raise PoisonError("damaged", cause) from cause_exc
        if self.policy == "abort":
            raise cause_exc from cause_exc.__cause__
        key = self._key(full, offset)
        where = f"history record {key!r} of tenant {tenant!r}" + (
            "" if seq is None else f" (change-log seq {seq})"
        )
        pkey = self._parked_key(full, tenant, offset, seq)
        self.extra[pkey] = orjson.dumps({"seq": seq, "reason": "damaged", "cause": cause})
        self.parked += 1
        prefix = full[:offset]
        stop = self.p.stop_record(full, seq, cause, reason="damaged")
        self.new_stopped[prefix] = stop
        self.extra[STOPPED + prefix] = stop
        log.error(
            "tiered %s: %s cannot be applied: %s. Tenant %r's projection is stopped there "
            "(other tenants go on); rebuild(%r) derives it again from history",
            self.p.describe(),
            where,
            cause,
            tenant,
            tenant,
        )

    def _unrun(self, full: bytes, tenant: str, offset: int, seq: int | None, kind: str) -> NoReturn:
        """Raise the error for a projection call that returned ``kind`` (a coroutine, a
        generator, ...) instead of applying the record: never parked (the projection is
        wrong, not the record), whatever the policy."""
        key = self._key(full, offset)
        name = getattr(self.projection, "__qualname__", None) or repr(self.projection)
        cause = ConfigurationError(
            f"the projection {name!r} returned {kind} instead of applying the record: "
            f"its body did not run (or not all of it). {PROJECTION_FIX[0].upper()}"
            f"{PROJECTION_FIX[1:]}",
            backend="tiered",
        )
        what = f"the projection returned {kind} instead of applying"
        if self.policy == "reject":
            raise ProjectionError(
                f"{what} the new event {key!r} of tenant {tenant!r}: {PROJECTION_FIX}. "
                "The event was rejected, nothing was written",
                durable=False,
                tenant=tenant,
                key=key,
                backend="tiered",
            ) from cause
        where = f"history record {key!r} of tenant {tenant!r}" + (
            "" if seq is None else f" (change-log seq {seq})"
        )
        if self.space:  # a rebuild (its shadow)
            outcome = (
                "the rebuild was abandoned and the previous projection is still served; "
                "fix the projection, then rebuild() again"
            )
        elif self.policy == "raise":
            outcome = "it stays parked; fix the projection, then call retry_parked() again"
        else:
            outcome = (
                "nothing of it was applied and it was not parked (the record is not at "
                "fault): hot stays before it (see lag), history is untouched; fix the "
                "projection, then call catch_up() or open the pair again"
            )
        raise ProjectionError(
            f"{what} the {where}: {PROJECTION_FIX}. {outcome[0].upper()}{outcome[1:]}",
            durable=True,
            seq=seq,
            tenant=tenant,
            key=key,
            backend="tiered",
        ) from cause

    def _key(self, full: bytes, offset: int) -> Any:
        try:
            return decode_key_at(full, offset)
        except Exception:
            return None

    def _parked_key(self, full: bytes, tenant: str, offset: int, seq: int | None) -> bytes:
        """``PARKED + full``, refused when it cannot be stored (in this applier's space).

        Raises:
            KeyTooLargeError: a history key longer than the pair's limit (written before
                it, or around the pair), which must be parked: names it and the fix.
        """
        pkey = PARKED + full
        if len(self.space) + len(pkey) <= MAX_KEY_SIZE:
            return pkey
        key = self._key(full, offset)
        where = "" if seq is None else f" (change-log seq {seq})"
        shadow = f" and a rebuild's {len(self.space)}-byte shadow prefix" if self.space else ""
        raise KeyTooLargeError(
            f"the history record {key!r} of tenant {tenant!r}{where} must be parked (the "
            "projection cannot apply it, or its tenant is stopped), but its stored key is "
            f"{len(full)} bytes: under the {len(PARKED)}-byte prefix of parked records"
            f"{shadow} it exceeds the {MAX_KEY_SIZE} bytes every engine takes. It was "
            "written before the pair limited history keys to "
            f"{HISTORY_KEY_LIMIT} bytes, or around the pair. Fix the projection so that "
            "it applies this record (a record that applies is not parked), or remove "
            "the tenant's history with drop_tenant()",
            size=len(full),
            limit=HISTORY_KEY_LIMIT,
            tenant=tenant,
            key=key,
            backend="tiered",
            stored_key=full,
        )

    def _hold(self, full: bytes, tenant: str, offset: int, seq: int | None) -> None:
        cause = "its tenant's projection is stopped at an earlier record"
        pkey = self._parked_key(full, tenant, offset, seq)
        self.extra[pkey] = orjson.dumps({"seq": seq, "reason": "held", "cause": cause})
        self.held.append((tenant, self._key(full, offset)))

    def _poison(
        self,
        full: bytes,
        tenant: str,
        offset: int,
        seq: int | None,
        reason: str,
        exc: BaseException,
    ) -> None:
        key = self._key(full, offset)
        cause = f"{type(exc).__name__}: {exc}"
        where = f"history record {key!r} of tenant {tenant!r}" + (
            "" if seq is None else f" (change-log seq {seq})"
        )
        what = "cannot be decoded" if reason == "undecodable" else "made the projection raise"
        if self.policy == "raise":
            raise PoisonError(reason, cause) from exc
        if self.policy in ("reject", "abort"):
            durable = self.policy == "abort"
            if not durable:
                # A rejected event never reaches history: it has no change-log number, and
                # calling it a history record would say it is durable.
                where, seq = f"the new event {key!r} of tenant {tenant!r}", None
            raise ProjectionError(
                f"the projection failed on {where}: {cause}"
                + (
                    "; the event was rejected, nothing was written"
                    if not durable
                    else "; the rebuild was abandoned and the previous projection is "
                    "still served (fix the projection, or open with on_poison='park')"
                ),
                durable=durable,
                seq=seq,
                tenant=tenant,
                key=key,
                backend="tiered",
            ) from exc
        pkey = self._parked_key(full, tenant, offset, seq)
        self.extra[pkey] = orjson.dumps({"seq": seq, "reason": reason, "cause": cause})
        self.parked += 1
        if self.policy == "stop":
            prefix = full[:offset]
            stop = self.p.stop_record(full, seq, cause)
            self.new_stopped[prefix] = stop
            self.extra[STOPPED + prefix] = stop
            log.error(
                "tiered %s: %s %s; policy 'stop': tenant %r's projection is stopped there "
                "(other tenants go on); fix the projection, then call retry_parked()",
                self.p.describe(),
                where,
                what,
                tenant,
            )
        else:
            log.error(
                "tiered %s: %s %s; policy 'park': the record is parked (see parked(), "
                "retry_parked())",
                self.p.describe(),
                where,
                what,
            )
