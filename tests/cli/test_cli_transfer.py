"""Export/import, copy (resumed after SIGKILL), verify, backup/restore through the real
entry point in subprocesses, against real stores."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import aurora_storage
from aurora_storage_rocksdb import RocksDBRepository

from .conftest import command, run_cli


def _mixed_records(n: int) -> list[tuple[str, Any, Any]]:
    """Records with every key type and, for the msgpack codec, bytes values."""
    out: list[tuple[str, Any, Any]] = []
    for i in range(n):
        tenant = ("acme", "a:b", "ü tenant")[i % 3]
        kind = i % 7
        key: Any
        if kind == 0:
            key = f"s{i}"
        elif kind == 1:
            key = i
        elif kind == 2:
            key = i + 0.5
        elif kind == 3:
            key = ("order", i, b"\x00\xff")
        elif kind == 4:
            key = i.to_bytes(4, "big") + b"\x00"
        elif kind == 5:
            key = {"id": i, "kind": "x"}
        else:
            key = (None, True, -i, f"\x00{i}")
        value: Any = {"i": i, "b": i.to_bytes(3, "big"), "t": [i, "x"], "f": [1.5, None]}
        out.append((tenant, key, value))
    return out


def _dump(url: str) -> dict[str, list[tuple[Any, Any]]]:
    with aurora_storage.open(url) as repo:
        return {t: list(repo.items(t)) for t in repo.tenants()}


def _fill(url: str, records: list[tuple[str, Any, Any]], **kw: Any) -> None:
    with aurora_storage.open(url, **kw) as repo, repo.batch() as b:
        for t, k, v in records:
            b.put(t, k, v)


@pytest.mark.slow
def test_export_import_round_trip_of_100000_mixed_records(tmp_path: Path) -> None:
    src = f"rocksdb://{tmp_path / 'src'}"
    _fill(src, _mixed_records(100_000), codec="msgpack")
    out = tmp_path / "dump.jsonl"
    exported = run_cli("export", src, "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = out.read_bytes().splitlines()
    assert orjson.loads(lines[0]) == {
        "aurora-storage-export": 2,
        "codec": "msgpack",
        "values": "base64",
    }
    assert orjson.loads(lines[-1]) == {"aurora-storage-export-end": True, "records": 100_000}
    assert len(lines) == 100_002
    dst = f"lmdb://{tmp_path / 'dst'}?codec=msgpack"
    imported = run_cli("import", dst, str(out))
    assert imported.returncode == 0, imported.stderr
    assert _dump(dst) == _dump(src)


def test_export_of_a_json_store_is_readable_and_imports_into_another_codec(
    tmp_path: Path,
) -> None:
    src = f"lmdb://{tmp_path / 'src'}"
    with aurora_storage.open(src) as repo:
        repo.put("acme", ("order", 1), {"status": "paid", "$weird": 1e3})
        repo.put("acme", b"\x00raw", "bytes key")
        repo.put("acme", 2**70, [1, "two"])
    exported = run_cli("export", src)
    assert exported.returncode == 0, exported.stderr
    lines = [orjson.loads(x) for x in exported.stdout.splitlines()]
    assert lines[1:] == [
        {"tenant": "acme", "key": {"$int": str(2**70)}, "value": [1, "two"]},
        {"tenant": "acme", "key": {"$bytes": "AHJhdw=="}, "value": "bytes key"},
        {"tenant": "acme", "key": ["order", 1], "value": {"status": "paid", "$weird": 1000.0}},
        {"aurora-storage-export-end": True, "records": 3},
    ]
    dst = f"rocksdb://{tmp_path / 'dst'}?codec=msgpack"
    imported = run_cli("import", dst, input=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert _dump(dst) == _dump(src)


def test_import_names_the_bad_line(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 'dst'}"
    text = b'{"aurora-storage-export":2,"codec":"json","values":"json"}\n'
    text += b'{"tenant":"a","key":"k","value":1}\nnot json\n'
    result = run_cli("import", url, input=text)
    assert result.returncode == 3
    assert "line 3 is not an export record" in result.stderr.decode()


def test_copy_rocksdb_to_lmdb_to_memory_verified_equal(tmp_path: Path) -> None:
    rocks = f"rocksdb://{tmp_path / 'r'}"
    lmdb = f"lmdb://{tmp_path / 'l'}"
    records = _mixed_records(3000)
    _fill(rocks, [(t, k, {"v": repr(v)}) for t, k, v in records])
    first = run_cli("copy", rocks, lmdb)
    assert first.returncode == 0, first.stderr
    assert "verified: the target holds the source's 3000 records" in first.stderr.decode()
    second = run_cli("copy", lmdb, "memory://")
    assert second.returncode == 0, second.stderr
    assert "verified: the target holds the source's 3000 records" in second.stderr.decode()
    assert _dump(lmdb) == _dump(rocks)


def test_copy_refuses_a_non_empty_target_without_resume(tmp_path: Path) -> None:
    src, dst = f"lmdb://{tmp_path / 's'}", f"lmdb://{tmp_path / 'd'}"
    _fill(src, [("acme", "k", 1)])
    _fill(dst, [("other", "k", 2)])
    result = run_cli("copy", src, dst)
    assert result.returncode == 2
    assert "--resume" in result.stderr.decode()
    assert _dump(dst) == {"other": [("k", 2)]}


def _count(url: str) -> int:
    try:
        with aurora_storage.open(url + "?read_only=true") as repo:
            return sum(repo.count(t) for t in repo.tenants())
    except aurora_storage.StorageError:
        return 0


@pytest.mark.slow
def test_copy_killed_by_sigkill_and_resumed_equals_the_source(tmp_path: Path) -> None:
    src = f"rocksdb://{tmp_path / 'src'}"
    dst = f"lmdb://{tmp_path / 'dst'}"
    n = 150_000
    with aurora_storage.open(src) as repo:
        for tenant in ("acme", "beta", "gamma"):
            repo.put_many(tenant, ((("e", i), {"i": i, "pad": "x" * 40}) for i in range(n // 3)))
    proc = subprocess.Popen(
        [*command(), "copy", src, dst, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _count(dst) < 20_000 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the copy finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _count(dst)
    assert 0 < partial < n
    again = run_cli("copy", src, dst)
    assert again.returncode == 2  # a partial target is not silently merged into
    resumed = run_cli("copy", src, dst, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    err = resumed.stderr.decode()
    assert f"verified: the target holds the source's {n} records" in err
    copied = int(err.split("copied ")[1].split()[0])
    assert copied <= n - partial + 2000  # continued, did not start over
    assert _dump(dst) == _dump(src)


def _damage(path: Path, needle: bytes, replacement: bytes) -> None:
    data = path.read_bytes()
    # LMDB may also hold a stale copy in a freed page: damage every copy.
    assert data.count(needle) >= 1, "the value to damage is not in the file"
    path.write_bytes(data.replace(needle, replacement))


def test_verify_finds_a_damaged_lmdb_value_and_names_the_key(tmp_path: Path) -> None:
    store = tmp_path / "l"
    url = f"lmdb://{store}"
    _fill(url, [("acme", f"k{i}", {"n": i, "s": f"value-{i:05d}"}) for i in range(500)])
    healthy = run_cli("verify", url)
    assert healthy.returncode == 0, healthy.stdout
    assert b"healthy: 500 records checked" in healthy.stdout
    _damage(store / "data.mdb", b'"value-00321"', b'"value-\x0000321')
    result = run_cli("verify", url, "--json")
    assert result.returncode == 5, result.stdout + result.stderr
    doc = orjson.loads(result.stdout)
    assert doc["ok"] is False
    assert [(p["tenant"], p["key"]) for p in doc["problems"]] == [("acme", "k321")]
    text = run_cli("verify", url)
    assert text.returncode == 5
    assert b"tenant='acme' key=k321" in text.stdout


def test_verify_finds_a_damaged_rocksdb_table(tmp_path: Path) -> None:
    store = tmp_path / "r"
    url = f"rocksdb://{store}?compression=none"
    with aurora_storage.open(url) as repo:
        assert isinstance(repo, RocksDBRepository)  # flush(memtables=) below
        repo.put_many("acme", ((f"k{i:04d}", {"s": f"value-{i:05d}"}) for i in range(2000)))
        repo.flush(memtables=True)
    sst = [p for p in store.iterdir() if p.suffix == ".sst"]
    assert len(sst) == 1
    _damage(sst[0], b"value-01234", b"value-X1234")
    result = run_cli("verify", f"rocksdb://{store}")
    assert result.returncode == 5, result.stdout + result.stderr
    out = result.stdout.decode()
    assert "DAMAGED" in out
    # A damaged RocksDB block hides the keys inside it: the report names the table file
    # (and the last good key), or the key where the engine's check can tell it.
    assert sst[0].name in out or "key=" in out


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_backup_into_a_missing_parent_folder_is_a_usage_error(tmp_path: Path, scheme: str) -> None:
    # Reviewer finding: RocksDB's raw "IO error: No such file or directory: While mkdir"
    # reached the user; the command now says which folder is missing, creating nothing.
    url = f"{scheme}://{tmp_path / 'live'}"
    _fill(url, [("t", "k", {"v": 1})])
    target = tmp_path / "missing" / "backup"
    done = run_cli("backup", url, str(target))
    assert done.returncode == 2
    assert str(tmp_path / "missing") in done.stderr.decode()
    assert "IO error" not in done.stderr.decode()
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_backup_then_restore_equal(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://{tmp_path / 'live'}"
    _fill(url, [(t, k, {"v": repr(v)}) for t, k, v in _mixed_records(2000)])
    before = _dump(url)
    backup = tmp_path / "backup"
    done = run_cli("backup", url, str(backup))
    assert done.returncode == 0, done.stderr
    assert _dump(f"{scheme}://{backup}") == before  # the backup opens as a store
    # Change the live store, then restore the backup over it.
    with aurora_storage.open(url) as repo:
        repo.drop_tenant("acme")
        repo.put("new", "k", 1)
    refused = run_cli("restore", str(backup), url)
    assert refused.returncode == 2  # replacing a store needs --yes without a terminal
    restored = run_cli("restore", str(backup), url, "--yes")
    assert restored.returncode == 0, restored.stderr
    assert _dump(url) == before
    fresh = f"{scheme}://{tmp_path / 'fresh'}"
    assert run_cli("restore", str(backup), fresh).returncode == 0
    assert _dump(fresh) == before
    assert not os.path.exists(str(tmp_path / "live") + ".restoring")


def test_copy_into_a_new_store_takes_the_source_codec(tmp_path: Path) -> None:
    """Before, a new target without ``?codec=`` was created with the default codec
    (json): a msgpack source holding bytes or non-str map keys failed part-way, left the
    records copied so far in the target, and said "nothing was written"."""
    src, dst = f"lmdb://{tmp_path / 's'}", f"lmdb://{tmp_path / 'd'}"
    _fill(src, [("acme", "a", 1), ("globex", "k", {1: b"z"})], codec="msgpack")
    result = run_cli("copy", src, dst)
    assert result.returncode == 0, result.stderr
    with aurora_storage.open(dst) as repo:
        assert repo.codec.name == "msgpack"
    assert _dump(dst) == _dump(src)


def test_a_copy_failing_part_way_says_what_it_copied(tmp_path: Path) -> None:
    """A target whose codec cannot hold a later record (the user named it): the chunks
    before it stay copied, and the error line says so and how to go on."""
    src, dst = f"lmdb://{tmp_path / 's'}", f"lmdb://{tmp_path / 'd'}?codec=json"
    _fill(src, [("acme", "a", 1), ("globex", "k", {1: b"z"})], codec="msgpack")
    result = run_cli("copy", src, dst)
    assert result.returncode == 3, result.stderr
    err = result.stderr.decode()
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "SerializationError" in line
    assert "1 record was copied into" in line
    assert "--resume" in line
    assert _dump(dst) == {"acme": [("a", 1)]}


def test_a_copy_failing_before_any_record_leaves_no_new_store(tmp_path: Path) -> None:
    src, dst = f"lmdb://{tmp_path / 's'}", f"lmdb://{tmp_path / 'd'}?codec=json"
    _fill(src, [("globex", "k", {1: b"z"})], codec="msgpack")
    result = run_cli("copy", src, dst)
    assert result.returncode == 3, result.stderr
    assert "was copied" not in result.stderr.decode()
    assert not (tmp_path / "d").exists()
