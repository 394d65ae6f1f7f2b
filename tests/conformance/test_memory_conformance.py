"""The memory backend passes the conformance suite, exactly as a third party's would."""

from __future__ import annotations

import pytest

from aurora_storage.testing import RepositoryTestSuite


class TestMemoryConformance(RepositoryTestSuite):
    @pytest.fixture
    def store_url(self) -> str:
        # Every open of memory:// is a fresh store; persistence tests skip (not persistent).
        return "memory://"
