"""The msgpack codec's per-thread packer does not keep a large value's buffer.

A ``msgpack.Packer`` never shrinks its buffer, and the codec keeps one per thread (a
new one per call cost more than packing a small value): a thread that once packed a
200 MB value kept ~200 MB for its life (RSS 23 -> 213 MiB, still there after 100 small
puts), and each thread of a pool its own copy. A packer that made a large output, or
failed part-way, is now dropped. Memory is measured with ``tracemalloc`` (msgpack
allocates its buffer through Python's allocator), with a wide margin, not by timing.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage import SerializationError
from aurora_storage import codecs as codecs_module

BIG = 16 * 2**20  # far above any buffer a kept packer may hold
MARGIN = 4 * 2**20  # a kept packer holds at most twice its 256 KiB start


@pytest.fixture
def repo() -> Iterator[Any]:
    with aurora_storage.open("memory://", codec="msgpack") as r:
        yield r


def _retained_by_live_threads(action: Callable[[], None], threads: int = 1) -> int:
    """Bytes still allocated after ``action`` ran in each of ``threads`` new threads,
    measured while those threads are alive (with their thread-local packers)."""
    ran = threading.Barrier(threads + 1, timeout=60)
    release = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)
        ran.wait()
        release.wait(60)

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for t in workers:
            t.start()
        try:
            ran.wait()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            release.set()
            for t in workers:
                t.join()
    finally:
        tracemalloc.stop()
    if errors:
        raise errors[0]
    return after - before


# What put encodes with (the memory store keeps a written value in its change feed,
# so a put through a repository would measure the store, not the codec).
encode = codecs_module.MSGPACK.encode


def test_a_large_value_does_not_keep_its_buffer_in_the_thread() -> None:
    def encode_big_then_small() -> None:
        assert len(encode({"blob": "x" * BIG})) > BIG
        for i in range(100):
            encode({"n": i})

    assert _retained_by_live_threads(encode_big_then_small) < MARGIN


def test_a_large_value_refused_part_way_does_not_keep_its_buffer(repo: Any) -> None:
    def refused() -> None:
        # The blob is packed before the object is refused: the buffer has grown.
        with pytest.raises(SerializationError):
            repo.put("t", "bad", {"blob": "x" * BIG, "z": object()})

    assert _retained_by_live_threads(refused) < MARGIN
    assert not repo.has("t", "bad")


def test_threads_of_a_pool_do_not_each_keep_a_large_buffer() -> None:
    def encode_big() -> None:
        encode({"blob": "x" * (BIG // 4)})

    assert _retained_by_live_threads(encode_big, threads=4) < MARGIN


def test_small_values_keep_the_threads_packer() -> None:
    encode({"n": 0})
    kept = codecs_module._packers.entry
    for i in range(100):
        assert codecs_module.MSGPACK.decode(encode({"n": i, "s": "x" * i})) == {
            "n": i,
            "s": "x" * i,
        }
    assert codecs_module._packers.entry is kept
