"""An initialised LMDB store whose data file was emptied (truncated to 0 bytes) is
reported as damaged by every open, read-only or not, and a refused open leaves the file
as it was (liblmdb would initialise an empty file as a new store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import CorruptionError


@pytest.fixture
def emptied(tmp_path: Path) -> Path:
    store = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{store}") as repo:
        repo.put_many("acme", {f"k{i}": {"i": i} for i in range(100)})
    os.truncate(store / "data.mdb", 0)
    return store


@pytest.mark.parametrize(
    "options",
    [{"verify": False, "read_only": True}, {"read_only": True}, {}, {"verify": False}],
)
def test_every_open_reports_damage_and_leaves_the_file_alone(
    emptied: Path, options: dict[str, Any]
) -> None:
    with pytest.raises(CorruptionError) as info:
        aurora_storage.open(f"lmdb://{emptied}", **options)
    assert "empty" in str(info.value)
    assert "backup" in str(info.value)
    assert os.path.getsize(emptied / "data.mdb") == 0


def test_verify_command_exits_5(emptied: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aurora_storage", "verify", f"lmdb:{emptied}"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 5, out.stderr
    assert b"CorruptionError" in out.stderr
    assert os.path.getsize(emptied / "data.mdb") == 0
