"""``select_notifications`` and ``max_notification_id`` by point reads (the sequence's
counter, then the ids themselves: what the module does on ``nats://``, whose scans list
the whole range) return exactly what the scans return: compared over random logs, with
holes (records deleted by hand), a dropped tenant, records imported without a counter,
and every argument (start, inclusive_of_start, stop, limit, topics); hypothesis picks
them. On a memory store, both ways on the same data; then on a real nats-server."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Notification, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.eventsourcing import AuroraApplicationRecorder, AuroraDatastore

sys.path.insert(0, str(Path(__file__).parent.parent / "nats"))
from nats_servers import MAX_BATCH, Server

TENANT = "App"
TOPICS = ["a", "b", "c"]


def _pair(repo: Any) -> tuple[AuroraApplicationRecorder, AuroraApplicationRecorder]:
    """Two recorders on one store: by scans, and by point reads."""
    scans = AuroraApplicationRecorder(AuroraDatastore(repo, TENANT))
    points = AuroraApplicationRecorder(AuroraDatastore(repo, TENANT))
    scans._point_reads = False
    points._point_reads = True
    return scans, points


def _fill(recorder: AuroraApplicationRecorder, topics: list[str]) -> None:
    oid = uuid.uuid4()
    recorder.insert_events(
        [StoredEvent(oid, v, t, b"s%d" % v) for v, t in enumerate(topics, start=1)]
    )


def _tuples(ns: Any) -> list[tuple[Any, ...]]:
    return [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in ns]


queries = st.fixed_dictionaries(
    {
        "start": st.none() | st.integers(0, 30),
        "limit": st.integers(0, 25),
        "stop": st.none() | st.integers(0, 30),
        "topics": st.lists(st.sampled_from(TOPICS), max_size=2, unique=True),
        "inclusive_of_start": st.booleans(),
    }
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    saves=st.lists(st.lists(st.sampled_from(TOPICS), min_size=1, max_size=4), max_size=6),
    deleted=st.sets(st.integers(1, 24), max_size=3),
    damage=st.sampled_from(["none", "holes", "drop", "no counter"]),
    asks=st.lists(queries, min_size=1, max_size=4),
)
def test_point_reads_return_what_the_scan_returns(
    saves: list[list[str]], deleted: set[int], damage: str, asks: list[dict[str, Any]]
) -> None:
    with aurora_storage.open("memory://?codec=msgpack") as repo:
        scans, points = _pair(repo)
        for topics in saves:
            _fill(scans, topics)
        if damage == "holes":
            for i in deleted:
                repo.delete(TENANT, ("n", i))
        elif damage == "drop":
            repo.drop_tenant(TENANT)  # the counter outlives it
        elif damage == "no counter":  # as `aurora-storage import` leaves a copy
            records = list(repo.items(TENANT))
            with aurora_storage.open("memory://?codec=msgpack") as copy:
                copy.put_many(TENANT, records)
                s2, p2 = _pair(copy)
                for q in asks:
                    assert _tuples(p2.select_notifications(**q)) == _tuples(
                        s2.select_notifications(**q)
                    )
                assert p2.max_notification_id() == s2.max_notification_id()
                return
        for q in asks:
            assert _tuples(points.select_notifications(**q)) == _tuples(
                scans.select_notifications(**q)
            )
        assert points.max_notification_id() == scans.max_notification_id()


@pytest.fixture(scope="module")
def reads_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(Path(tmp_path_factory.mktemp("es-reads")), "reads")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_on_nats_notifications_are_read_by_id(reads_server: Server) -> None:
    """The NATS recorder reads by id (no listing per call) and answers as the scan
    does, across more than one block of point reads."""
    url = f"nats://{reads_server.address}/es{uuid.uuid4().hex[:12]}?codec=msgpack"
    with aurora_storage.open(url + f"&max_batch={MAX_BATCH}") as repo:
        recorder = AuroraApplicationRecorder(AuroraDatastore(repo, TENANT))
        assert recorder._point_reads
        assert recorder.max_notification_id() is None
        assert recorder.select_notifications(start=1, limit=10) == []
        topics = [TOPICS[i % 3] for i in range(1500)]
        for i in range(0, 1500, 500):
            _fill(recorder, topics[i : i + 500])
        scans, _ = _pair(repo)
        assert recorder.max_notification_id() == 1500 == scans.max_notification_id()
        asks: list[dict[str, Any]] = [
            {"start": 1, "limit": 1200},
            {"start": 1400, "limit": 500, "topics": ["b"]},
            {"start": 1, "limit": 3, "topics": ["c"], "stop": 1000},
            {"start": 1500, "limit": 10, "inclusive_of_start": False},
        ]
        for q in asks:
            got: list[Notification] = list(recorder.select_notifications(**q))
            assert _tuples(got) == _tuples(scans.select_notifications(**q))
        assert len(recorder.select_notifications(start=1, limit=1200)) == 1200
        repo.delete(TENANT, ("n", 700))  # a hole: the scan takes over from it
        assert _tuples(recorder.select_notifications(650, 100)) == _tuples(
            scans.select_notifications(650, 100)
        )
