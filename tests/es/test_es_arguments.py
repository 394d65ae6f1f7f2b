"""The recorders' bounds, limits and topics: an int (or ``None`` where it means "no
bound") is taken, anything else is refused with a typed error - never answered with
wrong rows.

Before, ``select_notifications(start=2.5, inclusive_of_start=False)`` skipped
notification 3, ``stop=2.5`` returned it, ``subscribe(gt=2.5)`` skipped it,
``subscribe(gt=True)`` started after 1, ``subscribe(gt="2")`` raised a raw TypeError in
its thread, ``topics="t1"`` matched nothing, and ``select_notifications(1, -1)``
returned ``[]`` where ``select_events(limit=-1)`` raised. Now, as ``select_events``
already did for its ``gt``/``lte``: a notification id or version bound that is not an
``int`` (bool, float, str, ...) is a ``DataError`` (cause ``InvalidKeyError``); a limit
that is not a non-negative ``int``, or ``topics`` that are not a collection of str, is a
``ProgrammingError`` (cause ``InvalidArgumentError``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import DataError, ProgrammingError, StoredEvent, Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import errors
from aurora_storage.eventsourcing import (
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraProcessRecorder,
    AuroraSubscription,
)

TOPICS = ["t1", "t2", "t1", "t3", "t2"]  # notifications 1..5

#: Values a caller might pass by mistake, and ints (with None) that are valid.
ODD = st.one_of(
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.decimals(allow_nan=False, places=1, min_value=-10, max_value=10),
    st.fractions(max_denominator=4),
    st.lists(st.integers(0, 5), max_size=2),
    st.just(Decimal(2)),
    st.just(Fraction(2)),
    st.just(2.0),
    st.just("2"),
)
BOUNDS = st.one_of(st.none(), st.integers(-3, 8), ODD)
LIMITS = st.one_of(st.integers(-3, 8), st.none(), ODD)
TOPIC_ARGS = st.one_of(
    st.none(),  # no filter, as eventsourcing's own recorders take it
    st.lists(st.sampled_from(["t1", "t2", "t3", "t9"]), max_size=3),
    st.sampled_from(["t1", "", "t2t1"]),
    st.just(("t1", "t3")),
    st.just(frozenset({"t2"})),
    st.just(b"t1"),
    st.just([b"t1"]),
    st.just([1, 2]),
    st.just(5),
)


def _valid_bound(value: Any) -> bool:
    return value is None or type(value) is int


def _valid_limit(value: Any) -> bool:
    return type(value) is int and value >= 0


def _valid_topics(value: Any) -> bool:
    return value is None or (
        not isinstance(value, (str, bytes))
        and isinstance(value, (list, tuple, frozenset, set))
        and all(isinstance(t, str) for t in value)
    )


@pytest.fixture(scope="module")
def recorder() -> Iterator[AuroraProcessRecorder]:
    with aurora_storage.open("memory://") as repo:
        rec = AuroraProcessRecorder(AuroraDatastore(repo, "Args"))
        for topic in TOPICS:
            rec.insert_events([StoredEvent(uuid4(), 1, topic, b"x")])
        rec.insert_tracking(Tracking("up", 3))
        yield rec


def _expected(
    start: Any, limit: int, stop: Any, topics: Sequence[str], inclusive: bool
) -> list[int]:
    ids = [
        n
        for n in range(1, len(TOPICS) + 1)
        if (start is None or (n >= start if inclusive else n > start))
        and (stop is None or n <= stop)
        and (not topics or TOPICS[n - 1] in topics)
    ]
    return ids[:limit]


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=BOUNDS,
    limit=LIMITS,
    stop=BOUNDS,
    topics=TOPIC_ARGS,
    inclusive=st.booleans(),
)
def test_select_notifications_takes_ints_and_refuses_the_rest(
    recorder: AuroraApplicationRecorder,
    start: Any,
    limit: Any,
    stop: Any,
    topics: Any,
    inclusive: bool,
) -> None:
    def call() -> list[int]:
        got = recorder.select_notifications(
            start, limit, stop, topics, inclusive_of_start=inclusive
        )
        return [n.id for n in got]

    if not (_valid_bound(start) and _valid_bound(stop)):
        with pytest.raises(DataError) as info:
            call()
        assert isinstance(info.value.__cause__, errors.InvalidKeyError)
    elif not (_valid_limit(limit) and _valid_topics(topics)):
        with pytest.raises(ProgrammingError) as argument:
            call()
        assert isinstance(argument.value.__cause__, errors.InvalidArgumentError)
    else:
        assert call() == _expected(start, limit, stop, topics, inclusive)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gt=BOUNDS, lte=BOUNDS, limit=LIMITS, desc=st.booleans())
def test_select_events_takes_ints_and_refuses_the_rest(
    recorder: AuroraApplicationRecorder, gt: Any, lte: Any, limit: Any, desc: bool
) -> None:
    oid = uuid4()
    recorder.insert_events([StoredEvent(oid, v, "t", b"x") for v in (1, 2, 3, 4)])

    def call() -> list[int]:
        got = recorder.select_events(oid, gt=gt, lte=lte, desc=desc, limit=limit)
        return [e.originator_version for e in got]

    if not (_valid_bound(gt) and _valid_bound(lte)):
        with pytest.raises(DataError) as info:
            call()
        assert isinstance(info.value.__cause__, errors.InvalidKeyError)
    elif not (limit is None or _valid_limit(limit)):
        with pytest.raises(ProgrammingError) as argument:
            call()
        assert isinstance(argument.value.__cause__, errors.InvalidArgumentError)
    else:
        want = [v for v in (1, 2, 3, 4) if (gt is None or v > gt) and (lte is None or v <= lte)]
        if desc:
            want.reverse()
        assert call() == (want if limit is None else want[:limit])


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notification_id=BOUNDS)
def test_tracking_queries_take_ints_and_refuse_the_rest(
    recorder: AuroraProcessRecorder, notification_id: Any
) -> None:
    if not _valid_bound(notification_id):
        with pytest.raises(DataError) as info:
            recorder.has_tracking_id("up", notification_id)
        assert isinstance(info.value.__cause__, errors.InvalidKeyError)
        with pytest.raises(DataError):
            recorder.wait("up", notification_id, timeout=0)
        return
    expected = notification_id is None or notification_id <= 3
    assert recorder.has_tracking_id("up", notification_id) is expected
    if expected:
        recorder.wait("up", notification_id, timeout=0)
    else:
        with pytest.raises(TimeoutError):
            recorder.wait("up", notification_id, timeout=0)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gt=BOUNDS, topics=TOPIC_ARGS)
def test_subscribe_takes_ints_and_refuses_the_rest_when_called(
    recorder: AuroraApplicationRecorder, gt: Any, topics: Any
) -> None:
    """Refused by ``subscribe()`` itself (not later, in the subscription's thread)."""
    before = threading.active_count()
    if not _valid_bound(gt):
        with pytest.raises(DataError) as info:
            recorder.subscribe(gt=gt, topics=topics)
        assert isinstance(info.value.__cause__, errors.InvalidKeyError)
        with pytest.raises(DataError):
            AuroraSubscription(recorder, gt=gt, topics=topics)
        assert threading.active_count() == before  # nothing was started
        return
    if not _valid_topics(topics):
        with pytest.raises(ProgrammingError) as argument:
            recorder.subscribe(gt=gt, topics=topics)
        assert isinstance(argument.value.__cause__, errors.InvalidArgumentError)
        assert threading.active_count() == before
        return
    want = _expected(gt, 10, None, topics, inclusive=False)
    got: list[int] = []
    with recorder.subscribe(gt=gt, topics=topics) as subscription:
        if want:
            for n in subscription:
                got.append(n.id)
                if n.id == want[-1]:
                    break
    assert got == want


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.select_notifications(2.5, 10, inclusive_of_start=False), DataError),
        (lambda r: r.select_notifications(1, 10, stop=2.5), DataError),
        (lambda r: r.subscribe(gt=2.5), DataError),
        (lambda r: r.subscribe(gt=True), DataError),
        (lambda r: r.subscribe(gt="2"), DataError),
        (lambda r: r.select_notifications(1, 10, topics="t1"), ProgrammingError),
        (lambda r: r.subscribe(topics="t1"), ProgrammingError),
        (lambda r: r.select_notifications(1, -1), ProgrammingError),
        (lambda r: r.select_events(uuid4(), limit=-1), ProgrammingError),
    ],
    ids=[
        "start=2.5",
        "stop=2.5",
        "gt=2.5",
        "gt=True",
        "gt='2'",
        "topics-str",
        "subscribe-topics-str",
        "limit=-1",
        "select_events-limit=-1",
    ],
)
def test_the_breakers_cases(recorder: AuroraApplicationRecorder, call: Any, error: type) -> None:
    with pytest.raises(error):
        call(recorder)
