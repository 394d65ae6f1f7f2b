"""A key a tiered pair accepts is one every later operation of the pair can hold.

A projection-mode rebuild builds its new projection under a 15-byte shadow prefix, and
a history record the projection cannot apply is parked in hot under a 15-byte prefix,
within the 511 bytes every engine takes (LMDB's limit). Keys within 15 bytes of that
limit were accepted live, and then no rebuild was ever possible (``MDB_BAD_VALSIZE``,
naming neither the key nor the cause); a poison record with a long history key wedged
every catch-up and open. Now a projection-mode pair refuses such keys up front
(``KeyTooLargeError`` with the pair's limit and why; through ``ProjectionError`` for a
projected key, as for other too-large keys), and a rebuild or catch-up that meets one in
an existing store raises a typed error naming the key and the fix, before the engine is
reached. A cache-mode rebuild builds no shadow any more (it walks both tiers and copies
the difference), so a cache pair takes every key a repository takes.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiered_helpers import tamper

import aurora_storage
from aurora_storage._keys import MAX_KEY_SIZE, encode_key, encode_tenant
from aurora_storage.errors import KeyTooLargeError
from aurora_storage.tiered import (
    HistoryRecord,
    ProjectionError,
    ProjectionState,
    TieredRepository,
)
from aurora_storage.tiered._log import (
    HISTORY_KEY_LIMIT,
    HOT_KEY_LIMIT,
    REBUILD,
    SHADOW,
    SHADOW_END,
)

#: the stored bytes of tenant "acme" and of a str key's framing around its text
HEAD = len(encode_tenant("acme"))


def stored_len(text_len: int) -> int:
    """The stored key length of tenant "acme" and an ASCII str key of ``text_len`` (of
    any length: encoded without the repositories' size check)."""
    return len(encode_tenant("acme") + encode_key("x" * text_len))


def text_for(stored: int) -> str:
    """An ASCII str key whose stored key (tenant "acme") is ``stored`` bytes."""
    n = stored - (stored_len(10) - 10)
    key = "k" * n
    assert stored_len(n) == stored
    return key


def by_id(record: HistoryRecord, state: ProjectionState) -> None:
    """Projects each event under the id it carries."""
    state.put(record.value["id"], {"seen": record.key})


def engines(tmp_path: Path, name: str, **kw: Any) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open(f"lmdb://{tmp_path}/{name}-hot?sync=false"),
        cold=aurora_storage.open(f"rocksdb://{tmp_path}/{name}-cold"),
        **kw,
    )


def shadow_left(t: TieredRepository[Any, Any]) -> list[bytes]:
    backend = t.hot.backend
    return [k for k, _ in backend.scan(SHADOW, SHADOW_END)] + (
        [REBUILD] if backend.get(REBUILD) is not None else []
    )


def test_the_limits() -> None:
    assert HOT_KEY_LIMIT == 511 - len(SHADOW) == 496
    assert HISTORY_KEY_LIMIT == HOT_KEY_LIMIT - 15 == 481


# --------------------------------------------------------------------------- new keys


def test_projected_keys_either_are_refused_up_front_or_survive_a_rebuild(
    tmp_path: Path,
) -> None:
    """Any projected key length: refused with ProjectionError (cause KeyTooLargeError
    with the pair's limit; nothing written), or accepted, and then rebuild() works."""
    counter = itertools.count()
    with engines(tmp_path, "p", projection=by_id) as t:

        @settings(max_examples=50, deadline=None)
        @given(stored=st.integers(HOT_KEY_LIMIT - 12, 511) | st.integers(512, 1500))
        def check(stored: int) -> None:
            i = next(counter)
            ident = text_for(stored)[:-4] + f"{i:04d}"
            before = t.history.count("acme")
            if stored > HOT_KEY_LIMIT:
                with pytest.raises(ProjectionError) as info:
                    t.put("acme", f"e{i:05d}", {"id": ident})
                cause = info.value.__cause__
                assert isinstance(cause, KeyTooLargeError)
                assert cause.limit == HOT_KEY_LIMIT
                assert cause.size == stored
                assert "shadow" in str(cause)
                assert str(HOT_KEY_LIMIT) in str(cause)
                assert info.value.durable is False
                assert t.history.count("acme") == before
            else:
                t.put("acme", f"e{i:05d}", {"id": ident})
                assert t.get("acme", ident) == {"seen": f"e{i:05d}"}
            assert t.rebuild() == t.history.count("acme")

        check()
        assert shadow_left(t) == []


def test_history_keys_either_are_refused_up_front_or_survive_a_rebuild(
    tmp_path: Path,
) -> None:
    """Any history key length: refused with KeyTooLargeError (the pair's limit, why;
    nothing written in either tier), or accepted, and then a rebuild works, even one
    that parks every record (a parked record is kept under PARKED + its key, inside the
    rebuild's shadow)."""
    counter = itertools.count()
    with engines(tmp_path, "h", projection=by_id, on_poison="park") as t:

        @settings(max_examples=50, deadline=None)
        @given(stored=st.integers(HISTORY_KEY_LIMIT - 12, 511) | st.integers(512, 1500))
        def check(stored: int) -> None:
            key = text_for(stored)[:-4] + f"{next(counter):04d}"
            cold = dict(t.cold.backend.scan(b"\x00", b"\xff"))
            hot = dict(t.hot.backend.scan(b"\x00", b"\xff"))
            if stored > HISTORY_KEY_LIMIT:
                with pytest.raises(KeyTooLargeError) as info:
                    t.put("acme", key, {"id": "x"})
                assert info.value.limit == HISTORY_KEY_LIMIT
                assert info.value.key == key
                assert info.value.tenant == "acme"
                assert str(HISTORY_KEY_LIMIT) in str(info.value)
                assert "parked" in str(info.value)
                assert dict(t.cold.backend.scan(b"\x00", b"\xff")) == cold
                assert dict(t.hot.backend.scan(b"\x00", b"\xff")) == hot
            else:
                t.put("acme", key, {"id": "x"})

        check()
        n = t.history.count("acme")
        assert n > 0
        assert t.rebuild() == n

    def poison(record: HistoryRecord, state: ProjectionState) -> None:
        raise ValueError("no longer applies")

    # Every record parked in the rebuild's shadow: the longest accepted key fits.
    with engines(tmp_path, "h", projection=poison, on_poison="park") as t:
        assert t.rebuild() == n
        assert len(t.parked("acme")) == n
        assert shadow_left(t) == []


@pytest.mark.parametrize("stored", [HISTORY_KEY_LIMIT + 1, MAX_KEY_SIZE, MAX_KEY_SIZE + 1, 900])
@pytest.mark.parametrize("how", ["put", "insert", "put_many", "batch", "tenant_view"])
def test_every_write_path_refuses_a_history_key_over_the_pairs_limit(
    tmp_path: Path, how: str, stored: int
) -> None:
    """Every length over the pair's limit, also past the 511 bytes of every engine
    (which got the repositories' generic error, limit 511, instead of the pair's)."""
    key = text_for(stored)
    with engines(tmp_path, how, projection=by_id) as t:
        t.put("acme", "ok", {"id": "x"})
        cold = dict(t.cold.backend.scan(b"\x00", b"\xff"))
        hot = dict(t.hot.backend.scan(b"\x00", b"\xff"))

        def write() -> None:
            if how == "put":
                t.put("acme", key, {"id": "y"})
            elif how == "insert":
                t.insert("acme", key, {"id": "y"})
            elif how == "put_many":
                t.put_many("acme", [("ok2", {"id": "y"}), (key, {"id": "y"})])
            elif how == "batch":
                with t.batch() as b:
                    b.put("globex", "ok2", {"id": "y"})
                    b.put("acme", key, {"id": "y"})
            else:
                t.tenant("acme").put(key, {"id": "y"})

        with pytest.raises(KeyTooLargeError) as info:
            write()
        assert info.value.limit == HISTORY_KEY_LIMIT
        assert info.value.size == stored
        assert info.value.key == key
        assert "parked" in str(info.value)
        assert dict(t.cold.backend.scan(b"\x00", b"\xff")) == cold
        assert dict(t.hot.backend.scan(b"\x00", b"\xff")) == hot


def test_a_cache_pair_takes_every_key_a_repository_takes_and_rebuilds_it(
    tmp_path: Path,
) -> None:
    """Cache mode: keys up to the 511 bytes of every repository, through every write
    path, and rebuild() (a warm-up) copies them (it failed with MDB_BAD_VALSIZE)."""
    counter = itertools.count()
    with engines(tmp_path, "c") as t:

        @settings(max_examples=30, deadline=None)
        @given(stored=st.integers(HOT_KEY_LIMIT - 4, 511))
        def check(stored: int) -> None:
            i = next(counter)
            key = text_for(stored)[:-4] + f"{i:04d}"
            if i % 3 == 0:
                t.put("acme", key, i)
            elif i % 3 == 1:
                t.put_many("acme", [(key, i)])
            else:
                with t.batch() as b:
                    b.put("acme", key, i)
            assert t.get("acme", key) == i

        check()
        biggest = text_for(511)
        tamper(t.cold, "acme", {biggest: -1})  # around the pair: the cache never saw it
        assert t.rebuild() == t.cold.count("acme")
        assert dict(t.hot.items("acme")) == dict(t.cold.items("acme"))
        assert t.get("acme", biggest) == -1
        assert t.delete("acme", biggest)


# --------------------------------------------------------------------------- old stores


def test_a_rebuild_meeting_a_long_projected_key_names_it_and_keeps_the_old_projection(
    tmp_path: Path,
) -> None:
    """History (written around the pair) whose projection now makes a key over the
    limit: under ``stop`` the rebuild is abandoned with ProjectionError (durable) whose
    cause names the projected key and the limit; the old projection stays."""
    with engines(tmp_path, "p", projection=by_id) as t:
        for i in range(10):
            t.put("acme", f"e{i}", {"id": f"o-{i}"})
        before = dict(t.hot.items("acme"))
        ident = text_for(HOT_KEY_LIMIT + 2)
        tamper(t.cold, "acme", {"e99": {"id": ident}})
        with pytest.raises(ProjectionError) as info:
            t.rebuild()
        assert info.value.durable is True
        assert info.value.key == "e99"
        cause = info.value.__cause__
        assert isinstance(cause, KeyTooLargeError)
        assert cause.key == ident
        assert cause.limit == HOT_KEY_LIMIT
        assert dict(t.hot.items("acme")) == before
        assert shadow_left(t) == []


@pytest.mark.parametrize("stored", [HISTORY_KEY_LIMIT + 5, 505])
def test_parking_a_long_history_key_names_it_and_the_fix(tmp_path: Path, stored: int) -> None:
    """A poison record under a history key over the limit (written before it): parking
    it raises KeyTooLargeError naming the record and the fix (fix the projection, or
    drop the tenant), in a rebuild (the old projection stays) and in catch-up (an open
    that used to fail with the engine's MDB_BAD_VALSIZE, forever); fixing the
    projection lets the pair open and apply it."""
    key = text_for(stored)
    ok = [True]

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        if not ok[0]:
            raise ValueError("poison")
        state.put("n", state.get("n", 0) + 1)

    with engines(tmp_path, "k", projection=proj, on_poison="park") as t:
        t.put("acme", "e0", {})
        tamper(t.cold, "acme", {key: {}})  # around the pair: hot does not see it
        ok[0] = False
        if stored <= HOT_KEY_LIMIT:  # it fits parked live, not in a rebuild's shadow
            with pytest.raises(KeyTooLargeError) as info:
                t.rebuild()
            assert info.value.key == key
            assert "drop_tenant()" in str(info.value)
            assert "MDB_" not in str(info.value)
            assert t.get("acme", "n") == 1
            assert shadow_left(t) == []
        seq = t.stats()["cold_seq"]
    # Catch-up: a log entry names the record, as if hot had missed its write.
    cold = aurora_storage.open(f"rocksdb://{tmp_path}/k-cold")
    from aurora_storage.tiered._log import log_key, one

    cold.backend.write([(log_key(seq + 1), one(cold._full("acme", key)))])
    cold.close()
    if stored > HOT_KEY_LIMIT:
        with pytest.raises(KeyTooLargeError) as info:
            engines(tmp_path, "k", projection=proj, on_poison="park")
        assert info.value.key == key
        assert "MDB_" not in str(info.value)
    ok[0] = True
    with engines(tmp_path, "k", projection=proj, on_poison="park") as t:
        assert t.lag == 0
        assert t.get("acme", "n") == 2


def _memory_pair(**kw: Any) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open("memory://"), cold=aurora_storage.open("memory://"), **kw
    )


_WRITE_PATHS = ["put", "insert", "put_many", "batch", "tenant_view"]


@settings(max_examples=150, deadline=None)
@given(
    key=st.one_of(
        st.text(min_size=440, max_size=1200),
        st.tuples(st.text(max_size=700), st.integers(1, 255)),
        st.tuples(st.integers(), st.text(min_size=400, max_size=900), st.floats(0.5, 1e9)),
        st.lists(st.text(max_size=120), min_size=3, max_size=9).map(tuple),
    ),
    how=st.sampled_from(_WRITE_PATHS),
)
def test_any_history_key_over_the_limit_gets_the_pairs_error_on_every_write_path(
    key: Any, how: str
) -> None:
    """Keys of any shape and length, through every write path: a history key is taken
    up to the pair's 481 bytes; every longer one, past the engines' 511 bytes too, is
    refused with the pair's KeyTooLargeError (limit 481, why, nothing written)."""
    stored = len(encode_tenant("acme") + encode_key(key))

    def counting(record: HistoryRecord, state: ProjectionState) -> None:
        state.put("n", state.get("n", 0) + 1)

    with _memory_pair(projection=counting) as t:
        values = {"id": "x"}
        before = dict(t.cold.backend.scan(b"\x00", b"\xff"))

        def write() -> None:
            if how == "put":
                t.put("acme", key, values)
            elif how == "insert":
                t.insert("acme", key, values)
            elif how == "put_many":
                t.put_many("acme", [("short", values), (key, values)])
            elif how == "batch":
                with t.batch() as b:
                    b.put("acme", ("short", 1), values)
                    b.put("acme", key, values)
            else:
                t.tenant("acme").put(key, values)

        if stored <= HISTORY_KEY_LIMIT:
            write()
            assert t.history.get("acme", key) == values
            return
        with pytest.raises(KeyTooLargeError) as info:
            write()
        assert info.value.limit == HISTORY_KEY_LIMIT
        assert info.value.size == stored
        assert info.value.tenant == "acme"
        assert "parked" in str(info.value)
        assert dict(t.cold.backend.scan(b"\x00", b"\xff")) == before


@settings(max_examples=60, deadline=None)
@given(key=st.text(min_size=470, max_size=1500) | st.tuples(st.text(max_size=900), st.integers()))
def test_any_projected_key_over_the_limit_gets_the_pairs_error(key: Any) -> None:
    """A projection putting a key of any shape and length over 496 bytes: the write is
    rejected (ProjectionError, durable=False) with the pair's KeyTooLargeError as its
    cause (limit 496), also past the engines' 511 bytes (which gave limit 511)."""
    stored = len(encode_tenant("acme") + encode_key(key))

    def long_key(record: HistoryRecord, state: ProjectionState) -> None:
        state.put(key, 1)

    with _memory_pair(projection=long_key) as t:
        if stored <= HOT_KEY_LIMIT:
            t.put("acme", "e", {})
            assert t.get("acme", key) == 1
            return
        with pytest.raises(ProjectionError) as info:
            t.put("acme", "e", {})
        assert info.value.durable is False
        cause = info.value.__cause__
        assert isinstance(cause, KeyTooLargeError)
        assert cause.limit == HOT_KEY_LIMIT
        assert cause.size == stored
        assert cause.key == key
        assert "shadow" in str(cause)
        assert t.history.count("acme") == 0
