"""The typed, frozen configuration of the LMDB backend (parsed in one place)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aurora_storage.config import (
    URL,
    config_from_options,
    expand_store_path,
    local_path,
    size_field,
)
from aurora_storage.errors import ConfigurationError

__all__ = ["DEFAULT_MAP_SIZE", "LMDBConfig"]

#: Initial map size. On 64-bit systems the map costs address space, not disk: the data
#: file only grows as pages are written, and the map grows on demand anyway.
DEFAULT_MAP_SIZE = 1 << 30
#: LMDB never accepts a map smaller than a handful of pages.
_MIN_MAP_SIZE = 64 * 1024
#: The largest map: 64 TiB. Today's x86-64 and arm64 processes have 128 TiB of user
#: address space (47 bits); a map must fit in it with room to spare.
MAX_MAP_SIZE = 1 << 46
#: The largest reader table. liblmdb keeps one 64-byte slot per reader in lock.mdb,
#: which every process maps (65,536 slots = 4 MiB); its counters are 32-bit.
MAX_READERS = 1 << 16
#: Growth is geometric; a larger factor only wastes address space in one step.
MAX_GROWTH_FACTOR = 64.0


@dataclass(frozen=True, slots=True)
class LMDBConfig:
    """Options of ``lmdb:///abs/path?option=value`` (or ``lmdb:relative/path``).

    Attributes:
        path: the environment directory (or the data file with ``subdir=false``).
        map_size: initial map size (``64MiB``, ``1GiB``); the map grows automatically.
        max_map_size: upper bound for automatic growth; ``None`` = grow while the disk
            has room. A write that would need more raises ``StorageFullError``.
        growth_factor: the map is multiplied by this (at least) each time it fills.
        max_readers: reader-slot table size; fixed by the first process to open the
            environment.
        sync: fsync the data at each commit (durable against an OS crash). With false,
            a process crash loses nothing, an OS crash may lose the last commits.
        metasync: fsync the meta page at each commit (false: an OS crash may undo the
            last commit, integrity is kept).
        read_only: refuse writes; the environment must exist.
        create: create the environment if missing.
        subdir: ``path`` is a directory holding ``data.mdb``/``lock.mdb`` (true) or the
            data file itself (false; the lock file is ``<path>-lock``).
        readahead: OS readahead on the map; false helps random reads of stores larger
            than RAM.
        lock: LMDB's own locking. Only turn off when one process and one thread use the
            store and nothing else reads it.
        verify: when to run LMDB's offline structural verifier over the data file
            before the engine maps it (a damaged page would otherwise abort the process
            in an engine assertion). ``auto`` (default): when the file was not closed
            cleanly by this library (after a crash, or copied, restored or modified by
            something else). ``true``: at every open. ``false``: never. Either way
            only when no other process has the store open (those already trust it,
            and a live writer makes a walk of the file from outside meaningless).
            It reads the whole file (about 20 s per GiB). ``Repository.verify()``
            runs the full check on demand.
        scan_chunk: most records read per read transaction by a scan (scans re-seek
            between chunks so no read transaction stays open while the caller pauses).
        reader_cache: keep one reset read transaction (and its reader slot) cached for
            reuse: point reads cost about half. Its price: a process that fork()s
            while the store is open cannot open the store again in the child (the
            inherited copy must stay untouched there). Set false if children of a
            fork() must reopen a store the parent still has open.
        change_log: keep a change log in the store, written in the same transaction as
            every write, so ``watch()`` sees the changes of every process (capability
            ``multi_process_change_feed``). Only when the store is created: once
            enabled it is recorded in the store and every process logs (a process
            writing without logging would make watchers miss changes); an existing
            store without a log refuses ``change_log=true``. Costs one extra record per
            changed key.
        change_log_retention: how many write transactions the change log keeps;
            resuming from an older position raises ``PositionExpiredError``. A setting
            of this process, not of the store: every process that writes trims the
            shared log to its own setting, so the smallest among the writers decides.
    """

    path: str
    map_size: int = size_field(DEFAULT_MAP_SIZE, help="initial map size")
    max_map_size: int | None = size_field(None, help="upper bound of automatic growth")
    growth_factor: float = 2.0
    max_readers: int = 126
    sync: bool = True
    metasync: bool = True
    read_only: bool = False
    create: bool = True
    subdir: bool = True
    readahead: bool = True
    lock: bool = True
    verify: bool | Literal["auto"] = "auto"
    scan_chunk: int = 1024
    reader_cache: bool = True
    change_log: bool = False
    change_log_retention: int = 100_000

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigurationError("the lmdb backend needs a path", backend="lmdb")
        # The core's one rule for store paths: a leading ~ is the home directory; NUL
        # characters and over-long names are refused (InvalidURLError).
        object.__setattr__(self, "path", expand_store_path(self.path, backend="lmdb"))
        if self.map_size < _MIN_MAP_SIZE:
            raise ConfigurationError(
                f"map_size must be at least {_MIN_MAP_SIZE} bytes, got {self.map_size}",
                backend="lmdb",
            )
        for name in ("map_size", "max_map_size"):
            size = getattr(self, name)
            if size is not None and size > MAX_MAP_SIZE:
                raise ConfigurationError(
                    f"{name} must be at most {MAX_MAP_SIZE} bytes (64TiB, what a 64-bit "
                    f"process can map), got {size}; the map grows on demand, so start "
                    "smaller",
                    backend="lmdb",
                )
        if self.max_map_size is not None and self.max_map_size < self.map_size:
            raise ConfigurationError(
                f"max_map_size ({self.max_map_size}) is smaller than map_size ({self.map_size})",
                backend="lmdb",
            )
        if not (
            math.isfinite(self.growth_factor) and 1.0 < self.growth_factor <= MAX_GROWTH_FACTOR
        ):
            raise ConfigurationError(
                f"growth_factor must be a number greater than 1 and at most "
                f"{MAX_GROWTH_FACTOR:g}, got {self.growth_factor}",
                backend="lmdb",
            )
        if not 1 <= self.max_readers <= MAX_READERS:
            raise ConfigurationError(
                f"max_readers must be between 1 and {MAX_READERS}, got {self.max_readers}",
                backend="lmdb",
            )
        if self.scan_chunk < 1:
            raise ConfigurationError(
                f"scan_chunk must be at least 1, got {self.scan_chunk}", backend="lmdb"
            )
        if self.change_log_retention < 1:
            raise ConfigurationError(
                f"change_log_retention must be at least 1, got {self.change_log_retention}",
                backend="lmdb",
            )
        if self.read_only and self.create:
            # create=True is the default; read-only simply never creates.
            object.__setattr__(self, "create", False)

    @classmethod
    def from_url(cls, url: URL, options: Mapping[str, Any]) -> LMDBConfig:
        """Parse ``lmdb:///abs/path`` (or ``lmdb:relative/path``) and its options.

        Raises:
            InvalidURLError: a host in the URL, no path, or an unknown/malformed option.
            ConfigurationError: conflicting options.
        """
        path = local_path(url, backend="lmdb")
        return config_from_options(cls, options, backend="lmdb", fixed={"path": path})
