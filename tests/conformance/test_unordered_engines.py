"""Unordered engines (``ordered_scans=False``) through a real entry point.

``aurora_hashkv`` (in ``thirdparty/``) is an outside plugin over a hash table: its scans
filter the range but return keys in hash order. It is installed as pip would install it
(a ``.dist-info`` with an ``aurora_storage`` entry point in a temporary site directory)
and opened by URL. The repository must still scan in key order, honour ``reverse`` and
``limit`` in that order, and drop a tenant of any size (the default ``delete_range``
once re-seeked after each 10,000-key batch as if keys were ordered: 25,000 keys left
7,461 behind).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plugin_dists import install_dist, on_path

import aurora_storage
from aurora_storage import Repository
from aurora_storage._ordering import ordered_chunks
from aurora_storage.backend import Backend, Chunk
from aurora_storage.testing import LargeRangeTests, RepositoryTestSuite

HERE = Path(__file__).parent / "thirdparty"


@pytest.fixture(scope="module")
def hashkv_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary site directory with aurora-hashkv installed."""
    site = tmp_path_factory.mktemp("hashkv-site")
    shutil.copytree(HERE / "aurora_hashkv", site / "aurora_hashkv")
    install_dist(site, "aurora_hashkv", {"hashkv": "aurora_hashkv._plugin"})
    with on_path(site, "aurora_hashkv"):
        yield site


@pytest.fixture
def repo(hashkv_site: Path) -> Iterator[Repository[Any, Any]]:
    with aurora_storage.open("hashkv://") as r:
        yield r


def _shuffled(n: int, seed: int = 18) -> list[int]:
    keys = list(range(n))
    random.Random(seed).shuffle(keys)
    return keys


def test_the_engine_really_is_unordered(repo: Repository[Any, Any]) -> None:
    # The premise of every other test here: the engine's own scan is not in key order.
    repo.put_many("t", {k: k for k in _shuffled(2_000)})
    raw = [k for k, _ in repo.backend.scan(b"", b"\xff")]
    assert raw != sorted(raw)
    assert not repo.capabilities.ordered_scans
    assert type(repo.backend).__module__ == "aurora_hashkv._backend"


@pytest.mark.parametrize("n", [25_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_drop_tenant_deletes_every_key(repo: Repository[Any, Any], n: int) -> None:
    # Before the fix: 25,000 keys -> 17,539 deleted, 7,461 left; 100,000 -> 73,273 left.
    repo.put_many("big", dict.fromkeys(_shuffled(n), 0))
    repo.put("bif", 1, "before")
    repo.put("big:x", 1, "after, sharing the prefix")
    assert repo.drop_tenant("big") == n
    assert repo.count("big") == 0
    assert list(repo.keys("big")) == []
    assert list(repo.tenants()) == ["bif", "big:x"]
    assert repo.get("bif", 1) == "before"
    assert repo.get("big:x", 1) == "after, sharing the prefix"


def test_default_delete_range_on_the_unordered_backend(repo: Repository[Any, Any]) -> None:
    backend = repo.backend
    backend.write([(b"\x20k%06d" % i, b"v") for i in _shuffled(25_001)])
    backend.write([(b"\x20l", b"outside")])
    assert Backend.delete_range(backend, b"\x20k", b"\x20l") == 25_001
    assert backend.count_range(b"\x20k", b"\x20l") == 0
    assert backend.get(b"\x20l") == b"outside"


def test_scans_are_in_key_order_across_passes(repo: Repository[Any, Any]) -> None:
    n = 23_456  # three passes of 10,000
    repo.put_many("t", {k: -k for k in _shuffled(n)})
    everything = list(range(n))
    assert list(repo.keys("t")) == everything
    assert list(repo.keys("t", reverse=True)) == everything[::-1]
    assert list(repo.values("t")) == [-k for k in everything]
    assert list(repo.items("t", reverse=True)) == [(k, -k) for k in everything[::-1]]
    assert list(repo.keys("t", limit=3)) == [0, 1, 2]
    assert list(repo.keys("t", reverse=True, limit=3)) == [n - 1, n - 2, n - 3]
    assert list(repo.keys("t", limit=10_001)) == everything[:10_001]
    assert list(repo.keys("t", reverse=True, limit=1)) == [n - 1]
    assert list(repo.keys("t", limit=1)) == [0]
    assert list(repo.keys("t", start=9_990, stop=20_010)) == everything[9_990:20_010]
    assert list(repo.keys("t", start=100, stop=20_000, reverse=True, limit=12_000)) == list(
        range(19_999, 7_999, -1)
    )
    assert repo.count("t") == n


def test_prefix_scans_and_tenants_in_order(repo: Repository[Any, Any]) -> None:
    for t in ["zeta", "alpha", "mid", "a", "a:b"]:
        repo.put(t, "k", 1)
    assert list(repo.tenants()) == ["a", "a:b", "alpha", "mid", "zeta"]
    words = [f"{p}{i:03d}" for p in ("x", "y", "xy") for i in range(300)]
    random.Random(3).shuffle(words)
    repo.put_many("w", dict.fromkeys(words, 0))
    assert list(repo.keys("w", prefix="xy")) == sorted(w for w in words if w.startswith("xy"))
    assert list(repo.keys("w", prefix="x", reverse=True, limit=2)) == ["xy299", "xy298"]


def test_async_scans_are_in_key_order(repo: Repository[Any, Any]) -> None:
    repo.put_many("t", {k: k for k in _shuffled(12_000)})

    async def main() -> tuple[list[Any], list[Any]]:
        arepo = repo.as_async()
        down = [k async for k in arepo.keys("t", reverse=True, limit=11_000)]
        up = [kv async for kv in arepo.items("t", start=5, stop=10)]
        return down, up

    down, up = asyncio.run(main())
    assert down == list(range(11_999, 999, -1))
    assert up == [(k, k) for k in range(5, 10)]


class TestHashKVConformance(RepositoryTestSuite):
    """The whole shipped suite against the unordered entry-point plugin."""

    @pytest.fixture
    def store_url(self, hashkv_site: Path) -> str:
        return "hashkv://"


class TestMemoryLargeRanges(LargeRangeTests):
    """The large-range tests against the ordered reference backend too."""

    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"


def _scan_of(keys: list[bytes]) -> Any:
    """An unordered engine's chunked scan over ``keys`` (hash-like order, chunks of 7)."""
    shuffled = sorted(keys, key=lambda k: hash((k, "salt")))

    def scan(lo: bytes, hi: bytes) -> Iterator[Chunk]:
        picked = [k for k in shuffled if lo <= k < hi]
        for i in range(0, len(picked), 7):
            part = picked[i : i + 7]
            yield part, [k[::-1] for k in part]

    return scan


@given(
    keys=st.sets(st.binary(min_size=1, max_size=4), max_size=60),
    bounds=st.tuples(st.binary(max_size=3), st.binary(max_size=3)),
    reverse=st.booleans(),
    values=st.booleans(),
    limit=st.none() | st.integers(min_value=0, max_value=70),
    pass_records=st.integers(min_value=1, max_value=12),
)
def test_ordered_chunks_is_a_sorted_slice(
    keys: set[bytes],
    bounds: tuple[bytes, bytes],
    reverse: bool,
    values: bool,
    limit: int | None,
    pass_records: int,
) -> None:
    lo, hi = bounds
    hi = hi or b"\xff\xff\xff\xff\xff"
    expected = sorted((k for k in keys if lo <= k < hi), reverse=reverse)
    if limit is not None:
        expected = expected[:limit]
    got: list[bytes] = []
    got_values: list[bytes] = []
    for ks, vs in ordered_chunks(
        _scan_of(sorted(keys)),
        lo,
        hi,
        reverse=reverse,
        values=values,
        limit=limit,
        pass_records=pass_records,
    ):
        assert ks, "an empty chunk"
        assert len(ks) <= pass_records
        got += ks
        if values:
            assert vs is not None
            got_values += vs
        else:
            assert vs is None
    assert got == expected
    if values:
        assert got_values == [k[::-1] for k in expected]
