"""The sync and async surfaces match: same public methods, same parameters (names, kinds,
defaults, annotations), the async one a coroutine where the sync one does I/O, and
the same return type up to its async twin (``Iterator[X]`` <-> ``AsyncIterator[X]``,
``Batch`` <-> ``AsyncBatch`` ...)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import aurora_storage
from aurora_storage.tiered import AsyncTieredRepository, TieredRepository

PAIRS: list[tuple[type, type]] = [
    (aurora_storage.Repository, aurora_storage.AsyncRepository),
    (aurora_storage.TenantView, aurora_storage.AsyncTenantView),
    (aurora_storage.Batch, aurora_storage.AsyncBatch),
    (TieredRepository, AsyncTieredRepository),
]

#: Names that link the twins, present on one side only by design.
TWIN_LINKS = {"as_async", "sync"}
#: Tiered's own attributes that describe the pair's parts (sync repositories, config):
#: the async twin reaches them through ``.sync``.
TIERED_PARTS = {"cold", "config", "history", "hot", "mode", "projection", "recovered_on_open"}
#: Batch methods that only collect an operation (no I/O): plain methods on both sides.
COLLECT_ONLY = {"put", "delete", "insert", "compare_and_set", "append", "discard"}
#: Return types that map to their async twins.
TWINS = {
    "Iterator": "AsyncIterator",
    "Batch": "AsyncBatch",
    "TenantView": "AsyncTenantView",
    "Watch": "AsyncWatch",
}


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def _asyncified(annotation: str) -> str:
    head, sep, rest = annotation.partition("[")
    return TWINS.get(head, head) + sep + rest


def _pairs_of_methods() -> list[tuple[type, type, str]]:
    out = []
    for sync, asy in PAIRS:
        for name in sorted(_public(sync) & _public(asy)):
            out.append((sync, asy, name))
    return out


@pytest.mark.parametrize(("sync", "asy"), PAIRS, ids=lambda c: c.__name__)
def test_same_public_names(sync: type, asy: type) -> None:
    allowed = TWIN_LINKS | (TIERED_PARTS if sync is TieredRepository else set())
    # The tiered twin adds tiered operations to the core async API: compare what
    # tiered adds to what its async twin adds.
    if sync is TieredRepository:
        only_sync = _public(sync) - _public(aurora_storage.Repository) - _public(asy)
        only_async = _public(asy) - _public(aurora_storage.AsyncRepository) - _public(sync)
    else:
        only_sync, only_async = _public(sync) - _public(asy), _public(asy) - _public(sync)
    assert only_sync - allowed == set(), "sync methods without an async twin"
    assert only_async - allowed == set(), "async methods without a sync twin"


@pytest.mark.parametrize(
    ("sync", "asy", "name"),
    _pairs_of_methods(),
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_same_signature(sync: type, asy: type, name: str) -> None:
    s_static, a_static = inspect.getattr_static(sync, name), inspect.getattr_static(asy, name)
    if isinstance(s_static, property) or isinstance(a_static, property):
        assert isinstance(s_static, property), name
        assert isinstance(a_static, property), name
        return
    s_fn: Any = getattr(sync, name)
    a_fn: Any = getattr(asy, name)
    s_sig, a_sig = inspect.signature(s_fn), inspect.signature(a_fn)
    s_params = [(p.name, p.kind, p.default, p.annotation) for p in s_sig.parameters.values()]
    a_params = [(p.name, p.kind, p.default, p.annotation) for p in a_sig.parameters.values()]
    assert a_params == s_params
    s_ret, a_ret = str(s_sig.return_annotation), str(a_sig.return_annotation)
    s_ret = s_ret.removeprefix("builtins.")  # a class with a .list method spells it so
    assert a_ret == _asyncified(s_ret)
    awaited = inspect.iscoroutinefunction(a_fn)
    if sync is aurora_storage.Batch and name in COLLECT_ONLY:
        assert not awaited, f"{name} only collects: a plain method, as in Batch"
    elif a_ret != s_ret:
        # Iterators and twin objects are returned at once, never awaited.
        assert not awaited, name
    else:
        assert awaited, f"{asy.__name__}.{name} must be a coroutine"
        assert not inspect.iscoroutinefunction(s_fn)


def test_context_managers_match() -> None:
    for sync, asy in PAIRS:
        assert hasattr(sync, "__enter__") == hasattr(asy, "__aenter__"), sync.__name__
        assert hasattr(sync, "__exit__") == hasattr(asy, "__aexit__"), sync.__name__


def test_the_check_catches_a_missing_and_a_mismatched_twin() -> None:
    # A twin pair with a missing method and a parameter that differs: both noticed.
    class Sync:
        def get(self, tenant: str, key: Any, default: Any = None) -> Any: ...

        def put(self, tenant: str, key: Any, value: Any) -> None: ...

    class Async:
        async def get(self, tenant: str, key: Any) -> Any: ...

    assert _public(Sync) - _public(Async) == {"put"}
    s_sig, a_sig = inspect.signature(Sync.get), inspect.signature(Async.get)
    assert list(s_sig.parameters) != list(a_sig.parameters)
