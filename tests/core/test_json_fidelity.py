"""The json codec returns what it stored, even where orjson alone would not.

Cases found by trying to break the round-trip-or-refuse promise (docs/concepts/codecs.md):

- a NaN that orjson serialises but the finiteness check did not look at (an attribute of
  a dataclass outside its fields; a list or dict subclass that overrides its iteration)
  came back as ``None``;
- orjson writes a ``datetime.time`` whose microseconds are 10000-99999 without the
  leading zero (``.013040`` as ``.13040``, read back as 130400 us), and rounds a UTC
  offset with seconds to minutes (a historic zone's ``+00:19:32`` as ``+00:20``).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import Repository, SerializationError

BACKENDS = ["memory", "rocksdb", "lmdb"]
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _url(backend: str, tmp_path: Path) -> str:
    return "memory://" if backend == "memory" else f"{backend}://{tmp_path / backend}"


@dataclasses.dataclass
class Reading:
    temp: float


class HidingList(list[Any]):
    """A list whose iteration hides its items (orjson reads the list's own storage)."""

    def __iter__(self) -> Any:
        return iter([1])


class HidingDict(dict[str, Any]):
    """A dict whose items()/values() hide its items (orjson reads the dict's storage)."""

    def items(self) -> Any:
        return [("a", 1)]

    def values(self) -> Any:
        return [1]

    def __iter__(self) -> Any:
        return iter(["a"])


def _reading_with_extra() -> Reading:
    r = Reading(1.0)
    r.extra = math.nan  # type: ignore[attr-defined]  # an undeclared attribute on purpose
    return r


HIDDEN_NAN: dict[str, tuple[Any, str]] = {
    "dataclass attribute outside the fields": (_reading_with_extra(), "value.extra"),
    "nested dataclass attribute": ({"r": [_reading_with_extra()]}, 'value["r"][0].extra'),
    "list subclass hiding its items": (HidingList([math.inf]), "value[0]"),
    "dict subclass hiding its items": (HidingDict(a=-math.inf), 'value["a"]'),
}


def _batch_put(repo: Repository[Any, Any], pairs: list[tuple[Any, Any]]) -> None:
    with repo.batch() as b:
        for key, value in pairs:
            b.put("acme", key, value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(HIDDEN_NAN))
def test_json_refuses_a_non_finite_float_orjson_sees_and_writes_nothing(
    backend: str, case: str, tmp_path: Path
) -> None:
    value, path = HIDDEN_NAN[case]
    url = _url(backend, tmp_path)
    with aurora_storage.open(url) as repo:
        with pytest.raises(SerializationError) as err:
            repo.put("acme", "r", value)
        assert err.value.value_path == path
        with pytest.raises(SerializationError):
            repo.put_many("acme", [("ok", 1), ("r", value)])
        with pytest.raises(SerializationError):
            _batch_put(repo, [("ok", 1), ("r", value)])
    with aurora_storage.open(url) as repo:
        assert list(repo.items("acme")) == []


def test_json_dataclass_is_stored_as_its_public_attributes() -> None:
    # What orjson writes, as codecs.md says: every attribute whose name does not start
    # with "_" (fields and others alike).
    r = Reading(2.5)
    r.note = "n"  # type: ignore[attr-defined]  # undeclared on purpose
    r._private = 1  # type: ignore[attr-defined]  # undeclared on purpose
    with aurora_storage.open("memory://") as repo:
        repo.put("acme", "r", r)
        assert repo.get("acme", "r") == {"temp": 2.5, "note": "n"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_time_keeps_the_leading_zero_of_its_microseconds(backend: str, tmp_path: Path) -> None:
    t = datetime.time(4, 35, 44, 13040)
    with aurora_storage.open(_url(backend, tmp_path)) as repo:
        repo.put("acme", "t", {"at": t})
        got = repo.get("acme", "t")
    assert got == {"at": "04:35:44.013040"}
    assert datetime.time.fromisoformat(got["at"]) == t


@pytest.mark.parametrize(
    "dt",
    [
        datetime.datetime(1900, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Amsterdam")),
        datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(seconds=-30))),
    ],
    ids=["amsterdam-1900", "minus-30s"],
)
def test_json_datetime_keeps_an_offset_with_seconds(dt: datetime.datetime) -> None:
    with aurora_storage.open("memory://") as repo:
        repo.put("acme", "d", dt)
        got = repo.get("acme", "d")
    assert got == dt.isoformat()
    assert datetime.datetime.fromisoformat(got) == dt
    assert datetime.datetime.fromisoformat(got).utcoffset() == dt.utcoffset()


_offsets = st.integers(-(24 * 3600) + 1, 24 * 3600 - 1).map(
    lambda s: datetime.timezone(datetime.timedelta(seconds=s))
)
_zones = st.sampled_from(
    [zoneinfo.ZoneInfo(z) for z in ("UTC", "Europe/Amsterdam", "Asia/Kolkata", "America/St_Johns")]
)


@PROPERTY
@given(
    st.one_of(
        st.datetimes(timezones=st.none() | _offsets | _zones),
        st.dates(),
        st.times(),
    )
)
def test_json_datetime_date_time_read_back_as_their_isoformat(value: Any) -> None:
    with aurora_storage.open("memory://") as repo:
        repo.put("acme", "v", [value])
        stored = repo.get("acme", "v")
        assert stored is not None
        (got,) = stored
    assert got == value.isoformat()
    back = type(value).fromisoformat(got)
    if isinstance(value, datetime.datetime):
        # Same wall time and offset (== between zones is False for a time a DST change
        # makes ambiguous, PEP 495).
        assert back.replace(tzinfo=None) == value.replace(tzinfo=None)
        assert back.utcoffset() == value.utcoffset()
    else:
        assert back == value


def test_json_still_refuses_an_aware_time_and_datetime_subclasses() -> None:
    class Stamp(datetime.datetime):
        pass

    with aurora_storage.open("memory://") as repo:
        with pytest.raises(SerializationError, match="tzinfo"):
            repo.put("acme", "t", datetime.time(1, tzinfo=datetime.UTC))
        with pytest.raises(SerializationError, match="Stamp"):
            repo.put("acme", "s", Stamp(2026, 1, 1))
        assert list(repo.keys("acme")) == []
