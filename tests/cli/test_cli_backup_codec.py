"""`backup` and `restore` of a store whose codec only the application knows (registered
with ``register_codec``, not a codec plugin): a backup copies files and its check reads
every record with the engine's checksums, so neither needs the codec. Before, both
failed before anything was done, even with ``--no-verify``: ``error:
ConfigurationError: unknown codec 'rot'; known codecs: json, msgpack, raw``, exit 3.

Now the store opens with a stand-in for its codec that never decodes (values are
bytes to it; it writes none): the backup is made, checked at the checksum level - damage
is still found, exit 5 - and a ``warning:`` line says the values were not decoded and how
to make the codec known to the command line (a codec plugin). The application reads
the backup, and a restored store, with its codec. Real RocksDB and LMDB stores written
by a separate process that registers the codec; this test process never does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import flip, run_cli, tables

_DAMAGED = 5  # docs/cli.md, "Exit codes"
CODEC = "app-text"
MARK = "damage-me-" * 4
N = 3000

#: The application: registers its codec, then writes the store (``write``; RocksDB's
#: records flushed into a table file) or prints what a store holds (``read``).
_APP = f"""
import json, sys
import aurora_storage
from aurora_storage import Codec, register_codec

register_codec(Codec({CODEC!r}, encode=lambda v: v.encode(), decode=lambda b: b.decode()))
url, action = sys.argv[1], sys.argv[2]
if action == "write":
    with aurora_storage.open(url, codec={CODEC!r}) as repo:
        repo.put_many("acme", {{("k", i): f"value {{i}} " + "x" * 60 for i in range({N})}})
        repo.put("acme", ("k", 1500), {MARK!r})
        if url.startswith("rocksdb"):
            repo.backend.flush(memtables=True)
else:
    with aurora_storage.open(url) as repo:
        print(json.dumps([repo.codec.name, repo.count("acme"), repo.get("acme", ("k", 7))]))
"""


def _app(url: str, action: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _APP, url, action], capture_output=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def _holds_everything(url: str) -> None:
    """The application reads every record of the store at ``url`` with its codec."""
    assert json.loads(_app(url, "read")) == [CODEC, N, "value 7 " + "x" * 60]


@pytest.fixture(params=["rocksdb", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "store"
    _app(f"{request.param}:{path}", "write")
    return request.param, path


def _says_values_not_decoded(err: str) -> None:
    (line,) = (w for w in err.splitlines() if w.startswith("warning:") and CODEC in w)
    assert "not known to the command line" in line
    assert "not decode" in line
    assert "codec plugin" in line
    assert "docs/concepts/plugins.md" in line


def test_backup_no_verify_needs_no_codec(store: tuple[str, Path], tmp_path: Path) -> None:
    scheme, path = store
    out = run_cli("backup", "--no-verify", f"{scheme}:{path}", str(tmp_path / "bk"))
    assert out.returncode == 0, out.stderr
    assert b"not checked: --no-verify" in out.stderr
    assert b"unknown codec" not in out.stderr
    assert b"warning" not in out.stderr  # (nothing is decoded without the check anyway)
    _holds_everything(f"{scheme}:{tmp_path / 'bk'}")


def test_backup_checks_the_backup_at_the_checksum_level(
    store: tuple[str, Path], tmp_path: Path
) -> None:
    scheme, path = store
    out = run_cli("backup", f"{scheme}:{path}", str(tmp_path / "bk"))
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    _says_values_not_decoded(err)
    assert f"({N} records checked, values not decoded)" in err, err
    assert sorted(os.listdir(tmp_path)) == ["bk", "store"]
    _holds_everything(f"{scheme}:{tmp_path / 'bk'}")
    _holds_everything(f"{scheme}:{path}")  # (and the store is as it was)


def test_backup_finds_damage_without_the_codec(store: tuple[str, Path], tmp_path: Path) -> None:
    scheme, path = store
    if scheme == "rocksdb":
        table = tables(path)[0]
        flip(table, os.path.getsize(table) // 3)
    else:
        data = path / "data.mdb"
        for m in re.finditer(MARK.encode(), data.read_bytes()):
            flip(str(data), m.start() + 3)
    out = run_cli("backup", f"{scheme}:{path}", str(tmp_path / "bk"))
    assert out.returncode == _DAMAGED, out.stderr
    last = out.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("error: CorruptionError: the backup"), last
    assert "holds the damage" in last


@pytest.mark.parametrize("verify", [True, False], ids=["checked", "no-verify"])
def test_restore_of_such_a_backup_needs_no_codec(
    store: tuple[str, Path], tmp_path: Path, verify: bool
) -> None:
    scheme, path = store
    assert (
        run_cli("backup", "-q", "--no-verify", f"{scheme}:{path}", str(tmp_path / "bk")).returncode
        == 0
    )
    restored = tmp_path / "restored"
    argv = ["restore", str(tmp_path / "bk"), f"{scheme}:{restored}", "--yes"]
    out = run_cli(*argv, *([] if verify else ["--no-verify"]))
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    assert "unknown codec" not in err
    assert f"restored {N} records" in err, err
    if verify:
        _says_values_not_decoded(err)
        assert "backup checked, its values not decoded" in err, err
    else:
        assert "warning" not in err
    _holds_everything(f"{scheme}:{restored}")


def test_a_store_without_its_marker_is_backed_up_too(
    store: tuple[str, Path], tmp_path: Path
) -> None:
    # A store created before markers existed (or one only ever opened read-only since
    # a restore): the codec's name is read from the store's metadata record.
    scheme, path = store
    os.remove(path / "aurora-store.json")
    out = run_cli("backup", f"{scheme}:{path}", str(tmp_path / "bk"))
    assert out.returncode == 0, out.stderr
    _says_values_not_decoded(out.stderr.decode())
    _holds_everything(f"{scheme}:{tmp_path / 'bk'}")


def test_an_unknown_codec_the_store_does_not_name_gets_the_plugin_advice(tmp_path: Path) -> None:
    # Where the store tells no codec name (no marker, no readable metadata record), the
    # open's own error stands, with a note on how to make the codec known.
    from aurora_storage.cli._backup import _opened
    from aurora_storage.errors import ConfigurationError

    def refused(url: str, **options: object) -> object:
        raise ConfigurationError(f"unknown codec {CODEC!r}; known codecs: json, msgpack, raw")

    with pytest.raises(ConfigurationError) as info:
        _opened(refused, f"lmdb:{tmp_path / 'nothing here'}", tell=True)
    (note,) = info.value.__notes__
    assert "codec plugin" in note
    assert "docs/concepts/plugins.md" in note
