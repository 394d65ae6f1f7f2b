"""A RocksDB store on a read-only filesystem (a backup on a read-only mount): every
open, read-only ones included, is refused with a ConfigurationError that says why and
what to do. rocksdict rewrites its side file ``rocksdict-config.json`` at every open
(``Rdict.__init__`` saves it unconditionally, before RocksDB sees the access type), so
no mode can open such a store in place. Uses a small tmpfs remounted read-only (needs
root; skipped otherwise)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import ConfigurationError


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"a read-only filesystem needs mount (root): {done.stderr.strip()}")
    try:
        with aurora_storage.open(f"rocksdb://{mnt}/s") as repo:
            repo.put("acme", "k", "v")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / "s"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.parametrize("query", ["", "?mode=read_only", "?mode=secondary"])
def test_every_open_on_a_read_only_filesystem_says_why_and_what_to_do(
    read_only_store: Path, query: str
) -> None:
    # Breaker finding: a plain StorageError "RocksDB error on ... (opening): Read-only
    # file system (os error 30)", even for mode=read_only.
    with pytest.raises(ConfigurationError) as info:
        aurora_storage.open(f"rocksdb://{read_only_store}{query}")
    text = str(info.value)
    assert "read-only filesystem" in text, text
    assert "rocksdict-config.json" in text, text
    assert "copy the store" in text, text
    assert isinstance(info.value.__cause__, Exception)


def test_the_command_line_read_commands_say_what_to_do(read_only_store: Path) -> None:
    script = Path(sys.executable).with_name("aurora-storage")
    for args in (
        ["count", f"rocksdb:{read_only_store}", "acme"],
        ["verify", f"rocksdb:{read_only_store}"],
    ):
        done = subprocess.run([str(script), *args], capture_output=True, text=True, check=False)
        assert done.returncode != 0
        assert "ConfigurationError" in done.stderr, done.stderr
        assert "read-only filesystem" in done.stderr, done.stderr
