"""Concurrent first calls of one event loop on an async NATS repository share one
connection: each task that found no connection for its loop used to open its own, and
the second to finish closed its spare while holding a thread lock, so a third task
blocking on that lock in the loop's own thread froze the loop for good (3 of 5 runs
with three concurrent ``get()`` calls, every run with three async ``watch()`` calls)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import aurora_storage


def _run_bounded(coro_factory: object, seconds: float = 30.0) -> object:
    """Run ``asyncio.run(coro_factory())`` in a daemon thread; fail (rather than hang the
    suite) if it has not finished after ``seconds`` - a frozen loop never finishes."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(coro_factory())  # type: ignore[operator]  # a coroutine function
        except BaseException as exc:  # reported to the test below
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"the event loop was still running after {seconds} s: frozen")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]  # an exception instance
    return box.get("result")


@pytest.mark.parametrize("tasks", [3, 10])
def test_concurrent_first_gets(nats_url: str, tasks: int) -> None:
    with aurora_storage.open(nats_url) as repo:
        repo.put("t", "k", 1)

    async def main() -> list[object]:
        repo = aurora_storage.open_async(nats_url)
        try:
            return list(await asyncio.gather(*(repo.get("t", "k") for _ in range(tasks))))
        finally:
            await repo.close()

    assert _run_bounded(main) == [1] * tasks


def test_concurrent_first_watches(nats_url: str) -> None:
    with aurora_storage.open(nats_url) as repo:
        start = repo.last_position()
        repo.put_many("t", {"a": 1, "b": 2})

    async def main() -> list[list[object]]:
        repo = aurora_storage.open_async(nats_url)

        async def follow() -> list[object]:
            return [c.key async for c in repo.watch("t", after=start, timeout=1.0)]

        try:
            return list(await asyncio.gather(*(follow() for _ in range(3))))
        finally:
            await repo.close()

    assert _run_bounded(main) == [["a", "b"]] * 3
