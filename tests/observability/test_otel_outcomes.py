"""What a span and the metrics say of each outcome: a refused condition and a cancelled
write are expected outcomes, recorded alike for every operation and never under an
internal class name; batches carry their size and tenant; only written bytes count
(breaker round of 2026-12-03)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from otel_cases import Otel, attrs, otel_fixture

import aurora_storage
from aurora_storage.errors import InvalidArgumentError, InvalidURLError
from aurora_storage.observability import InstrumentedBackend, instrument, uninstrument


@pytest.fixture
def otel() -> Iterator[Otel]:
    yield from otel_fixture()


def instrumented(repo: Any) -> bool:
    """Whether ``repo`` reads and writes through the observability layer."""
    return isinstance(repo.backend, InstrumentedBackend)


@pytest.fixture(params=["memory", "lmdb", "rocksdb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"{request.param}://{tmp_path / 's'}"


def test_a_refused_condition_is_recorded_alike_for_insert_batch_and_compare_and_set(
    otel: Otel, url: str
) -> None:
    repo = otel.instrument(aurora_storage.open(url))
    repo.put("acme", "k", 1)

    def in_batch() -> None:
        with repo.batch() as b:
            b.insert("acme", "k", 2)

    attempts: list[tuple[Callable[[], object], type[BaseException]]] = [
        (lambda: repo.insert("acme", "k", 2), aurora_storage.KeyExistsError),
        (in_batch, aurora_storage.KeyExistsError),
        (lambda: repo.compare_and_set("acme", "k", 3, version=None), Exception),
    ]
    for attempt, error in attempts:
        n = len(otel.finished())
        with pytest.raises(error):
            attempt()
        (span,) = otel.finished()[n:]
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in attrs(span)
        assert attrs(span)["aurora_storage.outcome"] == "condition_failed"
        assert not span.events  # no exception recorded
    repo.close()
    m = otel.metrics()
    assert "aurora_storage.client.errors" not in m
    refused = [
        p
        for p in m["db.client.operation.duration"]
        if p.attributes.get("aurora_storage.outcome") == "condition_failed"
    ]
    assert sum(p.count for p in refused) == 3
    assert all("error.type" not in p.attributes for p in m["db.client.operation.duration"])
    # Nothing was written by the refused calls: only the put's bytes count.
    written = {
        p.attributes["db.operation.name"]: p.value for p in m["aurora_storage.client.bytes_written"]
    }
    assert set(written) == {"put"}


def test_a_cancelled_write_is_not_an_error(otel: Otel, url: str) -> None:
    repo = otel.instrument(aurora_storage.open(url), include_tenant=True)
    # The async twin's cancellation, seen by the worker before the commit point (what
    # AsyncRepository.put_many passes when its caller is cancelled), here after the
    # first item went to the engine.
    asked = iter([False, True, True])
    with pytest.raises(Exception) as caught:
        repo._put_many("acme", [("a", 1), ("b", 2)], lambda: next(asked))
    assert type(caught.value).__name__ == "Aborted"
    assert repo.get("acme", "a") is None
    (span, _get) = otel.finished()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)
    assert attrs(span)["aurora_storage.outcome"] == "cancelled"
    assert attrs(span)["aurora_storage.tenant"] == "acme"
    assert "db.operation.batch.size" not in attrs(span)  # the stream was not consumed
    assert not span.events
    repo.close()
    m = otel.metrics()
    assert "aurora_storage.client.errors" not in m
    assert "aurora_storage.client.bytes_written" not in m
    assert all("error.type" not in p.attributes for p in m["db.client.operation.duration"])


def test_real_errors_still_carry_their_type(otel: Otel, tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 's'}?map_size=256KiB&max_map_size=256KiB"
    repo = otel.instrument(aurora_storage.open(url))
    with pytest.raises(aurora_storage.StorageFullError):
        repo.put_many("acme", [("big", b"x".hex() * 400_000)])
    repo.close()
    (span,) = otel.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "StorageFullError"
    assert "aurora_storage.outcome" not in attrs(span)


def test_batches_carry_their_size_and_tenant(otel: Otel, url: str) -> None:
    repo = otel.instrument(aurora_storage.open(url), include_tenant=True)
    repo.put_many("acme", [("a", 1), ("b", 2), ("c", 3)])
    with repo.batch() as b:
        b.insert("acme", "f", 4)
        b.put("acme", "g", 5)

    async def twin() -> None:
        await repo.as_async().put_many("acme", [("x", 1), ("y", 2)])

    asyncio.run(twin())
    repo.close()
    spans = otel.finished()
    writes = [attrs(s) for s in spans if attrs(s)["db.operation.name"] in ("write", "commit")]
    assert [(a["db.operation.name"], a["db.operation.batch.size"]) for a in writes] == [
        ("write", 3),
        ("commit", 2),
        ("write", 2),
    ]
    assert {a["aurora_storage.tenant"] for a in writes} == {"acme"}


def test_only_written_bytes_count(otel: Otel, url: str) -> None:
    repo = otel.instrument(aurora_storage.open(url))
    repo.insert("acme", "k", "v")
    with pytest.raises(aurora_storage.KeyExistsError):
        repo.insert("acme", "k", "a much longer value that was never written")
    repo.close()
    (point,) = otel.metrics()["aurora_storage.client.bytes_written"]
    one = point.value
    assert one < len("a much longer value that was never written")


def test_instrument_and_uninstrument_take_an_async_repository(otel: Otel) -> None:
    ar = aurora_storage.open_async("memory://")
    assert otel.instrument(ar) is ar
    assert instrumented(ar.sync)
    asyncio.run(ar.put("acme", "k", 1))
    assert [attrs(s)["db.operation.name"] for s in otel.finished()] == ["put"]
    assert uninstrument(ar) is ar
    assert not instrumented(ar.sync)
    asyncio.run(ar.put("acme", "k", 2))
    assert len(otel.finished()) == 1
    ar.sync.close()


@pytest.mark.parametrize("call", [instrument, uninstrument])
def test_anything_else_is_refused_with_a_typed_error(call: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="Repository"):
        call(object())


def test_the_otel_option_error_lists_what_is_accepted() -> None:
    for accepted in ("yes", "1", "TRUE", "on"):
        repo = aurora_storage.open(f"memory://?otel={accepted}")
        assert isinstance(repo.backend, InstrumentedBackend)
        repo.close()
    with pytest.raises(InvalidURLError) as caught:
        aurora_storage.open("memory://?otel=maybe")
    message = str(caught.value)
    for word in ("true", "false", "yes", "no", "1", "0", "on", "off", "'maybe'"):
        assert word in message
