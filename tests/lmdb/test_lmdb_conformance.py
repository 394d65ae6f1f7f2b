"""The shipped conformance suite, run against LMDB (exactly as a third party would)."""

import pytest

from aurora_storage.testing import RepositoryTestSuite


class TestLMDBConformance(RepositoryTestSuite):
    @pytest.fixture
    def store_url(self, tmp_path):
        # A small initial map: the suite then also exercises automatic growth.
        return f"lmdb://{tmp_path}/store?map_size=256KiB&sync=false"
