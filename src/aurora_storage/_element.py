"""The element codec: one key value <-> canonical, order-preserving bytes (I/O-free).

This module encodes a *key* (without its tenant); :mod:`aurora_storage._keys` puts
tenant and key together into a stored key and owns the layout. Element type codes,
which also give the cross-type order::

    None < False < True < numbers < str < bytes < tuples/lists < dicts

Numbers (``int`` and ``float``) share one ordering: ``-inf < negatives < 0 <
positives < inf``; ``2 < 2.5 < 10``. Integral floats are the same key as the int
(``1.0`` is ``1``; ``-0.0`` is ``0``) and decode as ``int``. A positive finite number
``v`` is encoded as its integer part ``n`` (a length byte, then ``n`` big-endian) and,
when ``v`` is not integral, its fraction in 7-bit groups whose low bit says "more
follows"; an integral number ends with ``0x00``. Negative numbers are the bitwise
complement of the encoding of ``|v|`` (the encoding is prefix-free, so complementing it
reverses the order). ``bool`` is its own type, not a number (``True`` is not ``1``).
Strings and bytes are escaped and terminated: every ``0x00`` inside is written as
``0x00 ESCAPE`` (``0x00 0xFF``) and ``END`` (``0x00``) closes the element, so a shorter
string sorts first and no element type code is ever ``0xFF``. Tuples and lists are the
same key (they decode as tuples); dicts are canonical (items sorted by encoded key).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidKeyError, KeyTooLargeError

__all__ = [
    "BYTES",
    "END",
    "ESCAPE",
    "POS",
    "SEQ",
    "STR",
    "decode_key",
    "encode_key",
    "encode_prefix",
    "prefix_successor",
    "read_escaped",
]

#: Terminates a str/bytes/tuple/dict element; inside str/bytes a ``0x00`` is escaped.
END = 0x00
#: The byte after an escaped ``0x00`` inside str/bytes; never an element type code.
ESCAPE = 0xFF

# Element type codes (their order is the cross-type order). STR, BYTES, POS and SEQ are
# public for the layout's decoding fast paths (aurora_storage._keys).
_NONE = 0x05
_FALSE = 0x06
_TRUE = 0x07
_NEG_INF = 0x10
_NEG = 0x11
_ZERO = 0x12
#: A positive finite number: a length byte, the big-endian integer part, the fraction.
POS = 0x13
_POS_INF = 0x14
#: A str: UTF-8, escaped, terminated.
STR = 0x20
#: A bytes key: escaped, terminated.
BYTES = 0x21
#: A tuple or list: its elements, then ``END``.
SEQ = 0x30
_DICT = 0x40

_B_NONE = bytes((_NONE,))
_B_FALSE = bytes((_FALSE,))
_B_TRUE = bytes((_TRUE,))
_B_ZERO = bytes((_ZERO,))
_B_NEG_INF = bytes((_NEG_INF,))
_B_POS_INF = bytes((_POS_INF,))
_B_STR = bytes((STR,))
_B_BYTES = bytes((BYTES,))
_B_POS = bytes((POS,))
_B_NEG = bytes((_NEG,))
_B_SEQ = bytes((SEQ,))
_B_END = b"\x00"
_B_NUL = b"\x00"
_B_ESCAPE = bytes((ESCAPE,))
_ESCAPED_NUL = _B_NUL + _B_ESCAPE
_INVERT = bytes(255 - i for i in range(256))
_SMALL = 1 << 64
_POS_HEAD = [bytes((POS, n)) for n in range(9)]

# Positive ints up to 2**2040 fit the one-byte length; beyond that a key is absurdly large.
_MAX_INT_BYTES = 255


def _esc(raw: bytes) -> bytes:
    # ``0 in raw`` is several times faster than ``b"\x00" in raw`` on CPython.
    if 0 in raw:
        raw = raw.replace(_B_NUL, _ESCAPED_NUL)
    return raw


def _utf8(s: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:
        # Lone surrogates are legal in a Python str; generalized UTF-8 keeps code point order.
        return s.encode("utf-8", "surrogatepass")


def _positive(v: int | float) -> bytes:
    """Prefix-free encoding of a positive finite number (without the type code)."""
    if type(v) is int:
        n = v
        frac: float = 0.0
    else:
        fl = float(v)
        n = math.floor(fl)
        frac = fl - n  # exact: the fraction's bits are a subset of v's bits
    nb = (n.bit_length() + 7) >> 3
    if nb > _MAX_INT_BYTES:
        raise KeyTooLargeError(
            f"a number key of {nb} bytes is too large (at most {_MAX_INT_BYTES} bytes, "
            f"about 2**{_MAX_INT_BYTES * 8})",
            size=nb,
            limit=_MAX_INT_BYTES,
        )
    head = bytes((nb,)) + n.to_bytes(nb, "big")
    if not frac:
        return head + _B_END
    p, q = frac.as_integer_ratio()  # q is a power of two
    k = q.bit_length() - 1
    groups = (k + 6) // 7
    bits = p << (groups * 7 - k)
    out = bytearray(groups)
    for i in range(groups - 1, -1, -1):
        out[i] = ((bits & 0x7F) << 1) | (1 if i < groups - 1 else 0)
        bits >>= 7
    return head + bytes(out)


def _number(v: int | float) -> bytes:
    if type(v) is float:
        if v != v:
            raise InvalidKeyError("NaN cannot be a key: it is not equal to itself")
        if v == math.inf:
            return _B_POS_INF
        if v == -math.inf:
            return _B_NEG_INF
        if v.is_integer():
            v = int(v)
    if v > 0:
        return _B_POS + _positive(v)
    if v < 0:
        return _B_NEG + _positive(-v).translate(_INVERT)
    return _B_ZERO


def _element(key: Any) -> bytes:
    t = type(key)
    if t is str:
        return _B_STR + _esc(_utf8(key)) + _B_END
    if t is int or t is float:
        return _number(key)
    if t is bytes:
        return _B_BYTES + _esc(key) + _B_END
    if t is tuple or t is list:
        return _B_SEQ + b"".join([encode_key(e) for e in key]) + _B_END
    if key is None:
        return _B_NONE
    if t is bool:
        return _B_TRUE if key else _B_FALSE
    if t is dict:
        pairs = sorted((_element(k), _element(v)) for k, v in key.items())
        if any(pairs[i][0] == pairs[i - 1][0] for i in range(1, len(pairs))):
            # Two entries Python keeps apart (a str subclass with its own __eq__ beside
            # the plain str) stored as one: the key would decode to fewer entries and
            # name no record.
            raise InvalidKeyError(
                "a dict key has entries whose keys merge into one stored key (a subclass "
                "stored as its base value next to that value); give each entry a "
                "distinct plain key"
            )
        return bytes((_DICT,)) + b"".join([k + v for k, v in pairs]) + _B_END
    # Subclasses (IntEnum, str subclasses, bytearray, memoryview) are normalised once here
    # so the fast checks above stay exact-type checks.
    if isinstance(key, bool):
        return _B_TRUE if key else _B_FALSE
    # Through the base classes' own conversions: a subclass's __str__, __int__,
    # __float__ or __bytes__ cannot change what is stored (a key is its value).
    if isinstance(key, str):
        return _element(str.__str__(key))
    if isinstance(key, int):
        return _number(int.__int__(key))
    if isinstance(key, float):
        return _number(float.__float__(key))
    if isinstance(key, bytes | bytearray | memoryview):
        return _element(bytes(memoryview(key)))
    raise InvalidKeyError(
        f"unsupported key type {t.__name__}: keys are str, int, float, bool, None, bytes, "
        "and tuples/lists/dicts of these"
    )


def encode_key(key: Any) -> bytes:
    """Encode one key (without tenant) into its canonical, order-preserving bytes.

    Raises:
        InvalidKeyError: unsupported type, NaN, or a number too large to encode.
    """
    t = type(key)
    if t is str:
        # Hot path, inlined: most keys are short strings.
        raw: bytes
        try:
            raw = key.encode()
        except UnicodeEncodeError:
            raw = key.encode("utf-8", "surrogatepass")
        if 0 in raw:
            raw = raw.replace(_B_NUL, _ESCAPED_NUL)
        return _B_STR + raw + _B_END
    if t is int:
        if 0 < key < _SMALL:
            nb: int = (key.bit_length() + 7) >> 3
            body: bytes = key.to_bytes(nb, "big")
            return _POS_HEAD[nb] + body + _B_END
        return _number(key)
    try:
        if t is tuple:
            # Composite keys like ("order", 42) are common: their str and small int
            # elements are encoded inline, without a call per element.
            parts = [_B_SEQ]
            for e in key:
                te = type(e)
                if te is str:
                    try:
                        raw = e.encode()
                    except UnicodeEncodeError:
                        raw = e.encode("utf-8", "surrogatepass")
                    if 0 in raw:
                        raw = raw.replace(_B_NUL, _ESCAPED_NUL)
                    parts += (_B_STR, raw, _B_END)
                elif te is int and 0 < e < _SMALL:
                    n: int = (e.bit_length() + 7) >> 3
                    parts += (_POS_HEAD[n], e.to_bytes(n, "big"), _B_END)
                else:
                    parts.append(encode_key(e))
            parts.append(_B_END)
            return b"".join(parts)
        return _element(key)
    except RecursionError:
        raise InvalidKeyError("key nests too deeply (or contains itself)") from None


def encode_prefix(prefix: Any) -> bytes:
    """Encode a key prefix for ``keys(prefix=...)``.

    A ``str`` or ``bytes`` prefix matches keys of that type starting with it; a tuple or
    list prefix matches tuple keys whose leading elements equal it.

    Raises:
        InvalidKeyError: the prefix is of another type.
    """
    t = type(prefix)
    if t is str or isinstance(prefix, str):
        return _B_STR + _esc(_utf8(str.__str__(prefix)))
    if t is bytes or isinstance(prefix, bytes | bytearray | memoryview):
        return _B_BYTES + _esc(bytes(memoryview(prefix)))
    if t is tuple or t is list:
        return bytes((SEQ,)) + b"".join([encode_key(e) for e in prefix])
    # A tuple/list subclass (a namedtuple) is refused as it is as a key: its own
    # __iter__ would decide what it matches.
    raise InvalidKeyError(
        f"a prefix must be a str, bytes or a plain tuple/list, got {t.__name__}"
        + (" (convert it with tuple(...))" if isinstance(prefix, tuple | list) else ""),
    )


def prefix_successor(prefix: bytes) -> bytes:
    """The exclusive upper bound of the encoded keys that start with ``prefix``.

    ``prefix`` is an encoded prefix (a tenant and :func:`encode_prefix`'s output). When
    it ends with a complete element (its last byte is a terminator ``0x00``; no other
    encoded prefix ends with a lone ``0x00``), the bound is ``prefix + 0xFF``: a key
    continuing with further elements has a type code or ``0x00`` next, never ``0xFF``,
    whereas a longer str/bytes element (``"a\\x00"`` after ``"a"``) continues with the
    ``0xFF`` of its escaped NUL and must not match. Otherwise it is the smallest byte
    string greater than every string starting with ``prefix``.
    """
    if prefix[-1:] == _B_END:
        return prefix + _B_ESCAPE
    stripped = prefix.rstrip(_B_ESCAPE)
    if not stripped:
        raise ValueError("prefix of only 0xff bytes has no successor")
    return stripped[:-1] + bytes((stripped[-1] + 1,))


# --------------------------------------------------------------------------- decoding


def read_escaped(buf: bytes, pos: int) -> tuple[bytes, int]:
    """Read an escaped, terminated byte string at ``pos``; return it and the next offset."""
    i = buf.index(0, pos)
    if i + 1 >= len(buf) or buf[i + 1] != ESCAPE:
        # Common case: no escaped NUL inside, one slice.
        return buf[pos:i], i + 1
    out = bytearray()
    while True:
        out += buf[pos:i]
        if i + 1 < len(buf) and buf[i + 1] == ESCAPE:
            out.append(0)
            pos = i + 2
            i = buf.index(0, pos)
        else:
            return bytes(out), i + 1


def _read_positive(buf: bytes, pos: int) -> tuple[int | float, int]:
    nb = buf[pos]
    end = pos + 1 + nb
    if end >= len(buf):
        raise ValueError("truncated number")
    n = int.from_bytes(buf[pos + 1 : end], "big")
    pos = end
    if buf[pos] == 0:
        return n, pos + 1
    bits = 0
    k = 0
    while True:
        b = buf[pos]
        pos += 1
        bits = (bits << 7) | (b >> 1)
        k += 7
        if not b & 1:
            break
    return n + math.ldexp(bits, -k), pos


def _read_element(buf: bytes, pos: int) -> tuple[Any, int]:
    code = buf[pos]
    pos += 1
    if code == STR:
        raw, pos = read_escaped(buf, pos)
        return raw.decode("utf-8", "surrogatepass"), pos
    if code == POS:
        return _read_positive(buf, pos)
    if code == _NEG:
        # Complemented bytes: undo them on the rest of the buffer (at most the key size).
        v, used = _read_positive(buf[pos:].translate(_INVERT), 0)
        return -v, pos + used
    if code == _ZERO:
        return 0, pos
    if code == BYTES:
        return read_escaped(buf, pos)
    if code == SEQ:
        items: list[Any] = []
        while True:
            c = buf[pos]
            if c == END:
                return tuple(items), pos + 1
            # Inline the common elements of composite keys: a str without NUL and a
            # small positive int; anything else takes the general path.
            if c == STR:
                i = buf.index(0, pos + 1)
                if i + 1 >= len(buf) or buf[i + 1] != ESCAPE:
                    items.append(buf[pos + 1 : i].decode("utf-8", "surrogatepass"))
                    pos = i + 1
                    continue
            elif c == POS:
                end = pos + 2 + buf[pos + 1]
                if end < len(buf) and buf[end] == 0:
                    items.append(int.from_bytes(buf[pos + 2 : end], "big"))
                    pos = end + 1
                    continue
            item, pos = _read_element(buf, pos)
            items.append(item)
    if code == _NONE:
        return None, pos
    if code == _FALSE:
        return False, pos
    if code == _TRUE:
        return True, pos
    if code == _POS_INF:
        return math.inf, pos
    if code == _NEG_INF:
        return -math.inf, pos
    if code == _DICT:
        d = {}
        while buf[pos] != END:
            k, pos = _read_element(buf, pos)
            d[k], pos = _read_element(buf, pos)
        return d, pos + 1
    raise ValueError(f"unknown key type code 0x{code:02x}")


def decode_key(encoded: bytes, offset: int = 0) -> Any:
    """Decode one key element starting at ``offset`` (the inverse of :func:`encode_key`).

    Integral numbers decode as ``int``, lists as tuples.

    Raises:
        ValueError: the bytes are not a valid encoding (callers translate this into
            :class:`~aurora_storage.errors.CorruptionError`).
    """
    try:
        # Fast paths for the common keys, used per scanned item: a str without NUL and
        # a small positive int.
        code = encoded[offset]
        if code == STR and encoded[-1] == 0:
            body = encoded[offset + 1 : -1]
            if 0 not in body:
                return body.decode("utf-8", "surrogatepass")
        elif code == POS:
            nb = encoded[offset + 1]
            if len(encoded) == offset + nb + 3 and encoded[-1] == 0:
                return int.from_bytes(encoded[offset + 2 : -1], "big")
        key, pos = _read_element(encoded, offset)
    except (IndexError, UnicodeDecodeError, TypeError, OverflowError) as exc:
        raise ValueError(f"malformed key encoding: {type(exc).__name__}: {exc}") from exc
    except RecursionError:
        raise ValueError("malformed key encoding: nested too deeply") from None
    if pos != len(encoded):
        raise ValueError("malformed key encoding: trailing bytes")
    return key
