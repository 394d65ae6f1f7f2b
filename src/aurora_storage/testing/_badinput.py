"""Conformance tests - bad input: every refusal is a typed error and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import aurora_storage
from aurora_storage import (
    MAX_KEY_SIZE,
    encode_stored_key,
)
from aurora_storage.errors import (
    ConfigurationError,
    InvalidKeyError,
    InvalidTenantError,
    InvalidURLError,
    KeyTooLargeError,
    SerializationError,
    StorageError,
)

from ._base import (
    Base,
    Repo,
    assert_empty,
)
from ._common import with_option

__all__ = ["BadInputTests"]


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


class BadInputTests(Base):
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
        assert_empty(repo)

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
        assert_empty(repo)

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
