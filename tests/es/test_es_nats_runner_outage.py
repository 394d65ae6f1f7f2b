"""A runner on ``nats://`` outlives its server's outage while it is processing an event,
not only while it waits for one: a real nats-server is stopped (SIGKILL, SIGTERM) while
a ``ProjectionRunner``'s projection, or a ``MultiThreadedRunner``'s process application,
is in the middle of an event - before its tracking read, between its view reads, before
its commit, or after a commit the server stored but whose answer never came back (a
loopback relay holds the answer, then drops the link). Afterwards the view (or the
process application's own events) holds every event exactly once, and the runner is
still running.

Before, only the subscription waited: the projection's own reads and its commit raised
``OperationalError`` into the runner's thread, which stopped for good and left the view
stale without a word.

A call made outside a runner's thread (the user's own) does not wait: it raises after
the repository's ``timeout``, and a commit whose outcome is unknown says how to tell
(``has_tracking_id``), or returns if a re-read of the tracking record shows it landed.

Each outage lasts several ``timeout``s; waits for things that do happen are bounded by
``LONG`` (a failing test, not a timed assertion).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

import pytest
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from eventsourcing.persistence import OperationalError, StoredEvent, Tracking
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.system import MultiThreadedRunner, ProcessApplication, System

import aurora_storage
from aurora_storage.eventsourcing import (
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraProcessRecorder,
    AuroraTrackingRecorder,
    ViewState,
)

sys.path.insert(0, str(Path(__file__).parent.parent / "nats"))
from nats_relay import Relay
from nats_servers import Server

#: The repositories' timeout (seconds): each outage lasts several of them.
TIMEOUT = 1.0
#: Generous bounds for things that do happen (a failing test, not a timed assertion).
LONG = 60.0

_T = TypeVar("_T")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, "runner-outage")
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture
def relay(server: Server) -> Iterator[Relay]:
    r = Relay(server.port)
    try:
        yield r
    finally:
        r.release()
        r.close()


def _url(address: str, bucket: str) -> str:
    return f"nats://{address}/{bucket}?codec=msgpack&timeout={TIMEOUT}"


def _env(server: Server, **urls: str) -> dict[str, str]:
    """The environment of a run on a fresh bucket; ``urls`` adds per-application URLs
    (``COUNTONCE_AURORA_URL``: the view's, through a relay)."""
    env = {
        "PERSISTENCE_MODULE": "aurora_storage.eventsourcing",
        "AURORA_URL": _url(server.address, "rb" + uuid.uuid4().hex[:12]),
    }
    env.update(urls)
    return env


def _when_back(call: Callable[[], _T]) -> _T:
    """``call()``, repeated while the store is still away (the server restarting and the
    client reconnecting), for at most ``LONG`` seconds."""
    deadline = time.monotonic() + LONG
    while True:
        try:
            return call()
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Pause:
    """Holds the runner's thread at one point of processing one notification until the
    test has stopped the server (each point fires once)."""

    def __init__(self) -> None:
        self.point: str | None = None
        self.nid = 0
        self.inside = threading.Event()
        self.go = threading.Event()

    def arm(self, point: str, nid: int) -> None:
        self.point, self.nid = point, nid
        self.inside.clear()
        self.go.clear()

    def at(self, point: str, nid: int) -> None:
        if self.point == point and self.nid == nid:
            self.point = None
            self.inside.set()
            self.go.wait(LONG)


PAUSE = Pause()
#: How many times the projection's update ran for each notification id (a re-run after
#: a commit that did not land runs it again; one that landed must not).
RUNS: dict[int, int] = {}


@pytest.fixture(autouse=True)
def _fresh_hooks() -> Iterator[None]:
    PAUSE.arm("", -1)
    RUNS.clear()
    yield
    PAUSE.go.set()  # never leave a runner's thread held


class Tally(Aggregate):
    class Counted(Aggregate.Event):
        pass

    @event(Counted)
    def count(self) -> None:
        pass


class Tallies(Application[UUID]):
    def new(self) -> UUID:
        tally = Tally()
        self.save(tally)
        return tally.id

    def count(self, tally_id: UUID) -> int:
        tally: Tally = self.repository.get(tally_id)
        tally.count()
        recordings = self.save(tally)
        return recordings[-1].notification.id


class Seen(AuroraTrackingRecorder):
    pass


class CountOnce(Projection[Seen]):
    """Counts each ``Counted`` event under its notification id (``("seen", id)``) and
    in a total, by read-modify-write; other events only move the tracking record."""

    @singledispatchmethod
    def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        PAUSE.at("track", tracking.notification_id)
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, domain_event: Tally.Counted, tracking: Tracking) -> None:
        nid = tracking.notification_id
        PAUSE.at("track", nid)

        def add(state: ViewState) -> None:
            RUNS[nid] = RUNS.get(nid, 0) + 1
            PAUSE.at("read", nid)
            seen = state.get(("seen", nid), 0)
            total = state.get("total", 0)
            PAUSE.at("commit", nid)
            state.put(("seen", nid), seen + 1)
            state.put("total", total + 1)

        self.view.track(tracking, add)


def _counted(app: Application[Any]) -> list[int]:
    """The notification ids of the application's ``Counted`` events."""
    notes = app.recorder.select_notifications(start=1, limit=100_000)
    return [n.id for n in notes if n.topic.endswith("Counted")]


def _check_view(runner: ProjectionRunner[Any, Any]) -> None:
    """The runner is running, has caught up, and its view holds every ``Counted``
    event exactly once."""
    app = runner.app
    runner.wait(_when_back(app.recorder.max_notification_id), timeout=LONG)
    assert not runner.is_interrupted.is_set()
    counted = _counted(app)
    view = runner.view
    assert {nid: view.get(("seen", nid)) for nid in counted} == dict.fromkeys(counted, 1)
    assert view.get("total") == len(counted)


def _stop(server: Server, how: str) -> None:
    if how == "SIGKILL":
        server.kill()
    else:
        server.stop()  # SIGTERM: a graceful shutdown


@pytest.mark.parametrize(
    ("point", "how"),
    [
        ("track", "SIGKILL"),  # before track() reads the tracking record
        ("read", "SIGKILL"),  # between the update's view reads
        ("commit", "SIGKILL"),  # after the reads, before the commit
        ("commit", "SIGTERM"),
    ],
)
def test_a_projection_runner_outlives_an_outage_in_the_middle_of_an_event(
    server: Server, point: str, how: str
) -> None:
    with ProjectionRunner(
        application_class=Tallies, projection_class=CountOnce, view_class=Seen, env=_env(server)
    ) as runner:
        app = runner.app
        tally = app.new()
        for _ in range(3):
            app.count(tally)
        runner.wait(app.recorder.max_notification_id(), timeout=LONG)
        PAUSE.arm(point, (app.recorder.max_notification_id() or 0) + 1)
        nid = app.count(tally)
        assert PAUSE.inside.wait(LONG)
        _stop(server, how)
        PAUSE.go.set()  # the projection goes on, into a store that is away
        time.sleep(3 * TIMEOUT)
        server.start()
        for _ in range(3):
            _when_back(lambda: app.count(tally))
        _check_view(runner)
        if point == "commit":
            # The commit did not land: the update ran again, on a fresh read.
            assert RUNS[nid] >= 2
    # Leaving the block raised nothing: the runner never stopped on an error.


@pytest.mark.parametrize("call", ["track", "insert_tracking"])
def test_a_commit_stored_whose_answer_was_lost_is_not_applied_again(
    server: Server, relay: Relay, call: str
) -> None:
    # The view connects through the relay, the application directly. The relay holds
    # the server's answer to the view's commit once the server has sent it (the commit
    # is stored), then the server is killed and the relay cut (refusing connections as
    # long as the server is away): the commit's outcome is unknown to the runner.
    # Applied again blindly, the count would be 2 (or the tracking record's
    # compare-and-set would fail with IntegrityError: "processed already"); the
    # tracking record says it landed.
    env = _env(server, COUNTONCE_AURORA_URL=_url(f"127.0.0.1:{relay.port}", "rbview"))
    marker = b"Nats-Batch-Commit" if call == "track" else b"Nats-Expected-Last-Subject-Sequence"
    with ProjectionRunner(
        application_class=Tallies, projection_class=CountOnce, view_class=Seen, env=env
    ) as runner:
        app = runner.app
        tally = app.new()
        app.count(tally)
        runner.wait(app.recorder.max_notification_id(), timeout=LONG)
        relay.hold_after(marker, answer=b'"seq"')
        if call == "track":
            nid = app.count(tally)
        else:
            app.new()  # a Created event: insert_tracking
            nid = app.recorder.max_notification_id()
        assert relay.answered.wait(LONG)  # stored by the server, the answer held
        server.kill()
        relay.cut()
        time.sleep(3 * TIMEOUT)
        server.start()
        relay.reopen()
        _when_back(lambda: app.count(tally))
        _check_view(runner)
        if call == "track":
            assert RUNS[nid] == 1  # it landed: not run again


def test_a_direct_call_does_not_wait_for_a_store_that_is_away(server: Server) -> None:
    # Outside a runner's thread nothing waits: the call raises after the timeout, as
    # before, and nothing was written.
    with aurora_storage.open(_url(server.address, "rbdirect")) as repo:
        view = Seen(AuroraDatastore(repo, "Direct"))
        view.track(Tracking("Up", 1), lambda s: s.put("k", 1))
        server.kill()
        with pytest.raises(OperationalError, match="could not"):
            view.track(Tracking("Up", 2), lambda s: s.put("k", s.get("k", 0) + 1))
        with pytest.raises(OperationalError):
            view.insert_tracking(Tracking("Up", 2))
        server.start()
        assert _when_back(lambda: view.max_tracking_id("Up")) == 1
        assert view.get("k") == 1


def test_a_direct_commit_in_doubt_says_how_to_tell(server: Server, relay: Relay) -> None:
    # The commit was stored, its answer lost, and the store stays away: the call cannot
    # tell, and says how to (the tracking record decides).
    with aurora_storage.open(_url(f"127.0.0.1:{relay.port}", "rbdoubt")) as repo:
        view = Seen(AuroraDatastore(repo, "Direct"))
        view.track(Tracking("Up", 1), lambda s: s.put("k", 1))
        relay.hold_after(b"Nats-Batch-Commit", answer=b'"seq"')
        got: list[BaseException] = []

        def track() -> None:
            try:
                view.track(Tracking("Up", 2), lambda s: s.put("k", s.get("k", 0) + 1))
            except BaseException as exc:
                got.append(exc)

        thread = threading.Thread(target=track)
        thread.start()
        assert relay.answered.wait(LONG)
        server.kill()
        relay.cut()
        thread.join(LONG)
        assert len(got) == 1, got
        assert isinstance(got[0], OperationalError), got
        assert "has_tracking_id('Up', 2)" in str(got[0])
        server.start()
        relay.reopen()
        assert _when_back(lambda: view.has_tracking_id("Up", 2))
        assert view.get("k") == 2  # it landed, once


def test_a_direct_commit_in_doubt_returns_once_the_tracking_record_shows_it(
    server: Server, relay: Relay
) -> None:
    # The link drops after the server stored the commit, and the server stays up: the
    # call reads the tracking record back (the client reconnects), sees its own
    # notification id there, and returns instead of raising "may or may not".
    with aurora_storage.open(_url(f"127.0.0.1:{relay.port}", "rbback")) as repo:
        view = Seen(AuroraDatastore(repo, "Direct"))
        view.track(Tracking("Up", 1), lambda s: s.put("k", 1))
        relay.hold_after(b"Nats-Batch-Commit", answer=b'"seq"')
        got: list[BaseException] = []

        def track() -> None:
            try:
                view.track(Tracking("Up", 2), lambda s: s.put("k", s.get("k", 0) + 1))
            except BaseException as exc:
                got.append(exc)

        thread = threading.Thread(target=track)
        thread.start()
        assert relay.answered.wait(LONG)
        relay.drop()
        thread.join(LONG)
        assert got == []
        assert view.max_tracking_id("Up") == 2
        assert view.get("k") == 2


def test_a_process_commit_found_landed_returns_its_notification_ids(
    server: Server, relay: Relay
) -> None:
    # A thread iterating a subscription is a runner's thread: a process recorder's
    # insert_events(tracking=) made there waits through the outage, finds its batch
    # landed (the answer was lost), and returns the ids its notifications were given,
    # read back from the sequence - not None, not a second copy.
    with (
        aurora_storage.open(_url(server.address, "rbup")) as up_repo,
        aurora_storage.open(_url(f"127.0.0.1:{relay.port}", "rbproc")) as proc_repo,
    ):
        up = AuroraApplicationRecorder(AuroraDatastore(up_repo, "Up"))
        proc = AuroraProcessRecorder(AuroraDatastore(proc_repo, "Proc"))
        up.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"1")])
        up.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"2")])

        def two_events() -> list[StoredEvent]:
            return [StoredEvent(uuid.uuid4(), v, "p", b"") for v in (1, 2)]

        ids: dict[int, Any] = {1: proc.insert_events(two_events(), tracking=Tracking("Up", 1))}

        def process() -> None:
            with up.subscribe(gt=1) as sub:
                for n in sub:
                    try:
                        ids[n.id] = proc.insert_events(two_events(), tracking=Tracking("Up", n.id))
                    except BaseException as exc:
                        ids[n.id] = exc
                    return

        relay.hold_after(b"Nats-Batch-Commit", answer=b'"seq"')
        thread = threading.Thread(target=process)
        thread.start()
        assert relay.answered.wait(LONG)
        server.kill()
        relay.cut()
        time.sleep(3 * TIMEOUT)
        server.start()
        relay.reopen()
        thread.join(LONG)
        assert ids == {1: [1, 2], 2: [3, 4]}
        assert _when_back(proc.max_notification_id) == 4
        assert proc.max_tracking_id("Up") == 2


# --- a system's follower (a process application in a MultiThreadedRunner) ---


class Echoed(Aggregate):
    def __init__(self, source: str) -> None:
        self.source = source


class Echo(ProcessApplication[UUID]):
    """Records one ``Echoed`` aggregate per event of the leader it follows."""

    @singledispatchmethod
    def policy(
        self, domain_event: DomainEventProtocol[Any], processing_event: ProcessingEvent[UUID]
    ) -> None:
        nid = processing_event.tracking.notification_id if processing_event.tracking else 0
        PAUSE.at("policy", nid)
        source = f"{domain_event.originator_id}:{domain_event.originator_version}"
        processing_event.collect_events(Echoed(source))


def _check_echoes(runner: MultiThreadedRunner[UUID]) -> None:
    """The follower caught up with its leader without an error, and holds one echo of
    each of the leader's events, numbered gap-free."""
    leader, echo = runner.get(Tallies), runner.get(Echo)
    top = _when_back(leader.recorder.max_notification_id)
    deadline = time.monotonic() + LONG
    while echo.recorder.max_tracking_id(leader.name) != top:
        if runner.has_errored.is_set():
            runner.reraise_thread_errors()  # the follower's thread stopped on this error
        assert time.monotonic() < deadline, "the follower did not catch up"
        time.sleep(0.05)
    assert not runner.has_errored.is_set()
    sources = [
        f"{n.originator_id}:{n.originator_version}"
        for n in leader.recorder.select_notifications(start=1, limit=100_000)
    ]
    echoes = echo.recorder.select_notifications(start=1, limit=100_000)
    assert [n.id for n in echoes] == list(range(1, len(echoes) + 1))
    got: list[str] = [
        cast(Echoed, echo.repository.get(cast(UUID, n.originator_id))).source for n in echoes
    ]
    assert sorted(got) == sorted(sources)


@pytest.mark.parametrize("doubt", [False, True], ids=["before-commit", "answer-lost"])
def test_a_system_follower_outlives_an_outage_in_the_middle_of_an_event(
    server: Server, relay: Relay, doubt: bool
) -> None:
    # With doubt, the follower connects through the relay (which holds the answer to
    # its commit); the relay must not stand in for a server that is away (a client
    # accepted by the relay and hung up on leaks its socket in nats-py), so only then.
    urls = {"ECHO_AURORA_URL": _url(f"127.0.0.1:{relay.port}", "rbecho")} if doubt else {}
    env = _env(server, **urls)
    system = System(pipes=[[Tallies, Echo]])
    runner: MultiThreadedRunner[UUID] = MultiThreadedRunner(system, env=env)
    runner.start()
    try:
        leader = runner.get(Tallies)
        tally = leader.new()
        leader.count(tally)
        _check_echoes(runner)
        if doubt:
            relay.hold_after(b"Nats-Batch-Commit", answer=b'"seq"')
        else:
            PAUSE.arm("policy", (leader.recorder.max_notification_id() or 0) + 1)
        leader.count(tally)
        if doubt:
            assert relay.answered.wait(LONG)
            server.kill()
            relay.cut()
        else:
            assert PAUSE.inside.wait(LONG)
            server.kill()
            PAUSE.go.set()
        time.sleep(3 * TIMEOUT)
        server.start()
        if doubt:
            relay.reopen()
        for _ in range(2):
            _when_back(lambda: leader.count(tally))
        _check_echoes(runner)
    finally:
        runner.stop()


# --- what a save's error names ---


def test_a_save_that_numbers_past_records_names_that_step_not_a_scan(
    server: Server, relay: Relay
) -> None:
    # A record put by hand at the next notification id leaves the counter behind it;
    # the save then lists the sequence's records to number past them (the rare path).
    # Its failure was labelled "scanning", as if the save scanned.
    with aurora_storage.open(_url(f"127.0.0.1:{relay.port}", "rblabel")) as repo:
        recorder = AuroraApplicationRecorder(AuroraDatastore(repo, "Labels"))
        repo.put("Labels", ("n", 1), ["x", 1, "t", b""])
        relay.stall_at(b"CONSUMER.CREATE")  # the listing's consumer: never answered
        with pytest.raises(OperationalError) as raised:
            recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"{}")])
        message = str(raised.value)
        assert "scanning" not in message
        assert message.startswith("could not insert events: finding the newest record")
        assert "nothing was written" in message


def test_an_event_larger_than_a_record_is_a_programming_error(server: Server) -> None:
    # docs/eventsourcing.md's error table lists ValueTooLargeError: the server's
    # max_payload (1 MiB by default) refuses the event before anything is sent, and no
    # retry can help (not OperationalError).
    from eventsourcing.persistence import ProgrammingError

    from aurora_storage.errors import ValueTooLargeError

    with aurora_storage.open(_url(server.address, "rbbig")) as repo:
        recorder = AuroraApplicationRecorder(AuroraDatastore(repo, "Big"))
        with pytest.raises(ProgrammingError) as raised:
            recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"x" * 1_100_000)])
        assert isinstance(raised.value.__cause__, ValueTooLargeError)
        assert recorder.max_notification_id() is None  # nothing written
