"""The async view of a tiered pair whose cold tier is NATS goes through the pair.

A NATS backend has a native-async form, which ``AsyncRepository`` awaits directly on the
caller's loop instead of calling the repository's methods. It took the form of
``repository.backend`` - for a tiered pair, the cold backend - so every async point
operation, ``put_many``, plain batch commit and scan went straight to cold: no change-log
entry, no projection, no append-only check, reads of history instead of the projection
(cache mode: hot kept a stale value). The repository now decides whether the native form
applies: a tiered pair (and any subclass that replaces a method on that path) never gets
it; its calls run through its own methods, in a worker thread where a tier is NATS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage import AsyncRepository, Repository
from aurora_storage.errors import KeyExistsError, ReadOnlyError
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository


def _count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)
    state.put(f"seen:{record.key}", True)


def _pair(tmp_path: Path, nats_url: str, projection: Any = None) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
        cold=aurora_storage.open(nats_url),
        projection=projection,
    )


def test_async_projection_mode_over_a_nats_cold_tier_goes_through_the_pair(
    tmp_path: Path, nats_url: str
) -> None:
    repo = _pair(tmp_path, nats_url, _count)
    repo.put("t", "e1", {})
    ar = repo.as_async()

    async def main() -> None:
        # Reads are the projection's, not history's.
        assert await ar.get("t", "n") == 1
        assert await ar.has("t", "seen:e1")
        assert not await ar.has("t", "e1")
        # History is append-only through the async view too; nothing is written.
        with pytest.raises(KeyExistsError):
            await ar.put("t", "e1", {"x": 1})
        with pytest.raises(ReadOnlyError):
            await ar.delete("t", "e1")
        with pytest.raises(KeyExistsError):
            await ar.insert("t", "e1", {"x": 1})
        # Every write is logged and projected.
        await ar.put("t", "e2", {})
        await ar.insert("t", "e3", {})
        assert await ar.put_many("t", [("e4", {}), ("e5", {})]) == 2
        async with ar.batch() as b:
            b.put("t", "e6", {})
        assert await ar.get("t", "n") == 6
        assert await ar.get_many("t", ["n", "seen:e6"]) == [6, True]
        assert [k async for k in ar.keys("t", prefix="seen:")] == [
            f"seen:e{i}" for i in range(1, 7)
        ]
        assert [t async for t in ar.tenants()] == ["t"]

    asyncio.run(main())
    assert dict(repo.history.items("t")) == {f"e{i}": {} for i in range(1, 7)}
    assert repo.stats()["cold_seq"] == 5  # one change-log entry per write (put_many: one)
    assert repo.lag == 0
    assert repo.get("t", "n") == 6
    live = dict(repo.items("t"))
    repo.rebuild()  # hot is exactly what history implies
    assert dict(repo.items("t")) == live
    asyncio.run(ar.close())
    assert repo.closed


def test_async_cache_mode_over_a_nats_cold_tier_keeps_hot_in_step(
    tmp_path: Path, nats_url: str
) -> None:
    repo = _pair(tmp_path, nats_url)
    repo.put("t", "x", 1)
    ar = repo.as_async()

    async def main() -> None:
        await ar.put("t", "x", 2)
        assert repo.hot.get("t", "x") == 2  # hot written, not left stale
        assert repo.get("t", "x") == 2
        await ar.insert("t", "y", 3)
        async with ar.batch() as b:
            b.put("t", "z", 4)
            b.delete("t", "y")
        assert await ar.delete("t", "z")
        assert await ar.get("t", "x") == 2
        assert [kv async for kv in ar.items("t")] == [("x", 2)]

    asyncio.run(main())
    assert dict(repo.hot.items("t")) == {"x": 2}
    assert dict(repo.cold.items("t")) == {"x": 2}
    assert repo.lag == 0
    asyncio.run(ar.close())


def test_async_repository_wrapping_a_tiered_pair_directly_goes_through_it(
    tmp_path: Path, nats_url: str
) -> None:
    # AsyncRepository(tiered) is documented to work for the common API, too.
    repo = _pair(tmp_path, nats_url, _count)
    ar: AsyncRepository[Any, Any] = AsyncRepository(repo)
    asyncio.run(ar.put("t", "e1", {}))
    assert repo.get("t", "n") == 1
    assert repo.stats()["cold_seq"] == 1
    repo.close()


class _Audited(Repository[Any, Any]):
    """A repository whose writes do more than its backend's (they are recorded)."""

    audit: list[tuple[str, Any]]

    def put(self, tenant: str, key: Any, value: Any) -> None:
        self.audit.append((tenant, key))
        super().put(tenant, key, value)


def test_a_subclass_replacing_put_never_gets_the_native_async_path(nats_url: str) -> None:
    plain = aurora_storage.open(nats_url)
    audited = _Audited._from_backend(plain.backend)
    assert isinstance(audited, _Audited)
    audited.audit = []
    asyncio.run(audited.as_async().put("t", "k", 1))
    assert audited.audit == [("t", "k")]
    assert audited.get("t", "k") == 1
    # The plain NATS repository keeps the native path (awaited on the caller's loop).
    assert plain._native_async() is not None
    plain.close()
