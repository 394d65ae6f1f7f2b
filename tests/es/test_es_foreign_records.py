"""Records the module did not write (another tool's, or damaged ones) in an application's
tenant: every method that reads them raises eventsourcing's ``DataError`` naming the
tenant, the key and what was expected - never a raw ``ValueError``/``TypeError``/
``binascii.Error`` - on every value layout (``msgpack``: lists, ``raw``: packed here,
``json``: base64 state)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eventsourcing.persistence import DataError, IntegrityError, Tracking
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.errors import StorageError
from aurora_storage.eventsourcing import AuroraDatastore, AuroraProcessRecorder

TENANT = "Application"
OID = uuid.uuid4()
CODECS = ["msgpack", "raw", "json"]

#: Where each kind of record lives, and the calls that read it.
KEYS: dict[str, tuple[Any, ...]] = {
    "notification": ("n", 1),
    "event": ("e", "events", OID.hex, 1),
    "tracking": ("t", "Up"),
}


def _subscribe_first(r: AuroraProcessRecorder) -> Any:
    with r.subscribe(gt=0) as sub:
        return next(sub)


CALLS: dict[str, list[tuple[str, Callable[[AuroraProcessRecorder], Any]]]] = {
    "notification": [
        ("select_notifications", lambda r: r.select_notifications(start=1, limit=5)),
        ("select_notifications topics", lambda r: r.select_notifications(1, 5, topics=["t"])),
        ("subscribe", _subscribe_first),
    ],
    "event": [
        ("select_events", lambda r: r.select_events(OID)),
        ("select_events desc", lambda r: r.select_events(OID, desc=True, limit=1)),
    ],
    "tracking": [
        ("max_tracking_id", lambda r: r.max_tracking_id("Up")),
        ("insert_tracking", lambda r: r.insert_tracking(Tracking("Up", 5))),
        ("has_tracking_id", lambda r: r.has_tracking_id("Up", 3)),
    ],
}

#: Values no layout reads as the record (kept storable by every codec: bytes for raw).
DAMAGED: dict[str, list[Any]] = {
    "notification": [b"\x01\x02", b"\x93\x01\x02\x03", "not a notification", [1, 2, 3, 4]],
    "event": [b"\xc1", 12345, ["t"], ["t", b"s", "extra"]],
    "tracking": ["not an int", b"\xc1", -1, 2.5, [1]],
}

CASES = [(kind, value) for kind, values in DAMAGED.items() for value in values]
CALL_CASES = [(kind, name, call) for kind, calls in CALLS.items() for name, call in calls]


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Any]]:
    dirs: list[tempfile.TemporaryDirectory[str]] = []
    repos: list[Any] = []

    def open_(codec: str) -> Any:
        if request.param == "memory":
            repo = aurora_storage.open(f"memory://?codec={codec}")
        else:
            d = tempfile.TemporaryDirectory()
            dirs.append(d)
            repo = aurora_storage.open(f"rocksdb://{d.name}/s?codec={codec}")
        repos.append(repo)
        return repo

    yield open_
    for repo in repos:
        repo.close()
    for d in dirs:
        d.cleanup()


def _stored(repo: Any, key: tuple[Any, ...], value: Any) -> bool:
    """Put the foreign record; False if this codec cannot hold the value at all."""
    try:
        repo.put(TENANT, key, value)
    except StorageError:
        return False
    return True


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("kind", "name", "call"), CALL_CASES, ids=[c[1] for c in CALL_CASES])
def test_a_damaged_record_is_a_data_error_naming_tenant_and_key(
    store: Callable[[str], Any], codec: str, kind: str, name: str, call: Any
) -> None:
    repo = store(codec)
    recorder = AuroraProcessRecorder(AuroraDatastore(repo, TENANT))
    key = KEYS[kind]
    tried = 0
    for value in DAMAGED[kind]:
        if not _stored(repo, key, value):
            continue
        tried += 1
        with pytest.raises(DataError) as info:
            call(recorder)
        msg = str(info.value)
        assert repr(TENANT) in msg, msg
        assert repr(key) in msg, msg
        assert "expected" in msg, msg
    assert tried


def test_foreign_keys_under_the_module_prefixes_are_data_errors(
    store: Callable[[str], Any],
) -> None:
    """Keys of another shape in the module's key ranges (not only other values)."""
    repo = store("msgpack")
    recorder = AuroraProcessRecorder(AuroraDatastore(repo, TENANT))
    repo.put(TENANT, ("n", "x"), [OID.hex, 1, "t", b"s"])
    with pytest.raises(DataError, match=r"\('n', 'x'\)"):
        recorder.select_notifications(start=1, limit=5)
    with pytest.raises(DataError, match=r"\('n', 'x'\)"):
        recorder.max_notification_id()
    repo.put(TENANT, ("e", "events", OID.hex, "v"), ["t", b"s"])
    with pytest.raises(DataError, match=r"\('e', 'events', '[0-9a-f]+', 'v'\)"):
        recorder.select_events(OID)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    codec=st.sampled_from(CODECS),
    kind=st.sampled_from(sorted(KEYS)),
    value=values,
    which=st.integers(0, 2),
)
def test_any_foreign_value_is_read_or_refused_as_data_error(
    codec: str, kind: str, value: Any, which: int
) -> None:
    with aurora_storage.open(f"memory://?codec={codec}") as repo:
        assume(_stored(repo, KEYS[kind], value))
        recorder = AuroraProcessRecorder(AuroraDatastore(repo, TENANT))
        calls = CALLS[kind]
        _name, call = calls[which % len(calls)]
        error: BaseException | None = None
        try:
            call(recorder)
        except (DataError, IntegrityError) as exc:
            error = exc
        if isinstance(error, IntegrityError):
            assert kind == "tracking"  # a valid id at or past 5: insert_tracking refuses
        elif error is not None:
            assert repr(TENANT) in str(error) or "originator id" in str(error)
