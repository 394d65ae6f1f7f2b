"""The store's metadata record: its format version and codec, created once by the first
opener, checked by every later one (see :func:`check_metadata`)."""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import orjson

from ._keys import NS_SYSTEM
from ._stores import MARKER_NAME, check_marker_backend, read_marker, write_marker
from .backend import Backend
from .codecs import Codec, get_codec
from .errors import ConfigurationError, CorruptionError, StorageError

__all__ = ["FORMAT_VERSION", "META_KEY", "check_metadata"]

_log = logging.getLogger("aurora_storage")

#: Version of the on-disk layout (key encoding + metadata). Newer stores are refused.
FORMAT_VERSION = 1
#: The reserved record holding the store's format version and codec.
META_KEY = NS_SYSTEM + b"aurora:meta"


def check_metadata(backend: Backend, codec: str | Codec[Any] | None) -> Codec[Any]:
    """The store's codec: the one its metadata record names (``codec`` must agree),
    or, for a new store, ``codec`` (JSON by default), recorded now.

    Several openers may create one new store at once (threads sharing this
    process's live handle, or other processes on a multi-process engine): the
    record is created with the backend's atomic :meth:`~Backend.insert`, so exactly
    one opener's codec is recorded and every other opener then reads that record as
    for any existing store (the same codec opens it; another raises the usual
    mismatch error). The marker (see :mod:`aurora_storage._stores`) is looked for
    *before* the record is read: a marker is written only once its record is
    durable, so one seen before a read that finds no record proves the record was
    lost, while one that appears after may be another opener's that has just
    created the store.

    Raises:
        CorruptionError: the store has a marker but no metadata record, or a
            damaged record.
        ConfigurationError: ``codec`` is not the recorded codec, the store's marker
            names another engine (a store opened with another engine's URL scheme), or
            the store's format is newer than this library's.
    """
    marker = backend.marker_path
    initialised = marker is not None and os.path.lexists(marker)
    try:
        raw = backend.get(META_KEY)
    except CorruptionError as exc:
        recorded = _codec_of_marker(backend, marker, exc)
        if recorded is None:
            raise
        return _agreed(backend, recorded, codec)
    if raw is None:
        # A marker that exists, even damaged, proves the store was initialised.
        if initialised:
            # The store was initialised once (the marker is written only after its
            # metadata record was durable) and its engine now shows nothing: its
            # files lost data (a truncated MANIFEST, a replaced data file). Writing a
            # fresh metadata record would make the loss permanent. Unless the marker
            # names another engine: then this is a wrong URL scheme (a plugin's engine
            # opened on a RocksDB store), not damage to restore or delete.
            if marker is not None:  # (always, when initialised)
                check_marker_backend(marker, backend=backend.scheme, store_path=_store_of(marker))
            raise CorruptionError(
                f"{backend.describe()} was initialised (its marker {marker} exists) but "
                "its engine holds no metadata record: the store's files are damaged or "
                "were replaced. Restore it from a backup; if you mean to start afresh, "
                "delete the whole store directory",
                backend=backend.scheme,
                path=marker,
            )
        chosen = get_codec(codec if codec is not None else "json")
        if backend.capabilities.read_only:
            return chosen
        record = orjson.dumps({"format": FORMAT_VERSION, "codec": chosen.name})
        if backend.insert(META_KEY, record):
            if marker is not None:
                # The marker must never exist without a durable metadata record, or
                # an OS crash right after creation would leave a store that reads as
                # damaged.
                backend.flush()
                write_marker(marker, _marker_info(backend, chosen))
            return chosen
        # Another opener created the store between our read and our insert: its
        # record decides, as for any existing store.
        raw = backend.get(META_KEY)
        if raw is None:
            raise StorageError(
                f"the metadata record of {backend.describe()} was removed while the "
                "store was being created; open it again",
                backend=backend.scheme,
            )
    try:
        meta = orjson.loads(raw)
        fmt = int(meta["format"])
        recorded = str(meta["codec"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(
            f"the metadata record of {backend.describe()} is damaged: {exc}",
            backend=backend.scheme,
        ) from exc
    if fmt > FORMAT_VERSION:
        raise ConfigurationError(
            f"{backend.describe()} has format version {fmt}, newer than the "
            f"{FORMAT_VERSION} this aurora-storage supports; upgrade aurora-storage",
            backend=backend.scheme,
        )
    wanted = _agreed(backend, recorded, codec)
    # Stores created before markers existed get theirs on the first writable open;
    # so does a store another opener created a moment ago and has not marked yet
    # (both write the same facts). Its record may not be durable yet: flush first,
    # as its creator does.
    if marker is not None and not _marker_intact(marker):
        damaged = os.path.lexists(marker)
        if backend.capabilities.read_only:
            if damaged:
                _log.warning(
                    "the marker %s of %s is damaged (not the JSON aurora-storage writes); "
                    "the store's metadata record vouches for the store, and its next open "
                    "for writing rewrites the marker from that record",
                    marker,
                    backend.describe(),
                )
            return wanted
        backend.flush()
        write_marker(marker, _marker_info(backend, wanted))
        if damaged:
            _log.warning(
                "the marker %s of %s was damaged (not the JSON aurora-storage writes); it "
                "was rewritten from the store's metadata record",
                marker,
                backend.describe(),
            )
    return wanted


def _agreed(backend: Backend, recorded: str, codec: str | Codec[Any] | None) -> Codec[Any]:
    """The recorded codec, checked against the one the opener asked for.

    Raises:
        ConfigurationError: ``codec`` is not ``recorded``.
    """
    if codec is None:
        return get_codec(recorded)
    wanted = get_codec(codec)
    if wanted.name != recorded:
        raise ConfigurationError(
            f"{backend.describe()} was created with codec {recorded!r}, not "
            f"{wanted.name!r}; open it without a codec (or with codec={recorded!r})",
            backend=backend.scheme,
        )
    return wanted


def _codec_of_marker(backend: Backend, marker: str | None, exc: CorruptionError) -> str | None:
    """The codec a read-only open takes from the store's marker when reading the
    metadata record failed with damage (``exc``), or ``None`` (the open raises ``exc``).

    A point read of the record consults every overlapping table file (RocksDB: block 0
    of each L0 file whose key range covers it), so damage to records of users can make
    it fail although the record itself is intact. The marker is written from the
    record once it is durable and names the same codec and format (neither ever
    changes), so a read-only open - verify, export --salvage, reads that then meet the
    damage themselves - proceeds on it, with a warning. A writable open never does:
    writing to a damaged store would spread the damage.
    """
    if not backend.capabilities.read_only or marker is None:
        return None
    try:
        info = read_marker(marker)
    except CorruptionError:
        return None
    if info is None or info.get("backend") != backend.scheme:
        return None
    fmt, recorded = info.get("format"), info.get("codec")
    if type(fmt) is not int or not isinstance(recorded, str) or fmt > FORMAT_VERSION:
        return None
    try:
        get_codec(recorded)
    except ConfigurationError:
        return None
    _log.warning(
        "the metadata record of %s could not be read (%s); opened read-only with the "
        "codec its marker %s names (%r): reads of damaged records fail as they meet them",
        backend.describe(),
        exc,
        marker,
        recorded,
    )
    return recorded


def _store_of(marker: str) -> str:
    """The store a marker belongs to (see :func:`aurora_storage._stores.marker_path`):
    the directory holding it, or the single file it sits beside."""
    if os.path.basename(marker) == MARKER_NAME:
        return os.path.dirname(marker) or os.curdir
    return marker.removesuffix(f"-{MARKER_NAME}")


def _marker_intact(marker: str) -> bool:
    """Whether ``marker`` exists and reads back; a damaged one is rewritten by the caller
    (the metadata record it vouches for is there)."""
    try:
        return read_marker(marker) is not None
    except CorruptionError:
        return False


def _marker_info(backend: Backend, codec: Codec[Any]) -> dict[str, Any]:
    return {
        "what": "aurora-storage store marker: this store was initialised; see "
        "docs/concepts (a store whose engine lost its metadata record is reported damaged)",
        "backend": backend.scheme,
        "format": FORMAT_VERSION,
        "codec": codec.name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
