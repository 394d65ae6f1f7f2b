"""Conformance tests - scans: key order across types, prefixes, ranges, reverse and limits."""

from __future__ import annotations

import random
from typing import Any

import pytest

from aurora_storage import (
    encode_stored_key,
    tenant_range,
)
from aurora_storage.errors import InvalidKeyError, InvalidTenantError

from ._base import (
    ORDERED_KEYS,
    Base,
    Repo,
)
from ._common import require, typed_list

__all__ = ["ScanTests"]


class ScanTests(Base):
    """keys / values / items / list: order, bounds, prefixes, reverse, limit."""

    @pytest.fixture
    def ordered(self, repo: Repo) -> Repo:
        """``repo`` holding :data:`ORDERED_KEYS` (values = their rank), inserted shuffled."""
        shuffled = list(enumerate(ORDERED_KEYS))
        random.Random(7).shuffle(shuffled)
        for rank, key in shuffled:
            repo.put("t", key, rank)
        return repo

    def test_cross_type_order(self, ordered: Repo) -> None:
        assert typed_list(ordered.list("t")) == typed_list(ORDERED_KEYS)
        assert list(ordered.values("t")) == list(range(len(ORDERED_KEYS)))

    def test_items_match_keys_and_values(self, ordered: Repo) -> None:
        items = list(ordered.items("t"))
        assert typed_list(k for k, _ in items) == typed_list(ordered.keys("t"))
        assert [v for _, v in items] == list(ordered.values("t"))

    def test_reverse(self, ordered: Repo) -> None:
        assert typed_list(ordered.keys("t", reverse=True)) == typed_list(ORDERED_KEYS[::-1])
        assert list(ordered.values("t", reverse=True)) == list(range(len(ORDERED_KEYS)))[::-1]

    def test_numbers_interleave_numerically(self, repo: Repo) -> None:
        rng = random.Random(3)
        nums: list[int | float] = [rng.randint(-(10**6), 10**6) for _ in range(80)]
        nums += [rng.uniform(-(10**6), 10**6) for _ in range(80)]
        nums += [2, 2.5, 10, -2, -2.5, -10, 0, 0.1, -0.1, 2**64, -(2**64), 2**64 + 0.0]
        for n in nums:
            repo.put("t", n, 0)
        unique = sorted({float(n) if n != int(n) else int(n) for n in nums})
        assert repo.list("t") == unique

    def test_strings_in_code_point_order(self, repo: Repo) -> None:
        rng = random.Random(5)
        alphabet = [
            "\x00",
            "\x01",
            "a",
            "b",
            "~",
            "\x7f",
            "\u00e9",
            "\u0800",
            "\uffff",
            "\U00010000",
        ]
        words = {"".join(rng.choices(alphabet, k=rng.randint(0, 4))) for _ in range(150)}
        repo.put_many("t", dict.fromkeys(words, 0))
        assert repo.list("t") == sorted(words)
        blobs = {
            bytes(rng.choices([0, 1, 0x7F, 0xFE, 0xFF], k=rng.randint(0, 4))) for _ in range(80)
        }
        repo.put_many("b", dict.fromkeys(blobs, 0))
        assert repo.list("b") == sorted(blobs)

    def test_start_inclusive_stop_exclusive(self, repo: Repo) -> None:
        repo.put_many("t", {i: i for i in range(10)})
        assert list(repo.keys("t", start=3, stop=7)) == [3, 4, 5, 6]
        assert list(repo.keys("t", start=3.5, stop=6.5)) == [4, 5, 6]
        assert list(repo.keys("t", start=7)) == [7, 8, 9]
        assert list(repo.keys("t", stop=2)) == [0, 1]
        assert list(repo.keys("t", start=5, stop=5)) == []
        assert list(repo.keys("t", start=6, stop=2)) == []
        assert list(repo.keys("t", start=3, stop=7, reverse=True)) == [6, 5, 4, 3]
        assert sorted(repo.values("t", start=8)) == [8, 9]
        assert list(repo.items("t", start=1, stop=3)) == [(1, 1), (2, 2)]

    def test_limit(self, repo: Repo) -> None:
        repo.put_many("t", {i: i for i in range(10)})
        assert list(repo.keys("t", limit=3)) == [0, 1, 2]
        assert list(repo.keys("t", limit=3, reverse=True)) == [9, 8, 7]
        assert list(repo.keys("t", limit=0)) == []
        assert list(repo.keys("t", limit=100)) == list(range(10))
        assert list(repo.items("t", start=4, limit=2)) == [(4, 4), (5, 5)]

    def test_str_prefix(self, repo: Repo) -> None:
        for k in ["a", "ab", "abc", "abd", "ac", "b", b"ab", ("ab",), "a\x00", "ab\x00"]:
            repo.put("t", k, 0)
        assert list(repo.list("t", prefix="ab")) == ["ab", "ab\x00", "abc", "abd"]
        assert list(repo.list("t", prefix="a")) == [
            "a",
            "a\x00",
            "ab",
            "ab\x00",
            "abc",
            "abd",
            "ac",
        ]
        assert list(repo.list("t", prefix="")) == [
            "a", "a\x00", "ab", "ab\x00", "abc", "abd", "ac", "b"
        ]  # fmt: skip
        assert list(repo.list("t", prefix="zz")) == []
        assert repo.count("t", prefix="ab") == 4

    def test_bytes_prefix(self, repo: Repo) -> None:
        for k in [b"\x00", b"\x00\x01", b"\x01", b"\xff", b"\xff\xff", "\xff"]:
            repo.put("t", k, 0)
        assert list(repo.list("t", prefix=b"\x00")) == [b"\x00", b"\x00\x01"]
        assert list(repo.list("t", prefix=b"\xff")) == [b"\xff", b"\xff\xff"]

    def test_tuple_prefix(self, repo: Repo) -> None:
        keys = [("order", 1), ("order", 2, "x"), ("order",), ("orders", 1), ("o",), "order"]
        for k in keys:
            repo.put("t", k, 0)
        assert list(repo.list("t", prefix=("order",))) == [
            ("order",),
            ("order", 1),
            ("order", 2, "x"),
        ]
        assert list(repo.list("t", prefix=["order", 2])) == [("order", 2, "x")]
        got = list(repo.keys("t", prefix=("order",), reverse=True, limit=1))
        assert got == [("order", 2, "x")]

    def test_first_and_newest_key_agree_with_scans(self, repo: Repo) -> None:
        # keys(t, prefix=p, reverse=..., limit=1) takes a fast path (one engine seek, a
        # cache of bounds, a shortcut decoding (s, n) keys): it must return what the
        # full scan returns first, for every key shape and tenant, cached or not.
        ints = [0, 1, 255, 256, 2**63, 2**64 - 1, 2**64, 2**70, -1, 1.5, True]
        keys: list[Any] = [("s", n) for n in ints] + [("s",), ("s", 7, "x"), ("s", "z")]
        keys += [("t", 3), ("t", 2**64), ("t\x00", 1), "s", "s1", b"s", ("s\x00", 5)]
        keys += [(("s",), 1), ("u", None), ("", 4)]
        for tenant in ("a", "a\x00b", "b"):
            repo.put_many(tenant, [(k, 0) for k in keys])
        repo.put_many("c", [(("s", 9), 0), (("s", 9, "x"), 0), (("s", 1, 2), 0)])
        prefixes: list[Any] = ["s", ("s",), ("t",), ["s"], ("s", 7), b"s", (("s",),)]
        prefixes += [("u",), ("",), "", (), ("nothing",), "zz", ("s\x00",), ("t\x00",)]
        for _ in range(2):  # the second round reads the cached bounds
            for tenant in ("a", "a\x00b", "b", "c", "empty"):
                for prefix in prefixes:
                    for reverse in (False, True):
                        everything = list(repo.keys(tenant, prefix=prefix, reverse=reverse))
                        got = list(repo.keys(tenant, prefix=prefix, reverse=reverse, limit=1))
                        assert got == everything[:1], (tenant, prefix, reverse)
                        assert [type(k) for k in got] == [type(k) for k in everything[:1]]
        # Bad arguments fail as in every scan, cached prefix or not.
        with pytest.raises(InvalidTenantError):
            repo.keys("", prefix=("s",), reverse=True, limit=1)
        with pytest.raises(InvalidKeyError):
            repo.keys("a", prefix=1.5, reverse=True, limit=1)

    def test_prefix_with_bounds(self, repo: Repo) -> None:
        repo.put_many("t", {("p", i): i for i in range(10)})
        repo.put_many("t", {("q", i): i for i in range(3)})
        got = sorted(repo.values("t", prefix=("p",), start=("p", 3), stop=("q", 1)))
        assert got == [3, 4, 5, 6, 7, 8, 9]

    def test_scan_of_empty_tenant(self, repo: Repo) -> None:
        assert repo.list("nobody") == []
        assert list(repo.items("nobody", reverse=True)) == []
        assert repo.count("nobody") == 0

    def test_backend_scan_paths_agree(self, repo: Repo) -> None:
        require(repo, "ordered_scans", "compares the engine's own scan orders")
        # The repository reads through Backend.scan_chunks; compositions (tiered) and the
        # Backend defaults read through scan / scan_keys. All must return the same
        # records in the same order, and chunks are never empty or ragged.
        rng = random.Random(11)
        for tenant in ("a", "a\x00b", "b"):
            repo.put_many(tenant, {f"k{i:04d}": i for i in range(rng.randint(300, 700))})
            repo.put_many(tenant, [(k, 0) for k in ORDERED_KEYS])
        be = repo.backend
        ranges = [
            (tenant_range("a")[0], tenant_range("b")[1]),  # all three tenants
            tenant_range("a\x00b"),
            (encode_stored_key("a\x00b", "k0100"), encode_stored_key("a\x00b", "k0300")),
        ]
        for lo, hi in ranges:
            for reverse in (False, True):
                flat = list(be.scan(lo, hi, reverse=reverse))
                assert flat, (lo, hi)
                assert [k for k, _ in flat] == sorted(k for k, _ in flat)[:: -1 if reverse else 1]
                assert list(be.scan_keys(lo, hi, reverse=reverse)) == [k for k, _ in flat]
                chunked: list[tuple[bytes, bytes]] = []
                for keys, vals in be.scan_chunks(lo, hi, reverse=reverse):
                    assert keys, "scan_chunks yielded an empty chunk"
                    assert vals is not None
                    assert len(keys) == len(vals)
                    chunked += zip(keys, vals, strict=True)
                assert chunked == flat
                only_keys: list[bytes] = []
                for keys, vals in be.scan_chunks(lo, hi, reverse=reverse, values=False):
                    assert keys, "scan_chunks yielded an empty chunk"
                    assert vals is None
                    only_keys += keys
                assert only_keys == [k for k, _ in flat]

    def test_iterator_can_be_abandoned(self, repo: Repo) -> None:
        repo.put_many("t", {i: i for i in range(50)})
        it = repo.keys("t")
        next(it)
        del it
        it2 = repo.items("t")
        next(it2)
        it2.close()  # type: ignore[attr-defined]  # typed Iterator, a generator at run time
        repo.put("t", 99, 99)
        assert repo.count("t") == 51
