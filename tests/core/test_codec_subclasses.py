"""A subclass of a built-in type is stored as what it holds, whatever its Python-level
overrides say.

msgpack's packer took a ``dict`` subclass's pairs from its ``items()`` and its size
from ``__len__``, and a ``list`` subclass's items from its ``__iter__``: a dict that
masks a password in ``items()`` was stored as ``"***"`` and ``get`` returned the mask
(the json codec stored the real contents). Now both codecs store the real contents, read
through the base type's own storage, or refuse the value with ``SerializationError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import SerializationError

# ------------------------------------------------------------- hostile subclasses
# Each override says something other than what the object holds.


class MaskedDict(dict[Any, Any]):
    def items(self) -> Any:
        return [(k, "***") for k in dict.keys(self)]

    def values(self) -> Any:
        return ["***" for _ in dict.keys(self)]


class ShortDict(dict[Any, Any]):
    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def keys(self) -> Any:
        return []


class LyingDict(dict[Any, Any]):
    def __getitem__(self, key: Any) -> Any:
        return "***"

    def get(self, key: Any, default: Any = None) -> Any:
        return "***"

    def copy(self) -> dict[Any, Any]:
        return {}


class MaskedList(list[Any]):
    def __iter__(self) -> Iterator[Any]:
        return iter(["***"] * list.__len__(self))

    def __getitem__(self, i: Any) -> Any:
        return "***"


class ShortList(list[Any]):
    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class MaskedTuple(tuple[Any, ...]):
    def __iter__(self) -> Iterator[Any]:
        return iter(["***"] * tuple.__len__(self))

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: Any) -> Any:
        return "***"


class MaskedStr(str):
    __slots__ = ()

    def __str__(self) -> str:
        return "***"

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"***"

    def __iter__(self) -> Iterator[str]:
        return iter("***")

    def __len__(self) -> int:
        return 3


class MaskedInt(int):
    def __int__(self) -> int:
        return -1

    def __index__(self) -> int:
        return -1

    def __float__(self) -> float:
        return -1.0


class MaskedFloat(float):
    def __float__(self) -> float:
        return -1.0


class MaskedBytes(bytes):
    def __bytes__(self) -> bytes:
        return b"***"

    def __len__(self) -> int:
        return 3

    def __iter__(self) -> Iterator[int]:
        return iter(b"***")


DICTS = (dict, MaskedDict, ShortDict, LyingDict)
LISTS = (list, tuple, MaskedList, ShortList, MaskedTuple)


def real(v: Any) -> Any:
    """What ``v`` holds, as plain types, read through the base types' storage (tuples
    as lists: both codecs return lists)."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int.__int__(v)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, bytes):
        return bytes.__bytes__(v)
    if isinstance(v, list):
        return [real(x) for x in list.__iter__(v)]
    if isinstance(v, tuple):
        return [real(x) for x in tuple.__iter__(v)]
    if isinstance(v, dict):
        return {real(k): real(x) for k, x in dict.items(v)}
    raise AssertionError(f"unexpected {type(v)}")


def _wrap(types: tuple[type, ...]) -> Any:
    return st.sampled_from(types)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.integers(-(2**63), 2**63 - 1).map(MaskedInt)
    | st.floats(allow_nan=False)
    | st.floats(allow_nan=False).map(MaskedFloat)
    | st.text(max_size=8)
    | st.text(max_size=8).map(MaskedStr)
    | st.binary(max_size=8)
    | st.binary(max_size=8).map(MaskedBytes)
)
map_keys = (
    st.text(max_size=6)
    | st.text(max_size=6).map(MaskedStr)
    | st.integers(-(2**63), 2**63 - 1)
    | st.integers(-1000, 1000).map(MaskedInt)
    | st.binary(max_size=4)
)


def _containers(inner: Any) -> Any:
    return st.builds(lambda t, xs: t(xs), _wrap(LISTS), st.lists(inner, max_size=4)) | st.builds(
        lambda t, d: t(d), _wrap(DICTS), st.dictionaries(map_keys, inner, max_size=4)
    )


values = st.recursive(scalars, _containers, max_leaves=16)


@pytest.fixture(scope="module")
def repos() -> Iterator[dict[str, Any]]:
    with (
        aurora_storage.open("memory://", codec="json") as j,
        aurora_storage.open("memory://", codec="msgpack") as m,
    ):
        yield {"json": j, "msgpack": m}


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_msgpack_stores_what_a_subclass_holds(repos: dict[str, Any], value: Any) -> None:
    # Every generated value's contents are msgpack-storable: never refused.
    repo = repos["msgpack"]
    repo.put("t", "k", value)
    assert repo.get("t", "k") == real(value)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_json_stores_what_a_subclass_holds_or_refuses(repos: dict[str, Any], value: Any) -> None:
    # json refuses bytes, non-str map keys, float subclasses, tuple subclasses, inf.
    repo = repos["json"]
    repo.delete("t", "k")
    try:
        repo.put("t", "k", value)
    except SerializationError:
        assert not repo.has("t", "k")
        return
    assert repo.get("t", "k") == real(value)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_a_redacting_items_override_stores_the_real_contents(
    repos: dict[str, Any], codec: str
) -> None:
    class Redacted(dict[str, Any]):
        def items(self) -> Any:
            return [(k, "***" if k == "password" else v) for k, v in super().items()]

    repo = repos[codec]
    repo.put("acme", "r", Redacted(user="ann", password="hunter2"))
    assert repo.get("acme", "r") == {"user": "ann", "password": "hunter2"}


def test_msgpack_still_refuses_what_it_cannot_store(repos: dict[str, Any]) -> None:
    import enum

    class Plain(enum.Enum):
        A = "a"

    repo = repos["msgpack"]
    for bad in ({1, 2}, Plain.A, 2**70, MaskedInt(2**70), {(1, 2): 1}, object()):
        with pytest.raises(SerializationError):
            repo.put("t", "bad", bad)
    assert not repo.has("t", "bad")


def test_a_nested_store_from_a_key_hash_uses_its_own_packer(repos: dict[str, Any]) -> None:
    # User code (a str subclass's __hash__) runs while a dict subclass is rebuilt from
    # its storage; if it stores a value itself, the outer value is still packed whole.
    repo = repos["msgpack"]

    class Noisy(str):
        __slots__ = ()

        def __hash__(self) -> int:
            repo.put("t", "inner", {"nested": [1, 2, 3]})
            return str.__hash__(self)

    value = MaskedDict({Noisy("a"): [1, 2], "b": (3, 4)})
    repo.put("t", "outer", value)
    assert repo.get("t", "outer") == {"a": [1, 2], "b": [3, 4]}
    assert repo.get("t", "inner") == {"nested": [1, 2, 3]}


# ------------------------------------------------------------- map keys that merge
# Keys a subclass's __eq__/__hash__ keeps apart, but whose plain forms are equal: two
# Tag("a") keys, or Same("a") beside a plain "a", were both packed as "a" and get
# returned one entry ({'a': 2}). Now such a value is refused, or stored exactly.


class Tag(str):
    """Equal only to itself: two Tag("a") are two keys."""

    __slots__ = ()
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


class Same(str):
    """Equal to everything, with a hash no plain str has: beside "a" it is a second key."""

    __slots__ = ()

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return True


class IdInt(int):
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


class IdBytes(bytes):
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


merging_keys = (
    st.builds(
        lambda t, s: t(s), st.sampled_from((str, Tag, Same, MaskedStr)), st.sampled_from("ab")
    )
    | st.builds(
        lambda t, n: t(n), st.sampled_from((int, IdInt, MaskedInt)), st.sampled_from((0, 1))
    )
    | st.sampled_from((True, False, 1.0))
    | st.builds(lambda t, b: t(b), st.sampled_from((bytes, IdBytes)), st.sampled_from((b"a", b"b")))
)


def _merging_maps(inner: Any) -> Any:
    pairs = st.lists(st.tuples(merging_keys, inner), max_size=5)

    def build(t: type, ps: list[tuple[Any, Any]]) -> Any:
        d: dict[Any, Any] = {}
        for k, v in ps:
            d[k] = v
        return t(d)

    return st.builds(build, _wrap(DICTS), pairs) | st.builds(
        lambda t, xs: t(xs), _wrap(LISTS), st.lists(inner, max_size=3)
    )


merging_values = st.recursive(st.integers(0, 3) | st.text(max_size=2), _merging_maps, max_leaves=12)


def entries(v: Any) -> int:
    """How many map entries ``v`` holds, all the way down (through base storage)."""
    if isinstance(v, dict):
        return sum(1 + entries(x) for x in dict.values(v))
    if isinstance(v, list | tuple):
        items = list.__iter__(v) if isinstance(v, list) else tuple.__iter__(v)
        return sum(entries(x) for x in items)
    return 0


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@settings(max_examples=300, deadline=None)
@given(value=merging_values)
def test_keys_that_merge_are_refused_or_stored_exactly(
    repos: dict[str, Any], codec: str, value: Any
) -> None:
    repo = repos[codec]
    repo.delete("t", "k")
    try:
        repo.put("t", "k", value)
    except SerializationError:
        assert not repo.has("t", "k")
        return
    got = repo.get("t", "k")
    assert entries(got) == entries(value)
    assert got == real(value)


@pytest.mark.parametrize(
    "value",
    [
        {Tag("a"): 1, Tag("a"): 2},
        {"a": 1, Same("a"): 2},
        {"x": [0, MaskedDict({Tag("a"): 1, Tag("a"): 2})]},
        {IdInt(1): "a", True: "b"},
        {IdBytes(b"a"): 1, IdBytes(b"a"): 2},
    ],
)
def test_msgpack_refuses_keys_that_would_merge(repos: dict[str, Any], value: Any) -> None:
    repo = repos["msgpack"]
    with pytest.raises(SerializationError) as info:
        repo.put("t", "merged", value)
    assert not repo.has("t", "merged")
    assert "same key" in str(info.value)
    assert info.value.value_path != "value"


def test_a_value_with_a_strenum_and_plain_keys_is_still_stored(repos: dict[str, Any]) -> None:
    # The check runs when a subclass was packed; distinct keys pass it.
    import enum

    class Colour(enum.StrEnum):
        RED = "red"

    repo = repos["msgpack"]
    repo.put("t", "e", {Colour.RED: Colour.RED, "blue": [Tag("b"), 1], Tag("c"): 2})
    assert repo.get("t", "e") == {"red": "red", "blue": ["b", 1], "c": 2}
