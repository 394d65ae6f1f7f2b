"""An async ``watch()`` is subscribed to the change feed only while it waits: one left
by cancellation, by ``break`` or by an exception leaves no subscription behind (each
one would otherwise be called on every later commit of the store), and a watch that
waits still wakes for the next commit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import aurora_storage

BACKENDS = ["memory", "rocksdb", "lmdb", "lmdb-log"]


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "lmdb":
        return f"lmdb://{tmp_path}/store?sync=false"
    if backend == "lmdb-log":
        return f"lmdb://{tmp_path}/store?sync=false&change_log=true"
    return f"rocksdb://{tmp_path}/store"


def _subscribers(arepo: Any) -> int:
    # The in-process feeds (RecentChanges, LMDB's change log) keep their subscribers in
    # a dict: its size is what every commit pays for.
    feed = arepo.sync.backend.change_feed()
    return len(feed._subscribers)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelled_and_broken_async_watches_leave_no_subscription(
    backend: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with aurora_storage.open_async(_url(backend, tmp_path)) as arepo:

            async def follow() -> None:
                async for _ in arepo.watch("t"):
                    pass

            # Cancelled while waiting (asyncio.wait_for, a TaskGroup, a shutdown).
            for _ in range(200):
                task = asyncio.create_task(follow())
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert _subscribers(arepo) == 0
            # Cut short by wait_for's timeout.
            for _ in range(20):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(follow(), 0.001)
            assert _subscribers(arepo) == 0
            # Left by `break` (no `async with`, no aclose()).
            p = await arepo.last_position()
            await arepo.put("t", "k", 0)
            for _ in range(200):
                async for _change in arepo.watch("t", after=p):
                    break
            assert _subscribers(arepo) == 0

            # Left by an exception raised in the loop body.
            async def fail_in_body() -> None:
                async for _change in arepo.watch("t", after=p):
                    raise LookupError

            for _ in range(20):
                with pytest.raises(LookupError):
                    await fail_in_body()
            assert _subscribers(arepo) == 0
            # Ended by its timeout.
            async for _change in arepo.watch("t", timeout=0.01):
                pass
            assert _subscribers(arepo) == 0

    asyncio.run(main())


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_async_watch_still_wakes_for_the_next_commit(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with aurora_storage.open_async(_url(backend, tmp_path)) as arepo:
            got: list[Any] = []
            waiting = asyncio.Event()

            async def follow() -> None:
                w = arepo.watch("t")
                waiting.set()
                async for change in w:
                    got.append(change.key)
                    if len(got) == 3:
                        break

            task = asyncio.create_task(follow())
            await waiting.wait()
            for i in range(3):
                # Let the watch reach its wait (subscribed) before each commit.
                for _ in range(5):
                    await asyncio.sleep(0)
                await arepo.put("t", i, i)
            await asyncio.wait_for(task, 30)
            assert got == [0, 1, 2]
            assert _subscribers(arepo) == 0

            # close() from another task ends a waiting watch, and unsubscribes it.
            w = arepo.watch("t")

            async def drain() -> int:
                return len([c async for c in w])

            task2 = asyncio.create_task(drain())
            for _ in range(5):
                await asyncio.sleep(0)
            assert _subscribers(arepo) == 1
            w.close()
            assert await asyncio.wait_for(task2, 30) == 0
            assert _subscribers(arepo) == 0

    asyncio.run(main())
