"""A read-only open of a store that has no clean-close record (a backup copy, a restored
or copied store) checks its structure like any open of a file not known clean, unless
another process has it open (liblmdb's lock on lock.mdb tells). Before, such an open
skipped the check: one flipped bit in a branch page of a compact copy made scans,
counts and exports silently miss about a tenth of the records, exit 0."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import CorruptionError

_RECORDS = 20_000


def _compact_copy(tmp_path: Path) -> Path:
    """A store of 20,000 records, and a compact copy of it (what `backup` writes: a
    data file only, no record or gate file)."""
    src, copy = tmp_path / "src", tmp_path / "copy"
    rnd = random.Random(1)
    with aurora_storage.open(f"lmdb://{src}") as r:
        for c in range(4):
            r.put_many("t", {(c, i): {"x": rnd.randbytes(100).hex(), "i": i} for i in range(5000)})
        copy.mkdir()
        r.copy(str(copy), compact=True)  # type: ignore[attr-defined]  # LMDBRepository.copy
    assert sorted(os.listdir(copy)) == ["data.mdb"]
    return copy


def _flip_near_the_end(data_file: Path) -> None:
    """Flip one bit 100 bytes before the end of a compact copy's data file: in its last
    page, the root branch page of the main tree."""
    with open(data_file, "r+b") as f:
        at = os.path.getsize(data_file) - 100
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 1]))


def test_a_damaged_copy_is_refused_by_a_read_only_open(tmp_path: Path) -> None:
    copy = _compact_copy(tmp_path)
    _flip_near_the_end(copy / "data.mdb")
    with pytest.raises(CorruptionError, match="failed verification"):
        aurora_storage.open(f"lmdb://{copy}?read_only=true")


def test_a_healthy_copy_is_checked_when_opened_read_only_and_reads_whole(tmp_path: Path) -> None:
    copy = _compact_copy(tmp_path)
    with aurora_storage.open(f"lmdb://{copy}?read_only=true") as r:
        assert r.stats()["verified_at_open"] is True
        assert r.count("t") == _RECORDS
    # verify=false opts out, as for any open.
    with aurora_storage.open(f"lmdb://{copy}?read_only=true&verify=false") as r:
        assert r.stats()["verified_at_open"] is False


# Opens the environment with liblmdb alone (no record of this library), prints "open",
# holds it until stdin closes.
_HOLDER = """
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, max_dbs=0)
print("open", flush=True)
sys.stdin.read()
env.close()
"""


def test_a_copy_another_process_has_open_is_not_walked(tmp_path: Path) -> None:
    copy = _compact_copy(tmp_path)
    shutil.copy(copy / "data.mdb", tmp_path / "data.mdb.orig")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(copy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"open"
        # In use by another process: its file may change under an outside walk, so
        # none is made (liblmdb's lock on lock.mdb says so).
        with aurora_storage.open(f"lmdb://{copy}?read_only=true") as r:
            assert r.stats()["verified_at_open"] is False
            assert r.count("t") == _RECORDS
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
