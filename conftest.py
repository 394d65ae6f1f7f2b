"""Every code block of README.md and docs/ runs as a test (pytest collects them here).

Sybil parses the Markdown: each page is one test module, each code block one test, run
in the page's order in one namespace, so a page may read as a story (a store opened in
one block is used in the next). What runs:

- ``python`` blocks are executed (a block starting with ``>>>`` is a doctest: its
  printed results are compared);
- ``sh`` and ``bash`` blocks run in ``bash -e -o pipefail`` with this environment's
  ``bin`` directory first on ``PATH`` (so ``aurora-storage`` and ``python`` are the ones
  under test); a non-zero exit fails the block;
- every other fence (``text``, ``json``, ``toml``, ...) is output or data, not run.

Each page runs in a fresh temporary directory (its current directory while its blocks
run), so ``rocksdb://./data/events`` lands there. A block that cannot run is preceded by
``<!-- skip: next "why" -->`` (or a range between ``<!-- skip: start "why" -->`` and
``<!-- skip: end -->``); the reason is required (tests/docs/test_docs_checker.py checks it)
and the site shows it beside the block (docs/hooks.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import types
from itertools import count
from typing import Any

from sybil import Example, Sybil
from sybil.parsers.abstract import AbstractCodeBlockParser
from sybil.parsers.markdown import (
    ClearNamespaceParser,
    CodeBlockParser,
    PythonCodeBlockParser,
    SkipParser,
)
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer
from sybil.typing import Evaluator

# A shell block that runs longer than this is stuck (the longest, a copy of a small store,
# takes about a second).
SHELL_TIMEOUT_S = 120

_CWD_KEY = "__docs_previous_cwd__"
_TMP_KEY = "__docs_tmp_dir__"
_PAGE_NUMBERS = count(1)


class _FencedBlocks(CodeBlockParser):
    """The fenced blocks of one language, and nothing else.

    Sybil's own Markdown parser also runs code hidden in HTML comments
    (``<!-- invisible-code: ... -->``, and any comment starting with ``code``); here only
    what a reader sees runs, so the docs hide no setup a reader would miss.
    """

    def __init__(self, language: str | None = None, evaluator: Evaluator | None = None) -> None:
        lexer = FencedCodeBlockLexer(
            language=r".+", mapping={"language": "arguments", "source": "source"}
        )
        # Not CodeBlockParser.__init__, which adds the lexer of code in HTML comments.
        AbstractCodeBlockParser.__init__(self, [lexer], language, evaluator)


class _PythonBlocks(PythonCodeBlockParser):
    codeblock_parser_class = _FencedBlocks


def _run_shell(example: Example) -> None:
    """Run a ``sh``/``bash`` block in the page's directory; fail on a non-zero exit."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    # A block's ~ is the page's directory, not the home of whoever runs the tests.
    env["HOME"] = os.getcwd()
    # Progress bars and colours are for terminals; the block's output is only read on
    # failure.
    env["NO_COLOR"] = "1"
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", str(example.parsed)],
        cwd=os.getcwd(),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"shell block at {example.path}:{example.line} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
        )


def _close_open_stores(namespace: dict[str, Any]) -> None:
    """Close what a page left open, so no handle outlives its temporary directory."""
    for value in list(namespace.values()):
        close = getattr(value, "close", None)
        module = type(value).__module__
        if callable(close) and module.startswith("aurora_storage") and not isinstance(value, type):
            try:
                result = close()
            except Exception:
                # A page's own error was already reported by its block; closing what is
                # left must not hide it.
                continue
            if hasattr(result, "close"):  # an async close: a coroutine never awaited
                result.close()


class _PageModule(types.ModuleType):
    """A page's namespace as an importable module.

    Code that finds classes again by module name and qualified name (eventsourcing's
    topics, pickle) needs the classes a page defines to live in a module it can import.
    """

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        super().__init__(name)
        self.__namespace = namespace

    def __getattr__(self, attr: str) -> Any:
        try:
            return self.__namespace[attr]
        except KeyError:
            raise AttributeError(attr) from None


def _setup_page(namespace: dict[str, Any]) -> None:
    tmp = tempfile.mkdtemp(prefix="aurora-docs-")
    namespace[_CWD_KEY] = os.getcwd()
    namespace[_TMP_KEY] = tmp
    name = f"aurora_docs_page_{next(_PAGE_NUMBERS)}"
    namespace["__name__"] = name
    sys.modules[name] = _PageModule(name, namespace)
    os.chdir(tmp)


def _teardown_page(namespace: dict[str, Any]) -> None:
    _close_open_stores(namespace)
    sys.modules.pop(namespace["__name__"], None)
    os.chdir(namespace.pop(_CWD_KEY))
    shutil.rmtree(namespace.pop(_TMP_KEY), ignore_errors=True)


DOCS = Sybil(
    parsers=[
        _PythonBlocks(),
        _FencedBlocks("sh", _run_shell),
        _FencedBlocks("bash", _run_shell),
        SkipParser(),
        ClearNamespaceParser(),
    ],
    patterns=["README.md", "docs/*.md", "docs/**/*.md"],
    setup=_setup_page,
    teardown=_teardown_page,
    name="docs",
)

pytest_collect_file = DOCS.pytest()
