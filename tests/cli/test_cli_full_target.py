"""Command-line backups and copies into a full filesystem: the error names the target
that is full and says what was (not) made - not the source store, and not advice about
a store the failed command already removed. Uses a 2 MiB tmpfs as the target (needs
root; skipped otherwise)."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import aurora_storage

from .conftest import run_cli


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A RocksDB and an LMDB store of about 4 MB of records each."""
    base = tmp_path_factory.mktemp("sources")
    rng = random.Random(5)
    out = {}
    for scheme in ("rocksdb", "lmdb"):
        with aurora_storage.open(f"{scheme}://{base}/{scheme}") as repo:
            for c in range(10):
                repo.put_many("acme", {("k", c, i): rng.randbytes(1000).hex() for i in range(200)})
        out[scheme] = base / scheme
    return out


@pytest.fixture
def full_target(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tgt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"a small filesystem needs mount (root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_backup_into_a_full_filesystem_names_the_target(
    sources: dict[str, Path], full_target: Path, scheme: str
) -> None:
    # Breaker finding: "no space left for the RocksDB store <source> (checkpoint); the
    # write was not applied" - blaming the source, and no word of the backup.
    target = full_target / "bk"
    done = run_cli("backup", f"{scheme}:{sources[scheme]}", str(target))
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert "StorageFullError" in err
    assert f"no space left for the backup {target}" in err, err
    assert "the backup was not made" in err, err
    assert "the write was not applied" not in err, err
    assert os.listdir(full_target) == []


def test_a_copy_into_a_full_filesystem_does_not_promise_a_removed_store(
    sources: dict[str, Path], full_target: Path
) -> None:
    # Breaker finding: "no space left to close the RocksDB store <target> cleanly; ...
    # the next open (with space free) recovers them" - about a store the failed copy
    # had already removed. The error that stopped the copy is the one to see.
    target = full_target / "rcopy"
    done = run_cli("copy", f"lmdb:{sources['lmdb']}", f"rocksdb:{target}")
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert "StorageFullError" in err
    assert "next open" not in err, err
    assert f"{target} was removed" in err, err
    assert os.listdir(full_target) == []


@pytest.mark.parametrize("existing", [False, True])
def test_an_export_into_a_full_filesystem_says_nothing_was_exported(
    sources: dict[str, Path], full_target: Path, existing: bool
) -> None:
    # Breaker finding: `export -o` into a full target printed only "OSError: [Errno 28]
    # No space left on device" - no word of which file, or of what was left.
    target = full_target / "events.jsonl"
    if existing:
        target.write_bytes(b"an earlier export\n")
    done = run_cli("export", f"lmdb:{sources['lmdb']}", "-o", str(target), "--quiet")
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert "StorageFullError" in err, err
    assert f"cannot write the export to {target}" in err, err
    kept = "left unchanged" if existing else "not created"
    assert f"nothing was exported ({target} {kept}, its partial file removed)" in err, err
    assert sorted(os.listdir(full_target)) == (["events.jsonl"] if existing else [])
    if existing:
        assert target.read_bytes() == b"an earlier export\n"


def test_an_export_to_a_full_device_says_it_stopped_part_way(sources: dict[str, Path]) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux), a device whose writes fail with ENOSPC")
    done = run_cli("export", f"lmdb:{sources['lmdb']}", "-o", "/dev/full", "--quiet")
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert "cannot write the export to /dev/full" in err, err
    assert "stopped part-way" in err, err
