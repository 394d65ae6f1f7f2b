"""The shipped conformance suite against a real single-node nats-server (JetStream,
sync_interval: always), exactly as a third party would run it."""

from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings

from aurora_storage.testing import RepositoryTestSuite

# Every step of a state machine is a few network round trips here: half the examples
# the embedded engines run keeps the NATS tests within CI's budget (the machines'
# model checks of the core run in full on memory, RocksDB and LMDB).
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


class TestNATSConformance(RepositoryTestSuite):
    state_machine_settings: ClassVar[settings] = settings(
        max_examples=15,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=_SLOW_OK,
        database=None,
    )
    conditional_state_machine_settings: ClassVar[settings] = settings(
        max_examples=12,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=_SLOW_OK,
        database=None,
    )

    @pytest.fixture
    def store_url(self, nats_url: str) -> str:
        return nats_url
