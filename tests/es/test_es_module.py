"""aurora_storage.eventsourcing beyond eventsourcing's own test cases: selection by
PERSISTENCE_MODULE, tenancy, value layouts per codec, originator id types, error
translation, races on tracking records, and subscriptions across threads."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

import pytest
from es_cases import make_factory, require_primitives
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    DataError,
    InfrastructureFactory,
    InfrastructureFactoryError,
    IntegrityError,
    InterfaceError,
    PersistenceError,
    StoredEvent,
    Tracking,
)
from eventsourcing.utils import Environment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import errors
from aurora_storage.eventsourcing import (
    AuroraApplicationRecorder,
    AuroraFactory,
    AuroraProcessRecorder,
    AuroraSubscription,
    ViewState,
)
from aurora_storage.eventsourcing._records import value_layout

MODULE = "aurora_storage.eventsourcing"


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application[UUID]):
    def register_dog(self, name: str) -> UUID:
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: UUID, trick: str) -> None:
        dog: Dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_tricks(self, dog_id: UUID) -> list[str]:
        dog: Dog = self.repository.get(dog_id)
        return list(dog.tricks)


class CatSchool(DogSchool):
    """A second application (another name, so another tenant) on the same store."""


@pytest.fixture
def lmdb_url(tmp_path: Path) -> str:
    url = f"lmdb://{tmp_path / 'store'}?codec=msgpack&sync=false"
    require_primitives(url)
    return url


@pytest.fixture
def factories() -> Iterator[list[AuroraFactory]]:
    """Factories the test made, closed afterwards (releasing their stores)."""
    made: list[AuroraFactory] = []
    yield made
    for f in made:
        f.close()


def _event(oid: UUID | str, version: int, state: bytes = b"{}") -> StoredEvent:
    return StoredEvent(originator_id=oid, originator_version=version, topic="t:E", state=state)


# ---------------------------------------------------------------- selection and tenancy


def test_persistence_module_setting_selects_themake_factory(lmdb_url: str) -> None:
    env = Environment("DogSchool", {"PERSISTENCE_MODULE": MODULE, "AURORA_URL": lmdb_url})
    factory = InfrastructureFactory.construct(env)
    try:
        assert type(factory) is AuroraFactory
        assert factory.datastore.tenant == "DogSchool"  # the application's name
    finally:
        factory.close()


def test_applications_share_one_store_each_in_its_own_tenant(lmdb_url: str) -> None:
    env = {"PERSISTENCE_MODULE": MODULE, "AURORA_URL": lmdb_url}
    with DogSchool(env=env) as dogs, CatSchool(env=env) as cats:
        fido = dogs.register_dog("Fido")
        dogs.add_trick(fido, "roll over")
        tom = cats.register_dog("Tom")
        assert dogs.get_tricks(fido) == ["roll over"]
        assert cats.get_tricks(tom) == []
        # Each application's notification log starts at 1 and holds only its events.
        assert [n.id for n in dogs.recorder.select_notifications(None, 10)] == [1, 2]
        assert [n.id for n in cats.recorder.select_notifications(None, 10)] == [1]
        assert {n.originator_id for n in cats.recorder.select_notifications(None, 10)} == {tom}
        assert isinstance(dogs.factory, AuroraFactory)
        assert isinstance(cats.factory, AuroraFactory)
        # Each factory has its own repository (closed with its application) on the one
        # store, whose engine handle the core shares; both see both tenants.
        repo, other = dogs.factory.datastore.repository, cats.factory.datastore.repository
        assert other is not repo
        assert sorted(repo.tenants()) == sorted(other.tenants()) == ["CatSchool", "DogSchool"]
    # Reopened later, each application finds exactly its own history.
    with DogSchool(env=env) as dogs:
        assert dogs.get_tricks(fido) == ["roll over"]
        assert dogs.recorder.max_notification_id() == 2


def test_aurora_tenant_setting_and_application_prefixed_settings(
    lmdb_url: str, factories: list[AuroraFactory]
) -> None:
    a = make_factory(factories, lmdb_url, "DogSchool", AURORA_TENANT="school-a")
    b = make_factory(factories, lmdb_url, "DogSchool", DOGSCHOOL_AURORA_TENANT="school-b")
    assert (a.datastore.tenant, b.datastore.tenant) == ("school-a", "school-b")
    ra, rb = a.application_recorder(), b.application_recorder()
    oid = uuid4()
    ra.insert_events([_event(oid, 1)])
    assert rb.select_events(oid) == []
    assert rb.max_notification_id() is None
    assert ra.max_notification_id() == 1


def test_default_tenant_without_an_application_name(factories: list[AuroraFactory]) -> None:
    assert make_factory(factories, "memory://").datastore.tenant == "eventsourcing"


# ---------------------------------------------------------------- values and ids


@pytest.mark.parametrize(
    ("codec", "layout"), [("json", "text"), ("msgpack", "native"), ("raw", "packed")]
)
def test_each_codec_gets_a_layout_that_round_trips(codec: str, layout: str) -> None:
    with aurora_storage.open("memory://", codec=codec) as repo:
        assert value_layout(repo.codec).name == layout


@pytest.mark.parametrize("codec", ["json", "msgpack", "raw"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(
        st.tuples(st.text(min_size=1, max_size=30), st.binary(max_size=200)),
        min_size=1,
        max_size=5,
    ),
    oid_text=st.text(min_size=1, max_size=40),
)
def test_events_round_trip_exactly_with_every_codec(
    codec: str, events: list[tuple[str, bytes]], oid_text: str
) -> None:
    factory = AuroraFactory(
        Environment(env={"AURORA_URL": f"memory://?codec={codec}", "ORIGINATOR_ID_TYPE": "text"})
    )
    try:
        recorder = factory.application_recorder()
        stored = [
            StoredEvent(originator_id=oid_text, originator_version=v, topic=t, state=s)
            for v, (t, s) in enumerate(events, start=1)
        ]
        assert recorder.insert_events(stored) == list(range(1, len(stored) + 1))
        assert list(recorder.select_events(oid_text)) == stored
        notes = recorder.select_notifications(None, 10)
        assert [(n.originator_id, n.originator_version, n.topic, n.state) for n in notes] == [
            (s.originator_id, s.originator_version, s.topic, s.state) for s in stored
        ]
    finally:
        factory.close()


def test_uuid_and_its_hex_name_one_aggregate(factories: list[AuroraFactory]) -> None:
    recorder = make_factory(factories, "memory://").application_recorder()
    oid = uuid4()
    recorder.insert_events([_event(oid, 1)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([_event(oid.hex, 1)])
    (got,) = recorder.select_events(oid.hex)
    assert got.originator_id == oid
    assert isinstance(got.originator_id, UUID)


def test_text_ids_need_originator_id_type_text(factories: list[AuroraFactory]) -> None:
    uuid_mode = make_factory(factories, "memory://").application_recorder()
    with pytest.raises(DataError, match="ORIGINATOR_ID_TYPE=text"):
        uuid_mode.insert_events([_event("order-1", 1)])  # never read back as a UUID
    assert uuid_mode.max_notification_id() is None
    text_mode = make_factory(
        factories, "memory://", ORIGINATOR_ID_TYPE="text"
    ).application_recorder()
    text_mode.insert_events([_event("order-1", 1)])
    (got,) = text_mode.select_events("order-1")
    assert got.originator_id == "order-1"


def test_select_events_bounds_order_and_limit(factories: list[AuroraFactory]) -> None:
    recorder = make_factory(factories, "memory://").aggregate_recorder()
    oid, other = uuid4(), uuid4()
    recorder.insert_events([_event(oid, v, str(v).encode()) for v in range(12)])
    recorder.insert_events([_event(other, 5)])

    def versions(**kw: Any) -> list[int]:
        return [e.originator_version for e in recorder.select_events(oid, **kw)]

    assert versions() == list(range(12))
    assert versions(gt=3, lte=7) == [4, 5, 6, 7]
    assert versions(desc=True, limit=3) == [11, 10, 9]
    assert versions(lte=5, desc=True, limit=2) == [5, 4]
    assert versions(gt=11) == []
    # Snapshots are another aggregate sequence in the same tenant.
    snapshots = make_factory(factories, "memory://").aggregate_recorder("snapshots")
    assert snapshots.select_events(oid) == []


# ---------------------------------------------------------------- errors at the boundary


def test_missing_url_is_a_factory_error() -> None:
    with pytest.raises(InfrastructureFactoryError, match="AURORA_URL"):
        AuroraFactory(Environment("DogSchool", {}))


def test_unopenable_url_is_a_factory_error_with_the_cause_chained() -> None:
    with pytest.raises(InfrastructureFactoryError) as info:
        AuroraFactory(Environment(env={"AURORA_URL": "nosuchscheme:///x"}))
    assert isinstance(info.value.__cause__, errors.BackendNotFoundError)


def test_invalid_originator_id_type_is_refused() -> None:
    with pytest.raises(InfrastructureFactoryError, match="ORIGINATOR_ID_TYPE"):
        AuroraFactory(Environment(env={"AURORA_URL": "memory://", "ORIGINATOR_ID_TYPE": "int"}))


def test_too_long_originator_id_is_a_data_error_and_writes_nothing(
    factories: list[AuroraFactory],
) -> None:
    recorder = make_factory(
        factories, "memory://", ORIGINATOR_ID_TYPE="text"
    ).application_recorder()
    ok = uuid4().hex
    with pytest.raises(DataError) as info:
        recorder.insert_events([_event(ok, 1), _event("x" * 600, 1)])
    assert isinstance(info.value.__cause__, errors.KeyTooLargeError)
    assert recorder.select_events(ok) == []
    assert recorder.max_notification_id() is None


def test_use_after_close_is_an_interface_error() -> None:
    factory = AuroraFactory(Environment(env={"AURORA_URL": "memory://"}))
    recorder = factory.application_recorder()
    factory.close()
    factory.close()  # idempotent
    with pytest.raises(InterfaceError) as info:
        recorder.insert_events([_event(uuid4(), 1)])
    assert isinstance(info.value.__cause__, errors.RepositoryClosedError)
    with pytest.raises(InterfaceError):
        recorder.max_notification_id()


def test_repeated_version_in_one_call_is_an_integrity_error(
    factories: list[AuroraFactory],
) -> None:
    recorder = make_factory(factories, "memory://").application_recorder()
    oid = uuid4()
    with pytest.raises(IntegrityError):
        recorder.insert_events([_event(oid, 1), _event(oid, 2), _event(oid, 1)])
    assert recorder.select_events(oid) == []


def test_failed_tracking_writes_no_events(factories: list[AuroraFactory]) -> None:
    recorder = make_factory(factories, "memory://").process_recorder()
    assert isinstance(recorder, AuroraProcessRecorder)
    recorder.insert_events([], tracking=Tracking("up", 5))
    oid = uuid4()
    with pytest.raises(IntegrityError):
        recorder.insert_events([_event(oid, 1)], tracking=Tracking("up", 5))
    assert recorder.select_events(oid) == []
    assert recorder.max_notification_id() is None
    assert recorder.max_tracking_id("up") == 5


# ---------------------------------------------------------------- races


def test_racing_trackers_each_id_accepted_exactly_once(factories: list[AuroraFactory]) -> None:
    """8 threads insert the same tracking ids: each id is accepted by exactly one of
    them (compare-and-set in the engine, not check-then-write)."""
    recorder = make_factory(factories, "memory://").tracking_recorder()
    ids = range(1, 151)
    wins: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def run() -> None:
        start.wait()
        for n in ids:
            try:
                recorder.insert_tracking(Tracking("upstream", n))
            except IntegrityError:
                continue
            with lock:
                wins.append(n)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == len(set(wins))  # no id accepted twice
    assert recorder.max_tracking_id("upstream") == 150
    assert max(wins) == 150


def test_racing_writers_of_one_aggregate(factories: list[AuroraFactory]) -> None:
    """Threads race to append the next version of one aggregate: each version is
    acknowledged to exactly one writer, and the notification ids are gap-free."""
    recorder = make_factory(factories, "memory://").application_recorder()
    oid = uuid4()
    acked: list[tuple[int, int, bytes]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def run(w: int) -> None:
        start.wait()
        for i in range(60):
            last = recorder.select_events(oid, desc=True, limit=1)
            version = last[0].originator_version + 1 if last else 1
            state = f"{w}:{i}".encode()
            try:
                nids = recorder.insert_events([_event(oid, version, state)])
            except IntegrityError:
                continue
            assert nids is not None  # an application recorder returns the ids
            (nid,) = nids
            with lock:
                acked.append((version, nid, state))

    threads = [threading.Thread(target=run, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = sorted(v for v, _, _ in acked)
    assert versions == list(range(1, len(acked) + 1))  # no duplicate, no hole
    assert sorted(n for _, n, _ in acked) == list(range(1, len(acked) + 1))
    stored = {e.originator_version: e.state for e in recorder.select_events(oid)}
    assert stored == {v: s for v, _, s in acked}  # each writer's own state, as told


# ---------------------------------------------------------------- subscriptions


def test_subscription_follows_a_writer_thread_in_order(factories: list[AuroraFactory]) -> None:
    recorder = make_factory(factories, "memory://").application_recorder()
    assert isinstance(recorder, AuroraApplicationRecorder)
    recorder.insert_events([_event(uuid4(), 1)])  # before the subscription: gt=1 skips it
    total = 300

    def write() -> None:
        for _ in range(total // 3):
            oid = uuid4()
            recorder.insert_events([_event(oid, v) for v in (1, 2, 3)])

    got: list[int] = []
    with recorder.subscribe(gt=1) as subscription:
        writer = threading.Thread(target=write)
        writer.start()
        for notification in subscription:
            got.append(notification.id)
            if len(got) == total:
                break
        writer.join()
    assert got == list(range(2, total + 2))


def test_subscription_topics_and_stop_from_another_thread(
    factories: list[AuroraFactory],
) -> None:
    recorder = make_factory(factories, "memory://").application_recorder()
    recorder.insert_events(
        [
            StoredEvent(uuid4(), 1, "t:A", b"a"),
            StoredEvent(uuid4(), 1, "t:B", b"b"),
            StoredEvent(uuid4(), 1, "t:A", b"c"),
        ]
    )
    subscription = recorder.subscribe(topics=["t:A"])
    got: list[bytes] = []
    with subscription:
        timer = threading.Timer(0.5, subscription.stop)
        timer.start()
        for notification in subscription:  # ends when stopped, though no more arrive
            got.append(notification.state)
        timer.join()
    assert got == [b"a", b"c"]


def test_subscription_reports_a_closed_store(factories: list[AuroraFactory]) -> None:
    factory = AuroraFactory(Environment(env={"AURORA_URL": "memory://"}))
    recorder = factory.application_recorder()
    recorder.insert_events([_event(uuid4(), 1)])
    with recorder.subscribe() as subscription:
        assert next(subscription).id == 1
        factory.close()
        with pytest.raises(PersistenceError):
            for _ in subscription:
                pass


def test_subscription_polls_a_store_without_a_change_feed(
    factories: list[AuroraFactory], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = make_factory(factories, "memory://").application_recorder()
    assert isinstance(recorder, AuroraApplicationRecorder)
    repo: Any = recorder.datastore.repository
    caps = repo.capabilities
    no_feed = dataclasses.replace(caps, change_feed=False)
    monkeypatch.setattr(type(repo), "capabilities", property(lambda self: no_feed))
    with recorder.subscribe() as subscription:
        assert isinstance(subscription, AuroraSubscription)
        assert subscription._watch is None  # polling, not watching
        recorder.insert_events([_event(uuid4(), 1)])
        assert next(subscription).id == 1


def test_a_store_without_the_primitives_is_refused_at_construction() -> None:
    url = "tiered://?hot=" + quote("memory://", safe="") + "&cold=" + quote("memory://", safe="")
    with pytest.raises(InfrastructureFactoryError, match="conditional_writes and sequences"):
        AuroraFactory(Environment(env={"AURORA_URL": url}))


# ---------------------------------------------------------------- materialised views


def test_track_writes_view_and_position_together(factories: list[AuroraFactory]) -> None:
    view = make_factory(factories, "memory://", "Counts").tracking_recorder()
    calls: list[int] = []

    def bump(state: ViewState) -> None:
        calls.append(1)
        state.put(("n",), state.get(("n",), 0) + 1)
        state.put([1, "list key"], "unhashable keys work")
        assert state.get([1, "list key"]) == "unhashable keys work"  # reads its own writes
        state.delete("gone")
        assert state.get("gone", "absent") == "absent"

    view.track(Tracking("up", 1), bump)
    assert (view.get(("n",)), view.max_tracking_id("up")) == (1, 1)
    assert view.get([1, "list key"]) == "unhashable keys work"
    # Processed already: IntegrityError, and the update is not even run.
    with pytest.raises(IntegrityError):
        view.track(Tracking("up", 1), bump)
    assert (len(calls), view.get(("n",))) == (1, 1)
    # A failing write (a value the codec refuses) writes neither view nor position.
    with pytest.raises(DataError):
        view.track(Tracking("up", 2), lambda state: state.put(("n",), object()))
    assert (view.get(("n",)), view.max_tracking_id("up")) == (1, 1)


def test_racing_view_updaters_count_each_notification_once(
    factories: list[AuroraFactory],
) -> None:
    """Four threads process the same 100 notifications into one counter view: each
    notification is counted exactly once (the tracking compare-and-set guards the
    whole batch, and a loser re-runs its update on fresh state)."""
    view = make_factory(factories, "memory://", "Counts").tracking_recorder()
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        for n in range(1, 101):
            try:
                view.track(
                    Tracking("up", n),
                    lambda state: state.put("count", state.get("count", 0) + 1),
                )
            except IntegrityError:
                pass

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert view.max_tracking_id("up") == 100
    # Every thread walks 1..100 in order, so each id is tracked once: count == ids won.
    assert view.get("count") == 100


@pytest.mark.parametrize("url", ["memory://", "lmdb://{path}?sync=false"])
def test_wait_is_woken_by_the_commit(
    url: str, tmp_path: Path, factories: list[AuroraFactory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With re-reads 30 s apart, a wait of 20 s can only succeed if the commit's change
    wakes it (otherwise it times out)."""
    from aurora_storage.eventsourcing import _recorders

    monkeypatch.setattr(_recorders, "_WAIT_SLICE", 30.0)
    url = url.format(path=tmp_path / "store")
    require_primitives(url)
    factory = make_factory(factories, url)  # one store (each memory:// open is a new one)
    waiter, writer = factory.tracking_recorder(), factory.process_recorder()
    timer = threading.Timer(0.3, lambda: writer.insert_events([], tracking=Tracking("up", 7)))
    timer.start()
    try:
        waiter.wait("up", 7, timeout=20)
    finally:
        timer.join()
    assert waiter.max_tracking_id("up") == 7


def test_wait_without_a_change_feed_polls(
    factories: list[AuroraFactory], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = make_factory(factories, "memory://").tracking_recorder()
    repo: Any = recorder.datastore.repository
    no_feed = dataclasses.replace(repo.capabilities, change_feed=False)
    monkeypatch.setattr(type(repo), "capabilities", property(lambda self: no_feed))
    timer = threading.Timer(0.2, lambda: recorder.insert_tracking(Tracking("up", 3)))
    timer.start()
    recorder.wait("up", 3, timeout=20)
    timer.join()
    with pytest.raises(TimeoutError):
        recorder.wait("up", 4, timeout=0.1)
