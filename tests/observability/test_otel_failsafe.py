"""Telemetry that fails never changes what the caller sees: a span processor or a metric
instrument that raises is logged, and the call returns its own result or raises its own
error (breaker round of 2026-12-03: a raising ``on_end`` made committed writes raise
``RuntimeError``, and hid a real ``KeyExistsError``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

import aurora_storage
from aurora_storage.observability import instrument, uninstrument


class Raising(SpanProcessor):
    """A span processor (an exporter's, say) that fails at ``where``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.where == "start":
            raise RuntimeError("exporter on_start failed")

    def on_end(self, span: ReadableSpan) -> None:
        if self.where == "end":
            raise RuntimeError("exporter on_end failed")


class RaisingInstrument:
    """A metric instrument whose every recording fails (a broken meter provider)."""

    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("histogram failed")

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("counter failed")


class RaisingMeter:
    def create_histogram(self, *args: Any, **kwargs: Any) -> RaisingInstrument:
        return RaisingInstrument()

    def create_counter(self, *args: Any, **kwargs: Any) -> RaisingInstrument:
        return RaisingInstrument()


class RaisingMeterProvider:
    """Implements the one call ``opentelemetry.metrics.get_meter`` makes of a provider."""

    def get_meter(self, *args: Any, **kwargs: Any) -> RaisingMeter:
        return RaisingMeter()


def exercise(repo: Any) -> None:
    """Every kind of call, each checked against what the store holds afterwards."""
    repo.put("acme", "k", 1)
    assert repo.get("acme", "k") == 1
    with pytest.raises(aurora_storage.KeyExistsError):
        repo.insert("acme", "k", 2)  # its own error, not the telemetry's
    repo.insert("acme", "n", 3)
    assert repo.put_many("acme", [("a", 1), ("b", 2)]) == 2
    with repo.batch() as b:
        b.insert("acme", "c", 3)
        b.put("acme", "d", 4)
    with pytest.raises(aurora_storage.KeyExistsError), repo.batch() as b:
        b.insert("acme", "c", 5)
    assert repo.delete("acme", "a") is True
    assert repo.list("acme") == ["b", "c", "d", "k", "n"]
    assert repo.get_many("acme", ["b", "c"]) == [2, 3]
    assert repo.count("acme") == 5

    async def twin() -> None:
        ar = repo.as_async()
        assert await ar.put_many("acme", [("e", 5)]) == 1
        await ar.put("acme", "f", 6)
        assert [k async for k in ar.keys("acme")] == ["b", "c", "d", "e", "f", "k", "n"]

    asyncio.run(twin())
    uninstrument(repo)
    assert dict(repo.items("acme")) == {"b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "k": 1, "n": 3}


@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("engine", ["lmdb", "rocksdb", "memory"])
def test_a_raising_span_processor_never_changes_a_calls_outcome(
    where: str, engine: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = "memory://" if engine == "memory" else f"{engine}://{tmp_path / 's'}"
    provider = TracerProvider()
    provider.add_span_processor(Raising(where))
    repo = instrument(aurora_storage.open(url), tracer_provider=provider, metrics=False)
    with caplog.at_level(logging.DEBUG, logger="aurora_storage.observability"), repo:
        exercise(repo)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # Logged, once per kind of failure (later ones at DEBUG, not one warning per call).
    assert warnings
    assert all(f"exporter on_{where} failed" in r.getMessage() for r in warnings)
    assert len(warnings) == 1
    provider.shutdown()


def test_a_raising_metric_instrument_never_changes_a_calls_outcome(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        repo = instrument(
            aurora_storage.open(f"lmdb://{tmp_path / 's'}"),
            meter_provider=RaisingMeterProvider(),
            spans=False,
        )
        with repo:
            exercise(repo)
    assert any("histogram failed" in r.getMessage() for r in caplog.records)
