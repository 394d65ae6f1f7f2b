"""import-seed after things went wrong: a run killed before its target's marker, a source
that is an aurora-storage store (perhaps a TypeScript store an older version took over),
numbers beyond JavaScript's safe integers, and a reader that stops early."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import rocksdict
from hypothesis import given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage._stores import MARKER_NAME
from aurora_storage.config import URL
from aurora_storage.migrate import SeedSourceError, import_seed
from aurora_storage.migrate._split import parse_json

from .conftest import command, run_cli


def build_ts_store(path: Path, records: list[tuple[bytes, bytes]]) -> None:
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for key, value in records:
        db[key] = value
    db.close()
    os.remove(path / "rocksdict-config.json")


def many(n: int) -> list[tuple[bytes, bytes]]:
    return [(f'acme:["k",{i}]'.encode(), json.dumps({"n": i}).encode()) for i in range(n)]


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_an_import_killed_before_the_targets_marker_resumes(tmp_path: Path, scheme: str) -> None:
    src = tmp_path / "ts"
    build_ts_store(src, many(5000))
    target = f"{scheme}:{tmp_path}/out"
    # SIGKILL at the instant the marker is written (after the engine's files and the
    # flushed metadata record): what a real kill -9 in that window leaves.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import aurora_storage._metadata as m
        m.write_marker = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        from aurora_storage.cli import main
        sys.argv = ["aurora-storage", "import-seed", {str(src)!r}, {target!r}, "-q"]
        main()
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "out" / MARKER_NAME).exists()
    again = run_cli("import-seed", str(src), target, "-q")
    assert again.returncode == 0, again.stderr
    with aurora_storage.open(target.replace(":", "://", 1)) as repo:
        assert repo.count("acme") == 5000
    assert run_cli("verify", target).returncode == 0


def test_an_aurora_store_as_the_source_is_named_with_its_engine(tmp_path: Path) -> None:
    for scheme in ("rocksdb", "lmdb"):
        with aurora_storage.open(f"{scheme}://{tmp_path}/{scheme}") as repo:
            repo.put("t", "k", 1)
        with pytest.raises(SeedSourceError) as info:
            import_seed(tmp_path / scheme, "memory://")
        message = str(info.value)
        # Named by its URL, quoted for the shell (runs as pasted: test_cli_backup_advice).
        named = shlex.quote(URL(scheme, f"{tmp_path}/{scheme}").render(hide_secrets=False))
        assert f"aurora-storage copy {named} URL" in message
        other = "lmdb" if scheme == "rocksdb" else "rocksdb"
        assert f"copy {other}:" not in message
        # What to do when a TypeScript store was taken over by an older aurora-storage.
        assert f"move {tmp_path}/{scheme}/{MARKER_NAME}" in message


def test_a_taken_over_typescript_store_is_imported_after_its_marker_is_moved(
    tmp_path: Path,
) -> None:
    # What an aurora-storage before this fix left of a TypeScript store it opened: the
    # TypeScript records, plus its metadata record and marker.
    store = tmp_path / "events"
    build_ts_store(store, many(10))
    db = rocksdict.Rdict(str(store), options=rocksdict.Options(raw_mode=True))
    db[b"\x00aurora:meta"] = b'{"format":1,"codec":"json"}'
    db.close()
    (store / MARKER_NAME).write_text('{"backend": "rocksdb", "format": 1, "codec": "json"}')
    refused = run_cli("import-seed", str(store), f"lmdb:{tmp_path}/out")
    assert refused.returncode == 4
    assert "move" in refused.stderr.decode()
    # The documented recovery path.
    shutil.move(store / MARKER_NAME, tmp_path / "aside.json")
    done = run_cli("import-seed", str(store), f"lmdb:{tmp_path}/out", "--json")
    report = json.loads(done.stdout)
    assert report["imported"] == 10
    assert report["not_imported"] == 0  # the metadata record is aurora's, not a record
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------ numbers as JSON.parse reads


def js_value(text: str) -> float:
    """The double ``JSON.parse`` makes of a JSON number ``text`` (IEEE round-to-nearest,
    as Python's ``float`` of the decimal text)."""
    return float(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9007199254740993", 9007199254740992),  # 2**53 + 1 is no double: JS holds 2**53
        ("1152921504606847000", 1152921504606846976),  # JSON.stringify(2**60)
        ("-9223372036854776000", -(2**63)),  # JSON.stringify(-(2**63))
        ("1766832284123000000", int(float("1766832284123000000"))),  # ns timestamps
        ("150000000000000000000", 1.5e20),  # beyond 64 bits: the double itself
        ("123456789012345678901234567890", 1.2345678901234568e29),
        ("9007199254740991", 2**53 - 1),  # safe integers stay as they are
        ("-42", -42),
    ],
)
def test_numbers_are_read_as_javascript_read_them(text: str, expected: Any) -> None:
    got = parse_json(text)
    assert got == expected
    assert type(got) is type(expected)
    assert got == js_value(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_every_integer_text_reads_as_the_double_javascript_holds(n: int) -> None:
    got = parse_json(str(n))
    assert got == float(n)
    if -(2**53) <= n <= 2**53:
        assert got == n
        assert type(got) is int
    if -(2**63) <= got < 2**64:
        assert type(got) is int  # stored exactly by every codec
    # What aurora-storage stores gives the TypeScript app's value back.
    with aurora_storage.open("memory://") as repo:
        repo.put("t", "k", {"n": got})
        assert repo.get("t", "k") == {"n": float(n)}


def test_import_seed_keeps_the_values_the_typescript_app_saw(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    values = {"p60": 2**60, "ns": 1766832284123 * 10**6, "wei": 1.5e20, "minlong": -(2**63)}
    # JSON.stringify's text of each double: the shortest digits, then zeros.
    texts = {
        "p60": "1152921504606847000",
        "ns": "1766832284123000000",
        "wei": "150000000000000000000",
        "minlong": "-9223372036854776000",
    }
    build_ts_store(
        src, [(f'acme:"{k}"'.encode(), f'{{"n":{t}}}'.encode()) for k, t in texts.items()]
    )
    for scheme in ("rocksdb", "lmdb"):
        done = run_cli("import-seed", str(src), f"{scheme}:{tmp_path}/{scheme}")
        assert done.returncode == 0, done.stderr
        with aurora_storage.open(f"{scheme}://{tmp_path}/{scheme}") as repo:
            for k, v in values.items():
                assert repo.get("acme", k) == {"n": float(v)}, k


# ------------------------------------------------------------------ exit status


def test_records_left_out_exit_5_even_when_the_reader_stops_early(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    build_ts_store(src, many(3000) + [(f"acme:bad{i}".encode(), b"1") for i in range(3000)])
    for i, (extra, stream) in enumerate((((), "stderr"), (("--json",), "stdout"))):
        out = f"rocksdb:{tmp_path}/out{i}"
        proc = subprocess.Popen(
            [*command(), "import-seed", str(src), out, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stream == "stderr" else subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        # The reader is gone before the report is written (`| head -c 10` that already
        # had its bytes): every write of the report meets a closed pipe.
        proc.stdout.close()
        assert proc.wait(timeout=120) == 5, extra
