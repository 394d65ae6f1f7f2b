"""The projection-mode write path's shortcuts (issue #17) change nothing a projection or a
reader sees: a ``str`` history key reaches the projection without being decoded again,
the record is built without the dataclass ``__init__``, and one applier serves every
write of a pair."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiered_helpers import Broken, flaky, flaky_repo

from aurora_storage.errors import KeyExistsError
from aurora_storage.tiered import (
    HistoryRecord,
    HotTierError,
    ProjectionError,
    ProjectionState,
    TenantStoppedError,
    TieredRepository,
)

Tiered = TieredRepository[Any, Any]


class _Str(str):
    """A str subclass: stored as a str key, read back from history as a plain str."""


def _recording(seen: list[HistoryRecord]) -> Any:
    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        seen.append(record)
        state.put("last", record.value)

    return proj


_KEYS = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=20),
    st.lists(st.one_of(st.text(max_size=5), st.integers(0, 99)), min_size=1, max_size=3),
    st.text(max_size=10).map(_Str),
)


@settings(max_examples=150, deadline=None)
@given(key=_KEYS)
def test_the_projection_gets_the_key_history_reads_back(key: Any) -> None:
    seen: list[HistoryRecord] = []
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=_recording(seen))
    t.put("acme", key, {"v": 1})
    (stored,) = t.history.keys("acme")
    (record,) = seen
    assert record.key == stored
    assert type(record.key) is type(stored)  # a list reads back as a tuple, _Str as str
    # What a rebuild (which reads history) hands the projection is the same record.
    t.rebuild()
    assert seen[-1] == dataclasses.replace(record, seq=None)


def test_the_projected_record_is_an_ordinary_frozen_history_record() -> None:
    seen: list[HistoryRecord] = []
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=_recording(seen))
    t.put("acme", "e-1", {"n": [1, 2]})
    (record,) = seen
    expected = HistoryRecord("acme", "e-1", {"n": [1, 2]}, 1)
    assert type(record) is HistoryRecord
    assert record == expected
    assert repr(record) == repr(expected)
    assert dataclasses.asdict(record) == dataclasses.asdict(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.seq = 2  # type: ignore[misc]  # the point: assignment must be refused


def _picky(record: HistoryRecord, state: ProjectionState) -> None:
    """Writes a marker per event, then refuses the events marked bad (after writing)."""
    state.put(f"seen-{record.key}", True)
    if record.value.get("bad"):
        raise ValueError("bad event")
    state.put("count", state.get("count", 0) + 1)


def _hot_records(t: Tiered) -> dict[str, Any]:
    return dict(t.items("acme"))


def test_a_rejected_write_leaves_nothing_in_the_next_one() -> None:
    # One applier serves every write of the pair: the updates a rejected event made
    # before its projection raised must not reach hot with the next event.
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=_picky)
    t.put("acme", "e1", {})
    with pytest.raises(ProjectionError):
        t.put("acme", "e2", {"bad": True})
    t.put("acme", "e3", {})
    assert _hot_records(t) == {"seen-e1": True, "seen-e3": True, "count": 2}
    with pytest.raises(KeyExistsError):
        t.put("acme", "e3", {})
    t.put("acme", "e4", {})
    assert _hot_records(t) == {"seen-e1": True, "seen-e3": True, "seen-e4": True, "count": 3}
    assert not t.history.has("acme", "e2")
    t.rebuild()
    assert _hot_records(t) == {"seen-e1": True, "seen-e3": True, "seen-e4": True, "count": 3}


def test_a_write_after_a_hot_failure_applies_each_record_once() -> None:
    # The failed write's applier held the record's updates when hot refused them; the
    # next write catches the record up from history and must not apply it twice.
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=_picky)
    t.put("acme", "e1", {})
    flaky(t.hot).fail("write", exc=Broken)
    with pytest.raises(HotTierError):
        t.put("acme", "e2", {})
    t.put("acme", "e3", {})
    assert _hot_records(t) == {"seen-e1": True, "seen-e2": True, "seen-e3": True, "count": 3}
    assert t.lag == 0


def test_writes_after_a_stop_keep_their_tenant_held() -> None:
    # A held record is reported with TenantStoppedError; a later write (of either
    # tenant) must neither report nor park it again, nor lose its own update.
    refuse: set[str] = set()

    def proj(record: HistoryRecord, state: ProjectionState) -> None:
        if record.key in refuse:
            raise ValueError("refused")
        state.put(f"seen-{record.key}", True)

    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=proj)
    flaky(t.hot).fail("write", exc=Broken)
    with pytest.raises(HotTierError):
        t.put("acme", "x", {})  # durable, not applied
    refuse.add("x")  # now poison: the catch-up of the next write stops acme at it
    with pytest.raises(TenantStoppedError):
        t.put("acme", "e1", {})
    t.put("other", "e1", {})
    with pytest.raises(TenantStoppedError):
        t.put("acme", "e2", {})
    assert [(r.tenant, r.key, r.reason) for r in t.parked()] == [
        ("acme", "e1", "held"),
        ("acme", "e2", "held"),
        ("acme", "x", "raised"),
    ]
    assert dict(t.items("other")) == {"seen-e1": True}
    assert dict(t.items("acme")) == {}
    refuse.clear()
    assert t.retry_parked() == 3
    assert dict(t.items("acme")) == {"seen-x": True, "seen-e1": True, "seen-e2": True}


def test_a_write_carries_only_its_own_updates() -> None:
    # With one applier for every write, an update left over from an earlier write would
    # be written again: here it would bring back a dropped tenant's projection.
    t: Tiered = TieredRepository(hot=flaky_repo(), cold=flaky_repo(), projection=_picky)
    t.put("acme", "e1", {})
    assert t.drop_tenant("acme") == 1
    t.put("other", "e1", {})
    assert list(t.tenants()) == ["other"]
    assert _hot_records(t) == {}
    t.put("acme", "e2", {})
    assert _hot_records(t) == {"seen-e2": True, "count": 1}
