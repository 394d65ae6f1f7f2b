"""Value codecs: how values become bytes.

Three are built in: ``json`` (orjson; the default), ``msgpack`` and ``raw`` (bytes as
they are). Plugins add more with :func:`register_codec` or the
``aurora_storage_codecs`` hook. A store records the codec it was created with, so a
later open with no codec uses it and a different one is refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import gc
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import compress
from typing import Any, Generic, NoReturn, TypeVar

import msgpack
import orjson

from .errors import ConfigurationError

__all__ = ["Codec", "available_codecs", "get_codec", "register_codec"]

#: The value type a codec's ``decode`` returns.
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Codec(Generic[T]):
    """A named pair of functions turning values into bytes and back.

    Generic over the value type ``decode`` returns (inferred from it:
    ``Codec("proto", Order.SerializeToString, Order.FromString)`` is a
    ``Codec[Order]``), so :func:`aurora_storage.open` with that codec returns a
    ``Repository[Any, Order]``. The built-in ``raw`` codec is a ``Codec[bytes]``; ``json``
    and ``msgpack`` are ``Codec[Any]``.

    Attributes:
        name: the registry name recorded in each store's metadata.
        encode: value -> bytes; raise any exception for a value it cannot encode, or
            whose encoding would not decode to an equal value (round-trip or refuse; the
            repository turns it into :class:`~aurora_storage.errors.SerializationError`
            naming the offending path inside the value).
        decode: bytes -> value.
        encode_held: optional variant of ``encode`` for values kept alive in bulk until
            one write (``put_many``, batches); ``None`` means ``encode``. The json codec
            sets it because orjson's output holds ~4 KiB of allocation per small value
            while alive (100k held values: ~390 MiB, and slow to allocate); an exact-size
            copy costs ~0.1 us.
    """

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], T]
    encode_held: Callable[[Any], bytes] | None = None


class UnreadableValueError(ValueError):
    """A codec's refusal of a value it could encode but not return equal.

    Attributes:
        value_path: where the offending part sits inside the value, e.g.
            ``value["temp"]`` or ``value[(1, 2)]`` (a map key).
    """

    def __init__(self, message: str, *, value_path: str) -> None:
        super().__init__(f"{value_path}: {message}")
        self.reason = message
        self.value_path = value_path


def _raw_encode(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        # Through memoryview: a subclass's __bytes__ cannot change what is stored.
        return bytes(memoryview(value))
    raise TypeError(f"the raw codec stores bytes only, got {type(value).__name__}")


def _raw_decode(data: bytes) -> bytes:
    return data


_unpackb = msgpack.unpackb
_ExtType = msgpack.ExtType


def _msgpack_default(converted: list[bool], obj: Any) -> Any:
    """What msgpack packs for an object that is not of an exact type it packs itself.

    The packer runs with ``strict_types``: only exact ``dict``, ``list``, ``str``,
    ``int`` ... are packed directly, so a subclass comes here and is packed as its real
    contents, read through the base class's own storage (as orjson, the json codec,
    reads them). Without it msgpack's packer takes a ``dict`` subclass's pairs from its
    ``items()`` and its size from ``__len__``, and a ``list`` subclass's items from its
    ``__iter__``, which a subclass may override to say something else than it holds (a
    redacting ``items()`` stored ``"***"``). A tuple (and a named tuple) is packed as a
    list of its items, as before; an ``ExtType`` subclass is refused.

    ``converted[0]`` is set when a ``str``, ``int``, ``float`` or ``bytes`` subclass is
    packed as its plain form: as a map key it may become equal to another key of its
    map (a subclass's ``__eq__``/``__hash__`` kept them apart), which
    :func:`_msgpack_encode` then checks.

    Raises:
        TypeError: a type msgpack does not store (a plain ``Enum``, a set, an object).
        OverflowError: an ``int`` beyond 64 bits.
    """
    if type(obj) is tuple:  # the common case first
        return list(obj)
    if isinstance(obj, dict):
        return dict(dict.items(obj))
    if isinstance(obj, list):
        return list.copy(obj)
    if isinstance(obj, tuple) and not isinstance(obj, _ExtType):
        return list(tuple.__iter__(obj))
    if isinstance(obj, str):
        converted[0] = True
        return str.__str__(obj)
    if isinstance(obj, int):
        if type(obj) is int:  # came back: beyond what msgpack stores
            raise OverflowError("Integer value out of range")
        converted[0] = True
        return int.__int__(obj)
    if isinstance(obj, float):
        converted[0] = True
        return float.__float__(obj)
    if isinstance(obj, bytes):
        converted[0] = True
        return bytes.__bytes__(obj)
    if isinstance(obj, bytearray):
        return bytearray.copy(obj)
    raise TypeError(f"can not serialize {type(obj).__name__!r} object")


#: A packer whose output was larger than this is dropped, not kept for the thread's
#: next value. A ``Packer`` never shrinks its buffer (it grows to twice what it must
#: hold), so a thread that once packed a 200 MB value kept ~200 MB for its life, and
#: each thread of a pool its own copy. 256 KiB is the buffer a new packer starts with:
#: a kept packer holds at most 512 KiB, and a new one (~0.1 us) costs under 0.1 % of
#: packing and checking a value this large (~240 us).
_KEEP_PACKER_MAX = 256 * 1024


def _new_packer() -> tuple[msgpack.Packer, list[bool]]:
    """A packer and its flag: whether it packed a scalar subclass as its plain form."""
    converted = [False]
    packer = msgpack.Packer(
        use_bin_type=True,
        strict_types=True,
        default=functools.partial(_msgpack_default, converted),
    )
    return packer, converted


#: Each thread's packer: ``packb`` builds a new ``Packer`` per call, which costs more
#: than packing a small value (~600 of ~850 ns for ``{"n": 1}``).
_packers = threading.local()


def _pack(value: Any) -> tuple[bytes, bool]:
    """``value`` packed by this thread's packer, and whether a scalar subclass was packed
    as its plain form (a fresh packer for a nested call: a subclass's ``__hash__`` runs
    while :func:`_msgpack_default` rebuilds a dict, and could store a value itself).

    A packer that failed (its buffer may have grown before the failure) or made an
    output over :data:`_KEEP_PACKER_MAX` is dropped, so its buffer is freed.
    """
    entry = getattr(_packers, "entry", None)
    if entry is None:
        entry = _new_packer()
    _packers.entry = None
    packer, converted = entry
    out: bytes = packer.pack(value)
    seen = converted[0]
    if seen:
        converted[0] = False
    if len(out) <= _KEEP_PACKER_MAX:
        _packers.entry = entry
    return out, seen


class _KeysMerged(Exception):
    """Two keys of one map unpacked as one."""


def _unique_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _KeysMerged
    return out


def _plain_key(key: Any) -> Any:
    """The key msgpack packs for ``key`` (a scalar subclass as its plain form)."""
    if type(key) in (str, int, float, bytes, bool) or key is None:
        return key
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return int.__int__(key)
    if isinstance(key, float):
        return float.__float__(key)
    if isinstance(key, bytes):
        return bytes.__bytes__(key)
    return key


def _merged_key_path(value: Any) -> tuple[str, str]:
    """The path of the first map key that packs as the same key as an earlier one of
    its map, and the reason; ``("value", ...)`` if none is found that way."""
    stack: list[tuple[Any, str]] = [(value, "value")]
    seen_ids: set[int] = set()
    while stack:
        v, path = stack.pop()
        if id(v) in seen_ids:
            continue
        seen_ids.add(id(v))
        if isinstance(v, dict):
            pairs = list(dict.items(v))
            first: dict[Any, Any] = {}
            for k, _ in pairs:
                try:
                    plain = _plain_key(k)
                    earlier = first.setdefault(plain, k)
                except TypeError:  # unhashable plain form: refused elsewhere
                    continue
                if earlier is not k:
                    return (
                        path + _step(k),
                        f"map key {k!r} of type {type(k).__name__} is stored as "
                        f"{plain!r}, the same key as {earlier!r} of type "
                        f"{type(earlier).__name__} in this map, so get would return "
                        "fewer entries; give the keys plain, distinct values",
                    )
            stack.extend((x, path + _step(k)) for k, x in reversed(pairs))
        elif isinstance(v, list | tuple):
            items = list(list.__iter__(v) if isinstance(v, list) else tuple.__iter__(v))
            stack.extend((x, f"{path}[{i}]") for i, x in reversed(list(enumerate(items))))
    return (
        "value",
        "two keys of one map are stored as the same key (get would return fewer entries)",
    )


def _check_keys_kept(value: Any, out: bytes) -> None:
    """Refuse ``value`` if a map of ``out`` unpacks with fewer entries than it packed."""
    try:
        _unpackb(out, raw=False, strict_map_key=False, object_pairs_hook=_unique_pairs)
    except _KeysMerged:
        path, reason = _merged_key_path(value)
        raise UnreadableValueError(reason, value_path=path) from None


def _msgpack_encode(value: Any) -> bytes:
    # _pack, inlined: this is every msgpack write's path.
    entry = getattr(_packers, "entry", None)
    if entry is None:
        entry = _new_packer()
    _packers.entry = None
    out: bytes = entry[0].pack(value)
    flag = entry[1]
    converted = flag[0]
    if converted:
        flag[0] = False
    if len(out) <= _KEEP_PACKER_MAX:
        _packers.entry = entry
    # Round-trip or refuse: msgpack packs values it cannot unpack (a tuple map key packs
    # as an array and unpacks as an unhashable list; an ext type reserved by msgpack may
    # not decode). Unpacking is C code, about as fast as packing, and catches every such
    # case; what does unpack is the documented conversion (tuple -> list ...).
    try:
        _unpackb(out, raw=False, strict_map_key=False)
    except Exception as exc:
        path, reason = _locate(_msgpack_encode_only, value)
        raise UnreadableValueError(
            f"msgpack can write it but not read it back ({reason or exc})", value_path=path
        ) from exc
    if converted:
        # A scalar subclass was packed as its plain form: as map keys, two that its
        # __eq__/__hash__ kept apart may now be one key (get would drop an entry).
        _check_keys_kept(value, out)
    return out


def _msgpack_encode_only(value: Any) -> bytes:
    out, converted = _pack(value)
    _unpackb(out, raw=False, strict_map_key=False)
    if converted:
        _check_keys_kept(value, out)
    return out


def _msgpack_decode(data: bytes) -> Any:
    return _unpackb(data, raw=False, strict_map_key=False)


_dumps = orjson.dumps
#: Whether an output holds b"null": the regular expression engine's literal search
#: scans a ~200-byte orjson output about 30 % faster than ``bytes.find`` (both read
#: every byte of a text full of n, u and l; measured 162 vs 195 ns).
_has_null = re.compile(rb"null").search
_DATETIME, _DATE, _TIME = datetime.datetime, datetime.date, datetime.time
#: Datetimes, dates and times go to :func:`_json_default` instead of orjson's own writer.
_PASSTHROUGH_DATETIME = orjson.OPT_PASSTHROUGH_DATETIME


def _json_default(obj: Any) -> str:
    """Write a datetime, date or time as Python's ``isoformat()``; refuse anything else.

    orjson's own writer loses data in two cases, silently: a ``time`` whose microseconds
    are 10000-99999 loses the leading zero (``.013040`` as ``.13040``, read back as
    130400 us), and a UTC offset with seconds is rounded to minutes (a historic zone's
    ``+00:19:32`` as ``+00:20``, another instant). ``isoformat()`` writes the same text
    as orjson in every other case and keeps those exactly. Only the exact types are
    taken, as orjson does (a subclass is refused); an aware ``time`` stays refused.
    """
    t = type(obj)
    if t is _DATETIME or t is _DATE:
        return obj.isoformat()  # type: ignore[no-any-return]  # a date or datetime (exact type checked)
    if t is _TIME:
        if obj.tzinfo is not None:
            raise TypeError("datetime.time must not have tzinfo set")
        return obj.isoformat()  # type: ignore[no-any-return]  # a time (exact type checked)
    raise TypeError  # orjson then raises its own "Type is not JSON serializable: <type>"


#: The deepest nesting of containers the json codec stores: orjson's writer refuses a
#: list, dict or dataclass that sits 255 containers deep (``Recursion limit reached``,
#: counting every array and object around it, tuples and empty ones included), so 254
#: levels is what it writes for lists and dicts. Its writer does not check a tuple: a
#: tuple 255 to 1024 deep was written and read back as lists that could not be written
#: again, one deeper was written but never read back (its reader stops at 1024), and one
#: some thousands deep corrupted the heap inside ``orjson.dumps`` (the process aborted).
#: So the same limit holds for every kind, checked before ``orjson.dumps`` runs.
_JSON_MAX_DEPTH = 254

_referents = gc.get_referents
#: Containers with more items than this are checked in slices of it, so the list of
#: their grandchildren that ``gc.get_referents`` builds stays small.
_DEPTH_SLICE = 1024
_PAST_DEPTH = _JSON_MAX_DEPTH + 1
#: Containers with more items than this are checked with one ``gc.get_referents`` call
#: (about 0.3-0.45 us: it raises an audit event) rather than a Python loop over their
#: items (about 0.1 us an item on the machine measured).
_LOOP_MAX = 4
#: The types orjson writes as scalars, skipped by the depth walk.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_depth_kids(v: Any) -> tuple[bool, Any] | None:
    """``(whether v is a JSON array or object, the parts orjson writes inside it)``, or
    ``None`` for a value orjson writes without looking inside (a scalar, a datetime, a
    UUID) or refuses before looking inside (a tuple subclass, a set, an object).

    Reads containers as orjson does: a dict or list subclass through its base class's
    own storage, a dataclass through :func:`_dataclass_items`, an enum member through its
    value (written in its place, so no level of its own).
    """
    t = type(v)
    if t is dict:
        return True, list(v.values())
    if t is list or t is tuple:
        return True, v
    if t is str or t is int or t is float or t is bool or v is None:
        return None
    if isinstance(v, dict):
        return True, list(dict.values(v))
    if isinstance(v, list):
        return True, list(list.__iter__(v))
    if isinstance(v, enum.Enum):
        return False, [v.value]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return True, [x for _, x in _dataclass_items(v)]
    return None


def _json_too_deep(value: Any) -> bool:
    """Whether ``value`` nests containers deeper than :data:`_JSON_MAX_DEPTH`. No paths.

    Scalars are skipped where they are met, not stacked. A long container none of whose
    items holds a reference (``gc.get_referents`` of a slice of them, one C call; a call
    costs about as much as looking at ~4 items here, so short ones are looked at) has
    only scalars and empty containers inside, and is not walked item by item.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    #: id -> the least depth a container was reached at: a part shared by many others
    #: (``a = [a, a]`` over and over) is walked once per depth, not once per path.
    reached: dict[int, int] = {}
    push = stack.append
    pop = stack.pop
    while stack:
        v, depth = pop()
        t = type(v)
        # The plain containers inline (no call); the rest as orjson reads them.
        if t is dict:
            kids: Any = v.values()
            level = True
        elif t is list or t is tuple:
            kids = v
            level = True
        else:
            found = _json_depth_kids(v)
            if found is None:
                continue
            level, kids = found
        key = id(v)
        if reached.get(key, _PAST_DEPTH) <= depth:
            continue
        reached[key] = depth
        if level:
            depth += 1
            if depth > _JSON_MAX_DEPTH:
                return True
        if len(kids) > _LOOP_MAX and depth < _JSON_MAX_DEPTH:
            # An empty container holds no reference but is a level itself, hence only
            # below the last allowed level.
            whole = list(kids)
            for start in range(0, len(whole), _DEPTH_SLICE):
                part = whole[start : start + _DEPTH_SLICE]
                if _referents(*part):
                    push_all = [(x, depth) for x in part if type(x) not in _SCALARS]
                    stack.extend(push_all)
            continue
        for x in kids:
            tx = type(x)
            if tx is str or tx is int or tx is float or tx is bool or x is None:
                continue
            push((x, depth))
    return False


def _json_depth_path(value: Any) -> str:
    """The path of the first container that sits deeper than :data:`_JSON_MAX_DEPTH`
    (only called once :func:`_json_too_deep` said there is one)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "value")]
    reached: dict[int, int] = {}
    while stack:
        v, depth, path = stack.pop()
        found = _json_depth_kids(v)
        if found is None or reached.get(id(v), _JSON_MAX_DEPTH + 1) <= depth:
            continue
        reached[id(v)] = depth
        level, kids = found
        if level:
            depth += 1
            if depth > _JSON_MAX_DEPTH:
                return path
        if isinstance(v, enum.Enum):
            steps = [".value"]
        elif isinstance(v, dict):
            steps = [_step(k) for k in dict.keys(v)]
        elif isinstance(v, list | tuple):
            steps = [f"[{i}]" for i in range(len(kids))]
        else:
            steps = [f".{n}" for n, _ in _dataclass_items(v)]
        stack.extend((x, depth, path + s) for s, x in reversed(list(zip(steps, kids, strict=True))))
    return "value"


def _json_check_depth(value: Any) -> None:
    """Refuse ``value`` if it nests containers deeper than the json codec stores.

    Runs before ``orjson.dumps``: orjson's writer must never see a tuple nested that deep
    (see :data:`_JSON_MAX_DEPTH`).

    Raises:
        UnreadableValueError: naming the first container past the limit.
    """
    if _json_too_deep(value):
        _refuse_depth(value)


def _refuse_depth(value: Any) -> NoReturn:
    raise UnreadableValueError(
        f"the value nests too deep: the json codec stores lists, tuples, dicts and "
        f"dataclasses nested at most {_JSON_MAX_DEPTH} levels (orjson refuses deeper "
        "lists and dicts and cannot read deeper tuples back), and the container at "
        "this path is one level past it; flatten the value, store the deep part as "
        "a string, or use the msgpack codec (up to 1024 levels)",
        value_path=_json_depth_path(value),
    )


class _Unsure(Exception):
    """The quick walks met what they do not read (a subclass, a dataclass, an enum
    member, an object) or a value sharing its parts: the exact walk decides."""


class _Wide(Exception):
    """:func:`_plain_too_deep` spent its budget: a wide value, walked a level at a
    time by :func:`_levels_too_deep`."""


#: Containers :func:`_plain_too_deep` visits (a Python call each) before a value is
#: walked a level at a time (a few C calls per level, whatever its width).
_PLAIN_BUDGET = 48
#: The most containers one level of :func:`_levels_too_deep` may hold before the exact
#: walk takes over (it visits a part shared many times over once: ``a = (a, a)`` 300
#: times over is 2**300 containers a level down).
_LEVEL_MAX = 200_000
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})
_PLAIN_CONTAINERS = frozenset({dict, list, tuple})
_PLAIN = _PLAIN_SCALARS | _PLAIN_CONTAINERS
_is_plain_container = _PLAIN_CONTAINERS.__contains__


def _plain_too_deep(v: Any, depth: int, budget: list[int]) -> bool:
    """Whether the plain dict, list or tuple ``v``, a container at level ``depth``,
    holds a container past :data:`_JSON_MAX_DEPTH`: a recursive call per container.

    A container with more than :data:`_LOOP_MAX` items none of which holds a reference
    (``gc.get_referents``, one C call) holds only scalars and empty containers, within
    the limit while ``depth`` is below it.

    Raises:
        _Unsure: anything but plain containers and scalars met.
        _Wide: more containers than the budget.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise _Wide
    kids = v.values() if type(v) is dict else v
    if len(kids) > _LOOP_MAX and depth < _JSON_MAX_DEPTH and not _referents(*kids):
        return False
    for x in kids:
        t = type(x)
        if t is str or t is int or t is float or t is bool or x is None:
            continue
        if t is dict or t is list or t is tuple:
            if depth >= _JSON_MAX_DEPTH or _plain_too_deep(x, depth + 1, budget):
                return True
            continue
        raise _Unsure
    return False


def _levels_too_deep(value: Any) -> bool:
    """:func:`_plain_too_deep` a level at a time: every container of one level handed
    to one ``gc.get_referents`` call (a plain dict's referents are its keys and values,
    a list's or tuple's its items), the next level picked out in C.

    Raises:
        _Unsure: anything but plain containers and scalars met, or a level past
            :data:`_LEVEL_MAX` containers.
    """
    level = [value]
    depth = 1
    while True:
        kids = _referents(*level)
        types = set(map(type, kids))
        if not types <= _PLAIN:
            raise _Unsure
        if types.isdisjoint(_PLAIN_CONTAINERS):
            return False
        if depth >= _JSON_MAX_DEPTH:
            return True
        level = list(compress(kids, map(_is_plain_container, map(type, kids))))
        depth += 1
        if len(level) > _LEVEL_MAX:
            raise _Unsure


def _json_depth_guard(value: Any) -> None:
    """:func:`_json_check_depth`, by the quick walks for a value of plain containers and
    scalars (:func:`_plain_too_deep`, then :func:`_levels_too_deep` for a wide one), by
    the exact walk for anything else. A refusal is confirmed by the exact walk (a dict
    key is a referent too: a quick walk may count one that orjson refuses anyway)."""
    t = type(value)
    if t is dict or t is list or t is tuple:
        try:
            try:
                too_deep = _plain_too_deep(value, 1, [_PLAIN_BUDGET])
            except _Wide:
                too_deep = _levels_too_deep(value)
        except (_Unsure, RecursionError):
            too_deep = True
        if too_deep and _json_too_deep(value):
            _refuse_depth(value)
    elif not (t is str or t is int or t is float or t is bool or value is None):
        _json_check_depth(value)


def _json_encode(value: Any) -> bytes:
    _json_depth_guard(value)
    try:
        data = _dumps(value, default=_json_default, option=_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError as exc:
        # _json_default's own reason if it gave one, else orjson's error as it is. No
        # local may hold the raised error: its traceback holds this frame, and a cycle
        # would keep the caller's frames alive until a garbage collection.
        reason = exc.__cause__
        if isinstance(reason, TypeError) and reason.args:
            raise TypeError(*reason.args) from exc
        raise
    # orjson writes NaN and the infinities as null, which reads back as None. None is
    # the only other source of null outside strings, so only an output that holds
    # b"null" needs a look at the value. ``int in bytes`` is a memchr, far cheaper than
    # a substring search, so two letters of null filter first (short numeric values
    # skip the search; real text holds both, so more letters only add cost).
    if 0x6E in data and 0x6C in data and _has_null(data) is not None:
        _json_check_finite(value)
    return data


def _json_encode_held(value: Any) -> bytes:
    _json_depth_guard(value)
    try:
        data = _dumps(value, default=_json_default, option=_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError as exc:
        # _json_default's own reason if it gave one, else orjson's error as it is. No
        # local may hold the raised error: its traceback holds this frame, and a cycle
        # would keep the caller's frames alive until a garbage collection.
        reason = exc.__cause__
        if isinstance(reason, TypeError) and reason.args:
            raise TypeError(*reason.args) from exc
        raise
    if 0x6E in data and 0x6C in data and _has_null(data) is not None:
        _json_check_finite(value)
    return bytes(memoryview(data))


def _dataclass_items(v: Any) -> list[tuple[str, Any]]:
    """The ``(name, value)`` pairs orjson writes for a dataclass instance.

    orjson writes the instance's ``__dict__`` (fields and any other attribute) or, for a
    slotted one, its fields - in both cases only names that do not start with ``_``.
    """
    try:
        attrs = object.__getattribute__(v, "__dict__")
    except AttributeError:
        names = [f.name for f in dataclasses.fields(v)]
        return [(n, getattr(v, n)) for n in names if not n.startswith("_")]
    return [(n, x) for n, x in dict.items(attrs) if not n.startswith("_")]


def _nonfinite(v: Any) -> bool:
    """Whether ``v`` holds a float orjson writes as null (NaN, +-inf). Fast, no paths.

    Reads containers the way orjson does: a dict or list subclass through the base
    class's own storage (an overriding ``items``/``__iter__`` cannot hide a part), a
    dataclass through :func:`_dataclass_items`.
    """
    t = type(v)
    if t is dict:
        items: Iterable[Any] = v.values()
    elif t is list or t is tuple:
        items = v
    elif isinstance(v, float):
        return v - v != 0.0  # NaN for NaN and +-inf, 0.0 for every finite float
    elif isinstance(v, dict):
        items = dict.values(v)
    elif isinstance(v, list):
        items = list.__iter__(v)
    elif isinstance(v, tuple):
        items = tuple.__iter__(v)
    elif isinstance(v, enum.Enum):
        return _nonfinite(v.value)
    elif dataclasses.is_dataclass(v) and not isinstance(v, type):
        items = [x for _, x in _dataclass_items(v)]
    else:
        return False
    for x in items:
        tx = type(x)
        if tx is float:
            if x - x != 0.0:
                return True
        elif tx is str or tx is int or x is None or tx is bool:
            continue
        elif _nonfinite(x):
            return True
    return False


def _json_check_finite(value: Any) -> None:
    """Raise UnreadableValueError at the first non-finite float orjson turned into null.

    Walks what orjson serialises (it already accepted the value), the way it reads it:
    dicts, lists and tuples through their own storage, a dataclass's public attributes,
    enum values and floats.
    """
    if not _nonfinite(value):
        return
    stack: list[tuple[Any, str]] = [(value, "value")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                raise UnreadableValueError(
                    f"float {v!r} has no JSON form (orjson would write null, read back as "
                    "None); store it as a string or use the msgpack codec",
                    value_path=path,
                )
        elif isinstance(v, dict):
            stack.extend((x, path + _step(k)) for k, x in reversed(dict.items(v)))
        elif isinstance(v, list):
            stack.extend(
                (x, f"{path}[{i}]") for i, x in reversed(list(enumerate(list.__iter__(v))))
            )
        elif isinstance(v, tuple):
            stack.extend(
                (x, f"{path}[{i}]") for i, x in reversed(list(enumerate(tuple.__iter__(v))))
            )
        elif isinstance(v, enum.Enum):
            stack.append((v.value, f"{path}.value"))
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            stack.extend((x, f"{path}.{n}") for n, x in reversed(_dataclass_items(v)))


def _step(key: Any) -> str:
    """The path step of a map key: ``["temp"]`` for a str (as in JSON), else its repr."""
    if isinstance(key, str):
        text = repr(str.__str__(key))
        if text[0] == "'":
            text = '"' + text[1:-1].replace("\\'", "'").replace('"', '\\"') + '"'
        return f"[{text}]"
    return f"[{key!r}]"


def _children(value: Any) -> Iterator[tuple[str, Any, bool]]:
    """``(path step, part, is_map_key)`` of the parts a codec may serialise separately."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            step = _step(k)
            yield step, k, True
            yield step, v, False
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield f"[{i}]", v, False
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for name, v in _dataclass_items(value):
            yield f".{name}", v, False


@dataclass
class _EmptyDataclass:
    """A dataclass with nothing in it: whether a codec stores dataclasses at all."""


def _takes_containers_like(encode: Callable[[Any], bytes], value: Any) -> bool:
    """Whether ``encode`` takes an empty container of ``value``'s kind.

    raw takes no container; msgpack and raw take no dataclass (only json does), so the
    path names the dataclass rather than an attribute that also fails on its own.
    """
    empty: Any
    if isinstance(value, Mapping):
        empty = {}
    elif isinstance(value, list | tuple):
        empty = []
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        empty = _EmptyDataclass()
    else:
        return True
    try:
        encode(empty)
    except Exception:
        return False
    return True


def _locate(encode: Callable[[Any], bytes], value: Any) -> tuple[str, str]:
    """Find the part of ``value`` that ``encode`` refuses: its path and the reason.

    Only used once a write has failed. Descends into the first part that fails on its
    own; a map key is tried alone as ``{key: None}``. Works for any codec, including
    plugins' codecs, because it only calls ``encode``.
    """
    path = "value"
    reason = ""
    current = value
    seen: set[int] = set()
    for _ in range(1000):  # deep enough for any value a codec accepts to nest
        if id(current) in seen:
            return path, "the value contains itself"
        seen.add(id(current))
        if not _takes_containers_like(encode, current):
            return path, reason  # the container itself is refused (raw), not a part
        for step, part, is_key in _children(current):
            try:
                encode({part: None} if is_key else part)
            except Exception as exc:
                reason = str(exc.reason if isinstance(exc, UnreadableValueError) else exc)
                if is_key:
                    return (
                        path + step,
                        f"a map key of type {type(part).__name__} cannot be stored: {reason}",
                    )
                path += step
                current = part
                break
        else:
            return path, reason
    return path, reason


def locate_unencodable(codec: Codec[Any], value: Any, exc: BaseException) -> tuple[str, str]:
    """The path inside ``value`` and the reason ``codec`` refused it with ``exc``."""
    if isinstance(exc, UnreadableValueError):
        return exc.value_path, exc.reason
    try:
        path, reason = _locate(codec.encode, value)
    except Exception:  # a codec that fails oddly still gets a message
        return "value", str(exc)
    return path, reason or str(exc)


JSON: Codec[Any] = Codec("json", _json_encode, orjson.loads, _json_encode_held)
MSGPACK: Codec[Any] = Codec("msgpack", _msgpack_encode, _msgpack_decode)
RAW: Codec[bytes] = Codec("raw", _raw_encode, _raw_decode)

_lock = threading.Lock()
_BUILTIN: dict[str, Codec[Any]] = {c.name: c for c in (JSON, MSGPACK, RAW)}
_codecs: dict[str, Codec[Any]] = dict(_BUILTIN)
#: Codec name -> (the plugin key that provided it, the codec it provided): a plugin
#: whose hook builds fresh Codec objects on each call offers the same name again, which
#: is no clash.
_from_plugin: dict[str, tuple[str, Codec[Any]]] = {}


def _codec_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a codec (a sentence for an error message), or ``None``.

    A name is a non-empty ``str`` that is valid UTF-8 text: it is recorded as JSON text
    in each store's metadata record and marker, which cannot hold a lone surrogate
    (``"x\\udc80"``, as ``os.fsdecode`` makes of undecodable bytes). Nothing else is
    refused: case, spaces and any other character are kept as given.
    """
    if not isinstance(name, str) or not name:
        return f"a codec needs a non-empty str name, got {name!r}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"the codec name {name!r} is not valid UTF-8 text ({exc.reason} at position "
            f"{exc.start}), so it cannot be recorded in a store's metadata; give the codec "
            "a name without lone surrogates"
        )
    return None


def register_codec(codec: Codec[Any], *, replace: bool = False) -> None:
    """Register a codec under ``codec.name``.

    Raises:
        ConfigurationError: the name is taken and ``replace`` is false (a registered name
            is never silently replaced), ``codec`` is not a :class:`Codec`, or its name
            is empty, not a ``str`` or not valid UTF-8 text (a lone surrogate: each
            store records its codec's name as text).
    """
    if not isinstance(codec, Codec):
        raise ConfigurationError(f"register_codec() takes a Codec, got {type(codec).__name__}")
    problem = _codec_name_problem(codec.name)
    if problem is not None:
        raise ConfigurationError(problem)
    with _lock:
        if codec.name in _codecs and not replace and _codecs[codec.name] is not codec:
            raise ConfigurationError(
                f"a codec named {codec.name!r} is already registered; pass replace=True "
                "to replace it"
            )
        _codecs[codec.name] = codec


def _load_plugin_codecs() -> None:
    """Add the plugins' codecs (``aurora_storage_codecs``) to the table.

    A failing hook is recorded by the registry (``plugin_failures()``), not raised here.
    A plugin codec whose name is taken (a built-in, one from :func:`register_codec`,
    another plugin's) is ignored and recorded as a failure of that plugin: a registered
    name is never replaced, nor dropped without a word.
    """
    from ._registry import registry

    clashes: list[tuple[str, str, str]] = []
    offered = registry.plugin_codecs(Codec, _codec_name_problem)
    with _lock:
        for key, codec in offered:
            held = _codecs.get(codec.name)
            if held is None:
                _codecs[codec.name] = codec
                _from_plugin[codec.name] = (key, codec)
                continue
            owner, provided = _from_plugin.get(codec.name, (None, None))
            if held is codec or (owner == key and provided is held):
                continue
            if _BUILTIN.get(codec.name) is held:
                holder = f"the built-in codec {codec.name!r}"
            elif provided is held:
                holder = f"the codec of the plugin {owner!r}"
            else:
                holder = "a codec registered with register_codec()"
            clashes.append((key, codec.name, holder))
    for key, name, holder in clashes:
        registry.codec_clash(key, name, holder)


def get_codec(codec: str | Codec[Any]) -> Codec[Any]:
    """Return the codec registered as ``codec`` (a :class:`Codec` passes through).

    Raises:
        ConfigurationError: no codec of that name (listing the known ones),
            ``codec`` is neither a name nor a :class:`Codec`, or it is a :class:`Codec`
            whose name no store can record (empty, not a ``str``, or not valid UTF-8
            text; checked here too because :func:`aurora_storage.open` takes an
            unregistered codec).
        PluginError: no codec of that name while a codec plugin is broken (its
            ``aurora_storage_codecs()`` raised or returned no list of codecs), so the
            codec may be that plugin's: the message names it, its error is chained.
    """
    if isinstance(codec, Codec):
        problem = _codec_name_problem(codec.name)
        if problem is not None:
            raise ConfigurationError(problem)
        return codec
    if not isinstance(codec, str):
        raise ConfigurationError(
            f"a codec is a name or a Codec, got {type(codec).__name__}; "
            f"known codecs: {', '.join(sorted(_codecs))}"
        )
    found = _codecs.get(codec)
    if found is None:
        _load_plugin_codecs()
        found = _codecs.get(codec)
    if found is None:
        from ._registry import registry

        broken = registry.missing_codec(codec, sorted(_codecs))
        if broken is not None:
            raise broken
        raise ConfigurationError(
            f"unknown codec {codec!r}; known codecs: {', '.join(sorted(_codecs))}"
        )
    return found


def available_codecs() -> list[str]:
    """Names of every registered codec, sorted (a broken codec plugin adds none and is
    listed by :func:`aurora_storage.plugins.plugin_failures`)."""
    _load_plugin_codecs()
    return sorted(_codecs)
