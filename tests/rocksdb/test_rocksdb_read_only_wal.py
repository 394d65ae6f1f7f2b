"""Every open mode judges a write-ahead log the same way: a log cut inside a record is
damage for ``mode=read_only`` and ``mode=secondary`` exactly as for a read-write open,
and the crash's torn tail a read-write open drops is reported by every mode (real
stores whose writer was SIGKILLed, the newest log truncated on a copy).

Before: the read-only open used RocksDB's ``tolerate_corrupted_tail_records`` and the
secondary its default point-in-time recovery, so a log cut anywhere opened with the
records before the cut (685 of 1,245; an acknowledged delete undone by a cut one byte
short of the end) while the read-write open refused the same files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crash_writer import killed_writer_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.errors import CorruptionError
from aurora_storage_rocksdb._damage import scan_log

N = 1200  # records acknowledged by the killed writer, then a delete of record 0

#: The writer: N puts and one delete, each acknowledged (returned), then SIGKILL: every
#: write is only in the write-ahead log, the delete its last record.
WRITER = f"""
import os, signal, sys
import aurora_storage
repo = aurora_storage.open(sys.argv[1])
for i in range({N}):
    repo.put("acme", i, {{"i": i, "pad": "w" * 40}})
repo.delete("acme", 0)
print("acked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rowal") / "base"
    killed_writer_store(WRITER, f"rocksdb://{path}")
    return path


def _wal(store: Path) -> str:
    logs = [str(p) for p in store.glob("*.log") if p.stat().st_size > 0]
    assert len(logs) == 1, logs
    return logs[0]


def _files(store: Path) -> dict[str, tuple[int, int]]:
    """Every engine file's size and modification time (rocksdict rewrites its side
    file, with the same content, at every open)."""
    return {
        p.name: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in store.iterdir()
        if p.name != "rocksdict-config.json"
    }


def _cut_copy(killed: Path, dest: Path, cut: int) -> tuple[Path, str]:
    shutil.copytree(killed, dest)
    wal = _wal(dest)
    os.truncate(wal, cut)
    return dest, wal


def _outcome(url: str) -> tuple[str, Any, Any]:
    """What an open of ``url`` gives: ``("refused", error path, None)`` or
    ``("opened", records, recovery)``."""
    try:
        repo = aurora_storage.open(url)
    except CorruptionError as exc:
        return "refused", exc.path, None
    with repo:
        return "opened", dict(repo.items("acme")), repo.stats()["recovery"]


def test_the_killed_store_is_whole(killed: Path) -> None:
    wal = _wal(killed)
    assert not scan_log(wal).torn
    with aurora_storage.open(f"rocksdb://{killed}?mode=read_only") as repo:
        assert repo.count("acme") == N - 1
        assert repo.stats()["recovery"] is None


@pytest.mark.parametrize("short", [1, None], ids=["one-byte-short", "mid-record"])
@pytest.mark.parametrize("mode", ["read_only", "secondary"])
def test_a_log_cut_inside_a_record_is_damage_in_every_mode(
    killed: Path, tmp_path: Path, mode: str, short: int | None
) -> None:
    size = os.path.getsize(_wal(killed))
    cut = size - short if short else size // 3 + 5
    assert cut % 4096
    store, wal = _cut_copy(killed, tmp_path / "s", cut)
    assert not scan_log(wal).crash_shaped
    before = _files(store)
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"rocksdb://{store}?mode={mode}")
    assert wal in str(info.value)
    assert "Restore the store from a backup" in str(info.value)
    assert _files(store) == before  # nothing written
    # The read-write open refuses the same files.
    with pytest.raises(CorruptionError):
        aurora_storage.open(f"rocksdb://{store}")


@pytest.mark.parametrize("mode", ["read_only", "secondary"])
def test_a_crash_torn_tail_is_reported_by_every_mode(
    killed: Path, tmp_path: Path, mode: str
) -> None:
    # A page boundary: what a SIGKILL inside write() leaves, told apart from nothing
    # else - the read-write open drops it and says so; so must the others.
    store, wal = _cut_copy(killed, tmp_path / "s", 4096)
    tail = scan_log(wal)
    assert tail.torn
    assert tail.crash_shaped
    before = _files(store)
    expected = {
        "mode": "strict",
        "torn_tail": {"file": wal, "bytes_dropped": 4096 - tail.complete_end},
    }
    with aurora_storage.open(f"rocksdb://{store}?mode={mode}") as repo:
        assert repo.stats()["recovery"] == expected
        kept = repo.count("acme")
        assert 0 < kept < N
    assert _files(store) == before
    with aurora_storage.open(f"rocksdb://{store}") as rw:
        assert rw.stats()["recovery"] == expected
        assert rw.count("acme") == kept


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_every_mode_agrees_on_any_cut(killed: Path, tmp_path: Path, data: st.DataObject) -> None:
    size = os.path.getsize(_wal(killed))
    cut = data.draw(
        st.one_of(
            st.integers(1, size - 1),
            st.integers(1, size // 4096).map(lambda p: p * 4096),
        ),
        label="cut",
    )
    base = tmp_path / f"cut-{cut}"
    shutil.rmtree(base, ignore_errors=True)
    outcomes = {}
    # The read-write open last: it rewrites the store.
    for mode in ("read_only", "secondary", "read_write"):
        store, _ = _cut_copy(killed, base / mode, cut)
        outcomes[mode] = _outcome(f"rocksdb://{store}?mode={mode}")
    # Each store lives in its own folder: compare what does not name it.
    shapes = {
        m: (kind, os.path.basename(str(a)) if kind == "refused" else a, _rel(b))
        for m, (kind, a, b) in outcomes.items()
    }
    assert shapes["read_only"] == shapes["read_write"]
    assert shapes["secondary"] == shapes["read_write"]
    if shapes["read_write"][0] == "opened":
        assert 0 not in shapes["read_write"][1] or cut < size  # never the delete undone


def _rel(recovery: Any) -> Any:
    if not recovery:
        return recovery
    torn = dict(recovery["torn_tail"])
    torn["file"] = os.path.basename(torn["file"])
    return {**recovery, "torn_tail": torn}


def test_read_only_beside_a_writer_in_this_process_keeps_its_lock(
    killed: Path, tmp_path: Path
) -> None:
    # The at-rest probe must not take (and so release) this process's own lock.
    store = tmp_path / "s"
    shutil.copytree(killed, store)
    with aurora_storage.open(f"rocksdb://{store}") as writer:
        writer.put("acme", "x", 1)
        with aurora_storage.open(f"rocksdb://{store}?mode=read_only") as ro:
            assert ro.get("acme", "x") == 1
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, aurora_storage\n"
                "try:\n    aurora_storage.open(sys.argv[1]).close(); print('opened')\n"
                "except aurora_storage.StoreLockedError: print('locked')\n",
                f"rocksdb://{store}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == "locked", out.stderr
