"""LMDB's event-store primitives: the change log (chosen at creation and recorded in
the store, trimmed by retention; an expired position raises instead of skipping), and
the conditional commit's fast path."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, example, given, settings

import aurora_storage
import aurora_storage_lmdb._eventstore as lmdb_eventstore
from aurora_storage import _eventstore
from aurora_storage._keys import prefix_successor
from aurora_storage.backend import Append, ConditionFailed, encode_counter, value_version
from aurora_storage.errors import ConfigurationError, PositionExpiredError


def test_change_log_is_recorded_in_the_store(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path}/s?sync=false"
    with aurora_storage.open(url + "&change_log=true") as repo:
        assert repo.capabilities.multi_process_change_feed
        start = repo.last_position()
    # Opened later without the option, it still logs: every process must.
    with aurora_storage.open(url) as repo:
        assert repo.capabilities.multi_process_change_feed
        repo.put("t", "k", 1)
    with aurora_storage.open(url) as repo:
        assert [(c.key, c.value) for c in repo.watch("t", after=start, timeout=0.1)] == [("k", 1)]


def test_change_log_cannot_be_added_to_an_existing_store(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path}/s?sync=false"
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 1)
        assert not repo.capabilities.multi_process_change_feed
    with pytest.raises(ConfigurationError, match="change_log"):
        aurora_storage.open(url + "&change_log=true")
    with aurora_storage.open(url) as repo:
        assert repo.get("t", "k") == 1


def test_trimmed_log_raises_position_expired(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path}/s?sync=false&change_log=true&change_log_retention=10"
    with aurora_storage.open(url) as repo:
        start = repo.last_position()
        for i in range(300):  # crosses a trim point (every 256 transactions)
            repo.put("t", i, i)
        with pytest.raises(PositionExpiredError) as info:
            next(repo.watch("t", after=start, timeout=0.1))
        assert info.value.oldest > start
        # Resuming from the oldest retained position still works, in order.
        got = [c.key for c in repo.watch("t", after=info.value.oldest, timeout=0.1)]
        assert got == list(range(300 - len(got), 300))
        assert len(got) >= 10


# ---------------------------------------------------------------- the commit's fast path

_SLOTS = 6  # numbers a test sequence can reach: 1..6


@st.composite
def _commit_case(draw: st.DrawFn) -> dict[str, Any]:
    """A store state and a batch over a small key universe, so that conflicts (an
    existing key, a key written twice, a slot taken by a record written without an
    append, a delete of a conditioned key) are common."""
    universe = [b"k%d" % i for i in range(5)]
    values = st.binary(max_size=3)
    state = draw(st.dictionaries(st.sampled_from(universe), values, max_size=3))
    occupied = draw(st.lists(st.integers(1, _SLOTS), max_size=2, unique=True))
    counter = draw(st.one_of(st.none(), st.integers(0, 3)))
    ops = draw(
        st.lists(st.tuples(st.sampled_from(universe), st.one_of(st.none(), values)), max_size=3)
    )
    # A condition's key is usually written by the batch (Batch.insert adds the put too);
    # Backend.commit also takes a condition on a key it does not write ("bare").
    conditioned = draw(st.lists(st.sampled_from(universe), max_size=3))
    kinds = draw(st.lists(st.sampled_from(["absent", "current", "stale"]), min_size=3))
    bare = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    appends = draw(st.lists(st.lists(values, min_size=1, max_size=3), max_size=2))
    return {
        "state": state,
        "occupied": occupied,
        "counter": counter,
        "ops": ops,
        "conditioned": list(zip(conditioned, kinds, bare, strict=False)),
        "appends": appends,
    }


@pytest.fixture(scope="module")
def two_lmdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    base = tmp_path_factory.mktemp("fastpath")
    a = aurora_storage.open(f"lmdb://{base}/a?sync=false")
    b = aurora_storage.open(f"lmdb://{base}/b?sync=false")
    yield a.backend, b.backend
    a.close()
    b.close()


_case_ids = itertools.count()


@example(
    case={
        "state": {b"k0": b"x"},
        "occupied": [],
        "counter": None,
        "ops": [],
        "conditioned": [(b"k0", "absent", True)],
        "appends": [[b"v"]],
    }
)  # a condition on an existing key the batch does not write: must fail
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_commit_case())
def test_commit_fast_path_writes_what_the_general_path_writes(
    two_lmdb: tuple[Any, Any], case: dict[str, Any]
) -> None:
    """LMDB's commit tries no-overwrite puts first and falls back to the general path
    (conditions and slots read first) when one finds its key taken: from any state, for
    any batch, it returns, raises and writes exactly what the general path alone does
    (including the appends' numbers past occupied slots, a delete of a conditioned key
    and a condition on a key the batch does not write, which the fast path must not
    take)."""
    # A fresh namespace per example: examples never see each other's records.
    ns = b"\x01fp%d\x00" % next(_case_ids)
    seq_prefix = ns + b"seq"
    record = _eventstore.record_key_fn(seq_prefix)
    counter = b"\x00test:seq:" + ns
    outcomes = []
    for backend, commit in zip(
        two_lmdb, (lmdb_eventstore.commit, lmdb_eventstore._commit_general), strict=True
    ):
        setup: list[tuple[bytes, bytes | None]] = [(ns + k, v) for k, v in case["state"].items()]
        setup += [(record(n), b"occupied") for n in case["occupied"]]
        if case["counter"] is not None:
            setup.append((counter, encode_counter(case["counter"])))
        backend.write(setup)
        ops = [(ns + k, v) for k, v in case["ops"]]
        conditions = []
        for k, kind, bare in case["conditioned"]:
            key = ns + k
            current = backend.get(key)
            if kind == "absent" or current is None:
                expected = None
            elif kind == "current":
                expected = value_version(current)
            else:
                expected = value_version(current + b"stale")
            conditions.append((key, expected))
            if not bare:
                ops.append((key, b"cond"))
        appends = [
            Append(counter, record, values, (seq_prefix, prefix_successor(seq_prefix)))
            for values in case["appends"]
        ]
        try:
            result: Any = commit(backend, ops, conditions, appends)
        except ConditionFailed as exc:
            result = ("failed", exc.failed)
        keys = [ns + k for k in (b"k%d" % i for i in range(5))]
        keys += [record(n) for n in range(1, _SLOTS + 10)] + [counter]
        outcomes.append((result, backend.get_many(keys)))
    assert outcomes[0] == outcomes[1]


@st.composite
def _versions_case(draw: st.DrawFn) -> dict[str, Any]:
    """A store state and a batch without appends whose every condition is on a version
    (the current one, a stale one, or one of a key that is absent), with puts and
    deletes over a small key universe (a conditioned key deleted, written twice, or not
    written at all)."""
    universe = [b"k%d" % i for i in range(4)]
    values = st.binary(max_size=3)
    return {
        "state": draw(st.dictionaries(st.sampled_from(universe), values, max_size=4)),
        "ops": draw(
            st.lists(st.tuples(st.sampled_from(universe), st.one_of(st.none(), values)), max_size=4)
        ),
        "conditioned": draw(
            st.lists(
                st.tuples(st.sampled_from(universe), st.sampled_from(["current", "stale"])),
                min_size=1,
                max_size=3,
            )
        ),
    }


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_versions_case())
def test_commit_version_path_writes_what_the_general_path_writes(
    two_lmdb: tuple[Any, Any], case: dict[str, Any]
) -> None:
    """A batch whose conditions are all on versions (no append) takes its own path (one
    read per condition in the write transaction, no planner): from any state it
    returns, raises and writes exactly what the general path alone does, including a
    failed condition (ConditionFailed naming every failed one) and deletes."""
    ns = b"\x01vp%d\x00" % next(_case_ids)
    outcomes = []
    for backend, commit in zip(
        two_lmdb, (lmdb_eventstore.commit, lmdb_eventstore._commit_general), strict=True
    ):
        backend.write([(ns + k, v) for k, v in case["state"].items()])
        conditions = []
        for k, kind in case["conditioned"]:
            current = backend.get(ns + k)
            base = b"absent" if current is None else current
            conditions.append(
                (ns + k, value_version(base if kind == "current" else base + b"stale"))
            )
        ops = [(ns + k, v) for k, v in case["ops"]]
        try:
            result: Any = commit(backend, ops, conditions, ())
        except ConditionFailed as exc:
            result = ("failed", exc.failed)
        keys = [ns + b"k%d" % i for i in range(4)]
        outcomes.append((result, backend.get_many(keys)))
    assert outcomes[0] == outcomes[1]
