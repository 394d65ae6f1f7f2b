"""The asyncio core of the NATS backend: one connected client and every engine
operation as a coroutine, with the client's and server's errors translated at this
boundary.

The synchronous backend runs these coroutines on the process's private loop thread
(:mod:`._loop`); the native-async form awaits them directly on the caller's loop. The
bucket is a JetStream key-value bucket (stream ``KV_<bucket>``, subjects
``$KV.<bucket>.<key>``), read and written at the JetStream level: direct gets for reads,
publishes with ``Nats-Expected-Last-Subject-Sequence`` for create-only and conditional
writes, atomic batch publish (``Nats-Batch-Id``/``-Sequence``/``-Commit``, server 2.12+)
for batches, and an ordered consumer over one tenant's subjects for scans. Connecting,
the bucket's creation and checks, and error translation are the base class's
(:class:`._connection.NATSConnection`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import functools
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from aurora_storage._keys import decode_stored_key
from aurora_storage.backend import Append, Condition, Op, decode_counter, plan_commit
from aurora_storage.errors import (
    NotSupportedError,
    ReadOnlyError,
    StorageError,
)

from ._connection import (
    _BATCH_TOO_LARGE,
    _MSG_TOO_BIG,
    COMMITTING_APPENDS,
    FLUSH_EVERY,
    NATSConnection,
    reads,
    writes,
)
from ._errors import ValueTooLargeError
from ._subjects import decode_key, encode_key, scan_filter

__all__ = [
    "BATCH_CONDITIONAL_OVERHEAD",
    "BATCH_OVERHEAD",
    "CONDITIONAL_OVERHEAD",
    "LAG_PAUSES",
    "WRITE_SENT",
    "Client",
    "NATSCore",
]

#: Per call (set by the backend, see ``NATSBackend._guarded``): flags the call sets once
#: it has sent what may apply a write (a publish, a batch's commit) - whether a write cut
#: off by close() may have been applied - and whether that write holds appends (whose
#: repeat would store them twice, so the error advises otherwise).
WRITE_SENT: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "aurora_nats_write_sent", default=None
)


def _sending(appends: bool = False) -> None:
    sent = WRITE_SENT.get()
    if sent is not None:
        sent[0] = True
        sent[1] = appends


_KV_OP = "KV-Operation"
_MARKER = "Nats-Marker-Reason"
_EXPECT = "Nats-Expected-Last-Subject-Sequence"
_DEL_HDR = {_KV_OP: "DEL"}
#: On a delete marker of a key that was already absent: no change (the feed skips it).
UNCHANGED = "Aurora-Unchanged"
#: JetStream's "wrong last sequence" error codes (server/errors.json): a conditional
#: publish found the subject moved on.
_WRONG_LAST_SEQ = (10071, 10164)
#: "atomic publish batch is incomplete": the server dropped a message of the batch
#: (one over the stream's max_msg_size, for one) and refused its commit.
_BATCH_INCOMPLETE = 10176
#: Reads sent together by get_many and conditional commits.
_IN_FLIGHT = 256
#: Most bytes of one batched direct get's answer (``max_bytes``; one message is sent
#: whatever its size): :meth:`_multi_last` reads ``_IN_FLIGHT // 16`` parts at once,
#: 32 MiB in all, half the server's default pending limit per client.
_ANSWER_BYTES = 2 * 1024 * 1024
#: Most subjects one ``multi_last`` direct get may match (the server's limit), and the
#: most bytes of subjects get_many puts in one request (less when the server's
#: ``max_payload`` is smaller, see :meth:`NATSCore._multi_bytes`).
_MULTI = 1024
_MULTI_BYTES = 256 * 1024
#: Bytes of a ``multi_last`` request besides its subjects' (``{"multi_last":[...]``,
#: ``,"up_to_seq":<20 digits>}``), with room to spare.
_MULTI_FRAME = 64

# The server counts a message's headers with its data against its max_payload and the
# stream's max_msg_size. nats-py frames headers as "NATS/1.0\r\n", one
# "Name: value\r\n" per header, then "\r\n"; sequence numbers are counted at their
# widest (20 digits), so a write's limit depends on neither the key's sequence nor the
# message's place in a batch.
_HDR_FRAME = 12
_SEQ_DIGITS = 20


async def _flushed(nc: Client, timeout: float) -> None:
    """Wait until everything handed to ``nc`` so far has reached the server (a PING
    answered after it), for at most ``timeout`` seconds.

    Not nats-py's ``Client.flush(timeout)``: on a timeout - and when its caller is
    cancelled - that cancels its PING's future, still queued for the PONG; when the
    PONG then arrives, nats-py's read loop sets a result on the cancelled future
    (``InvalidStateError``) and stops for good while the connection still counts as
    connected, so every later call timed out (for minutes, until a stale-ping
    reconnect). This future is never cancelled: a late PONG resolves it, and a
    reconnect drops it with nats-py's other pending PINGs.

    Raises:
        nats.errors.ConnectionClosedError: the connection is closed.
        nats.errors.FlushTimeoutError: no PONG within ``timeout``.
    """
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    pong: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    await nc._send_ping(pong)  # the PING nats-py's flush() sends, with our future
    try:
        # shield: a timeout or a cancellation of this call leaves the PING's future
        # alone.
        await asyncio.wait_for(asyncio.shield(pong), timeout)
    except TimeoutError:
        raise nats.errors.FlushTimeoutError from None


def _line(name: str, value_len: int) -> int:
    return len(name) + 4 + value_len


_EXPECT_LINE = _line(_EXPECT, _SEQ_DIGITS)
#: Header bytes (at most) beside a value: a conditional write alone (insert,
#: compare_and_set: ``Nats-Expected-Last-Subject-Sequence``), a write in an atomic
#: batch (put_many, batch, a put of a commit: ``Nats-Batch-Id``, ``-Sequence``,
#: ``-Commit``), and a conditional write in an atomic batch (both): a batch's insert or
#: compare_and_set, and every append's record (the commit expects its slot unchanged
#: since it was read, see ``commit``). A plain put carries none.
CONDITIONAL_OVERHEAD = _HDR_FRAME + _EXPECT_LINE
BATCH_OVERHEAD = (
    _HDR_FRAME
    + _line("Nats-Batch-Id", 32)
    + _line("Nats-Batch-Sequence", _SEQ_DIGITS)
    + _line("Nats-Batch-Commit", 1)
)
BATCH_CONDITIONAL_OVERHEAD = BATCH_OVERHEAD + _EXPECT_LINE
#: Pauses (seconds) before a direct read is tried again because the replica that
#: answered had not yet applied what the leader holds.
LAG_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


class _Unread(Exception):
    """plan_commit asked for a key the commit has not read from the server yet."""

    def __init__(self, key: bytes) -> None:
        super().__init__(key)
        self.key = key


class _Unlisted(Exception):
    """plan_commit asked for the newest key of a range the commit has not listed."""

    def __init__(self, start: bytes, stop: bytes) -> None:
        super().__init__(start, stop)
        self.start = start
        self.stop = stop


def _listed_last(
    listed: dict[tuple[bytes, bytes], list[bytes]], start: bytes, stop: bytes
) -> bytes | None:
    """The newest listed key in ``[start, stop)``, from a listing holding that range."""
    for (lo, hi), keys in listed.items():
        if lo <= start and stop <= hi:
            i = bisect.bisect_left(keys, stop)
            return keys[i - 1] if i > bisect.bisect_left(keys, start) else None
    raise _Unlisted(start, stop)


#: What a commit is doing when it lists a sequence's numbered records (see commit): its
#: errors name it, not "scanning". It does not start with a word of ``_connection._WRITES``:
#: nothing was sent yet, so nothing may have been applied.
_NUMBERING = (
    "finding the newest record of a sequence whose counter is behind its records, to "
    "number the commit's appends past it (nothing was written)"
)


def _known(state: dict[bytes, tuple[bytes | None, int]], key: bytes) -> bytes | None:
    try:
        return state[key][0]
    except KeyError:
        raise _Unread(key) from None


def _next_slots(
    state: dict[bytes, tuple[bytes | None, int]], appends: Sequence[Append]
) -> list[bytes]:
    """The record keys ``appends`` take if nothing occupies them (from the counters in
    ``state``); empty if a counter cannot be decoded (plan_commit then reports it)."""
    after: dict[bytes, int] = {}
    out: list[bytes] = []
    try:
        for a in appends:
            last = after.get(a.counter)
            if last is None:
                last = decode_counter(state[a.counter][0], a.counter)
            out += [a.key(last + i) for i in range(1, len(a.values) + 1)]
            after[a.counter] = last + len(a.values)
    except StorageError:
        return []
    return list(dict.fromkeys(out))


def _holds(got: dict[str, Msg], proof: tuple[str, int], bound: int | None) -> bool:
    """Whether a ``multi_last`` answer came from a replica holding the leader's last
    message ``proof`` (bound to its sequence: that very message)."""
    msg = got.get(proof[0])
    seq = -1 if msg is None else int((msg.headers or {}).get("Nats-Sequence", 0))
    return seq == proof[1] if bound is not None else seq >= proof[1]


def _parts(subjects: list[str], most: int, room: int = _MULTI_BYTES) -> list[list[str]]:
    """``subjects`` in runs of at most ``most`` subjects and ``room`` bytes of them (as
    JSON strings in a list)."""
    parts: list[list[str]] = []
    part: list[str] = []
    size = 0
    for s in subjects:
        if part and (len(part) >= most or size + len(s) + 3 > room):
            parts.append(part)
            part, size = [], 0
        part.append(s)
        size += len(s) + 3
    if part:
        parts.append(part)
    return parts


class NATSCore(NATSConnection):
    """One client connection to the bucket; every method is a coroutine on the loop the
    connection was made on."""

    # ------------------------------------------------------------------ reads

    async def _last(self, kv: str) -> Msg | None:
        """The last message on a key's subject (a value or a delete marker), or None."""
        if not self.direct:
            return await self._leader_get({"last_by_subj": self.pre + kv})
        try:
            msg = await self._conn().request(self._get_pre + kv, b"", timeout=self.timeout)
        except Exception as exc:
            self.fail(exc, "reading")
        if not msg.data:
            hdrs = msg.headers
            if hdrs is not None:
                status = hdrs.get("Status")
                if status == "404":
                    return None
                if status:
                    self.fail(
                        nats.js.errors.APIError.from_msg(msg),
                        "reading",
                    )
        return msg

    @reads
    async def get(self, key: bytes) -> bytes | None:
        """The value at ``key`` (None if absent or deleted)."""
        msg = await self._last(encode_key(key))
        if msg is None:
            return None
        hdrs = msg.headers
        if hdrs is not None and (_KV_OP in hdrs or _MARKER in hdrs):
            return None
        return msg.data

    @reads
    async def read_state(self, key: bytes) -> tuple[bytes | None, int]:
        """``(value or None, last sequence of the key's subject, 0 if none)``."""
        msg = await self._last(encode_key(key))
        if msg is None:
            return None, 0
        hdrs = msg.headers or {}
        seq = int(hdrs.get("Nats-Sequence", 0))
        if _KV_OP in hdrs or _MARKER in hdrs:
            return None, seq
        return msg.data, seq

    @reads
    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values for ``keys`` in order, all as of one point in the stream (one
        consistent cut: never values of two different atomic batches), read with
        batched direct gets of the subjects' last messages (``multi_last``, nats-server
        2.11+; reads isolated from writes since 2.12), at most :data:`_MULTI` subjects
        a request.

        The server reads one request's messages without a write in between (an atomic
        batch is stored whole before a read sees any of it), so up to :data:`_MULTI`
        keys take one request at the server's own last sequence. More keys are read at
        the stream's last message (``up_to_seq``), all parts at once. A replicated
        bucket's direct gets may be answered by a replica that has not applied the
        latest writes: there the leader's last message is read first and asked for in
        each request too, and an answer that lacks it is asked again.

        A bound sequence reads each key's last message at or before it; a key changed
        more than ``history`` times since has none left there and seems absent. So each
        key absent from a bounded answer is checked: if the stream holds any message of
        it now, all is read again at a new point.
        """
        if not keys:
            return []
        subjects = {k: self.pre + encode_key(k) for k in dict.fromkeys(keys)}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            found = await self._multi_last(list(subjects.values()))
            if found is not None:
                break
            if loop.time() > deadline:
                # Read again and again at new points, each time missing what changed
                # meanwhile (or a replica behind): as good as no answer.
                self.fail(nats.errors.TimeoutError(), "reading")
        out: list[bytes | None] = []
        for k in keys:
            msg = found.get(subjects[k])
            hdrs = None if msg is None else msg.headers
            if msg is None or (hdrs is not None and (_KV_OP in hdrs or _MARKER in hdrs)):
                out.append(None)
            else:
                out.append(msg.data)
        return out

    async def _multi_last(self, subjects: list[str]) -> dict[str, Msg] | None:
        """The last message of each of ``subjects`` (those that have one) at one point
        of the stream, or None when it must be read again (see :meth:`get_many`)."""
        most = _MULTI - (not self.direct)
        room = self._multi_bytes()
        parts = _parts(subjects, most, room)
        # The point: a replicated bucket's, or more keys than one request holds, are
        # read at the stream's last message (read from the leader); replicas prove they
        # hold it by answering for it too. Otherwise one request at the server's last
        # sequence.
        last: tuple[str, int] | None = None
        if not self.direct or len(parts) > 1:
            msg = await self._leader_get({"last_by_subj": self.pre + ">"})
            if msg is None:
                return {}  # the stream holds nothing at all
            hdrs = msg.headers or {}
            last = (hdrs["Nats-Subject"], int(hdrs["Nats-Sequence"]))
            if not self.direct:
                # Each request asks for the leader's last subject too.
                parts = _parts(subjects, most, room - len(last[0]) - 3)
        proof = None if self.direct else last
        cut = last[1] if last is not None and len(parts) > 1 else None
        found: dict[str, Msg] = {}
        absent: list[str] = []  # missing from a bounded answer: checked below
        pauses = iter(LAG_PAUSES)
        while parts:
            # Every part at once: the sooner they are read, the less changed since.
            wave, parts = parts, []
            answers = []
            for i in range(0, len(wave), _IN_FLIGHT // 16):
                answers += await asyncio.gather(
                    *(self._multi_part(p, proof, cut) for p in wave[i : i + _IN_FLIGHT // 16])
                )
            lagging = False
            for part, (got, eob) in zip(wave, answers, strict=True):
                more = eob is not None and int(eob.get("Nats-Num-Pending", 0)) > 0
                if proof is not None and not _holds(got, proof, cut):
                    if more and len(part) > 1:
                        # The answer stopped at the server's size limit before the
                        # leader's last message (the last in stream order): in halves,
                        # both at that message.
                        half = len(part) // 2
                        parts += [part[:half], part[half:]]
                        cut = proof[1]
                        continue
                    if not more:
                        lagging = True  # a replica behind the leader answered
                        parts.append(part)
                        continue
                    # (One key whose value alone filled the answer: taken as it is.)
                for subj in part:
                    msg = got.get(subj)
                    if msg is not None:
                        found[subj] = msg
                bound = cut
                if more:
                    # The answer stopped at the server's size limit: the rest again,
                    # bound to the same point.
                    if cut is None:
                        cut = int(eob.get("Nats-UpTo-Sequence", 0)) or None
                    parts.append([s for s in part if s not in found])
                elif bound is not None:
                    absent += [s for s in part if s not in found]
            if lagging:
                # After a few tries, at a new point: when bound to the leader's last
                # message, that message may have been replaced since.
                pause = next(pauses, None)
                if pause is None:
                    return None
                await asyncio.sleep(pause)
        if absent:
            # A bounded read misses a key changed more than `history` times since the
            # point (its messages up to there are gone), and a key created since. Either
            # way the stream holds a message of it now (and none at the point): read all
            # again, at a new point.
            for i in range(0, len(absent), _IN_FLIGHT):
                part = absent[i : i + _IN_FLIGHT]
                firsts = await asyncio.gather(*(self._direct(1, s, "reading") for s in part))
                if any(f is not None for f in firsts):
                    return None
        return found

    def _multi_bytes(self) -> int:
        """The most bytes of subjects one ``multi_last`` request of :meth:`_multi_last`
        holds: :data:`_MULTI_BYTES`, less on a server whose ``max_payload`` is smaller
        (the client refuses a request over it), leaving room for the request's frame.
        (A part holds at least one subject whatever its length.)"""
        return max(1, min(_MULTI_BYTES, self._conn().max_payload - _MULTI_FRAME))

    async def _multi_part(
        self, part: list[str], proof: tuple[str, int] | None, bound: int | None
    ) -> tuple[dict[str, Msg], Any]:
        """One ``multi_last`` request of :meth:`_multi_last` (``part``, and the leader's
        last message ``proof`` too): the messages by subject and the end-of-batch
        headers (None: nothing matched)."""
        req: dict[str, Any] = {"multi_last": part}
        if proof is not None and proof[0] not in part:
            req["multi_last"] = [*part, proof[0]]
        if bound is not None:
            req["up_to_seq"] = bound
        msgs, eob = await self._direct_batch(req, "reading")
        return {(m.headers or {}).get("Nats-Subject", ""): m for m in msgs}, eob

    @reads
    async def _direct_batch(self, req: dict[str, Any], what: str) -> tuple[list[Msg], Any]:
        """The messages of one batched direct get (``batch`` or ``multi_last``, sent to
        any server holding the stream), and the headers of its end-of-batch status
        (``Nats-Num-Pending``, ``Nats-UpTo-Sequence``) - None when nothing matched."""
        nc = self._conn()
        # Bounded, the rest read on as an answer the server cut (Nats-Num-Pending): an
        # answer the server queues for this client at once past its per-client pending
        # limit (64 MiB by default) gets the client cut off as a slow consumer - and
        # several are read at once (see _multi_last).
        req = {**req, "max_bytes": _ANSWER_BYTES}
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            queue.put_nowait(msg)

        inbox = nc.new_inbox()
        out: list[Msg] = []
        try:
            sub = await nc.subscribe(inbox, cb=on_msg)
            try:
                await nc.publish(
                    f"$JS.API.DIRECT.GET.{self.stream}", orjson.dumps(req), reply=inbox
                )
                while True:
                    msg = await asyncio.wait_for(queue.get(), self.timeout)
                    hdrs = msg.headers or {}
                    status = hdrs.get("Status")
                    if not status:
                        out.append(msg)
                        continue
                    if status == "204":  # end of batch
                        return out, hdrs
                    if status == "404":  # nothing (more) stored
                        return out, None
                    self.fail(nats.js.errors.APIError.from_msg(msg), what)
            finally:
                await sub.unsubscribe()
        except Exception as exc:
            self.fail(exc, what)

    @reads
    async def listing(
        self, filt: str, values: bool, what: str = "scanning"
    ) -> list[tuple[bytes, bytes | None]]:
        """Every live ``(key, value)`` under the subject filter ``filt`` (below the
        bucket's prefix, see :func:`._subjects.scan_filter`), unordered, as of one
        consistent cut of the stream. ``what`` names the call's step in its errors (a
        commit lists a sequence's records before it writes: not a scan of the caller's).

        An ordered consumer delivers the last message per subject under a server-side
        subject filter (headers only unless ``values``), then new messages in stream
        order. The server stores an atomic batch's messages one after the other, so a
        listing can meet a batch half-applied; the stored messages keep their
        ``Nats-Batch-Id`` headers, so the listing recognises a batch it saw only part of,
        finds where that batch ends in the stream (:meth:`_batch_end`), and cuts after
        it - never in the middle of a batch.

        The consumer keeps delivering newer messages until it is stopped, so a subject
        keeps what it held at the cut next to what came after it: a later message
        replacing that would make the key vanish from the listing (it is beyond the
        cut), although it existed at the cut.
        """
        self._conn()
        js = self.js
        pre = self.pre
        plen = len(pre)
        subject = pre + filt
        # A replicated bucket's consumer runs on any replica, and one behind the leader
        # (a moment after a write, or restarted and still catching up) delivers what it
        # holds and reports nothing pending: a listing would miss acknowledged writes,
        # or hold nothing at all. The cut is never before the leader's last message as
        # the listing starts (every write acknowledged before it is in), and it is kept
        # only once everything of ours up to it, by the leader's word, was delivered.
        leader_last = 0
        if not self.direct:
            head = await self._leader_get({"last_by_subj": pre + ">"}, what)
            if head is not None:
                leader_last = int((head.headers or {})["Nats-Sequence"])
        # subject -> its messages (stream sequence, data, deleted), oldest first: the
        # last one at or before `floor`, then those delivered after it
        latest: dict[str, list[tuple[int, bytes | None, bool]]] = {}
        # The cut as fixed so far (None: not yet); it only ever moves later.
        floor: list[int | None] = [None]
        # batch id -> first sequence seen, for batches seen without their commit
        open_batches: dict[str, int] = {}
        progress = asyncio.Event()
        caught_up = asyncio.Event()
        last = [0]

        async def on_msg(msg: Msg) -> None:
            meta = msg.metadata
            seq = meta.sequence.stream
            hdrs = msg.headers
            deleted = False
            if hdrs:
                deleted = _KV_OP in hdrs or _MARKER in hdrs
                bid = hdrs.get("Nats-Batch-Id")
                if open_batches:
                    # Batches are stored contiguously: a later message of anything
                    # else proves an open batch ended before it.
                    for b, first in list(open_batches.items()):
                        if b != bid and first < seq:
                            del open_batches[b]
                if bid is not None:
                    if hdrs.get("Nats-Batch-Commit"):
                        open_batches.pop(bid, None)
                    else:
                        open_batches.setdefault(bid, seq)
            elif open_batches:
                open_batches.clear()
            entry = (seq, msg.data if values else None, deleted)
            held = latest.get(msg.subject)
            if held is None or floor[0] is None or seq <= floor[0]:
                latest[msg.subject] = [entry]  # (delivered in stream order)
            else:
                held.append(entry)  # beyond the cut as fixed so far: it may stay out
            last[0] = seq
            progress.set()
            if meta.num_pending == 0:
                caught_up.set()

        try:
            sub = await js.subscribe(
                subject,
                stream=self.stream,
                cb=on_msg,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                headers_only=not values,
                # A backstop: the consumer is deleted below; one recreated by the
                # client after a gap is removed by the server soon after.
                inactive_threshold=5.0,
            )
        except Exception as exc:
            self.fail(exc, what)
        name: str | None = None
        try:
            info = await sub.consumer_info()
            name = info.name
            # Nothing to deliver at all (the server delivered nothing and has nothing
            # pending); otherwise the callback sees the last message (num_pending 0).
            if info.num_pending == 0 and info.delivered.consumer_seq == 0:
                caught_up.set()
            await self._wait(caught_up, progress)
            # Until everything of ours up to the leader's last message was delivered, no
            # cut: each subject keeps just its newest message (delivered in order).
            await self._delivered(leader_last, subject, last, progress, what)
            cut = floor[0] = max(last[0], leader_last)
            while True:
                pending = [(b, first) for b, first in open_batches.items() if first <= cut]
                if not pending:
                    break
                for bid, first in pending:
                    cut = floor[0] = max(cut, await self._batch_end(bid, first, what))
                    # Its end is known (and within the cut) even if that end lies
                    # outside this filter.
                    open_batches.pop(bid, None)
                # Everything of ours up to the cut is stored: wait until it is delivered.
                await self._delivered(cut, subject, last, progress, what)
                for b, first in list(open_batches.items()):
                    if first > cut:
                        del open_batches[b]
        except Exception as exc:
            self.fail(exc, what)
        finally:
            try:
                await sub.unsubscribe()
                if name is not None:
                    # Ephemeral consumers count against the server's limit until they
                    # are deleted (a scan a millisecond would exhaust it).
                    await js.delete_consumer(self.stream, name)
            except Exception:
                pass
        out: list[tuple[bytes, bytes | None]] = []
        for subj, held in latest.items():
            # What the subject held at the cut: its last message at or before it.
            at_cut = [e for e in held if e[0] <= cut]
            if not at_cut or at_cut[-1][2]:
                continue  # created after the cut, or deleted at it
            data = at_cut[-1][1]
            try:
                out.append((decode_key(subj[plen:]), data))
            except ValueError:
                continue  # another application's key in the bucket: not ours to list
        return out

    async def _delivered(
        self,
        cut: int,
        subject: str,
        last: list[int],
        progress: asyncio.Event,
        what: str = "scanning",
    ) -> None:
        """Wait until a listing's consumer (``last[0]``: the last sequence it delivered)
        has delivered every message on ``subject`` up to ``cut`` that the stream holds
        (a replicated bucket's: read from the leader). A consumer whose replica stays
        behind raises the timeout (no progress), never a short listing."""
        while True:
            nxt = await self._next_seq(last[0] + 1, subject, what)
            if nxt is None or nxt > cut:
                return
            progress.clear()
            while last[0] < nxt:
                await self._wait(progress, progress)
                progress.clear()

    async def _wait(self, event: asyncio.Event, progress: asyncio.Event) -> None:
        """Wait for ``event``; the timeout applies to progress (``progress`` set by
        each delivered message), not to the whole, possibly large, scan."""
        while not event.is_set():
            progress.clear()
            waiter = asyncio.ensure_future(event.wait())
            ticker = asyncio.ensure_future(progress.wait())
            try:
                done, _ = await asyncio.wait(
                    {waiter, ticker}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                # (Also when the listing is cancelled: a waiter left pending is reported
                # as "Task was destroyed but it is pending!".)
                waiter.cancel()
                ticker.cancel()
            if not done:
                raise nats.errors.TimeoutError

    @reads
    async def _leader_get(self, req: dict[str, Any], what: str = "reading") -> Msg | None:
        """A message read through the stream leader (``STREAM.MSG.GET``): what a
        replicated bucket's reads use, since direct gets may be answered by a replica
        that has not applied the latest writes yet. The answer is shaped like a direct
        get's (headers with ``Nats-Sequence``), or None when there is no such message."""
        import base64

        from nats.aio.msg import Msg as _Msg

        try:
            msg = await self._conn().request(
                f"$JS.API.STREAM.MSG.GET.{self.stream}", orjson.dumps(req), timeout=self.timeout
            )
        except Exception as exc:
            self.fail(exc, what)
        resp = self._ack(msg, what)
        if isinstance(resp, Exception):
            if getattr(resp, "err_code", None) == 10037 or getattr(resp, "code", None) == 404:
                return None  # no message found
            self.fail(resp, what)
        m = resp["message"]
        hdrs: dict[str, str] = {}
        raw_hdrs = m.get("hdrs")
        if raw_hdrs:
            for line in base64.b64decode(raw_hdrs).decode().split("\r\n")[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    hdrs[name.strip()] = value.strip()
        hdrs["Nats-Sequence"] = str(m["seq"])
        hdrs["Nats-Subject"] = m["subject"]
        data = base64.b64decode(m.get("data") or b"")
        return _Msg(self._conn(), subject=m["subject"], data=data, headers=hdrs)

    @reads
    async def _direct(self, seq: int, subject: str, what: str = "scanning") -> Msg | None:
        """The first stored message with sequence >= ``seq`` on ``subject`` (a
        wildcard), or None."""
        if not self.direct:
            return await self._leader_get({"seq": seq, "next_by_subj": subject}, what)
        req = orjson.dumps({"seq": seq, "next_by_subj": subject})
        try:
            msg = await self._conn().request(
                f"$JS.API.DIRECT.GET.{self.stream}", req, timeout=self.timeout
            )
        except Exception as exc:
            self.fail(exc, what)
        if not msg.data and msg.headers and msg.headers.get("Status"):
            if msg.headers.get("Status") == "404":
                return None
            self.fail(nats.js.errors.APIError.from_msg(msg), what)
        return msg

    async def _next_seq(self, seq: int, subject: str, what: str = "scanning") -> int | None:
        msg = await self._direct(seq, subject, what)
        return None if msg is None else int((msg.headers or {}).get("Nats-Sequence", 0))

    async def _batch_end(self, bid: str, first: int, what: str = "scanning") -> int:
        """A stream sequence at or after the end of the batch ``bid`` (holding message
        ``first``): its commit, or (if that was overwritten since) just before the first
        later message of something else. Waits while the batch is still being stored."""
        seq = first
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            msg = await self._direct(seq + 1, f"{self.pre}>", what)
            if msg is None:
                # Nothing stored after: either the rest of the batch is being stored,
                # or it was stored and removed since (overwritten, or its tenant
                # purged). In the second case the stream's last sequence has moved on.
                info = await self.js.stream_info(self.stream)
                if info.state.last_seq > seq:
                    return int(info.state.last_seq)
                if loop.time() > deadline:
                    raise nats.errors.TimeoutError
                await asyncio.sleep(0.001)
                continue
            hdrs = msg.headers or {}
            mseq = int(hdrs.get("Nats-Sequence", 0))
            if hdrs.get("Nats-Batch-Id") != bid:
                return mseq - 1
            if hdrs.get("Nats-Batch-Commit"):
                return mseq
            seq = mseq

    @reads
    async def stream_state(self) -> Any:
        """The stream's info (state, config, cluster)."""
        try:
            return await self.js.stream_info(self.stream)
        except Exception as exc:
            self.fail(exc, "reading the bucket's state")

    # ------------------------------------------------------------------ writes

    def _writable(self) -> None:
        if self.config.read_only:
            raise ReadOnlyError(
                f"the NATS repository {self.config.describe()} was opened read-only",
                backend="nats",
            )

    def msg_limit(self) -> tuple[int, bool]:
        """The most bytes of headers and data one message may hold, and whether the
        bucket's ``max_value_size`` (the stream's ``max_msg_size``) sets it rather than
        the server's ``max_payload`` (from the server's INFO: a server of a cluster may
        have its own)."""
        payload: int = self._conn().max_payload
        size = self.max_msg_size
        if 0 < size <= payload:
            return size, True
        return payload, False

    def check_values(
        self, ops: Sequence[Op], expect: Collection[bytes] | None = None, *, single: bool = False
    ) -> None:
        """Refuse, before anything is sent, the first value of ``ops`` whose message
        (its value and the headers it is sent with) is larger than :meth:`msg_limit`:
        the server would refuse it, and one over ``max_payload`` makes it close the
        connection. ``expect``: the keys whose first write carries an expected
        sequence; ``single``: ``ops`` is one write sent alone (not an atomic batch).

        Raises:
            ValueTooLargeError: naming the key, the value's size and the limit of
                such a write; nothing was written.
        """
        cap, _ = self.msg_limit()
        base = 0 if single else BATCH_OVERHEAD
        room = cap - base - (_HDR_FRAME if single else 0) - _EXPECT_LINE
        if all(v is None or len(v) <= room for _, v in ops):
            return  # (the common case: no value near the limit)
        guarded = set(expect or ())
        for k, v in ops:
            cond = k in guarded
            guarded.discard(k)  # (only the key's first write carries it)
            if v is None:
                continue
            if single:
                over = CONDITIONAL_OVERHEAD if cond else 0
            else:
                over = BATCH_CONDITIONAL_OVERHEAD if cond else BATCH_OVERHEAD
            if len(v) + over > cap:
                raise self.value_too_large(k, len(v), over)

    def value_too_large(self, key: bytes, size: int, overhead: int) -> ValueTooLargeError:
        """The error for a value of ``size`` bytes at the stored key ``key`` sent with
        up to ``overhead`` bytes of headers, over :meth:`msg_limit`."""
        cap, bucket = self.msg_limit()
        limit = max(cap - overhead, 0)
        tenant: str | None = None
        user_key: Any = None
        named = f"the stored key {key[:64]!r}"
        try:
            tenant, user_key = decode_stored_key(key)
        except (StorageError, ValueError):
            pass  # not a user record's key: named by its bytes
        else:
            named = f"key {user_key!r} of tenant {tenant!r}"
        kind = {
            0: "a put",
            CONDITIONAL_OVERHEAD: "an insert or compare-and-set",
            BATCH_OVERHEAD: "a write in an atomic batch (put_many, a batch, a commit)",
            BATCH_CONDITIONAL_OVERHEAD: (
                "a conditional write in an atomic batch (an insert, a compare-and-set, or "
                "an append: its record is written only if its number is still free)"
            ),
        }.get(overhead, "this write")
        source = (
            "the bucket's max_value_size (the stream's max_msg_size)"
            if bucket
            else "the server's max_payload"
        )
        return ValueTooLargeError(
            f"the value for {named} is {size:,} bytes: too large for {kind} on "
            f"{self.config.describe()}, which takes values of at most {limit:,} bytes "
            f"(one NATS message holds at most {cap:,} bytes of headers and value "
            f"together, set by {source}, and such a write's message carries up to "
            f"{overhead} bytes of headers). Nothing was written. Store smaller values "
            "(keep large blobs outside the store and store a reference to them), or "
            f"raise {source}",
            size=size,
            limit=limit,
            tenant=tenant,
            key=user_key,
            backend="nats",
            stored_key=key,
        )

    async def _refresh_limit(self) -> None:
        """Read the stream's ``max_msg_size`` again (another process may have changed
        the bucket's ``max_value_size`` since it was opened)."""
        try:
            info = await self.js.stream_info(self.stream)
        except Exception:
            return  # the caller reports the server's refusal as it is
        self.max_msg_size = int(info.config.max_msg_size or -1)

    async def _publish_one(self, key: bytes, value: bytes, headers: dict[str, str] | None) -> Any:
        """:meth:`_publish` of one write, its size checked first (:meth:`check_values`)
        and again on a size refusal after the limits were read again (the server's
        INFO, the stream's ``max_msg_size``)."""
        ops = ((key, value),)
        expect = (key,) if headers is not None and _EXPECT in headers else None
        self.check_values(ops, expect, single=True)
        try:
            resp = await self._publish(encode_key(key), value, headers)
        except ValueTooLargeError:
            # The client's own max_payload check: the server's INFO changed since.
            self.check_values(ops, expect, single=True)
            raise
        if getattr(resp, "err_code", None) == _MSG_TOO_BIG:
            await self._refresh_limit()
            self.check_values(ops, expect, single=True)
        return resp

    async def _publish(self, kv: str, data: bytes, headers: dict[str, str] | None) -> Any:
        nc = self._conn()
        _sending()
        try:
            # Bounded as a whole: nats-py's publish inside the request may wait on a full
            # outgoing buffer without a bound of its own.
            async with asyncio.timeout(self.timeout):
                msg = await nc.request(self.pre + kv, data, timeout=self.timeout, headers=headers)
        except Exception as exc:
            self.fail(exc, "writing")
        return self._ack(msg, "writing")

    def _ack(self, msg: Msg, what: str) -> Any:
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            self.fail(nats.errors.NoRespondersError(), what)
        try:
            resp = orjson.loads(msg.data)
        except orjson.JSONDecodeError as exc:
            raise StorageError(
                f"{what}: unexpected answer from {self.config.describe()}: {msg.data[:80]!r}",
                backend="nats",
            ) from exc
        err = resp.get("error")
        if err is not None:
            try:
                # The client's helper raises the matching subclass; keep it as a value.
                nats.js.errors.APIError.from_error(err)
            except nats.js.errors.APIError as exc:
                return exc
            return nats.js.errors.APIError(**err)
        return resp

    @writes
    async def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` at ``key``."""
        self._writable()
        resp = await self._publish_one(key, value, None)
        if isinstance(resp, Exception):
            self.fail(resp, "writing")

    @writes
    async def delete(self, key: bytes) -> bool:
        """Delete ``key`` (a delete marker); whether it was present. Conditional on the
        revision read, so two concurrent deletes do not both report it present."""
        self._writable()
        kv = encode_key(key)
        while True:
            value, seq = await self.read_state(key)
            if value is None:
                return False
            resp = await self._publish(kv, b"", {_KV_OP: "DEL", _EXPECT: str(seq)})
            if not isinstance(resp, Exception):
                return True
            if getattr(resp, "err_code", None) not in _WRONG_LAST_SEQ:
                self.fail(resp, "deleting")

    @writes
    async def insert(self, key: bytes, value: bytes) -> bool:
        """Store ``value`` only if ``key`` is absent (the server checks the subject's last
        sequence, so this holds across processes); whether it was stored."""
        self._writable()
        while True:
            current, seq = await self.read_state(key)
            if current is not None:
                return False
            resp = await self._publish_one(key, value, {_EXPECT: str(seq)})
            if not isinstance(resp, Exception):
                return True
            if getattr(resp, "err_code", None) not in _WRONG_LAST_SEQ:
                self.fail(resp, "inserting")

    @writes
    async def write(
        self,
        ops: Sequence[Op],
        expect: dict[bytes, int] | None = None,
        internal: int = 0,
        *,
        state: dict[bytes, tuple[bytes | None, int]] | None = None,
        present: bool = False,
    ) -> None:
        """Apply ``ops`` atomically (one atomic batch publish; a single operation is one
        publish). ``expect`` maps keys to the subject sequence their first write requires
        (a conditional commit; ``state`` is what it read); ``internal`` of the ops are
        records the repository added (sequence counters, for the error that names the
        caller's operations).

        A delete of a key that does not exist changes nothing and is no change for a
        watch (as on every engine). So the deleted keys are read first, and each delete
        carries the key's last sequence as read (the server refuses the batch if the
        key was written meanwhile; it is then read and published again). The marker of
        an absent key is still published - the server checks the key is still absent
        when the batch is stored - with ``Aurora-Unchanged``, which the change feed
        skips. A write of nothing but such deletes publishes nothing (it takes effect
        when the keys were read). ``present``: every deleted key was just listed (a
        range delete), so nothing is read.

        Raises:
            BatchTooLargeError: more than ``max_batch`` operations; nothing written.
            NotSupportedError: atomic publish is not available; nothing written.
            nats.js.errors.APIError: (``expect`` given) an expected sequence did not
                hold; the conditional commit plans again.
        """
        self._writable()
        n = len(ops)
        if n > self.config.max_batch:
            raise self.too_large(n - internal, internal)
        if present or all(v is not None for _, v in ops):
            await self._publish_ops(ops, expect, internal, ())
            return
        while True:
            known = dict(state) if state else {}
            noop, guards = await self._unchanged(ops, known, expect)
            if len(noop) == n:
                return  # nothing would change
            if expect is not None:
                await self._publish_ops(ops, {**guards, **expect}, internal, noop)
                return
            try:
                await self._publish_ops(ops, guards, internal, noop)
                return
            except nats.js.errors.APIError as exc:
                if exc.err_code not in _WRONG_LAST_SEQ:
                    self.fail(exc, "writing")
                # A deleted key was written meanwhile: read again.

    async def _unchanged(
        self,
        ops: Sequence[Op],
        known: dict[bytes, tuple[bytes | None, int]],
        expect: dict[bytes, int] | None,
    ) -> tuple[set[int], dict[bytes, int]]:
        """Which of ``ops`` are deletes of absent keys (their indexes), and the last
        sequence each deleted key must still have when the batch is stored (on the
        key's first write in the batch; ``expect`` already guards its own keys)."""
        unread = list(dict.fromkeys(k for k, v in ops if v is None and k not in known))
        for i in range(0, len(unread), _IN_FLIGHT):
            part = unread[i : i + _IN_FLIGHT]
            known.update(zip(part, await asyncio.gather(*map(self.read_state, part)), strict=True))
        exists: dict[bytes, bool] = {}  # within the batch, as its operations apply
        noop: set[int] = set()
        guards: dict[bytes, int] = {}
        for i, (k, v) in enumerate(ops):
            if v is not None:
                exists[k] = True
                continue
            now = exists.get(k)
            if now is None:  # the key's first write in the batch
                now = known[k][0] is not None
                if expect is None or k not in expect:
                    # A present key deleted by someone else meanwhile would be deleted
                    # twice (a change reported that did not happen) - guarded alike.
                    guards[k] = known[k][1]
            if not now:
                noop.add(i)
            exists[k] = False
        return noop, guards

    async def _publish_ops(
        self,
        ops: Sequence[Op],
        expect: dict[bytes, int] | None,
        internal: int,
        noop: Collection[int],
    ) -> int:
        """Publish ``ops`` (see :meth:`write`): the deletes at the indexes ``noop``
        carry ``Aurora-Unchanged``."""
        n = len(ops)
        pending = dict(expect) if expect else {}

        def headers(key: bytes, value: bytes | None) -> dict[str, str] | None:
            h: dict[str, str] | None = None
            if value is None:
                h = dict(_DEL_HDR)
            if pending:
                seq = pending.pop(key, None)
                if seq is not None:
                    h = h if h is not None else {}
                    h[_EXPECT] = str(seq)
            return h

        if n == 1:
            k, v = ops[0]
            if v is None:
                resp = await self._publish(encode_key(k), b"", headers(k, v))
            else:
                resp = await self._publish_one(k, v, headers(k, v))
            return self._written(resp, expect)
        if not self.atomic:
            raise NotSupportedError(
                f"the stream {self.stream} of {self.config.describe()} does not allow atomic "
                "batch publish (nats-server 2.12+ with allow_atomic); nothing was written. "
                "Upgrade the server, or open the bucket once without read_only so it is "
                "enabled",
                backend="nats",
            )
        self.check_values(ops, expect)
        nc = self._conn()
        bid = uuid.uuid4().hex
        pre = self.pre
        publish = nc.publish
        timeout = self.timeout
        committing = False
        # Only a commit holding appends adds internal records (their sequence counters);
        # its unknown outcome gets its own advice (an append repeated is stored twice).
        what = COMMITTING_APPENDS if internal else "committing a batch"
        try:
            for i, (k, v) in enumerate(ops, 1):
                if v is not None and not pending:
                    # The common case, kept lean: a put with no expected sequence.
                    h = {"Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(i)}
                    data = v
                else:
                    h = headers(k, v) or {}
                    h["Nats-Batch-Id"] = bid
                    h["Nats-Batch-Sequence"] = str(i)
                    if noop and i - 1 in noop:
                        h[UNCHANGED] = "1"
                    data = b"" if v is None else v
                if i < n:
                    if nc.pending_data_size + len(data) > FLUSH_EVERY:
                        # Bounded by progress: each FLUSH_EVERY bytes must reach the
                        # server within `timeout` (a PING answered after them), else
                        # NATSTimeoutError with the commit unsent. nats-py's own wait
                        # on a full buffer has no bound and swallows a cancellation:
                        # its buffer (PENDING_SIZE) is never filled (see _connection).
                        await _flushed(nc, timeout)
                    await publish(pre + encode_key(k), data, headers=h)
                else:
                    h["Nats-Batch-Commit"] = "1"
                    committing = True
                    _sending(appends=internal > 0)
                    msg = await nc.request(pre + encode_key(k), data, timeout=timeout, headers=h)
        except Exception as exc:
            if isinstance(exc, nats.errors.MaxPayloadError):
                # The client's own check: the server's INFO changed since.
                self.check_values(ops, expect)
            if not committing:
                self.fail(exc, "sending a batch (its commit was not sent: nothing was written)")
            self.fail(exc, what)
        resp = self._ack(msg, what)
        if getattr(resp, "err_code", None) in (_MSG_TOO_BIG, _BATCH_INCOMPLETE):
            # A message over the stream's max_msg_size (changed since it was read?):
            # the server dropped it (the batch is incomplete) or refused the commit.
            await self._refresh_limit()
            self.check_values(ops, expect)
        if getattr(resp, "err_code", None) == _BATCH_TOO_LARGE:
            raise self.too_large(n - internal, internal, resp) from resp
        return self._written(resp, expect)

    def _written(self, resp: Any, expect: dict[bytes, int] | None) -> int:
        if isinstance(resp, Exception):
            if expect and getattr(resp, "err_code", None) in _WRONG_LAST_SEQ:
                raise resp  # the conditional commit re-plans on fresh state
            self.fail(resp, "writing")
        return int(resp["seq"])

    @writes
    async def commit(
        self,
        ops: Sequence[Op],
        conditions: Sequence[Condition],
        appends: Sequence[Append],
        version: Callable[[bytes], bytes],
    ) -> list[int]:
        """A conditional commit: read the conditioned keys and counters, plan it
        (:func:`~aurora_storage.backend.plan_commit`), then publish one atomic batch in
        which every conditioned key's and counter's first write carries the subject
        sequence that was read. If anything changed meanwhile the server refuses the
        whole batch; the commit is then planned again on fresh state (a changed counter
        just gets the next numbers; a failed condition raises)."""
        self._writable()
        # Each sequence appended to adds its counter record to the batch: checked before
        # any read, and named apart in the error (the caller counts only their own).
        internal = len({a.counter for a in appends})
        size = len(ops) + sum(len(a.values) for a in appends)
        if size + internal > self.config.max_batch:
            raise self.too_large(size, internal)
        watched = list(dict.fromkeys([k for k, _ in conditions] + [a.counter for a in appends]))
        written = {k for k, _ in ops}
        for k, _ in conditions:
            if k not in written:
                raise NotSupportedError(
                    "a condition on a key the commit does not write cannot be checked "
                    "atomically by JetStream",
                    backend="nats",
                )
        while True:
            states = await asyncio.gather(*(self.read_state(k) for k in watched))
            state = dict(zip(watched, states, strict=True))
            # The slots the appends will take (the counters' next numbers): read together,
            # so a batch of n appends costs one round of reads, not n in turn.
            slots = [k for k in _next_slots(state, appends) if k not in state]
            for i in range(0, len(slots), _IN_FLIGHT):
                part = slots[i : i + _IN_FLIGHT]
                states = await asyncio.gather(*map(self.read_state, part))
                state.update(zip(part, states, strict=True))
            # A counter behind its records (an older import, a put) sends plan_commit
            # looking for the sequence's newest record: JetStream has no seek, so the
            # numbered range is listed once (the rare path; every append pays nothing).
            listed: dict[tuple[bytes, bytes], list[bytes]] = {}
            while True:
                # plan_commit also reads the slots its appends would take (an append
                # never replaces a record): a slot not read yet is fetched and the plan
                # made again. Every key read goes into `expect`, so a slot written
                # meanwhile makes the server refuse the batch, as a changed counter does
                # (a listed key is not: a record put past the listing meanwhile is not
                # seen, as one put past a free number after the counter is not).
                try:
                    out, firsts = plan_commit(
                        functools.partial(_known, state),
                        ops,
                        conditions,
                        appends,
                        version=version,
                        last=functools.partial(_listed_last, listed),
                        seek_free=False,
                    )
                    break
                except _Unread as miss:
                    state[miss.key] = await self.read_state(miss.key)
                except _Unlisted as miss:
                    lo, hi = miss.start, miss.stop
                    items = await self.listing(scan_filter(lo, hi), False, _NUMBERING)
                    listed[(lo, hi)] = sorted(k for k, _ in items if lo <= k < hi)
            expect = {k: seq for k, (_, seq) in state.items()}
            try:
                await self.write(out, expect, internal, state=state)
            except nats.js.errors.APIError as exc:
                if exc.err_code in _WRONG_LAST_SEQ:
                    continue
                self.fail(exc, "committing")
            return firsts
