"""Every ``type: ignore`` names its error code and says why.

A bare ``# type: ignore`` hides every error on its line, including the ones a later
change introduces; an ignore without a reason leaves the next reader to guess whether it
is still needed. The rule (STYLE.md: "every lint ignore carries its reason"): write
``# type: ignore[code]  # why`` with the reason on the same line.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The Python code mypy checks in CI (pyproject's [tool.mypy] files, plus conftest.py).
CHECKED = ("src", "tests", "benchmarks", "conftest.py", "docs/hooks.py")

_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")
_REASON = re.compile(r"^\s*#\s*\S")


def bad_ignores(source: str) -> list[tuple[int, str]]:
    """(line, comment) of each ``type: ignore`` comment in ``source`` that lacks an
    error code or a reason. Only comments count (tokenize), not strings."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        match = _IGNORE.search(tok.string)
        if match is None:
            continue
        codes = match.group("codes")
        if not codes or not codes.strip("[] ") or not _REASON.match(match.group("rest")):
            found.append((tok.start[0], tok.string))
    return found


def _python_files() -> list[Path]:
    files: list[Path] = []
    for name in CHECKED:
        path = ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        ("x = f()  # type: ignore", True),
        ("x = f()  # type: ignore  # why", True),
        ("x = f()  # type: ignore[]  # why", True),
        ("x = f()  # type: ignore[misc]", True),
        ("x = f()  # type: ignore[misc]  #", True),
        ("x = f()  # type:ignore[misc]", True),
        ("x = f()  # type: ignore[misc]  # the engine module is untyped", False),
        ("x = f()  # type: ignore[arg-type, misc]  # wrong on purpose", False),
        ("x = 'a # type: ignore'", False),
        ("x = f()  # a plain comment", False),
    ],
)
def test_checker_tells_good_from_bad(line: str, bad: bool) -> None:
    assert bool(bad_ignores(line + "\n")) is bad


def test_every_type_ignore_has_a_code_and_a_reason() -> None:
    files = _python_files()
    assert any(f.name == "_repository.py" for f in files)  # the scan found the code
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {comment}"
        for path in files
        for line, comment in bad_ignores(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "type: ignore without [code] and '  # reason':\n" + "\n".join(problems)
