"""The pytest plugin (entry point ``pytest11``): a failing conformance test shows the
compared values, and a skipped one is reported under its own node id.

Each check runs pytest in a real subprocess on a third party's test file: as installed
(the plugin loads through its entry point), with autoloading off and the plugin named
with ``-p``, and with no plugin at all, which shows what the plugin changes. (pytest
also rewrites the modules of any distribution that declares a ``pytest11`` entry
point, so disabling just this plugin with ``-p no:`` would still rewrite them.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

THIRD_PARTY_TESTS = '''
import pytest

from aurora_storage.memory import MemoryBackend
from aurora_storage.plugins import BackendSpec, register_backend, unregister_backend
from aurora_storage.testing import PersistenceTests, PointOpsTests


class Miscounting(MemoryBackend):
    """One planted bug: every count is one too many."""

    scheme = "miscount"

    def count_range(self, start, stop):
        return super().count_range(start, stop) + 1


class TestMiscounting(PointOpsTests, PersistenceTests):
    @pytest.fixture
    def store_url(self):
        register_backend(BackendSpec(scheme="miscount", open=lambda url, opts: Miscounting()))
        yield "miscount://"
        unregister_backend("miscount")
'''


def _run(tmp_path: Path, *extra: str, autoload: bool = True) -> str:
    (tmp_path / "test_miscounting.py").write_text(THIRD_PARTY_TESTS)
    env = dict(os.environ)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", *extra),
            *("-k", "test_count or test_data_survives_reopen", "test_miscounting.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one failure, one skip
    return proc.stdout


def _skip_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("SKIPPED")]


NAMED_SKIP = (
    "SKIPPED [1] test_miscounting.py::TestMiscounting::test_data_survives_reopen: "
    "backend 'miscount' does not declare capabilities.persistent; "
    "reopen tests need a persistent store"
)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("how", "extra", "autoload"),
    [
        ("installed: loaded through its entry point", (), True),
        ("autoloading off, loaded by name", ("-p", "aurora_storage.pytest_plugin"), False),
    ],
)
def test_failures_show_values_and_skips_name_the_test(
    tmp_path: Path, how: str, extra: tuple[str, ...], autoload: bool
) -> None:
    out = _run(tmp_path, *extra, autoload=autoload)
    # Assertion rewriting: the compared values, and where the left one came from.
    assert "assert 1 == 0" in out, how
    assert "where 1 = count('t')" in out, how
    # The skip line names the test, not a line of the suite's file.
    assert _skip_lines(out) == [NAMED_SKIP], how
    assert "FAILED test_miscounting.py::TestMiscounting::test_count" in out


@pytest.mark.timeout(600)
def test_without_the_plugin_failures_are_bare(tmp_path: Path) -> None:
    # What users saw before: no plugin at all.
    out = _run(tmp_path, autoload=False)
    assert "assert 1 == 0" not in out
    assert "where 1 = " not in out
    skip = _skip_lines(out)
    assert len(skip) == 1
    assert "aurora_storage/testing/_lifecycle.py:" in skip[0]
