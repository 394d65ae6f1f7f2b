"""Every key, tenant and value a store accepts goes through the command line's JSON
output and export/import exactly; an export that stops part-way is never taken for a
complete one; an unexpected failure exits with a documented status and one line.

Before: a key or tenant holding a lone surrogate (``"b-\\udc80"``, as os.fsdecode makes
of a byte that is not UTF-8) made ``export`` crash with a raw TypeError from orjson
(exit 1, documented as "not found", and a traceback) after writing the header, and
``import`` then took the header-only file for a complete export of 0 records (exit 0).
``keys --json`` crashed the same way; msgpack values holding NaN or a Timestamp crashed
``get`` and ``items``.
"""

from __future__ import annotations

import io
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.cli._tagged import from_tagged, to_tagged
from aurora_storage.cli._transfer import (
    ImportFormatError,
    IncompleteExportError,
    export_store,
    import_store,
)

from .conftest import command, run_cli

SURROGATE_KEY = "b-\udc80"  # what os.fsdecode(b"b-\x80") returns
SURROGATE_TENANT = "t-\udcff"

# ------------------------------------------------------------------ strategies

_chars = st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
#: Text as a repository takes it in keys and tenants: lone surrogates included (drawn
#: often: hypothesis draws simple text first).
any_text = st.sampled_from([SURROGATE_KEY, "\ud800", "a\\udc80\udc80"]) | st.text(
    _chars, max_size=8
)
tenants = st.sampled_from(["acme", SURROGATE_TENANT, "\udfff"]) | st.text(
    _chars, min_size=1, max_size=6
)
keys = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**100), 2**100)
    | st.floats(allow_nan=False)
    | any_text
    | st.binary(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple) | st.dictionaries(any_text, inner, max_size=2)
    ),
    max_leaves=6,
)
#: Values the json codec stores (no surrogates: it refuses them).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
#: Values the msgpack codec stores: bytes, NaN, non-str map keys, extension types.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=6))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**34 - 1), st.integers(0, 999_999_999)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(max_size=4) | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=3),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)


def _nan_safe(v: Any) -> Any:
    """``v`` with every NaN replaced by a marker, so that equal contents compare equal."""
    if isinstance(v, float) and math.isnan(v):
        return ("NaN",)
    if isinstance(v, list | tuple):
        return [_nan_safe(x) for x in v]
    if isinstance(v, dict):
        return {k: _nan_safe(x) for k, x in v.items()}
    return v


def _records(draw: Any, values: Any) -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = draw(st.lists(st.tuples(tenants, keys, values), max_size=8))
    return out


class _Composed:
    """A repository seen only through its public scans (as tiered:// is): export takes
    its other path, through ``tenants()`` and ``items()``."""

    def __init__(self, repo: Any) -> None:
        self.codec = repo.codec
        self.tenants = repo.tenants
        self.items = repo.items


class _Stream(io.RawIOBase):
    """A pipe-like stream (stdin): not seekable, so import checks the end record as the
    stream ends."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._data.readinto(b)


def _contents(repo: Any) -> dict[str, list[tuple[Any, Any]]]:
    return {t: [(k, _nan_safe(v)) for k, v in repo.items(t)] for t in sorted(repo.tenants())}


def _round_trip(
    codec: str, records: list[tuple[str, Any, Any]], composed: bool, piped: bool
) -> None:
    with (
        aurora_storage.open("memory://", codec=codec) as src,
        aurora_storage.open("memory://", codec=codec) as dst,
    ):
        for t, k, v in records:
            try:
                src.put(t, k, v)
            except aurora_storage.InvalidKeyError:  # too large for a key: not this test's
                continue
        out = io.BytesIO()
        n = export_store(_Composed(src) if composed else src, out)
        assert n == sum(src.count(t) for t in src.tenants())
        data = out.getvalue()
        data.decode("utf-8")  # strict: an export is valid UTF-8 text
        for line in data.split(b"\n")[:-1]:
            orjson.loads(line)  # every line is JSON that orjson reads
        source = io.BufferedReader(_Stream(data)) if piped else io.BytesIO(data)
        assert import_store(dst, source) == n
        assert _contents(dst) == _contents(src)


_hypothesis = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_hypothesis
@given(data=st.data(), composed=st.booleans(), piped=st.booleans())
def test_export_import_round_trips_json_stores(data: Any, composed: bool, piped: bool) -> None:
    _round_trip("json", _records(data.draw, json_values), composed, piped)


@_hypothesis
@given(data=st.data(), composed=st.booleans(), piped=st.booleans())
def test_export_import_round_trips_msgpack_stores(data: Any, composed: bool, piped: bool) -> None:
    _round_trip("msgpack", _records(data.draw, msgpack_values), composed, piped)


@_hypothesis
@given(key=keys)
def test_tagged_json_carries_every_key(key: Any) -> None:
    text = orjson.dumps(to_tagged(key))
    text.decode("utf-8")
    back = from_tagged(orjson.loads(text), as_key=True)
    assert aurora_storage.encode_key(back) == aurora_storage.encode_key(key)


@_hypothesis
@given(value=msgpack_values | json_values | any_text)
def test_tagged_json_carries_every_value(value: Any) -> None:
    back = from_tagged(orjson.loads(orjson.dumps(to_tagged(value))))
    assert _nan_safe(back) == _nan_safe(_listed(value))


def _listed(v: Any) -> Any:
    # Tagged JSON reads arrays back as lists (keys: tuples).
    if isinstance(v, list | tuple) and type(v) not in (msgpack.ExtType,):
        return [_listed(x) for x in v]
    if isinstance(v, dict):
        return {k: _listed(x) for k, x in v.items()}
    return v


@pytest.mark.parametrize(
    "body",
    ["\\x", "\\u0041", "a\\", "\\udc8", "\\\\\\"],
    ids=["x", "non-surrogate", "end", "short", "odd"],
)
def test_a_malformed_str_tag_is_refused(body: str) -> None:
    from aurora_storage.cli._tagged import TaggedJSONError

    with pytest.raises(TaggedJSONError):
        from_tagged({"$str": body})


# --------------------------------------------------------------- cut exports


def _export(records: list[tuple[str, Any, Any]], codec: str = "json") -> bytes:
    with aurora_storage.open("memory://", codec=codec) as repo:
        for t, k, v in records:
            repo.put(t, k, v)
        out = io.BytesIO()
        export_store(repo, out)
    return out.getvalue()


RECORDS = [("acme", f"k{i}", {"i": i}) for i in range(5)]


@pytest.mark.parametrize("piped", [False, True], ids=["file", "stream"])
@pytest.mark.parametrize("keep", [1, 3, 6], ids=["header-only", "some-records", "all-records"])
def test_an_export_without_its_end_record_is_refused(piped: bool, keep: int) -> None:
    lines = _export(RECORDS).splitlines(keepends=True)
    assert orjson.loads(lines[-1]) == {"aurora-storage-export-end": True, "records": 5}
    cut = b"".join(lines[:keep])
    source = io.BufferedReader(_Stream(cut)) if piped else io.BytesIO(cut)
    with aurora_storage.open("memory://") as dst:
        with pytest.raises(IncompleteExportError, match="end record"):
            import_store(dst, source)
        if not piped:  # a file is checked before anything is written
            assert list(dst.tenants()) == []


@pytest.mark.parametrize("piped", [False, True], ids=["file", "stream"])
def test_an_export_with_a_record_missing_or_added_is_refused(piped: bool) -> None:
    lines = _export(RECORDS).splitlines(keepends=True)
    for changed in (lines[:2] + lines[3:], [*lines[:2], lines[2], lines[2], *lines[3:]]):
        data = b"".join(changed)
        source = io.BufferedReader(_Stream(data)) if piped else io.BytesIO(data)
        with (
            aurora_storage.open("memory://") as dst,
            pytest.raises(
                IncompleteExportError, match="the end record counts 5 records, the file holds"
            ),
        ):
            import_store(dst, source)


@pytest.mark.parametrize("piped", [False, True], ids=["file", "stream"])
def test_lines_after_the_end_record_are_refused(piped: bool) -> None:
    data = _export(RECORDS) + b'{"tenant":"acme","key":"x","value":1}\n'
    source = io.BufferedReader(_Stream(data)) if piped else io.BytesIO(data)
    with aurora_storage.open("memory://") as dst:
        # (A file was told it "does not end with its end record".)
        with pytest.raises(IncompleteExportError, match="line 8: a line follows the end record"):
            import_store(dst, source)
        if not piped:
            assert list(dst.tenants()) == []


def test_a_files_record_count_is_checked_before_anything_is_written() -> None:
    """A record missing from a file of 5,000 was found after 4,000 were written."""
    lines = _export([("acme", f"k{i:05}", i) for i in range(5000)]).splitlines(keepends=True)
    del lines[4500]
    with aurora_storage.open("memory://") as dst:
        with pytest.raises(IncompleteExportError, match="nothing was imported"):
            import_store(dst, io.BytesIO(b"".join(lines)))
        assert list(dst.tenants()) == []


def test_a_files_malformed_end_record_is_refused_before_anything_is_written() -> None:
    lines = _export([("acme", f"k{i:05}", i) for i in range(3000)]).splitlines(keepends=True)
    lines[-1] = b'{"aurora-storage-export-end": true, "records": "3000"}\n'
    with aurora_storage.open("memory://") as dst:
        with pytest.raises(ImportFormatError, match="malformed end record"):
            import_store(dst, io.BytesIO(b"".join(lines)))
        assert list(dst.tenants()) == []


def test_a_record_holding_the_end_records_name_is_a_record() -> None:
    records = [("acme", "aurora-storage-export-end", {"aurora-storage-export-end": True})]
    with aurora_storage.open("memory://") as dst:
        assert import_store(dst, io.BytesIO(_export(records))) == 1
        assert dst.get("acme", "aurora-storage-export-end") == {"aurora-storage-export-end": True}


def test_a_format_1_export_is_refused_before_anything_is_written() -> None:
    data = b'{"aurora-storage-export":1,"codec":"json","values":"json"}\n'
    data += b'{"tenant":"acme","key":"k","value":1}\n'
    with aurora_storage.open("memory://") as dst:
        with pytest.raises(ImportFormatError, match="format 1"):
            import_store(dst, io.BytesIO(data))
        assert list(dst.tenants()) == []


# ------------------------------------------------- the command line, end to end


@pytest.fixture
def odd_store(tmp_path: Path) -> str:
    """An LMDB store whose keys and tenants hold lone surrogates."""
    url = f"lmdb://{tmp_path / 'src'}"
    with aurora_storage.open(url) as repo:
        repo.put("acme", "a-ok", {"n": 1})
        repo.put("acme", SURROGATE_KEY, {"n": 2})
        repo.put("acme", ("order", "\ud800x"), {"n": 3})
        repo.put("acme", "c-ok", {"n": 4})
        repo.put(SURROGATE_TENANT, "k", {"n": 5})
    return url


def _dump(url: str) -> dict[str, list[tuple[Any, Any]]]:
    with aurora_storage.open(url) as repo:
        return {t: list(repo.items(t)) for t in repo.tenants()}


def test_export_and_import_of_surrogate_keys_and_tenants(odd_store: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    exported = run_cli("export", odd_store, "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert lines[-1] == {"aurora-storage-export-end": True, "records": 5}
    assert {"$str": "b-\\udc80"} in [rec.get("key") for rec in lines]
    assert {"$str": "t-\\udcff"} in [rec.get("tenant") for rec in lines]
    dst = f"lmdb://{tmp_path / 'dst'}"
    imported = run_cli("import", dst, str(out))
    assert imported.returncode == 0, imported.stderr
    assert _dump(dst) == _dump(odd_store)
    piped = run_cli("export", odd_store)  # stdout
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == out.read_bytes()


def test_every_json_output_carries_surrogate_keys_and_tenants(odd_store: str) -> None:
    listed = run_cli("keys", odd_store, "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    docs = [orjson.loads(x) for x in listed.stdout.splitlines()]
    assert {"$str": "b-\\udc80"} in docs
    # A key read from keys --json is given back with --key-json.
    for doc in docs:
        got = run_cli("get", odd_store, "acme", orjson.dumps(doc).decode(), "--key-json")
        assert got.returncode == 0, got.stderr
    items = run_cli("items", odd_store, "acme")
    assert items.returncode == 0, items.stderr
    assert len(items.stdout.splitlines()) == 4
    tenants = run_cli("tenants", odd_store, "--counts", "--json")
    assert tenants.returncode == 0, tenants.stderr
    assert {"tenant": {"$str": "t-\\udcff"}, "count": 1} in [
        orjson.loads(x) for x in tenants.stdout.splitlines()
    ]
    # A tenant from the command line: its bytes, as the shell passes them (os.fsdecode).
    counted = run_cli("count", odd_store, SURROGATE_TENANT, "--json")
    assert counted.returncode == 0, counted.stderr
    assert orjson.loads(counted.stdout) == {"tenant": {"$str": "t-\\udcff"}, "count": 1}
    info = run_cli("info", odd_store, "--tenants", "--json")
    assert info.returncode == 0, info.stderr
    tagged = from_tagged(orjson.loads(info.stdout)["tenants"])
    assert tagged == {"acme": 4, SURROGATE_TENANT: 1}
    verified = run_cli("verify", odd_store, "--json")
    assert verified.returncode == 0, verified.stderr
    assert orjson.loads(verified.stdout)["records"] == 5


def test_text_output_writes_surrogates_without_failing(odd_store: str) -> None:
    listed = run_cli("keys", odd_store, "acme")
    assert listed.returncode == 0, listed.stderr
    # U+DC80: the byte it stands for (os.fsdecode's escape); the tuple key as JSON.
    assert b"b-\x80" in listed.stdout.splitlines()
    assert b'["order",{"$str":"\\\\ud800x"}]' in listed.stdout.splitlines()
    tenants = run_cli("tenants", odd_store)
    assert tenants.returncode == 0, tenants.stderr
    assert b"t-\xff" in tenants.stdout.splitlines()
    with aurora_storage.open(odd_store) as repo:
        repo.put("acme", "\ud800-high", 1)  # no byte stands for it: written \ud800
    listed = run_cli("keys", odd_store, "acme")
    assert listed.returncode == 0, listed.stderr
    assert b"\\ud800-high" in listed.stdout.splitlines()


def test_msgpack_values_without_a_json_form_are_tagged(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 'm'}?codec=msgpack"
    with aurora_storage.open(url) as repo:
        repo.put("acme", "nan", [math.nan, math.inf])
        repo.put("acme", "ts", msgpack.Timestamp(1, 2))
        repo.put("acme", "ext", {1: msgpack.ExtType(5, b"x")})
    got = run_cli("get", url, "acme", "nan")
    assert got.returncode == 0, got.stderr
    assert orjson.loads(got.stdout) == [{"$float": "nan"}, {"$float": "inf"}]
    items = run_cli("items", url, "acme")
    assert items.returncode == 0, items.stderr
    assert [orjson.loads(x)["key"] for x in items.stdout.splitlines()] == ["ext", "nan", "ts"]
    put = run_cli("put", url, "acme", "ts2", '{"$ext": [-1, "AAAACAAAAAE="]}', "-V", "json")
    assert put.returncode == 0, put.stderr
    with aurora_storage.open(url) as repo:
        assert repo.get("acme", "ts2") == msgpack.Timestamp(1, 2)


# ------------------------------------------------- an export that fails part-way


@pytest.fixture
def damaged(tmp_path: Path) -> str:
    """An LMDB store with 3,000 records, one of which (k2500) no longer reads."""
    store = tmp_path / "d"
    url = f"lmdb://{store}"
    with aurora_storage.open(url) as repo:
        repo.put_many("acme", ((f"k{i:04d}", {"s": f"value-{i:05d}"}) for i in range(3000)))
    data = (store / "data.mdb").read_bytes()
    assert b'"value-02500"' in data
    (store / "data.mdb").write_bytes(data.replace(b'"value-02500"', b'"value-\x0002500'))
    return url


def test_a_failed_export_to_a_file_leaves_no_file(damaged: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli("export", damaged, "-o", str(out))
    assert result.returncode == 5, result.stderr  # CorruptionError: damaged
    assert b"Traceback" not in result.stderr
    assert result.stderr.count(b"\n") == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "d"]  # no out.jsonl, no partial file
    out.write_bytes(b"an older export\n")
    again = run_cli("export", damaged, "-o", str(out))
    assert again.returncode == 5
    assert out.read_bytes() == b"an older export\n"  # unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "out.jsonl"]


def test_a_failed_export_to_stdout_is_refused_by_import(damaged: str, tmp_path: Path) -> None:
    result = run_cli("export", damaged)
    assert result.returncode == 5, result.stderr
    assert len(result.stdout.splitlines()) > 1  # the chunks read before the damage
    dst = f"lmdb://{tmp_path / 'dst'}"
    imported = run_cli("import", dst, input=result.stdout)
    assert imported.returncode == 3, imported.stderr
    err = imported.stderr.decode()
    assert err.startswith("error: IncompleteExportError: the export ends at line")
    assert "cut short" in err
    assert err.count("\n") == 1
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(result.stdout)
    from_file = run_cli("import", dst + "2", str(cut))
    assert from_file.returncode == 3
    assert b"nothing was imported" in from_file.stderr
    with aurora_storage.open(dst + "2") as repo:
        assert list(repo.tenants()) == []


# --------------------------------------------------------- unexpected failures


def test_a_full_disk_exits_3_with_one_line(odd_store: str) -> None:
    to_file = run_cli("export", odd_store, "-o", "/dev/full")
    with open("/dev/full", "wb") as full:
        to_stdout = subprocess.run(
            [*command(), "export", odd_store],
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=120,
        )
    for result in (to_file, to_stdout):
        assert result.returncode == 3, result.stderr
        assert result.stderr.count(b"\n") == 1, result.stderr
    # A file names itself (a device is written directly: it may hold part of the export).
    assert to_file.stderr.startswith(
        b"error: StorageFullError: cannot write the export to /dev/full: No space left on "
        b"device; the export to /dev/full stopped part-way"
    ), to_file.stderr
    assert to_stdout.stderr == b"error: OSError: [Errno 28] No space left on device\n"


def test_an_unwritable_output_path_is_a_usage_error(odd_store: str, tmp_path: Path) -> None:
    result = run_cli("export", odd_store, "-o", str(tmp_path / "no" / "dir" / "x.jsonl"))
    assert result.returncode == 2, result.stderr
    assert b"cannot write" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.fixture
def boom() -> Iterator[str]:
    """A command that fails with an exception no command expects (a bug)."""
    import click

    from aurora_storage.cli import cli

    @click.command("boom-test")
    def failing() -> None:
        raise RuntimeError("something\nbroke")

    cli.add_command(failing)
    try:
        yield "boom-test"
    finally:
        cli.commands.pop("boom-test")


def test_an_unexpected_exception_exits_70_with_one_line(
    boom: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from aurora_storage.cli import ExitCode, run

    assert ExitCode.INTERNAL.value == 70
    assert run([boom]) == ExitCode.INTERNAL
    err = capfd.readouterr().err
    assert err.startswith("error: internal error: RuntimeError: something broke (a bug")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_the_exit_codes_are_documented() -> None:
    from aurora_storage.cli import ExitCode

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    table = doc.split("## Exit codes")[1].split("##")[0]
    for code in ExitCode:
        assert f"\n| {int(code)} |" in table, code
