"""Tenant isolation for any two distinct tenant ids, on memory://.

The tenant ids that break naive layouts are generated on purpose: ids that are prefixes
of each other, and ids holding separators (``:``, ``/``), NUL and other control
characters, or non-ASCII text (lone surrogates included).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import InvalidTenantError, encode_key
from aurora_storage._keys import encode_tenant

REPO = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_chars = st.characters(codec=None, exclude_categories=())
_tricky = ["\x00", "\x00\xff", ":", "/", "\x01", "\x7f", "\xff", "é", "\U0001f600", "\ud800", " "]
base_tenants = st.text(_chars, min_size=1, max_size=6) | st.sampled_from(["a", "acme", "t"])
suffixes = st.sampled_from(_tricky) | st.text(_chars, min_size=1, max_size=3)


@st.composite
def tenant_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two distinct tenants; often one is a prefix of the other plus a tricky suffix."""
    a = draw(base_tenants)
    b = a + draw(suffixes) if draw(st.booleans()) else draw(base_tenants.filter(lambda t: t != a))
    return (b, a) if draw(st.booleans()) else (a, b)


key_strategy = (
    st.text(_chars, max_size=5)
    | st.integers(-1000, 1000)
    | st.tuples(st.sampled_from(["order", "user", ""]), st.integers(0, 50))
)
records = st.dictionaries(key_strategy, st.integers(-(10**6), 10**6), min_size=0, max_size=6)


def _enc_set(keys: Any) -> set[bytes]:
    return {encode_key(k) for k in keys}


def _fill(repo: aurora_storage.Repository[Any, Any], tenant: str, data: dict[Any, int]) -> None:
    for k, v in data.items():
        repo.put(tenant, k, v)


@REPO
@given(tenant_pairs(), records, records)
def test_two_tenants_never_see_each_other(
    pair: tuple[str, str], data_a: dict[Any, int], data_b: dict[Any, int]
) -> None:
    a, b = pair
    with aurora_storage.open("memory://") as repo:
        _fill(repo, a, data_a)
        _fill(repo, b, data_b)
        for tenant, data in ((a, data_a), (b, data_b)):
            expected = {encode_key(k): v for k, v in data.items()}
            assert _enc_set(repo.list(tenant)) == set(expected)
            assert _enc_set(repo.keys(tenant)) == set(expected)
            assert repo.count(tenant) == len(expected)
            assert {encode_key(k): v for k, v in repo.items(tenant)} == expected
            assert sorted(repo.values(tenant)) == sorted(expected.values())
            view = repo.tenant(tenant)
            assert view.count() == len(expected)
            assert _enc_set(view.keys()) == set(expected)
            # Keys come back in encoded order within the tenant.
            listed = [encode_key(k) for k in repo.keys(tenant)]
            assert listed == sorted(listed)
            for k, v in data.items():
                assert repo.get(tenant, k) == v
        holding = [t for t, d in ((a, data_a), (b, data_b)) if d]
        assert list(repo.tenants()) == sorted(holding, key=encode_tenant)


@REPO
@given(tenant_pairs(), records, records)
def test_drop_tenant_removes_exactly_one_tenant(
    pair: tuple[str, str], data_a: dict[Any, int], data_b: dict[Any, int]
) -> None:
    a, b = pair
    with aurora_storage.open("memory://") as repo:
        _fill(repo, a, data_a)
        _fill(repo, b, data_b)
        assert repo.drop_tenant(a) == len(data_a)
        assert repo.count(a) == 0
        assert list(repo.keys(a)) == []
        assert repo.count(b) == len(data_b)
        assert {encode_key(k): v for k, v in repo.items(b)} == {
            encode_key(k): v for k, v in data_b.items()
        }
        assert list(repo.tenants()) == ([b] if data_b else [])
        assert repo.tenant(b).drop() == len(data_b)
        assert list(repo.tenants()) == []


@REPO
@given(
    tenant_pairs(),
    st.lists(st.text(_chars, max_size=4), max_size=6),
    st.lists(st.text(_chars, max_size=4), max_size=6),
    st.text(_chars, max_size=2),
)
def test_prefix_scans_never_cross_tenants(
    pair: tuple[str, str], keys_a: list[str], keys_b: list[str], prefix: str
) -> None:
    a, b = pair
    with aurora_storage.open("memory://") as repo:
        for k in keys_a:
            repo.put(a, k, "a")
        for k in keys_b:
            repo.put(b, k, "b")
        for tenant, keys, mark in ((a, keys_a, "a"), (b, keys_b, "b")):
            want = sorted({k for k in keys if k.startswith(prefix)}, key=encode_key)
            assert repo.list(tenant, prefix=prefix) == want
            assert repo.count(tenant, prefix=prefix) == len(want)
            assert all(v == mark for v in repo.values(tenant, prefix=prefix))
            # A tuple prefix matches no str key; an empty one matches every tuple (none).
            assert repo.count(tenant, prefix=()) == 0
            # The whole tenant in reverse, too.
            assert list(repo.keys(tenant, reverse=True)) == sorted(
                set(keys), key=encode_key, reverse=True
            )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("a", "a:b"),
        ("a", "a\x00"),
        ("a", "a\x00b"),
        ("a\x00", "a\x00\x00"),
        ("a", "ab"),
        ("x/y", "x"),
        ("é", "e"),
        ("\ud800", "\ud800\udc00"),
    ],
)
def test_known_tricky_pairs(a: str, b: str) -> None:
    with aurora_storage.open("memory://") as repo:
        repo.put(a, "k", 1)
        repo.put(b, "k", 2)
        repo.put(b, ("k", 1), 3)
        assert repo.get(a, "k") == 1
        assert repo.list(a) == ["k"]
        assert repo.count(b) == 2
        assert set(repo.tenants()) == {a, b}
        assert repo.drop_tenant(a) == 1
        assert repo.get(b, "k") == 2
        assert list(repo.tenants()) == [b]


@pytest.mark.parametrize("bad", ["", None, 1, b"t", ("t",)])
def test_invalid_tenants_are_rejected(bad: Any) -> None:
    with aurora_storage.open("memory://") as repo:
        for call in (
            lambda: repo.put(bad, "k", 1),
            lambda: repo.get(bad, "k"),
            lambda: repo.list(bad),
            lambda: repo.count(bad),
            lambda: repo.drop_tenant(bad),
        ):
            with pytest.raises(InvalidTenantError):
                call()
