"""str subclasses that lie about equality or hashing never reach another tenant's data.

The repository caches encoded tenants (and the newest-key lookup its bounds) in dicts
keyed by the caller's objects. A ``str`` subclass whose ``__eq__`` always answers True
and whose ``__hash__`` copies another tenant's matched that tenant's cache entry: its
records went silently to the other tenant. keys.md promises a subclass is stored as its
string value; the caches now see only plain ``str``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import InvalidTenantError


class _Liar(str):
    """Equal to everything, hashing like ``"acme"``."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash("acme")


class _Unhashable(str):
    def __hash__(self) -> int:
        raise RuntimeError("no hash")


@pytest.fixture(params=["memory", "lmdb", "rocksdb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"{request.param}://{tmp_path}/s"


@pytest.fixture
def repo(url: str) -> Iterator[Repository[Any, Any]]:
    with aurora_storage.open(url) as r:
        yield r


def test_a_lying_tenant_is_stored_under_its_own_value(repo: Repository[Any, Any]) -> None:
    repo.put("acme", "a", "ACME")
    repo.put("acme", ("o",), 1)
    assert list(repo.keys("acme", prefix=("o",), reverse=True, limit=1)) == [("o",)]
    bob = _Liar("bob")
    repo.put(bob, "a", "BOB")
    repo.put_many(bob, {"b": "BOB2"})
    repo.put(bob, ("o",), 2)
    assert sorted(repo.tenants()) == ["acme", "bob"]
    assert repo.get("acme", "a") == "ACME"
    assert repo.get(bob, "a") == "BOB"
    assert repo.get("bob", "b") == "BOB2"
    assert repo.count("acme") == 2
    assert list(repo.keys(bob, prefix=("o",), reverse=True, limit=1)) == [("o",)]
    assert repo.get("bob", ("o",)) == 2
    # A prefix that lies is read as its own value too.
    assert list(repo.keys("acme", prefix=_Liar("zzz"), reverse=True, limit=1)) == []


def test_a_tenant_whose_hash_raises_is_a_typed_error_or_works(
    repo: Repository[Any, Any],
) -> None:
    t = _Unhashable("x")
    repo.put(t, "k", 1)  # stored as "x": its hash is never needed
    assert repo.get("x", "k") == 1
    assert repo.get(t, "k") == 1


def test_a_non_str_tenant_is_still_refused(repo: Repository[Any, Any]) -> None:
    with pytest.raises(InvalidTenantError):
        repo.put(b"acme", "a", 1)  # type: ignore[arg-type]  # a wrong tenant type on purpose


@pytest.mark.parametrize("made", [bytearray, memoryview])
def test_a_codec_returning_a_bytes_like_object_is_stored_by_every_write_path(
    url: str, made: type
) -> None:
    # A codec whose encode returned a bytearray was stored by put() and batch() but made
    # the batch path of put_many raise a raw TypeError (LMDB) or ValueError (RocksDB).
    from aurora_storage.codecs import Codec

    codec: Codec[Any] = Codec(
        f"ba-{made.__name__}", encode=lambda v: made(str(v).encode()), decode=bytes.decode
    )
    r: Repository[Any, Any] = aurora_storage.open(url, codec=codec)
    r.put("t", "a", 1)
    assert r.put_many("t", {"b": 2, "c": 3}) == 2
    with r.batch() as b:
        b.put("t", "d", 4)
    assert [r.get("t", k) for k in "abcd"] == ["1", "2", "3", "4"]
    r.close()


def test_a_codec_returning_text_is_a_serialization_error(url: str) -> None:
    from aurora_storage.codecs import Codec
    from aurora_storage.errors import SerializationError

    def texty(value: Any) -> Any:  # returns str: the broken codec under test
        return str(value)

    codec: Codec[Any] = Codec("texty", encode=texty, decode=bytes.decode)
    r: Repository[Any, Any] = aurora_storage.open(url, codec=codec)
    for write in (
        lambda: r.put("t", "a", 1),
        lambda: r.put_many("t", {"b": 2}),
        lambda: r.batch().__enter__().put("t", "c", 3),
    ):
        with pytest.raises(SerializationError, match="str, not bytes"):
            write()
    assert r.count("t") == 0
    r.close()


# ------------------------------------------------- sequences (Batch.append, insert_append)
#
# The sequences' keys are cached per repository by (tenant, sequence). That cache was
# consulted with the caller's own objects before they were made plain str: a lying
# tenant appended its numbered records to another tenant's sequence (and a lying
# sequence name to another sequence).


class _LiarN(str):
    """Equal to everything, hashing like ``"n"`` (a sequence name)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash("n")


def test_a_lying_tenant_appends_to_its_own_sequence(repo: Repository[Any, Any]) -> None:
    with repo.batch() as b:
        b.append("acme", "n", "a1")
    bob = _Liar("bob")
    with repo.batch() as b:
        slot = b.append(bob, "n", "b1")
    assert slot.number == 1
    assert list(repo.items("acme")) == [(("n", 1), "a1")]
    assert list(repo.items("bob")) == [(("n", 1), "b1")]
    assert repo.last_sequence("acme", "n") == 1
    assert repo.last_sequence("bob", "n") == 1


def test_a_lying_sequence_name_appends_to_its_own_sequence(repo: Repository[Any, Any]) -> None:
    # Read as its plain str value (as a tenant is), never matched through its __eq__.
    with repo.batch() as b:
        b.append("acme", "n", "a1")
    with repo.batch() as b:
        slot = b.append("acme", _LiarN("m"), "x")
    assert slot.number == 1
    assert type(slot.sequence) is str
    assert list(repo.items("acme")) == [(("m", 1), "x"), (("n", 1), "a1")]
    assert repo.last_sequence("acme", "n") == 1
    assert repo.last_sequence("acme", _LiarN("m")) == 1


def test_a_lying_tenant_through_insert_append(repo: Repository[Any, Any]) -> None:
    from aurora_storage._eventstore import insert_append

    base = ("e", "events")
    assert insert_append(repo, "acme", base, [("agg", [1])], ["a"], "n", ["na"]) == [1]
    bob = _Liar("bob")
    assert insert_append(repo, bob, base, [("agg", [1])], ["b"], "n", ["nb"]) == [1]
    assert list(repo.items("acme", prefix=("n",))) == [(("n", 1), "na")]
    assert list(repo.items("bob")) == [(("e", "events", "agg", 1), "b"), (("n", 1), "nb")]


def test_a_lying_tenant_through_the_recorders(repo: Repository[Any, Any]) -> None:
    pytest.importorskip("eventsourcing")
    from eventsourcing.persistence import StoredEvent, Tracking

    from aurora_storage.eventsourcing import AuroraDatastore, AuroraProcessRecorder
    from aurora_storage.eventsourcing._records import value_layout

    def recorder(tenant: str) -> AuroraProcessRecorder:
        return AuroraProcessRecorder(
            AuroraDatastore(repo, tenant, "text", value_layout(repo.codec))
        )

    acme, bob = recorder("acme"), recorder(_Liar("bob"))
    assert acme.insert_events([StoredEvent("x", 1, "t", b"a")]) == [1]
    assert bob.insert_events([StoredEvent("x", 1, "t", b"b")]) == [1]
    assert bob.insert_events([StoredEvent("y", 1, "t", b"b")], tracking=Tracking("up", 1)) == [2]
    assert [n.state for n in acme.select_notifications(None, 10)] == [b"a"]
    assert acme.max_tracking_id("up") is None
    assert [n.state for n in recorder("bob").select_notifications(None, 10)] == [b"b", b"b"]
    assert recorder("bob").max_tracking_id("up") == 1
