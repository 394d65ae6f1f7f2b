"""``Capabilities.max_batch_ops``: a backend's stated bound on one atomic batch.

The core's own bulk writer, the default ``Backend.delete_range`` (``drop_tenant``), wrote
10,000 deletes per batch whatever the engine took; it now writes at most the stated
bound. The bound itself must be an int of at least 1 (or ``None``): 0 would make every
bulk writer loop on empty batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from aurora_storage import Repository
from aurora_storage.backend import Backend, Capabilities, Op
from aurora_storage.errors import BatchTooLargeError, InvalidArgumentError
from aurora_storage.memory._backend import MemoryBackend

BOUND = 50


class _Bounded(MemoryBackend):
    """The memory engine refusing any batch over ``BOUND`` operations, as NATS does over
    its ``max_batch``, with the engine's own range delete replaced by the default."""

    capabilities = Capabilities(max_batch_ops=BOUND)

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def write(self, ops: Sequence[Op]) -> None:
        self.largest = max(self.largest, len(ops))
        if len(ops) > BOUND:
            raise BatchTooLargeError("over the bound", size=len(ops), limit=BOUND)
        super().write(ops)

    def delete_range(self, start: bytes, stop: bytes) -> int:
        return Backend.delete_range(self, start, stop)


def test_the_default_delete_range_writes_batches_the_engine_takes() -> None:
    backend = _Bounded()
    repo: Repository[Any, Any] = Repository(backend)
    with repo:
        for i in range(0, 180, BOUND):
            repo.put_many("acme", {k: k for k in range(i, min(i + BOUND, 180))})
        repo.put("globex", "kept", 1)
        assert repo.drop_tenant("acme") == 180
        assert list(repo.tenants()) == ["globex"]
    assert backend.largest == BOUND


@pytest.mark.parametrize("bound", [0, -1, 2.0, "5", True])
def test_a_bound_that_is_not_a_positive_int_is_refused(bound: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="max_batch_ops must be None"):
        Capabilities(max_batch_ops=bound)


def test_no_bound_is_the_default() -> None:
    assert Capabilities().max_batch_ops is None
    assert Capabilities(max_batch_ops=1).max_batch_ops == 1
