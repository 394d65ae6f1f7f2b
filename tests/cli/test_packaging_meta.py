"""Packaging: the license file and metadata, and the test extra's import hint."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Hides a module as if it were not installed (first on sys.meta_path).
_BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {name!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
for mod in list(sys.modules):
    if mod.split(".")[0] == {name!r}:
        del sys.modules[mod]
try:
    import aurora_storage.testing
except ImportError as exc:
    print(type(exc).__name__, exc.name, exc, sep="|")
else:
    print("imported")
"""


@pytest.mark.parametrize("hidden", ["hypothesis", "pytest"])
def test_testing_without_its_extra_names_the_extra(hidden: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKER.format(name=hidden)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    kind, name, message = out.split("|", 2)
    assert kind == "ImportError"
    assert name == hidden
    assert "pip install '.[test]' from a clone" in message
    assert f"{hidden!r} is not installed" in message


def test_testing_imports_with_its_extra() -> None:
    code = "import aurora_storage.testing as t; print(len(t.__all__))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(out.stdout) > 10


def test_license_file_matches_the_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # An SPDX expression (PEP 639), not the deprecated {text = ...} table.
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


@pytest.mark.slow
def test_wheel_builds_without_license_warnings(tmp_path: Path) -> None:
    """A real build (pip wheel, isolated build environment): setuptools prints no
    warning about the license, and the wheel carries the LICENSE and the SPDX field."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-v", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = build.stdout + build.stderr
    assert build.returncode == 0, log[-3000:]
    warnings = [
        line
        for line in log.splitlines()
        if re.search(r"licen[cs]e", line, re.I) and re.search(r"warn|deprecat", line, re.I)
    ]
    assert warnings == []
    (wheel,) = tmp_path.glob("aurora_storage-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(meta).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata.splitlines()
