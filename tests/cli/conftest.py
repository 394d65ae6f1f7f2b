"""Run the real ``aurora-storage`` entry point in subprocesses against real stores."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_SCRIPT = Path(sys.executable).with_name("aurora-storage")


def command() -> list[str]:
    """The installed console script, or ``python -m aurora_storage`` without one."""
    if _SCRIPT.exists():
        return [str(_SCRIPT)]
    return [sys.executable, "-m", "aurora_storage"]


def run_cli(
    *args: str, input: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """Run the command line; stdin is not a terminal, nor are stdout/stderr."""
    full_env = dict(os.environ)
    full_env.pop("COLUMNS", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [*command(), *args],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    return run_cli


def listing(path: Path) -> dict[str, Any]:
    """Names, sizes and modification times of every file under ``path``."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out


def flip(path: str, offset: int, mask: int = 0x10) -> None:
    """Damage ``path`` in place: the byte at ``offset`` XOR ``mask``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def tables(store: Path) -> list[str]:
    """A RocksDB store's table files, oldest first: the first also holds the store's
    metadata record."""
    return sorted(glob.glob(f"{store}/*.sst"), key=lambda p: int(os.path.basename(p)[:-4]))
