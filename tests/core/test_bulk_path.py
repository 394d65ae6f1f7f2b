"""put_many's batch path: the keys of a batch encoded in one pass (``encode_str_keys``),
the items split in bulk (``split_pairs``), and the ready lists handed to
``Backend.write_puts``. Each must give exactly what the item-by-item path gives."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTenantError,
    KeyTooLargeError,
    SerializationError,
    encode_stored_key,
)
from aurora_storage._args import pair, split_pairs
from aurora_storage._keys import _TEXT_HEAD_MIN, MAX_KEY_SIZE, encode_str_keys, encode_tenant
from aurora_storage.memory import MemoryBackend

PURE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_chars = st.characters(codec=None, exclude_categories=())


class _Str(str):
    """A str subclass whose own encode() lies: the stored key must use its value."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"wrong"


str_keys = st.text(_chars, max_size=12) | st.sampled_from(["", "a\x00b", "\x00", "x" * 600])
any_keys = (
    str_keys
    | st.integers(-(2**40), 2**40)
    | st.tuples(st.text(max_size=4), st.integers(0, 9))
    | st.binary(max_size=6)
    | st.builds(_Str, st.text(max_size=6))
)


@PURE
@given(st.lists(str_keys | any_keys, max_size=12), st.sampled_from(["acme", "a\x00b", "ü"]))
def test_batch_keys_equal_the_stored_keys_one_by_one(keys: list[Any], tenant: str) -> None:
    repo = aurora_storage.open("memory://")
    try:
        expected: list[bytes] | Exception = [encode_stored_key(tenant, k) for k in keys]
    except KeyTooLargeError as exc:
        expected = exc
    if isinstance(expected, Exception):
        with pytest.raises(KeyTooLargeError):
            repo._fulls(tenant, keys)
    else:
        assert repo._fulls(tenant, keys) == expected
        fast = encode_str_keys(encode_tenant(tenant) + b"\x20", keys)
        # The one-pass encoder either gives the same bytes or declines (None).
        assert fast is None or fast == expected


tenants = st.sampled_from(["acme", "a\x00b", "ü", "\ud800", "t:1/é"]) | st.text(
    _chars, min_size=1, max_size=6
)


@PURE
@given(st.lists(str_keys, min_size=_TEXT_HEAD_MIN, max_size=40), tenants)
def test_text_head_batches_give_the_stored_keys_or_decline(keys: list[str], tenant: str) -> None:
    # Batches long enough for the text form of the head (a tenant's head decoded once,
    # each key built as text then encoded): byte-identical to encode_stored_key, or
    # None for what only the key-by-key path does exactly.
    head = encode_tenant(tenant) + b"\x20"
    fast = encode_str_keys(head, keys)
    if fast is None:
        return
    assert fast == [encode_stored_key(tenant, k) for k in keys]


def test_text_head_batches_of_tenants_without_a_text_form() -> None:
    keys = [f"k{i}-ü" for i in range(_TEXT_HEAD_MIN + 2)]
    for tenant in ("a\x00b", "\ud800x", "acme"):
        head = encode_tenant(tenant) + b"\x20"
        assert encode_str_keys(head, keys) == [encode_stored_key(tenant, k) for k in keys]
    head = encode_tenant("acme") + b"\x20"
    assert encode_str_keys(head, [*keys, "\udc80"]) is None  # a lone surrogate
    assert encode_str_keys(head, [*keys, "x" * MAX_KEY_SIZE]) is None  # too long


def test_one_pass_encoder_declines_what_it_cannot_do_exactly() -> None:
    head = encode_tenant("t") + b"\x20"
    assert encode_str_keys(head, ["a", "b"]) == [head + b"a\x00", head + b"b\x00"]
    assert encode_str_keys(head, []) == []
    assert encode_str_keys(head, ["a", 1]) is None  # another type
    assert encode_str_keys(head, [_Str("a")]) is None  # a subclass
    assert encode_str_keys(head, ["a\x00"]) is None  # a NUL to escape
    assert encode_str_keys(head, ["\ud800"]) is None  # a lone surrogate
    assert encode_str_keys(head, ["x" * MAX_KEY_SIZE]) is None  # too long
    # Long in characters but short enough in bytes: still encoded in the one pass.
    fits = "x" * (MAX_KEY_SIZE - len(head) - 1)
    assert encode_str_keys(head, [fits]) == [head + fits.encode() + b"\x00"]


def test_bad_keys_and_tenants_raise_the_per_key_errors() -> None:
    repo = aurora_storage.open("memory://")
    with pytest.raises(InvalidKeyError):
        repo.put_many("t", [("a", 1), (object(), 2)])
    with pytest.raises(KeyTooLargeError):
        repo.put_many("t", [("a", 1), ("x" * 600, 2)])
    with pytest.raises(InvalidTenantError):
        repo.put_many("", [])
    with pytest.raises(InvalidTenantError):
        repo.put_many(3, [("a", 1)])  # type: ignore[arg-type]  # a wrong tenant type on purpose
    assert repo.count("t") == 0


items_lists = st.lists(
    st.tuples(st.text(max_size=3), st.integers())
    | st.lists(st.integers(), min_size=2, max_size=2)
    | st.lists(st.integers(), max_size=3)
    | st.text(max_size=3)
    | st.integers(),
    max_size=6,
)


@PURE
@given(items_lists)
def test_split_pairs_matches_pair_by_pair(items: list[Any]) -> None:
    try:
        expected = [pair(item, i, "put_many") for i, item in enumerate(items)]
    except InvalidArgumentError as exc:
        message = str(exc)
        with pytest.raises(InvalidArgumentError) as info:
            split_pairs(items, "put_many")
        assert str(info.value) == message
    else:
        assert split_pairs(items, "put_many") == (
            [k for k, _ in expected],
            [v for _, v in expected],
        )


def test_split_pairs_takes_mappings_and_iterables() -> None:
    assert split_pairs({"a": 1, "b": 2}, "m") == (["a", "b"], [1, 2])
    assert split_pairs(iter([("a", 1)]), "m") == (["a"], [1])
    assert split_pairs((x for x in [("a", 1), ["b", 2]]), "m") == (["a", "b"], [1, 2])
    with pytest.raises(InvalidArgumentError):
        split_pairs("ab", "m")
    with pytest.raises(InvalidArgumentError):
        split_pairs(5, "m")


class _Recording(MemoryBackend):
    """A memory backend that records its write_puts calls (through the default)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[bytes]] = []

    def write_puts(self, keys: Sequence[bytes], values: Iterable[bytes]) -> int:
        self.calls.append(list(keys))
        return super().write_puts(keys, values)


def test_put_many_hands_the_engine_ready_keys_in_one_call() -> None:
    backend = _Recording()
    repo: aurora_storage.Repository[Any, Any] = aurora_storage.Repository(backend)
    assert repo.put_many("t", [("a", 1), (2, "x"), ("c", None)]) == 3
    assert backend.calls == [[encode_stored_key("t", k) for k in ("a", 2, "c")]]
    assert repo.get_many("t", ["a", 2, "c"]) == [1, "x", None]
    assert repo.put_many("t", []) == 0
    assert len(backend.calls) == 1  # nothing to write: no engine call


def test_a_value_the_codec_refuses_writes_nothing_and_is_named() -> None:
    repo = aurora_storage.open("memory://")
    with pytest.raises(SerializationError) as info:
        repo.put_many("t", [("a", 1), ("b", float("nan")), ("c", object())])
    assert info.value.key == "b"
    assert info.value.tenant == "t"
    assert repo.count("t") == 0


def _counting(values: list[bytes], pulled: list[int]) -> Iterator[bytes]:
    for v in values:
        pulled[0] += 1
        yield v


@pytest.mark.parametrize("engine", ["rocksdb", "lmdb", "memory"])
def test_write_puts_reads_no_more_values_than_keys(engine: str, tmp_path: Any) -> None:
    url = "memory://" if engine == "memory" else f"{engine}://{tmp_path}/s"
    repo = aurora_storage.open(url)
    try:
        keys = [encode_stored_key("t", k) for k in ("a", "b")]
        pulled = [0]
        n = repo.backend.write_puts(keys, _counting([b"1", b"2", b"3"], pulled))
        assert n == 2
        assert pulled == [2]
        assert repo.get_many("t", ["a", "b"]) == [1, 2]
    finally:
        repo.close()


@pytest.mark.parametrize("engine", ["rocksdb", "lmdb"])
def test_write_puts_writes_nothing_when_a_value_fails(engine: str, tmp_path: Any) -> None:
    repo = aurora_storage.open(f"{engine}://{tmp_path}/s")
    try:
        keys = [encode_stored_key("t", k) for k in ("a", "b", "c")]

        def values() -> Iterator[bytes]:
            yield b"1"
            raise ValueError("codec refused")

        with pytest.raises(ValueError, match="codec refused"):
            repo.backend.write_puts(keys, values())
        assert repo.count("t") == 0
    finally:
        repo.close()
