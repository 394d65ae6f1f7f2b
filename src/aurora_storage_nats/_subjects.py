"""Stored keys <-> NATS KV keys (I/O-free).

A JetStream KV key is a subject suffix: tokens separated by ``.``, each non-empty, made
of ``A-Z a-z 0-9 - _ / =``. A stored key (bytes, up to 511) becomes
tokens:

* a data key ``0x01 T K`` (``T`` the encoded tenant with its terminator, see
  :mod:`aurora_storage._keys`) is ``t<b64(T)>`` followed by ``K`` cut into 12-byte
  chunks: one token ``k<b64(chunk)>`` per complete chunk, then a final token
  ``z<b64(rest)>`` holding the last 0..11 bytes. One tenant's records are exactly the
  subjects ``t<b64(T)>.>``, and the keys under a byte prefix of ``K`` that spans ``m``
  complete chunks are exactly ``t<b64(T)>.k<c1>...k<cm>.>``: the server lists or purges
  them alone (a prefix scan of an aggregate does not read the whole tenant);
* any other key ``B`` (the store's own records, ``0x00...``) is ``s`` followed by the
  chunk tokens of ``B``.

``b64`` is base64 without padding over the alphabet
``-0-9A-Z_a-z`` (the 64 allowed characters in ASCII order), so comparing two encodings
as strings compares the bytes: an unpadded base64 text's last character carries zero
bits, and the lengths ``ceil(8n/6)`` grow strictly with ``n``, so the encoding is
injective and order-preserving (a shorter input that is a prefix sorts first). Scans
still decode and sort bytes, which is what RocksDB's order is.
"""

from __future__ import annotations

import base64
import binascii
import functools

from aurora_storage._keys import NS_DATA, TENANT_END, tenant_end
from aurora_storage._keys import decode_key as decode_key_element

__all__ = ["ALPHABET", "decode_key", "encode_key", "tenant_token", "token_decode", "token_encode"]

ALPHABET = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO = bytes.maketrans(_STD, ALPHABET)
_FROM = bytes.maketrans(ALPHABET, _STD)
_VALID = frozenset(ALPHABET)
# The last character of an unpadded base64 text of 2 (3) characters in its final group
# carries 4 (2) padding bits, which the encoder leaves zero: only these characters.
_LAST_OF_2 = frozenset(ALPHABET[i] for i in range(0, 64, 16))
_LAST_OF_3 = frozenset(ALPHABET[i] for i in range(0, 64, 4))


def token_encode(raw: bytes) -> str:
    """``raw`` in the order-preserving base64 alphabet, unpadded (possibly empty)."""
    return binascii.b2a_base64(raw, newline=False).rstrip(b"=").translate(_TO).decode("ascii")


def token_decode(text: str) -> bytes:
    """The inverse of :func:`token_encode`.

    Raises:
        ValueError: not an encoding :func:`token_encode` produces.
    """
    data = text.encode("ascii")
    rem = len(data) % 4
    if rem == 1 or not _VALID.issuperset(data):
        raise ValueError(f"{text[:40]!r} is not an aurora key token")
    if (rem == 2 and data[-1] not in _LAST_OF_2) or (rem == 3 and data[-1] not in _LAST_OF_3):
        # Non-zero padding bits: a text no encoder wrote (the mapping must stay injective).
        raise ValueError(f"{text[:40]!r} is not a canonical aurora key token")
    return base64.b64decode(data.translate(_FROM) + b"=" * (-rem % 4))


@functools.lru_cache(maxsize=4096)
def _tenant_token(raw: bytes) -> str:
    # Every key of a tenant starts with the same token: encode it once.
    return f"t{token_encode(raw)}"


@functools.lru_cache(maxsize=4096)
def _tenant_raw(token: str) -> bytes:
    if token[:1] != "t" or len(token) < 2:
        raise ValueError(f"{token[:60]!r} is not a tenant token written by aurora-storage")
    return token_decode(token[1:])


_CHUNK = 12


def _chunks(raw: bytes) -> str:
    if len(raw) < _CHUNK:  # most keys: one final token
        return f"z{token_encode(raw)}"
    full = len(raw) - len(raw) % _CHUNK
    parts = [f"k{token_encode(raw[i : i + _CHUNK])}" for i in range(0, full, _CHUNK)]
    parts.append(f"z{token_encode(raw[full:])}")
    return ".".join(parts)


def _unchunk(tokens: list[str], kv_key: str) -> bytes:
    if not tokens or tokens[-1][:1] != "z":
        raise ValueError(f"{kv_key[:60]!r} is not a key written by aurora-storage")
    out = []
    for tok in tokens[:-1]:
        if tok[:1] != "k" or len(tok) != 17:
            raise ValueError(f"{kv_key[:60]!r} is not a key written by aurora-storage")
        out.append(token_decode(tok[1:]))
    last = token_decode(tokens[-1][1:])
    if len(last) >= _CHUNK:
        raise ValueError(f"{kv_key[:60]!r} is not a canonical aurora-storage key")
    out.append(last)
    return b"".join(out)


def encode_key(key: bytes) -> str:
    """The KV key (``t<tenant>.k<chunk>...z<rest>`` or ``s.k<chunk>...z<rest>``) of a
    stored key."""
    end = tenant_end(key)
    if end:
        return f"{_tenant_token(key[1:end])}.{_chunks(key[end:])}"
    return f"s.{_chunks(key)}"


def decode_key(kv_key: str) -> bytes:
    """The stored key of a KV key :func:`encode_key` made.

    Raises:
        ValueError: a key this plugin did not write (another application's key in the
            same bucket).
    """
    tokens = kv_key.split(".")
    first = tokens[0]
    rest = _unchunk(tokens[1:], kv_key)
    if first == "s":
        if tenant_end(rest):
            raise ValueError(f"{kv_key[:60]!r} is not a canonical aurora-storage key")
        return rest
    tenant = _tenant_raw(first)
    full = NS_DATA + tenant + rest
    if tenant_end(full) != len(tenant) + 1:
        raise ValueError(f"{kv_key[:60]!r} is not a canonical aurora-storage key")
    # A token that decodes is not enough: the bytes must be a key element the key codec
    # reads back (another application's ``<tenant>.z`` decodes to an empty key, and
    # ``<tenant>.zZZZZ`` to an unknown type code). Checked here, so that every scan,
    # count, drop_tenant and watch skips such a key alike instead of one of them
    # counting it and another raising. (ValueError is all this raises.)
    decode_key_element(full, len(tenant) + 1)
    return full


def tenant_token(start: bytes, stop: bytes) -> str | None:
    """The first KV token shared by every stored key in ``[start, stop)``, when the
    range lies inside one tenant; ``None`` otherwise."""
    end = tenant_end(start)
    if not end:
        return None
    prefix = start[:end]
    if stop > prefix + TENANT_END:
        return None
    # Every key in [prefix, prefix + TENANT_END) starts with prefix followed by a byte
    # other than 0xFF (or nothing), so its tenant is exactly this one.
    return f"t{token_encode(start[1:end])}"


def scan_filter(start: bytes, stop: bytes) -> str:
    """The narrowest subject filter (below the bucket's prefix) holding every stored key
    in ``[start, stop)``: the tenant's token, then the complete 12-byte chunks of the
    longest common prefix of ``start`` and ``stop`` (every key of the range starts with
    it), then ``>``; the whole bucket (``>``) for a range across tenants."""
    token = tenant_token(start, stop)
    if token is None:
        return ">"
    end = tenant_end(start)
    lo, hi = start[end:], stop[end:]
    n = 0
    limit = min(len(lo), len(hi))
    while n < limit and lo[n] == hi[n]:
        n += 1
    full = n - n % _CHUNK
    parts = [token] + [f"k{token_encode(lo[i : i + _CHUNK])}" for i in range(0, full, _CHUNK)]
    return ".".join(parts) + ".>"
