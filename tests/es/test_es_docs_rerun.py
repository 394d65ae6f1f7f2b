"""The examples of docs/eventsourcing.md hold whenever they run, not only on a fresh
directory: run twice from one working directory (as a reader runs them twice), the
primitives story and the worked example pass both times, each on a store of its own.
And the ``watch`` example's "after a restart" is a real restart: the repository is
closed and opened again, which only a change-log store survives (an in-process feed
raises PositionExpiredError there)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import types
from pathlib import Path

import pytest
from es_cases import require_primitives

DOC = Path(__file__).resolve().parents[2] / "docs" / "eventsourcing.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _primitives() -> str:
    """The story of "The primitives": its python blocks, in order, as one program."""
    text = DOC.read_text()
    section = text.split("## The primitives", 1)[1].split("## The eventsourcing module", 1)[0]
    blocks = _blocks(section)
    assert len(blocks) >= 5, "docs/eventsourcing.md lost its primitives examples"
    return "\n".join(blocks)


def _worked_example() -> str:
    section = DOC.read_text().split("### Worked example", 1)[1]
    return _blocks(section)[0]


def _run(code: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(name)  # eventsourcing finds event classes by module name
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(code, str(DOC), "exec"), module.__dict__)


@pytest.fixture
def reader_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One working directory for both runs; temporary directories land in tmp_path."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("PERSISTENCE_MODULE", raising=False)
    monkeypatch.delenv("AURORA_URL", raising=False)
    require_primitives(f"lmdb://{tmp_path / 'probe'}")
    return cwd


def test_the_primitives_examples_run_twice(
    reader_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _primitives()
    assert "change_log=true" in code
    assert "repo.close()\nrepo = aurora_storage.open(URL)" in code  # a real restart
    for run in range(2):
        _run(code, f"primitives_example_{run}", monkeypatch)
    assert os.listdir(reader_dir) == []  # nothing left in the reader's directory


def test_the_worked_example_runs_twice(reader_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _worked_example()
    for run in range(2):
        _run(code, f"dogschool_rerun_{run}", monkeypatch)
    assert os.listdir(reader_dir) == []
