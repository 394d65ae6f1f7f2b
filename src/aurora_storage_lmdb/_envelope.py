"""The LMDB plugin's value envelope: LMDB keeps no checksums, so each stored value
carries one.

A stored value is ``value || crc32(seed(key), value)`` (4 bytes, little endian):

* envelope v2 (new stores): the seed is ``crc32(key)``, so the CRC equals
  ``crc32(key || value)`` without a copy; a flipped byte in the value *or the key*
  raises :class:`~aurora_storage.errors.CorruptionError` instead of returning wrong
  data.
* envelope v1 (older stores): the seed is 0, the CRC covers the value only.

A store keeps the envelope it was created with: the plugin's own record
(:data:`PLUGIN_META_KEY`, wrapped in that envelope itself) names it, and a store naming
an envelope this version cannot read is refused. The CRC-32 of any message followed by
its own CRC (little endian) is the constant :data:`RESIDUE`, so a stored value is
checked with one ``crc32`` call over the stored bytes.

The hot paths of the backend (get, put, write_iter, scans) build and check envelopes
inline with the names exported here; :func:`wrap` and :func:`unwrap` are the readable
forms.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import orjson

from aurora_storage.errors import ConfigurationError, CorruptionError

__all__ = [
    "ENVELOPE_VERSION",
    "INTACT",
    "PLUGIN_META_KEY",
    "READABLE_ENVELOPES",
    "RESIDUE",
    "SEEDS",
    "crc",
    "envelope_of_plugin_record",
    "new_plugin_record",
    "pack",
    "unwrap",
    "wrap",
]

#: Version of the value envelope new stores get (2: the CRC covers key and value).
ENVELOPE_VERSION = 2
#: Envelopes this plugin reads and writes (1: the CRC covers the value only).
READABLE_ENVELOPES = (1, 2)
#: The plugin's own record (system namespace), next to the core's metadata record.
PLUGIN_META_KEY = b"\x00aurora:lmdb"
#: crc32 of any stored (intact) value, trailer included.
RESIDUE = 0x2144DF1C
#: The set of CRCs of an intact chunk of stored values.
INTACT = frozenset({RESIDUE})

crc = zlib.crc32
pack = struct.Struct("<I").pack


def _v1_seed(key: bytes) -> int:
    """The CRC seed of envelope v1 for any key: 0 (its CRC covers the value only)."""
    return 0


#: Envelope version -> the CRC seed of a key. The envelope's CRC is
#: crc32(value, seed(key)), which for v2 equals crc32(key || value) without a copy.
SEEDS: dict[int, Callable[[bytes], int]] = {1: _v1_seed, 2: crc}


def wrap(value: bytes, seed: int) -> bytes:
    """The stored form of ``value``: the value, then its CRC seeded with ``seed``."""
    return value + pack(crc(value, seed))


def unwrap(raw: bytes, seed: int, *, key: bytes, path: str) -> bytes:
    """The value inside the stored bytes ``raw`` at ``key``.

    Raises:
        CorruptionError: the CRC does not match (the key or the value is damaged).
    """
    if len(raw) < 4 or crc(raw, seed) != RESIDUE:
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
        (v for v in sorted(SEEDS, reverse=True) if crc(raw, SEEDS[v](PLUGIN_META_KEY)) == RESIDUE),
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
