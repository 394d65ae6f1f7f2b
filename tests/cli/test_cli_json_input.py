"""Every JSON input of the command line reads integer literals exactly (a plain integer
beyond 64 bits is never a float); imports into a new store take the export's codec and
leave nothing behind when they fail; the export format is checked strictly."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.cli import run

from .conftest import run_cli

_U64 = 1 << 64
_I64 = 1 << 63

#: Integers orjson cannot hold exactly (it made floats of them, or refused them).
big_ints = st.one_of(
    st.integers(min_value=_U64, max_value=10**60),
    st.integers(min_value=-(10**60), max_value=-_I64 - 1),
    st.sampled_from([_U64, _U64 + 1, -_I64 - 1, 10**400, -(10**400)]),
)


class _Pipe(io.BytesIO):
    """stdin as a pipe: not seekable (an import checks it as it streams)."""

    def seekable(self) -> bool:
        return False


def _run(*args: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
    """The command line in this process: exit status, stdout bytes, stderr text."""
    out, err = io.BytesIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    fake_in = io.TextIOWrapper(_Pipe(stdin))
    fake_out = io.TextIOWrapper(out, write_through=True)
    sys.stdin, sys.stdout, sys.stderr = fake_in, fake_out, err
    try:
        code = run(list(args))
        fake_out.flush()
        return code, out.getvalue(), err.getvalue()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"lmdb://{tmp_path_factory.mktemp('big') / 's'}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=big_ints)
def test_a_plain_big_int_key_is_read_exactly_by_get_and_delete(big_store: str, n: int) -> None:
    near = float(n) if abs(n) < 10**300 else None
    with aurora_storage.open(big_store) as repo:
        repo.put("t", n, "exact")
        if near is not None and near != n:
            repo.put("t", near, "the float next to it")
    code, out, err = _run("get", "--key-json", big_store, "t", "--", str(n))
    assert (code, orjson.loads(out)) == (0, "exact"), err
    code, _, err = _run("delete", "--key-json", "-q", big_store, "t", "--", str(n))
    assert code == 0, err
    with aurora_storage.open(big_store) as repo:
        assert not repo.has("t", n)
        if near is not None and near != n:
            assert repo.get("t", near) == "the float next to it"  # not the one deleted
            repo.delete("t", near)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=big_ints)
def test_a_plain_big_int_in_a_key_array_and_tenant_import_is_exact(big_store: str, n: int) -> None:
    key = ["k", n]
    line = orjson.dumps({"tenant": "imp", "key": ["k"], "value": 1})[:-1]
    text = (
        b'{"aurora-storage-export":2,"codec":"json","values":"json"}\n'
        + line.replace(b'["k"]', b'["k",' + str(n).encode() + b"]")
        + b"}\n"
        + b'{"aurora-storage-export-end":true,"records":1}\n'
    )
    code, _, err = _run("import", "-q", big_store, stdin=text)
    assert code == 0, err
    with aurora_storage.open(big_store) as repo:
        assert repo.get("imp", tuple(key)) == 1
        assert list(repo.keys("imp")) == [tuple(key)]
        repo.delete("imp", tuple(key))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=big_ints)
def test_a_plain_big_int_value_is_never_stored_as_a_float(big_store: str, n: int) -> None:
    # The json and msgpack codecs hold 64-bit ints: the exact int is refused (exit 3),
    # never rounded into a float.
    code, _, err = _run("put", "-V", "json", "-q", big_store, "t", "v", "--", str(n))
    assert code == 3, err
    assert "64-bit" in err
    text = (
        b'{"aurora-storage-export":2,"codec":"json","values":"json"}\n'
        b'{"tenant":"t","key":"w","value":' + str(n).encode() + b"}\n"
        b'{"aurora-storage-export-end":true,"records":1}\n'
    )
    code, _, err = _run("import", "-q", big_store, stdin=text)
    assert code == 3, err
    with aurora_storage.open(big_store) as repo:
        assert not repo.has("t", "v")
        assert not repo.has("t", "w")


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("18446744073709551615", _U64 - 1),
        ("[-9223372036854775808]", [-_I64]),
        ("18446744073709551616.0", 1.8446744073709552e19),
        ("1e19", 1e19),
        ("123456789012345678901234567891.5", 1.2345678901234568e29),
        ('"12345678901234567890123"', "12345678901234567890123"),
    ],
)
def test_in_range_ints_and_float_literals_keep_their_type(
    big_store: str, literal: str, expected: Any
) -> None:
    code, _, err = _run("put", big_store, "t", "f", literal, "-V", "json", "-q")
    assert code == 0, err
    with aurora_storage.open(big_store) as repo:
        got = repo.get("t", "f")
    assert (type(got), got) == (type(expected), expected)


def test_json_input_still_refuses_what_json_refuses(big_store: str) -> None:
    for bad in ("NaN", "[1e400, 18446744073709551616]", '["\\ud800", 18446744073709551616]'):
        code, _, err = _run("get", big_store, "t", bad, "--key-json")
        assert code == 2, (bad, err)


# ---------------------------------------------------------------- import targets


def _msgpack_export(tmp_path: Path) -> bytes:
    src = f"lmdb://{tmp_path / 'src'}?codec=msgpack"
    with aurora_storage.open(src) as repo:
        repo.put("acme", "k", b"\x00\xff")
        repo.put("acme", "m", {1: "int-keyed"})
    code, out, err = _run("export", f"lmdb://{tmp_path / 'src'}")
    assert code == 0, err
    return out


def test_import_into_a_new_store_takes_the_exports_codec(tmp_path: Path) -> None:
    text = _msgpack_export(tmp_path)
    dst = f"lmdb://{tmp_path / 'dst'}"
    code, _, err = _run("import", "-q", dst, stdin=text)
    assert code == 0, err
    with aurora_storage.open(dst) as repo:
        assert repo.codec.name == "msgpack"
        assert repo.get("acme", "k") == b"\x00\xff"
        assert repo.get("acme", "m") == {1: "int-keyed"}


def test_a_failed_import_leaves_no_store_it_created(tmp_path: Path) -> None:
    text = _msgpack_export(tmp_path)
    # A codec named in the URL is a conversion (documented); this one cannot carry bytes.
    dst = tmp_path / "dst"
    code, _, err = _run("import", "-q", f"lmdb://{dst}?codec=json", stdin=text)
    assert code == 3, err
    assert not dst.exists(), sorted(p.name for p in dst.iterdir())
    # and the same URL then takes the export with its own codec
    code, _, err = _run("import", "-q", f"lmdb://{dst}?codec=msgpack", stdin=text)
    assert code == 0, err
    # an existing empty directory keeps only what was there
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "mine.txt").write_text("x")
    code, _, err = _run("import", "-q", f"rocksdb://{empty}?codec=json", stdin=text)
    assert code == 3, err
    assert sorted(p.name for p in empty.iterdir()) == ["mine.txt"]


def test_a_failed_import_keeps_an_existing_store(tmp_path: Path) -> None:
    text = _msgpack_export(tmp_path)
    dst = f"lmdb://{tmp_path / 'dst'}"
    with aurora_storage.open(dst) as repo:
        repo.put("acme", "old", 1)
    code, _, err = _run("import", "-q", dst, stdin=text)
    assert code == 3, err
    with aurora_storage.open(dst) as repo:
        assert repo.get("acme", "old") == 1


# ------------------------------------------------------------- format checks


_HEAD = b'{"aurora-storage-export":2,"codec":"json","values":"json"}\n'
_REC = b'{"tenant":"acme","key":"k","value":"00ff"}\n'
_END = b'{"aurora-storage-export-end":true,"records":1}\n'


@pytest.mark.parametrize(
    "text",
    [
        b'{"aurora-storage-export":2,"codec":"json","values":"hex"}\n' + _REC + _END,
        b'{"aurora-storage-export":2.0,"codec":"json","values":"json"}\n' + _REC + _END,
        b'{"aurora-storage-export":true,"codec":"json","values":"json"}\n' + _REC + _END,
        _HEAD + _REC + b'{"aurora-storage-export-end":true,"records":1,"x":0}\n',
    ],
    ids=["values-hex", "format-float", "format-bool", "end-extra-field"],
)
def test_a_loose_export_is_refused(tmp_path: Path, text: bytes) -> None:
    dst = tmp_path / "dst"
    code, _, err = _run("import", "-q", f"lmdb://{dst}", stdin=text)
    assert code == 3, err
    assert "ImportFormatError" in err
    assert not dst.exists()
    path = tmp_path / "f.jsonl"
    path.write_bytes(text)
    code, _, err = _run("import", "-q", f"lmdb://{dst}", str(path))
    assert (code, "ImportFormatError" in err) == (3, True), err


def test_a_stream_cut_inside_a_line_is_incomplete(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    for cut in (_HEAD + _REC[:20], _HEAD + _REC + _END[:10]):
        code, _, err = _run("import", "-q", f"lmdb://{dst}", stdin=cut)
        assert code == 3, err
        assert "IncompleteExportError" in err, err
    # a whole last line without its newline is fine
    code, _, err = _run("import", "-q", f"lmdb://{dst}", stdin=_HEAD + _REC + _END[:-1])
    assert code == 0, err


def test_items_takes_json(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 's'}"
    with aurora_storage.open(url) as repo:
        repo.put("acme", "k", {"a": 1})
    plain = _run("items", url, "acme")
    as_json = _run("items", url, "acme", "--json")
    assert as_json[0] == 0, as_json[2]
    assert as_json[1] == plain[1] == b'{"key":"k","value":{"a":1}}\n'


def test_help_lists_every_exit_code_in_the_docs() -> None:
    result = run_cli("--help")
    text = " ".join(result.stdout.decode().split())
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    table = docs.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert codes == ["0", "1", "2", "3", "4", "5", "6", "70", "130"]
    for code in codes:
        assert f" {code} " in text.split("Exit codes:", 1)[1].split("Examples")[0], code


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (b'{"tenant":"acme","key":{"$float":"nan"},"value":1}\n', "InvalidKeyError"),
        (b'{"tenant":"acme","key":"k","value":18446744073709551616}\n', "SerializationError"),
    ],
    ids=["nan-key", "int-over-64-bits"],
)
def test_a_record_the_store_cannot_hold_names_its_line(
    tmp_path: Path, record: bytes, why: str
) -> None:
    # A NaN key (InvalidKeyError, exit 2) and an integer the codec cannot encode
    # (SerializationError) were raised by the store without the line that holds them.
    dst = tmp_path / "dst"
    end = b'{"aurora-storage-export-end":true,"records":2}\n'
    text = _HEAD + _REC + record + end
    path = tmp_path / "f.jsonl"
    path.write_bytes(text)
    code, _, err = _run("import", "-q", f"rocksdb://{dst}", str(path))
    assert code == 3, err
    assert err.startswith("error: ImportFormatError: line 3"), err
    assert why in err
