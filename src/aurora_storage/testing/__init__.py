"""The conformance suite: pytest test classes every backend must pass.

A backend's test file subclasses :class:`RepositoryTestSuite` and provides one fixture,
``store_url``, returning the URL of a fresh, empty store (unique per test)::

    import pytest
    from aurora_storage.testing import RepositoryTestSuite

    class TestMyKVConformance(RepositoryTestSuite):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mykv://{tmp_path}/store"

The suite opens (and, for persistence, reopens) the store with
:func:`aurora_storage.open`. Tests of a capability the backend does not declare in
:class:`~aurora_storage.Capabilities` (``persistent``, ``atomic_batches``,
``thread_safe``, and the event-store primitives'
``conditional_writes``, ``sequences``, ``change_feed``, ``multi_process``) are skipped
with the reason. The individual mixins
can be combined instead of the whole suite. Needs ``pytest`` and ``hypothesis``
(the ``aurora-storage[test]`` extra).
"""

from __future__ import annotations

# First: a clear ImportError naming the extra when pytest or hypothesis is missing.
from . import _requires  # noqa: F401 - imported for that check
from ._badinput import BadInputTests
from ._batches import BatchTests
from ._concurrency import AsyncTests, ThreadTests
from ._eventstore import (
    ChangeFeedTests,
    ConditionalWriteStateMachine,
    ConditionalWriteTests,
    EventStoreTests,
    MultiProcessAppendTests,
    MultiProcessChangeFeedTests,
    PushDownTests,
    SequenceTests,
)
from ._large import LargeRangeTests
from ._lifecycle import LifecycleTests, PersistenceTests
from ._pointops import PointOpsTests
from ._scans import ScanTests
from ._statemachine import RepositoryStateMachine, StateMachineTests
from ._tenants import TenantTests

__all__ = [
    "AsyncTests",
    "BadInputTests",
    "BatchTests",
    "ChangeFeedTests",
    "ConditionalWriteStateMachine",
    "ConditionalWriteTests",
    "EventStoreTests",
    "LargeRangeTests",
    "LifecycleTests",
    "MultiProcessAppendTests",
    "MultiProcessChangeFeedTests",
    "PersistenceTests",
    "PointOpsTests",
    "PushDownTests",
    "RepositoryStateMachine",
    "RepositoryTestSuite",
    "ScanTests",
    "SequenceTests",
    "StateMachineTests",
    "TenantTests",
    "ThreadTests",
]


class RepositoryTestSuite(
    PointOpsTests,
    ScanTests,
    BatchTests,
    TenantTests,
    LargeRangeTests,
    BadInputTests,
    LifecycleTests,
    PersistenceTests,
    ThreadTests,
    AsyncTests,
    StateMachineTests,
    EventStoreTests,
):
    """Every conformance test. Subclass it (name the subclass ``Test...``) and define the
    ``store_url`` fixture. Set ``state_machine_settings`` to tune the random runs."""
