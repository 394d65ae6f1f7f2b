"""A RocksDB store without ``aurora-store.json`` - a checkpoint, as ``repo.checkpoint``
and ``aurora-storage backup`` write it - whose first block (the metadata record) is
damaged: the open's look at the store's first records met the damage and let the
engine's plain ``Exception`` escape, a ``PluginError`` calling itself a bug. It is a
``CorruptionError`` naming the damaged table file now. Real stores, a byte flipped."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage import errors


@pytest.fixture
def damaged_checkpoint(tmp_path: Path) -> tuple[Path, str]:
    with aurora_storage.open(f"rocksdb://{tmp_path}/s") as repo:
        repo.put_many("t", {("k", i): {"i": i, "pad": "x" * 40} for i in range(2000)})
        repo.backend.flush(memtables=True)  # type: ignore[call-arg]  # RocksDB's flush takes memtables
        repo.put_many("u", {("k", i): {"i": i} for i in range(500)})
        cp = Path(repo.checkpoint(tmp_path / "cp"))  # type: ignore[attr-defined]  # RocksDBRepository
    assert not (cp / "aurora-store.json").exists()  # (a checkpoint has no marker)
    oldest = min(glob.glob(f"{cp}/*.sst"), key=lambda p: int(os.path.basename(p)[:-4]))
    with open(oldest, "r+b") as f:  # byte 5: the first data block, the metadata record's
        f.seek(5)
        b = f.read(1)
        f.seek(5)
        f.write(bytes([b[0] ^ 0xFF]))
    return cp, oldest


@pytest.mark.parametrize("mode", ["read_only", "read_write"])
def test_open_of_an_unmarked_store_damaged_in_its_first_block_is_corruption(
    damaged_checkpoint: tuple[Path, str], mode: str
) -> None:
    cp, bad = damaged_checkpoint
    before = sorted(os.listdir(cp))
    with pytest.raises(errors.CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{cp}", mode=mode)
    assert info.value.path == bad
    assert "aurora-store.json" in str(info.value)
    assert "export --salvage" in str(info.value)
    # Nothing of ours was written: no marker, no metadata record.
    assert "aurora-store.json" not in os.listdir(cp)
    if mode == "read_only":
        assert sorted(os.listdir(cp)) == before
