"""Event-store primitives in the core: the in-process change feed, limit push-down to
backends old and new, and refusal (never emulation) where a capability is missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import aurora_storage
from aurora_storage._keys import decode_key, encode_tenant
from aurora_storage._repository import _decode_key_at
from aurora_storage.backend import Chunk, RecentChanges, plan_commit, value_version
from aurora_storage.errors import NotSupportedError, PositionExpiredError
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


class _OldStyleBackend(MemoryBackend):
    """A third-party backend written before ``limit``: its override has no such
    parameter (and must keep working)."""

    def scan_chunks(  # type: ignore[override]
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
    assert repr(_decode_key_at(full, len(prefix))) == repr(decode_key(full, len(prefix)))
