"""Damaged RocksDB files are reported, never opened with fewer records: the write-ahead
log, the MANIFEST, CURRENT and table files (real stores written by a real process that
is SIGKILLed, then damaged on disk)."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import CorruptionError
from aurora_storage_rocksdb import _damage
from aurora_storage_rocksdb._damage import boot_time, scan_log

CHILD = str(Path(__file__).with_name("child_rocksdb.py"))

FLUSHED, IN_WAL = 2000, 3000


@pytest.fixture(autouse=True)
def _no_boot_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by a test count as written since the boot even on a machine booted
    a moment ago (the check allows two minutes of clock slack after the boot)."""
    monkeypatch.setattr(_damage, "_BOOT_SLACK", 0.0)


@pytest.fixture(scope="module")
def killed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose writer was SIGKILLed: FLUSHED records in table files, IN_WAL
    records only in the write-ahead log, then a batch of 60 large records."""
    path = tmp_path_factory.mktemp("damage") / "base"
    out = subprocess.run(
        [
            sys.executable,
            CHILD,
            "fill-and-die",
            f"rocksdb://{path}",
            str(FLUSHED),
            str(IN_WAL),
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "acked", out.stderr
    assert out.returncode == -9
    return path


@pytest.fixture
def store(killed_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s"
    shutil.copytree(killed_store, copy)
    return copy


def _wal(store: Path) -> str:
    (log,) = [f for f in glob.glob(f"{store}/*.log") if os.path.getsize(f) > 0]
    return log


def _manifest(store: Path) -> str:
    return str(store / (store / "CURRENT").read_text().strip())


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def _before_boot(path: str) -> None:
    """Date the file's last write before this machine booted: what an OS crash (and the
    reboot after it) leaves, the only state in which zeros in a log are a crash's tail."""
    boot = boot_time()
    assert boot is not None
    os.utime(path, (boot - 3600, boot - 3600))


def _all_records(url: str) -> tuple[int, int]:
    with aurora_storage.open(url) as repo:
        for i in range(FLUSHED + IN_WAL):
            value = repo.get("t", i)
            assert value is not None
            assert value["i"] == i
        return repo.count("t"), repo.count("big")


def test_undamaged_killed_store_has_every_record(store: Path) -> None:
    assert _all_records(f"rocksdb://{store}") == (FLUSHED + IN_WAL, 60)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.97])
def test_flipped_byte_in_the_wal_is_reported_naming_the_file(store: Path, where: float) -> None:
    # Finding 1: the engine's default recovery stopped at the damage and opened with
    # 400-2,200 of 3,000 records, without a word.
    wal = _wal(store)
    _flip(wal, int(os.path.getsize(wal) * where))
    before = sorted(os.listdir(store))
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert wal in str(info.value)
    assert info.value.path == wal
    assert "wal_recovery=point_in_time" in str(info.value)
    # A refused open changes no engine file (only the engine's info log rotates).
    after = sorted(os.listdir(store))
    assert [f for f in after if not f.startswith("LOG")] == [
        f for f in before if not f.startswith("LOG")
    ]


def test_point_in_time_recovery_is_explicit_and_reports_what_it_dropped(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal = _wal(store)
    _flip(wal, int(os.path.getsize(wal) * 0.5))
    with caplog.at_level(logging.WARNING, logger="aurora_storage.rocksdb"):
        repo = aurora_storage.open(f"rocksdb://{store}?wal_recovery=point_in_time")
    with repo:
        kept = repo.count("t")
        assert FLUSHED <= kept < FLUSHED + IN_WAL
        assert repo.list("t") == list(range(kept))  # a prefix: nothing after the damage
        rec = repo.stats()["recovery"]
        assert rec["mode"] == "point_in_time"
        assert rec["bytes_dropped"] > 0
        assert rec["dropped"][0]["file"] == wal
    assert any("point_in_time" in r.message and wal in r.message for r in caplog.records)
    # The damaged log was replaced: a strict open now finds a whole store.
    with aurora_storage.open(f"rocksdb://{store}") as again:
        assert again.count("t") == kept
        assert again.stats()["recovery"] is None


def test_deleted_wal_is_reported_not_opened_without_its_records(store: Path) -> None:
    # Reviewer finding: with the write-ahead log deleted the store opened with only the
    # FLUSHED records - every acknowledged write held only in the log gone, no error.
    wal = _wal(store)
    os.remove(wal)
    before = sorted(os.listdir(store))
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert "write-ahead log" in str(info.value)
    assert "is missing" in str(info.value)
    assert info.value.path == wal
    assert "wal_recovery=point_in_time" in str(info.value)
    with pytest.raises(CorruptionError):
        aurora_storage.open(f"rocksdb://{store}?mode=read_only")
    after = sorted(os.listdir(store))
    assert [f for f in after if not f.startswith("LOG")] == [
        f for f in before if not f.startswith("LOG")
    ]
    # The explicit choice keeps what the table files hold and says what was lost.
    with aurora_storage.open(f"rocksdb://{store}?wal_recovery=point_in_time") as repo:
        assert repo.count("t") == FLUSHED
        rec = repo.stats()["recovery"]
        assert rec["mode"] == "point_in_time"
        assert rec["dropped"][0] == {"file": wal, "bytes": 0, "reason": "the log file is missing"}
    with aurora_storage.open(f"rocksdb://{store}") as again:  # later opens are clean
        assert again.count("t") == FLUSHED


def test_wal_cut_inside_a_record_is_reported(store: Path) -> None:
    wal = _wal(store)
    size = os.path.getsize(wal)
    tail = scan_log(wal)
    assert not tail.torn
    cut = size // 2 + 13
    assert cut % 4096
    os.truncate(wal, cut)
    assert scan_log(wal).torn
    assert not scan_log(wal).crash_shaped
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert wal in str(info.value)


def test_crash_torn_tail_still_opens_and_is_reported(store: Path) -> None:
    # What a SIGKILL inside write() leaves: the file ends at a page boundary inside the
    # last record (the 60-record batch, never acknowledged in this scenario).
    wal = _wal(store)
    size = os.path.getsize(wal)
    cut = (size - 50_000) // 4096 * 4096
    os.truncate(wal, cut)
    tail = scan_log(wal)
    assert tail.torn
    assert tail.crash_shaped
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        assert repo.count("big") == 0  # the torn batch is dropped whole
        rec = repo.stats()["recovery"]
        assert rec["torn_tail"]["file"] == wal
        assert rec["torn_tail"]["bytes_dropped"] == cut - tail.complete_end
    assert _all_records(f"rocksdb://{store}") == (FLUSHED + IN_WAL, 0)


def test_zero_filled_tail_is_a_crash_tail(store: Path) -> None:
    # Zeros after the last record: an OS crash that extended the file without its data
    # (RocksDB's preallocation keeps the file's size) - so the log was last written
    # before the machine booted. The same zeros written since the boot are damage
    # (tests/rocksdb/test_rocksdb_zeroed_log.py).
    wal = _wal(store)
    size = os.path.getsize(wal)
    with open(wal, "ab") as f:
        f.write(b"\0" * 10_000)
    tail = scan_log(wal)
    assert tail.torn
    assert tail.crash_shaped
    assert tail.zeros_at == size
    _before_boot(wal)
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        rec = repo.stats()["recovery"]
        assert rec == {"mode": "strict", "torn_tail": {"file": wal, "bytes_dropped": 10_000}}
    assert _all_records(f"rocksdb://{store}") == (FLUSHED + IN_WAL, 60)


def test_zeros_inside_a_record_are_damage(store: Path) -> None:
    wal = _wal(store)
    size = os.path.getsize(wal)
    with open(wal, "r+b") as f:
        f.seek(size - 30_000)
        f.write(b"\0" * 30_000)
    with pytest.raises(CorruptionError):
        aurora_storage.open(f"rocksdb://{store}")


@pytest.fixture(scope="module")
def many_flushes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Finding 2's store: 20,000 records flushed in many table files, closed cleanly, so
    its MANIFEST holds one record per flush."""
    path = tmp_path_factory.mktemp("manifest") / "base"
    with aurora_storage.open(f"rocksdb://{path}?write_buffer_size=256KiB") as repo:
        for start in range(0, 20_000, 1000):
            repo.put_many("t", [(i, {"i": i, "pad": "m" * 40}) for i in range(start, start + 1000)])
    return path


@pytest.mark.parametrize("fraction", [0.5, 0.2, 0.9])
def test_truncated_manifest_is_reported_and_nothing_is_deleted(
    many_flushes: Path, tmp_path: Path, fraction: float
) -> None:
    store = tmp_path / "s"
    shutil.copytree(many_flushes, store)
    manifest = _manifest(store)
    size = os.path.getsize(manifest)
    cut = int(size * fraction)
    if scan_log(manifest).complete_end == cut:
        cut += 1
    os.truncate(manifest, cut)
    tables = sorted(glob.glob(f"{store}/*.sst"))
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert info.value.path == manifest
    assert "cut short" in str(info.value)
    assert sorted(glob.glob(f"{store}/*.sst")) == tables  # no table file deleted


def _manifest_records(manifest: str) -> list[int]:
    """Where each record of a MANIFEST starts (each edit fits one 32 KiB block here)."""
    data = Path(manifest).read_bytes()
    pos, starts = 0, []
    while pos + 7 <= len(data):
        starts.append(pos)
        pos += 7 + (data[pos + 4] | data[pos + 5] << 8)
    assert pos == len(data)
    return starts


@pytest.mark.parametrize("crashed", [False, True], ids=["now", "before-boot"])
def test_zeroed_manifest_tail_is_reported_and_nothing_is_deleted(
    many_flushes: Path, tmp_path: Path, crashed: bool
) -> None:
    # Zeros from a record boundary on: RocksDB read the MANIFEST up to them, opened with
    # 9,000 of 20,000 records and deleted 4 of 7 table files, without a word. After an
    # OS crash (the file last written before the boot) zeros can only stand for the
    # edit being written, never acknowledged nor acted on: opened then.
    store = tmp_path / "s"
    shutil.copytree(many_flushes, store)
    manifest = _manifest(store)
    starts = _manifest_records(manifest)
    tables = sorted(glob.glob(f"{store}/*.sst"))
    if crashed:
        cut = starts[-1]  # the last edit, as an OS crash could leave it
        with open(manifest, "r+b") as f:
            f.seek(cut)
            f.write(b"\0" * (os.path.getsize(manifest) - cut))
        _before_boot(manifest)
        with aurora_storage.open(f"rocksdb://{store}") as repo:
            assert repo.count("t") == 20_000
        return
    cut = starts[len(starts) // 2]
    with open(manifest, "r+b") as f:
        f.seek(cut)
        f.write(b"\0" * (os.path.getsize(manifest) - cut))
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert info.value.path == manifest
    assert f"holds zeros from offset {cut:,} to its end" in str(info.value)
    assert "delete the table files" in str(info.value)
    assert sorted(glob.glob(f"{store}/*.sst")) == tables  # no table file deleted


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_flipped_manifest_byte_is_reported(
    many_flushes: Path, tmp_path: Path, where: float
) -> None:
    store = tmp_path / "s"
    shutil.copytree(many_flushes, store)
    manifest = _manifest(store)
    _flip(manifest, int(os.path.getsize(manifest) * where))
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert manifest in str(info.value)


def test_damaged_current_is_reported(many_flushes: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(many_flushes, store)
    (store / "CURRENT").write_text("MANIFEST-9x\n")
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert info.value.path == str(store / "CURRENT")
    (store / "CURRENT").write_text("")
    with pytest.raises(CorruptionError):
        aurora_storage.open(f"rocksdb://{store}")


def test_truncated_table_file_is_reported_naming_it(many_flushes: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    shutil.copytree(many_flushes, store)
    sst = sorted(glob.glob(f"{store}/*.sst"))[0]
    os.truncate(sst, os.path.getsize(sst) // 2)
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    assert sst in str(info.value)


@pytest.mark.parametrize("which", [0, -1])
def test_flipped_table_byte_is_reported_when_read(
    many_flushes: Path, tmp_path: Path, which: int
) -> None:
    store = tmp_path / "s"
    shutil.copytree(many_flushes, store)
    sst = sorted(glob.glob(f"{store}/*.sst"))[which]
    _flip(sst, 100)  # inside the first data block
    # The first table holds the metadata record (read at open); the others are read by
    # the scan. Either way the error names the file.
    with pytest.raises(CorruptionError) as info, aurora_storage.open(f"rocksdb://{store}") as repo:
        list(repo.items("t"))
    assert sst in str(info.value)
    assert info.value.path == sst
