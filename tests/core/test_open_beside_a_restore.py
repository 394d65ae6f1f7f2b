"""``aurora_storage.open()`` never creates a file store at a path beside which a restore
left (or is writing) ``<path>.replaced`` or ``<path>.restoring``: it created an empty
store there, and the advice the restore had printed (``mv <copy> <path> && rm -r
<old>``) then moved the backup into that new store's directory and deleted the old
store. It raises InterruptedRestoreError, saying what is where, and creates nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import InterruptedRestoreError, StorageError

_SCHEMES = ["rocksdb", "lmdb"]


def _fill(url: str, value: str) -> None:
    with aurora_storage.open(url) as r:
        r.put("t", "k", value)


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("scheme", _SCHEMES)
@pytest.mark.parametrize(
    "left", [("replaced", "restoring"), ("replaced",), ("restoring",)], ids="+".join
)
@pytest.mark.parametrize("empty_dir", [False, True], ids=["no-path", "empty-dir"])
def test_no_store_is_created_beside_what_a_restore_left(
    tmp_path: Path, scheme: str, left: tuple[str, ...], empty_dir: bool
) -> None:
    store = tmp_path / "store"
    for suffix in left:
        _fill(f"{scheme}://{store}.{suffix}", suffix)
    if empty_dir:
        store.mkdir()
    before = _tree(tmp_path)
    with pytest.raises(InterruptedRestoreError) as info:
        aurora_storage.open(f"{scheme}://{store}")
    assert isinstance(info.value, StorageError)
    assert info.value.path == str(store)
    message = str(info.value)
    assert f"no store at {store}" in message
    for suffix in left:
        assert f"{store}.{suffix}" in message
    # Any command it prints fails rather than move a directory into another one.
    assert f"&& mv {store}.restoring {store}" not in message.replace(f"test ! -e {store} && ", "")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_an_existing_store_beside_a_leftover_still_opens(tmp_path: Path, scheme: str) -> None:
    # Only creating a store is refused: a store at the path (a restore finished, its
    # .replaced not yet deleted) opens as before.
    store = tmp_path / "store"
    _fill(f"{scheme}://{store}", "here")
    _fill(f"{scheme}://{store}.replaced", "old")
    with aurora_storage.open(f"{scheme}://{store}") as r:
        assert r.get("t", "k") == "here"


def test_the_printed_advice_run_literally_finishes_the_restore(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _fill(f"rocksdb://{store}.replaced", "old")
    _fill(f"rocksdb://{store}.restoring", "new")
    with pytest.raises(InterruptedRestoreError) as info:
        aurora_storage.open(f"rocksdb://{store}")
    message = str(info.value)
    finish = message.split("To finish the restore: ", 1)[1].split(";", 1)[0]
    # With a directory at the path the command fails instead of moving the backup
    # into it; without one it finishes the restore.
    store.mkdir()
    assert os.system(finish) != 0
    assert sorted(os.listdir(tmp_path)) == ["store", "store.replaced", "store.restoring"]
    store.rmdir()
    assert os.system(finish) == 0
    assert sorted(os.listdir(tmp_path)) == ["store"]
    with aurora_storage.open(f"rocksdb://{store}") as r:
        assert r.get("t", "k") == "new"


@pytest.mark.parametrize("scheme", _SCHEMES)
def test_a_link_to_a_path_a_restore_left_is_refused_too(tmp_path: Path, scheme: str) -> None:
    # A restore through a symbolic link swaps the link's target: killed between its
    # renames, the link points nowhere. Opening through the link raised a raw
    # FileExistsError (LMDB) or a misleading ConfigurationError (RocksDB).
    real = tmp_path / "real"
    real.mkdir()
    store = real / "s"
    for suffix in ("replaced", "restoring"):
        _fill(f"{scheme}://{store}.{suffix}", suffix)
    link = tmp_path / "link"
    link.symlink_to(store)
    with pytest.raises(InterruptedRestoreError, match=f"no store at {store}"):
        aurora_storage.open(f"{scheme}://{link}")


@pytest.mark.parametrize("name", ["sp ace", "x -o y"])
def test_the_printed_commands_work_when_run_as_printed(tmp_path: Path, name: str) -> None:
    # Paths are quoted for the shell: with a space the guard failed ("binary operator
    # expected"), and a folder named "x -o y" turned `test ! -e` into another test.
    import subprocess

    folder = tmp_path / name
    folder.mkdir()
    store = folder / "s"
    _fill(f"lmdb://{store}.replaced", "old")
    _fill(f"lmdb://{store}.restoring", "backup")
    with pytest.raises(InterruptedRestoreError) as info:
        aurora_storage.open(f"lmdb://{store}")
    message = str(info.value)
    finish = message.split("To finish the restore: ", 1)[1].split("; to undo it", 1)[0]
    done = subprocess.run(["bash", "-c", finish], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with aurora_storage.open(f"lmdb://{store}") as repo:
        assert repo.get("t", "k") == "backup"
    assert not os.path.exists(f"{store}.replaced")
