"""What a killed `backup` leaves - ``DIR.partial-<pid>``, a whole copy of the store - is
removed by the next backup into the same folder, not only by the next backup into the
same ``DIR``. With dated backup directories (the docs' own example:
``backups/events-2026-12-01``) no later backup has the same name, so a killed run's
partial copy (47 MB in the re-check) stayed beside the next day's backup forever,
unreported.

A backup holds a lock on the folder it writes into while it runs; the next backup
removes a leftover only when no other backup holds that lock and the leftover's process
no longer runs, and says so (path, size). While another backup writes into the folder,
a leftover whose process is gone is reported on a ``warning:`` line, not removed (that
backup may run on another machine or in another container, where its process id means
nothing here). Nothing but a directory named as backup names its partial copies
(``<name>.partial-<pid>``), owned by this user, holding only files, is ever touched;
links are never followed.

Real LMDB and RocksDB stores, real backups killed with SIGKILL, real processes holding
the folder's lock.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aurora_storage

from .conftest import command, listing, run_cli


def _dead_pid() -> int:
    """The process id of a process that ran and is gone."""
    p = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    return int(p.stdout)


def _leftover(folder: Path, name: str, size: int = 4096) -> Path:
    """A directory as a killed backup leaves it: the engine's files, partly written."""
    path = folder / name
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(size))
    return path


def _store(tmp_path: Path) -> str:
    url = f"lmdb:{tmp_path / 'store'}"
    with aurora_storage.open(url) as repo:
        repo.put_many("acme", {("k", i): {"v": i} for i in range(100)})
    return url


def test_a_backup_killed_while_checking_is_removed_by_the_next_days_backup(
    tmp_path: Path,
) -> None:
    # The re-check's script: a dated backup killed during its read-back, then the next
    # day's backup into the same folder.
    url = f"lmdb:{tmp_path / 'store'}"
    with aurora_storage.open(url) as repo:
        for i in range(0, 120_000, 4000):
            repo.put_many(
                "acme", {("k", j): {"v": j, "pad": "x" * 100} for j in range(i, i + 4000)}
            )
    backups = tmp_path / "backups"
    backups.mkdir()
    for _ in range(5):  # (a backup that finished before it was killed: again)
        run = subprocess.Popen(
            [*command(), "backup", "-q", url, str(backups / "events-2026-12-01")]
        )
        partial = backups / f"events-2026-12-01.partial-{run.pid}"
        while not partial.exists() and run.poll() is None:
            time.sleep(0.01)  # (waiting for the copy to start; nothing timed is asserted)
        run.send_signal(signal.SIGKILL)
        run.wait()
        if partial.exists():
            break
        for p in backups.iterdir():
            subprocess.run(["rm", "-rf", str(p)], check=True)
    else:
        raise AssertionError("every backup finished before it could be killed")
    out = run_cli("backup", url, str(backups / "events-2026-12-02"))
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    assert re.search(
        rf"removed {re.escape(str(partial))} \(\d+(\.\d)? (bytes|kB|MB)\), left by a "
        rf"backup that was killed \(its process {run.pid} no longer runs\)",
        err,
    ), err
    assert sorted(p.name for p in backups.iterdir()) == ["events-2026-12-02"]


def test_only_a_killed_backups_directory_is_removed(tmp_path: Path) -> None:
    url = _store(tmp_path)
    backups = tmp_path / "backups"
    backups.mkdir()
    dead = _dead_pid()
    gone = _leftover(backups, f"events-2026-12-01.partial-{dead}", 5_000_000)
    checkpoint = _leftover(backups, f"events-2026-11-30.partial-{dead}.tmp")
    # A running process's (this test's: it runs), and everything else named alike.
    running = _leftover(backups, f"orders-2026-12-01.partial-{os.getpid()}")
    (backups / f"export.jsonl.partial-{dead}").write_text("a partial export: a file\n")
    elsewhere = _leftover(tmp_path, "elsewhere")
    (backups / f"linked.partial-{dead}").symlink_to(elsewhere)
    nested = _leftover(backups, f"nested.partial-{dead}")
    (nested / "sub").mkdir()
    for name in (
        f"events.partial-{dead}-old",
        f".partial-{dead}",
        "big.partial-12x",
        "huge.partial-99999999999999999999999",
        "zero.partial-0",
    ):
        _leftover(backups, name)
    keep = {p.name for p in backups.iterdir()} - {gone.name, checkpoint.name}
    before = listing(tmp_path / "elsewhere")
    out = run_cli("backup", url, str(backups / "events-2026-12-02"))
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    why = f"left by a backup that was killed (its process {dead} no longer runs)"
    assert f"removed {gone} (5.0 MB), {why}" in err, err
    assert f"removed {checkpoint} (" in err
    assert err.count("removed ") == 2, err
    assert {p.name for p in backups.iterdir()} == keep | {"events-2026-12-02"}
    assert running.is_dir()
    assert listing(tmp_path / "elsewhere") == before  # the link was not followed


_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_SH)
print("held", flush=True)
time.sleep(600)
"""


def test_while_another_backup_writes_into_the_folder_a_leftover_is_reported_not_removed(
    tmp_path: Path,
) -> None:
    url = _store(tmp_path)
    backups = tmp_path / "backups"
    backups.mkdir()
    dead = _dead_pid()
    other = _leftover(backups, f"events-2026-12-01.partial-{dead}", 2_000_000)
    same = _leftover(backups, f"events-2026-12-02.partial-{dead}")
    # Another backup into the folder runs (on another machine or in another container,
    # where its process id means nothing here): it holds the folder's lock.
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(backups)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        out = run_cli("backup", "-q", url, str(backups / "events-2026-12-02"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, err
    (about,) = (w for w in warnings if str(other) in w)
    assert "(2.0 MB)" in about
    assert f"its process {dead} no longer runs" in about
    assert "another backup is writing into" in about
    assert re.search(r"rm -r \S+", about)
    assert other.is_dir()
    assert same.is_dir()
    # Once no backup runs there, the next one removes them.
    out = run_cli("backup", url, str(backups / "events-2026-12-03"))
    assert out.returncode == 0, out.stderr
    assert not other.exists()
    assert not same.exists()
    assert sorted(p.name for p in backups.iterdir()) == ["events-2026-12-02", "events-2026-12-03"]


def test_a_running_backup_holds_the_folders_lock(tmp_path: Path) -> None:
    # What the test above stands in for: while a backup runs, the folder's lock is held
    # (shared), so the next backup's exclusive try fails and it removes nothing.
    url = f"lmdb:{tmp_path / 'store'}"
    with aurora_storage.open(url) as repo:
        for i in range(0, 120_000, 4000):
            repo.put_many(
                "acme", {("k", j): {"v": j, "pad": "x" * 100} for j in range(i, i + 4000)}
            )
    backups = tmp_path / "backups"
    backups.mkdir()
    run = subprocess.Popen([*command(), "backup", "-q", url, str(backups / "bk")])
    try:
        partial = backups / f"bk.partial-{run.pid}"
        while not partial.exists() and run.poll() is None:
            time.sleep(0.01)
        assert partial.exists(), "the backup ended before it was seen running"
        fd = os.open(backups, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held by the backup, as it should be
        else:
            # Free: only right for a backup that is done with its partial copy (it is
            # renamed, or removed, before the lock is let go) - never while it is there.
            assert not partial.exists(), "a running backup does not hold its folder's lock"
        finally:
            os.close(fd)
    finally:
        run.wait()
    assert run.returncode == 0
