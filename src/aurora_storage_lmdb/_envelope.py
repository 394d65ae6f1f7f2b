"""The LMDB plugin's value envelope: LMDB keeps no checksums, so each stored value
carries one.

A stored value is ``value || checksum`` (4 bytes):

* envelope v3 (new stores): ``xxh32(value, seed=xxh32(key))``, big endian (xxHash's
  canonical form, :func:`xxhash.xxh32_digest`): covers key and value like v2, at about
  a third of CRC-32's cost on a ~200-byte value (zlib's crc32 runs at ~1.4 GB/s here).
* envelope v2: ``crc32(value, seed=crc32(key))``, little endian - equal to
  ``crc32(key || value)`` without a copy; a flipped byte in the value *or the key*
  raises :class:`~aurora_storage.errors.CorruptionError` instead of returning wrong
  data.
* envelope v1 (older stores): the seed is 0, the CRC covers the value only.

A store keeps the envelope it was created with: the plugin's own record
(:data:`PLUGIN_META_KEY`, wrapped in that envelope itself) names it, and a store naming
an envelope this version cannot read is refused. The CRC-32 of any message followed by
its own CRC (little endian) is the constant :data:`RESIDUE`, so a v1/v2 value is checked
with one ``crc32`` call over the stored bytes; a v3 value by comparing its last four
bytes with the digest of the rest.

The hot paths of the backend (get, put, write, write_iter, write_puts, scans) build and
check envelopes inline with the names exported here; :func:`wrap`, :func:`intact` and
:func:`unwrap` are the readable forms.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import orjson
import xxhash

from aurora_storage.errors import ConfigurationError, CorruptionError

__all__ = [
    "CRC_ENVELOPES",
    "ENVELOPE_VERSION",
    "INTACT",
    "KEYED_ENVELOPES",
    "PLUGIN_META_KEY",
    "READABLE_ENVELOPES",
    "RESIDUE",
    "SEEDS",
    "TRAILERS",
    "crc",
    "envelope_of_plugin_record",
    "intact",
    "new_plugin_record",
    "pack",
    "unwrap",
    "wrap",
    "xxh32",
    "xxh32_digest",
]

#: Version of the value envelope new stores get (3: xxHash32 over key and value).
ENVELOPE_VERSION = 3
#: Envelopes this plugin reads and writes (1: the CRC covers the value only; 2: the CRC
#: covers key and value).
READABLE_ENVELOPES = (1, 2, 3)
#: The envelopes whose checksum is a CRC-32 (checked with :data:`RESIDUE`).
CRC_ENVELOPES = frozenset({1, 2})
#: The envelopes whose checksum covers the key too (a damaged key fails it).
KEYED_ENVELOPES = frozenset({2, 3})
#: The plugin's own record (system namespace), next to the core's metadata record.
PLUGIN_META_KEY = b"\x00aurora:lmdb"
#: crc32 of any stored (intact) value, trailer included.
RESIDUE = 0x2144DF1C
#: The set of CRCs of an intact chunk of stored values.
INTACT = frozenset({RESIDUE})

crc = zlib.crc32
pack = struct.Struct("<I").pack
xxh32 = xxhash.xxh32_intdigest
xxh32_digest = xxhash.xxh32_digest


def _v1_seed(key: bytes) -> int:
    """The CRC seed of envelope v1 for any key: 0 (its CRC covers the value only)."""
    return 0


#: Envelope version -> the checksum seed of a key. The checksum is
#: ``TRAILERS[v](value, SEEDS[v](key))``; for v2 it equals crc32(key || value) without a
#: copy.
SEEDS: dict[int, Callable[[bytes], int]] = {1: _v1_seed, 2: crc, 3: xxh32}


def _crc_trailer(value: bytes, seed: int) -> bytes:
    """The v1/v2 trailer: the CRC-32 of ``value`` seeded with ``seed``, little endian."""
    return pack(crc(value, seed))


#: Envelope version -> ``trailer(value, seed)``: the four bytes stored after the value.
TRAILERS: dict[int, Callable[[bytes, int], bytes]] = {
    1: _crc_trailer,
    2: _crc_trailer,
    3: xxh32_digest,
}


def wrap(value: bytes, seed: int, envelope: int = ENVELOPE_VERSION) -> bytes:
    """The stored form of ``value``: the value, then its checksum seeded with ``seed``."""
    return value + TRAILERS[envelope](value, seed)


def intact(raw: bytes, seed: int, envelope: int) -> bool:
    """Whether the stored bytes ``raw`` pass their checksum (seeded with ``seed``)."""
    if len(raw) < 4:
        return False
    if envelope in CRC_ENVELOPES:
        return crc(raw, seed) == RESIDUE
    return xxh32_digest(raw[:-4], seed) == raw[-4:]


def unwrap(raw: bytes, seed: int, envelope: int, *, key: bytes, path: str) -> bytes:
    """The value inside the stored bytes ``raw`` at ``key``.

    Raises:
        CorruptionError: the checksum does not match (the key or the value is damaged).
    """
    if not intact(raw, seed, envelope):
        raise CorruptionError(
            f"the record stored at key {key!r} in the LMDB store at {path} fails "
            "its checksum (its key or value is damaged): the data file is damaged. "
            "Restore it from a backup",
            backend="lmdb",
            path=path,
            stored_key=key,
        )
    return raw[:-4]


def new_plugin_record(lmdb_format: int) -> bytes:
    """The plugin record of a new store (unwrapped): its envelope and data format."""
    return orjson.dumps({"envelope": ENVELOPE_VERSION, "lmdb_format": lmdb_format})


def envelope_of_plugin_record(raw: bytes, path: str) -> int:
    """The envelope version a store's stored plugin record names (and is wrapped in).

    Raises:
        CorruptionError: the record fails its checksum, is not readable, or names
            another envelope than the one it is wrapped in.
        ConfigurationError: the store uses an envelope this version cannot read.
    """
    wrapped = next(
        (v for v in sorted(SEEDS, reverse=True) if intact(raw, SEEDS[v](PLUGIN_META_KEY), v)),
        None,
    )
    if wrapped is None or len(raw) < 4:
        raise CorruptionError(
            f"the LMDB plugin record of {path} fails its checksum", backend="lmdb", path=path
        )
    try:
        envelope = int(orjson.loads(raw[:-4])["envelope"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(
            f"the LMDB plugin record of {path} is damaged: {exc}", backend="lmdb", path=path
        ) from exc
    if envelope not in READABLE_ENVELOPES:
        raise ConfigurationError(
            f"the LMDB store at {path} uses value envelope v{envelope}; this "
            f"aurora-storage reads v{', v'.join(map(str, READABLE_ENVELOPES))}. "
            "Upgrade aurora-storage",
            backend="lmdb",
            path=path,
        )
    if envelope != wrapped:
        raise CorruptionError(
            f"the LMDB plugin record of {path} names envelope v{envelope} but is "
            f"wrapped in v{wrapped}: the record is damaged",
            backend="lmdb",
            path=path,
        )
    return envelope
