"""The event-store primitives' errors say what happened: a key conditioned twice in one
batch is named as such (not as a key that "already exists"); a value an append cannot
store names the sequence (not a key ``(sequence, 0)`` that is never used); an expired
feed position names the limit that dropped it; and sequence names are read like
tenants: a ``str`` subclass (a ``(str, Enum)`` member) is its plain string value."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage import Repository, _eventstore
from aurora_storage.backend import RecentChanges
from aurora_storage.errors import (
    InvalidKeyError,
    KeyExistsError,
    PositionExpiredError,
    SerializationError,
    VersionConflictError,
)


def _batch(repo: Repository[Any, Any], *calls: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    """Commit one batch of ``(method, args, kwargs)`` calls."""
    with repo.batch() as b:
        for name, args, kwargs in calls:
            getattr(b, name)(*args, **kwargs)


@pytest.fixture(params=["memory", "rocksdb", "lmdb"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository[Any, Any]]:
    url = {
        "memory": "memory://",
        "rocksdb": f"rocksdb://{tmp_path}/s",
        "lmdb": f"lmdb://{tmp_path}/s?sync=false",
    }[request.param]
    with aurora_storage.open(url) as r:
        yield r


def test_a_key_inserted_twice_is_named_as_repeated(repo: Repository[Any, Any]) -> None:
    with pytest.raises(KeyExistsError) as info:
        _batch(repo, ("insert", ("t", "k", 1), {}), ("insert", ("t", "k", 2), {}))
    msg = str(info.value)
    assert "already exist" not in msg
    assert "'k'" in msg
    assert "inserted twice" in msg
    assert info.value.keys == ["k"]
    assert repo.get("t", "k") is None


def test_compare_and_set_absent_then_insert_is_named_as_repeated(
    repo: Repository[Any, Any],
) -> None:
    with pytest.raises(KeyExistsError) as info:
        _batch(
            repo,
            ("compare_and_set", ("t", "k", 1), {"version": None}),
            ("insert", ("t", "k", 2), {}),
        )
    msg = str(info.value)
    assert "already exist" not in msg
    assert "conditioned twice" in msg
    assert "compare_and_set" in msg
    # The first condition was a compare_and_set, not an insert: the message said "the
    # second insert cannot succeed once the first is written".
    assert "second insert" not in msg
    assert info.value.keys == ["k"]
    assert repo.get("t", "k") is None
    # The other order, insert then compare_and_set, raised VersionConflictError (not a
    # KeyError) though eventsourcing.md says KeyExistsError for an insert and a
    # compare_and_set on one key: one error for a key conditioned twice with an insert.
    with pytest.raises(KeyExistsError) as again:
        _batch(
            repo,
            ("insert", ("t", "k", 1), {}),
            ("compare_and_set", ("t", "k", 2), {"version": None}),
        )
    msg = str(again.value)
    assert "conditioned twice" in msg
    assert "insert, then compare_and_set(version=None)" in msg
    assert "second insert" not in msg
    assert again.value.keys == ["k"]
    assert repo.get("t", "k") is None


def test_a_key_conditioned_twice_and_existing_is_named_once(repo: Repository[Any, Any]) -> None:
    repo.put("t", "k", 0)
    for first, second in (("insert", "insert"), ("insert", "compare_and_set")):
        with pytest.raises(KeyExistsError) as info:
            _batch(
                repo,
                (first, ("t", "k", 1), {} if first == "insert" else {"version": None}),
                (second, ("t", "k", 2), {} if second == "insert" else {"version": None}),
            )
        assert info.value.keys == ["k"], (first, second)
    assert repo.get("t", "k") == 0


def test_compare_and_set_twice_on_one_key_is_a_version_conflict(
    repo: Repository[Any, Any],
) -> None:
    with pytest.raises(VersionConflictError) as info:
        _batch(
            repo,
            ("compare_and_set", ("t", "k", 1), {"version": None}),
            ("compare_and_set", ("t", "k", 2), {"version": None}),
        )
    assert "conditioned twice" in str(info.value)
    assert repo.get("t", "k") is None


def test_a_repeated_key_and_an_existing_one_are_told_apart(repo: Repository[Any, Any]) -> None:
    repo.put("t", "old", 0)
    with pytest.raises(KeyExistsError) as info:
        _batch(
            repo,
            ("insert", ("t", "old", 1), {}),
            ("insert", ("t", "new", 1), {}),
            ("insert", ("t", "new", 2), {}),
        )
    msg = str(info.value)
    assert "'new'" in msg
    assert "twice" in msg
    assert "'old'" in msg
    assert "already exist" in msg
    assert set(info.value.keys) == {"old", "new"}
    assert repo.get("t", "new") is None


def test_an_append_value_error_names_the_sequence(repo: Repository[Any, Any]) -> None:
    with pytest.raises(SerializationError) as info, repo.batch() as b:
        b.append("t", "n", {1, 2})
    msg = str(info.value)
    assert "('n', 0)" not in msg
    assert "sequence 'n'" in msg
    assert repo.last_sequence("t", "n") == 0


def test_an_expired_position_names_the_limit_that_dropped_it() -> None:
    by_bytes = RecentChanges(max_changes=1000, max_bytes=1000)
    for c in range(1, 11):
        by_bytes.record(c, [(b"\x01k%d" % c, b"x" * 300)])
    with pytest.raises(PositionExpiredError) as info:
        by_bytes.read(0, 10)
    msg = str(info.value)
    assert "1000 bytes" in msg
    assert "1000 changes" not in msg

    by_count = RecentChanges(max_changes=3, max_bytes=1 << 20)
    for c in range(1, 11):
        by_count.record(c, [(b"\x01k%d" % c, b"x")])
    with pytest.raises(PositionExpiredError) as info:
        by_count.read(0, 10)
    msg = str(info.value)
    assert "3 changes" in msg
    assert "bytes" not in msg


def test_an_expired_position_on_memory_names_the_byte_cap() -> None:
    repo = aurora_storage.open("memory://")
    p = repo.last_position()
    for i in range(70):
        repo.put("big", i, "x" * 1_000_000)
    with pytest.raises(PositionExpiredError) as info:
        list(repo.watch("big", after=p, timeout=0.1))
    assert "64 MiB" in str(info.value)
    assert "100000 changes" not in str(info.value)


class _Name(str):
    pass


class _Stream(str, enum.Enum):  # noqa: UP042  # the (str, Enum) form on purpose: its str() is "_Stream.NOTIFICATIONS"
    NOTIFICATIONS = "n"


class _Shouting(str):
    def __str__(self) -> str:
        return "SHOUT"


@pytest.mark.parametrize("name", [_Name("n"), _Stream.NOTIFICATIONS, _Shouting("n")])
def test_a_str_subclass_sequence_name_is_its_plain_value(
    repo: Repository[Any, Any], name: Any
) -> None:
    with repo.batch() as b:
        slot = b.append("t", name, "first")
    assert slot.number == 1
    assert type(slot.sequence) is str
    assert slot.sequence == "n"
    with repo.batch() as b:
        b.append("t", "n", "second")  # the same sequence as the plain name
    assert repo.last_sequence("t", name) == 2
    assert repo.last_sequence("t", "n") == 2
    assert list(repo.items("t")) == [(("n", 1), "first"), (("n", 2), "second")]
    # Only plain str reach the cache of sequence keys (a subclass could lie in __eq__).
    assert all(type(t) is str and type(s) is str for t, s in repo._sequences)


def test_a_bad_sequence_name_says_what_it_got(repo: Repository[Any, Any]) -> None:
    bad: Any
    for bad in ("", _Name(""), 1, None, b"n", ("n",)):
        with pytest.raises(InvalidKeyError, match="sequence name") as info, repo.batch() as b:
            b.append("t", bad, 1)
        assert "non-empty str, got" in str(info.value)
    with pytest.raises(InvalidKeyError):
        _eventstore.check_sequence(1)
