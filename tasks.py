#!/usr/bin/env python3
"""Set up a virtual environment and run one of the project's jobs.

    python3 tasks.py demo    # event -> history (RocksDB) -> projection (LMDB) demo
    python3 tasks.py test    # the whole test suite, slow tier included
    python3 tasks.py lint    # ruff format --check, ruff check, mypy --strict (src, tests, ...)
    python3 tasks.py docs [--site-dir DIR]   # build the docs site with --strict (mkdocs.yml)
    python3 tasks.py bench [--quick]   # benchmarks/ (see docs/performance.md)

Needs only Python >= 3.11 and pip. The environment lives in ``.venv`` and is refreshed
when ``pyproject.toml`` changes. ``demo`` installs only the package and its engines;
``test``, ``lint``, ``docs`` and ``bench`` add the test, lint, docs and benchmark tools (the
extras ``dev`` and ``bench``) to the same environment.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".aurora-installed"


#: Exit status after Ctrl-C (128 + SIGINT), as a shell reports it.
_INTERRUPTED = 130


def _run(*cmd: str | Path, check: bool = True) -> int:
    """Run ``cmd`` in ROOT and return its exit status.

    Ctrl-C reaches the command itself (it runs in the terminal's process group), which
    ends as it sees fit (the demo says ``aborted``); this script only notes the signal,
    waits for the command and then exits 130 without a traceback of its own.
    """
    print("+", " ".join(str(c) for c in cmd), flush=True)
    interrupted = False

    def _note(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    # A Python handler (not SIG_IGN, which the command would inherit) that does not
    # raise: the wait for the command goes on (PEP 475 retries it).
    previous = signal.signal(signal.SIGINT, _note)
    try:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT)
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted or rc == -signal.SIGINT:
        sys.exit(_INTERRUPTED)
    if check and rc != 0:
        raise subprocess.CalledProcessError(rc, [str(c) for c in cmd])
    return rc


#: What each job installs into .venv. The demo needs only the package and its engines
#: (the runtime dependencies); the other jobs need the test, lint and benchmark tools
#: too. Levels are cumulative: a later `test` upgrades a demo's environment in place.
LEVELS = {"runtime": ".", "full": ".[dev,bench]"}
JOB_LEVEL = {"demo": "runtime", "test": "full", "lint": "full", "bench": "full", "docs": "full"}


def _installed() -> tuple[str, str] | None:
    """(pyproject digest, level) recorded by the last install, or None."""
    try:
        digest, _, level = STAMP.read_text().partition(" ")
    except OSError:
        return None
    return (digest, level) if level in LEVELS else None


def _host_pip_can_target() -> bool:
    """Whether the pip of the Python running this script can install into another
    environment (``pip --python``, pip >= 22.3)."""
    try:
        import pip
    except ImportError:
        return False
    try:
        return tuple(int(p) for p in pip.__version__.split(".")[:2]) >= (22, 3)
    except ValueError:
        return False


def _has_pip() -> bool:
    return (
        any((VENV / "lib").glob("python3*/site-packages/pip/__init__.py"))
        or (VENV / "Lib" / "site-packages" / "pip" / "__init__.py").exists()
    )


def _create_env(*, with_pip: bool) -> None:
    try:
        if with_pip:
            _run(sys.executable, "-m", "venv", VENV)
        else:
            # No pip inside: the venv module's own pip bootstrap (ensurepip: pip and
            # setuptools, byte-compiled) cost about a third of a first demo run.
            _run(sys.executable, "-m", "venv", "--without-pip", VENV)
    except subprocess.CalledProcessError:
        # Some distributions ship Python without the venv module; virtualenv from pip
        # does the same job.
        _run(sys.executable, "-m", "pip", "install", "--user", "--quiet", "virtualenv")
        _run(sys.executable, "-m", "virtualenv", VENV)


#: pip options of every install: quiet, and no byte-compiling of every installed module
#: up front (Python compiles what it imports, when it first imports it).
_PIP_OPTIONS = ("--quiet", "--disable-pip-version-check", "--no-compile")


def ensure_env(job: str = "test") -> None:
    """Create .venv and install what ``job`` needs (once per pyproject and level).

    With a pip of 22.3 or later beside the Python running this script, the environment is
    created without a pip of its own and that pip installs into it (``pip --python``);
    the jobs that need more than the demo give it its own pip too (tests build a wheel
    with it, and developers use it). Otherwise the environment gets its pip from the
    venv module and installs with it.
    """
    if sys.version_info < (3, 11):  # noqa: UP036 - tasks.py may be run by an older python3
        sys.exit("aurora-storage needs Python >= 3.11")
    host_pip = _host_pip_can_target()
    if not PY.exists():
        _create_env(with_pip=not host_pip)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = JOB_LEVEL[job]
    have = _installed()
    if have is not None and have[0] == digest and (have[1] == wanted or have[1] == "full"):
        return
    if have is not None and have[1] == "full":
        wanted = "full"  # pyproject changed: keep a test environment complete
    own_pip = _has_pip()
    if own_pip:
        pip: tuple[str | Path, ...] = (PY, "-m", "pip")
    elif host_pip:
        pip = (sys.executable, "-m", "pip", "--python", PY)
    else:
        _run(PY, "-m", "ensurepip", "--default-pip")
        pip = (PY, "-m", "pip")
    if wanted == "full" and not own_pip:
        _run(*pip, "install", *_PIP_OPTIONS, "pip")
    # Python >= 3.11 ships a pip that installs editable pyproject projects (PEP 660), so
    # pip is not upgraded first: that download alone took seconds of every first run.
    _run(*pip, "install", *_PIP_OPTIONS, "-e", LEVELS[wanted])
    STAMP.write_text(f"{digest} {wanted}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "bench", "docs"}:
        print(__doc__)
        return 2
    job, rest = argv[0], argv[1:]
    ensure_env(job)
    if job == "demo":
        return _run(BIN / "aurora-storage", "demo", *rest, check=False)
    if job == "test":
        return _run(PY, "-m", "pytest", *rest, check=False)
    if job == "lint":
        # conftest.py (the docs check) and docs/hooks.py (the site's hook) are code too.
        code = ("src", "tests", "benchmarks", "conftest.py", "docs/hooks.py")
        rc = _run(PY, "-m", "ruff", "format", "--check", *code, check=False)
        rc |= _run(PY, "-m", "ruff", "check", *code, check=False)
        # mypy --strict over src, tests, benchmarks and docs/hooks.py ([tool.mypy] files),
        # then the root conftest.py alone: its module name ("conftest") is also
        # tests/nats/conftest.py's, and one mypy run maps a name to one file.
        rc |= _run(PY, "-m", "mypy", check=False)
        rc |= _run(PY, "-m", "mypy", "conftest.py", check=False)
        return rc
    if job == "docs":
        return _docs(rest)
    return _run(PY, "benchmarks/run.py", *rest, check=False)


def _docs(rest: list[str]) -> int:
    """Build the site with --strict (a broken link or reference fails), as CI does.

    The site goes to a temporary directory unless ``--site-dir DIR`` is given; preview
    while editing with ``.venv/bin/mkdocs serve``. The docs extra comes with the dev
    extras that ``ensure_env`` installs.
    """
    if "--site-dir" in rest:
        return _run(BIN / "mkdocs", "build", "--strict", *rest, check=False)
    with tempfile.TemporaryDirectory(prefix="aurora-site-") as site:
        return _run(BIN / "mkdocs", "build", "--strict", "--site-dir", site, *rest, check=False)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        # Ctrl-C between commands (no command running to report it): quietly, as one.
        sys.exit(_INTERRUPTED)
