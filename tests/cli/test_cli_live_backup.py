"""`backup` and `restore` beside other processes (real processes, real stores): a store
another process has open is refused, not silently half-copied or swapped under it; a
backup holds every acknowledged write; a killed backup leaves nothing under its name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import command, listing, run_cli

Writer = Callable[[str, int], "subprocess.Popen[str]"]

_LOCKED = 3  # docs/cli.md: a store locked by another writer

# Opens the store, acknowledges N records (prints their count), then holds the store
# open until stdin closes; closes cleanly unless killed.
_WRITER = """
import sys, aurora_storage
url, n = sys.argv[1], int(sys.argv[2])
r = aurora_storage.open(url)
r.put_many("t", {("k", i): {"i": i} for i in range(n)})
print(n, flush=True)
sys.stdin.read()
r.close()
"""


@pytest.fixture
def writer() -> Iterator[Writer]:
    procs: list[subprocess.Popen[str]] = []

    def start(url: str, n: int) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == str(n)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for pipe in (p.stdin, p.stdout):
            if pipe is not None:
                pipe.close()


def _count(url: str) -> int:
    out = run_cli("count", url, "t")
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.parametrize("engine", ["rocksdb", "lmdb"])
def test_restore_over_a_store_open_in_another_process_is_refused(
    tmp_path: Path, writer: Writer, engine: str
) -> None:
    store, bk = tmp_path / "s", tmp_path / "bk"
    w = writer(f"{engine}://{store}", 10)
    assert w.stdin is not None
    w.stdin.close()
    w.wait()
    assert run_cli("backup", f"{engine}:{store}", str(bk)).returncode == 0
    w = writer(f"{engine}://{store}", 50)
    before = listing(store)
    out = run_cli("restore", str(bk), f"{engine}:{store}", "--yes")
    assert out.returncode == _LOCKED, out.stderr
    assert b"open" in out.stderr
    assert b"stop" in out.stderr
    assert listing(store) == before
    assert not (tmp_path / "s.restoring").exists()
    assert w.stdin is not None
    w.stdin.close()
    assert w.wait() == 0
    assert _count(f"{engine}:{store}") == 50
    # With the writer gone, the restore goes ahead.
    out = run_cli("restore", str(bk), f"{engine}:{store}", "--yes")
    assert out.returncode == 0, out.stderr
    assert _count(f"{engine}:{store}") == 10


def test_backup_of_a_rocksdb_store_open_for_writing_is_refused(
    tmp_path: Path, writer: Writer
) -> None:
    store, bk = tmp_path / "s", tmp_path / "bk"
    w = writer(f"rocksdb://{store}", 1000)
    out = run_cli("backup", f"rocksdb:{store}", str(bk))
    assert out.returncode == _LOCKED, out.stderr
    assert b"checkpoint(" in out.stderr
    assert not bk.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert w.stdin is not None
    w.stdin.close()
    assert w.wait() == 0
    out = run_cli("backup", f"rocksdb:{store}", str(bk))
    assert out.returncode == 0, out.stderr
    assert _count(f"rocksdb:{bk}") == 1000


def test_backup_of_an_lmdb_store_beside_a_live_writer_holds_its_writes(
    tmp_path: Path, writer: Writer
) -> None:
    store, bk = tmp_path / "s", tmp_path / "bk"
    writer(f"lmdb://{store}", 1000)
    out = run_cli("backup", f"lmdb:{store}", str(bk))
    assert out.returncode == 0, out.stderr
    assert _count(f"lmdb:{bk}") == 1000


def test_backup_of_a_killed_rocksdb_writers_store_holds_its_logged_writes(
    tmp_path: Path, writer: Writer
) -> None:
    """Writes only in the write-ahead log (the writer was killed before any flush)."""
    store, bk = tmp_path / "s", tmp_path / "bk"
    w = writer(f"rocksdb://{store}", 1000)
    w.kill()
    w.wait()
    assert not list(store.glob("*.sst"))
    out = run_cli("backup", f"rocksdb:{store}", str(bk))
    assert out.returncode == 0, out.stderr
    assert _count(f"rocksdb:{bk}") == 1000
    assert run_cli("verify", f"rocksdb:{bk}").returncode == 0


def test_a_killed_backup_leaves_nothing_under_its_name(tmp_path: Path) -> None:
    store, bk = tmp_path / "s", tmp_path / "bk"
    pad = "x" * 2000
    seed = (
        "import sys, aurora_storage\n"
        "r = aurora_storage.open(sys.argv[1])\n"
        "for j in range(10):\n"
        f"    r.put_many('t', {{('k', j, i): {{'p': {pad!r}}} for i in range(4000)}})\n"
        "r.close()\n"
    )
    subprocess.run([sys.executable, "-c", seed, f"lmdb://{store}"], check=True)
    p = subprocess.Popen([*command(), "backup", f"lmdb:{store}", str(bk)])
    # Kill it as soon as any backup directory shows up (the copy is still running).
    while p.poll() is None and not [x for x in tmp_path.iterdir() if x.name != "s"]:
        pass
    p.send_signal(signal.SIGKILL)
    rc = p.wait()
    if rc != -signal.SIGKILL:
        pytest.skip("the backup finished before it could be killed")
    assert not bk.exists()
    # The next run cleans the killed run's leftover and writes a whole backup.
    out = run_cli("backup", f"lmdb:{store}", str(bk))
    assert out.returncode == 0, out.stderr
    assert _count(f"lmdb:{bk}") == 40000
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bk", "s"]
    assert os.listdir(bk)


# Makes the directory a RocksDB checkpoint is built in (``<dir>.partial-<pid>.tmp``,
# named after this process), then waits to be killed.
_CHECKPOINTING = """
import os, sys, time
tmp = f"{sys.argv[1]}.partial-{os.getpid()}.tmp"
os.mkdir(tmp)
with open(os.path.join(tmp, "000009.sst"), "wb") as f:
    f.write(os.urandom(1000))
print("made", flush=True)
time.sleep(600)
"""


def test_a_killed_rocksdb_checkpoints_temporary_directory_is_cleaned(tmp_path: Path) -> None:
    """RocksDB builds a checkpoint in ``<dir>.tmp`` and renames it: a backup killed
    inside the checkpoint leaves ``DIR.partial-<pid>.tmp`` (it was never removed)."""
    store, bk = tmp_path / "s", tmp_path / "bk"
    out = run_cli("put", "-q", f"rocksdb:{store}", "t", "k", "v")
    assert out.returncode == 0, out.stderr
    procs = []
    for _ in range(2):
        p = subprocess.Popen(
            [sys.executable, "-c", _CHECKPOINTING, str(bk)], stdout=subprocess.PIPE
        )
        assert p.stdout is not None
        assert p.stdout.readline().strip() == b"made"
        procs.append(p)
    dead, running = procs
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    try:
        out = run_cli("backup", f"rocksdb:{store}", str(bk))
        assert out.returncode == 0, out.stderr
        # The killed run's is gone; a running one's stays.
        assert sorted(x.name for x in tmp_path.iterdir()) == [
            "bk",
            f"bk.partial-{running.pid}.tmp",
            "s",
        ]
    finally:
        running.kill()
        running.wait()
        for p in procs:
            if p.stdout is not None:
                p.stdout.close()
