"""eventsourcing's recorder test cases on ``nats://`` (raw codec: records packed by the
module), against a real single-node nats-server (JetStream, ``sync_interval: always``)
started for this module, with a fresh bucket per test (deleted afterwards)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import es_cases as cases
import pytest
from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.utils import Environment

from aurora_storage.eventsourcing import AuroraTrackingRecorder, ViewState

sys.path.insert(0, str(Path(__file__).parent.parent / "nats"))
from nats_servers import MAX_BATCH, Server


@pytest.fixture(scope="module")
def es_nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One JetStream server for this module's tests."""
    server = Server(Path(tmp_path_factory.mktemp("es-nats")), "es")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _delete_bucket(address: str, bucket: str) -> None:
    import nats

    async def main() -> None:
        nc = await nats.connect(f"nats://{address}", connect_timeout=2, max_reconnect_attempts=0)
        try:
            try:
                await nc.jetstream().delete_stream(f"KV_{bucket}")
            except Exception:
                pass  # never created (the test was skipped before opening it)
        finally:
            await nc.close()

    asyncio.run(main())


class NATSStore(cases.AuroraStore):
    """A fresh bucket per test on the module's server (instead of a fresh directory)."""

    URL = "nats://{address}/{bucket}?codec=raw&max_batch=" + str(MAX_BATCH)

    @pytest.fixture(autouse=True)
    def _aurora_store(self, es_nats_server: Server) -> Iterator[None]:
        bucket = "es" + uuid.uuid4().hex[:16]
        self.url = self.URL.format(address=es_nats_server.address, bucket=bucket)
        cases.require_primitives(self.url)
        self._factories = []
        self.env = Environment(env={"PERSISTENCE_MODULE": cases.MODULE, "AURORA_URL": self.url})
        try:
            yield
        finally:
            for factory in self._factories:
                factory.close()
            _delete_bucket(es_nats_server.address, bucket)


class TestAggregateRecorder(NATSStore, cases.AggregateRecorderCases):
    pass


class TestApplicationRecorder(NATSStore, cases.ApplicationRecorderCases):
    @pytest.mark.skip(
        reason="takes ~5 minutes on NATS (298 s measured with a load of 2 on 2 cores; 585 s "
        "before select_notifications read by id instead of listing the whole range): 10 "
        "writers x 100 inserts of 100 events while 2 readers call select_notifications "
        "back to back, every insert contending for the one notification counter. Passes "
        "when run; the same shape at a smaller size is test_concurrent_inserts_with_readers "
        "below"
    )
    def test_concurrent_no_conflicts(self) -> None:  # type: ignore[override]  # the base method is untyped in eventsourcing; overridden only to skip it
        super().test_concurrent_no_conflicts()

    def test_concurrent_inserts_with_readers(self) -> None:
        """eventsourcing's test_concurrent_no_conflicts at a size NATS runs in seconds
        (10 writers, 20 inserts of 50 events, 2 readers polling), and checked more
        closely: the notification ids are 1..n without a gap, and each insert's events
        hold consecutive ids in version order."""
        recorder = self.create_recorder()
        stop = threading.Event()
        errors: list[BaseException] = []

        def read() -> None:
            while not stop.is_set():
                try:
                    recorder.select_notifications(start=0, limit=10, inclusive_of_start=False)
                except BaseException as exc:
                    errors.append(exc)
                    return

        def insert() -> None:
            oid = uuid.uuid4()
            recorder.insert_events(
                [
                    StoredEvent(originator_id=oid, originator_version=i, topic="t", state=b"s")
                    for i in range(50)
                ]
            )

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            with ThreadPoolExecutor(max_workers=10) as pool:
                for f in [pool.submit(insert) for _ in range(20)]:
                    f.result()
        finally:
            stop.set()
            for t in readers:
                t.join(60)
        assert errors == []
        got = recorder.select_notifications(start=0, limit=10_000, inclusive_of_start=False)
        assert [n.id for n in got] == list(range(1, 1001))
        by_origin: dict[Any, list[tuple[int, int]]] = {}
        for n in got:
            by_origin.setdefault(n.originator_id, []).append((n.id, n.originator_version))
        assert len(by_origin) == 20
        for pairs in by_origin.values():
            ids = [i for i, _ in pairs]
            assert ids == list(range(ids[0], ids[0] + 50))
            assert [v for _, v in pairs] == list(range(50))


class TestTrackingRecorder(NATSStore, cases.TrackingRecorderCases):
    pass


class TestProcessRecorder(NATSStore, cases.ProcessRecorderCases):
    pass


class TestNonInterleavingNotificationIDs(NATSStore, cases.NonInterleavingCases):
    pass


class TestInfrastructureFactory(NATSStore, cases.FactoryCases):  # type: ignore[misc]  # see es_cases.FactoryCases
    pass


class TestExampleApplication(NATSStore, cases.ExampleApplicationCases):
    pass


class TestViews(NATSStore):
    """``track()``'s conditions on the view records its update read, on NATS (whose
    versions are the bucket's revisions): see test_es_view_reads.py."""

    URL = "nats://{address}/{bucket}?codec=msgpack&max_batch=" + str(MAX_BATCH)

    def view(self) -> AuroraTrackingRecorder:
        recorder = self.factory(AURORA_TENANT="Totals").tracking_recorder()
        assert isinstance(recorder, AuroraTrackingRecorder)
        return recorder

    def test_two_upstreams_sharing_a_view_lose_no_increment(self) -> None:
        view, n = self.view(), 40
        start = threading.Barrier(2)

        def add_one(state: ViewState) -> None:
            total = state.get("total", 0)
            time.sleep(0)  # let the other thread run between the read and the write
            state.put("total", total + 1)

        def follow(upstream: str) -> None:
            start.wait()
            for nid in range(1, n + 1):
                view.track(Tracking(upstream, nid), add_one)

        threads = [threading.Thread(target=follow, args=(up,)) for up in ("Orders", "Refunds")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert view.get("total") == 2 * n

    @pytest.mark.parametrize(
        ("program", "expected"),
        [
            # only read: "b" is computed from "a", which the other writer changed
            ("read a, put b", {"a": 10, "b": 11, "c": 20}),
            # read absent, then put: the other writer created it meanwhile
            ("read c, put c", {"a": 10, "c": 21}),
            # read, then delete: the delete must not rest on the value it replaced
            ("read a, delete a if 1", {"a": 10, "c": 20}),
        ],
    )
    def test_an_overlapping_writer_makes_the_update_run_again(
        self, program: str, expected: dict[str, int]
    ) -> None:
        view = self.view()
        view.track(Tracking("init", 1), lambda s: s.put("a", 1))
        runs: list[int] = []

        def update(state: ViewState) -> None:
            runs.append(1)
            if program == "read a, put b":
                state.put("b", state.get("a") + 1)
            elif program == "read c, put c":
                state.put("c", state.get("c", 0) + 1)
            elif state.get("a") == 1:
                state.delete("a")
            if len(runs) == 1:  # another upstream commits after this run's reads
                view.track(Tracking("other", 1), interfere)

        def interfere(state: ViewState) -> None:
            state.put("a", 10)
            state.put("c", 20)

        view.track(Tracking("main", 1), update)
        assert len(runs) == 2
        got = {k: view.get(k) for k in ("a", "b", "c") if view.get(k) is not None}
        assert got == expected
