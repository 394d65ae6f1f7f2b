"""A change feed that answers a position at or before the one asked after (a backend
bug: ``ChangeFeed.read`` returns positions greater than ``after``) stops the watch with a
typed error. Before, the watch took the answer as it came: a change inside the watched
range was delivered again and again, and one outside it was read again and again
without an await - an async watch held its event loop for ever (found by a plugin
author's breaker: a dict backend whose feed also returned the record at ``after``).

The fault is injected into the memory engine's own feed, as a plugin's would be."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import StorageError


@pytest.fixture
def repeating() -> Iterator[aurora_storage.Repository[Any, Any]]:
    """A memory store whose feed also answers the change at ``after`` itself."""
    with aurora_storage.open("memory://") as repo:
        feed: Any = repo._backend.change_feed()
        read = feed.read

        def read_from(after: int, limit: int) -> list[Any]:
            at: list[Any] = [r for r in read(after - 1, limit) if r[0] == after]
            return at + list(read(after, limit))

        feed.read = read_from
        yield repo


def test_a_sync_watch_stops_on_a_repeated_position(
    repeating: aurora_storage.Repository[Any, Any],
) -> None:
    repeating.put("other", "x", 1)  # a change outside the watched tenant
    start = repeating.last_position()
    repeating.put("t", "a", 1)
    with (
        repeating.watch("t", after=start, timeout=1) as w,
        pytest.raises(StorageError, match="bug in the backend"),
    ):
        list(w)


def test_an_async_watch_stops_on_a_repeated_position(
    repeating: aurora_storage.Repository[Any, Any],
) -> None:
    repeating.put("other", "x", 1)
    start = repeating.last_position()

    async def main() -> None:
        arepo = repeating.as_async()
        async with arepo.watch("t", after=start, timeout=1) as w:
            async for _ in w:
                pass

    with pytest.raises(StorageError, match="bug in the backend"):
        asyncio.run(asyncio.wait_for(main(), 30))
