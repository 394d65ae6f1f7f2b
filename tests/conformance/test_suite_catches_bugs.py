"""The suite has teeth: backends with one planted bug each fail the tests that name it.

Each broken backend is the memory backend with a single defect, registered at run time
and run through the shipped mixins in a nested pytest session (``pytester``).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

_HEADER = """
import pytest
from hypothesis import Phase, settings
from aurora_storage.backend import Capabilities
from aurora_storage.memory import MemoryBackend
from aurora_storage.plugins import BackendSpec, register_backend, unregister_backend
from aurora_storage.testing import RepositoryTestSuite


def _suite_for(cls):
    scheme = cls.scheme

    class Suite(RepositoryTestSuite):
        # No shrinking: the planted bug only needs to be found, not minimised.
        state_machine_settings = settings(
            RepositoryTestSuite.state_machine_settings,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        )

        @pytest.fixture
        def store_url(self):
            register_backend(BackendSpec(scheme=scheme, open=lambda url, opts: cls()))
            yield scheme + "://"
            unregister_backend(scheme)

    return Suite
"""

# (planted bug, backend body, tests that must fail)
CASES = {
    "scan ignores stop": (
        """
    def scan_chunks(self, start, stop, *, reverse=False, values=True):
        return super().scan_chunks(start, b"\\xff" * 8, reverse=reverse, values=values)
""",
        ["test_hostile_tenants_are_isolated", "test_start_inclusive_stop_exclusive"],
    ),
    "scan ignores reverse": (
        """
    def scan_chunks(self, start, stop, *, reverse=False, values=True):
        return super().scan_chunks(start, stop, values=values)
""",
        ["test_reverse", "test_limit"],
    ),
    "flat scan differs from the chunked one": (
        """
    def scan(self, start, stop, *, reverse=False):
        return iter(list(super().scan(start, stop, reverse=reverse))[1:])
""",
        ["test_backend_scan_paths_agree"],
    ),
    "delete always reports success": (
        """
    def delete(self, key):
        super().delete(key)
        return True
""",
        ["test_delete_returns_whether_present", "test_state_machine"],
    ),
    "insert overwrites": (
        """
    def insert(self, key, value):
        self.put(key, value)
        return True
""",
        ["test_insert_creates_then_refuses", "test_concurrent_insert_single_winner"],
    ),
    "batch drops its last operation": (
        """
    def write(self, ops):
        super().write(list(ops)[:-1])
""",
        ["test_batch_commits_puts_and_deletes_across_tenants", "test_state_machine"],
    ),
    "claims persistence it lacks": (
        """
    capabilities = Capabilities(persistent=True)
""",
        ["test_data_survives_reopen"],
    ),
    "states a batch bound it does not enforce": (
        """
    capabilities = Capabilities(max_batch_ops=50)
""",
        ["test_batch_of_max_batch_ops_commits_and_one_more_is_refused"],
    ),
    "refuses a batch of exactly its stated bound": (
        """
    capabilities = Capabilities(max_batch_ops=50)

    def write(self, ops):
        from aurora_storage.errors import BatchTooLargeError

        ops = list(ops)
        if len(ops) >= 50:
            raise BatchTooLargeError("one too many", size=len(ops), limit=50)
        super().write(ops)
""",
        ["test_batch_of_max_batch_ops_commits_and_one_more_is_refused"],
    ),
    "drop_tenant is not recorded in the change feed": (
        """
    def delete_range(self, start, stop):
        with self._lock:
            keys = self._range(start, stop)
            for k in keys:
                del self._data[k]
                self._sorted.remove(k)
            return len(keys)
""",
        ["test_every_write_path_is_a_change"],
    ),
    "the commit path is not recorded in the change feed": (
        """
    def commit(self, ops, *, conditions=(), appends=()):
        record, self._record = self._record, lambda changes: None
        try:
            return super().commit(ops, conditions=conditions, appends=appends)
        finally:
            self._record = record
""",
        ["test_every_write_path_is_a_change"],
    ),
    "close is not idempotent": (
        """
    def close(self):
        if self._closed:
            raise RuntimeError("already closed")
        super().close()
""",
        ["test_backend_close_is_idempotent"],
    ),
    "watch positions start anew at each open of a persistent store": (
        """
    capabilities = Capabilities(
        persistent=True, conditional_writes=True, sequences=True, change_feed=True
    )
    _kept = None  # the "files": what every open of the store finds again

    def __init__(self):
        super().__init__()
        if type(self)._kept is None:
            type(self)._kept = (self._data, self._sorted)
        self._data, self._sorted = type(self)._kept
""",
        ["test_positions_keep_increasing_across_reopen"],
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bug", list(CASES))
def test_planted_bug_is_caught(pytester: pytest.Pytester, bug: str) -> None:
    body, must_fail = CASES[bug]
    scheme = "buggy" + str(list(CASES).index(bug))
    source = (
        _HEADER
        + f"\nclass Broken(MemoryBackend):\n    scheme = {scheme!r}\n{body}\n"
        + "\nclass TestBroken(_suite_for(Broken)):\n    pass\n"
    )
    pytester.makepyfile(test_broken=source)
    selection = " or ".join(must_fail)
    result = pytester.runpytest_inprocess(
        "-q", "-p", "no:cacheprovider", "--tb=no", "-k", selection
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= len(must_fail), (bug, result.stdout.str()[-3000:])
    for name in must_fail:
        result.stdout.fnmatch_lines([f"FAILED*{name}*"])
