"""One ``save()`` of more events than one JetStream atomic publish holds: a request that
can never succeed on that bucket, refused as ``ProgrammingError`` (not the
``OperationalError`` that invites a retry) with a message in events. A real
nats-server; the bucket's ``max_batch`` is the default (1000 operations)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ProgrammingError, StoredEvent, Tracking
from eventsourcing.utils import Environment

from aurora_storage.eventsourcing import AuroraFactory

sys.path.insert(0, str(Path(__file__).parent.parent / "nats"))
from nats_servers import Server


@pytest.fixture(scope="module")
def limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp("es-limit")), "limit")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _url(server: Server, options: str = "") -> str:
    return f"nats://{server.address}/es{uuid.uuid4().hex[:12]}?codec=msgpack{options}"


def _aggregate(n: int) -> Aggregate:
    a = Aggregate()
    for _ in range(n - 1):
        a.trigger_event(Aggregate.Event)
    return a


def test_a_save_larger_than_a_batch_is_a_programming_error(limit_server: Server) -> None:
    app: Application[Any] = Application(
        env={"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": _url(limit_server)}
    )
    try:
        # max_batch=1000: 499 events (998 operations + the counter) fit, 500 do not.
        assert len(app.save(_aggregate(499))) == 499
        with pytest.raises(ProgrammingError) as info:
            app.save(_aggregate(500))
        msg = str(info.value)
        assert "at most 499 events per save on this bucket" in msg
        assert "save fewer events at once" in msg
        assert isinstance(info.value.__cause__, ValueError)  # the plugin's error, chained
        assert app.recorder.max_notification_id() == 499  # nothing of it was written
    finally:
        app.close()


@pytest.mark.parametrize("kind", ["aggregate", "process"])
def test_the_limit_counts_what_each_recorder_writes(limit_server: Server, kind: str) -> None:
    """An aggregate recorder writes one operation per event (no notification); a process
    recorder's tracking record is one more operation."""
    factory = AuroraFactory(
        Environment(
            env={
                "PERSISTENCE_MODULE": "aurora_storage.eventsourcing",
                "AURORA_URL": _url(limit_server, "&max_batch=100"),
            }
        )
    )
    try:
        oid = uuid.uuid4()
        if kind == "aggregate":
            recorder: Any = factory.aggregate_recorder("snapshots")
            fits, kwargs = 100, {}
        else:
            recorder = factory.process_recorder()
            fits, kwargs = 49, {"tracking": Tracking("Up", 1)}  # 98 + tracking + counter
        events = [StoredEvent(oid, v, "t", b"s") for v in range(1, fits + 2)]
        with pytest.raises(ProgrammingError, match=f"at most {fits} events per save"):
            recorder.insert_events(events, **kwargs)
        recorder.insert_events(events[:fits], **kwargs)
        assert len(recorder.select_events(oid)) == fits
    finally:
        factory.close()
