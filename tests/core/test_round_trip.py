"""Round-trip or refuse: every codec stores a value only if ``get`` returns it (with the
documented conversions), otherwise ``SerializationError`` names the offending path inside
the value and nothing is written - on every write path (put, insert, put_many, batches,
async twins)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage import Repository, SerializationError, get_codec

Write = Callable[[Repository[Any, Any], Any], None]


def _put(repo: Repository[Any, Any], value: Any) -> None:
    repo.put("acme", "r", value)


def _insert(repo: Repository[Any, Any], value: Any) -> None:
    repo.insert("acme", "r", value)


def _put_many(repo: Repository[Any, Any], value: Any) -> None:
    repo.put_many("acme", [("ok", 1), ("r", value)])


def _batch(repo: Repository[Any, Any], value: Any) -> None:
    with repo.batch() as b:
        b.put("acme", "ok", 1)
        b.put("acme", "r", value)


def _view(repo: Repository[Any, Any], value: Any) -> None:
    repo.tenant("acme").put("r", value)


def _async_put_many(repo: Repository[Any, Any], value: Any) -> None:
    asyncio.run(repo.as_async().put_many("acme", {"ok": 1, "r": value}))


WRITES: dict[str, Write] = {
    "put": _put,
    "insert": _insert,
    "put_many": _put_many,
    "batch": _batch,
    "view": _view,
    "async_put_many": _async_put_many,
}


@pytest.fixture(params=sorted(WRITES))
def write(request: pytest.FixtureRequest) -> Write:
    return WRITES[request.param]


def _open(codec: str) -> Iterator[Repository[Any, Any]]:
    with aurora_storage.open("memory://", codec=codec) as repo:
        yield repo
        # Nothing of the refused call reached the store, not even its valid part.
        assert list(repo.items("acme")) == []


@pytest.fixture
def json_repo() -> Iterator[Repository[Any, Any]]:
    yield from _open("json")


@pytest.fixture
def msgpack_repo() -> Iterator[Repository[Any, Any]]:
    yield from _open("msgpack")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"temp": math.nan}, 'value["temp"]'),
        ({"temp": math.inf}, 'value["temp"]'),
        ({"temp": -math.inf}, 'value["temp"]'),
        (math.nan, "value"),
        ([1, None, [2, -math.inf]], "value[2][1]"),
        ({"a": None, "b": (None, {"c": math.nan})}, 'value["b"][1]["c"]'),
    ],
)
def test_json_refuses_non_finite_floats(
    json_repo: Repository[Any, Any], write: Write, value: Any, path: str
) -> None:
    # orjson writes NaN and infinities as null: get would return None, so refuse.
    with pytest.raises(SerializationError) as info:
        write(json_repo, value)
    assert path in str(info.value)
    assert info.value.value_path == path
    assert "nothing was written" in str(info.value)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({(1, 2): "v"}, "value[(1, 2)]"),
        ({"outer": {("a",): 1}}, "value[\"outer\"][('a',)]"),
        ([{"x": 1}, {(): 2}], "value[1][()]"),
    ],
)
def test_msgpack_refuses_map_keys_it_cannot_read_back(
    msgpack_repo: Repository[Any, Any], write: Write, value: Any, path: str
) -> None:
    # msgpack packs a tuple key as an array, which unpacks as an unhashable list.
    with pytest.raises(SerializationError) as info:
        write(msgpack_repo, value)
    assert info.value.value_path == path
    assert "key" in str(info.value)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"n": 2**64}, 'value["n"]'),
        ({"n": -(2**63) - 1}, 'value["n"]'),
        ({"s": {1, 2}}, 'value["s"]'),
        ([0, "a\ud800"], "value[1]"),
    ],
)
def test_out_of_range_and_unsupported_values_name_their_path(
    codec: str, value: Any, path: str
) -> None:
    with aurora_storage.open("memory://", codec=codec) as repo:
        with pytest.raises(SerializationError) as info:
            repo.put_many("acme", {"ok": 1, "r": value})
        assert info.value.value_path == path
        assert repo.count("acme") == 0


def test_json_keeps_none_and_the_word_null() -> None:
    # The cheap check looks for b"null" in the output; None and the text "null" are fine.
    with aurora_storage.open("memory://") as repo:
        value = {"a": None, "null": "null", "l": [None, 1.5, "nullnull"]}
        repo.put("acme", "r", value)
        assert repo.get("acme", "r") == value


def test_msgpack_keeps_every_map_key_type_it_can_read_back() -> None:
    with aurora_storage.open("memory://", codec="msgpack") as repo:
        value = {"s": 1, b"b": 2, 3: 3, 2.5: 4, True: 5, None: 6}
        repo.put("acme", "r", value)
        assert repo.get("acme", "r") == value
        # Non-finite floats are msgpack floats: they come back as they were.
        repo.put("acme", "f", [math.inf, -math.inf])
        assert repo.get("acme", "f") == [math.inf, -math.inf]
        got = repo.get("acme", "f2", [math.nan])
        assert got is not None
        assert math.isnan(got[0])


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_codec_encode_itself_refuses(name: str) -> None:
    # Code that uses a codec directly (the tiered repository, plugins) is protected too.
    codec = get_codec(name)
    bad = {"x": math.nan} if name == "json" else {(1,): 1}
    with pytest.raises(ValueError, match="value"):
        codec.encode(bad)
    if codec.encode_held is not None:
        with pytest.raises(ValueError, match="value"):
            codec.encode_held(bad)


def test_json_finds_non_finite_floats_inside_what_orjson_converts() -> None:
    import dataclasses
    import enum

    @dataclasses.dataclass
    class Reading:
        sensor: str
        temp: float

    class Limit(enum.Enum):
        TOP = math.inf

    with aurora_storage.open("memory://") as repo:
        with pytest.raises(SerializationError) as info:
            repo.put("acme", "r", {"readings": [Reading("s1", 1.0), Reading("s2", math.nan)]})
        assert info.value.value_path == 'value["readings"][1].temp'
        with pytest.raises(SerializationError) as info:
            repo.put("acme", "r", [Limit.TOP])
        assert info.value.value_path == "value[0].value"
        assert repo.count("acme") == 0


def test_a_self_containing_value_is_refused_with_a_bounded_message() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for codec in ("json", "msgpack"):
        with aurora_storage.open("memory://", codec=codec) as repo:
            with pytest.raises(SerializationError) as info:
                repo.put("acme", "r", loop)
            assert len(str(info.value)) < 10_000
            assert repo.count("acme") == 0


@pytest.mark.parametrize("codec", ["msgpack", "raw"])
def test_a_dataclass_a_codec_cannot_store_is_named_not_one_of_its_attributes(
    codec: str,
) -> None:
    # msgpack and raw store no dataclass at all: the error names the dataclass, not an
    # attribute that happens to fail on its own (was value.temp: "Integer value out of
    # range" for msgpack, "the raw codec stores bytes only, got float" for raw).
    import dataclasses

    @dataclasses.dataclass
    class Reading:
        temp: Any

    with aurora_storage.open("memory://", codec=codec) as repo:
        cases: list[tuple[Any, str]] = [(Reading(2**70), "value")]
        if codec == "msgpack":  # raw refuses the dict itself
            cases.append(({"r": [Reading(2**70)]}, 'value["r"][0]'))
        for value, path in cases:
            with pytest.raises(SerializationError) as info:
                repo.put("acme", "r", value)
            assert info.value.value_path == path, value
            assert "Reading" in str(info.value), str(info.value)
        assert repo.count("acme") == 0
