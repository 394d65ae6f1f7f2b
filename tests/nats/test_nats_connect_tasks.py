"""A connection leaves no task behind on the private loop: the watcher of an
authorization refusal was cancelled only when the connect failed, so while another
repository kept the loop running, every open left one pending task, which asyncio later
logged at ERROR level as "Task was destroyed but it is pending!"."""

from __future__ import annotations

import asyncio

import aurora_storage


async def _pending_waits() -> int:
    return sum(
        1 for t in asyncio.all_tasks() if not t.done() and "Event.wait" in repr(t.get_coro())
    )


def test_opens_leave_no_pending_task_on_the_loop(nats_url: str) -> None:
    with aurora_storage.open(nats_url) as keep:  # keeps the private loop running
        loop = keep.backend._lt.loop  # type: ignore[attr-defined]  # the NATS backend's loop
        before = asyncio.run_coroutine_threadsafe(_pending_waits(), loop).result(10)
        for i in range(10):
            with aurora_storage.open(nats_url) as repo:
                repo.put("t", "k", i)
        after = asyncio.run_coroutine_threadsafe(_pending_waits(), loop).result(10)
    assert after == before
