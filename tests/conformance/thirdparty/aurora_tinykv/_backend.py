"""A persistent, ordered, atomic backend over one sqlite3 table.

SQLite compares BLOBs with memcmp, so ``ORDER BY k`` is byte order: exactly the order
the Backend interface asks for.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aurora_storage.backend import Backend, Capabilities, Op
from aurora_storage.config import URL, config_from_options
from aurora_storage.errors import (
    CorruptionError,
    InvalidURLError,
    RepositoryClosedError,
    StorageError,
    StoreLockedError,
)

_CHUNK = 256


@dataclass(frozen=True, slots=True)
class TinyKVConfig:
    """Options of ``tinykv:///path/to/file.db``."""

    path: str
    timeout: float = 5.0
    synchronous: Literal["off", "normal", "full"] = "normal"


class TinyKVBackend(Backend):
    """One sqlite3 connection guarded by a lock (sqlite3 objects are not thread-safe)."""

    scheme = "tinykv"
    capabilities = Capabilities(persistent=True, thread_safe=True, atomic_batches=True)

    def __init__(self, config: TinyKVConfig) -> None:
        super().__init__()
        self.config = config
        self._lock = threading.RLock()
        self._closed = False
        try:
            Path(config.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                config.path,
                timeout=config.timeout,
                check_same_thread=False,
                isolation_level=None,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={config.synchronous.upper()}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
            )
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc) from exc

    @classmethod
    def from_url(cls, url: URL, options: Mapping[str, Any]) -> TinyKVBackend:
        """Parse ``tinykv:///abs/file.db?timeout=5&synchronous=normal``."""
        if not url.path:
            raise InvalidURLError(f"{url} names no file: use tinykv:///path/to/file.db")
        # The path comes from the URL itself, not from an option ("?path=" is refused).
        return cls(
            config_from_options(TinyKVConfig, options, backend="tinykv", fixed={"path": url.path})
        )

    # --------------------------------------------------------------- error mapping

    def _translate(self, exc: BaseException) -> StorageError:
        text = str(exc)
        path = getattr(getattr(self, "config", None), "path", None)
        if "locked" in text or "busy" in text:
            return StoreLockedError(
                f"{path} is locked by another writer: {text}", backend="tinykv", path=path
            )
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
            return CorruptionError(f"{path} is damaged: {text}", backend="tinykv", path=path)
        return StorageError(f"sqlite3 failed on {path}: {text}", backend="tinykv", path=path)

    def _check(self) -> None:
        if self._closed:
            raise RepositoryClosedError(
                f"tinykv store {self.config.path} is closed", backend="tinykv"
            )

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._check()
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    # --------------------------------------------------------------- the interface

    def get(self, key: bytes) -> bytes | None:
        rows = self._run("SELECT v FROM kv WHERE k = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def put(self, key: bytes, value: bytes) -> None:
        self._run("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))

    def delete(self, key: bytes) -> bool:
        with self._lock:
            self._check()
            try:
                return self._db.execute("DELETE FROM kv WHERE k = ?", (key,)).rowcount > 0
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def write(self, ops: Sequence[Op]) -> None:
        with self._lock:
            self._check()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for k, v in ops:
                        if v is None:
                            self._db.execute("DELETE FROM kv WHERE k = ?", (k,))
                        else:
                            self._db.execute(
                                "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (k, v)
                            )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        # Chunked so no sqlite cursor outlives a call: a closed store fails the next chunk.
        lo, hi = start, stop
        while True:
            if reverse:
                rows = self._run(
                    "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k DESC LIMIT ?",
                    (lo, hi, _CHUNK),
                )
            else:
                rows = self._run(
                    "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?",
                    (lo, hi, _CHUNK),
                )
            for k, v in rows:
                self._check()
                yield bytes(k), bytes(v)
            if len(rows) < _CHUNK:
                return
            last = bytes(rows[-1][0])
            if reverse:
                hi = last
            else:
                lo = last + b"\x00"

    def count_range(self, start: bytes, stop: bytes) -> int:
        return int(self._run("SELECT COUNT(*) FROM kv WHERE k >= ? AND k < ?", (start, stop))[0][0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def describe(self) -> str:
        return f"tinykv://{self.config.path}"
