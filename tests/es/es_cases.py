"""eventsourcing's own recorder test cases, bound to aurora-storage stores.

eventsourcing ships these ``unittest`` cases for third-party persistence modules
(``eventsourcing.tests.persistence`` and ``eventsourcing.tests.application``). Each
class below binds one of them to a fresh store per test; the per-engine test modules
(``test_es_memory.py``, ``test_es_rocksdb.py``, ``test_es_lmdb.py``) subclass them with
one ``URL`` each, the way our engine plugins subclass the conformance suite.

eventsourcing's classes are reached through their modules (``es.``, ``es_app.``), never
imported by name, so pytest does not collect the abstract originals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from eventsourcing.tests import application as es_app
from eventsourcing.tests import persistence as es
from eventsourcing.utils import Environment

from aurora_storage.eventsourcing import (
    AuroraAggregateRecorder,
    AuroraApplicationRecorder,
    AuroraFactory,
    AuroraProcessRecorder,
    AuroraTrackingRecorder,
)

MODULE = "aurora_storage.eventsourcing"


def require_primitives(url: str) -> None:
    """Skip (saying why) when the store's backend does not declare the event-store
    primitives the module needs: the capability gate of the conformance suite."""
    import aurora_storage

    with aurora_storage.open(url) as repo:
        caps = repo.capabilities
    missing = [n for n in ("conditional_writes", "sequences") if not getattr(caps, n)]
    if missing:
        pytest.skip(f"{url.split(':', 1)[0]}:// does not declare {', '.join(missing)}")


class AuroraStore:
    """A fresh store per test: ``URL`` with ``{path}`` replaced by a new directory."""

    URL: ClassVar[str]

    url: str
    _factories: list[AuroraFactory]

    @pytest.fixture(autouse=True)
    def _aurora_store(self, tmp_path: Path) -> Iterator[None]:
        self.url = self.URL.format(path=tmp_path / "store")
        require_primitives(self.url)
        self._factories = []
        self.env = Environment(env={"PERSISTENCE_MODULE": MODULE, "AURORA_URL": self.url})
        yield
        for factory in self._factories:
            factory.close()

    def factory(self, **settings: str) -> AuroraFactory:
        """A factory on this test's store (closed after the test)."""
        f = AuroraFactory(Environment(env={"AURORA_URL": self.url, **settings}))
        self._factories.append(f)
        return f


class AggregateRecorderCases(AuroraStore, es.AggregateRecorderTestCase):
    def create_recorder(self) -> AuroraAggregateRecorder:
        recorder = self.factory().aggregate_recorder()
        assert isinstance(recorder, AuroraAggregateRecorder)
        return recorder


class ApplicationRecorderCases(AuroraStore, es.ApplicationRecorderTestCase[Any]):
    def create_recorder(self) -> AuroraApplicationRecorder:
        recorder = self.factory().application_recorder()
        assert isinstance(recorder, AuroraApplicationRecorder)
        return recorder

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TrackingRecorderCases(AuroraStore, es.TrackingRecorderTestCase):
    def create_recorder(self) -> AuroraTrackingRecorder:
        return self.factory().tracking_recorder()


class ProcessRecorderCases(AuroraStore, es.ProcessRecorderTestCase):
    def create_recorder(self) -> AuroraProcessRecorder:
        recorder = self.factory().process_recorder()
        assert isinstance(recorder, AuroraProcessRecorder)
        return recorder


class NonInterleavingCases(AuroraStore, es.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> AuroraApplicationRecorder:
        recorder = self.factory().application_recorder()
        assert isinstance(recorder, AuroraApplicationRecorder)
        return recorder


class _TrackingSubclass(AuroraTrackingRecorder):
    """A tracking recorder subclass, named by class and by topic in the factory cases."""


class FactoryCases(AuroraStore, es.InfrastructureFactoryTestCase[AuroraFactory]):  # type: ignore[misc]  # eventsourcing's case assigns self.factory (the factory under test) in setUp, over AuroraStore.factory(); its tests use only that
    def expected_factory_class(self) -> type[AuroraFactory]:
        return AuroraFactory

    def expected_aggregate_recorder_class(self) -> type[AuroraAggregateRecorder]:
        return AuroraAggregateRecorder

    def expected_application_recorder_class(self) -> type[AuroraApplicationRecorder]:
        return AuroraApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[AuroraTrackingRecorder]:
        return AuroraTrackingRecorder

    def tracking_recorder_subclass(self) -> type[AuroraTrackingRecorder]:
        return _TrackingSubclass

    def expected_process_recorder_class(self) -> type[AuroraProcessRecorder]:
        return AuroraProcessRecorder


class ExampleApplicationCases(AuroraStore, es_app.ExampleApplicationTestCase):
    """eventsourcing's bank-accounts application, selected by ``PERSISTENCE_MODULE``
    from the process environment as an application would be."""

    expected_factory_topic = "aurora_storage.eventsourcing._factory:AuroraFactory"

    @pytest.fixture(autouse=True)
    def _environ(self, monkeypatch: pytest.MonkeyPatch, _aurora_store: None) -> None:
        monkeypatch.setenv("PERSISTENCE_MODULE", MODULE)
        monkeypatch.setenv("AURORA_URL", self.url)


def make_factory(
    made: list[AuroraFactory], url: str, name: str = "", **settings: str
) -> AuroraFactory:
    """An :class:`AuroraFactory` of application ``name`` on ``url`` with eventsourcing
    ``settings`` (``AURORA_TENANT=...``), added to ``made`` (the ``factories`` fixture)
    to be closed after the test."""
    f = AuroraFactory(Environment(name, {"AURORA_URL": url, **settings}))
    made.append(f)
    return f
