"""The docs check itself: it fails on a broken block, and the docs follow its rules.

The check is conftest.py at the repository root (Sybil): every ``python``, ``sh`` and
``bash`` block of README.md and docs/ runs as a test. Here it runs, as the real file, in
a separate pytest over a small project in a temporary directory, so a broken block is
shown to fail the run without putting one in the docs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>```+)(?P<info>[^\n`]*)$", re.MULTILINE)
_SKIP = re.compile(r"<!--\s*skip:\s*(?P<rest>[^>]*?)\s*-->")
RUNNABLE = {"python", "sh", "bash"}


def _blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line, language, body)`` of every fenced block of a Markdown text."""
    blocks: list[tuple[int, str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i + 1, m.group("info").strip()
        close = m.group("indent") + m.group("ticks")
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != close:
            j += 1
        blocks.append((start, lang, "\n".join(lines[i + 1 : j])))
        i = j + 1
    return blocks


def _skipped_lines(text: str) -> set[int]:
    """Line numbers of the fences that a ``skip: next`` / ``skip: start..end`` covers."""
    skipped: set[int] = set()
    lines = text.split("\n")
    pending, in_range = False, False
    for number, line in enumerate(lines, start=1):
        m = _SKIP.search(line)
        if m:
            kind = m.group("rest").split()[0]
            pending = kind == "next"
            in_range = kind == "start" or (in_range and kind != "end")
            continue
        if _FENCE.match(line) and (pending or in_range):
            skipped.add(number)
            pending = False
    return skipped


def _run_pytest(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "docs"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _project(tmp_path: Path, page: str) -> Path:
    """A project with the real docs check and one page."""
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "docs" / "page.md").write_text(page)
    return tmp_path


BROKEN_PAGE = """# A page

```python
import aurora_storage

repo = aurora_storage.open("rocksdb://./data/events")
repo.put("acme", "k", {"n": 1})
```

```python
assert repo.get("acme", "k") == {"n": 2}, "the docs promise a value the code does not give"
```

```sh
aurora-storage get rocksdb:data/missing acme k
```

<!-- skip: next "needs a server on the moon" -->

```python
raise RuntimeError("a skipped block must not run")
```

```text
not run: output
```
"""


def test_a_broken_block_fails_the_docs_check(tmp_path: Path) -> None:
    proc = _run_pytest(_project(tmp_path, BROKEN_PAGE))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # The first block ran and passed; its store is used by the second (one namespace
    # per page, in order), which fails on its assertion, not on a NameError. (Sybil
    # counts the skip directive as an item that passes: 2 passed.)
    assert "2 failed, 2 passed, 1 skipped" in out, out
    assert "the docs promise a value the code does not give" in out
    assert "NameError" not in out
    # The shell block failed on the command's exit status (4: no store at the path),
    # and the report names the page and the block's line.
    assert "docs/page.md:14 exited 4" in out, out
    # The skipped block is reported with its reason, and did not run.
    assert "needs a server on the moon" in out
    assert "a skipped block must not run" not in out
    # Blocks run in a temporary directory: nothing was written beside the page.
    assert not (tmp_path / "docs" / "data").exists()
    assert not (tmp_path / "data").exists()


def test_the_same_page_fixed_passes(tmp_path: Path) -> None:
    fixed = BROKEN_PAGE.replace('{"n": 2}', '{"n": 1}').replace(
        "aurora-storage get rocksdb:data/missing acme k",
        "aurora-storage get rocksdb:data/events acme k",
    )
    proc = _run_pytest(_project(tmp_path, fixed))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "4 passed, 1 skipped" in out, out


def test_block_parser_matches_the_checker_on_a_sample() -> None:
    """The helpers below read the docs the way the checker does."""
    blocks = _blocks(BROKEN_PAGE)
    assert [lang for _, lang, _ in blocks] == ["python", "python", "sh", "python", "text"]
    assert _skipped_lines(BROKEN_PAGE) == {blocks[3][0]}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fence_says_its_language(page: Path) -> None:
    """A bare fence would be silently not run: runnable or not, say what it is."""
    bare = [line for line, lang, _ in _blocks(page.read_text()) if not lang]
    assert bare == [], f"{page.relative_to(ROOT)}: fences without a language at lines {bare}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_skip_gives_its_reason(page: Path) -> None:
    for m in _SKIP.finditer(page.read_text()):
        rest = m.group("rest")
        if rest.split()[0] in ("next", "start"):
            assert re.fullmatch(r'(next|start)\s+"[^"]{10,}"', rest), (
                f"{page.relative_to(ROOT)}: '<!-- skip: {rest} -->' needs a reason in quotes"
            )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks_write_only_in_their_directory(page: Path) -> None:
    """Blocks run in a temporary directory: a store at an absolute path would land on the
    machine running the tests. Absolute paths belong in prose and ``text`` blocks."""
    text = page.read_text()
    skipped = _skipped_lines(text)
    for line, lang, body in _blocks(text):
        if lang.split()[0] in RUNNABLE and line not in skipped:
            # Comments may name any path; code may not.
            code = "\n".join(c for c in body.split("\n") if not c.lstrip().startswith("#"))
            for bad in (":///", "/var/", "/srv/", "/tmp/", "~/"):
                assert bad not in code, f"{page.relative_to(ROOT)}:{line} uses {bad!r}"
