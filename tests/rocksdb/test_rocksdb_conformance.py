"""The RocksDB backend passes the shipped conformance suite."""

import pytest

from aurora_storage.testing import RepositoryTestSuite


class TestRocksDBConformance(RepositoryTestSuite):
    @pytest.fixture
    def store_url(self, tmp_path):
        return f"rocksdb://{tmp_path}/store"
