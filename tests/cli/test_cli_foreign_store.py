"""A RocksDB directory aurora-storage did not write (the TypeScript package's store at the
same ``./data/events`` path both READMEs use) is refused before anything is written to
it, through every entry point; what is legitimately ours without a marker is adopted."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import rocksdict

import aurora_storage
from aurora_storage._stores import MARKER_NAME
from aurora_storage.errors import ConfigurationError, ForeignStoreError
from aurora_storage_rocksdb import RocksDBRepository, create_rocksdb_repository

from .conftest import run_cli


def build_ts_store(path: Path, records: dict[bytes, bytes]) -> None:
    """A store as the TypeScript package leaves it: raw records, no side file."""
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for key, value in records.items():
        db[key] = value
    db.close()
    os.remove(path / "rocksdict-config.json")


def fingerprint(path: Path) -> dict[str, tuple[int, str]]:
    return {
        name: ((path / name).stat().st_size, hashlib.sha256((path / name).read_bytes()).hexdigest())
        for name in sorted(os.listdir(path))
    }


TS_RECORDS = {
    b'acme:"event:123"': b'{"type":"OrderCreated","orderId":"123"}',
    b'acme:"event:124"': b'{"type":"OrderPaid"}',
}


def test_a_typescript_store_is_refused_by_every_open_and_left_untouched(tmp_path: Path) -> None:
    store = tmp_path / "data" / "events"
    store.parent.mkdir()
    build_ts_store(store, TS_RECORDS)
    before = fingerprint(store)
    opens: list[Callable[[], object]] = [
        lambda: aurora_storage.open(f"rocksdb://{store}?compression=zstd"),
        lambda: aurora_storage.open(f"rocksdb://{store}?mode=read_only"),
        lambda: aurora_storage.open(f"rocksdb://{store}?mode=secondary"),
        lambda: aurora_storage.open(f"rocksdb://{store}?codec=msgpack"),
        lambda: RocksDBRepository(str(store)),
        lambda: create_rocksdb_repository(path=str(store), compression=True),
    ]
    for opener in opens:
        with pytest.raises(ForeignStoreError) as info:
            opener()
        message = str(info.value)
        assert str(store) in message
        assert "not write" in message
        assert f"aurora-storage import-seed {store}" in message
        assert isinstance(info.value, ConfigurationError)
        assert fingerprint(store) == before  # not a file added, changed or removed


def test_the_command_line_refuses_a_typescript_store_with_status_4(tmp_path: Path) -> None:
    store = tmp_path / "events"
    build_ts_store(store, TS_RECORDS)
    before = fingerprint(store)
    url = f"rocksdb:{store}"
    for args in (
        ("info", url),
        ("tenants", url),
        ("keys", url, "acme"),
        ("count", url, "acme"),
        ("get", url, "acme", "event:123"),
        ("export", url),
        ("verify", url),
        ("put", url, "acme", "k", "v"),
        ("copy", url, "memory://"),
    ):
        done = run_cli(*args)
        err = done.stderr.decode()
        assert done.returncode == 4, (args, done.stdout, err)
        assert err.startswith("error: ForeignStoreError: "), err
        assert "import-seed" in err
        assert err.count("\n") == 1  # one line
        assert fingerprint(store) == before, args
    # import-seed still reads it as what it is.
    done = run_cli("import-seed", str(store), f"lmdb:{tmp_path}/imported")
    assert done.returncode == 0, done.stderr
    with aurora_storage.open(f"lmdb://{tmp_path}/imported") as repo:
        assert repo.get("acme", "event:123") == {"type": "OrderCreated", "orderId": "123"}


def test_an_empty_engine_store_and_one_killed_before_its_marker_are_adopted(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    build_ts_store(empty, {})  # what a creator killed before its metadata record leaves
    with aurora_storage.open(f"rocksdb://{empty}") as repo:
        repo.put("t", 1, 1)
    assert (empty / MARKER_NAME).exists()
    # An aurora-storage run SIGKILLed between RocksDB's files and the marker: the
    # metadata record is there (it is flushed before the marker is written).
    ours = tmp_path / "ours"
    script = textwrap.dedent(
        f"""
        import os, signal
        import aurora_storage, aurora_storage._metadata as m
        m.write_marker = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        aurora_storage.open("rocksdb://{ours}")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (ours / "CURRENT").exists()
    assert not (ours / MARKER_NAME).exists()
    with aurora_storage.open(f"rocksdb://{ours}?mode=read_only") as ro:
        assert list(ro.tenants()) == []
    with aurora_storage.open(f"rocksdb://{ours}") as repo:
        repo.put("t", 1, 1)
    assert (ours / MARKER_NAME).exists()
