"""Property: over generated argument types for every public method - sync, async, tenant
views, batches - a call either succeeds or raises a typed error from
aurora_storage.errors (a ``TypeError`` or ``ValueError`` mix-in; ``KeyExistsError`` for
``insert``), clearly wrong arguments always raise, and a call that raises writes nothing
(checked on the live store after each call and on the reopened store at the end).

Run with ``-s`` to see how many calls were generated and how many raised.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import KeyExistsError, Repository, StorageError
from aurora_storage.errors import VersionConflictError

BACKENDS = ["memory", "rocksdb", "lmdb"]
PROPERTY = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.just(2**80),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.lists(st.integers(0, 3), max_size=2),
    st.tuples(st.integers(0, 3), st.text(max_size=2)),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
    st.frozensets(st.integers(0, 3), max_size=2),
    st.sets(st.integers(0, 3), max_size=2),
    st.builds(object),
)
keys = st.sampled_from(["k1", 1, ("a", 2), b"b"])
VALID = {
    "tenant": st.sampled_from(["x", "y"]),
    "key": keys,
    "value": st.sampled_from([1, "v", {"a": [1, None]}]),
    "keys": st.lists(keys, max_size=3),
    "pairs": st.lists(st.tuples(keys, st.integers(0, 3)), max_size=3),
    "prefix": st.sampled_from([None, "k", ("a",)]),
    "bound": st.sampled_from([None, "k", 1]),
    "reverse": st.booleans(),
    "limit": st.one_of(st.none(), st.integers(0, 5)),
    "default": junk,
    "sequence": st.sampled_from(["s", "orders"]),
    "version": st.none(),
    "after": st.one_of(st.none(), st.integers(0, 5)),
    "timeout": st.sampled_from([None, 0, 0.0]),
}
SCAN = {"prefix": "prefix", "start": "bound", "stop": "bound", "reverse": "reverse"}
SCAN["limit"] = "limit"
#: method -> (positional slots, keyword slots); "tenant" first where the method takes one.
METHODS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "put": (("tenant", "key", "value"), {}),
    "get": (("tenant", "key", "default"), {}),
    "has": (("tenant", "key"), {}),
    "delete": (("tenant", "key"), {}),
    "insert": (("tenant", "key", "value"), {}),
    "put_many": (("tenant", "pairs"), {}),
    "get_many": (("tenant", "keys"), {}),
    "delete_many": (("tenant", "keys"), {}),
    "keys": (("tenant",), SCAN),
    "values": (("tenant",), SCAN),
    "items": (("tenant",), SCAN),
    "list": (("tenant", "prefix"), {}),
    "count": (("tenant",), {"prefix": "prefix"}),
    "drop_tenant": (("tenant",), {}),
    "drop": (("tenant",), {}),  # views only: their own tenant
    "tenant": (("tenant",), {}),
    # The event-store primitives (#13). A keyword named "!x" is required (always passed).
    "get_versioned": (("tenant", "key"), {}),
    "compare_and_set": (("tenant", "key", "value"), {"!version": "version"}),
    "last_sequence": (("tenant", "sequence"), {}),
    "watch": (("tenant",), {"prefix": "prefix", "after": "after", "timeout": "timeout"}),
}
BATCH_METHODS = {
    "put": METHODS["put"],
    "delete": METHODS["delete"],
    "insert": METHODS["insert"],
    "compare_and_set": METHODS["compare_and_set"],
    "append": (("tenant", "sequence", "value"), {}),
}
CLASSES = {
    "sync": aurora_storage.Repository,
    "view": aurora_storage.TenantView,
    "async": aurora_storage.AsyncRepository,
    "async_view": aurora_storage.AsyncTenantView,
    "batch": aurora_storage.Batch,
    "async_batch": aurora_storage.AsyncBatch,
}
SURFACES = sorted(CLASSES)
_SCALARS = (str, bytes, bytearray, memoryview)


def _iterable(x: Any) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True


def must_raise(slot: str, x: Any) -> bool:
    """Whether ``x`` is clearly wrong for ``slot`` (a model independent of the code)."""
    if slot == "tenant":
        return not (isinstance(x, str) and x != "")
    if slot == "keys":
        return isinstance(x, _SCALARS) or not _iterable(x)
    if slot == "pairs":
        if isinstance(x, Mapping):
            return False
        if isinstance(x, _SCALARS) or not _iterable(x):
            return True
        return any(not (isinstance(p, tuple | list) and len(p) == 2) for p in x)
    if slot == "reverse":
        return type(x) is not bool
    if slot == "limit":
        return x is not None and (type(x) is not int or x < 0)
    if slot == "prefix":
        return x is not None and not isinstance(x, str | bytes | tuple | list)
    if slot == "sequence":
        return not (isinstance(x, str) and x != "")
    if slot == "version":
        return x is not None and type(x).__name__ != "Version"
    if slot == "after":
        return x is not None and (type(x) is not int or x < 0)
    if slot == "timeout":
        return x is not None and (type(x) not in (int, float) or not x >= 0)
    if slot == "key":
        return (
            isinstance(x, set | frozenset)
            or type(x) is object
            or (type(x) is float and math.isnan(x))
        )
    return False


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, str, list[Any], dict[str, Any], bool]:
    surface = draw(st.sampled_from(SURFACES))
    table = BATCH_METHODS if "batch" in surface else METHODS
    cls = CLASSES[surface]
    names = sorted(
        n for n in table if hasattr(cls, n) and not (n == "tenant" and "view" in surface)
    )
    name = draw(st.sampled_from(names))
    pos_slots, kw_slots = table[name]
    if "view" in surface:
        pos_slots = pos_slots[1:]  # the view's own tenant is valid; bad ones: "tenant"
    wrong = False
    args: list[Any] = []
    for slot in pos_slots:
        x = draw(st.one_of(VALID[slot], junk))
        wrong |= must_raise(slot, x)
        args.append(x)
    kwargs: dict[str, Any] = {}
    for kw, slot in kw_slots.items():
        if kw.startswith("!") or draw(st.booleans()):
            x = draw(st.one_of(VALID[slot], junk))
            wrong |= must_raise(slot, x)
            kwargs[kw.lstrip("!")] = x
    return surface, name, args, kwargs, wrong


async def _drain(it: Any) -> list[Any]:
    return [x async for x in it]


def _call(repo: Repository[Any, Any], surface: str, name: str, args: list[Any], kw: Any) -> Any:
    if surface == "batch":
        with repo.batch() as b:
            getattr(b, name)(*args, **kw)
        return None
    if surface == "async_batch":

        async def run() -> None:
            async with repo.as_async().batch() as b:
                getattr(b, name)(*args, **kw)

        return asyncio.run(run())
    target: Any = {
        "sync": repo,
        "view": repo.tenant("x"),
        "async": repo.as_async(),
        "async_view": repo.as_async().tenant("x"),
    }[surface]
    out = getattr(target, name)(*args, **kw)
    if name == "watch":
        # Arguments are checked when the watch is made; iterating would wait for changes.
        close = getattr(out, "close", None) or out.aclose
        result = close()
        if inspect.iscoroutine(result):
            asyncio.run(result)
        return None
    if inspect.iscoroutine(out):
        return asyncio.run(out)
    if hasattr(out, "__anext__"):
        return asyncio.run(_drain(out))
    if hasattr(out, "__next__"):
        return list(out)
    return out


def _snapshot(repo: Repository[Any, Any]) -> dict[str, list[Any]]:
    return {t: list(repo.items(t)) for t in repo.tenants()}


def _url(backend: str, path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "lmdb":
        return f"lmdb://{path}?sync=false"
    return f"rocksdb://{path}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_public_argument_is_checked(backend: str, tmp_path: Path) -> None:
    url = _url(backend, tmp_path / "store")
    repo = aurora_storage.open(url)
    stats: Counter[str] = Counter()

    @PROPERTY
    @given(call=calls())
    def check(call: tuple[str, str, list[Any], dict[str, Any], bool]) -> None:
        surface, name, args, kwargs, wrong = call
        repo.put_many("x", {"k1": 1, 1: 2, ("a", 2): 3})
        before = _snapshot(repo)
        error: StorageError | None = None
        try:
            _call(repo, surface, name, args, kwargs)
        except StorageError as exc:
            error = exc
        if error is not None:
            stats["raised"] += 1
            # Outcomes that are not about the arguments: the key exists, the version
            # moved, the backend lacks a primitive.
            typed = isinstance(
                error,
                TypeError
                | ValueError
                | KeyExistsError
                | VersionConflictError
                | NotImplementedError,
            )
            assert typed, (surface, name, args, kwargs, error)
        else:
            stats["succeeded"] += 1
            assert not wrong, ("accepted a wrong argument", surface, name, args, kwargs)
            return
        assert _snapshot(repo) == before, ("a refused call wrote", surface, name, args, kwargs)

    check()
    live = _snapshot(repo)
    if backend != "memory":
        repo.close()
        repo = aurora_storage.open(url)
    with repo:
        assert _snapshot(repo) == live
    print(
        f"\n{backend}: {sum(stats.values())} calls, {stats['raised']} raised a typed error "
        f"with nothing written, {stats['succeeded']} succeeded"
    )
