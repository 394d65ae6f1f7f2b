"""The conformance test mixins: the Repository contract, grouped by operation.

Every mixin needs one fixture from the subclass, ``store_url``: a URL string naming a
fresh, empty store, unique per test. The mixins open it with :func:`aurora_storage.open`
(the ``repo`` fixture) and, for persistence, reopen it.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage import (
    MAX_KEY_SIZE,
    AsyncRepository,
    Repository,
    encode_stored_key,
    tenant_range,
)
from aurora_storage.errors import (
    ConfigurationError,
    InvalidKeyError,
    InvalidTenantError,
    InvalidURLError,
    KeyExistsError,
    KeyTooLargeError,
    RepositoryClosedError,
    SerializationError,
    StorageError,
)

from ._common import HOSTILE_TENANTS, SAMPLE_KEYS, has_list, require, typed_list, with_option

__all__ = [
    "AsyncTests",
    "BadInputTests",
    "BatchTests",
    "LifecycleTests",
    "PersistenceTests",
    "PointOpsTests",
    "ScanTests",
    "TenantTests",
    "ThreadTests",
]

Repo = Repository[Any, Any]

#: Keys in the documented cross-type order: None < False < True < numbers (int and
#: float interleaved numerically) < str (code point order) < bytes < tuples/lists
#: (element by element, a prefix first) < dicts.
ORDERED_KEYS: tuple[Any, ...] = (
    None,
    False,
    True,
    -math.inf,
    -(10**30),
    -1000.5,
    -10,
    -2.5,
    -2,
    -1,
    -0.25,
    0,
    1e-300,
    0.25,
    1,
    2,
    2.5,
    3,
    10,
    1e15 + 0.5,
    10**30,
    math.inf,
    "",
    "\x00",
    "A",
    "Z",
    "a",
    "a\x00",
    "a\x00b",
    "a\x01",
    "ab",
    "b",
    "\u00e9",
    "\uffff",
    "\U0001f600",
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x01",
    b"a",
    b"\xff",
    (),
    (None,),
    (False,),
    (-1,),
    (0,),
    (1,),
    (1, None),
    (1, "a"),
    (1, ("a",)),
    (2,),
    ("a",),
    ("a", 1),
    ("b",),
    (b"a",),
    ((),),
    ((1,),),
    ({},),
    {},
    {"a": 1},
    {"a": 2},
    {"a": 2, "b": 0},
    {"b": 0},
)

_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -7,
    3.25,
    "text",
    "\u00fc\U0001f600",
    [],
    [1, "two", None],
    {},
    {"nested": {"list": [1, 2, {"x": None}], "flag": False}},
)


class _Base:
    """Fixtures shared by every mixin."""

    @pytest.fixture
    def store_url(self) -> str:
        """Override in the subclass: a URL naming a fresh, empty store, unique per test."""
        pytest.fail(
            f"{type(self).__name__} must define a `store_url` fixture returning the URL "
            "of a fresh store, e.g. f'mykv://{tmp_path}/store'"
        )

    @pytest.fixture
    def repo(self, store_url: str) -> Iterator[Repo]:
        """The store at ``store_url``, opened with :func:`aurora_storage.open`."""
        r = aurora_storage.open(store_url)
        try:
            yield r
        finally:
            r.close()


def _assert_empty(repo: Repo) -> None:
    assert list(repo.tenants()) == [], "a failed call left data behind"


def _ordered(repo: Repo, keys: Any) -> list[Any]:
    """``keys`` as a list; sorted into key order if the backend's scans are unordered, so
    range and prefix tests still check *which* keys a scan returns."""
    out = list(keys)
    if not repo.capabilities.ordered_scans:
        out.sort(key=aurora_storage.encode_key)
    return out


# ---------------------------------------------------------------------------- point ops


class PointOpsTests(_Base):
    """put / get / delete / has / insert / get_many / put_many / delete_many / count."""

    def test_put_get_roundtrip_values(self, repo: Repo) -> None:
        for i, value in enumerate(_VALUES):
            repo.put("t", i, value)
        for i, value in enumerate(_VALUES):
            assert repo.get("t", i) == value

    def test_get_absent_returns_default(self, repo: Repo) -> None:
        marker = object()
        assert repo.get("t", "missing") is None
        assert repo.get("t", "missing", marker) is marker

    def test_stored_none_is_not_absent(self, repo: Repo) -> None:
        repo.put("t", "k", None)
        assert repo.has("t", "k")
        assert repo.get("t", "k", "default") is None

    def test_put_overwrites(self, repo: Repo) -> None:
        repo.put("t", "k", 1)
        repo.put("t", "k", {"v": 2})
        assert repo.get("t", "k") == {"v": 2}
        assert repo.count("t") == 1

    def test_delete_returns_whether_present(self, repo: Repo) -> None:
        repo.put("t", "k", 1)
        assert repo.delete("t", "k") is True
        assert repo.delete("t", "k") is False
        assert repo.get("t", "k") is None
        assert not repo.has("t", "k")

    def test_has(self, repo: Repo) -> None:
        assert repo.has("t", "k") is False
        repo.put("t", "k", 0)
        assert repo.has("t", "k") is True

    def test_insert_creates_then_refuses(self, repo: Repo) -> None:
        repo.insert("t", "k", "first")
        with pytest.raises(KeyExistsError) as info:
            repo.insert("t", "k", "second")
        assert isinstance(info.value, KeyError)
        assert "k" in str(info.value)
        assert repo.get("t", "k") == "first"

    def test_keys_of_every_type_roundtrip(self, repo: Repo) -> None:
        for i, key in enumerate(SAMPLE_KEYS):
            repo.put("t", key, i)
        for i, key in enumerate(SAMPLE_KEYS):
            assert repo.get("t", key) == i, key
            assert repo.has("t", key)
        listed = repo.list("t")
        assert sorted(map(repr, typed_list(listed))) == sorted(map(repr, typed_list(SAMPLE_KEYS)))
        assert not any(has_list(k) for k in listed)

    def test_equal_keys_are_one_record(self, repo: Repo) -> None:
        repo.put("t", 1, "int")
        repo.put("t", 1.0, "float")
        assert repo.get("t", 1) == "float"
        repo.put("t", -0.0, "negzero")
        assert repo.get("t", 0) == "negzero"
        repo.put("t", [1, "a"], "list")
        assert repo.get("t", (1, "a")) == "list"
        repo.put("t", {"x": 1, "y": 2}, "d1")
        repo.put("t", {"y": 2, "x": 1}, "d2")
        assert repo.get("t", {"x": 1, "y": 2}) == "d2"
        assert repo.count("t") == 4

    def test_bool_is_not_int(self, repo: Repo) -> None:
        repo.put("t", True, "bool")
        repo.put("t", 1, "int")
        repo.put("t", False, "false")
        repo.put("t", 0, "zero")
        assert repo.get("t", True) == "bool"
        assert repo.get("t", 1) == "int"
        assert repo.get("t", False) == "false"
        assert repo.get("t", 0) == "zero"
        assert repo.count("t") == 4

    def test_lists_decode_as_tuples_and_dicts_as_dicts(self, repo: Repo) -> None:
        repo.put("t", [1, [2, "x"]], 0)
        repo.put("t", {"a": [1]}, 0)
        keys = repo.list("t")
        assert (1, (2, "x")) in keys
        assert {"a": (1,)} in keys
        assert not any(has_list(k) for k in keys)

    def test_get_many(self, repo: Repo) -> None:
        repo.put("t", "a", 1)
        repo.put("t", "c", 3)
        assert repo.get_many("t", ["a", "b", "c", "a"]) == [1, None, 3, 1]
        assert repo.get_many("t", ["b"], default="d") == ["d"]
        assert repo.get_many("t", []) == []

    def test_put_many_mapping_and_pairs(self, repo: Repo) -> None:
        assert repo.put_many("t", {"a": 1, "b": 2}) == 2
        assert repo.put_many("t", iter([("c", 3), ("d", 4)])) == 2
        assert repo.put_many("t", []) == 0
        assert repo.get_many("t", ["a", "b", "c", "d"]) == [1, 2, 3, 4]

    def test_put_many_last_duplicate_wins(self, repo: Repo) -> None:
        repo.put_many("t", [("k", 1), ("k", 2)])
        assert repo.get("t", "k") == 2

    def test_delete_many_counts_existing(self, repo: Repo) -> None:
        repo.put_many("t", {"a": 1, "b": 2, "c": 3})
        assert repo.delete_many("t", ["a", "b", "x", "a"]) == 2
        assert repo.list("t") == ["c"]
        assert repo.delete_many("t", []) == 0

    def test_count(self, repo: Repo) -> None:
        assert repo.count("t") == 0
        repo.put_many("t", {i: i for i in range(25)})
        assert repo.count("t") == 25
        repo.delete("t", 3)
        assert repo.count("t") == 24

    def test_tenant_view(self, repo: Repo) -> None:
        view = repo.tenant("acme")
        view.put("k", 1)
        view.insert("j", 2)
        with pytest.raises(KeyExistsError):
            view.insert("j", 3)
        assert view.get("k") == 1
        assert view.get("nope", 5) == 5
        assert view.has("j")
        assert view.put_many({"x": 1, "y": 2}) == 2
        assert view.get_many(["x", "y", "z"]) == [1, 2, None]
        assert view.list() == ["j", "k", "x", "y"] or not repo.capabilities.ordered_scans
        assert sorted(view.keys()) == ["j", "k", "x", "y"]
        assert view.count() == 4
        assert view.delete_many(["x", "y"]) == 2
        assert view.delete("k") is True
        assert repo.get("acme", "j") == 2
        assert view.drop() == 1
        assert list(repo.tenants()) == []

    def test_capabilities_and_stats(self, repo: Repo) -> None:
        assert isinstance(repo.capabilities, aurora_storage.Capabilities)
        stats = repo.stats()
        assert isinstance(stats, dict)
        assert stats["codec"] == repo.codec.name
        repo.flush()  # must not fail on an open store


# ---------------------------------------------------------------------------- scans


class ScanTests(_Base):
    """keys / values / items / list: order, bounds, prefixes, reverse, limit."""

    @pytest.fixture
    def ordered(self, repo: Repo) -> Repo:
        """``repo`` holding :data:`ORDERED_KEYS` (values = their rank), inserted shuffled."""
        require(repo, "ordered_scans", "key-order tests need ordered scans")
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
        require(repo, "ordered_scans", "key-order tests need ordered scans")
        rng = random.Random(3)
        nums: list[int | float] = [rng.randint(-(10**6), 10**6) for _ in range(80)]
        nums += [rng.uniform(-(10**6), 10**6) for _ in range(80)]
        nums += [2, 2.5, 10, -2, -2.5, -10, 0, 0.1, -0.1, 2**64, -(2**64), 2**64 + 0.0]
        for n in nums:
            repo.put("t", n, 0)
        unique = sorted({float(n) if n != int(n) else int(n) for n in nums})
        assert repo.list("t") == unique

    def test_strings_in_code_point_order(self, repo: Repo) -> None:
        require(repo, "ordered_scans", "key-order tests need ordered scans")
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
        assert _ordered(repo, repo.keys("t", start=3, stop=7)) == [3, 4, 5, 6]
        assert _ordered(repo, repo.keys("t", start=3.5, stop=6.5)) == [4, 5, 6]
        assert _ordered(repo, repo.keys("t", start=7)) == [7, 8, 9]
        assert _ordered(repo, repo.keys("t", stop=2)) == [0, 1]
        assert _ordered(repo, repo.keys("t", start=5, stop=5)) == []
        assert _ordered(repo, repo.keys("t", start=6, stop=2)) == []
        if repo.capabilities.ordered_scans:
            assert list(repo.keys("t", start=3, stop=7, reverse=True)) == [6, 5, 4, 3]
        assert sorted(repo.values("t", start=8)) == [8, 9]
        assert _ordered(repo, repo.items("t", start=1, stop=3)) == [(1, 1), (2, 2)]

    def test_limit(self, repo: Repo) -> None:
        require(repo, "ordered_scans", "limits take the first keys in order")
        repo.put_many("t", {i: i for i in range(10)})
        assert list(repo.keys("t", limit=3)) == [0, 1, 2]
        assert list(repo.keys("t", limit=3, reverse=True)) == [9, 8, 7]
        assert list(repo.keys("t", limit=0)) == []
        assert list(repo.keys("t", limit=100)) == list(range(10))
        assert list(repo.items("t", start=4, limit=2)) == [(4, 4), (5, 5)]

    def test_str_prefix(self, repo: Repo) -> None:
        for k in ["a", "ab", "abc", "abd", "ac", "b", b"ab", ("ab",), "a\x00", "ab\x00"]:
            repo.put("t", k, 0)
        assert _ordered(repo, repo.list("t", prefix="ab")) == ["ab", "ab\x00", "abc", "abd"]
        assert _ordered(repo, repo.list("t", prefix="a")) == [
            "a",
            "a\x00",
            "ab",
            "ab\x00",
            "abc",
            "abd",
            "ac",
        ]
        assert _ordered(repo, repo.list("t", prefix="")) == [
            "a", "a\x00", "ab", "ab\x00", "abc", "abd", "ac", "b"
        ]  # fmt: skip
        assert _ordered(repo, repo.list("t", prefix="zz")) == []
        assert repo.count("t", prefix="ab") == 4

    def test_bytes_prefix(self, repo: Repo) -> None:
        for k in [b"\x00", b"\x00\x01", b"\x01", b"\xff", b"\xff\xff", "\xff"]:
            repo.put("t", k, 0)
        assert _ordered(repo, repo.list("t", prefix=b"\x00")) == [b"\x00", b"\x00\x01"]
        assert _ordered(repo, repo.list("t", prefix=b"\xff")) == [b"\xff", b"\xff\xff"]

    def test_tuple_prefix(self, repo: Repo) -> None:
        keys = [("order", 1), ("order", 2, "x"), ("order",), ("orders", 1), ("o",), "order"]
        for k in keys:
            repo.put("t", k, 0)
        assert _ordered(repo, repo.list("t", prefix=("order",))) == [
            ("order",),
            ("order", 1),
            ("order", 2, "x"),
        ]
        assert _ordered(repo, repo.list("t", prefix=["order", 2])) == [("order", 2, "x")]
        if repo.capabilities.ordered_scans:
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
        # The repository reads through Backend.scan_chunks; compositions (tiered) and the
        # Backend defaults read through scan / scan_keys. All must return the same
        # records in the same order, and chunks are never empty or ragged.
        require(repo, "ordered_scans", "compares scan orders")
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
        it2.close()  # type: ignore[attr-defined]
        repo.put("t", 99, 99)
        assert repo.count("t") == 51


# ---------------------------------------------------------------------------- batches


class _Boom(Exception):
    pass


class BatchTests(_Base):
    """batch() and the all-or-nothing batch calls."""

    def test_batch_commits_puts_and_deletes_across_tenants(self, repo: Repo) -> None:
        repo.put("a", "old", 0)
        with repo.batch() as b:
            b.delete("a", "never-existed")
            b.put("a", "k", 1)
            b.delete("a", "old")
            b.put("b", "k", 2)
            assert len(b) == 4
        assert repo.get("a", "k") == 1
        assert repo.get("b", "k") == 2
        assert not repo.has("a", "old")

    def test_batch_applies_in_order(self, repo: Repo) -> None:
        with repo.batch() as b:
            b.put("t", "x", 1)
            b.delete("t", "x")
            b.delete("t", "y")
            b.put("t", "y", 2)
            b.put("t", "z", 1)
            b.put("t", "z", 3)
        assert not repo.has("t", "x")
        assert repo.get("t", "y") == 2
        assert repo.get("t", "z") == 3

    def test_batch_not_visible_before_commit(self, repo: Repo) -> None:
        with repo.batch() as b:
            b.put("t", "k", 1)
            assert not repo.has("t", "k")
            assert repo.count("t") == 0
        assert repo.has("t", "k")

    def test_batch_discarded_when_block_raises(self, repo: Repo) -> None:
        repo.put("t", "keep", 1)

        def failing_block() -> None:
            with repo.batch() as b:
                b.put("t", "k", 1)
                b.delete("t", "keep")
                raise _Boom

        with pytest.raises(_Boom):
            failing_block()
        assert not repo.has("t", "k")
        assert repo.get("t", "keep") == 1

    def test_batch_bad_key_raises_and_discards(self, repo: Repo) -> None:
        def block(tenant: Any, key: Any, value: Any) -> None:
            with repo.batch() as b:
                b.put("t", "good", 1)
                b.delete("t", "other")
                b.put(tenant, key, value)

        with pytest.raises(InvalidKeyError):
            block("t", float("nan"), 2)
        with pytest.raises(InvalidTenantError):
            block("", "x", 2)
        with pytest.raises(SerializationError):
            block("t", "bad", object())
        _assert_empty(repo)

    def test_batch_explicit_commit_and_reuse(self, repo: Repo) -> None:
        b = repo.batch()
        b.put("t", "k", 1)
        b.commit()
        assert repo.get("t", "k") == 1
        with pytest.raises(StorageError):
            b.put("t", "j", 2)
        with pytest.raises(StorageError):
            b.commit()
        b2 = repo.batch()
        b2.put("t", "j", 2)
        b2.discard()
        with pytest.raises(StorageError):
            b2.commit()
        assert not repo.has("t", "j")

    def test_empty_batch(self, repo: Repo) -> None:
        with repo.batch():
            pass
        _assert_empty(repo)

    def test_put_many_bad_value_writes_nothing(self, repo: Repo) -> None:
        repo.put("t", "a", "old")
        with pytest.raises(SerializationError):
            repo.put_many("t", [("a", "new"), ("b", 2), ("c", object()), ("d", 4)])
        assert repo.get("t", "a") == "old"
        assert repo.list("t") == ["a"]

    def test_put_many_bad_key_writes_nothing(self, repo: Repo) -> None:
        with pytest.raises(InvalidKeyError):
            repo.put_many("t", [("a", 1), (object(), 2)])
        with pytest.raises(KeyTooLargeError):
            repo.put_many("t", [("a", 1), ("x" * 1000, 2)])
        _assert_empty(repo)

    def test_put_many_failing_iterable_writes_nothing(self, repo: Repo) -> None:
        def gen() -> Iterator[tuple[str, int]]:
            yield ("a", 1)
            yield ("b", 2)
            raise _Boom

        with pytest.raises(_Boom):
            repo.put_many("t", gen())
        _assert_empty(repo)

    def test_delete_many_bad_key_deletes_nothing(self, repo: Repo) -> None:
        repo.put_many("t", {"a": 1, "b": 2})
        with pytest.raises(InvalidKeyError):
            repo.delete_many("t", ["a", {1, 2}, "b"])
        assert _ordered(repo, repo.list("t")) == ["a", "b"]

    def test_large_batch(self, repo: Repo) -> None:
        with repo.batch() as b:
            for i in range(2000):
                b.put(f"t{i % 3}", i, {"i": i})
        assert repo.count("t0") + repo.count("t1") + repo.count("t2") == 2000
        assert repo.get("t2", 1997) == {"i": 1997}


# ---------------------------------------------------------------------------- tenants


class TenantTests(_Base):
    """Isolation of tenants, whatever their ids look like."""

    def test_hostile_tenants_are_isolated(self, repo: Repo) -> None:
        keys = ["", "b", ":b", "b:c", "\x00", ("a", "b"), 1, b"\xff"]
        for t in HOSTILE_TENANTS:
            for k in keys:
                repo.put(t, k, [t, repr(k)])
        for t in HOSTILE_TENANTS:
            assert repo.count(t) == len(keys), t
            assert sorted(map(repr, typed_list(repo.list(t)))) == sorted(
                map(repr, typed_list(keys))
            )
            for _, v in repo.items(t):
                assert v[0] == t
            for k in keys:
                assert repo.get(t, k) == [t, repr(k)]
        assert sorted(repo.tenants()) == sorted(HOSTILE_TENANTS)

    def test_tenants_in_order(self, repo: Repo) -> None:
        require(repo, "ordered_scans", "tenants() lists tenants in order")
        for t in HOSTILE_TENANTS:
            repo.put(t, "k", 0)
        assert list(repo.tenants()) == sorted(HOSTILE_TENANTS)

    def test_drop_tenant_leaves_others(self, repo: Repo) -> None:
        for t in HOSTILE_TENANTS:
            repo.put_many(t, dict.fromkeys(range(5), t))
        for i, t in enumerate(HOSTILE_TENANTS):
            assert repo.drop_tenant(t) == 5
            assert repo.count(t) == 0
            for other in HOSTILE_TENANTS[i + 1 :]:
                assert repo.count(other) == 5, (t, other)
                assert set(repo.values(other)) == {other}
        assert list(repo.tenants()) == []

    def test_drop_absent_tenant(self, repo: Repo) -> None:
        repo.put("a:b", "k", 1)
        assert repo.drop_tenant("a") == 0
        assert repo.drop_tenant("nobody") == 0
        assert repo.get("a:b", "k") == 1

    def test_tenant_prefix_key_confusion(self, repo: Repo) -> None:
        # The seed's "tenant:key" layout made these two the same record.
        repo.put("a", "b:c", "tenant a")
        repo.put("a:b", "c", "tenant a:b")
        assert repo.get("a", "b:c") == "tenant a"
        assert repo.get("a:b", "c") == "tenant a:b"
        assert repo.list("a") == ["b:c"]
        assert repo.list("a:b") == ["c"]
        assert repo.list("a", prefix="b") == ["b:c"]

    def test_emptied_tenant_disappears(self, repo: Repo) -> None:
        repo.put("acme", "k", 1)
        repo.put("acme-corp", "k", 1)
        repo.delete("acme", "k")
        assert list(repo.tenants()) == ["acme-corp"]

    def test_tenants_iterator_is_lazy_and_complete(self, repo: Repo) -> None:
        names = [f"tenant-{i:03d}" for i in range(60)]
        for n in names:
            repo.put(n, 0, 0)
            repo.put(n, 1, 1)
        assert sorted(repo.tenants()) == names


# ---------------------------------------------------------------------------- bad input


def _bad_tenants() -> list[Any]:
    return ["", None, 1, b"t", ["t"], ("t",), 1.5]


def _bad_keys() -> list[Any]:
    return [
        float("nan"),
        (1, float("nan")),
        {"a": float("nan")},
        object(),
        {1, 2},
        frozenset(),
        1j,
        [object()],
    ]


class BadInputTests(_Base):
    """Every bad argument raises a typed error naming the problem, and writes nothing."""

    @pytest.mark.parametrize("tenant", _bad_tenants(), ids=repr)
    def test_bad_tenant(self, repo: Repo, tenant: Any) -> None:
        calls: list[Callable[[], Any]] = [
            lambda: repo.put(tenant, "k", 1),
            lambda: repo.get(tenant, "k"),
            lambda: repo.has(tenant, "k"),
            lambda: repo.delete(tenant, "k"),
            lambda: repo.insert(tenant, "k", 1),
            lambda: repo.put_many(tenant, {"k": 1}),
            lambda: repo.get_many(tenant, ["k"]),
            lambda: repo.delete_many(tenant, ["k"]),
            lambda: list(repo.keys(tenant)),
            lambda: list(repo.values(tenant)),
            lambda: list(repo.items(tenant)),
            lambda: repo.list(tenant),
            lambda: repo.count(tenant),
            lambda: repo.drop_tenant(tenant),
            lambda: repo.tenant(tenant),
        ]
        for call in calls:
            with pytest.raises(InvalidTenantError, match="tenant"):
                call()
        with pytest.raises(InvalidTenantError), repo.batch() as b:
            b.put(tenant, "k", 1)
        _assert_empty(repo)

    @pytest.mark.parametrize("key", _bad_keys(), ids=repr)
    def test_bad_key(self, repo: Repo, key: Any) -> None:
        calls: list[Callable[[], Any]] = [
            lambda: repo.put("t", key, 1),
            lambda: repo.get("t", key),
            lambda: repo.has("t", key),
            lambda: repo.delete("t", key),
            lambda: repo.insert("t", key, 1),
            lambda: repo.put_many("t", [("ok", 1), (key, 1)]),
            lambda: repo.get_many("t", ["ok", key]),
            lambda: repo.delete_many("t", ["ok", key]),
            lambda: list(repo.keys("t", start=key)),
            lambda: list(repo.keys("t", stop=key)),
        ]
        for call in calls:
            with pytest.raises(InvalidKeyError) as info:
                call()
            assert isinstance(info.value, ValueError)
            assert str(info.value)
        _assert_empty(repo)

    def test_key_size_limit(self, repo: Repo) -> None:
        # The limit covers tenant + key; the largest allowed key must work on every backend.
        overhead = len(encode_stored_key("t", ""))
        biggest = "x" * (MAX_KEY_SIZE - overhead)
        repo.put("t", biggest, "fits")
        assert repo.get("t", biggest) == "fits"
        assert repo.list("t") == [biggest]
        too_big = biggest + "x"
        with pytest.raises(KeyTooLargeError) as info:
            repo.put("t", too_big, 1)
        assert info.value.size == MAX_KEY_SIZE + 1
        assert info.value.limit == MAX_KEY_SIZE
        assert str(MAX_KEY_SIZE + 1) in str(info.value)
        with pytest.raises(KeyTooLargeError):
            repo.insert("t", too_big, 1)
        with pytest.raises(KeyTooLargeError):
            repo.put("t" * 600, "k", 1)
        assert repo.list("t") == [biggest]

    @pytest.mark.parametrize("value", [object(), {1, 2}, b"raw bytes", 2**70, {("tuple",): 1}])
    def test_unserializable_value(self, repo: Repo, value: Any) -> None:
        if repo.codec.name != "json":
            pytest.skip(f"these values are chosen for the json codec, not {repo.codec.name!r}")
        repo.put("t", "k", "old")
        calls: list[Callable[[], Any]] = [
            lambda: repo.put("t", "k", value),
            lambda: repo.put("t", "new", value),
            lambda: repo.insert("t", "new", value),
        ]
        for call in calls:
            with pytest.raises(SerializationError) as info:
                call()
            assert "nothing was written" in str(info.value)
        assert repo.get("t", "k") == "old"
        assert repo.list("t") == ["k"]

    @pytest.mark.parametrize("prefix", [1, 2.5, True, None.__class__, {"a": 1}, object()])
    def test_bad_prefix(self, repo: Repo, prefix: Any) -> None:
        with pytest.raises(InvalidKeyError, match="prefix"):
            list(repo.keys("t", prefix=prefix))
        with pytest.raises(InvalidKeyError):
            repo.count("t", prefix=prefix)

    @pytest.mark.parametrize("limit", [-1, 1.5, "3", True])
    def test_bad_limit(self, repo: Repo, limit: Any) -> None:
        with pytest.raises(StorageError, match="limit"):
            list(repo.keys("t", limit=limit))

    def test_unknown_option_in_url(self, store_url: str) -> None:
        with pytest.raises(InvalidURLError, match="no_such_option"):
            aurora_storage.open(with_option(store_url, "no_such_option", "1"))

    def test_unknown_option_keyword(self, store_url: str) -> None:
        with pytest.raises(InvalidURLError, match="no_such_option"):
            aurora_storage.open(store_url, no_such_option=1)

    def test_repeated_option_in_url(self, store_url: str) -> None:
        url = with_option(with_option(store_url, "codec", "json"), "codec", "json")
        with pytest.raises(InvalidURLError, match="codec"):
            aurora_storage.open(url)

    def test_unknown_codec(self, store_url: str) -> None:
        with pytest.raises(ConfigurationError, match="no-such-codec"):
            aurora_storage.open(store_url, codec="no-such-codec")


# ---------------------------------------------------------------------------- lifecycle


def _every_operation(repo: Repo) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("put", lambda: repo.put("t", "k", 1)),
        ("get", lambda: repo.get("t", "k")),
        ("has", lambda: repo.has("t", "k")),
        ("delete", lambda: repo.delete("t", "k")),
        ("insert", lambda: repo.insert("t", "new", 1)),
        ("put_many", lambda: repo.put_many("t", {"k": 1})),
        ("get_many", lambda: repo.get_many("t", ["k"])),
        ("delete_many", lambda: repo.delete_many("t", ["k"])),
        ("keys", lambda: list(repo.keys("t"))),
        ("values", lambda: list(repo.values("t"))),
        ("items", lambda: list(repo.items("t"))),
        ("list", lambda: repo.list("t")),
        ("count", lambda: repo.count("t")),
        ("tenants", lambda: list(repo.tenants())),
        ("drop_tenant", lambda: repo.drop_tenant("t")),
        ("batch", lambda: repo.batch()),
        ("stats", lambda: repo.stats()),
        ("flush", lambda: repo.flush()),
        ("enter", lambda: repo.__enter__()),
        ("tenant", lambda: repo.tenant("t")),
    ]


class LifecycleTests(_Base):
    """close(), context managers, and use after close."""

    def test_close_is_idempotent(self, repo: Repo) -> None:
        assert not repo.closed
        repo.close()
        repo.close()
        assert repo.closed

    def test_every_operation_refused_after_close(self, repo: Repo) -> None:
        repo.put("t", "k", 1)
        repo.close()
        for name, call in _every_operation(repo):
            try:
                call()
            except RepositoryClosedError:
                continue
            pytest.fail(f"{name}() worked on a closed repository")

    def test_iterators_made_before_close(self, repo: Repo) -> None:
        repo.put_many("t", {i: i for i in range(20)})
        repo.put("u", 0, 0)
        fresh: list[Iterator[Any]] = [
            repo.keys("t"),
            repo.values("t"),
            repo.items("t"),
            repo.tenants(),
        ]
        started: list[Iterator[Any]] = [
            repo.keys("t"),
            repo.values("t", reverse=True),
            repo.items("t"),
        ]
        for it in started:
            next(it)
        tenants_started = repo.tenants()
        next(tenants_started)
        repo.close()
        for it in [*fresh, *started, tenants_started]:
            with pytest.raises(RepositoryClosedError):
                list(it)

    def test_batch_and_view_made_before_close(self, repo: Repo) -> None:
        b = repo.batch()
        b.put("t", "k", 1)
        view = repo.tenant("t")
        repo.close()
        with pytest.raises(RepositoryClosedError):
            b.commit()
        for call in (view.list, lambda: view.get("k"), lambda: view.put("k", 1), view.drop):
            with pytest.raises(RepositoryClosedError):
                call()

    def test_with_block_closes(self, store_url: str) -> None:
        with aurora_storage.open(store_url) as r:
            r.put("t", "k", 1)
            assert r.get("t", "k") == 1
        assert r.closed
        with pytest.raises(RepositoryClosedError):
            r.get("t", "k")

    def test_closed_error_names_the_problem(self, repo: Repo) -> None:
        repo.close()
        with pytest.raises(RepositoryClosedError, match="closed") as info:
            repo.get("t", "k")
        assert isinstance(info.value, RuntimeError)

    def test_repr_does_not_fail(self, repo: Repo) -> None:
        assert "open" in repr(repo)
        repo.close()
        assert "closed" in repr(repo)


# ---------------------------------------------------------------------------- persistence


class PersistenceTests(_Base):
    """Data survives close and reopen (backends declaring ``persistent``)."""

    def test_data_survives_reopen(self, repo: Repo, store_url: str) -> None:
        require(repo, "persistent", "reopen tests need a persistent store")
        for t in HOSTILE_TENANTS[:6]:
            repo.put_many(t, [(k, i) for i, k in enumerate(SAMPLE_KEYS)])
        repo.put("gone", "k", 1)
        repo.delete("gone", "k")
        repo.put("dropped", "k", 1)
        repo.drop_tenant("dropped")
        with repo.batch() as b:
            b.put("batch", "k", "v")
            b.delete(HOSTILE_TENANTS[0], None)
        expected = {t: list(repo.items(t)) for t in repo.tenants()}
        repo.close()
        with aurora_storage.open(store_url) as again:
            assert sorted(again.tenants()) == sorted(expected)
            for t, items in expected.items():
                got = list(again.items(t))
                assert typed_list(got) == typed_list(items), t
            assert not again.has("gone", "k")
            assert again.get("batch", "k") == "v"
            again.put("after", "k", 2)
        with aurora_storage.open(store_url) as third:
            assert third.get("after", "k") == 2

    def test_flush_then_reopen(self, repo: Repo, store_url: str) -> None:
        require(repo, "persistent", "reopen tests need a persistent store")
        repo.put("t", "k", {"v": 1})
        repo.flush()
        repo.close()
        with aurora_storage.open(store_url) as again:
            assert again.get("t", "k") == {"v": 1}

    def test_codec_is_recorded(self, repo: Repo, store_url: str) -> None:
        require(repo, "persistent", "the recorded codec matters only for a persistent store")
        repo.close()
        url = store_url  # the store now exists with its default codec
        with aurora_storage.open(url) as again:
            codec = again.codec.name
            again.put("t", "k", [1, 2])
        other = "msgpack" if codec != "msgpack" else "json"
        with pytest.raises(ConfigurationError, match=codec):
            aurora_storage.open(url, codec=other)
        with aurora_storage.open(url, codec=codec) as same:
            assert same.get("t", "k") == [1, 2]

    def test_new_store_with_other_codec(self, store_url: str) -> None:
        with aurora_storage.open(store_url, codec="msgpack") as r:
            require(r, "persistent", "the recorded codec matters only for a persistent store")
            r.put("t", "k", {"a": [1, 2]})
        with aurora_storage.open(store_url) as again:
            assert again.codec.name == "msgpack"
            assert again.get("t", "k") == {"a": [1, 2]}


# ---------------------------------------------------------------------------- threads


def _run_threads(n: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


class ThreadTests(_Base):
    """One repository used from several threads (backends declaring ``thread_safe``)."""

    def test_concurrent_writers(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")

        def work(i: int) -> None:
            for j in range(150):
                repo.put(f"own-{i}", j, j)
                repo.put("shared", (i, j), i)
                if j % 3 == 0:
                    assert repo.delete("shared", (i, j))
                if j % 50 == 0:
                    repo.put_many(f"own-{i}", {("many", j, x): x for x in range(10)})
                assert repo.get(f"own-{i}", j) == j

        _run_threads(4, work)
        for i in range(4):
            assert repo.count(f"own-{i}") == 150 + 30
        assert repo.count("shared") == 4 * 100

    def test_concurrent_insert_single_winner(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")
        wins: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(4)

        def work(i: int) -> None:
            barrier.wait()
            for j in range(40):
                try:
                    repo.insert("t", j, i)
                except KeyExistsError:
                    continue
                with lock:
                    wins.append(j)

        _run_threads(4, work)
        assert sorted(wins) == list(range(40))

    def test_readers_see_whole_batches(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")
        require(repo, "atomic_batches", "readers can only see whole batches if they are atomic")
        size = 10
        stop = threading.Event()

        def work(i: int) -> None:
            if i == 0:
                try:
                    for n in range(60):
                        with repo.batch() as b:
                            for x in range(size):
                                b.put("t", (n, x), x)
                finally:
                    stop.set()
            else:
                while not stop.is_set():
                    assert repo.count("t") % size == 0
                    assert len(repo.list("t")) % size == 0

        _run_threads(3, work)
        assert repo.count("t") == 600

    def test_scan_while_writing(self, repo: Repo) -> None:
        require(repo, "thread_safe", "thread tests need a thread-safe backend")
        repo.put_many("t", {i: i for i in range(200)})
        stop = threading.Event()

        def work(i: int) -> None:
            if i == 0:
                try:
                    for n in range(300):
                        repo.put("t", 1000 + n, n)
                        repo.delete("t", 1000 + n - 1)
                finally:
                    stop.set()
            else:
                while not stop.is_set():
                    keys = [k for k in repo.keys("t") if k < 200]
                    assert keys == list(range(200)) or not repo.capabilities.ordered_scans

        _run_threads(2, work)


# ---------------------------------------------------------------------------- async


class AsyncTests(_Base):
    """The AsyncRepository twin over the same store."""

    def test_async_round_trip(self, repo: Repo) -> None:
        arepo: AsyncRepository[Any, Any] = AsyncRepository(repo)

        async def main() -> None:
            await arepo.put("t", "k", {"v": 1})
            assert await arepo.get("t", "k") == {"v": 1}
            assert await arepo.get("t", "x", 5) == 5
            assert await arepo.has("t", "k")
            await arepo.insert("t", "i", 1)
            with pytest.raises(KeyExistsError):
                await arepo.insert("t", "i", 2)
            assert await arepo.put_many("t", {n: n for n in range(300)}) == 300
            assert await arepo.get_many("t", [1, 2, "nope"]) == [1, 2, None]
            assert await arepo.count("t") == 302
            keys = [k async for k in arepo.keys("t")]
            assert len(keys) == 302
            if arepo.capabilities.ordered_scans:
                assert keys[:300] == list(range(300))
                assert [v async for v in arepo.values("t", limit=3)] == [0, 1, 2]
                items = [kv async for kv in arepo.items("t", start=10, stop=13)]
                assert items == [(10, 10), (11, 11), (12, 12)]
                assert (await arepo.list("t"))[-2:] == ["i", "k"]
            assert await arepo.delete_many("t", [0, 1, "zzz"]) == 2
            assert await arepo.delete("t", "k") is True
            assert [t async for t in arepo.tenants()] == ["t"]
            assert await arepo.drop_tenant("t") == 299
            assert isinstance(await arepo.stats(), dict)

        asyncio.run(main())

    def test_async_batch_and_view(self, repo: Repo) -> None:
        arepo: AsyncRepository[Any, Any] = AsyncRepository(repo)

        async def main() -> None:
            async with arepo.batch() as b:
                b.put("a", 1, 1)
                b.put("b", 2, 2)
            assert await arepo.get("b", 2) == 2

            async def failing_block() -> None:
                async with arepo.batch() as b:
                    b.put("a", 3, 3)
                    raise _Boom

            with pytest.raises(_Boom):
                await failing_block()
            assert not await arepo.has("a", 3)
            view = arepo.tenant("a")
            await view.put("x", 1)
            assert await view.get("x") == 1
            assert await view.count() == 2
            assert await view.drop() == 2

        asyncio.run(main())

    def test_async_bad_input_and_close(self, repo: Repo) -> None:
        arepo: AsyncRepository[Any, Any] = AsyncRepository(repo)

        async def main() -> None:
            with pytest.raises(InvalidTenantError):
                await arepo.put("", "k", 1)
            with pytest.raises(InvalidKeyError):
                await arepo.put("t", float("nan"), 1)
            with pytest.raises(InvalidKeyError):
                await arepo.put_many("t", [("a", 1), (object(), 2)])
            assert await arepo.count("t") == 0
            await arepo.put_many("t", {n: n for n in range(200)})
            it = arepo.keys("t")
            await it.__anext__()
            await arepo.close()
            assert arepo.closed
            with pytest.raises(RepositoryClosedError):
                await arepo.get("t", 1)
            with pytest.raises(RepositoryClosedError):
                await arepo.put("t", 1, 1)
            with pytest.raises(RepositoryClosedError):
                await arepo.count("t")
            with pytest.raises(RepositoryClosedError):
                [k async for k in it]

        asyncio.run(main())

    def test_open_async(self, store_url: str) -> None:
        async def main() -> None:
            async with aurora_storage.open_async(store_url) as arepo:
                await arepo.put("t", "k", 1)
                assert await arepo.get("t", "k") == 1
            assert arepo.closed

        asyncio.run(main())
