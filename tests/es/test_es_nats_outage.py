"""A subscription on ``nats://`` outlives its server's outage: a real nats-server, killed
with SIGKILL for longer than the repository's ``timeout`` (so the watch under the
subscription, and its reads, fail with ``NATSTimeoutError``/``NATSConnectionError``
meanwhile), then started again on the same store. The subscription, a
``ProjectionRunner`` on it, keep waiting and deliver what is saved after the restart,
nothing skipped or repeated."""

from __future__ import annotations

import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import OperationalError, Tracking
from eventsourcing.projection import Projection, ProjectionRunner

from aurora_storage.eventsourcing import AuroraTrackingRecorder

sys.path.insert(0, str(Path(__file__).parent.parent / "nats"))
from nats_servers import Server

#: The repository's timeout (seconds): the outage lasts several of them.
TIMEOUT = 1.0
#: Generous bounds for things that do happen (a failing test, not a timed assertion).
LONG = 60.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, "outage")
    s.start()
    try:
        yield s
    finally:
        s.kill()


def _env(server: Server) -> dict[str, str]:
    bucket = "es" + uuid.uuid4().hex[:12]
    return {
        "PERSISTENCE_MODULE": "aurora_storage.eventsourcing",
        "AURORA_URL": f"nats://{server.address}/{bucket}?codec=msgpack&timeout={TIMEOUT}",
    }


def _outage(server: Server, app: Application[Any]) -> None:
    """SIGKILL the server, stay away several timeouts, start it again on the same store,
    and wait until the application reaches it again."""
    server.kill()
    # A call made now fails after the timeout, as the subscription's watch does.
    with pytest.raises(OperationalError):
        app.recorder.max_notification_id()
    time.sleep(3 * TIMEOUT)
    server.start()
    deadline = time.monotonic() + LONG
    while True:
        try:
            app.recorder.max_notification_id()
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise


def _follow(sub: Any, got: queue.Queue[object]) -> threading.Thread:
    """A started thread iterating ``sub``: each notification's id into ``got``, then
    "stopped" when the iteration ends, or the exception that ended it."""

    def follow() -> None:
        try:
            with sub:
                for n in sub:
                    got.put(n.id)
            got.put("stopped")
        except BaseException as exc:
            got.put(exc)

    thread = threading.Thread(target=follow)
    thread.start()
    return thread


def test_a_subscription_delivers_after_an_outage_longer_than_the_timeout(
    server: Server,
) -> None:
    app: Application[Any] = Application(env=_env(server))
    got: queue.Queue[object] = queue.Queue()
    try:
        app.save(Aggregate())
        sub = app.recorder.subscribe(gt=0)
        thread = _follow(sub, got)
        try:
            assert got.get(timeout=LONG) == 1
            _outage(server, app)
            app.save(Aggregate())
            assert got.get(timeout=LONG) == 2
            _outage(server, app)  # a second outage, and saves after it
            app.save(Aggregate())
            app.save(Aggregate())
            assert [got.get(timeout=LONG), got.get(timeout=LONG)] == [3, 4]
        finally:
            sub.stop()
            thread.join(LONG)
        assert got.get(timeout=LONG) == "stopped"  # nothing repeated, no error
        assert got.empty()
    finally:
        app.close()


class Counts(AuroraTrackingRecorder):
    pass


class CountEvents(Projection[Counts]):
    @singledispatchmethod
    def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        def add(state: Any) -> None:
            state.put("n", state.get("n", 0) + 1)

        self.view.track(tracking, add)


def test_a_projection_runner_follows_on_after_an_outage(server: Server) -> None:
    env = _env(server)
    with ProjectionRunner(
        application_class=Application,
        projection_class=CountEvents,
        view_class=Counts,
        env=env,
    ) as runner:
        app = runner.app
        app.save(Aggregate())
        runner.wait(app.recorder.max_notification_id(), timeout=LONG)
        _outage(server, app)
        app.save(Aggregate())
        runner.wait(app.recorder.max_notification_id(), timeout=LONG)
        assert runner.view.get("n") == 2


def test_a_connection_closed_for_good_ends_the_subscription_with_its_error(
    server: Server,
) -> None:
    # With max_reconnect_attempts=1 the client stops reconnecting once the server is
    # gone: its connection is closed for good and never comes back. The subscription
    # must raise that (InterfaceError, from NATSConnectionClosedError) instead of
    # waiting for a store that cannot return; it waited forever before.
    from eventsourcing.persistence import InterfaceError

    from aurora_storage_nats import NATSConnectionClosedError

    env = _env(server)
    env["AURORA_URL"] += "&max_reconnect_attempts=1&reconnect_time_wait=0.2&connect_timeout=0.5"
    app: Application[Any] = Application(env=env)
    got: queue.Queue[object] = queue.Queue()
    try:
        app.save(Aggregate())
        sub = app.recorder.subscribe(gt=0)
        thread = _follow(sub, got)
        # A hang guard, not a timed assertion: stopping it ends the iteration with
        # "stopped", which fails the test below.
        watchdog = threading.Timer(LONG, sub.stop)
        watchdog.start()
        try:
            assert got.get(timeout=LONG) == 1
            server.kill()
            end = got.get(timeout=2 * LONG)
        finally:
            watchdog.cancel()
            sub.stop()
            thread.join(LONG)
        assert isinstance(end, InterfaceError), end
        assert isinstance(end.__cause__, NATSConnectionClosedError)
        assert "closed for good" in str(end)
    finally:
        app.close()
