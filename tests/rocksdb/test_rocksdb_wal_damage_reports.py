"""Damaged write-ahead logs are named for what is wrong with them, and a read-only open
beside a lock holder says when it read past a cut newest log.

Real stores written by a process that is SIGKILLed (every write only in the logs),
damaged on copies.

Before: an older log with garbage after its last record, cut inside a record, or
zeroed at its tail was reported as "missing" (a log present and damaged, not named);
and while any process held the store's ``LOCK`` (not a writer), a read-only open of a
store whose newest log was cut inside a record opened with the records before the cut
- 3,000 of 3,049, an acknowledged delete undone - with no report, no warning, and
``verify`` calling it healthy.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_writer import killed_writer_store

import aurora_storage
from aurora_storage.errors import CorruptionError
from aurora_storage_rocksdb._damage import log_sequence_span, wal_files

BATCHES, PER_BATCH = 20, 100
# As tests/rocksdb/test_rocksdb_wal_chain.py: flushes wait for 10 full memtables and
# the writer fills about 7, so every log stays on disk whatever the machine's speed.
OPTIONS = "write_buffer_size=64KiB&max_write_buffer_number=12&min_write_buffer_number_to_merge=10"

_WRITER = f"""
import os, signal, sys, aurora_storage
repo = aurora_storage.open(sys.argv[1])
for b in range({BATCHES}):
    repo.put_many("t", ((b * {PER_BATCH} + j, {{"i": b * {PER_BATCH} + j, "pad": "x" * 200}})
                        for j in range({PER_BATCH})))
repo.delete("t", 0)
print("acked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

#: Holds an fcntl lock on the store's LOCK (as RocksDB does) without being a writer,
#: until its stdin closes.
_LOCKER = """
import fcntl, os, sys
f = open(os.path.join(sys.argv[1], "LOCK"), "r+")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def chained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("waldmg") / "s"
    killed_writer_store(_WRITER, f"rocksdb://{path}?{OPTIONS}")
    return path


@pytest.fixture
def store(chained_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s"
    shutil.copytree(chained_store, copy)
    return copy


def _logs(store: Path) -> list[str]:
    logs = [f for f in wal_files(str(store)) if log_sequence_span(f) is not None]
    assert len(logs) >= 3, logs  # the premise: several logs with data
    return logs


def _record_starts(data: bytes) -> list[int]:
    """Offsets of the physical records of a log's bytes (7-byte headers, 32 KiB
    blocks)."""
    out, pos = [], 0
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        out.append(pos)
        pos += 7 + (data[pos + 4] | data[pos + 5] << 8)
    return out


def _files(store: Path) -> dict[str, tuple[int, int]]:
    return {
        p.name: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in store.iterdir()
        if p.name != "rocksdict-config.json" and not p.name.startswith("LOG")
    }


def _refused(store: Path, damaged: str, words: str) -> None:
    before = _files(store)
    for query in ("", "?mode=read_only", "?mode=secondary", "?wal_recovery=point_in_time"):
        with pytest.raises(CorruptionError) as info:
            aurora_storage.open(f"rocksdb://{store}{query}").close()
        text = str(info.value)
        assert info.value.path == damaged, (query, text)
        assert os.path.basename(damaged) in text, (query, text)
        assert words in text, (query, text)
        assert "is missing" not in text, (query, text)
        assert "Restore the store from a backup" in text, (query, text)
    assert _files(store) == before


def test_garbage_after_the_last_record_of_an_older_log_is_named(store: Path) -> None:
    oldest = _logs(store)[0]
    rng = random.Random(1)
    with open(oldest, "ab") as f:
        f.write(bytes(rng.randrange(256) for _ in range(500)))
    _refused(store, oldest, "garbage after its last whole record")


def test_an_older_log_cut_inside_a_record_is_named(store: Path) -> None:
    oldest = _logs(store)[0]
    data = Path(oldest).read_bytes()
    os.truncate(oldest, _record_starts(data)[-5] + 50)
    _refused(store, oldest, "cut inside a record")


def test_a_middle_log_zeroed_at_its_tail_is_named(store: Path) -> None:
    middle = _logs(store)[1]
    data = Path(middle).read_bytes()
    start = _record_starts(data)[-3]
    Path(middle).write_bytes(data[:start] + bytes(len(data) - start))
    _refused(store, middle, "zeros from offset")


@pytest.fixture
def locked(store: Path) -> Iterator[Path]:
    """``store`` while another process (not a writer) holds its LOCK."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield store
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()


def _cut_newest(store: Path) -> str:
    """Cut the newest log in the middle of a record's payload, not at a block or page
    boundary: the acknowledged delete of record 0 (its last record) is gone."""
    newest = _logs(store)[-1]
    data = Path(newest).read_bytes()
    last = _record_starts(data)[-2]
    cut = last + 7 + 20
    assert cut % 4096
    assert cut % 32768
    os.truncate(newest, cut)
    return newest


def test_read_only_beside_a_lock_holder_reports_a_cut_newest_log(
    locked: Path, caplog: pytest.LogCaptureFixture
) -> None:
    newest = _cut_newest(locked)
    with (
        caplog.at_level(logging.WARNING, logger="aurora_storage"),
        aurora_storage.open(f"rocksdb://{locked}?mode=read_only") as repo,
    ):
        recovery = repo.stats()["recovery"]
    assert recovery is not None
    torn = recovery["torn_tail"]
    assert torn["file"] == newest
    assert torn["live_writer"] is True
    assert torn["bytes_dropped"] > 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(newest in m and "LOCK" in m for m in warned), warned


def test_verify_beside_a_lock_holder_warns_of_a_cut_newest_log(locked: Path) -> None:
    newest = _cut_newest(locked)
    r = subprocess.run(
        [sys.executable, "-m", "aurora_storage", "verify", f"rocksdb://{locked}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr, r.stderr
    assert newest in r.stderr, r.stderr
    last = r.stdout.splitlines()[-1]
    assert "torn" in last, last
    assert "LOCK" in last, last
