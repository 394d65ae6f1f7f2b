"""Repository.verify() over the default Backend.verify(): every record is read through
the backend's own checks and decoded; damage is reported with tenant and key, never
raised, and the check goes on past it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage import Repository, VerifyProblem, VerifyReport, encode_key
from aurora_storage._keys import encode_tenant
from aurora_storage.backend import Chunk
from aurora_storage.errors import CorruptionError, RepositoryClosedError
from aurora_storage.memory import MemoryBackend


class DamagedBackend(MemoryBackend):
    """The memory backend with some records "failing their checksum": a chunk that
    holds one raises CorruptionError naming its first damaged key, as LMDB does."""

    def __init__(self) -> None:
        super().__init__()
        self.damaged: set[bytes] = set()

    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> Iterator[Chunk]:
        chunks = super().scan_chunks(start, stop, reverse=reverse, values=values, limit=limit)
        for keys, vals in chunks:
            bad = [k for k in keys if k in self.damaged]
            if bad and values:
                raise CorruptionError(f"checksum of {bad[0]!r} fails", key=bad[0])
            yield keys, vals


def stored(tenant: str, key: object) -> bytes:
    return encode_tenant(tenant) + encode_key(key)


def test_a_healthy_store_verifies_ok() -> None:
    with aurora_storage.open("memory://") as repo:
        repo.put_many("a", {i: {"n": i} for i in range(2500)})
        repo.put_many("a:b", {"x": 1, "y": [1, 2]})
        report = repo.verify()
    assert report == VerifyReport(records=2502, problems=(), problem_count=0)
    assert report.ok
    assert not report.structure_checked  # the memory backend has no file structure


def test_damage_is_reported_with_tenant_and_key_and_the_rest_is_checked() -> None:
    backend = DamagedBackend()
    repo: Repository[Any, Any] = Repository(backend)
    repo.put_many("acme", {i: i for i in range(3000)})
    repo.put_many("acme-corp", {("o", i): i for i in range(10)})
    backend.damaged |= {stored("acme", 5), stored("acme", 6), stored("acme", 2999)}
    backend.damaged.add(stored("acme-corp", ("o", 3)))
    # A value its codec cannot read (written below the codec) and a key outside the
    # repository's key space.
    backend.put(stored("acme", 1500), b"\xff\xfe not json")
    backend.put(b"\x07stray", b"1")
    report = repo.verify()
    assert not report.ok
    assert report.problem_count == 6
    assert report.records == 3000 + 10 + 1  # and the stray key (metadata is not counted)
    located = sorted((p.tenant or "", repr(p.key)) for p in report.problems)
    assert located == sorted(
        [
            ("acme", "5"),
            ("acme", "6"),
            ("acme", "1500"),
            ("acme", "2999"),
            ("acme-corp", "('o', 3)"),
            ("", repr(b"\x07stray")),
        ]
    )
    decode_problem = next(p for p in report.problems if p.key == 1500)
    assert "json codec" in decode_problem.message
    assert all(isinstance(p, VerifyProblem) for p in report.problems)
    # Reads still refuse the damaged records.
    with pytest.raises(CorruptionError):
        list(repo.items("acme"))
    repo.close()
    with pytest.raises(RepositoryClosedError):
        repo.verify()


def test_report_is_frozen_and_async_twin() -> None:
    async def main() -> VerifyReport:
        arepo = aurora_storage.open_async("memory://")
        await arepo.put("t", "k", 1)
        report = await arepo.verify()
        await arepo.close()
        return report

    report = asyncio.run(main())
    assert report.records == 1
    with pytest.raises(AttributeError):
        report.records = 3  # type: ignore[misc]  # frozen: the point of the test


def test_tiered_verify_covers_both_tiers() -> None:
    from urllib.parse import quote

    url = f"tiered://?hot={quote('memory://', safe='')}&cold={quote('memory://', safe='')}"
    with aurora_storage.open(url) as repo:
        repo.put_many("t", {i: i for i in range(10)})
        report = repo.verify()
    assert report.ok
    # Both tiers' records are counted (each with its own metadata and bookkeeping).
    assert report.records >= 20


def test_damage_at_an_unknown_place_names_the_keys_around_it() -> None:
    # Like a RocksDB table block that fails its checksum: every read that reaches one
    # of the damaged keys fails, and the error does not say which key.
    damaged_keys = {b"k2", b"k3", b"k4"}

    class Unplaced(MemoryBackend):
        def _bad(self, key: bytes) -> bool:
            return any(key.endswith(d + b"\x00") for d in damaged_keys)

        def scan_chunks(
            self,
            start: bytes,
            stop: bytes,
            *,
            reverse: bool = False,
            values: bool = True,
            limit: int | None = None,
        ) -> Iterator[Chunk]:
            for keys, vals in super().scan_chunks(start, stop, reverse=reverse, values=values):
                for i, k in enumerate(keys):
                    if self._bad(k):
                        if i:
                            yield keys[:i], None if vals is None else vals[:i]
                        raise CorruptionError("a table block fails its checksum", path="000009.sst")
                yield keys, vals

        def first_key(self, start: bytes, stop: bytes) -> bytes | None:
            k = super().first_key(start, stop)
            if k is not None and self._bad(k):
                raise CorruptionError("a table block fails its checksum", path="000009.sst")
            return k

        def get(self, key: bytes) -> bytes | None:
            if self._bad(key):
                raise CorruptionError("a table block fails its checksum", path="000009.sst")
            return super().get(key)

    repo: Repository[Any, Any] = Repository(Unplaced())
    repo.put_many("acme", {f"k{i}": i for i in range(10)})
    report = repo.verify()
    (problem,) = report.problems
    # The damage follows acme's k1; the read goes on from k5.
    assert (problem.tenant, problem.key, problem.after) == ("acme", None, "k1")
    assert (problem.resume_tenant, problem.resume) == ("acme", "k5")
    assert problem.path == "000009.sst"
    assert report.records == 7  # k0, k1, k5 ... k9
    assert report.unchecked is None  # a memory store cannot estimate the unread records
