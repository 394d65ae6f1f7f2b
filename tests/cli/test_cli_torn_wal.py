"""The command line on a RocksDB store whose newest write-ahead log was cut (real
stores, a writer SIGKILLed, the log truncated on a copy):

* cut inside a record (damage for a read-write open): every read command refuses it
  with exit 5 - before, `verify` printed "healthy", `export` and `copy` wrote the
  records before the cut and `count` counted them, all exit 0;
* cut at a page boundary (what a killed writer leaves, told apart from nothing else):
  each command says so on stderr, `info --json` shows it in `stats.recovery` and
  `verify` mentions it - before, nothing showed it (`backup` even dropped it from the
  source with only an INFO line under `-v`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import listing, run_cli

N = 800

_WRITER = f"""
import os, signal, sys
import aurora_storage
repo = aurora_storage.open(sys.argv[1])
for i in range({N}):
    repo.put("acme", i, {{"i": i, "pad": "w" * 40}})
print("acked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cliwal") / "base"
    out = subprocess.run(
        [sys.executable, "-c", _WRITER, f"rocksdb://{path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "acked", out.stderr
    assert out.returncode == -9
    return path


def _cut(killed: Path, dest: Path, cut: int) -> tuple[str, str]:
    shutil.copytree(killed, dest)
    (wal,) = [str(p) for p in dest.glob("*.log") if p.stat().st_size > 0]
    os.truncate(wal, cut)
    return f"rocksdb:{dest}", wal


def _engine_files(path: Path) -> dict[str, object]:
    """Every file but rocksdict's side file (rewritten, with the same content, at
    every open) and the engine's info logs (a refused read-write open rotates them)."""
    return {
        k: v for k, v in listing(path).items() if k != "rocksdict-config.json" and "LOG" not in k
    }


def test_a_log_cut_inside_a_record_fails_every_read_command(killed: Path, tmp_path: Path) -> None:
    size = sum(p.stat().st_size for p in killed.glob("*.log"))
    url, wal = _cut(killed, tmp_path / "s", size // 3 + 5)
    before = _engine_files(tmp_path / "s")
    for args in (
        ["verify", url],
        ["export", url],
        ["count", url, "acme"],
        ["copy", url, f"lmdb:{tmp_path / 'cp'}"],
        ["info", url, "--json"],
        ["backup", url, str(tmp_path / "bk")],
    ):
        r = run_cli(*args)
        assert r.returncode == 5, (args, r.stdout[-300:], r.stderr)
        assert wal.encode() in r.stderr, (args, r.stderr)
        assert b"healthy" not in r.stdout
    assert _engine_files(tmp_path / "s") == before
    assert not (tmp_path / "bk").exists()


def test_a_torn_tail_is_reported_by_every_command(killed: Path, tmp_path: Path) -> None:
    url, wal = _cut(killed, tmp_path / "s", 4096)
    before = _engine_files(tmp_path / "s")

    r = run_cli("verify", url)
    assert r.returncode == 0, r.stderr
    assert b"warning:" in r.stderr
    assert wal.encode() in r.stderr
    last = r.stdout.decode().splitlines()[-1]
    assert last.startswith("healthy"), last
    assert "torn" in last, last

    r = run_cli("verify", url, "--json")
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert doc["recovery"]["torn_tail"]["file"] == wal

    r = run_cli("info", url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stats"]["recovery"]["torn_tail"]["file"] == wal
    assert b"warning:" in r.stderr

    for args in (["export", url], ["count", url, "acme"], ["copy", url, f"lmdb:{tmp_path / 'cp'}"]):
        r = run_cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert b"warning:" in r.stderr, (args, r.stderr)
        assert wal.encode() in r.stderr, (args, r.stderr)
    # Read commands leave the store as it was.
    assert _engine_files(tmp_path / "s") == before

    # backup opens the store for writing (its writes are only in the log) and so drops
    # the tail from the source: it must say so without -v.
    r = run_cli("backup", url, str(tmp_path / "bk"))
    assert r.returncode == 0, r.stderr
    assert b"warning:" in r.stderr
    assert b"dropped" in r.stderr
    assert wal.encode() in r.stderr
