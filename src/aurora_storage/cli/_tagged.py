"""Tagged JSON: keys and values that plain JSON cannot carry, written so they read back.

The command line's one textual form for keys (``--key-json``, ``keys --json``, export
files), tenants in JSON output, and values whose codec is not JSON. Plain JSON covers
``str`` (without a lone surrogate), finite ``float``, ``bool``, ``None``, lists and
``int`` within 64 bits; everything else is a one-member object whose name starts with
``$``:

========================  ====================================================
``{"$bytes": "..."}``     bytes, standard base64 (``{"$bytes": "AAE="}`` is ``b"\\x00\\x01"``)
``{"$int": "..."}``       an int beyond 64 bits, in decimal
``{"$float": "inf"}``     ``inf``, ``-inf``, ``nan`` (``nan`` is no key: keys refuse it)
``{"$str": "..."}``       a str holding a lone surrogate (U+D800-U+DFFF, as
                          :func:`os.fsdecode` makes of bytes that are not UTF-8), which
                          JSON text cannot hold: each surrogate written ``\\udXXX`` and each
                          backslash doubled (``{"$str": "b-\\\\udc80"}`` in the file is
                          ``"b-\\udc80"``)
``{"$ext": [n, "..."]}``  a msgpack extension value: its code and base64 data; code -1
                          is a :class:`msgpack.Timestamp`, any other a
                          :class:`msgpack.ExtType`
``{"$dict": [...]}``      a dict as ``[[key, value], ...]`` (any key type; also used for a
                          dict whose own names could be mistaken for a tag or hold a lone
                          surrogate)
========================  ====================================================

Lists and tuples are both JSON arrays (they are the same key; keys decode as tuples).
Every key, tenant and value a repository accepts with the built-in codecs has a tagged
form, and :func:`from_tagged` reads it back equal (NaN: a NaN).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

import orjson
from msgpack import ExtType, Timestamp

__all__ = ["TaggedJSONError", "from_tagged", "loads_json", "to_tagged"]

_INT64 = 1 << 63
#: The first lone surrogate in a str (no JSON text holds one).
_SURROGATE = re.compile("[\ud800-\udfff]").search
#: What a ``$str`` body escapes: a backslash, a surrogate.
_TO_ESCAPE = re.compile("[\\\\\ud800-\udfff]")
#: An escape inside a ``$str`` body; anything else after a backslash is malformed.
_ESCAPED = re.compile(r"\\(\\|u[dD][89a-fA-F][0-9a-fA-F]{2})?")


class TaggedJSONError(ValueError):
    """A tagged-JSON document that does not describe a key or value."""


#: 19 digits in a row: only where one is can an integer literal be beyond 64 bits
#: (2**63 has 19 digits; JSON has no leading zeros).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_STR = re.compile(r"[0-9]{19}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _holds_float(doc: Any) -> bool:
    if type(doc) is float:
        return True
    if type(doc) is list:
        return any(_holds_float(d) for d in doc)
    if type(doc) is dict:
        return any(_holds_float(d) for d in doc.values())
    return False


def _orjson_would_hold(doc: Any) -> bool:
    """Whether ``doc`` holds nothing orjson refuses (a lone surrogate, inf)."""
    if type(doc) is str:
        return plain_str(doc)
    if type(doc) is float:
        return math.isfinite(doc)
    if type(doc) is list:
        return all(_orjson_would_hold(d) for d in doc)
    if type(doc) is dict:
        return all(plain_str(k) and _orjson_would_hold(v) for k, v in doc.items())
    return True


def loads_json(data: bytes | str) -> Any:
    """A JSON document, every integer literal read as the exact ``int`` it writes.

    orjson holds ints from -2**63 to 2**64-1; it makes a float of a larger integer
    literal (``18446744073709551617`` would read as ``2**64``) or refuses it. A
    document with such a literal (one with 19 digits in a row) is read again with the
    standard parser, whose ints have any size; float literals stay floats.

    Raises:
        orjson.JSONDecodeError: not JSON (also a ``ValueError``).
    """
    if isinstance(data, str):
        long_digits = _LONG_DIGITS_STR.search(data) is not None
    else:
        long_digits = _LONG_DIGITS.search(data) is not None
    if not long_digits:
        return orjson.loads(data)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        refused: orjson.JSONDecodeError | None = exc
    else:
        if not _holds_float(doc):
            return doc
        refused = None
    try:
        exact = json.loads(data, parse_constant=_refuse_constant)
    except ValueError as exc:  # not JSON; an int of more digits than Python converts
        if refused is not None:
            raise refused from None
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raise orjson.JSONDecodeError(str(exc), text, 0) from exc
    if refused is not None and not _orjson_would_hold(exact):
        raise refused  # what orjson refused was not (only) a big integer
    return exact


def plain_str(s: str) -> bool:
    """Whether ``s`` is a JSON string as it is (holds no lone surrogate)."""
    return s.isascii() or _SURROGATE(s) is None


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return "\\\\" if c == "\\" else f"\\u{ord(c):04x}"


def _tag_str(s: str) -> dict[str, str]:
    return {"$str": _TO_ESCAPE.sub(_escape, s)}


def _unescape(m: re.Match[str]) -> str:
    body = m.group(1)
    if body is None:
        raise TaggedJSONError(
            '"$str": a backslash must start \\\\ or \\udXXX (a surrogate code point)'
        )
    return "\\" if body == "\\" else chr(int(body[1:], 16))


def tag_tenant(tenant: str) -> Any:
    """A tenant in JSON output: the str itself, or ``{"$str": ...}`` (see above)."""
    return tenant if plain_str(tenant) else _tag_str(tenant)


def to_tagged(value: Any) -> Any:
    """``value`` as a plain-JSON-serialisable object (see the module docstring).

    Raises:
        TaggedJSONError: a type tagged JSON cannot carry (sets, other objects).
    """
    tp = type(value)
    if tp is str:
        return value if value.isascii() or _SURROGATE(value) is None else _tag_str(value)
    if value is None or tp is bool:
        return value
    if tp is int:
        return value if -_INT64 <= value < _INT64 else {"$int": str(value)}
    if tp is float:
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return {"$float": "nan"}
        return {"$float": "inf" if value > 0 else "-inf"}
    if tp is bytes or isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if tp is ExtType:
        return {"$ext": [value.code, base64.b64encode(value.data).decode("ascii")]}
    if tp is Timestamp:
        return {"$ext": [-1, base64.b64encode(value.to_bytes()).decode("ascii")]}
    if isinstance(value, list | tuple):
        return [to_tagged(v) for v in value]
    if isinstance(value, dict):
        if all(type(k) is str and not k.startswith("$") and plain_str(k) for k in value):
            return {k: to_tagged(v) for k, v in value.items()}
        return {"$dict": [[to_tagged(k), to_tagged(v)] for k, v in value.items()]}
    if isinstance(value, str):  # str subclasses (enums): their value
        return to_tagged(str.__str__(value))
    if isinstance(value, int):
        return to_tagged(int.__int__(value))
    if isinstance(value, float):
        return to_tagged(float.__float__(value))
    raise TaggedJSONError(f"a {type(value).__name__} cannot be written as tagged JSON")


def from_tagged(doc: Any, *, as_key: bool = False) -> Any:
    """The key or value a tagged-JSON document describes (inverse of :func:`to_tagged`).

    Args:
        doc: a parsed JSON document.
        as_key: arrays become tuples (the form keys decode to) instead of lists, and
            dicts become hashable-free dicts as keys allow.

    Raises:
        TaggedJSONError: a malformed tag (unknown ``$`` name, bad base64 ...).
    """
    if isinstance(doc, list):
        items = [from_tagged(d, as_key=as_key) for d in doc]
        return tuple(items) if as_key else items
    if isinstance(doc, dict):
        if len(doc) == 1:
            ((name, body),) = doc.items()
            if name.startswith("$"):
                return _untag(name, body, as_key=as_key)
        for name in doc:
            if name.startswith("$"):
                raise TaggedJSONError(
                    f"{name!r}: names starting with '$' are tags; write such a dict as "
                    '{"$dict": [[name, value], ...]}'
                )
        return {k: from_tagged(v, as_key=as_key) for k, v in doc.items()}
    return doc


def _b64(body: Any, tag: str) -> bytes:
    if not isinstance(body, str):
        raise TaggedJSONError(f"{tag} takes a base64 string")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise TaggedJSONError(f"{tag}: not base64: {exc}") from exc


def _untag(name: str, body: Any, *, as_key: bool) -> Any:
    if name == "$bytes":
        return _b64(body, '"$bytes"')
    if name == "$int":
        if not isinstance(body, str):
            raise TaggedJSONError('"$int" takes a decimal string')
        try:
            return int(body)
        except ValueError as exc:
            raise TaggedJSONError(f'"$int": {exc}') from exc
    if name == "$float":
        if body == "inf":
            return math.inf
        if body == "-inf":
            return -math.inf
        if body == "nan":
            return math.nan
        raise TaggedJSONError('"$float" takes "inf", "-inf" or "nan"')
    if name == "$str":
        if not isinstance(body, str):
            raise TaggedJSONError('"$str" takes a string')
        return _ESCAPED.sub(_unescape, body)
    if name == "$ext":
        if not (isinstance(body, list) and len(body) == 2 and type(body[0]) is int):
            raise TaggedJSONError('"$ext" takes [code, base64 data]')
        code, data = body[0], _b64(body[1], '"$ext"')
        try:
            return Timestamp.from_bytes(data) if code == -1 else ExtType(code, data)
        except ValueError as exc:  # a code outside 0-127, a timestamp of a wrong size
            raise TaggedJSONError(f'"$ext": {exc}') from exc
    if name == "$dict":
        if not isinstance(body, list) or not all(isinstance(p, list) and len(p) == 2 for p in body):
            raise TaggedJSONError('"$dict" takes a list of [key, value] pairs')
        out: dict[Any, Any] = {}
        for k, v in body:
            key = from_tagged(k, as_key=True)
            try:
                out[key] = from_tagged(v, as_key=as_key)
            except TypeError as exc:  # an unhashable dict key (a dict inside a dict key)
                raise TaggedJSONError(f'"$dict": key {k!r} cannot be a dict key') from exc
        return out
    raise TaggedJSONError(f"unknown tag {name!r}; known: $bytes, $int, $float, $str, $ext, $dict")
