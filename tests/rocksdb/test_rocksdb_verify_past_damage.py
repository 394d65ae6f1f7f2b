"""Verification and the salvage export read past damaged table blocks: every damaged
region is reported, what could not be read is counted, and a salvage export carries
everything that still reads and says it is not complete (real stores, bytes flipped in
their table files)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import aurora_storage

TENANTS = ("acme", "globex", "initech")
PER_TENANT = 3000


@pytest.fixture(scope="module")
def three_tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one table file per tenant (a flush after each)."""
    path = tmp_path_factory.mktemp("past") / "base"
    with aurora_storage.open(f"rocksdb://{path}") as repo:
        for t in TENANTS:
            repo.put_many(t, {f"k{i:05d}": {"i": i, "pad": "x" * 40} for i in range(PER_TENANT)})
            repo.backend.flush(memtables=True)  # type: ignore[call-arg]  # RocksDB's flush takes memtables
    return path


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def _tables(store: Path) -> list[str]:
    # Newest first: the first table also holds the store's metadata record (read at open).
    return sorted(glob.glob(f"{store}/*.sst"), key=lambda p: int(os.path.basename(p)[:-4]))


@pytest.fixture
def damaged(three_tables: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy with one byte flipped inside a data block of the first and the third
    tenant's table files."""
    store = tmp_path / "s"
    shutil.copytree(three_tables, store)
    tables = _tables(store)
    assert len(tables) == 3
    bad = [tables[0], tables[2]]
    for p in bad:
        _flip(p, os.path.getsize(p) // 3)
    return store, bad


def test_verify_reports_every_damaged_table_and_what_it_could_not_read(
    damaged: tuple[Path, list[str]],
) -> None:
    store, bad = damaged
    with aurora_storage.open(f"rocksdb://{store}", mode="read_only") as repo:
        report = repo.verify()
    assert not report.ok
    assert {p.path for p in report.problems} == set(bad)
    assert {p.tenant for p in report.problems} == {"acme", "initech"}
    # The undamaged tenant between them was read whole, and records after each damaged
    # region too.
    total = len(TENANTS) * PER_TENANT
    assert 2 * PER_TENANT < report.records < total
    for p in report.problems:
        assert p.key is None
        assert p.after is not None
    assert report.problems[0].resume is not None
    # What could not be read is counted (an estimate: RocksDB cannot count the records
    # of a block it cannot read).
    assert report.unchecked is not None
    assert report.unchecked > 0


def test_verify_of_a_healthy_store_skips_nothing(three_tables: Path) -> None:
    with aurora_storage.open(f"rocksdb://{three_tables}", mode="read_only") as repo:
        report = repo.verify()
    assert report.ok
    assert report.records == len(TENANTS) * PER_TENANT
    assert report.unchecked == 0


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "aurora_storage", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_verify_command_names_both_files_and_the_unread_records(
    damaged: tuple[Path, list[str]],
) -> None:
    store, bad = damaged
    out = _cli("verify", f"rocksdb:{store}")
    assert out.returncode == 5, out.stderr
    text = out.stdout.decode()
    for p in bad:
        assert p in text
    assert "could not be read" in text
    doc = orjson.loads(_cli("verify", f"rocksdb:{store}", "--json").stdout)
    assert doc["problem_count"] == 2
    assert doc["unchecked"] > 0


def test_plain_export_of_a_damaged_store_still_refuses(
    damaged: tuple[Path, list[str]], tmp_path: Path
) -> None:
    store, _ = damaged
    out = _cli("export", f"rocksdb:{store}", "-o", str(tmp_path / "x.jsonl"))
    assert out.returncode == 5
    assert b"--salvage" in out.stderr  # the error says how to export what still reads
    assert not (tmp_path / "x.jsonl").exists()


def test_salvage_export_carries_what_reads_and_says_it_is_incomplete(
    damaged: tuple[Path, list[str]], tmp_path: Path
) -> None:
    store, bad = damaged
    target = tmp_path / "x.jsonl"
    out = _cli("export", f"rocksdb:{store}", "--salvage", "-o", str(target))
    # Exit 5: the store is damaged and the file is not a complete export.
    assert out.returncode == 5, out.stderr
    err = out.stderr.decode()
    for p in bad:
        assert p in err
    lines = target.read_bytes().splitlines()
    end = orjson.loads(lines[-1])
    assert end["aurora-storage-export-end"] is True
    assert end["damaged"] == 2  # not a claim of completeness
    records = [orjson.loads(line) for line in lines[1:-1]]
    assert end["records"] == len(records)
    assert sum(r["tenant"] == "globex" for r in records) == PER_TENANT
    assert 2 * PER_TENANT < len(records) < len(TENANTS) * PER_TENANT
    # It imports (the documented salvage path), and the import says it is partial.
    fresh = tmp_path / "fresh"
    imp = _cli("import", f"rocksdb:{fresh}", str(target))
    assert imp.returncode == 0, imp.stderr
    assert b"salvage" in imp.stderr
    with aurora_storage.open(f"rocksdb://{fresh}", mode="read_only") as repo:
        assert repo.count("globex") == PER_TENANT
