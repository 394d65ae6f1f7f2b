"""The README's main job: the demo runs end to end on the real engines."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from aurora_storage.cli._demo import run_demo


def test_demo_runs_every_step(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    run_demo(tmp_path, events=300, console=console)
    out = console.export_text()
    for step in ("1. open", "2. append 300", "3. query", "4. lose", "5. check", "6. rebuild"):
        assert step in out
    assert "30 writes reported HotTierError" in out
    assert "applied 30 change-log entries" in out
    assert "identical to the incrementally maintained one" in out
    assert "every event applied exactly once" in out
    assert "lag 0" in out
    assert (tmp_path / "history").is_dir()
    assert (tmp_path / "projection").is_dir()
