"""Properties of the order-preserving key encoding, checked against a reference order.

The reference comparison below implements the documented order independently of the
encoder: None < False < True < numbers (int and float compared exactly) < str (code
points) < bytes < tuples/lists (element-wise, a shorter prefix first) < dicts (items
sorted by the same order, then compared as sequences of (key, value) pairs).
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import MAX_KEY_SIZE, InvalidKeyError, KeyTooLargeError, decode_key, encode_key
from aurora_storage._keys import encode_prefix, encode_tenant, prefix_successor

PURE = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

# Every code point, lone surrogates included (they are legal in a Python str).
_chars = st.characters(codec=None, exclude_categories=())
texts = st.text(_chars, max_size=8) | st.sampled_from(["", "a", "a\x00", "a\x00b", "ab", "\uffff"])
binaries = st.binary(max_size=8) | st.sampled_from(
    [b"", b"\x00", b"\xff", b"\x00\xff", b"\xff\x00"]
)
integers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-300, max_value=300)
    | st.sampled_from([0, 1, -1, 255, 256, 2**64 - 1, 2**64, -(2**64), 2**1000, -(2**1000)])
)
floats = st.floats(allow_nan=False) | st.sampled_from(
    [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 1e-300, 5e-324, -5e-324, 1e300, 2.0**53 + 2, 0.1]
)
numbers = integers | floats
scalars = st.none() | st.booleans() | numbers | texts | binaries
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.tuples(inner), max_leaves=4
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=3).map(tuple)
        | st.lists(inner, max_size=3)
        | st.dictionaries(hashables, inner, max_size=3)
    )


keys = st.recursive(scalars, _containers, max_leaves=8)

# ------------------------------------------------------------------ reference order

_RANK_NUMBER = 3


def _rank(v: Any) -> int:
    if v is None:
        return 0
    if v is False:
        return 1
    if v is True:
        return 2
    if isinstance(v, int | float):
        return _RANK_NUMBER
    if isinstance(v, str):
        return 4
    if isinstance(v, bytes):
        return 5
    if isinstance(v, tuple | list):
        return 6
    if isinstance(v, dict):
        return 7
    raise AssertionError(f"not a key: {v!r}")


def _num(v: int | float) -> tuple[int, Fraction]:
    # Exact comparison: Fraction(0.1) is the float's exact binary value.
    if v == math.inf:
        return (1, Fraction(0))
    if v == -math.inf:
        return (-1, Fraction(0))
    return (0, Fraction(v))


def _sign(x: Any) -> int:
    return int(x > 0) - int(x < 0)


def ref_cmp(a: Any, b: Any) -> int:
    """-1/0/1 by the documented key order."""
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return _sign(ra - rb)
    if ra < _RANK_NUMBER:
        return 0
    if ra == _RANK_NUMBER:
        na, nb = _num(a), _num(b)
        return (na > nb) - (na < nb)
    if ra in (4, 5):
        return int(a > b) - int(a < b)  # str: code point order; bytes: byte order
    if ra == 6:
        return _seq_cmp(list(a), list(b))
    return _seq_cmp(_sorted_items(a), _sorted_items(b))


def _seq_cmp(a: list[Any], b: list[Any]) -> int:
    for x, y in zip(a, b, strict=False):
        c = ref_cmp(x, y)
        if c:
            return c
    return _sign(len(a) - len(b))


def _sorted_items(d: dict[Any, Any]) -> list[Any]:
    return sorted(([k, v] for k, v in d.items()), key=functools.cmp_to_key(_seq_cmp))


def canonical(v: Any) -> Any:
    """What decode(encode(v)) must return: integral floats as int, lists as tuples."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if isinstance(v, tuple | list):
        return tuple(canonical(e) for e in v)
    if isinstance(v, dict):
        return {canonical(k): canonical(x) for k, x in v.items()}
    return v


def same_typed(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 and True from 1, recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_typed(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        bi = {encode_key(k): (k, v) for k, v in b.items()}
        for k, v in a.items():
            kb, vb = bi.get(encode_key(k), (None, None))
            if not (same_typed(k, kb) and same_typed(v, vb)):
                return False
        return True
    return bool(a == b) or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _variant(v: Any) -> Any:
    """An equal key written differently: ints as floats, tuples as lists, dicts reversed."""
    if type(v) is int and abs(v) < 2**53:
        return float(v)
    if type(v) is float and v == 0:
        return -v
    if type(v) is tuple:
        return [_variant(e) for e in v]
    if type(v) is list:
        return tuple(_variant(e) for e in v)
    if type(v) is dict:
        return {k: _variant(x) for k, x in reversed(list(v.items()))}
    return v


# ------------------------------------------------------------------ properties


@PURE
@given(keys)
def test_round_trip_is_canonical(key: Any) -> None:
    enc = encode_key(key)
    dec = decode_key(enc)
    assert same_typed(dec, canonical(key))
    assert encode_key(dec) == enc


@PURE
@given(keys, keys)
def test_byte_order_equals_value_order(a: Any, b: Any) -> None:
    ea, eb = encode_key(a), encode_key(b)
    assert _sign((ea > eb) - (ea < eb)) == ref_cmp(a, b)


@PURE
@given(scalars, scalars)
def test_scalar_order_and_equality(a: Any, b: Any) -> None:
    # Scalars alone hit the cross-type and number boundaries far more often.
    ea, eb = encode_key(a), encode_key(b)
    assert _sign((ea > eb) - (ea < eb)) == ref_cmp(a, b)
    assert (ea == eb) == (ref_cmp(a, b) == 0)


@settings(PURE, max_examples=60)
@given(st.lists(keys, min_size=2, max_size=8))
def test_sorting_by_encoding_sorts_by_value(values: list[Any]) -> None:
    by_bytes = sorted(values, key=encode_key)
    for x, y in itertools.pairwise(by_bytes):
        assert ref_cmp(x, y) <= 0


@PURE
@given(keys)
def test_equal_keys_written_differently_encode_identically(key: Any) -> None:
    assert encode_key(_variant(key)) == encode_key(key)


@PURE
@given(keys, keys)
def test_tuple_elements_do_not_bleed_into_each_other(a: Any, b: Any) -> None:
    # Each element is self-delimiting: (a, b) decodes to exactly its two elements.
    assert same_typed(decode_key(encode_key((a, b))), (canonical(a), canonical(b)))


@PURE
@given(st.binary(max_size=40))
def test_decoding_garbage_raises_only_value_error(data: bytes) -> None:
    try:
        key = decode_key(data)
    except ValueError:
        return
    # Whatever decoded is a real key of the documented types.
    encode_key(key)


@PURE
@given(keys, st.text(_chars, min_size=1, max_size=5))
def test_decode_at_offset_after_tenant(key: Any, tenant: str) -> None:
    from aurora_storage._keys import decode_tenant_key

    full = encode_tenant(tenant) + encode_key(key)
    got_tenant, offset = decode_tenant_key(full)
    assert got_tenant == tenant
    assert same_typed(decode_key(full, offset), canonical(key))


@PURE
@given(texts, texts)
def test_str_prefix_range_matches_startswith(prefix: str, key: str) -> None:
    lo = encode_prefix(prefix)
    hi = prefix_successor(lo)
    assert (lo <= encode_key(key) < hi) == key.startswith(prefix)


@PURE
@given(binaries, binaries)
def test_bytes_prefix_range_matches_startswith(prefix: bytes, key: bytes) -> None:
    lo = encode_prefix(prefix)
    hi = prefix_successor(lo)
    assert (lo <= encode_key(key) < hi) == key.startswith(prefix)


@PURE
@given(st.lists(scalars, max_size=3), st.lists(scalars, max_size=4))
def test_tuple_prefix_range_matches_leading_elements(prefix: list[Any], key: list[Any]) -> None:
    lo = encode_prefix(tuple(prefix))
    hi = prefix_successor(lo)
    leading = len(key) >= len(prefix) and all(
        ref_cmp(p, k) == 0 for p, k in zip(prefix, key, strict=False)
    )
    assert (lo <= encode_key(tuple(key)) < hi) == leading


# ------------------------------------------------------------------ examples


def test_documented_cross_type_order() -> None:
    ordered = [
        None,
        False,
        True,
        -math.inf,
        -(2**70),
        -2.5,
        -1,
        -5e-324,
        0,
        5e-324,
        0.5,
        1,
        2,
        2.5,
        10,
        2**70,
        math.inf,
        "",
        "a",
        "a\x00",
        "ab",
        "\uffff",
        "\U0001f600",
        b"",
        b"\x00",
        b"\xff",
        (),
        (None,),
        ("a",),
        ("a", 1),
        ("b",),
        {},
        {"a": 1},
        {"a": 2},
        {"b": 0},
    ]
    encoded = [encode_key(k) for k in ordered]
    assert encoded == sorted(encoded)
    assert len(set(encoded)) == len(encoded)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (0, -0.0),
        (0, 0.0),
        (-3, -3.0),
        (2**52, float(2**52)),
        ((1, "x"), [1.0, "x"]),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({1: "x", "k": (1,)}, {"k": [1.0], 1.0: "x"}),
    ],
)
def test_canonical_equality(a: Any, b: Any) -> None:
    assert encode_key(a) == encode_key(b)


def test_integral_floats_and_lists_decode_canonically() -> None:
    assert type(decode_key(encode_key(3.0))) is int
    assert type(decode_key(encode_key(-0.0))) is int
    assert decode_key(encode_key([1, [2]])) == (1, (2,))
    assert type(decode_key(encode_key(0.5))) is float


def test_bool_is_not_a_number() -> None:
    assert encode_key(True) != encode_key(1)
    assert encode_key(False) != encode_key(0)
    assert decode_key(encode_key(True)) is True


def test_subclasses_encode_as_their_base_type() -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    assert encode_key(Color.RED) == encode_key(1)
    assert encode_key(Name("x")) == encode_key("x")
    assert encode_key(bytearray(b"ab")) == encode_key(b"ab")
    assert encode_key(memoryview(b"ab")) == encode_key(b"ab")


@pytest.mark.parametrize("nan", [math.nan, -math.nan, (1, math.nan), {"a": math.nan}])
def test_nan_is_rejected(nan: Any) -> None:
    with pytest.raises(InvalidKeyError, match="NaN"):
        encode_key(nan)


@pytest.mark.parametrize(
    "bad",
    [{1, 2}, frozenset(), object(), 1j, (1, {2}), [object()], {"a": {3}}],
    ids=["set", "frozenset", "object", "complex", "tuple-set", "list-object", "dict-set"],
)
def test_unsupported_types_are_rejected(bad: Any) -> None:
    with pytest.raises(InvalidKeyError, match="unsupported key type"):
        encode_key(bad)


def test_self_containing_key_is_rejected() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidKeyError, match="nests too deeply"):
        encode_key(loop)


def test_absurdly_large_int_is_rejected() -> None:
    encode_key(2**2039)
    with pytest.raises(KeyTooLargeError) as info:
        encode_key(2**2040)
    assert info.value.size == 256
    with pytest.raises(KeyTooLargeError):
        encode_key(-(2**2040))


def test_key_size_limit_is_511_bytes_and_named() -> None:
    assert MAX_KEY_SIZE == 511
    with aurora_storage.open("memory://") as repo:
        # Stored key: 0x01 "t" 0x00 (tenant) + 0x20 body 0x00 (str key) = len(body) + 5.
        fits = "k" * (MAX_KEY_SIZE - 5)
        repo.put("t", fits, 1)
        assert repo.get("t", fits) == 1
        too_big = fits + "k"
        for call in (
            lambda: repo.put("t", too_big, 1),
            lambda: repo.get("t", too_big),
            lambda: repo.has("t", too_big),
            lambda: repo.delete("t", too_big),
        ):
            with pytest.raises(KeyTooLargeError) as info:
                call()
            assert info.value.size == 512
            assert info.value.limit == 511
            assert "512 bytes" in str(info.value)
            assert "511" in str(info.value)
            assert info.value.tenant == "t"
        # A long tenant counts against the same limit.
        with pytest.raises(KeyTooLargeError, match="512 bytes"):
            repo.put("tt", fits, 1)
        assert list(repo.keys("t")) == [fits]


def test_key_size_error_is_an_invalid_key_error() -> None:
    assert issubclass(KeyTooLargeError, InvalidKeyError)
    assert issubclass(InvalidKeyError, ValueError)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x99", b"\x20abc", b"\x13\x05\x01", b"\x30\x20a\x00", b"\x05\x05", b"\x20\xff\x00"],
    ids=[
        "empty",
        "unknown-code",
        "unterminated-str",
        "short-int",
        "open-tuple",
        "trailing",
        "bad-utf8",
    ],
)
def test_malformed_encodings_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_key(data)


def test_deeply_nested_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_key(b"\x30" * 5000)


@pytest.mark.parametrize(
    ("prefix", "outside"),
    [
        (("a",), ("a\x00",)),
        ((b"",), (b"\x00",)),
        (("a", b"x"), ("a", b"x\x00y")),
        (((),), ((None,),)),
    ],
)
def test_tuple_prefix_does_not_match_a_longer_str_element(
    prefix: tuple[Any, ...], outside: tuple[Any, ...]
) -> None:
    # Regression: "a" encodes as a byte prefix of "a\x00", so the naive successor range of
    # the prefix ("a",) also held ("a\x00",), whose first element is not "a".
    with aurora_storage.open("memory://") as repo:
        repo.put("t", prefix, 1)
        repo.put("t", outside, 2)
        repo.put("t", (*prefix, "more"), 3)
        assert repo.list("t", prefix=prefix) == [prefix, (*prefix, "more")]
        assert repo.count("t", prefix=prefix) == 2


# ------------------------------------------------------------------ chunk decoding

# Mostly plain str keys (the chunk fast path) with the odd other key mixed in: escaped
# NULs, lone surrogates, ints ending in a zero byte, None (no zero byte at all), tuples.
_chunk_keys = st.lists(
    st.one_of(st.text(_chars, max_size=6), st.text("ab\x00", max_size=3), keys),
    max_size=40,
)


@PURE
@given(st.text(_chars, min_size=1, max_size=4), _chunk_keys, st.booleans())
def test_chunk_decoding_matches_key_by_key(tenant: str, chunk: list[Any], reverse: bool) -> None:
    # Repository scans decode a chunk of stored keys at once (decode_keys), taking a
    # join-and-split shortcut when every key is a plain str; it must agree with decoding
    # each key on its own for any chunk a scan can produce (one tenant, in key order).
    from aurora_storage._keys import decode_keys

    p = encode_tenant(tenant)
    fulls = sorted({p + encode_key(k) for k in chunk}, reverse=reverse)
    want = [decode_key(f[len(p) :]) for f in fulls]
    got = decode_keys(fulls, len(p))
    assert len(got) == len(want)
    assert all(same_typed(g, w) for g, w in zip(got, want, strict=True))


def test_chunk_decoding_is_not_fooled_by_zero_bytes_in_other_keys() -> None:
    # An int whose bytes spell "0x00 <tenant> 0x20" adds a separator and two zero bytes;
    # None keys take zero bytes away. The counts must still catch the mix.
    from aurora_storage._keys import decode_keys

    p = encode_tenant("t")
    sep = b"\x00" + p + b"\x20"
    crafted = int.from_bytes(b"\x7f" + sep + b"x", "big")
    chunk = ["a", None, None, crafted, "b"]
    fulls = [p + encode_key(k) for k in chunk]
    assert decode_keys(fulls, len(p)) == chunk


class _Tag(str):
    """A str subclass equal only to itself: a dict can hold it next to the plain str of
    the same text, and both are stored as that plain str."""

    def __hash__(self) -> int:
        return 12345

    def __eq__(self, other: object) -> bool:
        return self is other


@given(st.text(max_size=8), st.integers(), st.integers())
def test_dict_key_whose_entries_merge_is_refused(name: str, a: int, b: int) -> None:
    """Two entries of a dict key that encode to one stored key would make a key that
    decodes to a one-entry dict, which then reaches no record (list() gave a key that
    get/has/delete could not find); refused, like a value map whose keys merge."""
    key = {_Tag(name): a, name: b}
    assert len(key) == 2
    with pytest.raises(InvalidKeyError, match="merge"):
        encode_key(key)
    with pytest.raises(InvalidKeyError, match="merge"):
        encode_key(("order", [key]))


def test_merging_dict_key_writes_nothing() -> None:
    with aurora_storage.open("memory://") as repo:
        with pytest.raises(InvalidKeyError):
            repo.put("acme", {_Tag("a"): 0, "a": None}, "v")
        assert repo.count("acme") == 0


def test_container_subclass_is_refused_as_key_and_as_prefix() -> None:
    """A tuple/list/dict subclass (a namedtuple) was refused as a key and a bound but
    accepted as a prefix, read through its own __iter__; one rule for all three now."""
    import collections

    point_type = collections.namedtuple("point_type", "x y")  # the kind users pass
    point = point_type("x", "y")
    with pytest.raises(InvalidKeyError):
        encode_key(point)
    with pytest.raises(InvalidKeyError, match="point_type"):
        encode_prefix(point)

    class Items(list[Any]):
        pass

    with pytest.raises(InvalidKeyError, match="Items"):
        encode_prefix(Items(["x"]))
