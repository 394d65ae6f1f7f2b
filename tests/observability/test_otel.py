"""The observability layer, checked with the OpenTelemetry SDK's in-memory exporters."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AnyValue

import aurora_storage
from aurora_storage.observability import InstrumentedBackend, instrument, uninstrument


def attrs(span: ReadableSpan) -> Mapping[str, AnyValue]:
    """A finished span's attributes (optional in the SDK's types; every span of ours has
    some)."""
    assert span.attributes is not None
    return span.attributes


def instrumented(repo: Any) -> bool:
    """Whether ``repo`` reads and writes through the observability layer."""
    return isinstance(repo.backend, InstrumentedBackend)


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, repo: Any, **kw: Any) -> Any:
        return instrument(
            repo, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kw
        )

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.tracer_provider.shutdown()
    o.meter_provider.shutdown()


@pytest.fixture(params=["memory", "rocksdb", "lmdb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"{request.param}://{tmp_path / 's'}"


def test_a_span_per_operation_and_batch_with_db_client_conventions(otel: Otel, url: str) -> None:
    with otel.instrument(aurora_storage.open(url)) as repo:
        repo.put("acme", "k", {"v": 1})
        assert repo.get("acme", "k") == {"v": 1}
        with repo.batch() as b:
            b.put("acme", "a", 1)
            b.put("acme", "b", 2)
        assert list(repo.keys("acme")) == ["a", "b", "k"]
        repo.delete("acme", "a")
    spans = otel.spans.get_finished_spans()
    ops = [attrs(s)["db.operation.name"] for s in spans]
    assert ops[:2] == ["put", "get"]
    assert {"write", "scan", "delete"} <= set(ops)
    put = spans[0]
    scheme = url.split(":")[0]
    assert put.kind is SpanKind.CLIENT
    assert attrs(put)["db.system.name"] == scheme
    assert put.name.startswith("put ")
    assert "aurora_storage.tenant" not in attrs(put)  # not by default
    write = next(s for s in spans if attrs(s)["db.operation.name"] == "write")
    assert attrs(write)["db.operation.batch.size"] == 2
    scan = next(s for s in spans if attrs(s)["db.operation.name"] == "scan")
    assert attrs(scan)["db.response.returned_rows"] == 3


def test_metrics_count_latency_bytes_and_errors_by_type(otel: Otel, tmp_path: Path) -> None:
    repo = otel.instrument(aurora_storage.open(f"lmdb://{tmp_path / 's'}"))
    for i in range(10):
        repo.put("acme", i, "x" * 100)
    for i in range(10):
        repo.get("acme", i)
    repo.close()
    with pytest.raises(aurora_storage.RepositoryClosedError):
        repo.get("acme", 1)
    m = otel.metrics()
    durations = {
        p.attributes["db.operation.name"]: p
        for p in m["db.client.operation.duration"]
        if "error.type" not in p.attributes
    }
    assert durations["put"].count == 10
    assert durations["get"].count == 10
    assert durations["get"].sum > 0
    written = sum(p.value for p in m["aurora_storage.client.bytes_written"])
    assert written >= 10 * 100
    read = sum(p.value for p in m["aurora_storage.client.bytes_read"])
    assert read >= 10 * 100
    for points in m.values():
        for p in points:
            assert "aurora_storage.tenant" not in p.attributes  # cardinality


def test_errors_are_counted_by_type_and_marked_on_the_span(otel: Otel, tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 's'}?map_size=256KiB&max_map_size=256KiB"
    repo = otel.instrument(aurora_storage.open(url))
    with pytest.raises(aurora_storage.StorageFullError):
        repo.put("acme", "big", b"x".hex() * 400_000)
    repo.close()
    spans = otel.spans.get_finished_spans()
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert [attrs(s)["error.type"] for s in failed] == ["StorageFullError"]
    errors = otel.metrics()["aurora_storage.client.errors"]
    assert [(p.attributes["error.type"], p.value) for p in errors] == [("StorageFullError", 1)]


def test_tenant_attribute_is_an_option(otel: Otel) -> None:
    with otel.instrument(aurora_storage.open("memory://"), include_tenant=True) as repo:
        repo.put("acme", "k", 1)
        list(repo.items("acme"))
    assert {attrs(s)["aurora_storage.tenant"] for s in otel.spans.get_finished_spans()} == {"acme"}


def test_url_option_and_uninstrument(tmp_path: Path) -> None:
    repo = aurora_storage.open(f"lmdb://{tmp_path / 's'}?otel=true")
    assert instrumented(repo)
    repo.put("acme", "k", 1)
    uninstrument(repo)
    assert not instrumented(repo)
    assert repo.get("acme", "k") == 1
    repo.close()
    with pytest.raises(aurora_storage.InvalidURLError):
        aurora_storage.open("memory://?otel=maybe")
    plain = aurora_storage.open("memory://")
    assert not isinstance(plain.backend, InstrumentedBackend)
    plain.close()


def test_engine_extras_still_work_through_the_wrapper(otel: Otel, tmp_path: Path) -> None:
    with otel.instrument(aurora_storage.open(f"rocksdb://{tmp_path / 's'}")) as repo:
        repo.put("acme", "k", 1)
        repo.checkpoint(tmp_path / "cp")
        repo.compact()
        assert repo.stats()["backend"] == "rocksdb"
    with aurora_storage.open(f"rocksdb://{tmp_path / 'cp'}") as copy:
        assert copy.get("acme", "k") == 1


def test_slow_operations_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    repo = instrument(aurora_storage.open("memory://"), slow_ms=0.0, spans=False, metrics=False)
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        repo.put("acme", "k", 1)
    assert any("slow put on memory" in r.getMessage() for r in caplog.records)
    repo.close()
