"""Opening a store with another engine's scheme: a configuration mistake, said as one.

A RocksDB URL on an LMDB store (or the reverse) found the aurora-storage marker but not
its own engine's files, and reported the store *damaged* with the advice to restore it
from a backup - advice that would make an operator throw away a healthy store. The
marker names the engine that initialised the store, so the open says which one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import ConfigurationError, CorruptionError

_OTHER = {"rocksdb": "lmdb", "lmdb": "rocksdb"}


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("engine", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("extra", ["", "OPTIONS", "READ_ONLY"])
def test_another_engines_store_is_named_not_called_damaged(
    tmp_path: Path, engine: str, extra: str
) -> None:
    store = tmp_path / "store"
    with aurora_storage.open(f"{engine}://{store}") as repo:
        repo.put("acme", "k", {"v": 1})
    before = _snapshot(store)
    wrong = _OTHER[engine]
    if extra == "READ_ONLY":
        extra = "?mode=read_only" if wrong == "rocksdb" else "?read_only=true"
    elif extra == "OPTIONS":
        extra = "?create_if_missing=false" if wrong == "rocksdb" else "?map_size=1MiB"
    with pytest.raises(ConfigurationError) as info:
        aurora_storage.open(f"{wrong}://{store}{extra}")
    assert not isinstance(info.value, CorruptionError)
    message = str(info.value)
    assert f"{engine} store" in message
    assert f"{engine}://" in message  # how to open it
    assert "backup" not in message
    assert info.value.path == os.path.abspath(store)
    # Nothing written: the store is as it was, and still opens with its own engine.
    assert _snapshot(store) == before
    with aurora_storage.open(f"{engine}://{store}") as repo:
        assert repo.get("acme", "k") == {"v": 1}


def test_a_missing_engine_file_is_still_damage(tmp_path: Path) -> None:
    # The marker naming this engine, its files gone: that remains a CorruptionError.
    store = tmp_path / "store"
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        repo.put("acme", "k", 1)
    (store / "CURRENT").unlink()
    with pytest.raises(CorruptionError, match="CURRENT"):
        aurora_storage.open(f"rocksdb://{store}")
