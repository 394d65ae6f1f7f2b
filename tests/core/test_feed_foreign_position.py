"""A position a feed never gave - another store's, or this store's from before a
compacting copy restarted its transaction ids - is refused (PositionExpiredError), not
taken as a place in this feed: taken, it would skip every change up to it without a
word (seen on the in-process feeds and the LMDB change log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import PositionExpiredError

URLS = {
    "memory": "memory://",
    "rocksdb": "rocksdb://{d}/{name}",
    "lmdb": "lmdb://{d}/{name}",
    "lmdb-change-log": "lmdb://{d}/{name}?change_log=true",
}


def _open(kind: str, d: Path, name: str) -> Any:
    # Any: an lmdb:// store opens as the LMDB repository, which adds copy()
    return aurora_storage.open(URLS[kind].format(d=d, name=name))


@pytest.mark.parametrize("kind", list(URLS))
def test_another_stores_position_is_refused_not_skipped_to(tmp_path: Path, kind: str) -> None:
    busy = _open(kind, tmp_path, "busy")
    quiet = _open(kind, tmp_path, "quiet")
    try:
        busy.last_position()  # the in-process feeds start recording at first use
        quiet.last_position()
        for i in range(60):
            busy.put("t", i, i)
        foreign = busy.last_position()
        quiet.put("t", "first", 1)
        assert quiet.last_position() < foreign
        with pytest.raises(PositionExpiredError) as info:
            next(iter(quiet.watch("t", after=foreign, timeout=0.5)))
        assert info.value.position == foreign
        assert "last_position()" in str(info.value)
        # The feed's own positions still work: nothing missed from its last one.
        own = quiet.last_position()
        quiet.put("t", "second", 2)
        assert [c.key for c in quiet.watch("t", after=own, timeout=0.5)] == ["second"]
    finally:
        busy.close()
        quiet.close()


def test_a_position_from_before_a_compacting_copy_is_refused(tmp_path: Path) -> None:
    """LMDB without a change log: the in-process feed numbers positions by transaction
    id, which a compacting copy restarts; a position saved from the source must not
    make a watcher of the copy skip the copy's new changes."""
    src = _open("lmdb", tmp_path, "src")
    src.last_position()
    for i in range(200):
        src.put("t", i, i)
    saved = src.last_position()
    src.copy(str(tmp_path / "copy"))
    src.close()
    copy = _open("lmdb", tmp_path, "copy")
    try:
        copy.last_position()
        copy.put("t", "new", 1)
        assert copy.last_position() < saved
        with pytest.raises(PositionExpiredError):
            next(iter(copy.watch("t", after=saved, timeout=0.5)))
    finally:
        copy.close()


@pytest.mark.parametrize("query", ["lmdb://{d}/s?read_only=true", "rocksdb://{d}/r?mode=read_only"])
def test_a_read_only_store_without_a_feed_says_why(tmp_path: Path, query: str) -> None:
    """Its refusal says it is read-only and what follows other processes' commits (it
    told an lmdb:// user to use lmdb://)."""
    from aurora_storage.errors import NotSupportedError

    url = query.format(d=tmp_path)
    aurora_storage.open(url.split("?")[0]).close()  # create the store
    with aurora_storage.open(url) as ro, pytest.raises(NotSupportedError) as info:
        ro.watch("t")
    message = str(info.value)
    assert "read-only" in message
    assert "change_log=true" in message
    assert "memory://, lmdb://, rocksdb:// or nats://" not in message
