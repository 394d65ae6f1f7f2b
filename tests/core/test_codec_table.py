"""The table "What each codec returns" in docs/concepts/codecs.md is true: a sample of
every row is stored with every codec, and what ``get`` returns (or the refusal) is what
the row says."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import math
import re
import uuid
import zoneinfo
from pathlib import Path
from typing import Any

import msgpack
import pytest

import aurora_storage
from aurora_storage import SerializationError

DOC = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "codecs.md"
CODECS = ["json", "msgpack", "raw"]


@dataclasses.dataclass
class Point:
    x: int
    label: str


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Rank(enum.Enum):
    FIRST = 1


class Mode(enum.StrEnum):
    FAST = "fast"


class Name(str):
    pass


class Blob(bytes):
    pass


class Span(tuple[Any, ...]):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


class Half(float, enum.Enum):
    ONE = 2.5


class Weight(enum.Enum):
    LIGHT = 1.5


class Corner(enum.Enum):
    ORIGIN = (0, "o")


class Items(list[Any]):
    pass


class Record(dict[str, Any]):
    pass


Pair = collections.namedtuple("Pair", "a b")
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
DT = datetime.datetime(2026, 1, 2, 3, 4, 5, 6)
UID = uuid.UUID(int=1)

#: row label -> samples; a sample is (value, what a stored one reads back as).
#: Map-key rows use {key: "v"} and compare the key of the returned dict.
SAMPLES: dict[str, list[Any]] = {
    "`None`": [None],
    "`bool`": [True, False],
    "`int` from -2\\*\\*63 to 2\\*\\*64-1": [-(2**63), 0, 2**64 - 1],
    "`int` outside that range": [2**64, -(2**63) - 1, 10**30],
    "`int` subclass, `IntEnum` member": [Count(5), Level.HIGH],
    "finite `float`": [1.5, -0.0, 1e300, 5e-324],
    "NaN, `inf`, `-inf`": [math.nan, math.inf, -math.inf],
    "`float` subclass (not an `Enum` member)": [Ratio(0.25)],
    "`float`-mixin `Enum` member (`class E(float, Enum)`)": [Half.ONE],
    "`str`": ["", "é\x00😀"],
    "`str` with a lone surrogate": ["a\ud800"],
    "`str` subclass, `StrEnum` member": [Name("n"), Mode.FAST],
    "`bytes`": [b"\x00\xff"],
    "`bytes` subclass": [Blob(b"\x00b")],
    "`bytearray`, `memoryview`": [bytearray(b"ab"), memoryview(b"ab")],
    "`list`, `list` subclass": [[1, "a"], Items([2])],
    "`tuple`": [(1, "a")],
    "named tuple, `tuple` subclass": [Pair(1, 2), Span((1, "a"))],
    "`dict`, `dict` subclass": [{"a": [1]}, Record(b=2)],
    "`set`, `frozenset`": [{1}, frozenset({1})],
    "`datetime.datetime`": [
        DT,
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=PARIS),
        datetime.datetime(1900, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Amsterdam")),
    ],
    "`datetime.date`": [datetime.date(2026, 1, 2)],
    "`datetime.time`": [datetime.time(3, 4, 5), datetime.time(3, 4, 5, 13040)],
    "`datetime.timedelta`": [datetime.timedelta(seconds=1)],
    "`uuid.UUID`": [UID],
    "`decimal.Decimal`": [decimal.Decimal("1.5")],
    "`complex`": [1j],
    "dataclass instance": [Point(1, "p")],
    "`enum.Enum` member (str value)": [Color.RED],
    "`enum.Enum` member (int value)": [Rank.FIRST],
    "`enum.Enum` member (float value)": [Weight.LIGHT],
    "`enum.Enum` member (tuple value)": [Corner.ORIGIN],
    "`msgpack.ExtType`, `msgpack.Timestamp`": [
        msgpack.ExtType(5, b"x"),
        msgpack.Timestamp(1, 2),
    ],
    "any other object": [object()],
    "map key `str`": [{"k": "v"}],
    "map key `str` subclass, `StrEnum` member": [{Name("k"): "v"}, {Mode.FAST: "v"}],
    "map key `int`": [{1: "v"}, {2**64 - 1: "v"}],
    "map key `int` subclass, `IntEnum` member": [{Count(7): "v"}, {Level.HIGH: "v"}],
    "map key `float`": [{1.5: "v"}, {math.inf: "v"}],
    "map key `bool`": [{True: "v"}],
    "map key `None`": [{None: "v"}],
    "map key `bytes`": [{b"k": "v"}],
    "map key `msgpack.ExtType`, `msgpack.Timestamp`": [
        {msgpack.ExtType(5, b"x"): "v"},
        {msgpack.Timestamp(1, 2): "v"},
    ],
    "map key `tuple`": [{(1, 2): "v"}, {(): "v"}],
    "map key `frozenset`, `UUID`, `datetime`, `Enum` member (not an `int` or `str` subclass)": [
        {frozenset({1}): "v"},
        {UID: "v"},
        {DT: "v"},
        {Color.RED: "v"},
        {Rank.FIRST: "v"},
    ],
}

#: What a converted sample reads back as, where the table gives the rule in words.
CONVERTED: dict[str, Any] = {
    "json:`datetime.datetime`": [
        "2026-01-02T03:04:05.000006",
        "2026-01-02T03:04:05+01:00",
        "1900-01-01T12:00:00+00:19:32",
    ],
    "json:`datetime.date`": ["2026-01-02"],
    "json:`datetime.time`": ["03:04:05", "03:04:05.013040"],
    "json:`uuid.UUID`": ["00000000-0000-0000-0000-000000000001"],
    "json:dataclass instance": [{"x": 1, "label": "p"}],
    "json:`enum.Enum` member (str value)": ["red"],
    "json:`enum.Enum` member (int value)": [1],
    "json:`enum.Enum` member (float value)": [1.5],
    "json:`enum.Enum` member (tuple value)": [[0, "o"]],
}


def _table() -> dict[str, dict[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- codec-table: start -->")[1].split("<!-- codec-table: end -->")[0]
    lines = [ln.strip() for ln in body.strip().splitlines()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Python value", "`json`", "`msgpack`", "`raw`"]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == 4, line
        rows[cells[0]] = dict(zip(CODECS, cells[1:], strict=True))
    return rows


def _plain(v: Any) -> Any:
    """The sample as its plain types (the table's "its value" conversions)."""
    if isinstance(v, bool) or v is None or type(v) in (msgpack.ExtType, msgpack.Timestamp):
        return v
    if isinstance(v, int):
        return int.__int__(v)
    if isinstance(v, float):
        return float.__float__(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, bytes):
        return bytes.__bytes__(v)
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {_plain(k): _plain(x) for k, x in v.items()}
    return v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b) and type(a) is type(b)


TYPE_NAMES = {"None": "NoneType"}


def test_every_row_has_samples_and_every_sample_a_row() -> None:
    assert set(_table()) == set(SAMPLES)


@pytest.mark.parametrize("codec", CODECS)
def test_table_says_what_the_codec_returns(codec: str) -> None:
    rows = _table()
    with aurora_storage.open("memory://", codec=codec) as repo:
        for label, samples in SAMPLES.items():
            cell = rows[label][codec]
            is_key = label.startswith("map key")
            for i, sample in enumerate(samples):
                key = f"{label}:{i}"
                if cell.startswith("refused"):
                    with pytest.raises(SerializationError):
                        repo.put("t", key, sample)
                    assert not repo.has("t", key), key
                    continue
                # The types the cell names before its explanation: `int`, or
                # `ExtType`, `Timestamp` (each sample is one of them).
                names = re.findall(r"`([A-Za-z_.]+)`", cell.split("(")[0])
                assert names, f"cell {cell!r} names no type ({label}, {codec})"
                want_types = [TYPE_NAMES.get(n, n) for n in names]
                repo.put("t", key, sample)
                got = repo.get("t", key)
                if is_key:
                    assert got is not None
                    (got_key,) = got
                    (sample_key,) = sample
                    assert type(got_key).__name__ in want_types, (label, codec, got)
                    assert _same(got_key, _plain(sample_key)), (label, codec, got)
                    continue
                assert type(got).__name__ in want_types, (label, codec, got)
                converted = CONVERTED.get(f"{codec}:{label}")
                want = converted[i] if converted is not None else _plain(sample)
                assert _same(got, want), (label, codec, got, want)
