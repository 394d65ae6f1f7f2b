"""``aurora-storage demo`` as a user runs it: the real entry point in a subprocess, its
output piped (not a terminal)."""

from __future__ import annotations

import re
from pathlib import Path

import aurora_storage

from .conftest import run_cli

_TENANTS = ("acme", "globex", "initech")


def _demo(*args: str) -> str:
    result = run_cli("demo", *args)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert b"Traceback" not in result.stderr
    return result.stdout.decode()


def _history_count(data_dir: Path) -> int:
    with aurora_storage.open(f"rocksdb://{data_dir}/history?mode=read_only") as history:
        return sum(history.count(t) for t in _TENANTS)


def test_demo_runs_again_on_the_same_data_dir(tmp_path: Path) -> None:
    first = _demo("--data-dir", str(tmp_path), "--events", "200")
    assert "from an earlier run" not in first
    assert _history_count(tmp_path) == 220  # 200, then 20 while the projection is lost
    second = _demo("--data-dir", str(tmp_path), "--events", "200")
    # It says what it does with the earlier run's data: appends after it.
    assert "holds 220 history records from an earlier run: appending after them" in second
    assert "every event applied exactly once" in second
    assert "identical to the incrementally maintained one" in second
    assert _history_count(tmp_path) == 440


def test_demo_with_no_events(tmp_path: Path) -> None:
    out = _demo("--data-dir", str(tmp_path), "--events", "0")
    assert "2. append 0 order events" in out
    assert "4. lose the projection store, write 0 more events" in out
    assert "none yet" in out
    assert _history_count(tmp_path) == 0
    # And a data directory with history, given no new events, shows that history.
    _demo("--data-dir", str(tmp_path), "--events", "100")
    again = _demo("--data-dir", str(tmp_path), "--events", "0")
    assert "holds 110 history records from an earlier run" in again
    assert "acme's order" in again


def test_demo_tables_are_whole_when_piped() -> None:
    out = _demo("--events", "300")
    # rich cuts cells with an ellipsis when a table does not fit the width.
    assert "…" not in out
    assert "revenue (delivered)" in out
    for title in (
        "4. lose the projection store, write 30 more events, restart",
        "6. rebuild the projection from 330 history records",
    ):
        assert re.search(r"│ " + re.escape(title) + r" +│", out), title
    # Every table line fits the width the demo uses when piped.
    assert max(len(line) for line in out.splitlines() if line.startswith(("│", "┃"))) <= 140


def test_demo_shows_where_the_projection_code_lives() -> None:
    out = _demo("--events", "20")
    match = re.search(
        r"projection: aurora_storage\.cli\._demo\.order_projection \((.+?):(\d+);", out
    )
    assert match, out[:2000]
    source = Path(match.group(1)).read_text().splitlines()
    assert source[int(match.group(2)) - 1].startswith("def order_projection(")
    assert "demo-orders" in out


def test_demo_refuses_a_negative_event_count(tmp_path: Path) -> None:
    # A negative count is a usage error (exit 2) naming the option, and nothing is created.
    result = run_cli("demo", "--data-dir", str(tmp_path / "d"), "--events", "-5")
    assert result.returncode == 2, result.stderr.decode()
    assert b"--events" in result.stderr
    assert b"Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()
