"""How deep a value may nest: the json codec refuses, before orjson writes anything, a
value whose containers nest deeper than it stores (254 levels, the same for tuples as for
lists and dicts); what it stores reads back and can be stored again. msgpack refuses past
1024 levels and reads back what it stores."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import SerializationError, codecs
from aurora_storage.tiered import TieredRepository

#: The deepest nesting orjson's writer takes for lists and dicts (found by trying: a list
#: 255 deep is refused with "Recursion limit reached").
JSON_MAX_DEPTH = 254


def test_the_limit_is_what_orjson_writes_for_lists() -> None:
    import orjson

    assert getattr(codecs, "_JSON_MAX_DEPTH", None) == JSON_MAX_DEPTH
    orjson.dumps(_nest(["list"] * JSON_MAX_DEPTH))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(_nest(["list"] * (JSON_MAX_DEPTH + 1)))


@dataclasses.dataclass
class Box:
    x: Any


class Wrap(enum.Enum):
    PAIR = (1, 2)


def _nest(kinds: list[str], leaf: Any = 1) -> Any:
    v = leaf
    for kind in kinds:
        if kind == "tuple":
            v = (v,)
        elif kind == "list":
            v = [v]
        elif kind == "dict":
            v = {"a": v}
        else:
            v = Box(v)
    return v


def _path(kinds: list[str]) -> str:
    """The path of the container at depth JSON_MAX_DEPTH + 1 (kinds lists inner first)."""
    outer_first = list(reversed(kinds))[:JSON_MAX_DEPTH]
    steps = {"tuple": "[0]", "list": "[0]", "dict": '["a"]', "box": ".x"}
    return "value" + "".join(steps[k] for k in outer_first)


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, Box):
        return {"x": _plain(v.x)}
    return v


shapes: st.SearchStrategy[tuple[int, list[str], Any]] = st.tuples(
    st.integers(JSON_MAX_DEPTH - 3, JSON_MAX_DEPTH + 3),
    st.lists(st.sampled_from(["tuple", "list", "dict", "box"]), min_size=1, max_size=4),
    st.sampled_from([1, None, [], (), {}]),
)


def _kinds(depth: int, pattern: list[str]) -> list[str]:
    return [pattern[i % len(pattern)] for i in range(depth)]


def _depth(kinds: list[str], leaf: Any) -> int:
    return len(kinds) + (1 if isinstance(leaf, list | tuple | dict) else 0)


@pytest.fixture(params=["memory", "lmdb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"lmdb://{tmp_path}/s"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=shapes)
def test_json_stores_what_it_can_store_again_and_refuses_deeper(
    url: str, shape: tuple[int, list[str], Any]
) -> None:
    n, pattern, leaf = shape
    kinds = _kinds(n, pattern)
    value = _nest(kinds, leaf)
    with aurora_storage.open(url, codec="json") as repo:
        key = f"{n}{pattern}{leaf!r}"
        if _depth(kinds, leaf) > JSON_MAX_DEPTH:
            with pytest.raises(SerializationError) as info:
                repo.put("t", key, value)
            assert not repo.has("t", key)
            assert "nests too deep" in str(info.value)
            assert str(JSON_MAX_DEPTH) in str(info.value)
            if len(kinds) > JSON_MAX_DEPTH:
                assert info.value.value_path == _path(kinds)
            return
        repo.put("t", key, value)
        back = repo.get("t", key)
        assert back == _plain(value)
        repo.put("t", key + "again", back)  # what get returned is stored again
        assert repo.get("t", key + "again") == back


@pytest.mark.parametrize("engine", ["memory", "rocksdb", "lmdb"])
def test_a_tuple_deeper_than_the_reader_is_refused_and_the_store_stays_readable(
    engine: str, tmp_path: Path
) -> None:
    url = "memory://" if engine == "memory" else f"{engine}://{tmp_path}/s"
    with aurora_storage.open(url, codec="json") as repo:
        repo.put("t", "a", 1)
        with pytest.raises(SerializationError):
            repo.put("t", "b", {"payload": _nest(["tuple"] * 1100)})
        assert list(repo.items("t")) == [("a", 1)]
        assert repo.get_many("t", ["a", "b"]) == [1, None]
        assert repo.verify().ok


def test_every_write_path_refuses_a_deep_tuple(tmp_path: Path) -> None:
    deep = _nest(["tuple"] * 1100)
    repo = aurora_storage.open(f"lmdb://{tmp_path}/l", codec="json")
    tier: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/h"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/c"),
    )
    try:

        def batch() -> None:
            b = repo.batch()
            b.put("t", "k", deep)
            b.commit()

        paths: list[Callable[[], object]] = [
            lambda: repo.put("t", "k", deep),
            lambda: repo.put_many("t", [("k", deep)]),
            batch,
            lambda: repo.insert("t", "k", deep),
            lambda: repo.compare_and_set("t", "k", deep, version=None),
            lambda: asyncio.run(repo.as_async().put("t", "k", deep)),
            lambda: tier.put("t", "k", deep),
        ]
        for write in paths:
            with pytest.raises(SerializationError):
                write()
        assert not repo.has("t", "k")
        assert not tier.has("t", "k")
    finally:
        repo.close()
        tier.close()


def test_a_tuple_thousands_deep_is_refused_without_reaching_orjson(tmp_path: Path) -> None:
    # orjson.dumps of a 5000-deep tuple corrupted the heap and the process aborted.
    child = f"""
import aurora_storage
from aurora_storage import SerializationError
v = 1
for _ in range(5000):
    v = (v,)
with aurora_storage.open("rocksdb://{tmp_path}/s", codec="json") as repo:
    for _ in range(3):
        try:
            repo.put("t", "deep", v)
        except SerializationError as exc:
            print(type(exc).__name__, exc.value_path.count("[0]"))
    print("has", repo.has("t", "deep"))
"""
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == [
        f"SerializationError {JSON_MAX_DEPTH}",
        f"SerializationError {JSON_MAX_DEPTH}",
        f"SerializationError {JSON_MAX_DEPTH}",
        "has False",
    ]


def test_the_message_says_the_value_nests_too_deep() -> None:
    with (
        aurora_storage.open("memory://", codec="json") as repo,
        pytest.raises(SerializationError) as info,
    ):
        repo.put("t", "k", _nest(["tuple"] * 1000, None))
    assert "nests too deep" in str(info.value)
    assert "maximum recursion depth" not in str(info.value)
    assert info.value.value_path == "value" + "[0]" * JSON_MAX_DEPTH


def test_deep_parts_inside_enums_and_long_containers_are_found() -> None:
    deep = _nest(["tuple"] * 300)
    with aurora_storage.open("memory://", codec="json") as repo:
        for value in ([0] * 5000 + [deep], {f"k{i}": i for i in range(40)} | {"z": deep}):
            with pytest.raises(SerializationError):
                repo.put("t", "k", value)
        repo.put("t", "e", [Wrap.PAIR] * 3)
        assert repo.get("t", "e") == [[1, 2]] * 3


def test_a_value_sharing_its_parts_is_measured_once_per_part() -> None:
    shared: Any = (1,)
    for _ in range(300):
        shared = (shared, shared)  # 2**300 paths, 301 levels
    with (
        aurora_storage.open("memory://", codec="json") as repo,
        pytest.raises(SerializationError),
    ):
        repo.put("t", "k", shared)


@pytest.mark.parametrize("kind", ["tuple", "list", "dict"])
def test_msgpack_stores_1024_levels_and_refuses_deeper(kind: str) -> None:
    with aurora_storage.open("memory://", codec="msgpack") as repo:
        repo.put("t", "k", _nest([kind] * 1024))
        back, levels = repo.get("t", "k"), 0
        while isinstance(back, list | dict):  # a loop: == on 1024 levels would recurse
            back = back[0] if isinstance(back, list) else back["a"]
            levels += 1
        assert (back, levels) == (1, 1024)
        with pytest.raises(SerializationError):
            repo.put("t", "j", _nest([kind] * 1025))
        assert not repo.has("t", "j")


@settings(max_examples=150, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["tuple", "list", "dict"]), min_size=248, max_size=258),
    width=st.integers(min_value=0, max_value=120),
    leaf=st.sampled_from([1, "s", None, [], {}, ()]),
    at=st.integers(min_value=0, max_value=120),
)
def test_the_quick_walks_refuse_exactly_what_the_exact_walk_refuses(
    kinds: list[str], width: int, leaf: Any, at: int
) -> None:
    # A deep chain among `width` shallow records: a value of plain containers is walked
    # a call per container, a wide one a level at a time (gc.get_referents); both must
    # agree with the exact walk, whatever the width.
    rows: list[Any] = [{"a": i, "b": [i, (i,)]} for i in range(width)]
    rows.insert(min(at, width), _nest(kinds, leaf))
    deep = codecs._json_too_deep(rows)
    assert deep == (len(kinds) + 1 + (leaf in ([], {}, ())) > JSON_MAX_DEPTH)
    codec = codecs.get_codec("json")
    if deep:
        with pytest.raises(codecs.UnreadableValueError):
            codec.encode(rows)
    else:
        assert codec.decode(codec.encode(rows)) == _as_json(rows)


def _as_json(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _as_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_as_json(x) for x in v]
    return v
