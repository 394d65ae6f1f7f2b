"""``AuroraTrackingRecorder.track()`` conditions its batch on every view record its
update read, not only on the tracking record.

Two runners following different upstream applications (two tracking records) may share
one view tenant - two eventsourcing ``ProjectionRunner``s with the same projection
class do. Before, each batch was conditioned on its own tracking record only, so the
runners' read-modify-write updates of a shared record overwrote each other: two threads
adding 1 to a total 500 times each ended near 500, not 1,000, and nothing failed. Now a
record the update read (present or absent) that another writer changed before the
commit fails the batch, and the update runs again on fresh state.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from es_cases import require_primitives
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import DataError, Tracking
from eventsourcing.projection import Projection, ProjectionRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import errors
from aurora_storage.eventsourcing import AuroraDatastore, AuroraTrackingRecorder, ViewState

CHILD = Path(__file__).with_name("es_view_child.py")

URLS = {
    "memory": "memory://",
    "rocksdb": "rocksdb://{path}?codec=msgpack",
    "lmdb": "lmdb://{path}?codec=msgpack&sync=false",
}


@pytest.fixture(params=sorted(URLS))
def view(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuroraTrackingRecorder]:
    url = URLS[request.param].format(path=tmp_path / "store")
    require_primitives(url)
    with aurora_storage.open(url) as repo:
        yield AuroraTrackingRecorder(AuroraDatastore(repo, "Totals"))


def _add_one(state: ViewState) -> None:
    state.put("total", state.get("total", 0) + 1)


def _add_one_yielding(state: ViewState) -> None:
    total = state.get("total", 0)
    time.sleep(0)  # let the other thread run between the read and the write
    state.put("total", total + 1)


def test_two_upstreams_sharing_a_view_lose_no_increment(view: AuroraTrackingRecorder) -> None:
    """The breaker's reproduction: Tracking("Orders", n) and Tracking("Refunds", n) in
    two threads, each adding 1 to one total."""
    n = 300
    start = threading.Barrier(2)

    def follow(upstream: str) -> None:
        start.wait()
        for nid in range(1, n + 1):
            view.track(Tracking(upstream, nid), _add_one_yielding)

    threads = [threading.Thread(target=follow, args=(up,)) for up in ("Orders", "Refunds")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (view.max_tracking_id("Orders"), view.max_tracking_id("Refunds")) == (n, n)
    assert view.get("total") == 2 * n


def test_two_upstream_processes_sharing_a_view_on_lmdb(tmp_path: Path) -> None:
    """The same across processes: two writer processes on one LMDB store, one
    upstream each, both adding to one total (the condition is evaluated in LMDB's
    write transaction, which every process shares)."""
    url = f"lmdb://{tmp_path / 'store'}?codec=msgpack&sync=false"
    require_primitives(url)
    n = 300
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), url, upstream, str(n), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for upstream in ("Orders", "Refunds")
    ]
    try:
        for up in ("Orders", "Refunds"):
            ready = go.with_name(f"{go.name}.{up}.ready")
            while not ready.exists():
                if any(c.poll() is not None for c in children):
                    break
                time.sleep(0.01)
        go.touch()
        outcomes = [c.communicate(timeout=300) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
    for c, (_, err) in zip(children, outcomes, strict=True):
        assert c.returncode == 0, err
    with aurora_storage.open(url) as repo:
        view = AuroraTrackingRecorder(AuroraDatastore(repo, "Totals"))
        assert (view.max_tracking_id("Orders"), view.max_tracking_id("Refunds")) == (n, n)
        assert view.get("total") == 2 * n


class Orders(Application[UUID]):
    pass


class Refunds(Application[UUID]):
    pass


class TotalsView(AuroraTrackingRecorder):
    pass


class Totals(Projection[TotalsView]):
    """One view fed by two applications: both runners' views live in the tenant
    "Totals" (the projection's name)."""

    def process_event(self, domain_event: DomainEventProtocol[UUID], tracking: Tracking) -> None:
        self.view.track(tracking, _add_events)


def _add_events(state: ViewState) -> None:
    state.put("events", state.get("events", 0) + 1)


def test_two_projection_runners_with_one_projection_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"lmdb://{tmp_path / 'shop'}?codec=msgpack&sync=false"
    require_primitives(url)
    monkeypatch.setenv("PERSISTENCE_MODULE", "aurora_storage.eventsourcing")
    monkeypatch.setenv("AURORA_URL", url)
    n = 150
    with (
        ProjectionRunner(
            application_class=Orders, projection_class=Totals, view_class=TotalsView
        ) as r1,
        ProjectionRunner(
            application_class=Refunds, projection_class=Totals, view_class=TotalsView
        ) as r2,
    ):

        def produce(app: Application[UUID]) -> None:
            for _ in range(n):
                app.save(Aggregate())

        threads = [threading.Thread(target=produce, args=(r.app,)) for r in (r1, r2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        r1.wait(n, timeout=60)
        r2.wait(n, timeout=60)
        assert r1.view.datastore.tenant == r2.view.datastore.tenant
        assert r1.view.get("events") == 2 * n


# ------------------------------------------------- every kind of read, interleaved

KEYS = st.integers(0, 3)
PROGRAMS = st.lists(
    st.one_of(
        st.tuples(st.just("get"), KEYS),
        st.tuples(st.just("put"), KEYS, st.integers(0, 5)),
        st.tuples(st.just("delete"), KEYS),
    ),
    max_size=8,
)
STATES = st.dictionaries(KEYS, st.integers(0, 100))
WRITES = st.dictionaries(KEYS, st.none() | st.integers(0, 100))  # None: delete


def _run(
    program: list[tuple[Any, ...]],
    get: Callable[[int], Any],
    put: Callable[[int, int], None],
    delete: Callable[[int], None],
) -> None:
    """An update whose writes depend on everything it read before them (absent
    included), so a stale read shows in the records it writes."""
    acc = 0
    for op in program:
        if op[0] == "get":
            value = get(op[1])
            acc = acc * 7 + (-1 if value is None else value) + 3
        elif op[0] == "put":
            put(op[1], acc + op[2])
        else:
            delete(op[1])


@pytest.fixture(scope="module")
def memory_repo() -> Iterator[aurora_storage.Repository[Any, Any]]:
    with aurora_storage.open("memory://") as repo:
        yield repo


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=STATES, program=PROGRAMS, interference=WRITES)
def test_an_update_ends_as_if_it_ran_after_a_writer_that_overlapped_it(
    memory_repo: aurora_storage.Repository[Any, Any],
    initial: dict[int, int],
    program: list[tuple[Any, ...]],
    interference: dict[int, int | None],
) -> None:
    """Another writer (another upstream) commits while the update runs, after its
    reads: whatever the update read (a present record, an absent one, one it then
    deletes, one it only reads), the view ends as if the update had run after the
    writer - never computed from what the writer replaced."""
    view = AuroraTrackingRecorder(AuroraDatastore(memory_repo, f"view-{uuid4().hex}"))

    def load(state: ViewState) -> None:
        for k, v in initial.items():
            state.put(k, v)

    view.track(Tracking("init", 1), load)

    def interfere(state: ViewState) -> None:
        for k, v in interference.items():
            if v is None:
                state.delete(k)
            else:
                state.put(k, v)

    runs = []

    def update(state: ViewState) -> None:
        runs.append(1)
        _run(program, state.get, state.put, state.delete)
        if len(runs) == 1:  # the other writer commits after this run's reads
            view.track(Tracking("other", 1), interfere)

    view.track(Tracking("main", 1), update)

    expected: dict[int, Any] = dict(initial)
    for k, v in interference.items():
        if v is None:
            expected.pop(k, None)
        else:
            expected[k] = v
    _run(program, expected.get, expected.__setitem__, lambda k: expected.pop(k, None))
    assert {k: view.get(k) for k in range(4) if view.get(k) is not None} == expected
    assert view.max_tracking_id("main") == 1


@pytest.mark.parametrize(
    "use",
    [
        lambda state: state.get(object()),
        lambda state: state.put(float("nan"), 1),
        lambda state: state.delete({1, 2}),
    ],
    ids=["get", "put", "delete"],
)
def test_a_bad_view_key_is_a_data_error_and_writes_nothing(
    memory_repo: aurora_storage.Repository[Any, Any], use: Callable[[ViewState], Any]
) -> None:
    view = AuroraTrackingRecorder(AuroraDatastore(memory_repo, f"view-{uuid4().hex}"))
    with pytest.raises(DataError) as info:
        view.track(Tracking("up", 1), use)
    assert isinstance(info.value.__cause__, errors.InvalidKeyError)
    assert view.max_tracking_id("up") is None


def test_an_update_that_only_reads_writes_no_view_record(view: AuroraTrackingRecorder) -> None:
    """An update that reads view records and writes none moves only its tracking
    record: nothing it could have computed from a stale read is written, so it needs
    no condition on those reads. Before, its batch rewrote the view's stamp, and every
    other update that had read the view meanwhile failed and ran again for nothing."""

    def load(state: ViewState) -> None:
        state.put("total", 5)
        state.put("step", 2)

    view.track(Tracking("load", 1), load)
    runs: list[int] = []

    def add_step(state: ViewState) -> None:
        runs.append(1)
        total = state.get("total", 0)
        step = state.get("step")  # read, not written: the batch rests on the stamp
        if len(runs) == 1:  # a read-only update of another upstream commits meanwhile
            view.track(Tracking("audit", 1), lambda s: s.get("total"))
        state.put("total", total + step)

    view.track(Tracking("orders", 1), add_step)
    assert len(runs) == 1
    assert view.get("total") == 7
    assert view.max_tracking_id("audit") == 1
