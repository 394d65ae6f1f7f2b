"""The factory's store and tenant over an application's life: what a closed
application's recorders do while other applications keep the store open, what
``memory://`` gives each factory, and tenants that cannot hold the module's records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from es_cases import require_primitives
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    InfrastructureFactoryError,
    InterfaceError,
    StoredEvent,
    Tracking,
)
from eventsourcing.utils import Environment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import errors
from aurora_storage.eventsourcing import (
    AuroraAggregateRecorder,
    AuroraApplicationRecorder,
    AuroraFactory,
    AuroraProcessRecorder,
)

MODULE = "aurora_storage.eventsourcing"

PERSISTENT = {
    "lmdb": "lmdb://{path}?codec=msgpack&sync=false",
    "rocksdb": "rocksdb://{path}?codec=msgpack",
}


@pytest.fixture
def factories() -> Iterator[list[AuroraFactory]]:
    """Factories the test made, closed afterwards (releasing their stores)."""
    made: list[AuroraFactory] = []
    yield made
    for f in made:
        f.close()


def _event(oid: UUID, version: int) -> StoredEvent:
    return StoredEvent(originator_id=oid, originator_version=version, topic="t:E", state=b"{}")


# ------------------------------------------------------ a closed application's recorders

#: Every recorder method, as a call on (aggregate, application, tracking, process) recorders.
USES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "insert_events": lambda r: r["application"].insert_events([_event(uuid4(), 1)]),
    "aggregate insert_events": lambda r: r["aggregate"].insert_events([_event(uuid4(), 1)]),
    "process insert_events": lambda r: r["process"].insert_events(
        [_event(uuid4(), 1)], tracking=Tracking("up", 99)
    ),
    "select_events": lambda r: r["application"].select_events(uuid4()),
    "select_notifications": lambda r: r["application"].select_notifications(1, 10),
    "max_notification_id": lambda r: r["application"].max_notification_id(),
    "subscribe": lambda r: r["application"].subscribe(gt=0),
    "insert_tracking": lambda r: r["tracking"].insert_tracking(Tracking("up", 99)),
    "max_tracking_id": lambda r: r["tracking"].max_tracking_id("up"),
    "has_tracking_id": lambda r: r["tracking"].has_tracking_id("up", 1),
    "wait": lambda r: r["tracking"].wait("up", 1, timeout=0),
    "track": lambda r: r["tracking"].track(Tracking("up", 99), lambda s: s.put("k", 1)),
    "view get": lambda r: r["tracking"].get("k"),
}


def _recorders(factory: AuroraFactory) -> dict[str, Any]:
    return {
        "aggregate": factory.aggregate_recorder(),
        "application": factory.application_recorder(),
        "tracking": factory.tracking_recorder(),
        "process": factory.process_recorder(),
    }


@pytest.mark.parametrize("use", sorted(USES))
@pytest.mark.parametrize("engine", sorted(PERSISTENT))
def test_a_closed_factorys_recorders_refuse_while_another_holds_the_store(
    engine: str, use: str, tmp_path: Path, factories: list[AuroraFactory]
) -> None:
    url = PERSISTENT[engine].format(path=tmp_path / "store")
    require_primitives(url)
    first = AuroraFactory(Environment("Same", {"AURORA_URL": url}))
    other = AuroraFactory(Environment("Same", {"AURORA_URL": url}))
    factories.append(other)
    closed = _recorders(first)
    first.close()
    with pytest.raises(InterfaceError) as info:
        USES[use](closed)
    assert isinstance(info.value.__cause__, errors.RepositoryClosedError)
    # The other factory, on the same store and tenant, goes on.
    live = _recorders(other)
    assert live["application"].insert_events([_event(uuid4(), 1)]) == [1]
    live["tracking"].track(Tracking("up", 1), lambda s: s.put("k", 1))
    assert live["tracking"].get("k") == 1


@pytest.mark.parametrize("engine", sorted(PERSISTENT))
def test_a_closed_application_neither_saves_nor_reads(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The breaker's reproduction: two applications on one URL; the closed one's save
    used to succeed (the store stayed open for the other)."""
    url = PERSISTENT[engine].format(path=tmp_path / "store")
    require_primitives(url)
    monkeypatch.setenv("PERSISTENCE_MODULE", MODULE)
    monkeypatch.setenv("AURORA_URL", url)

    class App(Application[UUID]):
        pass

    a1, a2 = App(), App()
    try:
        a1.close()
        with pytest.raises(InterfaceError):
            a1.save(Aggregate())
        with pytest.raises(InterfaceError):
            a1.recorder.max_notification_id()
        assert a2.save(Aggregate())[0].notification.id == 1
        a3 = App()  # a new application on the store after one was closed
        assert a3.recorder.max_notification_id() == 1
        a3.close()
    finally:
        a2.close()
    with pytest.raises(InterfaceError):
        a2.save(Aggregate())


# ------------------------------------------------------------------------ memory://


def test_memory_gives_each_factory_its_own_store(factories: list[AuroraFactory]) -> None:
    """As documented: ``memory://`` is a new, empty store for every factory (as
    eventsourcing's POPO module gives each application its own), even with the same
    URL and tenant; each is dropped when its factory closes."""
    env = {"AURORA_URL": "memory://"}
    f1 = AuroraFactory(Environment("App", env))
    f2 = AuroraFactory(Environment("App", env))
    factories += [f1, f2]
    r1, r2 = f1.application_recorder(), f2.application_recorder()
    assert isinstance(r1, AuroraApplicationRecorder)
    assert isinstance(r2, AuroraApplicationRecorder)
    assert r1.insert_events([_event(uuid4(), 1)]) == [1]
    assert r2.max_notification_id() is None
    assert r2.insert_events([_event(uuid4(), 1)]) == [1]
    assert f1.datastore.repository is not f2.datastore.repository


@pytest.mark.parametrize("engine", sorted(PERSISTENT))
def test_persistent_stores_are_shared_by_the_factories_naming_them(
    engine: str, tmp_path: Path, factories: list[AuroraFactory]
) -> None:
    url = PERSISTENT[engine].format(path=tmp_path / "store")
    require_primitives(url)
    f1 = AuroraFactory(Environment("App", {"AURORA_URL": url}))
    f2 = AuroraFactory(Environment("App", {"AURORA_URL": url}))
    factories += [f1, f2]
    r1, r2 = f1.application_recorder(), f2.application_recorder()
    assert r1.insert_events([_event(uuid4(), 1)]) == [1]
    assert r2.insert_events([_event(uuid4(), 1)]) == [2]


# ------------------------------------------------------------------------- tenants

#: The largest key the module writes whatever the application: an event of the
#: snapshots sequence of a UUID aggregate, at the largest 64-bit version.
_LARGEST = ("e", "snapshots", "f" * 32, (1 << 64) - 1)


def _fits(tenant: str) -> bool:
    try:
        aurora_storage.encode_stored_key(tenant, _LARGEST)
    except errors.StorageError:
        return False
    return True


TENANTS = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=600),
    st.integers(400, 520).map(lambda n: "t" * n),
    st.integers(100, 260).map(lambda n: "\u00e9" * n),
    st.integers(200, 260).map(lambda n: "a\x00" * n),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=TENANTS)
def test_a_tenant_too_long_for_the_records_is_refused_at_construction(
    tenant: str, factories: list[AuroraFactory]
) -> None:
    """Before, a 600-character AURORA_TENANT was accepted and every save then failed
    with DataError. Now a tenant is refused at construction unless every record of an
    application with UUID ids fits under the key limit - and then they all do."""
    if not _fits(tenant):
        with pytest.raises(InfrastructureFactoryError) as info:
            AuroraFactory(Environment("Bank", {"AURORA_URL": "memory://", "AURORA_TENANT": tenant}))
        message = str(info.value)
        assert "AURORA_TENANT" in message
        assert "511" in message
        assert "shorter" in message
        return
    f = AuroraFactory(Environment("Bank", {"AURORA_URL": "memory://", "AURORA_TENANT": tenant}))
    factories.append(f)
    oid = uuid4()
    events = f.application_recorder()
    assert events.insert_events([_event(oid, 1), _event(oid, (1 << 64) - 1)]) == [1, 2]
    snapshots = f.aggregate_recorder("snapshots")
    assert isinstance(snapshots, AuroraAggregateRecorder)
    snapshots.insert_events([_event(oid, (1 << 64) - 1)])
    process = f.process_recorder()
    assert isinstance(process, AuroraProcessRecorder)
    process.insert_events([_event(uuid4(), 1)], tracking=Tracking("Up", 1))
    assert f.datastore.tenant == tenant


@pytest.mark.parametrize(
    ("name", "env", "setting"),
    [
        ("Bank", {"AURORA_TENANT": "x" * 600}, "AURORA_TENANT"),
        ("Bank", {"BANK_AURORA_TENANT": "x" * 600}, "BANK_AURORA_TENANT"),
        ("B" * 600, {}, "application name"),
    ],
    ids=["AURORA_TENANT", "prefixed", "application-name"],
)
def test_the_refusal_names_the_setting_the_limit_and_the_fix(
    name: str, env: dict[str, str], setting: str
) -> None:
    with pytest.raises(InfrastructureFactoryError) as info:
        AuroraFactory(Environment(name, {"AURORA_URL": "memory://", **env}))
    message = str(info.value)
    assert setting in message
    assert "511" in message
    assert "AURORA_TENANT" in message  # the fix: a shorter one
    assert isinstance(info.value.__cause__, errors.KeyTooLargeError)


def test_an_application_with_a_too_long_name_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", MODULE)
    monkeypatch.setenv("AURORA_URL", "memory://")
    monkeypatch.setenv("AURORA_TENANT", "x" * 600)
    with pytest.raises(InfrastructureFactoryError):
        Application[UUID]()
