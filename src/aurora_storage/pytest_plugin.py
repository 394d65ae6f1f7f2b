"""The pytest plugin of aurora-storage, for anyone who runs the conformance suite.

Installed with the package and loaded by pytest through the ``pytest11`` entry point
(``aurora_storage``); with plugin autoloading turned off
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), load it with ``-p aurora_storage.pytest_plugin``.
It does two things for the tests of :mod:`aurora_storage.testing`:

- **Assertion rewriting.** pytest rewrites the ``assert`` statements of test files only;
  the suite's mixins live in an installed package, so a failing conformance test would
  show a bare ``AssertionError``. The plugin registers the package for rewriting before
  it is imported, so failures show the compared values. (Declaring the entry point also
  makes pytest rewrite the distribution's modules when it autoloads plugins; the
  registration covers ``-p aurora_storage.pytest_plugin`` with autoloading off.)
- **Skip lines that name the test.** A conformance test skipped for a capability the
  backend does not declare is reported by ``pytest -ra`` under the test's own node id
  (``tests/test_mykv.py::TestMyKV::test_reverse: backend 'mykv' does not declare ...``),
  not under the line of the suite's file where the test is written.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

__all__: list[str] = []

# Before anything imports aurora_storage.testing (this module is loaded at pytest's
# start, ahead of conftest files and test modules).
pytest.register_assert_rewrite("aurora_storage.testing")

_SUITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testing") + os.sep


def _in_suite(path: object) -> bool:
    return isinstance(path, str) and os.path.abspath(path).startswith(_SUITE_DIR)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report a skip inside the conformance suite at the test's node id (outermost
    wrapper: runs after pytest's own relocation of skips)."""
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, _, reason = longrepr
        if _in_suite(path):
            # The summary prints this "path" relative to the invocation directory and,
            # with no line number, as "<path>: <reason>".
            where = os.path.join(str(item.config.rootpath), item.nodeid)
            # The declared type says int, but the summary takes None (pytest itself
            # stores None for skips from marks).
            report.longrepr = (where, None, reason)  # type: ignore[assignment]  # see above
    return report
