"""``aurora-storage export``/``import`` carry the event-store sequence counters (format
3), so numbers the source used - a deleted record's included - are not given again
after an import; an export without counters stays format 2, and format 2 is read."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import aurora_storage

from .conftest import run_cli


def _source(url: str) -> None:
    """A log that used numbers 1..5, its first and third records since deleted (pruned,
    removed by an operator), and another tenant's sequence."""
    with aurora_storage.open(url) as repo:
        for i in range(1, 6):
            with repo.batch() as b:
                b.append("acme", "n", f"v{i}")
        with repo.batch() as b:
            b.append("other", "log", "x")
        repo.delete("acme", ("n", 1))
        repo.delete("acme", ("n", 3))


@pytest.mark.parametrize("scheme", ["lmdb", "rocksdb"])
def test_export_import_carries_the_sequence_counters(tmp_path: Path, scheme: str) -> None:
    src = f"{scheme}://{tmp_path / 'src'}"
    _source(src)
    exported = run_cli("export", src)
    assert exported.returncode == 0, exported.stderr
    lines = [orjson.loads(x) for x in exported.stdout.splitlines()]
    assert lines[0]["aurora-storage-export"] == 3
    assert lines[-3:] == [
        {"tenant": "acme", "sequence": "n", "last": 5},
        {"tenant": "other", "sequence": "log", "last": 1},
        {"aurora-storage-export-end": True, "records": 4, "sequences": 2},
    ]
    dst = f"{scheme}://{tmp_path / 'dst'}"
    imported = run_cli("import", dst, input=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    with aurora_storage.open(dst) as repo:
        assert repo.last_sequence("acme", "n") == 5
        assert repo.last_sequence("other", "log") == 1
        with repo.batch() as b:
            slot = b.append("acme", "n", "new")
        assert slot.number == 6  # never 1 or 3 again
        with repo.batch() as b:
            b.append("acme", "n", "newer")
    # A second import of the same file never lowers a counter.
    again = run_cli("import", dst, input=exported.stdout)
    assert again.returncode == 0, again.stderr
    with aurora_storage.open(dst) as repo:
        assert repo.last_sequence("acme", "n") == 7


def test_a_tenant_export_carries_only_its_counters(tmp_path: Path) -> None:
    src = f"lmdb://{tmp_path / 'src'}"
    _source(src)
    exported = run_cli("export", src, "--tenant", "other")
    assert exported.returncode == 0, exported.stderr
    lines = [orjson.loads(x) for x in exported.stdout.splitlines()]
    assert lines[1:] == [
        {"tenant": "other", "key": ["log", 1], "value": "x"},
        {"tenant": "other", "sequence": "log", "last": 1},
        {"aurora-storage-export-end": True, "records": 1, "sequences": 1},
    ]
    # An import of one tenant out of a whole export sets that tenant's counters only.
    whole = run_cli("export", src)
    dst = f"lmdb://{tmp_path / 'dst'}"
    imported = run_cli("import", dst, "--tenant", "acme", input=whole.stdout)
    assert imported.returncode == 0, imported.stderr
    with aurora_storage.open(dst) as repo:
        assert repo.last_sequence("acme", "n") == 5
        assert repo.last_sequence("other", "log") == 0


def test_an_export_without_counters_stays_format_2_and_format_2_is_read(
    tmp_path: Path,
) -> None:
    src = f"lmdb://{tmp_path / 'src'}"
    with aurora_storage.open(src) as repo:
        repo.put("acme", ("n", 2), "imported")
    exported = run_cli("export", src)
    assert exported.returncode == 0, exported.stderr
    lines = [orjson.loads(x) for x in exported.stdout.splitlines()]
    assert lines[0] == {"aurora-storage-export": 2, "codec": "json", "values": "json"}
    assert lines[-1] == {"aurora-storage-export-end": True, "records": 1}
    dst = f"lmdb://{tmp_path / 'dst'}"
    imported = run_cli("import", dst, input=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    with aurora_storage.open(dst) as repo:
        assert repo.last_sequence("acme", "n") == 0
        with repo.batch() as b:
            slot = b.append("acme", "n", "new")
        assert slot.number == 1  # the number after the counter is free: taken


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (  # a counter line lost: the end record counts it
            b'{"aurora-storage-export-end":true,"records":1,"sequences":1}\n',
            "counts 1 records and 1 sequence counters, the file holds 1 and 0",
        ),
        (  # a counter out of range
            b'{"tenant":"a","sequence":"n","last":-1}\n'
            b'{"aurora-storage-export-end":true,"records":1,"sequences":1}\n',
            "not an export record",
        ),
    ],
)
def test_a_bad_counter_line_is_refused(tmp_path: Path, tail: bytes, message: str) -> None:
    head = b'{"aurora-storage-export":3,"codec":"json","values":"json"}\n'
    head += b'{"tenant":"a","key":["n",1],"value":1}\n'
    result = run_cli("import", f"lmdb://{tmp_path / 'dst'}", input=head + tail)
    assert result.returncode == 3, result.stderr
    assert message in result.stderr.decode()


_HEAD3 = b'{"aurora-storage-export":3,"codec":"json","values":"json"}\n'


@pytest.mark.parametrize(("first", "second"), [(3, 1), (1, 3), (2, 2)])
@pytest.mark.parametrize("stdin", [False, True])
def test_a_repeated_counter_line_is_refused_before_anything_is_written(
    tmp_path: Path, first: int, second: int, stdin: bool
) -> None:
    # A hand-edited file with one (tenant, sequence) twice: "last" 3 then 1 set the
    # counter to 1 (the last line won), so a number the source used was given again.
    # An export never writes one: refused, naming both lines, nothing imported.
    body = (
        _HEAD3
        + b'{"tenant":"acme","key":["notes",1],"value":"a"}\n'
        + b'{"tenant":"acme","key":["notes",2],"value":"b"}\n'
        + f'{{"tenant":"acme","sequence":"notes","last":{first}}}\n'.encode()
        + b'{"tenant":"acme","sequence":"other","last":1}\n'
        + f'{{"tenant":"acme","sequence":"notes","last":{second}}}\n'.encode()
        + b'{"aurora-storage-export-end":true,"records":2,"sequences":3}\n'
    )
    url = f"lmdb://{tmp_path / 'dst'}"
    with aurora_storage.open(url) as repo:
        repo.put("keep", "k", 1)  # an existing store: its state is checked unchanged
    if stdin:
        result = run_cli("import", url, input=body)
    else:
        (tmp_path / "in.jsonl").write_bytes(body)
        result = run_cli("import", url, str(tmp_path / "in.jsonl"))
    assert result.returncode == 3, result.stderr
    err = result.stderr.decode()
    assert "ImportFormatError" in err
    for part in ("line 6", "line 4", "'notes'"):
        assert part in err, err
    with aurora_storage.open(url) as repo:
        assert repo.last_sequence("acme", "notes") == 0
        assert repo.last_sequence("acme", "other") == 0
        if not stdin:  # a file is checked whole first: nothing imported
            assert list(repo.tenants()) == ["keep"]


def _tiered(tmp_path: Path) -> str:
    from urllib.parse import quote

    hot = quote(f"lmdb://{tmp_path / 'hot'}", safe="")
    cold = quote(f"lmdb://{tmp_path / 'cold'}", safe="")
    return f"tiered://?hot={hot}&cold={cold}"


def test_import_into_a_tiered_pair_says_the_counters_are_not_carried(tmp_path: Path) -> None:
    src = f"lmdb://{tmp_path / 'src'}"
    _source(src)
    exported = run_cli("export", src)
    assert exported.returncode == 0, exported.stderr
    for quiet in ((), ("--quiet",)):
        result = run_cli("import", _tiered(tmp_path), *quiet, input=exported.stdout)
        assert result.returncode == 0, result.stderr
        err = result.stderr.decode()
        assert "2 sequence counters were not carried" in err, err
        assert "tiered" in err, err
    # Without counters in the file, nothing to say.
    with aurora_storage.open(f"lmdb://{tmp_path / 'plain'}") as repo:
        repo.put("a", "k", 1)
    plain = run_cli("export", f"lmdb://{tmp_path / 'plain'}")
    result = run_cli("import", _tiered(tmp_path), input=plain.stdout)
    assert result.returncode == 0, result.stderr
    assert b"not carried" not in result.stderr


def test_copy_into_a_tiered_pair_says_the_counters_are_not_carried(tmp_path: Path) -> None:
    src = f"lmdb://{tmp_path / 'src'}"
    _source(src)
    result = run_cli("copy", src, _tiered(tmp_path))
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "2 sequence counters were not carried" in err, err


@pytest.mark.parametrize(
    ("codec", "tenant"), [("msgpack", None), (None, "acme")], ids=["other-codec", "one-tenant"]
)
def test_copy_through_the_api_carries_the_counters(
    tmp_path: Path, codec: str | None, tenant: str | None
) -> None:
    # A copy between codecs (records re-encoded) and a copy of one tenant carried no
    # counters either: the deleted numbers were given again.
    src = f"lmdb://{tmp_path / 'src'}"
    _source(src)
    dst = f"lmdb://{tmp_path / 'dst'}" + (f"?codec={codec}" if codec else "")
    args = ["--tenant", tenant] if tenant else []
    result = run_cli("copy", src, dst, *args)
    assert result.returncode == 0, result.stderr
    with aurora_storage.open(f"lmdb://{tmp_path / 'dst'}") as repo:
        assert repo.last_sequence("acme", "n") == 5
        assert repo.last_sequence("other", "log") == (0 if tenant else 1)


def _records(k: int) -> bytes:
    return b"".join(
        f'{{"tenant":"acme","key":["r",{i}],"value":{i}}}\n'.encode() for i in range(1, k + 1)
    )


_COUNTERS = (
    b'{"tenant":"acme","sequence":"a","last":3}\n'
    b'{"tenant":"acme","sequence":"b","last":3}\n'
    b'{"tenant":"acme","sequence":"c","last":3}\n'
)


@pytest.mark.parametrize("stdin", [False, True])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (  # the end record's counts differ from the file's: worded as the stream does
            _HEAD3
            + _records(6)
            + _COUNTERS
            + b'{"aurora-storage-export-end":true,"records":6,"sequences":2}\n',
            "the end record counts 6 records and 2 sequence counters, the file holds 6 and 3",
        ),
        (
            _HEAD3
            + _records(5)
            + _COUNTERS
            + b'{"aurora-storage-export-end":true,"records":6,"sequences":3}\n',
            "the end record counts 6 records and 3 sequence counters, the file holds 5 and 3",
        ),
        (  # counter lines in a format-2 file (an export of format 2 has none)
            _HEAD3.replace(b":3,", b":2,")
            + _records(6)
            + _COUNTERS
            + b'{"aurora-storage-export-end":true,"records":6,"sequences":3}\n',
            "line 8 is a sequence counter line: a format-2 export has none",
        ),
        (
            _HEAD3.replace(b":3,", b":2,")
            + _records(6)
            + _COUNTERS
            + b'{"aurora-storage-export-end":true,"records":6}\n',
            "line 8 is a sequence counter line: a format-2 export has none",
        ),
    ],
    ids=["sequences-differ", "records-differ", "fmt2-counters-end3", "fmt2-counters"],
)
def test_file_and_stream_checks_word_counter_problems_alike(
    tmp_path: Path, body: bytes, message: str, stdin: bool
) -> None:
    url = f"lmdb://{tmp_path / 'dst'}"
    if stdin:
        result = run_cli("import", url, input=body)
    else:
        (tmp_path / "in.jsonl").write_bytes(body)
        result = run_cli("import", url, str(tmp_path / "in.jsonl"))
    assert result.returncode == 3, result.stderr
    assert message in result.stderr.decode(), result.stderr.decode()
