"""The shipped conformance suite over tiered:// in cache mode (memory tiers): a tiered
repository must behave exactly like any other repository."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from aurora_storage.testing import RepositoryTestSuite


def tiered_url(hot: str, cold: str) -> str:
    return f"tiered://?hot={quote(hot, safe='')}&cold={quote(cold, safe='')}"


class TestTieredMemoryConformance(RepositoryTestSuite):
    @pytest.fixture
    def store_url(self) -> str:
        return tiered_url("memory://", "memory://")
