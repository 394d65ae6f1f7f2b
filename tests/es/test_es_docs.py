"""The worked example of docs/eventsourcing.md runs as written (on a temporary store)."""

from __future__ import annotations

import re
import sys
import tempfile
import types
from pathlib import Path

import pytest
from es_cases import require_primitives

DOC = Path(__file__).resolve().parents[2] / "docs" / "eventsourcing.md"


def _worked_example() -> str:
    text = DOC.read_text()
    section = text.split("### Worked example", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/eventsourcing.md lost its worked example"
    return match.group(1)


def test_worked_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _worked_example()
    # The example makes its store in a new temporary directory: here, under tmp_path.
    assert "tempfile.TemporaryDirectory()" in code
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    require_primitives(f"lmdb://{tmp_path / 'probe'}")
    # The example sets these in os.environ; monkeypatch restores them afterwards.
    monkeypatch.delenv("PERSISTENCE_MODULE", raising=False)
    monkeypatch.delenv("AURORA_URL", raising=False)
    # eventsourcing finds event classes again by their module's name: give the
    # example a real module.
    module = types.ModuleType("dogschool_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, str(DOC), "exec"), module.__dict__)
