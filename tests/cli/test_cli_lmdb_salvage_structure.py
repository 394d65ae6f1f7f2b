"""LMDB structural damage and the read-past-damage commands: damage only in the free
list (freeDB) leaves every record readable, so `verify` reads and checks them (after
naming the structural damage) and `export --salvage` exports them all, marked as a
salvage; damage in the records' own tree (its root branch page) cannot be read past
safely (liblmdb may abort the process on it), so `verify` says the records were not
read and `export --salvage` refuses, naming the damage and writing nothing. Neither
command writes to the damaged file."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

import aurora_storage

from .conftest import run_cli

_DAMAGED = 5
_N = 2000


def _meta(data: Path) -> tuple[int, int, int]:
    """The page size, the free tree's root and the main tree's root named by the
    committed meta page (the higher transaction id): see _format._committed_root."""
    raw = data.read_bytes()
    psize = struct.unpack_from("<I", raw, 40)[0]
    metas = [raw[0:160], raw[psize : psize + 160]]
    meta = max(metas, key=lambda m: struct.unpack_from("<Q", m, 144)[0])
    return psize, struct.unpack_from("<Q", meta, 80)[0], struct.unpack_from("<Q", meta, 128)[0]


def _store(tmp: Path, tree: str) -> Path:
    """Two tenants of ``_N`` records, one byte of the ``tree`` ("free" or "main") root
    page's header flipped (its mp_lower: the node offsets run out of bounds)."""
    path = tmp / tree
    with aurora_storage.open(f"lmdb://{path}") as r:
        for t in ("a", "b"):
            r.put_many(t, {("k", i): {"i": i, "v": "y" * 100} for i in range(_N)})
    data = path / "data.mdb"
    psize, free, main = _meta(data)
    page = free if tree == "free" else main
    with open(data, "r+b") as fh:
        fh.seek(page * psize + 12)
        b = fh.read(1)
        fh.seek(page * psize + 12)
        fh.write(bytes([b[0] ^ 0xFF]))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def free(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _store(tmp_path_factory.mktemp("lmdbfree"), "free")


@pytest.fixture(scope="module")
def main_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _store(tmp_path_factory.mktemp("lmdbmain"), "main")


def test_free_list_damage_verify_reads_every_record(free: Path) -> None:
    before = _digest(free)
    out = run_cli("verify", f"lmdb://{free}", "--json")
    assert out.returncode == _DAMAGED, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert doc["structure_checked"] is True
    assert doc["records"] == 2 * _N  # read and checked, not "0 records checked"
    assert doc["unchecked"] == 0
    assert doc["problems"]
    assert all("freeDB" in p["message"] for p in doc["problems"]), doc["problems"][:3]
    text = run_cli("verify", f"lmdb://{free}")
    assert text.returncode == _DAMAGED
    assert f"{2 * _N} records checked".encode() in text.stdout, text.stdout[-400:]
    assert _digest(free) == before


def test_free_list_damage_salvage_exports_every_record(free: Path, tmp_path: Path) -> None:
    before = _digest(free)
    target = tmp_path / "out.jsonl"
    out = run_cli("export", f"lmdb://{free}", "--salvage", "-o", str(target))
    assert out.returncode == _DAMAGED, out.stderr
    err = out.stderr.decode()
    assert "freeDB" in err, err
    lines = [json.loads(line) for line in target.read_bytes().splitlines()]
    records = [d for d in lines if "key" in d]
    assert len(records) == 2 * _N
    assert {(d["tenant"], d["key"][1]) for d in records} == {
        (t, i) for t in "ab" for i in range(_N)
    }
    end = lines[-1]
    assert end["records"] == 2 * _N
    assert end["damaged"] >= 1  # marked as a salvage: the store is damaged
    assert _digest(free) == before
    # Without --salvage the export still refuses the damaged store, writing nothing.
    plain = run_cli("export", f"lmdb://{free}", "-o", str(tmp_path / "plain.jsonl"))
    assert plain.returncode == _DAMAGED
    assert not (tmp_path / "plain.jsonl").exists()


def test_main_tree_damage_verify_says_records_were_not_read(main_root: Path) -> None:
    before = _digest(main_root)
    out = run_cli("verify", f"lmdb://{main_root}")
    assert out.returncode == _DAMAGED, out.stderr
    text = out.stdout.decode()
    assert "0 records checked" in text
    # Not read as "the store holds no records": the unread records are mentioned.
    assert "the records were not read" in text, text[-600:]
    assert "copies every record that still reads" not in text
    assert _digest(main_root) == before


def test_main_tree_damage_salvage_refuses_naming_why(main_root: Path, tmp_path: Path) -> None:
    before = _digest(main_root)
    target = tmp_path / "out.jsonl"
    out = run_cli("export", f"lmdb://{main_root}", "--salvage", "-o", str(target))
    assert out.returncode == _DAMAGED, out.stderr
    err = out.stderr.decode()
    assert err.startswith("error: CorruptionError:"), err
    assert "main DB" in err, err
    assert "cannot read past" in err, err
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == []
    assert _digest(main_root) == before
