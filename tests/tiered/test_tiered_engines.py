"""TieredRepository over the real engines: RocksDB history (cold), LMDB projection (hot)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tiered_helpers import dump, event, fold_orders, iter_events, orders, present

import aurora_storage
from aurora_storage.testing import (
    AsyncTests,
    BadInputTests,
    BatchTests,
    LifecycleTests,
    PersistenceTests,
    PointOpsTests,
    ScanTests,
    TenantTests,
)
from aurora_storage.tiered import HotTierError, RebuildProgress, TieredRepository


def pair(tmp: Path, **kw: Any) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open(f"lmdb://{tmp}/projection"),
        cold=aurora_storage.open(f"rocksdb://{tmp}/history"),
        **kw,
    )


def url(tmp: Path, **options: str) -> str:
    hot = quote(f"lmdb://{tmp}/projection?map_size=1MiB", safe="")
    cold = quote(f"rocksdb://{tmp}/history?compression=zstd", safe="")
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"tiered://?hot={hot}&cold={cold}{extra}"


def test_projection_survives_close_and_reopen(tmp_path: Path) -> None:
    with pair(tmp_path, projection=orders) as repo:
        for tenant, key, ev in iter_events(200, ("acme", "globex", "a:b")):
            repo.put(tenant, key, ev)
        expected = fold_orders(repo.history)
    with pair(tmp_path, projection=orders) as repo:
        assert repo.recovered_on_open == 0
        assert repo.lag == 0
        assert dump(repo.hot) == expected
        assert repo.get("acme", "o-1") == expected[("acme", "o-1")]


def test_cache_mode_on_engines(tmp_path: Path) -> None:
    with pair(tmp_path) as repo:
        repo.put_many("acme", {i: {"n": i} for i in range(100)})
        assert repo.delete("acme", 5) is True
        assert repo.drop_tenant("nobody") == 0
    with pair(tmp_path) as repo:
        assert repo.count("acme") == 99
        assert dump(repo.hot) == dump(repo.cold)


def test_hot_tier_failing_at_run_time_loses_nothing(tmp_path: Path) -> None:
    repo = pair(tmp_path, projection=orders)
    repo.put("acme", (1, "e"), event("OrderCreated", "o-1", 10))
    # The projection store goes away under the writer: its engine handle closes (the
    # pair's tier repositories themselves refuse close() while the pair is open).
    repo.hot.backend.close()
    with pytest.raises(HotTierError, match="durable in the cold tier") as info:
        repo.put("acme", (2, "e"), event("OrderPaid", "o-1", 5))
    assert info.value.seq == 2
    assert repo.history.count("acme") == 2  # durable in history
    repo.close()
    with pair(tmp_path, projection=orders) as again:  # the next open repairs hot
        assert again.recovered_on_open == 1
        assert again.get("acme", "o-1") == {"status": "paid", "events": 2, "total": 15}
        assert dump(again.hot) == fold_orders(again.history)


def test_rebuild_streams_history_with_progress(tmp_path: Path) -> None:
    with pair(tmp_path, projection=orders, rebuild_chunk=100) as repo:
        for start in range(0, 1000, 250):
            repo.put_many(
                "acme",
                [
                    ((i, "e"), event("OrderCreated", f"o-{i % 13}", 1))
                    for i in range(start, start + 250)
                ],
            )
        seen: list[RebuildProgress] = []
        assert repo.rebuild(progress=seen.append) == 1000
        assert [p.done for p in seen] == [*range(100, 1001, 100), 1000]
        assert all(p.total == 1000 for p in seen)
        assert dump(repo.hot) == fold_orders(repo.history)


def test_open_by_url_with_tier_options(tmp_path: Path) -> None:
    with aurora_storage.open(url(tmp_path, projection="orders")) as repo:
        assert isinstance(repo, TieredRepository)
        assert repo.hot.backend.scheme == "lmdb"
        assert repo.cold.backend.scheme == "rocksdb"
        repo.put("acme", (1, "e"), event("OrderShipped", "o-1"))
    with aurora_storage.open(url(tmp_path, projection="orders")) as repo:
        assert present(repo.get("acme", "o-1"))["status"] == "shipped"


def test_async_over_engines(tmp_path: Path) -> None:
    async def main() -> None:
        arepo = aurora_storage.open_async(url(tmp_path))
        await arepo.put_many("acme", {"a": 1, "b": 2})
        assert await arepo.get("acme", "b") == 2
        assert [k async for k in arepo.keys("acme")] == ["a", "b"]
        await arepo.close()

    asyncio.run(main())


class TestTieredEnginesConformance(
    PointOpsTests,
    ScanTests,
    BatchTests,
    TenantTests,
    BadInputTests,
    LifecycleTests,
    PersistenceTests,
    AsyncTests,
):
    """The conformance suite over tiered:// in cache mode on the real engines. The
    thread and random state-machine mixins run over memory tiers only
    (test_tiered_conformance.py): on disk they take ~20 s, over the CI budget, and test
    the same tiered code."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return url(tmp_path)
