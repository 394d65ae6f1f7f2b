"""What a newcomer sees: usage errors as one line, a missing optional extra shown (and
hinted) the way the project is installed, a plain store path answered with the URL to
use, and counts in the singular when there is one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.cli._common import plural

from .conftest import run_cli

# Runs the command line in a process where the NATS client (nats-py) cannot be imported,
# as in an environment installed without the nats extra (the demo's).
_WITHOUT_NATS = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "nats":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from aurora_storage.cli import run
sys.exit(run(sys.argv[1:]))
"""


def _without_nats(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_NATS, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backends_shows_nats_unavailable_without_its_client() -> None:
    result = _without_nats("backends")
    # A missing optional extra is not a broken plugin: exit 0, but said.
    assert result.returncode == 0, result.stderr
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in result.stdout.splitlines()}
    status, detail = rows["nats"]
    assert status == "unavailable"
    assert "nats-py" in detail
    assert "not installed" in detail
    assert "pip install '.[nats]'" in detail
    assert rows["rocksdb"][0] == "ok"


def test_opening_nats_without_its_client_hints_the_install_from_a_clone() -> None:
    result = _without_nats("info", "nats://127.0.0.1:4222/orders")
    assert result.returncode == 2, result.stderr
    assert "pip install '.[nats]'" in result.stderr
    assert "aurora-storage[nats]" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["keys", "memory://", "acme", "--limt", "3"], "--limt"),
        (["keys", "memory://"], "TENANT"),
        (["drop-tenant", "memory://", "acme"], "--yes"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
    ids=["typo-option", "missing-argument", "no-yes", "unknown-command"],
)
def test_usage_errors_are_one_error_line(args: list[str], names: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    err = result.stderr.decode()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: UsageError: "), err
    assert names in lines[0]
    assert "--help" in lines[0]  # where to read the usage
    assert result.stdout == b""


def test_a_typo_option_suggests_the_right_one() -> None:
    result = run_cli("keys", "memory://", "acme", "--limt", "3")
    assert "--limit" in result.stderr.decode()


@pytest.mark.parametrize("engine", ["rocksdb", "lmdb"])
def test_a_plain_store_path_suggests_the_url(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with aurora_storage.open(f"{engine}:data/events") as repo:
        repo.put("acme", "k", 1)
    result = run_cli("keys", "data/events", "acme")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert f"use {engine}:data/events" in err, err
    nothing = run_cli("keys", "no/such/dir", "acme")
    assert "use rocksdb:" not in nothing.stderr.decode()
    assert "expected scheme://" in nothing.stderr.decode()


def test_verify_counts_one_record_in_the_singular(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 'one'}"
    with aurora_storage.open(url) as repo:
        repo.put("acme", "k", 1)
    result = run_cli("verify", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "healthy: 1 record checked"


def test_plural() -> None:
    assert plural(1, "record") == "1 record"
    assert plural(0, "record") == "0 records"
    assert plural(2, "problem") == "2 problems"
    assert plural(1234, "record") == "1234 records"
