"""Read commands never create or change a store (subprocesses, real stores)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import aurora_storage

from .conftest import listing, run_cli

READ_COMMANDS = [
    ["info", "{url}"],
    ["tenants", "{url}", "--counts"],
    ["keys", "{url}", "acme"],
    ["items", "{url}", "acme"],
    ["get", "{url}", "acme", "k"],
    ["count", "{url}", "acme"],
    ["export", "{url}"],
    ["verify", "{url}"],
]


def _fill(url: str, n: int = 10) -> None:
    with aurora_storage.open(url) as repo:
        repo.put_many("acme", ((f"k{i}", {"i": i}) for i in range(n)))
        repo.put("acme", "k", "v")


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: a[0])
def test_read_command_on_a_missing_path_creates_nothing(
    tmp_path: Path, scheme: str, args: list[str]
) -> None:
    target = tmp_path / "no" / "such" / "store"
    url = f"{scheme}://{target}"
    result = run_cli(*(a.format(url=url) for a in args))
    assert result.returncode == 4, result.stderr
    err = result.stderr.decode()
    assert f"no {scheme} store at {target}" in err
    assert "Traceback" not in err
    assert err.count("\n") == 1  # one unwrapped line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("real", "asked"), [("rocksdb", "lmdb"), ("lmdb", "rocksdb")])
@pytest.mark.parametrize(
    "args",
    [
        *READ_COMMANDS,
        ["put", "{url}", "acme", "x", "1"],
        ["delete", "{url}", "acme", "k"],
        ["compact", "{url}"],
    ],
    ids=lambda a: a[0],
)
def test_another_engines_store_is_refused_naming_it(
    tmp_path: Path, real: str, asked: str, args: list[str]
) -> None:
    store = tmp_path / "store"
    _fill(f"{real}://{store}")
    before = listing(store)
    result = run_cli(*(a.format(url=f"{asked}://{store}") for a in args))
    assert result.returncode == 4, result.stderr
    assert f"holds a {real} store, not a {asked} one" in result.stderr.decode()
    assert listing(store) == before  # nothing written, not even a lock or log file


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_read_commands_leave_no_files_behind(tmp_path: Path, scheme: str) -> None:
    store = tmp_path / "store"
    url = f"{scheme}://{store}"
    _fill(url)
    before = listing(store)
    side_file = (store / "rocksdict-config.json").read_bytes() if scheme == "rocksdb" else b""
    for args in READ_COMMANDS:
        result = run_cli(*(a.format(url=url) for a in args))
        assert result.returncode == 0, (args, result.stderr)
    after = listing(store)
    assert after.keys() == before.keys()
    # Data files are untouched. Readers use LMDB's reader table (lock.mdb), and
    # rocksdict rewrites its option side-file on every open - with the same content.
    touched = {"lock.mdb", "rocksdict-config.json"}
    assert {k: v for k, v in after.items() if k not in touched} == {
        k: v for k, v in before.items() if k not in touched
    }
    if scheme == "rocksdb":
        assert (store / "rocksdict-config.json").read_bytes() == side_file


def test_rocksdb_writes_keep_a_bounded_number_of_info_logs(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path / 'store'}"
    for i in range(5):
        assert run_cli("put", url, "acme", f"k{i}", "v").returncode == 0
    logs = [n for n in os.listdir(tmp_path / "store") if n.startswith("LOG")]
    assert 1 <= len(logs) <= 3, logs


_WRITER = """
import sys, time, aurora_storage
repo = aurora_storage.open(sys.argv[1])
repo.put_many("acme", ((f"k{i}", i) for i in range(1000)))
print("ready", flush=True)
i = 1000
while True:
    repo.put("acme", f"k{i}", i)
    i += 1
    time.sleep(0.001)
"""


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_read_commands_work_beside_a_live_writer_in_another_process(
    tmp_path: Path, scheme: str
) -> None:
    url = f"{scheme}://{tmp_path / 'store'}"
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as writer:
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline() == b"ready\n"
            count = run_cli("count", url, "acme", "--json")
            assert count.returncode == 0, count.stderr
            assert orjson.loads(count.stdout)["count"] >= 1000
            keys = run_cli("keys", url, "acme", "--limit", "3")
            assert keys.returncode == 0, keys.stderr
            assert keys.stdout.splitlines() == [b"k0", b"k1", b"k10"]
            got = run_cli("get", url, "acme", "k999")
            assert (got.returncode, got.stdout) == (0, b"999\n")
            exported = run_cli("export", url, "--tenant", "acme")
            assert exported.returncode == 0, exported.stderr
            assert len(exported.stdout.splitlines()) >= 1001
            verified = run_cli("verify", url)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            time.sleep(0.05)
            assert writer.poll() is None  # the writer was never disturbed
        finally:
            writer.kill()
            writer.wait()


def _tiered_url(hot: Path, cold: Path, extra: str = "") -> str:
    from urllib.parse import quote

    return (
        f"tiered://?hot={quote(f'lmdb://{hot}', safe='')}"
        f"&cold={quote(f'rocksdb://{cold}', safe='')}{extra}"
    )


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: a[0])
def test_read_command_on_a_tiered_url_with_missing_tiers_creates_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    # Issue 12 review: the tiers inside tiered:// were opened read-write, so `info`
    # created both stores (exit 0).
    url = _tiered_url(tmp_path / "hot", tmp_path / "cold")
    result = run_cli(*(a.format(url=url) for a in args))
    assert result.returncode == 4, result.stderr
    assert "read commands never create one" in result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_read_commands_on_a_tiered_url_never_catch_up_or_project(tmp_path: Path) -> None:
    # Issue 12 review: `info` opened the tiers read-write and ran the pair's catch-up with
    # the projection named in the URL, applying (or parking) pending history records.
    hot, cold = tmp_path / "hot", tmp_path / "cold"
    with aurora_storage.open(_tiered_url(hot, cold)) as pair:  # cache mode
        pair.put("acme", "k", "v")
    # A second pair over the same history (its own hot) appends a record: the first
    # hot is now behind cold's change log.
    with aurora_storage.open(_tiered_url(tmp_path / "other-hot", cold)) as other:
        other.put("acme", "late", "v")
    before = listing(hot)
    for args in READ_COMMANDS:
        result = run_cli(*(a.format(url=_tiered_url(hot, cold)) for a in args))
        assert result.returncode == 0, (args, result.stderr)
    after = listing(hot)
    touched = {"lock.mdb"}
    assert {k: v for k, v in after.items() if k not in touched} == {
        k: v for k, v in before.items() if k not in touched
    }
    with aurora_storage.open(f"lmdb://{hot}?read_only=true") as raw_hot:
        assert not raw_hot.has("acme", "late")  # not caught up by a read command
