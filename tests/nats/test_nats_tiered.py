"""A tiered pair with a NATS hot tier (the projection, shared by every process that
reaches the servers) and a RocksDB cold tier (the history, one writer process)."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import aurora_storage
from aurora_storage.testing import (
    AsyncTests,
    BatchTests,
    LifecycleTests,
    PersistenceTests,
    PointOpsTests,
    ScanTests,
    TenantTests,
)
from aurora_storage.tiered import TieredRepository

sys.path.insert(0, str(Path(__file__).parent.parent / "tiered"))
from tiered_helpers import dump, fold_orders, iter_events


def tiered_url(nats_url: str, tmp: Path, **options: str) -> str:
    hot = quote(nats_url, safe="")
    cold = quote(f"rocksdb://{tmp}/history", safe="")
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"tiered://?hot={hot}&cold={cold}{extra}"


class TestTieredNATSConformance(
    PointOpsTests,
    ScanTests,
    BatchTests,
    TenantTests,
    LifecycleTests,
    PersistenceTests,
    AsyncTests,
):
    """The conformance sections that apply to a tiered pair in cache mode, with the hot
    tier on a real nats-server."""

    @pytest.fixture
    def store_url(self, nats_url: str, tmp_path: Path) -> str:
        return tiered_url(nats_url, tmp_path)


def _read_projection(url: str, q: Any) -> None:
    with aurora_storage.open(url) as repo:
        q.put(dump(repo))


def test_projection_is_shared_with_other_processes(nats_url: str, tmp_path: Path) -> None:
    url = tiered_url(nats_url, tmp_path, projection="orders")  # registered by tiered_helpers
    with aurora_storage.open(url) as repo:
        assert isinstance(repo, TieredRepository)
        for tenant, key, ev in iter_events(120, ("acme", "globex")):
            repo.put(tenant, key, ev)
        expected = fold_orders(repo.history)
        assert dump(repo.hot) == expected
    # Other processes read the projection straight from the bucket.
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_read_projection, args=(nats_url, q)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert got == [expected, expected]
