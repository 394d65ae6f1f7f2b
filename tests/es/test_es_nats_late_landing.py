"""A commit in doubt that lands late, after the read-back said it had not: a runner's
call must not fail on its own commit.

On a runner's thread, a commit whose answer was lost is settled by reading the tracking
record back: at this call's notification id it landed; below it the call runs again.
But a read-back cannot prove absence while the first commit may still be on its way (a
request still queued in the server, a server finishing it on a graceful shutdown): it
can land after the read-back, before the re-run. The re-run is conditional (events
create-only, the tracking record compared and set), so it cannot apply twice; it fails
instead - and a process application's ``insert_events(tracking=)`` raised that failure
(``IntegrityError: ... key(s) inserted by the batch already exist``), stopping an
``EventSourcedProjectionRunner`` for good with its projection stale (found by a chaos
run killing nats-server at random).

Here the late landing is made deterministic with a real nats-server and a loopback
relay between it and the runner's repository: the relay captures the bytes of the first
commit (the server never sees them on that connection) and drops the link; the client
reconnects and reads the tracking record back ("not landed"); the relay holds the
re-run's commit while the test delivers the captured commit - the very bytes the client
sent - to the server on a connection of its own (it lands), then lets the re-run go on.
The call must return as the landed path does, the records hold the event once, and the
thread goes on.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent, Tracking

import aurora_storage
from aurora_storage.eventsourcing import (
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraProcessRecorder,
    AuroraTrackingRecorder,
    ViewState,
)

sys.path.insert(0, str(Path(__file__).parent.parent / "nats"))
from nats_servers import Server

#: The repositories' timeout (seconds).
TIMEOUT = 1.0
#: Generous bounds for things that do happen (a failing test, not a timed assertion).
LONG = 60.0


class LateRelay:
    """A loopback relay to the server at ``127.0.0.1:target`` whose arms fire in
    order, each once, on the first client chunk holding its marker:

    * ``"capture"``: that chunk and every later client byte of the connection are kept
      in :attr:`captured`, not passed on (``captured_event`` is set); :meth:`drop` then
      closes the connections, and the client's reconnections are relayed afresh;
    * ``"stall"``: that chunk waits (``stalled`` is set) until :meth:`release`.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.captured = bytearray()
        self.captured_event = threading.Event()
        self.stalled = threading.Event()
        self._released = threading.Event()
        self._arms: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, mode: str, marker: bytes) -> None:
        with self._lock:
            self._arms.append((mode, marker))

    def drop(self) -> None:
        """Close every connection relayed so far (the client reconnects)."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._listener.close()
        self.drop()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._socks += [client, server]
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        capturing = False
        try:
            while data := client.recv(65536):
                with self._lock:
                    if capturing:
                        self.captured += data
                        continue
                    # The marker is looked for in this chunk only: bytes passed on
                    # before an arm must not fire it (a client writes each command
                    # whole, and these are small).
                    mode = None
                    if self._arms and self._arms[0][1] in data:
                        mode, _ = self._arms.pop(0)
                    if mode == "capture":
                        capturing = True
                        self.captured += data
                        self.captured_event.set()
                        continue
                if mode == "stall":
                    self.stalled.set()
                    self._released.wait(LONG)
                server.sendall(data)
        except OSError:
            pass

    def _down(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass


def _publications(raw: bytes, last: bytes) -> bytes:
    """The PUB/HPUB commands of ``raw`` (a client's bytes, from a command's start) up
    to and including the first whose message holds ``last``: the commit, without what
    the client sent after it (its read-back, pings)."""
    out = bytearray()
    i = 0
    while i < len(raw):
        start, end = i, raw.index(b"\r\n", i)
        verb, *args = raw[start:end].split()
        i = end + 2
        if verb.upper() not in (b"PUB", b"HPUB"):
            continue
        size = int(args[-1])
        body = raw[i : i + size]
        out += raw[start : i + size + 2]
        i += size + 2
        if last in body:
            return bytes(out)
    raise AssertionError(f"no publication holding {last!r} in the captured bytes {raw[:600]!r}")


def _deliver(port: int, commands: bytes) -> None:
    """Send ``commands`` to the server on a connection of their own, as a client that
    sent them would (CONNECT with headers); returns once the server has read them."""
    with socket.create_connection(("127.0.0.1", port), timeout=LONG) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"INFO")
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
        s.sendall(commands + b"PING\r\n")
        while (line := f.readline()) != b"PONG\r\n":
            assert line, "the server closed the connection"
            assert not line.startswith(b"-ERR"), line


def _url(address: str, bucket: str) -> str:
    return f"nats://{address}/{bucket}?codec=msgpack&timeout={TIMEOUT}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, "late-landing")
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture
def relay(server: Server) -> Iterator[LateRelay]:
    r = LateRelay(server.port)
    try:
        yield r
    finally:
        r.close()


def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + LONG
    while not check():
        assert time.monotonic() < deadline, "the delivered commit never landed"
        time.sleep(0.05)


#: Each call's marker: the first message of its commit (a batch's first message, a
#: compare-and-set's condition), and what the commit's last message holds.
_MARKERS = {
    "insert_events": (b"Nats-Batch-Id", b"Nats-Batch-Commit"),
    "track": (b"Nats-Batch-Id", b"Nats-Batch-Commit"),
    "insert_tracking": (
        b"Nats-Expected-Last-Subject-Sequence",
        b"Nats-Expected-Last-Subject-Sequence",
    ),
}


@pytest.mark.parametrize("call", ["insert_events", "track", "insert_tracking"])
def test_a_commit_that_lands_after_its_read_back_is_not_a_failure(
    server: Server, relay: LateRelay, call: str
) -> None:
    bucket = "late" + uuid.uuid4().hex[:10]
    with (
        aurora_storage.open(_url(server.address, bucket)) as up_repo,
        aurora_storage.open(_url(server.address, bucket)) as direct_repo,
        aurora_storage.open(_url(f"127.0.0.1:{relay.port}", bucket)) as repo,
    ):
        up = AuroraApplicationRecorder(AuroraDatastore(up_repo, "Up"))
        proc = AuroraProcessRecorder(AuroraDatastore(repo, "Proc"))
        view = AuroraTrackingRecorder(AuroraDatastore(repo, "View"))
        # The same records, read on a connection of their own (not through the relay).
        proc_direct = AuroraProcessRecorder(AuroraDatastore(direct_repo, "Proc"))
        view_direct = AuroraTrackingRecorder(AuroraDatastore(direct_repo, "View"))
        tracker = proc_direct if call == "insert_events" else view_direct
        up.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"1")])
        up.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"2")])

        def two_events() -> list[StoredEvent]:
            return [StoredEvent(uuid.uuid4(), v, "p", b"") for v in (1, 2)]

        def add(state: ViewState) -> None:
            state.put("total", state.get("total", 0) + 1)

        def commit(nid: int) -> Any:
            tracking = Tracking("Up", nid)
            if call == "insert_events":
                return proc.insert_events(two_events(), tracking=tracking)
            if call == "track":
                return view.track(tracking, add)
            return view.insert_tracking(tracking)

        got: dict[int, Any] = {1: commit(1)}

        def process() -> None:
            # A thread iterating a subscription is a runner's thread: it waits for the
            # store and settles a commit in doubt (see the recorders' docstring).
            with up.subscribe(gt=1) as sub:
                for n in sub:
                    try:
                        got[n.id] = commit(n.id)
                    except BaseException as exc:
                        got[n.id] = exc
                    return

        first, last = _MARKERS[call]
        relay.arm("capture", first)  # the first commit: never reaches the server
        relay.arm("stall", first)  # the re-run's commit, after the read-back
        thread = threading.Thread(target=process)
        thread.start()
        assert relay.captured_event.wait(LONG)
        relay.drop()  # the answer is lost; the client reconnects and reads back
        assert relay.stalled.wait(LONG)  # read back "not landed": the re-run commits
        assert tracker.max_tracking_id("Up") == 1
        # The first commit lands now, late: its own bytes, on a connection of its own.
        _deliver(server.port, _publications(bytes(relay.captured), last))
        _until(lambda: tracker.max_tracking_id("Up") == 2)
        relay.release()  # the re-run meets the commit that landed
        thread.join(LONG)
        assert not thread.is_alive()

        if call == "insert_events":
            assert got == {1: [1, 2], 2: [3, 4]}
            assert proc_direct.max_notification_id() == 4
            notes = proc_direct.select_notifications(start=1, limit=10)
            assert [n.id for n in notes] == [1, 2, 3, 4]
        else:
            assert got == {1: None, 2: None}
        if call == "track":
            assert view_direct.get("total") == 2  # the update applied once per event
        assert tracker.max_tracking_id("Up") == 2
        # The recorder goes on: the next notification is processed as usual.
        up.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"3")])
        assert commit(3) == ([5, 6] if call == "insert_events" else None)
        assert tracker.max_tracking_id("Up") == 3
