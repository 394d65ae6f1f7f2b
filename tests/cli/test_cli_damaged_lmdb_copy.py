"""An LMDB backup copy with one flipped bit in a branch page (no clean-close record: a
copy, as `backup` writes it) is refused by every command that reads it (exit 5), not
exported, copied, backed up or counted with about a tenth of its records silently
missing (exit 0 before)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import aurora_storage

from .conftest import run_cli

_DAMAGED = 5


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("damaged")
    rnd = random.Random(1)
    with aurora_storage.open(f"lmdb://{tmp}/src") as r:
        for c in range(4):
            r.put_many("t", {(c, i): {"x": rnd.randbytes(100).hex(), "i": i} for i in range(5000)})
    out = run_cli("backup", "-q", f"lmdb:{tmp}/src", str(tmp / "f"))
    assert out.returncode == 0, out.stderr
    # One bit, 100 bytes before the end of the compact copy: its root branch page.
    data = tmp / "f" / "data.mdb"
    with open(data, "r+b") as fh:
        at = os.path.getsize(data) - 100
        fh.seek(at)
        b = fh.read(1)
        fh.seek(at)
        fh.write(bytes([b[0] ^ 1]))
    return tmp


@pytest.mark.parametrize(
    "argv",
    [
        ["count", "{url}", "t"],
        ["get", "{url}", "t", "[3, 4999]", "--key-json"],
        ["export", "{url}", "-o", "{tmp}/out.jsonl"],
        ["copy", "{url}", "lmdb:{tmp}/copy"],
        ["backup", "{url}", "{tmp}/bk"],
    ],
    ids=lambda a: a[0],
)
def test_every_command_refuses_a_damaged_copy(damaged: Path, argv: list[str]) -> None:
    out = run_cli(*(a.format(url=f"lmdb:{damaged}/f", tmp=damaged) for a in argv))
    assert out.returncode == _DAMAGED, out.stderr
    err = out.stderr.decode()
    assert err.startswith("error: CorruptionError:"), err
    assert "failed verification" in err
    assert sorted(os.listdir(damaged)) == ["f", "src"]  # no output, copy or backup


def test_verify_reports_the_damage(damaged: Path) -> None:
    out = run_cli("verify", f"lmdb:{damaged}/f", "--json")
    assert out.returncode == _DAMAGED, out.stderr
    assert b'"ok":false' in out.stdout
    assert b"separator keys out of order" in out.stdout
