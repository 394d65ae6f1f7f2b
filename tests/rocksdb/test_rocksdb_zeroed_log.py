"""Zeros where records should be in a write-ahead log are refused, not skipped.

RocksDB never writes zeros into its logs, and its log reader skips them without a word:
a store whose writer acknowledged fsynced writes (``sync=true``) and was SIGKILLed opened
with those writes gone, ``stats()["recovery"]`` None and ``verify()`` healthy, once the
log was overwritten with zeros (or zeroed from any record on). An OS crash can leave
zeros (a file's new size reaching the disk before its data), so zeros in a log last
written before the machine booted are a crash's tail, dropped and reported like one;
the tests date a log's last write before the boot to stand for that crash.

A log emptied to 0 bytes cannot be told from the fresh log every flush and open
creates: the documented limit (docs/backends/rocksdb.md).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.errors import CorruptionError
from aurora_storage_rocksdb import _damage
from aurora_storage_rocksdb._damage import boot_time

BATCHES, PER_BATCH = 24, 40

_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import aurora_storage

    repo = aurora_storage.open(f"rocksdb://{sys.argv[1]}?sync=true")
    repo.put("acme", "first", 1)
    repo.flush(memtables=True)  # "first" in a table file; the batches only in the log
    for b in range(int(sys.argv[2])):
        repo.put_many("acme", {(b, i): {"b": b, "i": i} for i in range(int(sys.argv[3]))})
    print("acked", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture(autouse=True)
def _no_boot_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by a test count as written since the boot even on a machine booted
    a moment ago (the check allows two minutes of clock slack after the boot)."""
    monkeypatch.setattr(_damage, "_BOOT_SLACK", 0.0)


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose sync=true writer was SIGKILLed after BATCHES acknowledged batches,
    each one record of the write-ahead log."""
    path = tmp_path_factory.mktemp("zeroed") / "base"
    out = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), str(BATCHES), str(PER_BATCH)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "acked", out.stderr
    assert out.returncode == -9
    return path


@pytest.fixture
def store(killed: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s"
    shutil.copytree(killed, copy)
    return copy


def _wal(store: Path) -> str:
    (log,) = [f for f in glob.glob(f"{store}/*.log") if os.path.getsize(f) > 0]
    return log


def _record_starts(log: str) -> list[int]:
    """Where each logical record (one batch) of a log starts: its FULL or FIRST fragment."""
    data = Path(log).read_bytes()
    pos, starts = 0, []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        length, kind = data[pos + 4] | data[pos + 5] << 8, data[pos + 6]
        if kind in (1, 2):
            starts.append(pos)
        pos += 7 + length
    return starts


def _zero(path: str, start: int, end: int | None = None) -> None:
    end = os.path.getsize(path) if end is None else end
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(b"\0" * (end - start))


def _before_boot(path: str) -> None:
    """Date the file's last write an hour before this machine booted: the state an OS
    crash (and the reboot after it) leaves."""
    boot = boot_time()
    assert boot is not None
    os.utime(path, (boot - 3600, boot - 3600))


def _snapshot(store: Path) -> dict[str, str]:
    """The engine's files and a digest of each (its info logs aside)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.iterdir())
        if not p.name.startswith("LOG")
    }


def _batches(url: str) -> tuple[list[int], dict[str, object] | None]:
    """The whole batches a store holds, in order, and what its open recovered from."""
    with aurora_storage.open(url) as repo:
        keys = [k for k in repo.keys("acme") if k != "first"]
        assert repo.get("acme", "first") == 1
        found = sorted({b for b, _ in keys})
        assert len(keys) == len(found) * PER_BATCH  # no partial batch
        recovery = repo.stats()["recovery"]
    return found, recovery


def test_the_undamaged_store_has_every_batch(store: Path) -> None:
    assert _batches(f"rocksdb://{store}") == (list(range(BATCHES)), None)


def test_a_zeroed_log_is_refused_naming_it(store: Path) -> None:
    # The finding: every acknowledged batch gone, recovery None, verify() healthy.
    wal = _wal(store)
    size = os.path.getsize(wal)
    _zero(wal, 0)
    before = _snapshot(store)
    for query in ("", "?mode=read_only"):
        with pytest.raises(CorruptionError) as info:
            aurora_storage.open(f"rocksdb://{store}{query}")
        assert info.value.path == wal
        text = str(info.value)
        assert f"holds zeros from offset 0 to its end ({size:,} bytes)" in text
        assert "after this machine booted" in text
        # The way out is offered where it exists: a read-write open.
        assert ("wal_recovery=point_in_time" in text) == (query == "")
    assert _snapshot(store) == before  # nothing changed on disk
    # The explicit choice opens with what the table files hold and says what it dropped.
    with aurora_storage.open(f"rocksdb://{store}?wal_recovery=point_in_time") as repo:
        assert list(repo.keys("acme")) == ["first"]
        rec = repo.stats()["recovery"]
        assert rec["mode"] == "point_in_time"
        assert {"file": wal, "bytes": size, "reason": "zeros from offset 0"} in rec["dropped"]
    assert _batches(f"rocksdb://{store}") == ([], None)  # later opens are clean


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(at=st.integers(0, BATCHES - 1), crashed=st.booleans(), into=st.sampled_from([0, 2, 4]))
def test_zeros_from_a_record_on_are_damage_unless_an_os_crash_came_after(
    killed: Path, tmp_path_factory: pytest.TempPathFactory, at: int, crashed: bool, into: int
) -> None:
    """Zeros from batch ``at`` on (from its start, or ``into`` bytes into its header's
    checksum: a torn write's prefix): refused naming the log - or, in a log last written
    before the boot, opened with the batches before them and the zeros reported as the
    crash's torn tail."""
    store = tmp_path_factory.mktemp("z") / "s"
    shutil.copytree(killed, store)
    wal = _wal(store)
    size = os.path.getsize(wal)
    start = _record_starts(wal)[at]
    _zero(wal, start + into)
    url = f"rocksdb://{store}"
    if not crashed:
        before = _snapshot(store)
        with pytest.raises(CorruptionError) as info:
            aurora_storage.open(url)
        assert info.value.path == wal
        assert "where records should be" in str(info.value)
        assert _snapshot(store) == before
        return
    _before_boot(wal)
    found, recovery = _batches(url)
    assert found == list(range(at))
    assert recovery == {"mode": "strict", "torn_tail": {"file": wal, "bytes_dropped": size - start}}


@pytest.mark.parametrize("crashed", [False, True], ids=["now", "before-boot"])
def test_zeros_with_records_after_them_are_refused_in_every_mode(
    store: Path, crashed: bool
) -> None:
    # A hole: no crash leaves records after zeros, and the engine would replay them over
    # it (point_in_time included).
    wal = _wal(store)
    starts = _record_starts(wal)
    _zero(wal, starts[5], starts[8])
    if crashed:
        _before_boot(wal)
    for query in ("", "?wal_recovery=point_in_time", "?mode=read_only"):
        with pytest.raises(CorruptionError) as info:
            aurora_storage.open(f"rocksdb://{store}{query}")
        assert info.value.path == wal
        assert f"zeros from offset {starts[5]:,} with records after them" in str(info.value)
        assert "cannot help" in str(info.value)


_BIG_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import aurora_storage

    repo = aurora_storage.open(f"rocksdb://{sys.argv[1]}", codec="raw")
    repo.put("t", "small", b"a")
    repo.put("t", "big", b"\\x01" * 100_000)  # four fragments, across 32 KiB blocks
    print("acked", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_a_log_cut_between_two_fragments_is_a_torn_tail_not_zeros(
    tmp_path: Path, blocks: int
) -> None:
    """A killed writer's log that ends on a 32 KiB block boundary, between two fragments
    of its last record, holds no zeros: it opens (the documented torn tail between
    fragments), the records before it intact, instead of being refused as zeroed (a log
    ending exactly after a whole fragment read as 'zeros from offset N (0 bytes)')."""
    path = tmp_path / "s"
    out = subprocess.run(
        [sys.executable, "-c", _BIG_WRITER, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "acked", out.stderr
    (log,) = [f for f in glob.glob(f"{path}/*.log") if os.path.getsize(f) > 0]
    assert os.path.getsize(log) > blocks * 32768
    os.truncate(log, blocks * 32768)  # where a kill inside the big write() can stop it
    with aurora_storage.open(f"rocksdb://{path}", codec="raw") as repo:
        assert repo.get("t", "small") == b"a"
        assert repo.get("t", "big") is None  # its last fragments never reached the log
        assert repo.verify().ok
    with aurora_storage.open(f"rocksdb://{path}?mode=read_only", codec="raw") as repo:
        assert repo.get("t", "small") == b"a"
