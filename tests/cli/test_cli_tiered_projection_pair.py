"""The command line with a projection-mode tiered pair (break-tiered4 F3, F4).

The rule (docs/cli.md, "Tiered pairs"): to ``export``, ``import`` and ``copy``, a
projection-mode pair's records are its **history** (the cold tier); the projection is
derived from it. So ``export`` writes the history, ``import``/``copy`` append to it
(each record projected), the check after ``copy`` compares histories, ``copy --resume``
and a re-run ``import`` skip what history already holds with the same value. Before,
a correct copy exited 5 (events compared with the projection), ``--resume`` and a
re-run import exited 3 (``KeyExistsError``), and the export held the projection, which
no pair could import. And read commands open such a pair without its projection
(nothing is written, so nothing can be lost): before, a pair whose projection is a
plain function could not be read at all.

Real processes (the installed entry point), real RocksDB and LMDB stores; the
``demo-orders`` projection is published as an entry point by aurora-storage itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aurora_storage
from aurora_storage.cli._demo import order_projection
from aurora_storage.tiered import TieredRepository

from .conftest import run_cli

EVENTS = [
    (
        ("2026-11-23T10:00:01.000Z", 1),
        {"type": "OrderCreated", "order": "o-1", "customer": "c", "total": 1},
    ),
    (
        ("2026-11-23T10:00:02.000Z", 2),
        {"type": "OrderCreated", "order": "o-2", "customer": "c", "total": 2},
    ),
    (("2026-11-23T10:00:03.000Z", 3), {"type": "OrderPaid", "order": "o-1"}),
    (
        ("2026-11-23T10:00:04.000Z", 4),
        {"type": "OrderCreated", "order": "o-3", "customer": "d", "total": 3},
    ),
]


def _pair_url(d: Path, projection: str | None = "demo-orders", read_only: bool = False) -> str:
    hot, cold = f"lmdb://{d}/hot", f"rocksdb://{d}/cold"
    if read_only:
        hot, cold = hot + "?read_only=true", cold + "?mode=read_only"
    url = f"tiered://?hot={quote(hot, safe='')}&cold={quote(cold, safe='')}"
    return url if projection is None else url + f"&projection={projection}"


def _history(d: Path, events: list[tuple[Any, Any]] = EVENTS) -> str:
    url = f"rocksdb://{d}"
    with aurora_storage.open(url) as repo:
        for key, value in events:
            repo.put("acme", key, value)
    return url


def _direct(d: Path, events: list[tuple[Any, Any]] = EVENTS) -> None:
    """A pair written directly through the Python API (the expected projection)."""
    with aurora_storage.open(_pair_url(d)) as pair:
        for key, value in events:
            pair.put("acme", key, value)


def _state(d: Path) -> tuple[dict[Any, Any], list[tuple[Any, Any]]]:
    """The pair's projection and history, read with its projection."""
    with aurora_storage.open(_pair_url(d)) as pair:
        assert isinstance(pair, TieredRepository)
        return dict(pair.items("acme")), list(pair.history.items("acme"))


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return str(result.stderr.decode())


def test_copy_events_into_a_pair_verifies_the_history(tmp_path: Path) -> None:
    src = _history(tmp_path / "events")
    _direct(tmp_path / "direct")
    err = _ok(run_cli("copy", src, _pair_url(tmp_path / "p")))
    assert "copied 4 records" in err
    assert "verified: the target holds the source's 4 records" in err
    assert _state(tmp_path / "p") == _state(tmp_path / "direct")


def test_copy_resume_into_a_pair_continues_and_skips_what_history_holds(tmp_path: Path) -> None:
    src = _history(tmp_path / "events")
    _direct(tmp_path / "p", EVENTS[:2])  # an interrupted copy: the first two events
    err = _ok(run_cli("copy", src, _pair_url(tmp_path / "p"), "--resume"))
    assert "copied 2 records" in err
    assert "verified" in err
    _direct(tmp_path / "direct")
    assert _state(tmp_path / "p") == _state(tmp_path / "direct")
    # Run again: nothing left to copy, and still verified.
    err = _ok(run_cli("copy", src, _pair_url(tmp_path / "p"), "--resume"))
    assert "copied 0 records" in err
    assert _state(tmp_path / "p") == _state(tmp_path / "direct")


def test_copy_without_resume_into_a_pair_with_history_is_refused(tmp_path: Path) -> None:
    src = _history(tmp_path / "events")
    _direct(tmp_path / "p", EVENTS[:1])
    result = run_cli("copy", src, _pair_url(tmp_path / "p"))
    assert result.returncode == 2, result.stderr
    assert b"already holds records" in result.stderr


def test_import_into_a_pair_run_again_skips_what_history_holds(tmp_path: Path) -> None:
    src = _history(tmp_path / "events")
    out = tmp_path / "events.jsonl"
    _ok(run_cli("export", src, "-o", str(out), "-q"))
    url = _pair_url(tmp_path / "p")
    assert "imported 4 records" in _ok(run_cli("import", url, str(out)))
    # An interrupted import is simply run again.
    err = _ok(run_cli("import", url, str(out)))
    assert "imported 0 records" in err
    assert "4 already in its history" in err
    _direct(tmp_path / "direct")
    assert _state(tmp_path / "p") == _state(tmp_path / "direct")


def test_import_into_a_pair_refuses_a_history_record_with_another_value(tmp_path: Path) -> None:
    src = _history(tmp_path / "events")
    other = {"type": "OrderCreated", "order": "o-9", "customer": "x", "total": 9}
    _direct(tmp_path / "p", [(EVENTS[0][0], other)])
    out = tmp_path / "events.jsonl"
    _ok(run_cli("export", src, "-o", str(out), "-q"))
    before = _state(tmp_path / "p")
    result = run_cli("import", _pair_url(tmp_path / "p"), str(out))
    assert result.returncode == 3, result.stderr
    err = result.stderr.decode()
    assert err.startswith("error: KeyExistsError: line 2:"), err
    assert "already holds key" in err
    assert "with another value" in err
    assert "append-only" in err
    assert _state(tmp_path / "p") == before  # the refused chunk wrote nothing


def test_export_of_a_pair_is_its_history_and_imports_into_a_pair(tmp_path: Path) -> None:
    _direct(tmp_path / "p")
    out = tmp_path / "pair.jsonl"
    _ok(run_cli("export", _pair_url(tmp_path / "p"), "-o", str(out), "-q"))
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert lines[-1] == {"aurora-storage-export-end": True, "records": 4}
    assert [(tuple(r["key"]), r["value"]) for r in lines[1:-1]] == EVENTS
    assert "imported 4 records" in _ok(run_cli("import", _pair_url(tmp_path / "q"), str(out)))
    assert _state(tmp_path / "q") == _state(tmp_path / "p")


def test_copy_pair_to_pair_and_to_a_plain_store(tmp_path: Path) -> None:
    _direct(tmp_path / "p")
    err = _ok(run_cli("copy", _pair_url(tmp_path / "p"), _pair_url(tmp_path / "q")))
    assert "verified: the target holds the source's 4 records" in err
    assert _state(tmp_path / "q") == _state(tmp_path / "p")
    plain = f"rocksdb://{tmp_path / 'plain'}"
    _ok(run_cli("copy", _pair_url(tmp_path / "p"), plain))
    with aurora_storage.open(plain) as repo:
        assert list(repo.items("acme")) == _state(tmp_path / "p")[1]


def _count(record: Any, state: Any) -> None:
    state.put("n", state.get("n", 0) + 1)


def test_read_commands_open_a_pair_whose_projection_is_a_plain_function(tmp_path: Path) -> None:
    with TieredRepository[Any, Any](
        hot=aurora_storage.open(f"lmdb://{tmp_path}/hot"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
        projection=_count,
    ) as repo:
        repo.put("acme", "e1", {})
        repo.put("acme", "e2", {})
    url = _pair_url(tmp_path, projection=None)
    info = run_cli("info", url, "--json")
    _ok(info)
    assert b'"projection"' in info.stdout
    _ok(run_cli("verify", url))
    assert run_cli("tenants", url).stdout.split() == [b"acme"]
    assert run_cli("get", url, "acme", "n").stdout.strip() == b"2"
    assert run_cli("count", url, "acme").stdout.strip() == b"1"
    exported = run_cli("export", url)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines()[-1] == b'{"aurora-storage-export-end":true,"records":2}'
    # A writing command still needs the projection.
    refused = run_cli("put", url, "acme", "e3", "{}", "-V", "json")
    assert refused.returncode == 3
    assert b"created in projection mode" in refused.stderr


def test_demo_projection_is_the_one_used(tmp_path: Path) -> None:
    # The expected states above come from demo-orders by name; check it is the demo's.
    from aurora_storage.tiered._config import resolve_projection

    assert resolve_projection("demo-orders") is order_projection
