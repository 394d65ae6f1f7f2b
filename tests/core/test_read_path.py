"""One read path: every read of many records goes through ``Backend.scan_chunks``.

``ChunksOnly`` is the memory backend with ``scan`` and ``scan_keys`` made to fail: its
``scan_chunks`` is native, so anything that still read through ``scan`` / ``scan_keys`` -
the repository's scans, ``verify``, the ``Backend`` defaults, ``tiered``'s reads of its
tiers, the command line's copy - fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aurora_storage import Repository
from aurora_storage.backend import Backend, Capabilities, Chunk
from aurora_storage.cli._transfer import copy_store
from aurora_storage.memory import MemoryBackend
from aurora_storage.tiered import TieredRepository


class ChunksOnly(MemoryBackend):
    """A backend whose only bulk read is ``scan_chunks``."""

    def scan(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Any:
        raise AssertionError("read through scan, not through scan_chunks")

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Any:
        raise AssertionError("read through scan_keys, not through scan_chunks")


def _filled() -> Repository[Any, Any]:
    repo: Repository[Any, Any] = Repository(ChunksOnly())
    repo.put_many("t", {i: i for i in range(600)})
    repo.put("u", "k", 1)
    return repo


def test_repository_reads_through_scan_chunks() -> None:
    with _filled() as repo:
        assert list(repo.keys("t", reverse=True, limit=3)) == [599, 598, 597]
        assert list(repo.items("t", start=5, stop=7)) == [(5, 5), (6, 6)]
        assert list(repo.tenants()) == ["t", "u"]
        assert repo.count("t") == 600
        assert repo.verify().ok


def test_backend_defaults_read_through_scan_chunks() -> None:
    with _filled() as repo:
        b = repo.backend
        lo, hi = b"\x01", b"\xff"
        assert Backend.count_range(b, lo, hi) == 601
        first, last = Backend.first_key(b, lo, hi), Backend.last_key(b, lo, hi)
        assert first is not None
        assert last is not None
        assert first < last
        assert Backend.delete_range(b, lo, hi) == 601
        assert list(repo.tenants()) == []


def test_tiered_reads_its_tiers_through_scan_chunks() -> None:
    hot: Repository[Any, Any] = Repository(ChunksOnly())
    cold: Repository[Any, Any] = Repository(ChunksOnly())
    tiered: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold)
    with tiered:
        tiered.put_many("t", {i: i for i in range(300)})
        assert list(tiered.keys("t", limit=2)) == [0, 1]
        assert tiered.drop_tenant("t") == 300
        tiered.catch_up()
        tiered.rebuild()
        assert list(tiered.tenants()) == []


def test_command_line_copy_reads_through_scan_chunks() -> None:
    dst: Repository[Any, Any] = Repository(ChunksOnly())
    with _filled() as src, dst:
        assert copy_store(src, dst) == 601
        assert list(dst.keys("t", reverse=True, limit=1)) == [599]
        assert copy_store(src, dst, resume=True) == 0


class _UnorderedChunks(MemoryBackend):
    """The memory backend declaring unordered scans, its chunks in reverse order."""

    capabilities = Capabilities(ordered_scans=False)

    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> Iterator[Chunk]:
        yield from super().scan_chunks(start, stop, reverse=not reverse, values=values)


class _Interrupted(Exception):
    pass


def _interrupt(copied: int) -> None:
    raise _Interrupted(copied)


@pytest.mark.parametrize("n", [10_500, 21_000])  # more than one copy chunk (10,000)
def test_command_line_copy_of_an_unordered_store_resumes_in_key_order(n: int) -> None:
    src: Repository[Any, Any] = Repository(_UnorderedChunks())
    src.put_many("t", {i: i for i in range(n)})
    dst: Repository[Any, Any] = Repository(MemoryBackend())
    with src, dst:
        with pytest.raises(_Interrupted):
            copy_store(src, dst, advance=_interrupt)  # stops after the first chunk
        assert 0 < dst.count("t") < n
        # Resuming starts after the target's last key: with the source read in key
        # order, that is exactly what is missing.
        copy_store(src, dst, resume=True)
        assert list(dst.keys("t")) == list(range(n))
