"""Conformance tests - point operations: put, get, has, delete, insert, and the values they keep."""

from __future__ import annotations

from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import (
    KeyExistsError,
)

from ._base import (
    SAMPLE_VALUES,
    Base,
    Repo,
)
from ._common import SAMPLE_KEYS, has_list, typed_list

__all__ = ["PointOpsTests"]


class PointOpsTests(Base):
    """put / get / delete / has / insert / get_many / put_many / delete_many / count."""

    def test_put_get_roundtrip_values(self, repo: Repo) -> None:
        for i, value in enumerate(SAMPLE_VALUES):
            repo.put("t", i, value)
        for i, value in enumerate(SAMPLE_VALUES):
            assert repo.get("t", i) == value

    def test_raw_values_read_back_as_bytes(self, store_url: str) -> None:
        """With the ``raw`` codec a value reaches the user as the backend returns it, so
        every read must hand back exactly ``bytes`` (the Backend contract): a
        ``bytearray`` or ``memoryview`` compares equal to ``bytes``, but is mutable or
        pins the backend's buffer, and is no dict key."""
        values = [b"", b"\x00\xff", bytes(range(256)) * 8]
        with aurora_storage.open(store_url, codec="raw") as r:
            for i, v in enumerate(values):
                r.put("t", i, v)
            reads: dict[str, list[Any]] = {
                "get": [r.get("t", i) for i in range(len(values))],
                "get_many": list(r.get_many("t", list(range(len(values))))),
                "items": [v for _, v in r.items("t")],
                "values": list(r.values("t")),
            }
            for how, got in reads.items():
                assert sorted(got) == sorted(values), how
                assert [type(v) for v in got] == [bytes] * len(values), (
                    f"{how} returned {[type(v).__name__ for v in got]}, not bytes"
                )

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
        assert view.list() == ["j", "k", "x", "y"]
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
