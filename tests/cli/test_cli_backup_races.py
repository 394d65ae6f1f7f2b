"""`backup` and `restore` against processes that arrive in the middle of them (each
window made exact by a wrapper around one step, run in-process through
``aurora_storage.cli.run``; the other process is real): a writer starting during a
RocksDB backup is refused (it acknowledged writes the backup left out), a writer in the
middle of restore's swap is refused (it created an empty store there), files made at
the path in that instant are reported and no store is deleted (a raw traceback
before), two backups into one directory end in the documented error, and a single-file
LMDB store is refused with a typed error (raw tracebacks and a misleading engine message
before)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.cli import _backup, run

_LOCKED = 3  # docs/cli.md: locked, read-only or not supported
_USAGE = 2

_PUT = """
import sys, aurora_storage
try:
    with aurora_storage.open(sys.argv[1]) as r:
        r.put_many("t", {("w", i): i for i in range(100)})
except Exception as exc:
    print(type(exc).__name__, flush=True)
    sys.exit(1)
print("acknowledged", flush=True)
"""


def _other_process_writes(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PUT, url], capture_output=True, text=True, timeout=120
    )
    return done.stdout.strip()


def _count(url: str) -> int:
    with aurora_storage.open(url + "?mode=read_only") as r:
        return r.count("t")


def test_a_writer_starting_during_a_rocksdb_backup_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, bk = tmp_path / "s", tmp_path / "bk"
    with aurora_storage.open(f"rocksdb://{store}") as r:
        r.put("t", "k0", 0)
    seen: list[str] = []
    opened = _backup.open_read  # type: ignore[attr-defined]  # the name _backup calls (imported from _common)

    def late_writer(url: str) -> Any:
        # The store's open, not the read-back of the backup once the store is closed
        # (writers are let in again by then).
        if ".partial-" not in url:
            seen.append(_other_process_writes(f"rocksdb://{store}"))
        return opened(url)

    monkeypatch.setattr(_backup, "open_read", late_writer)
    assert run(["backup", f"rocksdb:{store}", str(bk), "-q"]) == 0
    assert seen == ["StoreLockedError"], "a writer acknowledged writes during the backup"
    assert _count(f"rocksdb://{bk}") == _count(f"rocksdb://{store}") == 1


def test_a_writer_in_the_middle_of_restores_swap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Between the two renames there is no store at the path: the library's open refuses
    # to create one beside <path>.replaced and <path>.restoring (it made an empty store
    # there, which the restore then reported as a collision).
    store, bk = tmp_path / "s", tmp_path / "bk"
    with aurora_storage.open(f"rocksdb://{store}") as r:
        r.put("t", "k0", 0)
    assert run(["backup", f"rocksdb:{store}", str(bk), "-q"]) == 0
    with aurora_storage.open(f"rocksdb://{store}") as r:
        r.put("t", "k1", 1)
    renamed = os.rename
    seen: list[str] = []

    def rename(a: Any, b: Any) -> None:
        renamed(a, b)
        if str(b).endswith(".replaced"):
            seen.append(_other_process_writes(f"rocksdb://{store}"))

    monkeypatch.setattr(os, "rename", rename)
    code = run(["restore", str(bk), f"rocksdb:{store}", "--yes", "-q"])
    monkeypatch.undo()
    assert code == 0, capsys.readouterr().err
    assert seen == ["InterruptedRestoreError"]
    assert _count(f"rocksdb://{store}") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bk", "s"]


def test_something_made_in_the_middle_of_restores_swap_is_reported_and_nothing_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, bk = tmp_path / "s", tmp_path / "bk"
    with aurora_storage.open(f"rocksdb://{store}") as r:
        r.put("t", "k0", 0)
    assert run(["backup", f"rocksdb:{store}", str(bk), "-q"]) == 0
    with aurora_storage.open(f"rocksdb://{store}") as r:
        r.put("t", "k1", 1)
    renamed = os.rename

    def rename(a: Any, b: Any) -> None:
        renamed(a, b)
        if str(b).endswith(".replaced"):  # another program writes files at the path
            subprocess.run(["sh", "-c", 'mkdir "$1" && echo x > "$1/file"', "sh", str(store)])

    monkeypatch.setattr(os, "rename", rename)
    code = run(["restore", str(bk), f"rocksdb:{store}", "--yes", "-q"])
    err = capsys.readouterr().err
    assert code == _LOCKED, err
    assert err.startswith("error: StoreLockedError:")
    assert "nothing else was deleted" in err
    monkeypatch.undo()
    # Everything is still there: the replaced store, the backup, the new files; only the
    # copy of the backup is gone (a failed restore leaves no .restoring).
    assert _count(f"rocksdb://{store}.replaced") == 2
    assert not os.path.exists(f"{store}.restoring")
    assert _count(f"rocksdb://{bk}") == 1
    assert (store / "file").read_text() == "x\n"


def test_two_backups_into_one_directory_end_in_the_documented_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, bk = tmp_path / "s", tmp_path / "bk"
    with aurora_storage.open(f"lmdb://{store}") as r:
        r.put("t", "k0", 0)
    backed = _backup._backup

    def other_backup_finishes_first(repo: Any, target: str) -> str:
        out = backed(repo, target)
        os.makedirs(bk)
        (bk / "data.mdb").write_bytes(b"the other backup")
        return out

    monkeypatch.setattr(_backup, "_backup", other_backup_finishes_first)
    code = run(["backup", f"lmdb:{store}", str(bk)])
    err = capsys.readouterr().err
    assert code == _USAGE, err
    assert "exists and is not empty" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bk", "s"]  # no partial left


def test_a_single_file_lmdb_store_is_refused_by_backup_and_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"lmdb://{tmp_path}/data.db?subdir=false"
    with aurora_storage.open(url) as r:
        r.put("t", "k", 1)
    with aurora_storage.open(f"lmdb://{tmp_path}/dir") as r:
        r.put("t", "k", 2)
    assert run(["backup", f"lmdb://{tmp_path}/dir", str(tmp_path / "bk"), "-q"]) == 0
    capsys.readouterr()
    for argv in (
        ["backup", url, str(tmp_path / "bk2")],
        ["restore", str(tmp_path / "bk"), url, "--yes"],
    ):
        code = run(argv)
        err = capsys.readouterr().err
        assert code == _LOCKED, err
        assert err.startswith("error: NotSupportedError:")
        assert "subdir=false" in err
    assert not (tmp_path / "bk2").exists()
    with aurora_storage.open(url) as r:
        assert r.get("t", "k") == 1
