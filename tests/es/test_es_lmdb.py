"""eventsourcing's recorder test cases on ``lmdb://`` (raw codec: records packed by the
module; no fsync)."""

from __future__ import annotations

import es_cases as cases

URL = "lmdb://{path}?codec=raw&sync=false"


class TestAggregateRecorder(cases.AggregateRecorderCases):
    URL = URL


class TestApplicationRecorder(cases.ApplicationRecorderCases):
    URL = URL


class TestTrackingRecorder(cases.TrackingRecorderCases):
    URL = URL


class TestProcessRecorder(cases.ProcessRecorderCases):
    URL = URL


class TestNonInterleavingNotificationIDs(cases.NonInterleavingCases):
    URL = URL


class TestInfrastructureFactory(cases.FactoryCases):
    URL = URL


class TestExampleApplication(cases.ExampleApplicationCases):
    URL = URL
