"""The documentation site: its navigation follows docs/index.md, a strict build fails on a
broken link, and the hook shows why a block is not run."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _nav_pages(node: Any) -> list[str]:
    """The pages of an mkdocs ``nav`` in order."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    raise AssertionError(f"unexpected nav entry {node!r}")


def _config() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert isinstance(config, dict)
    return config


def _index_links() -> list[str]:
    """Pages linked from docs/index.md, in order of first appearance."""
    seen: list[str] = []
    for target in re.findall(r"\]\(([^)#\s]+\.md)\)", (DOCS / "index.md").read_text()):
        if target not in seen:
            seen.append(target)
    return seen


def test_navigation_matches_the_index() -> None:
    nav = _nav_pages(_config()["nav"])
    assert nav[0] == "index.md"
    assert nav[1:] == _index_links()


def test_every_page_is_in_the_navigation() -> None:
    nav = set(_nav_pages(_config()["nav"]))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


def _load_hook() -> Any:
    spec = importlib.util.spec_from_file_location("aurora_docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_shows_why_a_block_is_not_run() -> None:
    hook = _load_hook()
    page = '<!-- skip: next "needs a NATS server" -->\n\n```python\nx = 1\n```\n'
    out = hook.on_page_markdown(page, page=None, config=None, files=None)
    assert "<!--" not in out
    assert "not run by the docs check: needs a NATS server" in out
    assert "```python\nx = 1\n```" in out


def _mkdocs(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """A copy of the real site with one broken link does not build; the real one does (the
    CI job ``python3 tasks.py docs`` builds it too, so this test is the failing half)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    shutil.copytree(DOCS, project / "docs")
    # The API reference reads the sources through mkdocstrings (paths: [src]).
    (project / "src").symlink_to(ROOT / "src")
    page = project / "docs" / "getting-started.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")

    proc = _mkdocs(project, tmp_path / "site")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "no-such-page.md" in out, out
    assert "Aborted" in out, out


def _load_tasks() -> Any:
    spec = importlib.util.spec_from_file_location("aurora_tasks", ROOT / "tasks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_job_builds_the_site_strictly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python3 tasks.py docs` (what CI runs) sets up the environment like the other jobs
    and runs `mkdocs build --strict`. Commands are recorded instead of run, and the
    install stamp lives in tmp_path, so the real .venv is left as it is."""
    tasks = _load_tasks()
    calls: list[tuple[str, ...]] = []

    def record(*cmd: object, check: bool = True) -> int:
        calls.append(tuple(str(c) for c in cmd))
        return 0

    monkeypatch.setattr(tasks, "_run", record)
    monkeypatch.setattr(tasks, "STAMP", tmp_path / "stamp")
    assert tasks.main(["docs"]) == 0
    builds = [c for c in calls if c[0].endswith("mkdocs")]
    assert len(builds) == 1, calls
    assert builds[0][1:3] == ("build", "--strict")
    assert "--site-dir" in builds[0]
