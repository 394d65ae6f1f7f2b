"""eventsourcing's recorder test cases on ``rocksdb://`` (msgpack codec: plain lists)."""

from __future__ import annotations

import es_cases as cases

URL = "rocksdb://{path}?codec=msgpack"


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
