"""LMDB's change log: chosen at creation and recorded in the store, trimmed by
retention (an expired position raises instead of skipping)."""

from __future__ import annotations

import pytest

import aurora_storage
from aurora_storage.errors import ConfigurationError, PositionExpiredError


def test_change_log_is_recorded_in_the_store(tmp_path) -> None:
    url = f"lmdb://{tmp_path}/s?sync=false"
    with aurora_storage.open(url + "&change_log=true") as repo:
        assert repo.capabilities.multi_process_change_feed
        start = repo.last_position()
    # Opened later without the option, it still logs: every process must.
    with aurora_storage.open(url) as repo:
        assert repo.capabilities.multi_process_change_feed
        repo.put("t", "k", 1)
    with aurora_storage.open(url) as repo:
        assert [(c.key, c.value) for c in repo.watch("t", after=start, timeout=0.1)] == [("k", 1)]


def test_change_log_cannot_be_added_to_an_existing_store(tmp_path) -> None:
    url = f"lmdb://{tmp_path}/s?sync=false"
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 1)
        assert not repo.capabilities.multi_process_change_feed
    with pytest.raises(ConfigurationError, match="change_log"):
        aurora_storage.open(url + "&change_log=true")
    with aurora_storage.open(url) as repo:
        assert repo.get("t", "k") == 1


def test_trimmed_log_raises_position_expired(tmp_path) -> None:
    url = f"lmdb://{tmp_path}/s?sync=false&change_log=true&change_log_retention=10"
    with aurora_storage.open(url) as repo:
        start = repo.last_position()
        for i in range(300):  # crosses a trim point (every 256 transactions)
            repo.put("t", i, i)
        with pytest.raises(PositionExpiredError) as info:
            next(repo.watch("t", after=start, timeout=0.1))
        assert info.value.oldest > start
        # Resuming from the oldest retained position still works, in order.
        got = [c.key for c in repo.watch("t", after=info.value.oldest, timeout=0.1)]
        assert got == list(range(300 - len(got), 300))
        assert len(got) >= 10
