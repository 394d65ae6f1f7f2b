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
