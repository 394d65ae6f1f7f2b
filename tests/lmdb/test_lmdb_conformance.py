"""The shipped conformance suite, run against LMDB (exactly as a third party would)."""

from pathlib import Path

import pytest

from aurora_storage.testing import EventStoreTests, RepositoryTestSuite


class TestLMDBConformance(RepositoryTestSuite):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        # A small initial map: the suite then also exercises automatic growth.
        return f"lmdb://{tmp_path}/store?map_size=256KiB&sync=false"


class TestLMDBChangeLogConformance(EventStoreTests):
    """The event-store sections again on a store with the cross-process change log."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"lmdb://{tmp_path}/store?map_size=256KiB&sync=false&change_log=true"
