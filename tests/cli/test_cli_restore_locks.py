"""`restore` against processes that open the target, or restore into it, while it runs
(each window made exact by a wrapper around one step of the restore, run in-process
through ``aurora_storage.cli.run``; the other process is real):

* a RocksDB writer opening a target without a ``LOCK`` file (a restored copy only read
  so far) during the copy got in, stayed open over the swap and wrote its table files
  into the restored directory at close (every later command: CorruptionError); now it
  is refused (StoreLockedError);
* an LMDB opener during the copy ended up on the new ``data.mdb`` with the old, deleted
  lock files (two writers without a common lock); now it waits for the restore and
  opens the restored store, every file of it in the restored directory;
* a second restore into the same target removed the first one's ``.restoring`` as left
  by an interrupted restore (the old store deleted, a half copy swapped in, a raw
  shutil.Error); now it is refused naming the restore that runs;
* a copy that fails is a typed error naming the file, not a raw shutil.Error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.cli import _restore, run

from .conftest import run_cli

_STORE_ERROR = 3

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/locks and /proc/<pid>/fd"
)


def _fill(url: str, value: str, n: int) -> None:
    with aurora_storage.open(url) as r:
        r.put_many("t", {f"k{i:04d}": value for i in range(n)})


def _backup_of(tmp_path: Path, scheme: str, name: str, value: str, n: int) -> Path:
    src, bk = tmp_path / f"src-{name}", tmp_path / f"bk-{name}"
    _fill(f"{scheme}://{src}", value, n)
    assert run_cli("backup", "-q", f"{scheme}:{src}", str(bk)).returncode == 0
    return bk


def _contents(url: str) -> dict[str, Any]:
    """Every tenant's records, read by another process (read-only)."""
    sep = "&" if "?" in url else "?"
    ro = "mode=read_only" if url.startswith("rocksdb") else "read_only=true"
    code = (
        "import sys, json, aurora_storage\n"
        "with aurora_storage.open(sys.argv[1]) as r:\n"
        "    print(json.dumps({t: dict(r.items(t)) for t in r.tenants()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, f"{url}{sep}{ro}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = __import__("json").loads(done.stdout)
    return result


# Opens the store, writes, says what it did (or the error's name), then keeps the store
# open until its stdin is closed: a writer that stays open over the restore's swap.
_WRITER = """
import json, os, sys, aurora_storage
store = os.path.realpath(sys.argv[1].split("//", 1)[1])
print("opening", flush=True)
try:
    r = aurora_storage.open(sys.argv[1])
    r.put("w", "marker", "written")
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
    sys.exit(1)
# The files this process has open in the store's directory, and which of them are no
# longer there (deleted, or moved away by a swap).
mine = []
for fd in os.listdir("/proc/self/fd"):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    if target.startswith(store):
        mine.append(target)
print(json.dumps({"files": sorted(mine), "records": r.count("t")}), flush=True)
sys.stdin.read()
r.close()
"""


def _start_writer(url: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "opening"
    return child


def _answer(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, child.stderr.read() if child.stderr else ""
    result: dict[str, Any] = __import__("json").loads(line)
    return result


def _blocked(pid: int) -> bool:
    """Whether process ``pid`` waits for a file lock (a ``->`` line of /proc/locks)."""
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid):
                return True
    return False


def _wait_until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def test_a_rocksdb_writer_opening_during_the_copy_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _backup_of(tmp_path, "rocksdb", "old", "old", 3)
    new = _backup_of(tmp_path, "rocksdb", "new", "new", 5)
    store = tmp_path / "store"
    url = f"rocksdb://{store}"
    # A copy of a backup, only read since: it has no LOCK file.
    shutil.copytree(old, store)
    assert not (store / "LOCK").exists()
    assert _contents(url) == {"t": {f"k{i:04d}": "old" for i in range(3)}}
    copied = _restore._copy
    writers: list[subprocess.Popen[str]] = []
    answers: list[dict[str, Any]] = []

    def copy_while_a_writer_opens(source: str, staging: str) -> None:
        copied(source, staging)
        child = _start_writer(url)
        writers.append(child)
        answers.append(_answer(child))

    monkeypatch.setattr(_restore, "_copy", copy_while_a_writer_opens)
    try:
        code = run(["restore", str(new), f"rocksdb:{store}", "--yes", "-q"])
    finally:
        for child in writers:  # a writer that got in closes only now, after the swap
            child.communicate(timeout=120)
    monkeypatch.undo()
    assert code == 0, capsys.readouterr().err
    assert len(answers) == 1
    assert answers[0].get("error") == "StoreLockedError", answers
    assert _contents(url) == {"t": {f"k{i:04d}": "new" for i in range(5)}}
    out = run_cli("verify", f"rocksdb:{store}")
    assert out.returncode == 0, out.stderr


def test_an_lmdb_opener_during_the_copy_waits_and_opens_the_restored_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _backup_of(tmp_path, "lmdb", "old", "old", 3)
    new = _backup_of(tmp_path, "lmdb", "new", "new", 5)
    store = tmp_path / "store"
    url = f"lmdb://{store}"
    # A copy of a backup, only read since: it has none of the library's lock files.
    shutil.copytree(old, store)
    assert _contents(url) == {"t": {f"k{i:04d}": "old" for i in range(3)}}
    copied = _restore._copy
    writers: list[subprocess.Popen[str]] = []

    def copy_while_a_writer_opens(source: str, staging: str) -> None:
        copied(source, staging)
        child = _start_writer(url)
        writers.append(child)
        # The writer waits for a lock the restore holds (or has already failed).
        _wait_until(lambda: _blocked(child.pid) or child.poll() is not None, "the writer")

    monkeypatch.setattr(_restore, "_copy", copy_while_a_writer_opens)
    try:
        code = run(["restore", str(new), f"lmdb:{store}", "--yes", "-q"])
        monkeypatch.undo()
        assert code == 0, capsys.readouterr().err
        assert len(writers) == 1
        answer = _answer(writers[0])
        # It opened the restored store, every file of it in the store's directory.
        assert "error" not in answer, answer
        assert answer["records"] == 5
        assert not [f for f in answer["files"] if "(deleted)" in f or ".replaced" in f], answer
        assert {os.path.basename(f) for f in answer["files"]} >= {"data.mdb", "lock.mdb"}
        # Another writer shares its lock files: both write, nothing is lost.
        _fill(f"lmdb://{store}", "after", 2)
    finally:
        for child in writers:
            child.communicate(timeout=120)
    got = _contents(url)
    assert got["w"] == {"marker": "written"}
    assert got["t"] == {
        **{f"k{i:04d}": "new" for i in range(5)},
        "k0000": "after",
        "k0001": "after",
    }
    out = run_cli("verify", f"lmdb:{store}")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("step", ["_copy", "_swap"])
@pytest.mark.parametrize("existing", [True, False], ids=["over-a-store", "new-path"])
def test_a_second_restore_into_the_same_target_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    scheme: str,
    step: str,
    existing: bool,
) -> None:
    first = _backup_of(tmp_path, scheme, "first", "first", 3)
    second = _backup_of(tmp_path, scheme, "second", "second", 7)
    store = tmp_path / "store"
    if existing:
        _fill(f"{scheme}://{store}", "old", 1)
    original = getattr(_restore, step)
    others: list[subprocess.CompletedProcess[bytes]] = []

    def with_a_second_restore(*args: Any) -> None:
        if step == "_swap":  # the copy is complete, the swap about to start
            others.append(run_cli("restore", str(second), f"{scheme}:{store}", "--yes"))
            assert os.path.isdir(f"{store}.restoring")
        original(*args)
        if step == "_copy":  # in the middle of the copy
            others.append(run_cli("restore", str(second), f"{scheme}:{store}", "--yes"))
            assert os.path.isdir(f"{store}.restoring")

    monkeypatch.setattr(_restore, step, with_a_second_restore)
    code = run(["restore", str(first), f"{scheme}:{store}", "--yes", "-q"])
    monkeypatch.undo()
    assert code == 0, capsys.readouterr().err
    assert len(others) == 1
    err = others[0].stderr.decode()
    assert others[0].returncode == _STORE_ERROR, err
    assert err.startswith("error: StoreLockedError:"), err
    assert "another restore into" in err, err
    assert "Traceback" not in err
    assert _contents(f"{scheme}://{store}") == {"t": {f"k{i:04d}": "first" for i in range(3)}}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("store")) == ["store"]


def test_a_failed_copy_is_a_typed_error_naming_the_file(tmp_path: Path) -> None:
    bk = _backup_of(tmp_path, "rocksdb", "bk", "new", 1)
    # A link to nothing in the backup: the copy fails after copying the rest.
    (bk / "dangling").symlink_to(tmp_path / "nowhere")
    store = tmp_path / "store"
    _fill(f"rocksdb://{store}", "old", 1)
    out = run_cli("restore", str(bk), f"rocksdb:{store}", "--yes")
    err = out.stderr.decode()
    assert out.returncode == _STORE_ERROR, err
    assert err.startswith("error: StorageError: cannot restore"), err
    assert "dangling" in err
    assert "nothing was changed" in err
    assert _contents(f"rocksdb://{store}") == {"t": {"k0000": "old"}}
