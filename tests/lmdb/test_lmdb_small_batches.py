"""LMDBBackend.write's inline path for small batches (a tiered write, an event): the
same envelopes, atomicity and recovery as the general path it falls back to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aurora_storage
from aurora_storage import encode_stored_key
from aurora_storage_lmdb import LMDBRepository


def _k(key: str) -> bytes:
    return encode_stored_key("t", key)


def test_a_small_batch_of_puts_and_deletes_is_applied_whole(tmp_path: Path) -> None:
    with LMDBRepository[Any, Any](path=tmp_path / "s", sync=False) as repo:
        repo.put("t", "gone", 0)
        repo.backend.write([(_k("a"), b"1"), (_k("gone"), None), (_k("b"), b"[2]")])
        assert repo.get_many("t", ["a", "gone", "b"]) == [1, None, [2]]
        # Stored in the store's envelope: the verifier finds every record intact.
        assert repo.verify().ok


def test_a_small_batch_that_fills_the_map_grows_it_and_is_written(tmp_path: Path) -> None:
    with LMDBRepository[Any, Any](path=tmp_path / "s", map_size="64KiB", sync=False) as repo:
        big = b'"' + b"x" * 50_000 + b'"'
        env = repo.backend._env  # type: ignore[attr-defined]  # LMDBBackend's environment
        before = env.info()["map_size"]
        repo.backend.write([(_k(f"k{i}"), big) for i in range(4)])
        got = repo.get_many("t", [f"k{i}" for i in range(4)])
        assert [len(v) if v is not None else None for v in got] == [50_000] * 4
        assert env.info()["map_size"] > before  # the inline attempt failed; the retry grew it


def test_a_small_batch_reaches_a_watch(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/s?sync=false") as repo:
        watch = repo.watch("t", after=repo.last_position(), timeout=0)
        repo.backend.write([(_k("a"), b"1"), (_k("b"), b"2")])
        assert sorted(c.key for c in watch) == ["a", "b"]
