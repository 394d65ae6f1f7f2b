"""The shipped conformance suite against a real single-node nats-server (JetStream,
sync_interval: always), exactly as a third party would run it."""

import pytest

from aurora_storage.testing import RepositoryTestSuite


class TestNATSConformance(RepositoryTestSuite):
    @pytest.fixture
    def store_url(self, nats_url):
        return nats_url
