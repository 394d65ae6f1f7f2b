"""An OpenTelemetry provider that fails while the tracer or the metric instruments are
made (a broken SDK or exporter setup) is a telemetry failure like any other: logged
once on ``aurora_storage.observability`` with the provider's error, never raised; the
repository works, instrumented with what could be set up.

Breaker round of 2026-12-03 (third session): with a global ``MeterProvider`` whose
``get_meter`` raised, ``open("lmdb:...?otel=true")`` raised the provider's raw
``RuntimeError`` (after creating the store's files), and ``instrument(repo,
meter_provider=...)`` raised it too.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from otel_cases import Otel, otel_fixture

import aurora_storage
from aurora_storage.observability import InstrumentedBackend, instrument


@pytest.fixture
def otel() -> Iterator[Otel]:
    yield from otel_fixture()


class BadMeterProvider(MeterProvider):
    """The SDK's meter provider, whose ``get_meter`` fails."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("get_meter boom")


class BadTracerProvider(TracerProvider):
    """The SDK's tracer provider, whose ``get_tracer`` fails."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("get_tracer boom")


class _HalfMeter:
    """The SDK's meter, except that its counters cannot be made."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter

    def create_histogram(self, *args: Any, **kwargs: Any) -> Any:
        return self.meter.create_histogram(*args, **kwargs)

    def create_counter(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("create_counter boom")


class HalfMeterProvider(MeterProvider):
    """The SDK's meter provider, whose meters make histograms but no counters."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return _HalfMeter(super().get_meter(*args, **kwargs))


def _setup_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aurora_storage.observability" and "could not be set up" in r.getMessage()
    ]


def _use(repo: Any) -> None:
    repo.put("acme", "k", 1)
    assert repo.get("acme", "k") == 1
    with repo.batch() as b:
        b.put("acme", "j", 2)
    assert repo.list("acme") == ["j", "k"]


@pytest.mark.parametrize("engine", ["memory", "lmdb"])
def test_instrument_with_a_failing_meter_provider_keeps_spans(
    engine: str, tmp_path: Path, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    url = "memory:" if engine == "memory" else f"lmdb:{tmp_path / 's'}"
    bad = BadMeterProvider()
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        repo = instrument(
            aurora_storage.open(url), tracer_provider=otel.tracer_provider, meter_provider=bad
        )
        with repo:
            assert isinstance(repo._backend, InstrumentedBackend)
            _use(repo)
    (message,) = _setup_warnings(caplog)
    assert "meter provider failed (RuntimeError: get_meter boom)" in message
    assert "without metrics" in message
    assert [op for op, _ in otel.ops()] == ["put", "get", "write", "scan"]
    assert otel.metrics() == {}
    bad.shutdown()


def test_instrument_with_a_failing_tracer_provider_keeps_metrics(
    tmp_path: Path, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    bad = BadTracerProvider()
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        repo = instrument(
            aurora_storage.open(f"lmdb:{tmp_path / 's'}"),
            tracer_provider=bad,
            meter_provider=otel.meter_provider,
        )
        with repo:
            _use(repo)
    (message,) = _setup_warnings(caplog)
    assert "tracer provider failed (RuntimeError: get_tracer boom)" in message
    assert "without spans" in message
    assert otel.finished() == []
    assert len(otel.metrics()["db.client.operation.duration"]) >= 3
    bad.shutdown()


def test_instrument_with_both_providers_failing_keeps_the_repository_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"lmdb:{tmp_path / 's'}"
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        repo = instrument(
            aurora_storage.open(url),
            tracer_provider=BadTracerProvider(),
            meter_provider=BadMeterProvider(),
            slow_ms=60_000,
        )
        with repo:
            _use(repo)
    warnings = _setup_warnings(caplog)
    assert len(warnings) == 2
    assert any("get_tracer boom" in w for w in warnings)
    assert any("get_meter boom" in w for w in warnings)
    with aurora_storage.open(url) as again:  # closed and unlocked: opens again
        assert again.get("acme", "j") == 2


def test_metrics_are_all_or_none_when_an_instrument_cannot_be_made(
    tmp_path: Path, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    half = HalfMeterProvider()
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        repo = instrument(
            aurora_storage.open(f"lmdb:{tmp_path / 's'}"),
            tracer_provider=otel.tracer_provider,
            meter_provider=half,
        )
        with repo:
            _use(repo)
            assert isinstance(repo._backend, InstrumentedBackend)
            telemetry = repo._backend.t
    (message,) = _setup_warnings(caplog)
    assert "create_counter boom" in message
    assert (telemetry.duration, telemetry.rows, telemetry.errors) == (None, None, None)
    assert telemetry.tracer is not None
    half.shutdown()


def test_a_tiered_pair_logs_the_failure_once(
    tmp_path: Path, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    from urllib.parse import quote

    hot = quote(f"lmdb://{tmp_path / 'hot'}", safe="")
    cold = quote(f"lmdb://{tmp_path / 'cold'}", safe="")
    bad = BadMeterProvider()
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        repo = instrument(
            aurora_storage.open(f"tiered://?hot={hot}&cold={cold}"),
            tracer_provider=otel.tracer_provider,
            meter_provider=bad,
        )
        with repo:
            repo.put("acme", "k", 1)
            assert repo.get("acme", "k") == 1
    (message,) = _setup_warnings(caplog)
    assert "the tiered pair" in message
    assert otel.finished()  # each tier's spans
    bad.shutdown()


# ------------------------------------------------ ?otel=true with global providers

#: Run in a child process: OpenTelemetry's global providers can be set once per process.
_CHILD = textwrap.dedent(
    """
    import json, logging, sys
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import aurora_storage

    class BadMeterProvider(MeterProvider):
        def get_meter(self, *a, **k):
            raise RuntimeError("get_meter boom")

    class BadTracerProvider(TracerProvider):
        def get_tracer(self, *a, **k):
            raise RuntimeError("get_tracer boom")

    bad, url = sys.argv[1], sys.argv[2]
    spans = InMemorySpanExporter()
    if bad in ("meter", "both"):
        metrics.set_meter_provider(BadMeterProvider())
    if bad in ("tracer", "both"):
        trace.set_tracer_provider(BadTracerProvider())
    else:
        good = TracerProvider()
        good.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(good)
    logged = []

    class Keep(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    logging.getLogger("aurora_storage.observability").addHandler(Keep())
    with aurora_storage.open(url) as repo:
        repo.put("acme", "k", 1)
        value = repo.get("acme", "k")
    with aurora_storage.open(url.split("?")[0]) as again:  # closed, unlocked
        kept = again.get("acme", "k") if url.startswith("lmdb") else None
    print(json.dumps({
        "value": value, "kept": kept, "logged": logged,
        "spans": [s.name.split()[0] for s in spans.get_finished_spans()],
    }))
    """
)


@pytest.mark.parametrize("bad", ["meter", "tracer", "both"])
@pytest.mark.parametrize("engine", ["memory", "lmdb"])
def test_open_with_otel_true_and_a_failing_global_provider_works(
    bad: str, engine: str, tmp_path: Path
) -> None:
    url = "memory:?otel=true" if engine == "memory" else f"lmdb:{tmp_path / 's'}?otel=true"
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, bad, url],
        capture_output=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["value"] == 1
    if engine == "lmdb":
        assert out["kept"] == 1
    setup = [m for m in out["logged"] if "could not be set up" in m]
    booms = {"meter": ["get_meter boom"], "tracer": ["get_tracer boom"]}
    expected = booms.get(bad, booms["tracer"] + booms["meter"])
    assert len(setup) == len(expected), setup
    for boom, message in zip(expected, setup, strict=True):
        assert boom in message
    assert out["spans"] == ([] if bad != "meter" else ["put", "get"])
