"""Engine errors of rocksdict as aurora-storage errors: the RocksDB plugin's one
translation helper (:func:`translate`) and the one way its backend applies it
(:class:`EngineCall`)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import rocksdict

from aurora_storage import _fork
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    ReadOnlyError,
    RepositoryClosedError,
    StorageError,
    StorageFullError,
    StoreLockedError,
)

from ._damage import damaged_files

if TYPE_CHECKING:
    from ._config import RocksDBConfig

__all__ = ["EngineCall", "translate"]


def translate(exc: BaseException, config: RocksDBConfig, doing: str) -> StorageError:
    """The typed error for an engine exception (the caller chains it)."""
    if isinstance(exc, StorageError):
        return exc
    path = config.path
    if isinstance(exc, rocksdict.DbClosedError):
        return RepositoryClosedError(
            f"the RocksDB store {path} is closed; open it again", backend="rocksdb", path=path
        )
    text = str(exc)
    low = text.lower()
    if "lock hold by current process" in low or (
        "/lock" in low
        and ("resource temporarily unavailable" in low or "no locks available" in low)
    ):
        if "current process" not in low:
            holder = "another process"
        elif _fork.forked_child():
            # RocksDB's table of locked files is process memory, copied by fork(): the
            # parent's lock stays held in the child, even after the parent closes.
            holder = (
                "this process: it was forked from a process that had stores open, and "
                "RocksDB's lock inherited through fork() stays held in the child, so open "
                "RocksDB stores only after forking or use the 'spawn' start method"
            )
        else:
            holder = "this process"
        return StoreLockedError(
            f"the RocksDB store {path} is locked by another writer ({holder}); RocksDB "
            "allows one writer at a time. Close the other repository, or open this one with "
            "mode=read_only (a view as of open time) or mode=secondary (follows the writer, "
            f"call catch_up()). Engine message: {text}",
            backend="rocksdb",
            path=path,
        )
    if "corruption" in low or "checksum mismatch" in low:
        files = damaged_files(text)
        return CorruptionError(
            f"the RocksDB store {path} is damaged ({doing}): {text}",
            backend="rocksdb",
            path=files[0] if len(files) == 1 else path,
        )
    if "no space left" in low or "disk full" in low:
        return StorageFullError(
            f"no space left for the RocksDB store {path} ({doing}); the write was not "
            f"applied: {text}",
            backend="rocksdb",
            path=path,
        )
    if "read-only file system" in low or "(os error 30)" in low:
        # EROFS. rocksdict's Rdict() saves its side file rocksdict-config.json into the
        # store before RocksDB sees the access type, at every open (src/rdict.rs), so
        # no mode - read_only and secondary included - opens such a store in place.
        return ConfigurationError(
            f"the RocksDB store {path} is on a read-only filesystem ({doing}): rocksdict, "
            "the RocksDB binding, writes its side file rocksdict-config.json into the store "
            "at every open, mode=read_only and mode=secondary included, so the store cannot "
            "be opened where it is. To read it (count, verify, export), copy the store to "
            "a writable place and open the copy; to write to it, remount the filesystem "
            f"read-write. Engine message: {text}",
            backend="rocksdb",
            path=path,
        )
    if "read only mode" in low or "not supported operation in read only" in low:
        return ReadOnlyError(
            f"the RocksDB store {path} was opened {config.mode}; it refuses writes",
            backend="rocksdb",
            path=path,
        )
    return StorageError(f"RocksDB error on {path} ({doing}): {text}", backend="rocksdb", path=path)


class EngineCall:
    """``with EngineCall(backend._error, "flush"): ...`` raises the typed error of an
    engine exception raised inside the block, chained to it (``raise ... from exc``).

    ``error(exc, doing)`` is the backend's translation (it also notices a closed store
    and a full disk); an exception that already is a :class:`StorageError` passes
    through unchanged. The hot point calls (get, put, contains) inline the same
    ``try``/``except`` instead: a context manager costs two Python calls per use, and
    there the translation must cost nothing until an error happens.
    """

    __slots__ = ("_doing", "_error")

    def __init__(self, error: Callable[[BaseException, str], StorageError], doing: str) -> None:
        self._error = error
        self._doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, Exception):
            return  # no error, or KeyboardInterrupt/SystemExit: not the engine's
        err = self._error(exc, self._doing)
        if err is exc:
            return  # already typed: propagates as it is
        raise err from exc
