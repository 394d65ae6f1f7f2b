"""`backup` of a damaged store: the backup is checked (every record read, checksums on)
and damage in it is an error (exit 5) naming the damaged files, not a silent exit 0
whose damage the operator meets only when restoring or exporting the backup. An intact
store's backup is unchanged by the check. Real RocksDB and LMDB stores, bytes flipped in
their files after a flush or close."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage

from .conftest import flip as _flip
from .conftest import listing, run_cli
from .conftest import tables as _tables

_DAMAGED = 5  # docs/cli.md, "Exit codes"
TENANTS = ("acme", "globex", "initech")
PER_TENANT = 2000


@pytest.fixture(scope="module")
def rocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An intact RocksDB store with one table file per tenant (a flush after each)."""
    path = tmp_path_factory.mktemp("rocks") / "base"
    with aurora_storage.open(f"rocksdb://{path}") as repo:
        for t in TENANTS:
            repo.put_many(t, {f"k{i:05d}": {"i": i, "pad": "x" * 40} for i in range(PER_TENANT)})
            repo.backend.flush(memtables=True)  # type: ignore[call-arg]  # RocksDB's flush takes memtables
    assert len(_tables(path)) == len(TENANTS)
    return path


def _damaged_rocks(rocks: Path, where: Path, table: int, fraction: float) -> tuple[Path, str]:
    """A copy of ``rocks`` at ``where`` with one byte flipped ``fraction`` of the way
    into table file ``table`` (the data blocks fill most of a table file: the filter,
    index and footer come last)."""
    shutil.copytree(rocks, where)
    bad = _tables(where)[table]
    _flip(bad, int(os.path.getsize(bad) * fraction))
    return where, os.path.basename(bad)


def test_backup_of_a_rocksdb_store_with_a_damaged_block_exits_5(
    rocks: Path, tmp_path: Path
) -> None:
    store, bad = _damaged_rocks(rocks, tmp_path / "s", 1, 1 / 3)
    target = tmp_path / "bk"
    out = run_cli("backup", f"rocksdb:{store}", str(target))
    assert out.returncode == _DAMAGED, out.stderr
    err = out.stderr.decode()
    # One error line at the end, naming the damaged file in the backup, saying that the
    # backup holds the damage and what to do.
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: CorruptionError:"), err
    assert f"{target}/{bad}" in last
    assert "holds the damage" in last
    assert f"export --salvage rocksdb://{target}" in last
    assert "docs/operations.md" in last
    # Each damaged region on a warning line of its own (tenant, file), like verify's.
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings, err
    assert any("tenant='globex'" in w and f"{target}/{bad}" in w for w in warnings), err
    # No partial directory's name leaks into what the user reads.
    assert ".partial-" not in err
    # The backup is kept (the error says so) and does hold the damage; nothing partial.
    assert sorted(os.listdir(tmp_path)) == ["bk", "s"]
    check = run_cli("verify", f"rocksdb:{target}")
    assert check.returncode == _DAMAGED, check.stdout


def test_backup_of_a_rocksdb_store_damaged_in_its_metadata_block_exits_5(
    rocks: Path, tmp_path: Path
) -> None:
    # The first block of the oldest table holds the store's metadata record, which every
    # open reads: the backup's open meets the damage before any record is read.
    store = tmp_path / "s"
    shutil.copytree(rocks, store)
    bad = _tables(store)[0]
    _flip(bad, 5, 0xFF)
    target = tmp_path / "bk"
    out = run_cli("backup", f"rocksdb:{store}", str(target))
    assert out.returncode == _DAMAGED, out.stderr
    last = out.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("error: CorruptionError:"), last
    assert f"{target}/{os.path.basename(bad)}" in last


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(table=st.integers(0, len(TENANTS) - 1), fraction=st.floats(0.0, 0.6))
def test_backup_reports_a_flipped_byte_anywhere_in_the_data_blocks(
    rocks: Path, table: int, fraction: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, bad = _damaged_rocks(rocks, Path(tmp) / "s", table, fraction)
        target = Path(tmp) / "bk"
        out = run_cli("backup", "-q", f"rocksdb:{store}", str(target))
        assert out.returncode == _DAMAGED, out.stderr
        assert f"{target}/{bad}".encode() in out.stderr


def test_no_verify_skips_the_check_and_says_so(rocks: Path, tmp_path: Path) -> None:
    store, _ = _damaged_rocks(rocks, tmp_path / "s", 1, 1 / 3)
    target = tmp_path / "bk"
    out = run_cli("backup", "--no-verify", f"rocksdb:{store}", str(target))
    assert out.returncode == 0, out.stderr
    assert b"not checked" in out.stderr
    assert target.is_dir()


def _content(path: Path) -> dict[str, int]:
    """File names and sizes under ``path`` (not times: two backups are made at two
    moments)."""
    return {name: size for name, (size, _) in listing(path).items()}


def test_backup_of_an_intact_rocksdb_store_is_unchanged_by_the_check(
    rocks: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s"
    shutil.copytree(rocks, store)
    before = listing(store)
    checked, unchecked = tmp_path / "checked", tmp_path / "unchecked"
    out = run_cli("backup", f"rocksdb:{store}", str(checked))
    assert out.returncode == 0, out.stderr
    assert b"warning" not in out.stderr
    assert f"{len(TENANTS) * PER_TENANT} records checked".encode() in out.stderr
    plain = run_cli("backup", "--no-verify", f"rocksdb:{store}", str(unchecked))
    assert plain.returncode == 0, plain.stderr
    assert _content(checked) == _content(unchecked)
    for name in _content(checked):
        if name.endswith(".sst"):  # still the store's own table files (hard links)
            assert os.path.samefile(checked / name, store / name)
    # The source: the same files, unchanged (only rocksdict's side file is rewritten at
    # every open, with the same content).
    after = listing(store)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}


# ---------------------------------------------------------------------------- LMDB


_MARK = "damage-me-" * 4


@pytest.fixture
def lmdb_store(tmp_path: Path) -> Path:
    path = tmp_path / "l"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put_many("t", {("k", i): {"i": i, "pad": "y" * 60} for i in range(3000)})
        repo.put("t", ("k", 1500), {"i": 1500, "mark": _MARK})
    return path


def test_backup_of_an_lmdb_store_with_a_damaged_record_exits_5(
    lmdb_store: Path, tmp_path: Path
) -> None:
    # LMDB keeps no checksums; the library's envelope does, and a compacting copy
    # copies the record's bytes as they are. (Every copy of the marked value is
    # flipped: an older one may lie in a page freed since.)
    data = lmdb_store / "data.mdb"
    offsets = [m.start() for m in re.finditer(_MARK.encode(), data.read_bytes())]
    assert offsets
    for at in offsets:
        _flip(str(data), at + 3)
    target = tmp_path / "bk"
    out = run_cli("backup", f"lmdb:{lmdb_store}", str(target))
    assert out.returncode == _DAMAGED, out.stderr
    err = out.stderr.decode()
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: CorruptionError:"), err
    assert f"{target}/data.mdb" in last
    assert "holds the damage" in last
    assert f"export --salvage lmdb://{target}" in last
    assert any("warning:" in line and "1500" in line for line in err.splitlines()), err
    assert ".partial-" not in err
    assert sorted(os.listdir(tmp_path)) == ["bk", "l"]
    check = run_cli("verify", f"lmdb:{target}")
    assert check.returncode == _DAMAGED, check.stdout


def test_backup_of_an_intact_lmdb_store_is_unchanged_by_the_check(
    lmdb_store: Path, tmp_path: Path
) -> None:
    checked, unchecked = tmp_path / "checked", tmp_path / "unchecked"
    out = run_cli("backup", f"lmdb:{lmdb_store}", str(checked))
    assert out.returncode == 0, out.stderr
    assert b"warning" not in out.stderr
    assert b"3000 records checked" in out.stderr
    plain = run_cli("backup", "--no-verify", f"lmdb:{lmdb_store}", str(unchecked))
    assert plain.returncode == 0, plain.stderr
    assert _content(checked) == _content(unchecked)
    assert (checked / "data.mdb").read_bytes() == (unchecked / "data.mdb").read_bytes()
