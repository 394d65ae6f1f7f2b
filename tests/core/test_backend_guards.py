"""The core's guards against a backend that breaks the range contract.

A plugin whose scans ignore part of ``start`` (found by a reviewer writing one: it
filtered ``start[:1] <= key < stop``) made ``tenants()`` loop forever yielding its first
tenant again and again, and made the shipped suite hang without naming a test. And the
default ``delete_range`` deletes what the scan returns: a key outside the range would be
another tenant's record. The core checks the keys it loops on or deletes and raises a
``StorageError`` naming the backend instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aurora_storage import Repository
from aurora_storage.backend import Backend, Chunk
from aurora_storage.errors import StorageError
from aurora_storage.memory._backend import MemoryBackend


class _IgnoresStart(MemoryBackend):
    """Scans from the first byte of ``start`` only: the planted bug."""

    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> Iterator[Chunk]:
        return super().scan_chunks(start[:1], stop, reverse=reverse, values=values, limit=limit)

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        return Backend.first_key(self, start, stop)

    def delete_range(self, start: bytes, stop: bytes) -> int:
        return Backend.delete_range(self, start, stop)


def test_tenants_stops_when_the_backend_returns_a_key_below_start() -> None:
    repo: Repository[Any, str] = Repository(_IgnoresStart())
    with repo:
        repo.put("a", 1, "x")
        repo.put("b", 1, "y")
        tenants = repo.tenants()
        assert next(tenants) == "a"
        with pytest.raises(StorageError, match="outside the range") as info:
            next(tenants)  # looped forever, yielding "a" again, before the guard
        assert info.value.backend == "memory"


def test_default_delete_range_never_deletes_outside_its_range() -> None:
    repo: Repository[Any, str] = Repository(_IgnoresStart())
    with repo:
        repo.put("a", 1, "another tenant's record")
        repo.put("b", 1, "y")
        with pytest.raises(StorageError, match="outside the range"):
            repo.drop_tenant("b")
        # Nothing deleted: neither the other tenant's record nor the tenant's own.
        assert repo.get("a", 1) == "another tenant's record"
        assert repo.get("b", 1) == "y"
