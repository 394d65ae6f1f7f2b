"""Conformance tests over ranges larger than one internal chunk.

The core and the default backend methods work in pieces of 10,000 records (a
:meth:`~aurora_storage.backend.Backend.delete_range` batch, a pass of the ordering of an
unordered engine, an engine's own scan chunks). A bug that shows only where one piece
ends and the next begins - a re-seek after the wrong key, a piece lost or repeated -
needs a range of more than one piece: these tests use :attr:`LargeRangeTests.large_range`
keys (12,000 by default), written in a shuffled order so an engine that keeps insertion
order does not hide an ordering bug. They run for every backend, ordered or not: the
repository scans in key order whatever the engine (see ``docs/extending``).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from aurora_storage import Repository

from ._base import Base

Repo = Repository[Any, Any]


def _shuffled(n: int) -> list[int]:
    keys = list(range(n))
    random.Random(n).shuffle(keys)
    return keys


def _fill(repo: Repo, tenant: str, keys: list[int], value: Any = None) -> None:
    """Write ``keys`` (value ``-key``, or ``value``) in put_many calls of 1,000: an
    engine may cap one atomic batch (NATS: 10,000 operations per atomic publish)."""
    for i in range(0, len(keys), 1_000):
        part = keys[i : i + 1_000]
        repo.put_many(tenant, {k: -k if value is None else value for k in part})


class LargeRangeTests(Base):
    """``drop_tenant``, scans, ``reverse`` and ``limit`` over more than one chunk."""

    #: How many keys the large tenant holds: more than one 10,000-record chunk.
    large_range: ClassVar[int] = 12_000

    def test_drop_tenant_larger_than_one_chunk(self, repo: Repo) -> None:
        n = self.large_range
        _fill(repo, "big", _shuffled(n))
        repo.put("bif", 0, "before")
        repo.put("big:x", 0, "after, sharing the prefix")
        assert repo.drop_tenant("big") == n
        assert repo.count("big") == 0, "drop_tenant left keys behind"
        assert list(repo.keys("big", limit=5)) == []
        assert list(repo.tenants()) == ["bif", "big:x"]
        assert repo.get("bif", 0) == "before"
        assert repo.get("big:x", 0) == "after, sharing the prefix"

    def test_scans_larger_than_one_chunk(self, repo: Repo) -> None:
        n = self.large_range
        _fill(repo, "t", _shuffled(n))
        every = list(range(n))
        assert list(repo.keys("t")) == every
        assert list(repo.keys("t", reverse=True)) == every[::-1]
        assert list(repo.items("t")) == [(k, -k) for k in every]
        assert list(repo.values("t", reverse=True)) == [-k for k in every[::-1]]
        assert repo.count("t") == n

    def test_limits_and_bounds_larger_than_one_chunk(self, repo: Repo) -> None:
        n = self.large_range
        _fill(repo, "t", _shuffled(n), 0)
        every = list(range(n))
        assert list(repo.keys("t", limit=10_001)) == every[:10_001]
        assert list(repo.keys("t", reverse=True, limit=10_001)) == every[::-1][:10_001]
        assert list(repo.keys("t", limit=1)) == [0]
        assert list(repo.keys("t", reverse=True, limit=1)) == [n - 1]
        lo, hi = 7, n - 7
        assert list(repo.keys("t", start=lo, stop=hi)) == every[lo:hi]
        assert list(repo.keys("t", start=lo, stop=hi, reverse=True, limit=n)) == every[lo:hi][::-1]
