"""``PositionExpiredError.position`` is where the watch stood when it raised (a watch
breaker found 15 of 39 errors naming a position past the ``after`` the watch was
opened with, while the docstring said "the requested position": the watch had read
on before the feed dropped the changes after it). The docstring now says so; this
pins the value: the watch's own ``position``, from which nothing was delivered."""

from __future__ import annotations

from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import PositionExpiredError


def test_expired_position_is_the_watch_position_when_it_raised() -> None:
    with aurora_storage.open("memory://") as repo:
        feed: Any = repo.backend.change_feed()
        feed._max_changes = 5  # a short retention, so the watch falls behind quickly
        start = repo.last_position()
        repo.put("t", "a", 1)
        w = repo.watch("t", after=start, timeout=0)
        assert next(w).key == "a"
        moved = w.position
        assert moved > start
        for i in range(10):  # more than the feed keeps: the changes after `moved` go
            repo.put("t", i, i)
        with pytest.raises(PositionExpiredError) as info:
            next(w)
        assert info.value.position == moved == w.position
        assert info.value.oldest > moved
