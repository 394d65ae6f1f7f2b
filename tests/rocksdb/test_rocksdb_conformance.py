"""The RocksDB backend passes the shipped conformance suite."""

from pathlib import Path

import pytest

from aurora_storage.testing import RepositoryTestSuite


class TestRocksDBConformance(RepositoryTestSuite):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"rocksdb://{tmp_path}/store"
