"""Every public argument is checked: a wrong type or value raises a typed error from
aurora_storage.errors (with the builtin a user would catch) saying what was expected, and
nothing is written. A str where an iterable of keys is expected is refused, never split
into characters."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage import (
    AsyncRepository,
    AsyncTenantView,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTenantError,
    Repository,
    StorageError,
    TenantView,
)


@pytest.fixture
def repo() -> Iterator[Repository[Any, Any]]:
    with aurora_storage.open("memory://") as r:
        r.put("t", "a", 1)
        r.put("t", "b", 2)
        yield r


def _unchanged(repo: Repository[Any, Any]) -> None:
    assert list(repo.items("t")) == [("a", 1), ("b", 2)]
    assert list(repo.tenants()) == ["t"]


def test_invalid_argument_error_is_a_type_and_value_error() -> None:
    assert issubclass(InvalidArgumentError, TypeError)
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(InvalidArgumentError, StorageError)


@pytest.mark.parametrize("keys", ["ab", b"ab", bytearray(b"ab"), memoryview(b"ab")])
def test_a_str_is_not_an_iterable_of_keys(repo: Repository[Any, Any], keys: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="iterable of keys"):
        repo.delete_many("t", keys)
    with pytest.raises(InvalidArgumentError, match="iterable of keys"):
        repo.get_many("t", keys)
    with pytest.raises(InvalidArgumentError, match="iterable of keys"):
        repo.tenant("t").delete_many(keys)
    arepo = repo.as_async()
    with pytest.raises(InvalidArgumentError, match="iterable of keys"):
        asyncio.run(arepo.delete_many("t", keys))
    with pytest.raises(InvalidArgumentError, match="iterable of keys"):
        asyncio.run(arepo.tenant("t").get_many(keys))
    _unchanged(repo)


@pytest.mark.parametrize("keys", [None, 1, 2.5, object()])
def test_keys_must_be_iterable(repo: Repository[Any, Any], keys: Any) -> None:
    for call in (repo.delete_many, repo.get_many):
        with pytest.raises(InvalidArgumentError, match="iterable of keys"):
            call("t", keys)
    _unchanged(repo)


@pytest.mark.parametrize(
    "items",
    [None, 1, "ab", b"ab", [1, 2], ["ab", "cd"], [("k", 1, 2)], [("k",)], [("a", 1), "xy"]],
)
def test_put_many_takes_a_mapping_or_pairs(repo: Repository[Any, Any], items: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\(key, value\) pairs"):
        repo.put_many("t", items)
    with pytest.raises(InvalidArgumentError, match=r"\(key, value\) pairs"):
        repo.tenant("t").put_many(items)
    with pytest.raises(InvalidArgumentError, match=r"\(key, value\) pairs"):
        asyncio.run(repo.as_async().put_many("t", items))
    _unchanged(repo)


def test_put_many_accepts_pairs_as_lists_and_mappings(repo: Repository[Any, Any]) -> None:
    pairs = [["x", 1], ("y", 2)]  # a list as a pair: accepted at run time, not in the type
    assert repo.put_many("u", pairs) == 2  # type: ignore[arg-type]  # the list pair, see above
    assert repo.put_many("u", {"z": 3}) == 1
    assert list(repo.items("u")) == [("x", 1), ("y", 2), ("z", 3)]


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("limit", -1),
        ("limit", 1.5),
        ("limit", "3"),
        ("limit", True),
        ("reverse", 1),
        ("reverse", "yes"),
        ("reverse", None),
    ],
)
def test_scan_options_are_checked(repo: Repository[Any, Any], option: str, bad: Any) -> None:
    view = repo.tenant("t")
    arepo = repo.as_async()
    for scan in (repo.keys, repo.values, repo.items):
        with pytest.raises(InvalidArgumentError, match=option):
            scan("t", **{option: bad})
    for vscan in (view.keys, view.values, view.items):
        with pytest.raises(InvalidArgumentError, match=option):
            vscan(**{option: bad})
    for ascan in (arepo.keys, arepo.values, arepo.items):
        with pytest.raises(InvalidArgumentError, match=option):
            ascan("t", **{option: bad})


@pytest.mark.parametrize("bad", [{1: 2}, {1, 2}, object(), 3])
def test_scan_prefix_must_be_a_str_bytes_or_tuple(repo: Repository[Any, Any], bad: Any) -> None:
    with pytest.raises(InvalidKeyError, match="prefix"):
        repo.keys("t", prefix=bad)
    with pytest.raises(InvalidKeyError, match="prefix"):
        repo.count("t", prefix=bad)


@pytest.mark.parametrize("bad", [{1, 2}, object(), float("nan")])
def test_scan_bounds_are_keys(repo: Repository[Any, Any], bad: Any) -> None:
    with pytest.raises(InvalidKeyError):
        repo.keys("t", start=bad)
    with pytest.raises(InvalidKeyError):
        repo.tenant("t").items(stop=bad)


@pytest.mark.parametrize("tenant", [None, "", 1, b"t", ("t",), ["t"]])
def test_bad_tenants_everywhere(repo: Repository[Any, Any], tenant: Any) -> None:
    calls: list[Callable[[], object]] = [
        lambda: repo.put(tenant, "k", 1),
        lambda: repo.get(tenant, "k"),
        lambda: repo.put_many(tenant, {}),
        lambda: repo.put_many(tenant, [("k", 1)]),
        lambda: repo.delete_many(tenant, []),
        lambda: repo.get_many(tenant, ["k"]),
        lambda: repo.keys(tenant),
        lambda: repo.count(tenant),
        lambda: repo.drop_tenant(tenant),
        lambda: repo.tenant(tenant),
        lambda: repo.batch().put(tenant, "k", 1),
    ]
    for call in calls:
        with pytest.raises(InvalidTenantError, match="tenant"):
            call()
    _unchanged(repo)


def test_unknown_scan_keywords_are_refused_by_the_signature(repo: Repository[Any, Any]) -> None:
    # Views and async twins have explicit keyword-only signatures (no **scan), so a type
    # checker sees a misspelt option and the call fails before doing anything.
    view = repo.tenant("t")
    with pytest.raises(TypeError, match="foo"):
        view.keys(foo=1)  # type: ignore[call-arg]  # wrong on purpose
    with pytest.raises(TypeError, match="foo"):
        repo.as_async().items("t", foo=1)  # type: ignore[call-arg]  # wrong on purpose
    for cls in (TenantView, AsyncRepository, AsyncTenantView):
        for name in ("keys", "values", "items"):
            params = inspect.signature(getattr(cls, name)).parameters.values()
            assert not any(p.kind is p.VAR_KEYWORD for p in params), (cls, name)
            assert {p.name for p in params if p.kind is p.KEYWORD_ONLY} == {
                "prefix",
                "start",
                "stop",
                "reverse",
                "limit",
            }


class Tenant(str):
    """A str subclass that misreports itself: it must be stored as its value."""

    def __str__(self) -> str:
        return "other"

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"other"


class Key(str):
    def __str__(self) -> str:
        return "other"


def test_str_subclass_tenants_and_keys_are_their_string_value(
    repo: Repository[Any, Any],
) -> None:
    repo.put(Tenant("acme"), Key("k1"), 1)
    repo.put("acme", ("x", Key("k2")), 2)
    assert repo.get("acme", "k1") == 1
    assert repo.get(Tenant("acme"), "k1") == 1
    assert list(repo.keys("acme")) == ["k1", ("x", "k2")]
    assert list(repo.tenants()) == ["acme", "t"]
    for t in repo.tenants():
        assert type(t) is str
    view = repo.tenant(Tenant("acme"))
    assert type(view.tenant) is str
    assert view.tenant == "acme"
    assert asyncio.run(repo.as_async().tenant(Tenant("acme")).get("k1")) == 1
    assert list(repo.keys("acme", prefix=Key("k"))) == ["k1"]


def test_int_subclasses_and_bools_are_canonical(repo: Repository[Any, Any]) -> None:
    import enum

    class Num(int):
        def __int__(self) -> int:
            return 99

    class Color(enum.IntEnum):
        RED = 1

    repo.put("n", Num(1), "num")
    assert repo.get("n", 1) == "num"
    assert repo.get("n", Color.RED) == "num"
    assert repo.get("n", 1.0) == "num"
    # bool is its own key type, not the number 1.
    assert repo.get("n", True) is None
    repo.put("n", True, "bool")
    assert list(repo.items("n")) == [(True, "bool"), (1, "num")]


def test_batch_arguments_are_checked_and_discard_the_batch(repo: Repository[Any, Any]) -> None:
    def bad_key() -> None:
        with repo.batch() as b:
            b.put("t", "c", 3)
            b.put("t", object(), 1)

    def bad_tenant() -> None:
        with repo.batch() as b:
            b.delete("t", "a")
            b.delete(None, "a")  # type: ignore[arg-type]  # wrong on purpose

    with pytest.raises(InvalidKeyError):
        bad_key()
    with pytest.raises(InvalidTenantError):
        bad_tenant()
    _unchanged(repo)
