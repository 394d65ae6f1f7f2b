"""Property: over generated values (nested dicts/lists/tuples; floats including NaN and
infinities; integers beyond 64 bits; text including lone surrogates; bytes; map keys of
every type), every codec on every backend either stores the value so that ``get``
returns the documented value (docs/concepts/codecs.md) or raises ``SerializationError``
with nothing written - through every write path.

Run with ``-s`` to see how many generated values were stored and refused per codec and
backend.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import Repository, SerializationError

BACKENDS = ["memory", "rocksdb", "lmdb"]
CODECS = ["json", "msgpack", "raw"]
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

REFUSED = object()
I64_MIN, U64_MAX = -(2**63), 2**64 - 1

ints = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([I64_MIN, I64_MIN - 1, U64_MAX, U64_MAX + 1, 2**63, -1, 0]),
)
floats = st.floats(allow_nan=True, allow_infinity=True)
texts = st.text(max_size=8)  # any code points, lone surrogates included
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=8))
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner), max_leaves=3)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(texts, inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=3),
    ),
    max_leaves=10,
)


def _utf8(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def expected(codec: str, v: Any, *, key: bool = False) -> Any:
    """What the codec documents ``get`` returns for ``v``, or REFUSED."""
    t = type(v)
    if codec == "raw":
        return v if t is bytes else REFUSED
    if v is None or t is bool:
        return v
    if t is int:
        return v if I64_MIN <= v <= U64_MAX else REFUSED
    if t is float:
        return v if codec == "msgpack" or math.isfinite(v) else REFUSED
    if t is str:
        return v if _utf8(v) else REFUSED
    if t is bytes:
        return v if codec == "msgpack" else REFUSED
    if key:
        return REFUSED  # a tuple map key: JSON keys are str, msgpack cannot read it back
    if t in (list, tuple):
        out = [expected(codec, x) for x in v]
        return REFUSED if any(x is REFUSED for x in out) else out
    if t is dict:
        items = []
        for k, x in v.items():
            if codec == "json" and type(k) is not str:
                return REFUSED
            ek, ex = expected(codec, k, key=True), expected(codec, x)
            if ek is REFUSED or ex is REFUSED:
                return REFUSED
            items.append((ek, ex))
        return dict(items)
    return REFUSED


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    return bool(a == b)


def _url(backend: str, path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "lmdb":
        return f"lmdb://{path}?sync=false"
    return f"rocksdb://{path}"


def _write(repo: Repository[Any, Any], how: str, key: int, value: Any) -> None:
    filler = b"ok" if repo.codec.name == "raw" else 1
    if how == "put":
        repo.put("v", key, value)
    elif how == "insert":
        repo.insert("v", key, value)
    elif how == "put_many":
        repo.put_many("v", [(-key, filler), (key, value)])
    elif how == "batch":
        with repo.batch() as b:
            b.put("v", -key, filler)
            b.put("v", key, value)
    elif how == "view":
        repo.tenant("v").put(key, value)
    else:
        asyncio.run(repo.as_async().put_many("v", {-key: filler, key: value}))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    opened: dict[str, Any] = {}
    yield opened
    for repo in opened.values():
        repo.close()


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_or_refuse(
    backend: str, codec: str, stores: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp(f"{backend}-{codec}") / "store"
    repo = aurora_storage.open(_url(backend, path), codec=codec)
    stores[f"{backend}-{codec}"] = repo
    counter = itertools.count(1)
    outcomes: dict[int, Any] = {}

    @PROPERTY
    @given(
        value=st.one_of(values, st.binary(max_size=16)) if codec == "raw" else values,
        how=st.sampled_from(["put", "insert", "put_many", "batch", "view", "async"]),
    )
    def check(value: Any, how: str) -> None:
        key = next(counter)
        if expected(codec, value) is REFUSED:
            with pytest.raises(SerializationError) as info:
                _write(repo, how, key, value)
            path = info.value.value_path
            assert path is not None
            assert path.startswith("value")
            # Nothing written, not even the valid part of a put_many or batch.
            assert not repo.has("v", key)
            assert not repo.has("v", -key)
            outcomes[key] = REFUSED
            return
        _write(repo, how, key, value)
        want = expected(codec, value)
        got = repo.get("v", key)
        assert same(got, want), (value, got, want)
        outcomes[key] = want

    check()
    refused = sum(1 for v in outcomes.values() if v is REFUSED)
    print(
        f"\n{backend}/{codec}: {len(outcomes)} values, {len(outcomes) - refused} stored, "
        f"{refused} refused"
    )
    if backend != "memory":
        # What was acknowledged is what a reopened store returns.
        repo.close()
        repo = aurora_storage.open(_url(backend, path))
        stores[f"{backend}-{codec}"] = repo
    stored = {k: v for k, v in outcomes.items() if v is not REFUSED}
    got = {k: v for k, v in repo.items("v") if k > 0}
    assert got.keys() == stored.keys()
    assert all(same(got[k], stored[k]) for k in stored)
