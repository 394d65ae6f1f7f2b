"""Cache mode: after a kill, a cold restored from an older backup leaves no phantom in hot.

A breaker found (round 3): a cache-mode pair records hot's position lazily (every
``trim_every`` writes, and at ``close()``). The writer was SIGKILLed with writes in hot
past the recorded position, and cold was restored from an older backup of the same
timeline, so the change-log entry at hot's recorded position still carried the nonce hot
recorded: the open accepted hot as it was, and hot went on serving the records written
after that position - values cold no longer had (new keys, and new values of old keys).
docs/tiered.md promised that hot is derived again when a tier is restored.

Now a cache-mode pair marks hot as in use at open (``RUNNING``) and clears the mark in
the batch that records the exact position at a clean ``close()``. An open that finds
the mark (the last run ended uncleanly: hot may hold writes past its position) first
drops from hot every record whose value cold does not hold, then catches up: hot never
serves a value cold does not have, and what it still holds stays cached.

Real child processes (tiered_writer_child.py) SIGKILLed; real LMDB hot, and RocksDB or
LMDB cold copied with their files closed (a backup and a restore).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from tiered_writers import Writer

import aurora_storage
from aurora_storage.tiered import TieredRepository
from aurora_storage.tiered._log import RUNNING

KEYS = [f"k{i}" for i in range(5)]
LATER = [f"k{i}" for i in range(5, 10)]


def _urls(d: Path, cold_engine: str) -> tuple[str, str]:
    return f"lmdb://{d}/hot", f"{cold_engine}://{d}/cold"


def _pair(hot: str, cold: str) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold), trim_every=1024
    )


def _killed_writer(hot: str, cold: str) -> None:
    """A writer (trim_every 1024: hot's position stays where the clean close left it)
    that writes new keys, overwrites k0, and is SIGKILLed."""
    w = Writer(hot, cold, "cache", trim_every=1024)
    for k in LATER:
        assert w.put(k) == "ok"
    assert w.send("put k0 changed") == "ok"
    w.kill()


@pytest.mark.parametrize("cold_engine", ["rocksdb", "lmdb"])
def test_no_phantom_after_kill_and_older_cold(tmp_path: Path, cold_engine: str) -> None:
    hot, cold = _urls(tmp_path, cold_engine)
    r = _pair(hot, cold)
    for k in KEYS:
        r.put("t", k, k)
    r.close()  # hot's position recorded exactly: 5
    shutil.copytree(tmp_path / "cold", tmp_path / "cold-backup")
    _killed_writer(hot, cold)
    shutil.rmtree(tmp_path / "cold")
    shutil.copytree(tmp_path / "cold-backup", tmp_path / "cold")  # history back to 5
    r = _pair(hot, cold)
    try:
        assert {k: r.get("t", k) for k in KEYS + LATER} == {
            **{k: k for k in KEYS},
            **dict.fromkeys(LATER),
        }
        assert r.hot.get("t", "k0") in (None, "k0")  # hot never holds cold's past
        assert all(r.hot.get("t", k) is None for k in LATER)
        assert r.lag == 0
        r.put("t", "k9", "again")  # entry 6 again, on the restored timeline
        assert r.get("t", "k9") == "again"
    finally:
        r.close()
    r = _pair(hot, cold)
    try:
        assert dict(r.hot.items("t")) == dict(r.cold.items("t"))
    finally:
        r.close()


def test_kill_without_restore_keeps_the_cache(tmp_path: Path) -> None:
    """The same kill, cold untouched: nothing is lost, and what hot held stays cached
    (only values cold does not hold are dropped: none here)."""
    hot, cold = _urls(tmp_path, "rocksdb")
    r = _pair(hot, cold)
    for k in KEYS:
        r.put("t", k, k)
    r.close()
    _killed_writer(hot, cold)
    r = _pair(hot, cold)
    try:
        expected = {**{k: k for k in KEYS}, **{k: k for k in LATER}, "k0": "changed"}
        assert dict(r.hot.items("t")) == expected  # still warm
        assert {k: r.get("t", k) for k in expected} == expected
        assert r.lag == 0
    finally:
        r.close()


def test_clean_close_clears_the_mark(tmp_path: Path) -> None:
    hot, cold = _urls(tmp_path, "rocksdb")
    r = _pair(hot, cold)
    r.put("t", "k", "v")
    assert r.hot.backend.get(RUNNING) is not None  # in use
    r.close()
    with aurora_storage.open(hot) as h:
        assert h.backend.get(RUNNING) is None
