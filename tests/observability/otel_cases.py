"""Shared helpers of the observability tests: OpenTelemetry SDK providers with in-memory
exporters, and readers of what they recorded."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AnyValue

from aurora_storage.observability import instrument


def attrs(span: ReadableSpan) -> Mapping[str, AnyValue]:
    """A finished span's attributes (optional in the SDK's types; every span of ours has
    some)."""
    assert span.attributes is not None
    return span.attributes


class Otel:
    """A tracer provider and a meter provider recording in memory."""

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

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def ops(self, since: int = 0) -> list[tuple[str, str]]:
        """``(db.operation.name, db.system.name)`` of the spans finished after the
        first ``since``."""
        return [
            (str(attrs(s)["db.operation.name"]), str(attrs(s)["db.system.name"]))
            for s in self.finished()[since:]
        ]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


_GLOBAL: list[Otel] = []


def global_otel() -> Otel | None:
    """One :class:`Otel` installed as OpenTelemetry's global providers (for ``?otel=true``,
    which uses them), shared by every test of the process that asks: the global providers
    can be set once per process. None if something else set them first."""
    from opentelemetry import metrics, trace

    if not _GLOBAL:
        o = Otel()
        trace.set_tracer_provider(o.tracer_provider)
        metrics.set_meter_provider(o.meter_provider)
        _GLOBAL.append(o)
    o = _GLOBAL[0]
    if trace.get_tracer_provider() is not o.tracer_provider:
        return None
    return o


def otel_fixture() -> Iterator[Otel]:
    """Body of an ``otel`` fixture (each test module declares its own)."""
    o = Otel()
    yield o
    o.shutdown()


__all__ = ["Otel", "attrs", "global_otel", "otel_fixture"]
