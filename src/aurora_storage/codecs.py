"""Value codecs: how values become bytes.

Three are built in: ``json`` (orjson; the default), ``msgpack`` and ``raw`` (bytes as
they are). Plugins add more with :func:`register_codec` or the
``aurora_storage_codecs`` hook. A store records the codec it was created with, so a
later open with no codec uses it and a different one is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from .errors import ConfigurationError

__all__ = ["Codec", "available_codecs", "get_codec", "register_codec"]


@dataclass(frozen=True, slots=True)
class Codec:
    """A named pair of functions turning values into bytes and back.

    Attributes:
        name: the registry name recorded in each store's metadata.
        encode: value -> bytes; raise any exception for a value it cannot encode (the
            repository turns it into :class:`~aurora_storage.errors.SerializationError`).
        decode: bytes -> value.
        encode_held: optional variant of ``encode`` for values kept alive in bulk until
            one write (``put_many``, batches); ``None`` means ``encode``. The json codec
            sets it because orjson's output holds ~4 KiB of allocation per small value
            while alive (100k held values: ~390 MiB, and slow to allocate); an exact-size
            copy costs ~0.1 us.
    """

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    encode_held: Callable[[Any], bytes] | None = None


def _raw_encode(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"the raw codec stores bytes only, got {type(value).__name__}")


def _raw_decode(data: bytes) -> bytes:
    return data


def _msgpack_encode(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def _msgpack_decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _json_encode_held(value: Any) -> bytes:
    return bytes(memoryview(orjson.dumps(value)))


JSON = Codec("json", orjson.dumps, orjson.loads, _json_encode_held)
MSGPACK = Codec("msgpack", _msgpack_encode, _msgpack_decode)
RAW = Codec("raw", _raw_encode, _raw_decode)

_lock = threading.Lock()
_codecs: dict[str, Codec] = {c.name: c for c in (JSON, MSGPACK, RAW)}


def register_codec(codec: Codec, *, replace: bool = False) -> None:
    """Register a codec under ``codec.name``.

    Raises:
        ConfigurationError: the name is taken and ``replace`` is false (a registered name
            is never silently replaced), or ``codec`` is not a named :class:`Codec`.
    """
    if not isinstance(codec, Codec):
        raise ConfigurationError(f"register_codec() takes a Codec, got {type(codec).__name__}")
    if not isinstance(codec.name, str) or not codec.name:
        raise ConfigurationError(f"a codec needs a non-empty str name, got {codec.name!r}")
    with _lock:
        if codec.name in _codecs and not replace and _codecs[codec.name] is not codec:
            raise ConfigurationError(
                f"a codec named {codec.name!r} is already registered; pass replace=True "
                "to replace it"
            )
        _codecs[codec.name] = codec


def _load_plugin_codecs() -> None:
    from ._registry import registry

    for codec in registry.plugin_codecs():
        with _lock:
            _codecs.setdefault(codec.name, codec)


def get_codec(codec: str | Codec) -> Codec:
    """Return the codec registered as ``codec`` (a :class:`Codec` passes through).

    Raises:
        ConfigurationError: no codec of that name (listing the known ones), or
            ``codec`` is neither a name nor a :class:`Codec`.
    """
    if isinstance(codec, Codec):
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
        raise ConfigurationError(
            f"unknown codec {codec!r}; known codecs: {', '.join(sorted(_codecs))}"
        )
    return found


def available_codecs() -> list[str]:
    """Names of every registered codec, sorted."""
    _load_plugin_codecs()
    return sorted(_codecs)
