"""The change feed of the NATS backend, on the bucket's JetStream stream itself.

Positions are the stream's sequence numbers: strictly increasing in commit order, shared
by every process and server, so a feed sees every writer's changes
(``multi_process_change_feed``). A watch reads only its tenant's subjects (optionally a
prefix's, see :func:`._subjects.scan_filter`): the server filters, with batched direct
gets (``{"seq", "batch", "next_by_subj"}``, nats-server 2.11+), and a waiting watch is
woken by a push consumer on the same subjects (headers only, new messages only) - no
polling. That consumer is replaced when the client reconnects or its heartbeats stop
(see :class:`_Waker`), and the waiters then read again.

What the stream keeps, and :class:`~aurora_storage.errors.PositionExpiredError`.
JetStream keeps the last ``history`` messages per subject (the bucket's
``max_msgs_per_subject``): a key changed more than ``history`` times since a watcher's
position has lost the oldest of those changes. The server does not say which message it
removed, so the feed checks what a loss leaves behind: a key that lost a change after
position ``p`` holds ``history`` messages, all after ``p``. Each read counts the
retained messages of its subjects after ``p`` (the batch answer says how many are
pending); fewer than ``history`` proves nothing was lost. Otherwise it counts the
messages per key - among those it read when it read all of them (a key that lost one
has all its kept messages there), else with the server's per-subject counts - and for
each key at the limit asks for its oldest kept message: if that is after ``p`` the read
raises. Only keys the feed delivers are judged: the subject filter of a watch's prefix
is coarser than the prefix (whole 12-byte chunks; a short prefix filters on the whole
tenant), and a key outside the watched range that lost changes lost nothing the
watcher would have seen - a hot key elsewhere in the tenant must not expire a prefix
watch. That is exact except
for one conservative case: a key changed exactly ``history`` times since ``p`` (nothing
lost) also raises. A bucket whose stream removes old messages by age or size
(``max_age``, or ``discard: old``, set by other tools) raises when its first retained
message is after ``p``. A bucket with ``history=1`` declares no change feed: there, every
change of a key removes the previous one, so a watcher that is behind could never tell.

Deletes are delete markers (``KV-Operation: DEL``/``PURGE``, or a server marker), read
as deletes. ``drop_tenant`` writes delete markers too (the stream is not purged), so
watchers see every record of the tenant deleted. A purge by another tool (of subjects
or of the stream) leaves no trace the server reports - no later message of the key, no
marker - so it is not detected: docs/backends/nats.md tells users to re-read with a
scan after one.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from nats.aio.msg import Msg
from nats.js import api

from aurora_storage.backend import ChangeFeed, ChangeRecord
from aurora_storage.errors import PositionExpiredError, RepositoryClosedError

from ._client import LAG_PAUSES, UNCHANGED
from ._connection import reads
from ._subjects import decode_key, scan_filter

if TYPE_CHECKING:
    from ._backend import NATSBackend
    from ._client import NATSCore

__all__ = ["NATSChangeFeed"]

_KV_OP = "KV-Operation"
_MARKER = "Nats-Marker-Reason"
#: The key a record outside every tenant gets (another application's subject, or the
#: store's own records in a whole-bucket feed): no watch range holds it, but its
#: position still counts as examined.
_OUTSIDE = b"\x00"


async def batch_get(core: NATSCore, seq: int, batch: int, subject: str) -> tuple[list[Msg], int]:
    """Up to ``batch`` stored messages with sequence >= ``seq`` on ``subject`` (a
    wildcard), in order, and how many more such messages the stream holds after them.
    One request (a batched direct get); the answer ends with an end-of-batch status."""
    req = {"seq": seq, "batch": batch, "next_by_subj": subject}
    msgs, eob = await core._direct_batch(req, "watching")
    return msgs, 0 if eob is None else int(eob.get("Nats-Num-Pending", 0))


def _record(core: NATSCore, msg: Msg) -> ChangeRecord:
    hdrs = msg.headers or {}
    seq = int(hdrs["Nats-Sequence"])
    try:
        key = decode_key(hdrs["Nats-Subject"][len(core.pre) :])
    except (KeyError, ValueError):
        return seq, _OUTSIDE, None
    if key[:1] == b"\x00" or UNCHANGED in hdrs:
        # (A delete of a key that was already absent: no change, see NATSCore.write.)
        return seq, _OUTSIDE, None
    if _KV_OP in hdrs or _MARKER in hdrs:
        return seq, key, None
    return seq, key, msg.data


#: The stored-key range a feed delivers (``[start, stop)``), or ``None``: every data key.
KeyRange = tuple[bytes, bytes] | None


def _delivered(core: NATSCore, subject: str, keys: KeyRange) -> bool:
    """Whether the feed delivers the changes of ``subject`` as changes of a key (a key of
    a tenant, inside ``keys``): only those keys' losses expire its positions."""
    try:
        key = decode_key(subject[len(core.pre) :])
    except ValueError:
        return False  # another application's subject: never delivered
    if key[:1] == b"\x00":
        return False  # the store's own records (sequence counters): positions only
    return keys is None or keys[0] <= key < keys[1]


@reads
async def read(
    core: NATSCore, subject: str, after: int, limit: int, keys: KeyRange = None
) -> list[ChangeRecord]:
    """The changes on ``subject`` after position ``after`` (at most ``limit``); a
    "stream not found" answer from a server starting or stopping is confirmed and the
    read made again, as every read of the bucket (:func:`~._connection.reads`).
    ``keys``: the range of stored keys the caller delivers (a watch's ``[start, stop)``,
    narrower than ``subject``); only their lost changes expire the position.

    Raises:
        PositionExpiredError: a change after ``after`` may no longer be retained.
    """
    msgs, pending = await batch_get(core, after + 1, limit, subject)
    if not msgs and not pending:
        # Nothing after the position on these subjects: either the watch is caught up,
        # or the position is beyond the stream's end - a bucket deleted and created
        # again numbers its changes from 1, so resuming from an old position would skip
        # every new change up to it without a word (as would a position from another
        # bucket).
        last = int((await core.stream_state()).state.last_seq)
        if after > last:
            # The answer may come from a server a moment behind the one whose read gave
            # the position (a replica applies a batch a moment after another does):
            # asked again before the position is judged foreign.
            last = await _last_reaching(core, after, last)
        if last > after:
            # Other subjects' changes (other tenants, outside the prefix) lie between:
            # the server filtered them out, and the position counts them as examined
            # (the feed's contract) - but only on the word of a source that holds every
            # message up to `last`. A direct get is answered by any replica (or mirror),
            # and one that has not applied the latest writes yet answers "nothing" for
            # what it lacks. The stream leader holds them all: ask it.
            mine = await core._leader_get({"seq": after + 1, "next_by_subj": subject}, "watching")
            if mine is None:
                # Still judged for loss first: a stream that drops by age or size can
                # have removed every change of ours after the position.
                await _check_retained(core, subject, after, [], 0, keys)
                return [(last, _OUTSIDE, None)]
            msgs, pending = await _caught_up_read(core, subject, after, limit, mine)
        elif after > last:
            raise PositionExpiredError(
                f"position {after} is beyond the last change of the bucket "
                f"{core.config.bucket!r} ({last}): the bucket was deleted and created "
                "again, or the position belongs to another bucket; re-read the state with "
                "a scan, then watch from last_position()",
                position=after,
                oldest=last,
                backend="nats",
            )
    # Checked after the read: a change removed before it leaves its traces (the key's
    # later messages) until then and after.
    await _check_retained(core, subject, after, msgs, pending, keys)
    return [_record(core, m) for m in msgs]


#: Seconds a position beyond the stream's last sequence is asked about again before it
#: is judged foreign (a replica behind catches up in milliseconds).
_LAG_WAIT = 1.0


async def _last_reaching(core: NATSCore, after: int, last: int) -> int:
    """The stream's last sequence, asked again (a few times, briefly) while it is
    before ``after``: a position a read just returned is behind a lagging answer only
    for a moment, while one from another or a re-created bucket stays beyond."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LAG_WAIT
    pauses = iter(LAG_PAUSES)
    while last < after and loop.time() < deadline:
        await asyncio.sleep(next(pauses, LAG_PAUSES[-1]))
        last = int((await core.stream_state()).state.last_seq)
    return last


async def _caught_up_read(
    core: NATSCore, subject: str, after: int, limit: int, mine: Msg
) -> tuple[list[Msg], int]:
    """The direct read of :func:`read` again, once its source lacked ``mine`` (the
    leader's first change after ``after``): a replica is normally a moment behind, so
    it is read again until it holds ``mine``. A source that stays behind leaves the
    leader's ``mine`` alone as the answer, with the count of the changes after it
    unknown (so the retention check counts them itself)."""
    first = int((mine.headers or {})["Nats-Sequence"])
    for pause in LAG_PAUSES:
        msgs, pending = await batch_get(core, after + 1, limit, subject)
        if msgs and int((msgs[0].headers or {})["Nats-Sequence"]) == first:
            return msgs, pending
        await asyncio.sleep(pause)
    return [mine], max(core.history, 1)


def _expired(core: NATSCore, after: int, oldest: int, why: str) -> PositionExpiredError:
    return PositionExpiredError(
        f"the changes after position {after} are no longer all retained by the bucket "
        f"{core.config.bucket!r} ({why}); re-read the state with a scan, then watch from "
        "last_position()",
        position=after,
        oldest=oldest,
        backend="nats",
    )


async def _check_retained(
    core: NATSCore, subject: str, after: int, msgs: list[Msg], pending: int, keys: KeyRange
) -> None:
    # Read the retention now rather than trust what the open saw: another tool (the nats
    # CLI) may have lowered the bucket's history or set max_age since, and a watch
    # judging by the old values would miss the dropped changes without a word.
    info = await core.stream_state()
    cfg = info.config
    core.history = int(cfg.max_msgs_per_subject or 1)
    core.head_expires = bool(cfg.max_age) or cfg.discard == api.DiscardPolicy.OLD
    if core.head_expires:
        first = int(info.state.first_seq)
        if first > after + 1:
            raise _expired(
                core,
                after,
                first - 1,
                f"its stream removes old messages by age or size; the oldest kept is {first}",
            )
    history = core.history
    if history <= 0 or len(msgs) + pending < history:
        return  # (history -1: every change of every key is kept)
    if pending == 0:
        # The read returned every message after the position: a key that lost one has
        # all its `history` kept messages among them.
        counts = Counter((m.headers or {}).get("Nats-Subject", "") for m in msgs)
    else:
        counts = Counter(await _subject_counts(core, subject))
    # Only the keys the feed delivers: a key outside the watched range (inside the
    # coarser subject filter) changing often loses nothing the watcher would see.
    full = [s for s, n in counts.items() if n >= history and _delivered(core, s, keys)]
    firsts = await asyncio.gather(*(core._direct(1, s) for s in full))
    worst = 0
    for msg in firsts:
        if msg is None:
            continue
        seq = int((msg.headers or {}).get("Nats-Sequence", 0))
        if seq > after:
            worst = max(worst, seq)
    if worst:
        # From the newest of those oldest retained changes on, every such key holds
        # fewer than `history` changes after the position: the feed resumes there.
        raise _expired(
            core,
            after,
            worst,
            f"a key changed at least history={history} times since then, and the stream "
            f"keeps the last {history} changes per key",
        )


async def _subject_counts(core: NATSCore, subject: str) -> dict[str, int]:
    """Messages per subject under ``subject`` (stream info, paged by the server)."""
    nc = core._conn()
    out: dict[str, int] = {}
    offset = 0
    while True:
        req = orjson.dumps({"subjects_filter": subject, "offset": offset})
        try:
            msg = await nc.request(f"$JS.API.STREAM.INFO.{core.stream}", req, timeout=core.timeout)
        except Exception as exc:
            core.fail(exc, "watching")
        resp = core._ack(msg, "watching")
        if isinstance(resp, Exception):
            core.fail(resp, "watching")
        page = (resp.get("state") or {}).get("subjects") or {}
        out.update(page)
        offset += len(page)
        if not page or offset >= int(resp.get("total", 0)):
            return out


#: Seconds between the server's idle heartbeats on a wake-up consumer: a consumer that
#: misses :data:`_MISSED` of them in a row is replaced (see :class:`_Waker`).
HEARTBEAT = 2.0
_MISSED = 3


class _Waker:
    """The consumer that wakes a feed's waiters (held apart from the feed so a
    finaliser can stop it without keeping the feed alive).

    A plain push consumer (new messages only, headers only, no acks) delivering to an
    inbox of the connection, with idle heartbeats. A consumer does not outlive every
    trouble: a server restarted (or a cluster node lost) forgets it, and the client's
    reconnect does not bring it back. So a watchdog task replaces it - at once when
    the client reconnects (the connection's reconnect callback), and when
    :data:`_MISSED` heartbeats in a row did not come (a consumer lost without a
    reconnect) - then wakes every waiter so it reads again: what was committed while
    no consumer existed is found by that read, what comes later by the new consumer.
    """

    def __init__(self) -> None:
        self.lock = threading.Condition(threading.Lock())
        self.seen = 0
        self.wakes = 0
        # Messages the consumer delivered: a waiter also returns on one numbered at or
        # below its position (a bucket created again), so its next read can say so.
        # Bumped too when the consumer was replaced (a waiter then reads again).
        self.arrivals = 0
        self.closed = False
        self.subscribers: dict[int, Callable[[], None]] = {}
        self.next_id = 0
        self.sub: Any = None
        self.consumer: str | None = None
        self.heard = 0.0
        self.core: NATSCore | None = None
        self.subject = ""
        self.kick: asyncio.Event | None = None
        self.watchdog: asyncio.Task[None] | None = None
        self.starting: asyncio.Future[None] | None = None

    def notify(self, seq: int = 0) -> None:
        with self.lock:
            if seq > self.seen:
                self.seen = seq
            self.arrivals += 1
            self.lock.notify_all()
            subscribers = list(self.subscribers.values())
        for cb in subscribers:
            cb()

    async def _on_msg(self, msg: Msg) -> None:
        self.heard = asyncio.get_running_loop().time()
        hdrs = msg.headers
        if hdrs and hdrs.get("Status"):
            return  # an idle heartbeat
        try:
            seq = msg.metadata.sequence.stream
        except Exception:
            return  # not a consumer's delivery (nothing else publishes to this inbox)
        self.notify(seq)

    async def _create(self) -> None:
        """Subscribe a new inbox and make the consumer delivering to it."""
        core = self.core
        assert core is not None
        nc = core._conn()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=self._on_msg)
        cfg = api.ConsumerConfig(
            deliver_subject=inbox,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=self.subject,
            headers_only=True,
            idle_heartbeat=HEARTBEAT,
            # A backstop: the consumer is deleted when the watch stops; one left behind
            # (a connection lost for good) is removed by the server once nobody listens.
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
        )
        try:
            info = await core.js.add_consumer(core.stream, config=cfg, timeout=core.timeout)
        except BaseException:
            await _quietly(sub.unsubscribe())
            raise
        self.sub, self.consumer = sub, info.name
        self.heard = asyncio.get_running_loop().time()

    async def _drop(self) -> None:
        """Unsubscribe and delete the consumer (best effort: it may be gone already)."""
        sub, self.sub = self.sub, None
        name, self.consumer = self.consumer, None
        core = self.core
        if sub is not None:
            await _quietly(sub.unsubscribe())
        if name is not None and core is not None and core.nc is not None:
            await _quietly(core.js.delete_consumer(core.stream, name))

    async def start(self, core: NATSCore, subject: str) -> None:
        if self.watchdog is not None or self.closed:
            return
        if self.starting is not None:
            await self.starting
            return
        self.starting = asyncio.get_running_loop().create_future()
        try:
            self.core, self.subject = core, subject
            await _made(core, self)
            if self.watchdog is None:
                self.kick = asyncio.Event()
                core.reconnect_listeners.add(self)
                self.watchdog = asyncio.get_running_loop().create_task(self._watchdog())
        finally:
            self.starting.set_result(None)
            self.starting = None

    def reconnected(self) -> None:
        """The connection was re-established (on the loop): replace the consumer now."""
        if self.kick is not None:
            self.kick.set()

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        kick, core = self.kick, self.core
        assert kick is not None
        assert core is not None
        while True:
            try:
                await asyncio.wait_for(kick.wait(), HEARTBEAT)
            except TimeoutError:
                pass
            nc = core.nc
            if self.closed or nc is None or nc.is_closed:
                return
            if not nc.is_connected:
                continue  # the reconnect callback kicks once the client is back
            silent = loop.time() - self.heard > _MISSED * HEARTBEAT
            if not kick.is_set() and not silent:
                continue
            kick.clear()
            await self._drop()
            try:
                await self._create()
            except Exception:
                # JetStream not ready yet (a restarting server, a cluster without a
                # leader): try again at the next beat.
                self.heard = loop.time() - _MISSED * HEARTBEAT
                kick.set()
                await asyncio.sleep(HEARTBEAT / 4)
                continue
            # Changes committed while no consumer existed were not delivered: the
            # waiters read again.
            self.notify()

    async def stop(self, core: NATSCore) -> None:
        dog, self.watchdog = self.watchdog, None
        if dog is not None:
            core.reconnect_listeners.discard(self)
            if dog is not asyncio.current_task():
                dog.cancel()
                await asyncio.gather(dog, return_exceptions=True)
        await self._drop()


@reads
async def _made(core: NATSCore, waker: _Waker) -> None:
    """``waker``'s consumer made on ``core``'s stream; a "stream not found" answer is
    confirmed before it is reported as a deleted bucket (:func:`~._connection.reads`)."""
    try:
        await waker._create()
    except Exception as exc:
        core.fail(exc, "watching")


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:
        pass  # the connection is closing, or the consumer is gone already


def _stop_later(backend_ref: weakref.ref[NATSBackend], waker: _Waker) -> None:
    backend = backend_ref()
    if backend is None or backend._closed or (waker.sub is None and waker.watchdog is None):
        return
    try:
        fut = backend._lt.submit(waker.stop(backend._core))
    except Exception:
        return
    # close() waits for it, so the loop never stops with the stop half done.
    backend._stopping.add(fut)
    fut.add_done_callback(backend._stopping.discard)


_TAG_SHIFT = 48
_SEQ_MASK = (1 << _TAG_SHIFT) - 1


def _incarnation_tag(info: Any) -> int:
    """A 14-bit tag (1..16383) of the stream's creation time: positions stay below
    2**62, inside the signed 64-bit integers every codec stores."""
    created = str(getattr(info, "created", "") or "")
    return zlib.crc32(created.encode()) % 16383 + 1


class NATSChangeFeed(ChangeFeed):
    """The change feed of a NATS bucket, or of one watch's subjects (:meth:`scoped`).

    Thread-safe; the engine calls run on the backend's loop thread.
    """

    def __init__(self, backend: NATSBackend, filt: str = ">", keys: KeyRange = None) -> None:
        self._backend = backend
        self._core = backend._core
        self._subject = self._core.pre + filt
        self._keys = keys
        self._waker = _Waker()
        weakref.finalize(self, _stop_later, weakref.ref(backend), self._waker)
        backend._feeds.add(self)

    def scoped(self, start: bytes, stop: bytes) -> NATSChangeFeed:
        """A feed reading only the subjects of ``[start, stop)`` (server-side filter),
        whose positions expire only by lost changes of keys in ``[start, stop)``."""
        return NATSChangeFeed(self._backend, scan_filter(start, stop), (start, stop))

    # Positions are ``(tag << 48) | seq``: the stream sequence with, above it, a tag of
    # the stream's incarnation (its creation time). A bucket deleted and created again
    # numbers its changes from 1 again, so a saved position of the old bucket - or of
    # another bucket - would otherwise be taken as a place in this one and skip every
    # change up to it without a word; with the tag it raises PositionExpiredError.

    def _tag(self, refresh: bool = False) -> int:
        tag = self._backend._position_tag
        if tag is None or refresh:
            info = self._backend._run(self._core.stream_state())
            tag = _incarnation_tag(info)
            self._backend._position_tag = tag
        return tag

    def _seq(self, position: int) -> int:
        """The stream sequence of a caller's ``position`` (0: the start)."""
        if position <= 0:
            return position
        tag = self._tag()
        if position >> _TAG_SHIFT != tag:
            tag = self._tag(refresh=True)  # the bucket may have been created again
        if position >> _TAG_SHIFT != tag:
            raise PositionExpiredError(
                f"position {position} does not belong to this bucket as it is now: it "
                "comes from another bucket, or from before the bucket was deleted and "
                "created again (its changes are numbered anew); re-read the state with "
                "a scan, then watch from last_position()",
                position=position,
                oldest=self.last_position(),
                backend="nats",
            )
        return position & _SEQ_MASK

    def _tagged(self, records: list[ChangeRecord]) -> list[ChangeRecord]:
        base = self._tag() << _TAG_SHIFT
        return [(base | pos, key, value) for pos, key, value in records]

    def last_position(self) -> int:
        """The stream's last sequence (every acknowledged write is at or before it),
        tagged with the stream's incarnation."""
        info = self._backend._run(self._core.stream_state())
        tag = _incarnation_tag(info)
        self._backend._position_tag = tag
        return (tag << _TAG_SHIFT) | int(info.state.last_seq)

    def _expired(self, exc: PositionExpiredError, after: int) -> PositionExpiredError:
        """``exc`` (raised with stream sequences) in the caller's positions."""
        exc.message = exc.message.replace(f"position {exc.position} ", f"position {after} ", 1)
        exc.position = after
        exc.oldest = (self._tag() << _TAG_SHIFT) | exc.oldest
        return exc

    def read(self, after: int, limit: int) -> list[ChangeRecord]:
        """See :meth:`ChangeFeed.read` (one batched direct get, see the module)."""
        seq = self._seq(after)
        try:
            got = self._backend._run(read(self._core, self._subject, seq, limit, self._keys))
        except PositionExpiredError as exc:
            raise self._expired(exc, after) from None
        return self._tagged(got)

    async def read_async(self, after: int, limit: int) -> list[ChangeRecord]:
        """:meth:`read` on the caller's loop, through the native-async client of that
        loop (no thread hop, the loop is not held)."""
        seq = self._seq(after)
        core = await self._backend.native_async()._core()
        try:
            got = await read(core, self._subject, seq, limit, self._keys)
        except PositionExpiredError as exc:
            raise self._expired(exc, after) from None
        return self._tagged(got)

    def _start(self) -> None:
        if self._waker.watchdog is None:
            self._backend._run(self._waker.start(self._core, self._subject))

    def _stored_after(self, after: int) -> bool:
        # Asked of the leader: a replica not yet up to date would say "nothing", and the
        # consumer (new messages only) would not tell of a change stored before it.
        req = {"seq": after + 1, "next_by_subj": self._subject}
        return self._backend._run(self._core._leader_get(req, "watching")) is not None

    def wait(self, after: int, timeout: float | None) -> bool:
        """See :meth:`ChangeFeed.wait`: the consumer (started first, so nothing stored
        later is missed) wakes it; a change stored before it started is found by one
        read from the stream leader."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        after = self._seq(after)
        w = self._waker
        with w.lock:
            wakes, arrivals = w.wakes, w.arrivals
        self._start()
        if w.seen > after or self._stored_after(after):
            return True
        with w.lock:
            while w.seen <= after and w.wakes == wakes and w.arrivals == arrivals and not w.closed:
                if self._backend._closed:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                # Bounded so a repository closed meanwhile is noticed.
                w.lock.wait(0.5 if left is None else min(left, 0.5))
            return w.seen > after

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """See :meth:`ChangeFeed.subscribe` (starts the consumer)."""
        w = self._waker
        with w.lock:
            token = w.next_id
            w.next_id += 1
            w.subscribers[token] = callback
        self._start()

        def unsubscribe() -> None:
            with w.lock:
                w.subscribers.pop(token, None)

        return unsubscribe

    def wake(self) -> None:
        """See :meth:`ChangeFeed.wake`. A scoped feed belongs to one watch, which wakes
        it only when it closes: its consumer is stopped too."""
        w = self._waker
        with w.lock:
            w.wakes += 1
            w.lock.notify_all()
            subscribers = list(w.subscribers.values())
        for cb in subscribers:
            cb()
        if w.watchdog is not None and not self._backend._closed:
            try:
                self._backend._run(w.stop(self._core))
            except RepositoryClosedError:
                pass

    async def close(self) -> None:
        """The repository is closing (on the loop): stop the consumer, wake everyone."""
        w = self._waker
        await w.stop(self._core)
        with w.lock:
            w.closed = True
            w.lock.notify_all()
            subscribers = list(w.subscribers.values())
        for cb in subscribers:
            cb()
