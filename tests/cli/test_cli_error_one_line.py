"""Messages a new user met: an engine message over two lines, a damaged marker accepted
without a word, and a directory that cannot be created reported as another error type
than the URL page says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage._stores import MARKER_NAME
from aurora_storage.errors import ConfigurationError

from .conftest import run_cli


def test_a_multi_line_engine_message_is_one_line(tmp_path: Path) -> None:
    store = tmp_path / "ev"
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        repo.put_many("acme", {("k", i): {"n": i, "pad": "x" * 50} for i in range(20000)})
        repo.flush(memtables=True)  # type: ignore[call-arg]  # RocksDB's flush takes it
    sst = sorted(p for p in os.listdir(store) if p.endswith(".sst"))[0]
    os.truncate(store / sst, 1000)  # RocksDB's message then spans two lines
    for args in (("info", f"rocksdb:{store}"), ("put", f"rocksdb:{store}", "acme", "a", "b")):
        done = run_cli(*args)
        err = done.stderr.decode()
        assert done.returncode == 5, err
        assert err.startswith("error: CorruptionError: ")
        assert err.count("\n") == 1, err
        assert ".." not in err
        assert "Restore the store from a backup" in err


def test_a_damaged_marker_is_reported_and_rewritten_from_the_metadata_record(
    tmp_path: Path,
) -> None:
    store = tmp_path / "ev"
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        repo.put("acme", "k", 1)
    (store / MARKER_NAME).write_text("garbage{")
    info = run_cli("info", f"rocksdb:{store}")
    assert info.returncode == 0, info.stderr
    assert "marker" in info.stderr.decode()
    assert "damaged" in info.stderr.decode()
    assert (store / MARKER_NAME).read_text() == "garbage{"  # a reader writes nothing
    put = run_cli("put", f"rocksdb:{store}", "acme", "a", "b")
    assert put.returncode == 0, put.stderr
    assert "rewritten" in put.stderr.decode()
    assert (store / MARKER_NAME).read_text().startswith("{")
    again = run_cli("put", f"rocksdb:{store}", "acme", "c", "d")
    assert "marker" not in again.stderr.decode()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_directory_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    for scheme in ("lmdb", "rocksdb"):
        with pytest.raises(ConfigurationError, match="cannot create"):
            aurora_storage.open(f"{scheme}:///proc/aurora-cannot-be-here")
