"""One ``insert_events`` call that holds an ``(originator_id, originator_version)``
twice fails with ``IntegrityError`` saying that the version is repeated in the call
(not that it "already exists": nothing was stored under it), and writes nothing; a
version that does exist is still reported as existing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import KeyExistsError
from aurora_storage.eventsourcing import (
    AuroraAggregateRecorder,
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraProcessRecorder,
)
from aurora_storage.eventsourcing._records import value_layout

KINDS = ["events", "application", "process", "process+tracking"]
_tenants = itertools.count()


@pytest.fixture(params=["memory", "lmdb", "rocksdb"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository[Any, Any]]:
    url = {
        "memory": "memory://?codec=raw",
        "lmdb": f"lmdb://{tmp_path}/s?codec=raw&sync=false",
        "rocksdb": f"rocksdb://{tmp_path}/s?codec=raw",
    }[request.param]
    with aurora_storage.open(url) as r:
        yield r


def _recorder(repo: Repository[Any, Any], kind: str) -> AuroraAggregateRecorder:
    store = AuroraDatastore(repo, f"t{next(_tenants)}", "uuid", value_layout(repo.codec))
    if kind == "events":
        return AuroraAggregateRecorder(store, kind)
    if kind == "application":
        return AuroraApplicationRecorder(store)
    return AuroraProcessRecorder(store)


def _insert(recorder: AuroraAggregateRecorder, kind: str, events: list[StoredEvent]) -> Any:
    if kind == "process+tracking":
        return recorder.insert_events(events, tracking=Tracking("up", 7))
    return recorder.insert_events(events)


@pytest.mark.parametrize("kind", KINDS)
def test_a_version_repeated_in_one_call_is_named_as_repeated(
    repo: Repository[Any, Any], kind: str
) -> None:
    recorder = _recorder(repo, kind)
    oid = uuid4()
    events = [StoredEvent(oid, 1, "t", b"a"), StoredEvent(oid, 2, "t", b"b")]
    events.append(StoredEvent(oid, 1, "t", b"c"))
    with pytest.raises(IntegrityError) as info:
        _insert(recorder, kind, events)
    msg = str(info.value)
    assert "repeated" in msg
    assert "version 1" in msg
    assert str(oid) in msg
    assert "already exist" not in msg
    assert isinstance(info.value.__cause__, KeyExistsError)
    tenant = recorder.datastore.tenant
    assert list(repo.items(tenant)) == []
    assert repo.last_sequence(tenant, "n") == 0


@pytest.mark.parametrize("kind", KINDS)
def test_an_existing_version_is_still_named_as_existing(
    repo: Repository[Any, Any], kind: str
) -> None:
    recorder = _recorder(repo, kind)
    oid = uuid4()
    recorder.insert_events([StoredEvent(oid, 1, "t", b"a")])
    with pytest.raises(IntegrityError) as info:
        _insert(recorder, kind, [StoredEvent(oid, 1, "t", b"again")])
    assert "already exist" in str(info.value)
    assert "repeated" not in str(info.value)
