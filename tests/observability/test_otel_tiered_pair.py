"""An instrumented tiered pair reports every tier operation with the engine that did it,
in both modes, sync and async, whichever way it was instrumented; ``uninstrument``
restores the plain backends (breaker round of 2026-12-03: the pair's writes kept the
backends it was built with, so they reported nothing, and ``uninstrument(tiered)``
raised ``AttributeError``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from otel_cases import Otel, global_otel, otel_fixture

import aurora_storage
from aurora_storage.observability import InstrumentedBackend, instrument, uninstrument


@pytest.fixture
def otel() -> Iterator[Otel]:
    yield from otel_fixture()


def tiered_url(tmp_path: Path, *, tier_option: str = "", pair_option: str = "") -> str:
    hot = f"lmdb://{tmp_path / 'hot'}?sync=false{tier_option}"
    cold = f"rocksdb://{tmp_path / 'cold'}{tier_option.replace('&', '?', 1)}"
    return "tiered://?hot=" + quote(hot, safe="") + "&cold=" + quote(cold, safe="") + pair_option


def project(record: Any, state: Any) -> None:
    state.put(record.value["o"], record.value)


def open_pair(url: str, mode: str) -> Any:
    if mode == "projection":
        return aurora_storage.open(url, projection=project)
    return aurora_storage.open(url)


def instrumented_tiers(t: Any) -> tuple[bool, bool]:
    return (
        isinstance(t.hot.backend, InstrumentedBackend),
        isinstance(t.cold.backend, InstrumentedBackend),
    )


def writes_and_reads(t: Any, otel: Otel, mode: str) -> None:
    """Each write reaches cold (history) then hot, each with a span naming its engine."""
    n = len(otel.finished())
    t.put("acme", ("2026", 1), {"o": "o-1"})
    put = set(otel.ops(n))
    assert ("write", "rocksdb") in put or ("commit", "rocksdb") in put
    assert ("write", "lmdb") in put or ("commit", "lmdb") in put

    n = len(otel.finished())
    t.put_many("acme", [(("2026", 2), {"o": "o-2"}), (("2026", 3), {"o": "o-3"})])
    many = set(otel.ops(n))
    assert {"rocksdb", "lmdb"} <= {system for op, system in many if op in ("write", "commit")}

    n = len(otel.finished())
    read_key: Any = "o-1" if mode == "projection" else ("2026", 1)
    assert t.get("acme", read_key) == {"o": "o-1"}
    assert ("get", "lmdb") in otel.ops(n)  # hot answered

    n = len(otel.finished())
    asyncio.run(t.as_async().put("acme", ("2026", 4), {"o": "o-4"}))
    twin = {system for op, system in otel.ops(n) if op in ("write", "commit")}
    assert twin == {"rocksdb", "lmdb"}

    if mode == "cache":
        n = len(otel.finished())
        assert t.delete("acme", ("2026", 4)) is True
        assert {"rocksdb", "lmdb"} <= {s for op, s in otel.ops(n) if op in ("write", "commit")}


@pytest.mark.parametrize("mode", ["cache", "projection"])
def test_instrument_reaches_every_tier_operation_of_a_pair(
    otel: Otel, tmp_path: Path, mode: str
) -> None:
    t = open_pair(tiered_url(tmp_path), mode)
    assert otel.instrument(t) is t
    assert instrumented_tiers(t) == (True, True)
    writes_and_reads(t, otel, mode)
    uninstrument(t)
    assert instrumented_tiers(t) == (False, False)
    n = len(otel.finished())
    t.put("acme", ("2026", 9), {"o": "o-9"})
    read_key: Any = "o-9" if mode == "projection" else ("2026", 9)
    assert t.get("acme", read_key) == {"o": "o-9"}
    assert otel.ops(n) == []  # the plain backends again, for the pair's own calls too
    t.close()


@pytest.mark.parametrize("where", ["pair", "tiers"])
def test_otel_url_option_on_a_pair_or_its_tiers(tmp_path: Path, where: str) -> None:
    otel = global_otel()
    if otel is None:
        pytest.skip("another test set the global providers (they are set once per process)")
    option = "&otel=true"
    url = (
        tiered_url(tmp_path, pair_option=option)
        if where == "pair"
        else tiered_url(tmp_path, tier_option=option)
    )
    t = open_pair(url, "cache")
    writes_and_reads(t, otel, "cache")
    uninstrument(t)  # no AttributeError, either way
    assert instrumented_tiers(t) == (False, False)
    n = len(otel.finished())
    t.put("acme", "k", {"o": "k"})
    assert otel.ops(n) == []
    t.close()


def test_uninstrument_of_a_pair_that_was_never_instrumented_is_a_no_op(tmp_path: Path) -> None:
    t = open_pair(tiered_url(tmp_path), "cache")
    assert uninstrument(t) is t
    t.put("acme", "k", 1)
    assert t.get("acme", "k") == 1
    t.close()


def test_slow_writes_of_a_pair_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = open_pair(tiered_url(tmp_path), "cache")
    instrument(t, spans=False, metrics=False, slow_ms=0.0)
    with caplog.at_level(logging.WARNING, logger="aurora_storage.observability"):
        t.put("acme", "k", 1)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("slow write on rocksdb") for m in messages), messages
    # LMDB may be written by other processes: the pair's hot batch is conditional there
    assert any(m.startswith(("slow write on lmdb", "slow commit on lmdb")) for m in messages)
    uninstrument(t)
    t.close()
