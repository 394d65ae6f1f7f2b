"""Inputs an eventsourcing client can pass that the module took and then failed on.

From the breaker round of 2026-12-03 (second session):

- A follower's tracking record is keyed ``("t", upstream application name)`` in the
  follower's tenant, so its length depends on *another* application's name: a follower
  named with the documented maximum (448 characters) could record no upstream longer
  than a few characters, and every event then failed in the follower (with
  ``SingleThreadedRunner``: in the leader's ``save()``, after its event was committed).
  A name whose plain key does not fit is now keyed by its SHA-256 digest; one that fits
  keeps its plain key (stores written before read the same records).
- ``AuroraTrackingRecorder.wait(timeout=nan)`` never returned; ``timeout=None`` or
  ``"1"`` raised a raw ``TypeError``. Timeouts are checked as ``watch()`` checks them.
- With ``ORIGINATOR_ID_TYPE=uuid`` (the default) a str id that is not a UUID's 32-digit
  lower-case hex was written, and every read of its events and notifications failed
  after (one bad write stopped every follower at that notification). A hyphenated or
  upper-case UUID text was stored under another key than its UUID, so the two
  spellings were two aggregates and version 1 could be written twice. Such a write is
  now a ``DataError`` and writes nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from es_cases import make_factory, require_primitives
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aurora_storage import errors
from aurora_storage.eventsourcing import AuroraFactory, AuroraProcessRecorder, ViewState
from aurora_storage.eventsourcing._records import TRACKING

URLS = {
    "memory": "memory://",
    "rocksdb": "rocksdb://{path}?codec=msgpack",
    "lmdb": "lmdb://{path}?codec=msgpack&sync=false",
}

#: The documented longest tenant (AURORA_TENANT or an application name).
LONGEST_TENANT = "F" * 448


@pytest.fixture(params=sorted(URLS))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = URLS[request.param].format(path=tmp_path / "store")
    require_primitives(url)
    return url


@pytest.fixture
def factories() -> Iterator[list[AuroraFactory]]:
    """Factories the test made, closed afterwards (releasing their stores)."""
    made: list[AuroraFactory] = []
    yield made
    for f in made:
        f.close()


def _event(oid: UUID | str, version: int = 1) -> StoredEvent:
    return StoredEvent(originator_id=oid, originator_version=version, topic="t:E", state=b"{}")


# ------------------------------------------------------------ tracking of long names


@pytest.mark.parametrize("upstream_length", [1, 60, 448, 5000])
def test_a_follower_of_the_longest_tenant_tracks_upstreams_of_any_name_length(
    url: str, factories: list[AuroraFactory], upstream_length: int
) -> None:
    factory = make_factory(factories, url, AURORA_TENANT=LONGEST_TENANT)
    recorder = factory.process_recorder()
    assert isinstance(recorder, AuroraProcessRecorder)
    name = "L" * (upstream_length - 1) + "1"
    other = "L" * (upstream_length - 1) + "2"  # differs in the last character only
    recorder.insert_tracking(Tracking(name, 3))
    assert recorder.max_tracking_id(name) == 3
    assert recorder.has_tracking_id(name, 3)
    assert recorder.max_tracking_id(other) is None
    with pytest.raises(IntegrityError):
        recorder.insert_tracking(Tracking(name, 3))
    recorder.insert_events([_event(uuid4())], tracking=Tracking(name, 4))
    recorder.insert_events([_event(uuid4())], tracking=Tracking(other, 9))

    def count(state: ViewState) -> None:
        state.put("n", state.get("n", 0) + 1)

    recorder.track(Tracking(name, 5), count)
    recorder.wait(name, 5, timeout=5)
    assert (recorder.max_tracking_id(name), recorder.max_tracking_id(other)) == (5, 9)
    assert recorder.get("n") == 1
    assert recorder.max_notification_id() == 2


def test_a_name_whose_key_fits_keeps_its_plain_key(factories: list[AuroraFactory]) -> None:
    """Stores written before the digest form read the same tracking records."""
    factory = make_factory(factories, "memory://", AURORA_TENANT="Follower")
    recorder = factory.tracking_recorder()
    recorder.insert_tracking(Tracking("Leader", 7))
    repo = factory.datastore.repository
    assert repo.get("Follower", (TRACKING, "Leader")) is not None
    long_name = "L" * 600  # past the key limit whatever the tenant
    recorder.insert_tracking(Tracking(long_name, 2))
    assert [k for k in repo.keys("Follower") if k[0] == TRACKING] == [(TRACKING, "Leader")]
    assert recorder.max_tracking_id(long_name) == 2


# ------------------------------------------------------------------- wait timeouts


@pytest.mark.parametrize("timeout", [math.nan, -1, -0.5, "1", True, b"1", [1]], ids=repr)
def test_wait_refuses_a_timeout_that_is_not_seconds(
    url: str, factories: list[AuroraFactory], timeout: Any
) -> None:
    recorder = make_factory(factories, url).tracking_recorder()
    recorder.insert_tracking(Tracking("up", 5))
    with pytest.raises(ProgrammingError, match="timeout") as info:
        recorder.wait("up", 7, timeout=timeout)
    assert isinstance(info.value.__cause__, errors.InvalidArgumentError)


@pytest.mark.parametrize("timeout", [None, math.inf, 10**30])
def test_wait_without_a_bound_returns_when_the_record_arrives(
    url: str, factories: list[AuroraFactory], timeout: Any
) -> None:
    factory = make_factory(factories, url)
    waiter, writer = factory.tracking_recorder(), factory.tracking_recorder()
    timer = threading.Timer(0.2, lambda: writer.insert_tracking(Tracking("up", 7)))
    timer.start()
    try:
        waiter.wait("up", 7, timeout=timeout)
    finally:
        timer.join()
    assert waiter.max_tracking_id("up") == 7


# ------------------------------------------------------------ originator ids (uuid)


def test_uuid_mode_refuses_a_text_id_it_could_not_read_back(
    url: str, factories: list[AuroraFactory]
) -> None:
    recorder = make_factory(factories, url).application_recorder()
    with pytest.raises(DataError, match="ORIGINATOR_ID_TYPE=text"):
        recorder.insert_events([_event("order-1")])
    assert recorder.max_notification_id() is None
    recorder.insert_events([_event(uuid4())])  # the store goes on
    assert [n.id for n in recorder.select_notifications(1, 10)] == [1]


def test_uuid_mode_takes_one_spelling_per_aggregate(
    url: str, factories: list[AuroraFactory]
) -> None:
    """Before, ``str(oid)`` and ``oid.hex.upper()`` were stored apart from ``oid``:
    version 1 of one aggregate could be written three times."""
    recorder = make_factory(factories, url).application_recorder()
    oid = uuid4()
    recorder.insert_events([_event(oid)])
    for spelling in (str(oid), oid.hex.upper(), "{" + str(oid) + "}", "urn:uuid:" + str(oid)):
        with pytest.raises(DataError, match="32-digit"):
            recorder.insert_events([_event(spelling)])
    with pytest.raises(IntegrityError):
        recorder.insert_events([_event(oid.hex)])  # the stored spelling: the same aggregate
    (got,) = recorder.select_events(oid)
    assert got.originator_id == oid
    assert recorder.max_notification_id() == 1


def test_text_mode_keeps_any_str_id(factories: list[AuroraFactory]) -> None:
    recorder = make_factory(
        factories, "memory://", ORIGINATOR_ID_TYPE="text"
    ).application_recorder()
    oid = uuid4()
    for spelling in ("order-1", str(oid)):
        recorder.insert_events([_event(spelling)])
        (got,) = recorder.select_events(spelling)
        assert got.originator_id == spelling


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    oid=st.one_of(
        st.text(max_size=40),
        st.uuids().map(lambda u: u.hex),
        st.uuids().map(str),
        st.uuids().map(lambda u: u.hex.upper()),
    )
)
def test_uuid_mode_reads_back_every_id_it_takes(factories: list[AuroraFactory], oid: str) -> None:
    if not factories:
        make_factory(factories, "memory://")
    recorder = factories[0].application_recorder()
    before = recorder.max_notification_id() or 0
    try:
        ids = recorder.insert_events([_event(oid, before + 1)])
    except DataError:
        assert (recorder.max_notification_id() or 0) == before  # nothing written
        return
    assert ids is not None
    (note,) = recorder.select_notifications(ids[0], 1)
    (event,) = recorder.select_events(note.originator_id, gt=before, lte=before + 1)
    assert event.originator_id == note.originator_id == UUID(oid)
