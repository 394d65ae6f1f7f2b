"""The RocksDB plugin's options, parsed in one place into a frozen config.

Imports no engine: the entry point and URL validation stay light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aurora_storage.config import (
    URL,
    config_from_options,
    expand_store_path,
    local_path,
    parse_bool,
    size_field,
)
from aurora_storage.errors import ConfigurationError

__all__ = ["COMPRESSIONS", "MODES", "RocksDBConfig", "config_from_url"]

#: Accepted compression names (``true`` means snappy, ``false`` means none).
COMPRESSIONS = ("none", "snappy", "zstd", "lz4")
#: Access modes.
MODES = ("read_write", "read_only", "secondary")

_MIN_WRITE_BUFFER = 64 * 1024
_MAX_WRITE_BUFFER = 64 * 1024**3
_MAX_WRITE_BUFFERS = 1024
_INT32_MAX = 2**31 - 1
_MAX_BACKGROUND_JOBS = 256


def _max_cache() -> int:
    """The machine's physical memory in bytes (2**62 if the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**62


Mode = Literal["read_write", "read_only", "secondary"]
WalRecovery = Literal["strict", "point_in_time"]


def parse_compression(value: Any) -> str:
    """``true``/``false``/``none``/``snappy``/``zstd``/``lz4`` (or a bool) to a name.

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        return "snappy" if value else "none"
    if isinstance(value, str):
        low = value.strip().lower()
        if low in COMPRESSIONS:
            return low
        try:
            return "snappy" if parse_bool(low) else "none"
        except ValueError:
            pass
    raise ValueError(f"expected one of true, false, {', '.join(COMPRESSIONS)}, got {value!r}")


def _compression_field() -> Any:
    return field(default="snappy", metadata={"parser": parse_compression})


@dataclass(frozen=True, slots=True)
class RocksDBConfig:
    """Options of ``rocksdb:///abs/path?option=value&...`` (see docs/backends/rocksdb.md).

    Attributes:
        path: the store directory (from the URL's path, not an option).
        create_if_missing: create a new store when ``path`` holds none.
        error_if_exists: refuse to open a store that already exists.
        compression: ``snappy`` (default; ``true`` means snappy), ``zstd``, ``lz4`` or
            ``none`` (``false``).
        write_buffer_size: bytes of memtable before it is flushed to an SST file.
        max_write_buffer_number: memtables kept in memory (one active, others flushing).
        min_write_buffer_number_to_merge: full memtables that wait before a flush writes
            them together (RocksDB's option of that name; 1 flushes each at once; less
            than ``max_write_buffer_number``, or writes would stall forever).
        max_open_files: table files kept open; ``-1`` keeps them all open.
        bloom_filter: per-table bloom filters, so a get of an absent key rarely reads disk.
        bloom_bits_per_key: bloom filter size (10 bits gives about 1% false positives).
        block_cache_size: bytes of the LRU cache of uncompressed data blocks.
        max_background_jobs: threads for flushes and compactions.
        sync: fsync the write-ahead log on every write. ``False`` (default): an
            acknowledged write survives a crash of the process; ``True``: it also survives
            an OS crash or power loss, at a large cost per write.
        mode: ``read_write`` (the single writer), ``read_only`` (a view as of open time;
            works beside a live writer) or ``secondary`` (follows a live writer; call
            ``catch_up()`` to see its newer writes).
        secondary_path: where a secondary keeps its own logs; default: a temporary
            directory removed at close.
        wal_recovery: what opening does with a damaged write-ahead log. ``strict``
            (default): a log torn by a crash (the record being written when the process
            died) is dropped as RocksDB always does (logged at WARNING, reported in
            ``stats()["recovery"]``), and any other damage raises CorruptionError
            naming the file - never fewer records without an error. ``read_only`` and
            ``secondary`` opens judge the logs the same way when no writer has the
            store open (see ``_engine._open_db_once``).
            ``point_in_time``: open anyway with every record before the damage and
            none after it; what was dropped is logged (logger ``aurora_storage.rocksdb``)
            and reported in ``stats()["recovery"]``.
    """

    path: str = ""
    create_if_missing: bool = True
    error_if_exists: bool = False
    compression: str = _compression_field()
    write_buffer_size: int = size_field(64 * 1024**2, help="memtable size")
    max_write_buffer_number: int = 2
    min_write_buffer_number_to_merge: int = 1
    max_open_files: int = -1
    bloom_filter: bool = True
    bloom_bits_per_key: int = 10
    block_cache_size: int = size_field(32 * 1024**2, help="block cache size")
    max_background_jobs: int = 2
    sync: bool = False
    mode: Mode = "read_write"
    secondary_path: str | None = None
    wal_recovery: WalRecovery = "strict"

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigurationError("a RocksDB store needs a path", backend="rocksdb")
        try:
            object.__setattr__(self, "compression", parse_compression(self.compression))
        except ValueError as exc:
            raise ConfigurationError(f"compression: {exc}", backend="rocksdb") from exc
        if self.mode not in MODES:
            raise ConfigurationError(
                f"mode must be one of {', '.join(MODES)}, got {self.mode!r}", backend="rocksdb"
            )
        problems = []
        if self.error_if_exists and not self.create_if_missing:
            problems.append(
                "error_if_exists=true with create_if_missing=false can never open a store"
            )
        if self.mode != "read_write":
            if self.error_if_exists:
                problems.append(f"error_if_exists=true makes no sense with mode={self.mode}")
            if self.sync:
                problems.append(f"sync=true makes no sense with mode={self.mode} (no writes)")
        if self.secondary_path is not None and self.mode != "secondary":
            problems.append("secondary_path is only used with mode=secondary")
        if not _MIN_WRITE_BUFFER <= self.write_buffer_size <= _MAX_WRITE_BUFFER:
            # RocksDB silently clips larger values to 64 GiB.
            problems.append(f"write_buffer_size must be 64KiB..64GiB, got {self.write_buffer_size}")
        if not 2 <= self.max_write_buffer_number <= _MAX_WRITE_BUFFERS:
            problems.append(
                f"max_write_buffer_number must be 2..{_MAX_WRITE_BUFFERS}, got "
                f"{self.max_write_buffer_number}"
            )
        if not 1 <= self.min_write_buffer_number_to_merge < self.max_write_buffer_number:
            # Writes stop when max_write_buffer_number memtables are full; a flush that
            # waits for as many or more would never start.
            problems.append(
                "min_write_buffer_number_to_merge must be 1..max_write_buffer_number-1 "
                f"({self.max_write_buffer_number - 1}), got "
                f"{self.min_write_buffer_number_to_merge}"
            )
        if self.max_open_files == 0 or not -1 <= self.max_open_files <= _INT32_MAX:
            problems.append(
                f"max_open_files must be -1 (unlimited) or 1..{_INT32_MAX}, got "
                f"{self.max_open_files}"
            )
        if not 1 <= self.bloom_bits_per_key <= 64:
            problems.append(f"bloom_bits_per_key must be 1..64, got {self.bloom_bits_per_key}")
        if not 0 <= self.block_cache_size <= _max_cache():
            problems.append(
                f"block_cache_size must be at most this machine's memory "
                f"({_max_cache()} bytes), got {self.block_cache_size}"
            )
        if not 1 <= self.max_background_jobs <= _MAX_BACKGROUND_JOBS:
            # Each job is an engine thread; far too many abort the process inside
            # RocksDB instead of raising.
            problems.append(
                f"max_background_jobs must be 1..{_MAX_BACKGROUND_JOBS}, got "
                f"{self.max_background_jobs}"
            )
        if problems:
            raise ConfigurationError(
                f"invalid RocksDB options for {self.path}: " + "; ".join(problems),
                backend="rocksdb",
                path=self.path,
            )
        # One canonical absolute path: lock messages, checkpoints and comparisons use it.
        # `~` follows the one rule of every file-based backend (expand_store_path).
        object.__setattr__(
            self, "path", os.path.abspath(expand_store_path(self.path, backend="rocksdb"))
        )
        if self.secondary_path is not None:
            object.__setattr__(
                self,
                "secondary_path",
                os.path.abspath(expand_store_path(self.secondary_path, backend="rocksdb")),
            )

    @classmethod
    def from_options(
        cls, path: str | os.PathLike[str], options: Mapping[str, Any]
    ) -> RocksDBConfig:
        """Build from a path and option values (text from a URL or typed keywords).

        Raises:
            InvalidURLError: an unknown or malformed option (the message lists the valid ones).
            ConfigurationError: conflicting options.
        """
        return config_from_options(
            cls,
            options,
            backend="rocksdb",
            fixed={"path": path if isinstance(path, str) else _path_text(path)},
        )

    def to_url(self) -> URL:
        """The ``rocksdb://`` URL naming this store, with the options that differ from
        the defaults."""
        defaults = RocksDBConfig(path=self.path)
        query = []
        for name in self.__dataclass_fields__:
            if name == "path":
                continue
            value = getattr(self, name)
            if value != getattr(defaults, name):
                text = ("true" if value else "false") if isinstance(value, bool) else str(value)
                query.append((name, text))
        return URL(scheme="rocksdb", path=self.path, query=tuple(query))


def config_from_url(url: URL, options: Mapping[str, Any]) -> RocksDBConfig:
    """Parse ``rocksdb:///abs/path`` or ``rocksdb:relative/path`` plus options.

    Raises:
        InvalidURLError: a host in the URL, no path, or a bad option.
        ConfigurationError: conflicting options.
    """
    return RocksDBConfig.from_options(local_path(url, backend="rocksdb"), options)


def _path_text(path: object) -> object:
    """A ``path=`` argument as text; anything that is not a path is left for the
    config's check, which raises a typed error naming it (``os.fspath`` raised a raw
    ``TypeError``)."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path
