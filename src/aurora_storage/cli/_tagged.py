"""Tagged JSON: keys and values that plain JSON cannot carry, written so they read back.

The command line's one textual form for keys (``--key-json``, ``keys --json``, export
files) and for values whose codec is not JSON. Plain JSON covers ``str``, finite
``float``, ``bool``, ``None``, lists and ``int`` within 64 bits; everything else is a
one-member object whose name starts with ``$``:

=====================  =======================================================
``{"$bytes": "..."}``  bytes, standard base64 (``{"$bytes": "AAE="}`` is ``b"\\x00\\x01"``)
``{"$int": "..."}``    an int beyond 64 bits, in decimal
``{"$float": "inf"}``  ``inf``, ``-inf`` (``nan`` is no key and no JSON value)
``{"$dict": [...]}``   a dict as ``[[key, value], ...]`` (any key type; also used for a
                       dict whose own names could be mistaken for a tag)
=====================  =======================================================

Lists and tuples are both JSON arrays (they are the same key; keys decode as tuples).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

__all__ = ["TaggedJSONError", "from_tagged", "to_tagged"]

_INT64 = 1 << 63
_PLAIN = (str, bool, type(None))


class TaggedJSONError(ValueError):
    """A tagged-JSON document that does not describe a key or value."""


def to_tagged(value: Any) -> Any:
    """``value`` as a plain-JSON-serialisable object (see the module docstring).

    Raises:
        TaggedJSONError: a type tagged JSON cannot carry (sets, objects, NaN).
    """
    tp = type(value)
    if tp is str or value is None or tp is bool:
        return value
    if tp is int:
        return value if -_INT64 <= value < _INT64 else {"$int": str(value)}
    if tp is float:
        if math.isfinite(value):
            return value
        if math.isnan(value):
            raise TaggedJSONError("NaN cannot be written as a key or value")
        return {"$float": "inf" if value > 0 else "-inf"}
    if tp is bytes or isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list | tuple):
        return [to_tagged(v) for v in value]
    if isinstance(value, dict):
        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: to_tagged(v) for k, v in value.items()}
        return {"$dict": [[to_tagged(k), to_tagged(v)] for k, v in value.items()]}
    if isinstance(value, str):  # str subclasses (enums): their value
        return str(value)
    if isinstance(value, int):
        return to_tagged(int(value))
    if isinstance(value, float):
        return to_tagged(float(value))
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


def _untag(name: str, body: Any, *, as_key: bool) -> Any:
    if name == "$bytes":
        if not isinstance(body, str):
            raise TaggedJSONError('"$bytes" takes a base64 string')
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise TaggedJSONError(f'"$bytes": not base64: {exc}') from exc
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
        raise TaggedJSONError('"$float" takes "inf" or "-inf"')
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
    raise TaggedJSONError(f"unknown tag {name!r}; known: $bytes, $int, $float, $dict")
