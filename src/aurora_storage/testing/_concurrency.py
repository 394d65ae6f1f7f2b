"""Conformance tests - concurrency: threads sharing a repository, and the async twin."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import aurora_storage
from aurora_storage import (
    AsyncRepository,
)
from aurora_storage.errors import (
    InvalidKeyError,
    InvalidTenantError,
    KeyExistsError,
    RepositoryClosedError,
)

from ._base import (
    Base,
    Boom,
    Repo,
)
from ._common import require

__all__ = ["AsyncTests", "ThreadTests"]


def _run_threads(n: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


class ThreadTests(Base):
    """One repository used from several threads (backends declaring ``thread_safe``)."""

    def test_concurrent_writers(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")

        def work(i: int) -> None:
            for j in range(150):
                repo.put(f"own-{i}", j, j)
                repo.put("shared", (i, j), i)
                if j % 3 == 0:
                    assert repo.delete("shared", (i, j))
                if j % 50 == 0:
                    repo.put_many(f"own-{i}", {("many", j, x): x for x in range(10)})
                assert repo.get(f"own-{i}", j) == j

        _run_threads(4, work)
        for i in range(4):
            assert repo.count(f"own-{i}") == 150 + 30
        assert repo.count("shared") == 4 * 100

    def test_concurrent_insert_single_winner(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")
        wins: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(4)

        def work(i: int) -> None:
            barrier.wait()
            for j in range(40):
                try:
                    repo.insert("t", j, i)
                except KeyExistsError:
                    continue
                with lock:
                    wins.append(j)

        _run_threads(4, work)
        assert sorted(wins) == list(range(40))

    def test_readers_see_whole_batches(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")
        require(repo, "atomic_batches", "readers can only see whole batches if they are atomic")
        size = 10
        stop = threading.Event()

        def work(i: int) -> None:
            if i == 0:
                try:
                    for n in range(60):
                        with repo.batch() as b:
                            for x in range(size):
                                b.put("t", (n, x), x)
                finally:
                    stop.set()
            else:
                while not stop.is_set():
                    assert repo.count("t") % size == 0
                    assert len(repo.list("t")) % size == 0

        _run_threads(3, work)
        assert repo.count("t") == 600

    def test_scan_while_writing(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")
        repo.put_many("t", {i: i for i in range(200)})
        stop = threading.Event()

        def work(i: int) -> None:
            if i == 0:
                try:
                    for n in range(300):
                        repo.put("t", 1000 + n, n)
                        repo.delete("t", 1000 + n - 1)
                finally:
                    stop.set()
            else:
                while not stop.is_set():
                    keys = [k for k in repo.keys("t") if k < 200]
                    assert keys == list(range(200))

        _run_threads(2, work)


class AsyncTests(Base):
    """The AsyncRepository twin over the same store."""

    def test_async_round_trip(self, repo: Repo) -> None:
        arepo: AsyncRepository[Any, Any] = AsyncRepository(repo)

        async def main() -> None:
            await arepo.put("t", "k", {"v": 1})
            assert await arepo.get("t", "k") == {"v": 1}
            assert await arepo.get("t", "x", 5) == 5
            assert await arepo.has("t", "k")
            await arepo.insert("t", "i", 1)
            with pytest.raises(KeyExistsError):
                await arepo.insert("t", "i", 2)
            assert await arepo.put_many("t", {n: n for n in range(300)}) == 300
            assert await arepo.get_many("t", [1, 2, "nope"]) == [1, 2, None]
            assert await arepo.count("t") == 302
            keys = [k async for k in arepo.keys("t")]
            assert len(keys) == 302
            assert keys[:300] == list(range(300))
            assert [v async for v in arepo.values("t", limit=3)] == [0, 1, 2]
            items = [kv async for kv in arepo.items("t", start=10, stop=13)]
            assert items == [(10, 10), (11, 11), (12, 12)]
            assert (await arepo.list("t"))[-2:] == ["i", "k"]
            assert await arepo.delete_many("t", [0, 1, "zzz"]) == 2
            assert await arepo.delete("t", "k") is True
            assert [t async for t in arepo.tenants()] == ["t"]
            assert await arepo.drop_tenant("t") == 299
            assert isinstance(await arepo.stats(), dict)

        asyncio.run(main())

    def test_async_batch_and_view(self, repo: Repo) -> None:
        arepo: AsyncRepository[Any, Any] = AsyncRepository(repo)

        async def main() -> None:
            async with arepo.batch() as b:
                b.put("a", 1, 1)
                b.put("b", 2, 2)
            assert await arepo.get("b", 2) == 2

            async def failing_block() -> None:
                async with arepo.batch() as b:
                    b.put("a", 3, 3)
                    raise Boom

            with pytest.raises(Boom):
                await failing_block()
            assert not await arepo.has("a", 3)
            view = arepo.tenant("a")
            await view.put("x", 1)
            assert await view.get("x") == 1
            assert await view.count() == 2
            assert await view.drop() == 2

        asyncio.run(main())

    def test_async_bad_input_and_close(self, repo: Repo) -> None:
        arepo: AsyncRepository[Any, Any] = AsyncRepository(repo)

        async def main() -> None:
            with pytest.raises(InvalidTenantError):
                await arepo.put("", "k", 1)
            with pytest.raises(InvalidKeyError):
                await arepo.put("t", float("nan"), 1)
            with pytest.raises(InvalidKeyError):
                await arepo.put_many("t", [("a", 1), (object(), 2)])
            assert await arepo.count("t") == 0
            await arepo.put_many("t", {n: n for n in range(200)})
            it = arepo.keys("t")
            await it.__anext__()
            await arepo.close()
            assert arepo.closed
            with pytest.raises(RepositoryClosedError):
                await arepo.get("t", 1)
            with pytest.raises(RepositoryClosedError):
                await arepo.put("t", 1, 1)
            with pytest.raises(RepositoryClosedError):
                await arepo.count("t")
            with pytest.raises(RepositoryClosedError):
                [k async for k in it]

        asyncio.run(main())

    def test_open_async(self, store_url: str) -> None:
        async def main() -> None:
            async with aurora_storage.open_async(store_url) as arepo:
                await arepo.put("t", "k", 1)
                assert await arepo.get("t", "k") == 1
            assert arepo.closed

        asyncio.run(main())
