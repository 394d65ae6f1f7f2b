"""Event-store primitives in the core: the in-process change feed, limit push-down to
backends old and new, and refusal (never emulation) where a capability is missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, example, given, settings

import aurora_storage
from aurora_storage import _eventstore
from aurora_storage._keys import (
    decode_key,
    decode_key_at,
    encode_key,
    encode_tenant,
    prefix_successor,
)
from aurora_storage.backend import (
    Append,
    Chunk,
    RecentChanges,
    encode_counter,
    plan_commit,
    value_version,
)
from aurora_storage.errors import KeyTooLargeError, NotSupportedError, PositionExpiredError
from aurora_storage.memory._backend import MemoryBackend


def test_recent_changes_retention_raises_instead_of_skipping() -> None:
    feed = RecentChanges(max_changes=3)
    for c in range(1, 6):
        feed.record(c, [(b"\x01k%d" % c, b"v")])
    positions = [p for p, _, _ in feed.read(3 << 32, 10)]
    assert positions == [4 << 32, 5 << 32]
    with pytest.raises(PositionExpiredError) as info:
        feed.read(1 << 32, 10)
    assert info.value.position == 1 << 32
    assert info.value.oldest == 2 << 32
    assert isinstance(info.value, LookupError)


def test_recent_changes_skips_system_records_and_never_reuses_positions() -> None:
    feed = RecentChanges()
    feed.record(5, [(b"\x00meta", b"x"), (b"\x01a", b"1")])
    feed.record(5, [(b"\x01b", None)])  # a caller repeating a commit number
    got = feed.read(0, 10)
    assert [k for _, k, _ in got] == [b"\x01a", b"\x01b"]
    assert got[0][0] < got[1][0]
    assert feed.last_position() == got[1][0]


def test_plan_commit_reports_every_failed_condition() -> None:
    state = {b"a": b"1", b"b": b"2"}
    from aurora_storage.backend import ConditionFailed

    with pytest.raises(ConditionFailed) as info:
        plan_commit(
            state.get,
            [],
            [(b"a", None), (b"b", value_version(b"2")), (b"c", value_version(b"x"))],
            [],
        )
    assert info.value.failed == [(0, value_version(b"1")), (2, None)]


_TENANT = encode_tenant("t")
_SEQ = _eventstore.sequence_prefix(_TENANT, "log")
_RECORD = _eventstore.record_key_fn(_SEQ)
_COUNTER = _eventstore.counter_key(_SEQ)
_SPAN = (_SEQ, prefix_successor(_SEQ))

# Keys around one sequence's records: its slots, longer tuples and other element types
# under its prefix (which sort among or after the slots), and a neighbouring sequence.
_NEAR_KEYS = st.one_of(
    st.integers(1, 12).map(_RECORD),
    st.tuples(st.integers(0, 12), st.text(max_size=2)).map(
        lambda t: _TENANT + encode_key(("log", *t))
    ),
    st.one_of(st.text(max_size=3), st.none(), st.floats(0, 20)).map(
        lambda e: _TENANT + encode_key(("log", e))
    ),
    st.integers(1, 12).map(lambda n: _TENANT + encode_key(("lof", n))),
    st.integers(1, 12).map(lambda n: _TENANT + encode_key(("logs", n))),
)


def _last_in(state: dict[bytes, bytes]) -> Callable[[bytes, bytes], bytes | None]:
    def last(start: bytes, stop: bytes) -> bytes | None:
        inside = [k for k in state if start <= k < stop]
        return max(inside) if inside else None

    return last


@settings(max_examples=300, deadline=None)
@given(
    stored=st.sets(_NEAR_KEYS, max_size=8),
    counter=st.integers(0, 10),
    in_batch=st.sets(st.integers(1, 14), max_size=3),
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=2),
)
def test_plan_commit_seek_agrees_with_reading_every_slot(
    stored: set[bytes], counter: int, in_batch: set[int], sizes: list[int]
) -> None:
    # The seeks (the one-seek proof that the slots past the counter are free, the
    # search for the newest record when they are not) must number exactly as the rule
    # says, whatever else sits under the sequence's prefix: the slots after the counter
    # when free, else past the newest numbered record (ops applied), never in a hole.
    state = dict.fromkeys(stored, b"v")
    if counter:
        state[_COUNTER] = encode_counter(counter)
    ops: list[tuple[bytes, bytes | None]] = [(_RECORD(n), b"op") for n in sorted(in_batch)]
    appends = [Append(_COUNTER, _RECORD, [b"a%d" % i for i in range(n)], _SPAN) for n in sizes]
    by_seek = plan_commit(state.get, ops, [], appends, last=_last_in(state))
    numbered = {n for n in range(1, 21) if _RECORD(n) in state} | in_batch
    expected: list[int] = []
    last = counter
    for size in sizes:
        run = range(last + 1, last + size + 1)
        start = last + 1 if numbered.isdisjoint(run) else max(last, *numbered) + 1
        expected.append(start)
        last = start + size - 1
        numbered.update(range(start, last + 1))
    assert by_seek[1] == expected
    planned = dict(by_seek[0])
    for key in stored:  # an append never replaces a stored record
        if key in planned:
            assert (key, planned[key]) in ops


def test_plan_commit_seek_reads_no_slot_when_the_counter_is_ahead() -> None:
    state = {_RECORD(n): b"v" for n in range(1, 6)}
    state[_COUNTER] = encode_counter(5)
    reads: list[bytes] = []

    def read(key: bytes) -> bytes | None:
        reads.append(key)
        return state.get(key)

    appends = [Append(_COUNTER, _RECORD, [b"a", b"b", b"c"], _SPAN)]
    out, firsts = plan_commit(read, [], [], appends, last=_last_in(state))
    assert firsts == [6]
    assert reads == [_COUNTER]  # the counter only: the slots were proven free by one seek
    assert out == [
        (_RECORD(6), b"a"),
        (_RECORD(7), b"b"),
        (_RECORD(8), b"c"),
        (_COUNTER, encode_counter(8)),
    ]
    # Without the seek every slot is read.
    reads.clear()
    assert plan_commit(read, [], [], appends) == (out, firsts)
    assert reads == [_COUNTER, _RECORD(6), _RECORD(7), _RECORD(8)]


class _OldStyleBackend(MemoryBackend):
    """A third-party backend written before ``limit``: its override has no such
    parameter (and must keep working)."""

    def scan_chunks(  # type: ignore[override]  # the older signature is the point
        self, start: bytes, stop: bytes, *, reverse: bool = False, values: bool = True
    ) -> Iterator[Chunk]:
        return super().scan_chunks(start, stop, reverse=reverse, values=values)


def test_limit_with_an_old_style_scan_chunks_override() -> None:
    repo: aurora_storage.Repository[Any, Any] = aurora_storage.Repository(_OldStyleBackend())
    repo.put_many("t", [(i, i) for i in range(10)])
    assert list(repo.keys("t", reverse=True, limit=2)) == [9, 8]
    assert list(repo.items("t", limit=1)) == [(0, 0)]
    repo.close()


def test_memory_keeps_keys_sorted_without_resorting() -> None:
    repo = aurora_storage.open("memory://")
    newest = 0
    for i in (5, 1, 9, 3):
        repo.put("t", ("ev", i), i)
        newest = max(newest, i)
        assert list(repo.keys("t", prefix=("ev",), reverse=True, limit=1)) == [("ev", newest)]
    repo.delete("t", ("ev", 9))
    assert list(repo.keys("t", prefix=("ev",), reverse=True, limit=1)) == [("ev", 5)]
    assert list(repo.keys("t")) == [("ev", 1), ("ev", 3), ("ev", 5)]
    repo.close()


def test_tiered_refuses_instead_of_bypassing_its_tiers() -> None:
    repo = aurora_storage.open(
        "tiered://?hot=memory%3A%2F%2F&cold=memory%3A%2F%2F",
    )
    try:
        assert not repo.capabilities.conditional_writes
        with pytest.raises(NotSupportedError):
            repo.compare_and_set("t", "k", 1, version=None)
        with pytest.raises(NotSupportedError):
            repo.watch("t")
        with pytest.raises(NotSupportedError), repo.batch() as b:
            b.append("t", "log", 1)
        assert not repo.has("t", "k")
    finally:
        repo.close()


def test_a_refused_primitive_is_named_as_called_with_every_backend_that_has_it() -> None:
    repo = aurora_storage.open("tiered://?hot=memory%3A%2F%2F&cold=memory%3A%2F%2F")
    try:
        with pytest.raises(NotSupportedError) as info, repo.batch() as b:
            b.compare_and_set("t", "k", 1, version=None)
        message = str(info.value)
        assert message.startswith("Batch.compare_and_set() needs")
        assert "cas()" not in message
        assert "memory://, lmdb://, rocksdb:// or nats://" in message
        with pytest.raises(NotSupportedError) as info, repo.batch() as b:
            b.insert("t", "k", 1)
        assert str(info.value).startswith("Batch.insert() needs")
        assert "or nats://" in str(info.value)
    finally:
        repo.close()


_ELEM = st.one_of(
    st.text(max_size=4),
    st.integers(-(2**70), 2**70),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.binary(max_size=3),
)
_KEYS = st.recursive(
    _ELEM, lambda c: st.tuples(c, c) | st.tuples(c, c, c) | st.tuples(c), max_leaves=6
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.tuples(st.text(max_size=5), st.integers(0, 2**66)), _KEYS))
def test_key_decoding_fast_paths_agree_with_the_decoder(key: Any) -> None:
    # (str, int) keys - aggregate versions, sequence numbers - take a fast path.
    prefix = encode_tenant("t")
    full = prefix + aurora_storage.encode_key(key)
    assert repr(decode_key_at(full, len(prefix))) == repr(decode_key(full, len(prefix)))


class _Str(str):
    """A str subclass: the same key as its value."""


# Element objects shared between keys, so that a batch's keys reuse the same objects
# (identity) as well as equal ones (1, 1.0, True; "a" and a str subclass "a").
# "y" * 497: (it, 1) fits the key limit with the tenant "t", (it, 2**63) does not.
_POOL: list[Any] = [1, 1.0, True, "a", _Str("a"), "y" * 497, b"a", None, (1,), 0]
# Mostly small positive ints (the memo's case); also its edges and non-ints.
_LAST = st.one_of(
    st.integers(1, 300),
    st.integers(1, 300),
    st.sampled_from([-1, 0, 2**63, 2**64 - 1, 2**64, 1.0, True, 2.5]),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["t", "t", _Str("t"), "u"]),
            st.lists(st.sampled_from(range(len(_POOL))), max_size=2),
            _LAST,
        ),
        min_size=2,
        max_size=8,
    )
)
@example([("t", [0], 5), ("t", [2], 5)])  # (1, 5) then (True, 5): equal, not the same
@example([("t", [5], 1), ("t", [5], 2**63)])  # the reused head, then too large
def test_batch_key_memo_encodes_every_key_as_encode_stored_key(calls: list[Any]) -> None:
    """Batch.insert reuses the encoded head of its last ``(..., n)`` key when the other
    elements are the same objects: every key still gets exactly the bytes of
    encode_stored_key (or its KeyTooLargeError), whatever the neighbours were."""
    repo = aurora_storage.open("memory://")
    batch = repo.batch()
    for tenant, picks, last in calls:
        key = (*(_POOL[i] for i in picks), last)
        try:
            expected: Any = aurora_storage.encode_stored_key(tenant, key)
        except KeyTooLargeError:
            expected = KeyTooLargeError
        before = len(batch._conditions)
        try:
            batch.insert(tenant, key, 1)
        except KeyTooLargeError:
            assert expected is KeyTooLargeError
            assert len(batch._conditions) == before
        else:
            assert batch._conditions[-1][0] == expected
    batch.discard()


# ------------------------------------------------------ the newest (first) key of a prefix

_KEY_ELEM = st.one_of(
    st.sampled_from(["", "a", "ab", "a\x00", "\uffff", "b"]),
    st.integers(-300, 300),
    st.sampled_from([0, 255, 256, 2**63, 2**64, 2**70, 1.5, -0.5]),
    st.sampled_from([b"", b"\xff", b"\xff\xff", b"a"]),
)
_ONE_KEY = st.one_of(
    # (str, positive int): an aggregate's version, a sequence's number (decoded inline)
    st.tuples(st.sampled_from(["a", "ab"]), st.integers(1, 70_000)),
    _KEY_ELEM,
    st.tuples(_KEY_ELEM),
    st.tuples(st.sampled_from(["", "a", "ab", "\uffff"]), _KEY_ELEM),
    st.tuples(st.sampled_from(["a", "ab"]), _KEY_ELEM, _KEY_ELEM),
)
_ONE_PREFIX = st.one_of(
    st.none(),
    st.sampled_from(["", "a", "\uffff", b"", b"\xff", b"a", ()]),
    st.tuples(st.sampled_from(["", "a", "ab", "\uffff"])),
    st.tuples(st.sampled_from(["a", "ab"]), _KEY_ELEM),
)
# Neighbouring tenants: "a" ends where "a\x00b" and "a:b" begin.
_NEIGHBOURS = ["a", "a\x00b", "a:b", "b"]


@pytest.fixture(scope="module")
def three_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    base = tmp_path_factory.mktemp("newest")
    repos = [
        aurora_storage.open("memory://"),
        aurora_storage.open(f"lmdb://{base}/l?sync=false"),
        aurora_storage.open(f"rocksdb://{base}/r?sync=false"),
    ]
    yield repos
    for r in repos:
        r.close()


_tenant_ids = iter(range(10**9))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.dictionaries(st.sampled_from(range(4)), st.lists(_ONE_KEY, max_size=6), max_size=4),
    prefix=_ONE_PREFIX,
    reverse=st.booleans(),
)
@example(keys={0: [("a", 5), ("a", 7), ("ab", 9)]}, prefix=("a",), reverse=True)
@example(keys={0: [("a", 5), ("a", 300), ("ab", 1)]}, prefix=("a",), reverse=True)
@example(keys={0: [("a", 5)], 1: [("a", 9)]}, prefix=("a",), reverse=False)
def test_one_key_lookup_agrees_with_the_general_scan(
    three_stores: list[Any], keys: dict[int, list[Any]], prefix: Any, reverse: bool
) -> None:
    """keys(t, prefix=p, reverse=r, limit=1) - one engine seek and one decode - returns
    what the general scan returns first, on every engine: tuple keys, str/bytes
    prefixes, prefixes whose range ends at the tenant's end, neighbouring tenants."""
    run = next(_tenant_ids)
    tenants = [f"{run}:{name}" for name in _NEIGHBOURS]
    for repo in three_stores:
        for i, ks in keys.items():
            if ks:
                repo.put_many(tenants[i], [(k, 1) for k in ks])
        for tenant in tenants:
            general = list(repo.keys(tenant, prefix=prefix, reverse=reverse))[:1]
            one = list(repo.keys(tenant, prefix=prefix, reverse=reverse, limit=1))
            assert repr(one) == repr(general), (repo, tenant)
