"""`restore` of a damaged backup (a RocksDB table block failing its checksum, an LMDB
record failing its checksum envelope): it only checked that the backup opened, so it
replaced the live store with the damaged copy and exited 0. The backup is now read back
(every record, checksums on, as `verify` and `backup` read) before the target is
touched: damage exits 5 naming the backup's damaged files, the target byte for byte as
it was. `--no-verify` restores as before and says the backup was not checked. Real
RocksDB and LMDB stores, bytes flipped in the backups' files."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage

from .conftest import flip, run_cli, tables

_DAMAGED = 5  # docs/cli.md, "Exit codes"
_USAGE = 2
TENANTS = ("acme", "globex", "initech")
PER_TENANT = 2000
_MARK = "damage-me-" * 4


def _hashes(path: Path) -> dict[str, str]:
    """Every file under ``path`` by its name, with a hash of its bytes."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _records(url: str) -> dict[str, dict[Any, Any]]:
    read_only = "mode=read_only" if url.startswith("rocksdb:") else "read_only=true"
    with aurora_storage.open(f"{url}?{read_only}") as repo:
        return {t: dict(repo.items(t)) for t in repo.tenants()}


def _fill_rocks(path: Path) -> None:
    """A RocksDB store with one table file per tenant (a flush after each)."""
    with aurora_storage.open(f"rocksdb://{path}") as repo:
        for t in TENANTS:
            repo.put_many(t, {f"k{i:05d}": {"i": i, "pad": "x" * 40} for i in range(PER_TENANT)})
            repo.backend.flush(memtables=True)  # type: ignore[call-arg]  # RocksDB's flush takes memtables
    assert len(tables(path)) == len(TENANTS)


def _fill_lmdb(path: Path) -> None:
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put_many("t", {("k", i): {"i": i, "pad": "y" * 60} for i in range(3000)})
        repo.put("t", ("k", 1500), {"i": 1500, "mark": _MARK})


def _flip_mark(data: Path) -> None:
    """Damage the LMDB record holding :data:`_MARK` (every copy of it: an older one may
    lie in a page freed since)."""
    offsets = [m.start() for m in re.finditer(_MARK.encode(), data.read_bytes())]
    assert offsets
    for at in offsets:
        flip(str(data), at + 3)


def _target(where: Path, scheme: str) -> Path:
    """A live store of ``scheme`` at ``where`` holding records of its own."""
    with aurora_storage.open(f"{scheme}://{where}") as repo:
        repo.put_many("mine", {f"m{i}": i for i in range(50)})
    return where


@pytest.fixture(scope="module")
def rocks_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An intact RocksDB backup written (and checked) by `backup`."""
    base = tmp_path_factory.mktemp("rocks")
    _fill_rocks(base / "store")
    out = run_cli("backup", "-q", f"rocksdb:{base / 'store'}", str(base / "bk"))
    assert out.returncode == 0, out.stderr
    return base / "bk"


@pytest.fixture(scope="module")
def lmdb_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("lmdb")
    _fill_lmdb(base / "store")
    out = run_cli("backup", "-q", f"lmdb:{base / 'store'}", str(base / "bk"))
    assert out.returncode == 0, out.stderr
    return base / "bk"


def _damaged_rocks(backup: Path, where: Path, table: int, fraction: float) -> tuple[Path, str]:
    """A copy of ``backup`` at ``where`` (its own files, not links) with one byte flipped
    ``fraction`` of the way into table file ``table``."""
    shutil.copytree(backup, where)
    bad = tables(where)[table]
    flip(bad, int(os.path.getsize(bad) * fraction))
    return where, os.path.basename(bad)


def _refused(out: Any) -> tuple[str, list[str]]:
    """The last line (the error) and the warning lines of a refused restore."""
    err = out.stderr.decode()
    assert out.returncode == _DAMAGED, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: CorruptionError:"), err
    assert "nothing was restored" in last, last
    return last, [line for line in err.splitlines() if line.startswith("warning:")]


def test_restore_of_a_rocksdb_backup_with_a_damaged_block_exits_5_and_changes_nothing(
    rocks_backup: Path, tmp_path: Path
) -> None:
    bk, bad = _damaged_rocks(rocks_backup, tmp_path / "bk", 1, 1 / 3)
    target = _target(tmp_path / "live", "rocksdb")
    before, names, backup_before = _hashes(target), sorted(os.listdir(tmp_path)), _hashes(bk)
    # Checked before the question is asked (no --yes, stdin not a terminal: exit 2 after
    # it), and with --yes.
    for yes in ((), ("--yes",)):
        out = run_cli("restore", str(bk), f"rocksdb:{target}", *yes)
        last, warnings = _refused(out)
        assert f"{bk}/{bad}" in last
        assert "earlier backup" in last
        assert f"export --salvage rocksdb://{bk}" in last
        assert "--no-verify" in last
        assert f"{target} is unchanged" in last
        assert any("tenant='globex'" in w and f"{bk}/{bad}" in w for w in warnings), warnings
        assert _hashes(target) == before
        assert sorted(os.listdir(tmp_path)) == names  # no .restoring, no .replaced
        assert _hashes(bk) == backup_before  # (the check only reads it)
    assert _records(f"rocksdb://{target}") == {"mine": {f"m{i}": i for i in range(50)}}


def test_restore_of_an_lmdb_backup_with_a_damaged_record_exits_5_and_changes_nothing(
    lmdb_backup: Path, tmp_path: Path
) -> None:
    bk = tmp_path / "bk"
    shutil.copytree(lmdb_backup, bk)
    _flip_mark(bk / "data.mdb")
    target = _target(tmp_path / "live", "lmdb")
    before, names = _hashes(target), sorted(os.listdir(tmp_path))
    out = run_cli("restore", str(bk), f"lmdb:{target}", "--yes")
    last, warnings = _refused(out)
    assert f"{bk}/data.mdb" in last
    assert f"export --salvage lmdb://{bk}" in last
    assert "--no-verify" in last
    assert any("1500" in w for w in warnings), warnings
    assert _hashes(target) == before
    assert sorted(os.listdir(tmp_path)) == names
    # Into a new path: nothing is made there.
    last, _ = _refused(run_cli("restore", str(bk), f"lmdb:{tmp_path / 'new'}"))
    assert f"Nothing was written at {tmp_path / 'new'}" in last
    assert sorted(os.listdir(tmp_path)) == names
    assert _records(f"lmdb://{target}") == {"mine": {f"m{i}": i for i in range(50)}}


@pytest.mark.parametrize("check", [(), ("--no-verify",)])
def test_restore_of_a_rocksdb_backup_damaged_in_its_metadata_block_exits_5(
    rocks_backup: Path, tmp_path: Path, check: tuple[str, ...]
) -> None:
    # The first block of the oldest table holds the metadata record: the backup does not
    # open (a checkpoint has no aurora-store.json to fall back on), checked or not.
    bk = tmp_path / "bk"
    shutil.copytree(rocks_backup, bk)
    bad = tables(bk)[0]
    flip(bad, 5, 0xFF)
    target = _target(tmp_path / "live", "rocksdb")
    before, names = _hashes(target), sorted(os.listdir(tmp_path))
    out = run_cli("restore", *check, str(bk), f"rocksdb:{target}", "--yes")
    last, _ = _refused(out)
    assert bad in last
    assert "cannot be opened" in last
    assert "keeps it from opening" in last
    # Nothing to salvage from a backup that does not open, nor to restore anyway.
    assert "--salvage rocksdb:" not in last
    assert "--no-verify" not in last
    assert "earlier backup" in last
    assert _hashes(target) == before
    assert sorted(os.listdir(tmp_path)) == names


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(table=st.integers(0, len(TENANTS) - 1), fraction=st.floats(0.0, 0.6))
def test_restore_refuses_a_flipped_byte_anywhere_in_the_data_blocks(
    rocks_backup: Path, table: int, fraction: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bk, bad = _damaged_rocks(rocks_backup, Path(tmp) / "bk", table, fraction)
        target = _target(Path(tmp) / "live", "rocksdb")
        before = _hashes(target)
        out = run_cli("restore", "-q", str(bk), f"rocksdb:{target}", "--yes")
        assert out.returncode == _DAMAGED, out.stderr
        assert f"{bk}/{bad}".encode() in out.stderr
        assert b"nothing was restored" in out.stderr
        assert _hashes(target) == before
        assert sorted(os.listdir(tmp)) == ["bk", "live"]


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_restore_no_verify_restores_a_damaged_backup_and_says_it_was_not_checked(
    rocks_backup: Path, lmdb_backup: Path, tmp_path: Path, scheme: str
) -> None:
    bk = tmp_path / "bk"
    if scheme == "rocksdb":
        _damaged_rocks(rocks_backup, bk, 1, 1 / 3)
    else:
        shutil.copytree(lmdb_backup, bk)
        _flip_mark(bk / "data.mdb")
    target = _target(tmp_path / "live", scheme)
    out = run_cli("restore", "--no-verify", str(bk), f"{scheme}:{target}", "--yes")
    assert out.returncode == 0, out.stderr
    assert b"not checked: --no-verify" in out.stderr
    # The damage came along, as asked.
    assert run_cli("verify", f"{scheme}:{target}").returncode == _DAMAGED


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_restore_of_an_intact_backup_restores_its_records_and_says_it_was_checked(
    rocks_backup: Path, lmdb_backup: Path, tmp_path: Path, scheme: str
) -> None:
    bk = tmp_path / "bk"
    shutil.copytree(rocks_backup if scheme == "rocksdb" else lmdb_backup, bk)
    expected = _records(f"{scheme}://{bk}")
    target = _target(tmp_path / "live", scheme)
    out = run_cli("restore", str(bk), f"{scheme}:{target}", "--yes")
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    assert "warning" not in err
    assert "(backup checked)" in err, err
    assert _records(f"{scheme}://{target}") == expected
    assert sorted(os.listdir(tmp_path)) == ["bk", "live"]


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_backup_written_without_the_check_of_a_damaged_store_is_refused(
    tmp_path: Path, scheme: str
) -> None:
    # What `backup` of a damaged store wrote before it read its backup back (and what
    # `backup --no-verify` writes): the damage, and exit 0. Restore does not rely on the
    # backup having been checked: it checks it itself.
    store = tmp_path / "store"
    if scheme == "rocksdb":
        _fill_rocks(store)
        bad = tables(store)[1]
        flip(bad, os.path.getsize(bad) // 3)
        bad_name = os.path.basename(bad)
    else:
        _fill_lmdb(store)
        _flip_mark(store / "data.mdb")
        bad_name = "data.mdb"
    bk = tmp_path / "bk"
    made = run_cli("backup", "--no-verify", f"{scheme}:{store}", str(bk))
    assert made.returncode == 0, made.stderr
    target = _target(tmp_path / "live", scheme)
    before = _hashes(target)
    last, _ = _refused(run_cli("restore", str(bk), f"{scheme}:{target}", "--yes"))
    assert f"{bk}/{bad_name}" in last
    assert _hashes(target) == before
