"""The small bytes-level interface an engine implements.

A backend stores opaque byte keys and values in byte order. Everything users touch -
tenancy, key encoding, codecs, validation, batches, views, async, tiering - lives in
:class:`~aurora_storage.Repository`, written once. An engine plugin implements the six
abstract methods below, may override the documented defaults where the engine does
better, and translates its engine's exceptions into :mod:`aurora_storage.errors`
(chaining the cause) at this boundary.

Keys reaching a backend are at most :data:`~aurora_storage.MAX_KEY_SIZE` bytes and never
empty. The repository never calls a backend after :meth:`Backend.close`, except through
iterators the user still holds: a scan iterator must then raise
:class:`~aurora_storage.errors.RepositoryClosedError` (not crash) when advanced.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ._stores import (
    StoreHandles,
    config_signature,
    create_store_dir,
    marker_path,
    open_stores,
    plan_store_dir,
    remove_created,
)

__all__ = [
    "Backend",
    "Capabilities",
    "Chunk",
    "Op",
    "StoreHandles",
    "chunk_items",
    "chunk_keys",
    "config_signature",
    "create_store_dir",
    "marker_path",
    "open_stores",
    "plan_store_dir",
    "remove_created",
]

_RANGE_CHUNK = 10_000
_SCAN_CHUNK = 256

#: One write in an atomic batch: ``(key, value)`` puts, ``(key, None)`` deletes.
Op = tuple[bytes, bytes | None]

#: One piece of a chunked scan: the keys, and the values at the same positions (``None``
#: for a keys-only scan).
Chunk = tuple[list[bytes], list[bytes] | None]


def chunk_items(chunks: Iterator[Chunk]) -> Iterator[tuple[bytes, bytes]]:
    """The ``(key, value)`` pairs of a chunked scan, one at a time: :meth:`Backend.scan`
    for an engine that implements :meth:`Backend.scan_chunks` natively."""
    for keys, vals in chunks:
        yield from zip(keys, vals, strict=True)  # type: ignore[arg-type]


def chunk_keys(chunks: Iterator[Chunk]) -> Iterator[bytes]:
    """The keys of a chunked scan, one at a time (:meth:`Backend.scan_keys` likewise)."""
    for keys, _ in chunks:
        yield from keys


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend supports. Compositions check these up front; the conformance
    suite skips the tests of anything not declared, with the reason.

    Attributes:
        ordered_scans: scans return keys in byte order, with start/stop bounds.
        atomic_batches: :meth:`Backend.write` applies all operations or none.
        persistent: data survives close and reopen.
        multi_process: several processes may open the same store for writing.
        thread_safe: one instance may be used from several threads at once.
        blocking_writes: a single write may block for long (fsync, network); async
            callers run writes in a worker thread instead of inline.
        read_only: this instance refuses writes with ReadOnlyError.
    """

    ordered_scans: bool = True
    atomic_batches: bool = True
    persistent: bool = False
    multi_process: bool = False
    thread_safe: bool = True
    blocking_writes: bool = False
    read_only: bool = False


class Backend(ABC):
    """Bytes in, bytes out, ordered scans, atomic batches, close.

    Subclasses set :attr:`scheme` and :attr:`capabilities` and implement the abstract
    methods. Every method may raise only :mod:`aurora_storage.errors` exceptions.
    """

    #: The URL scheme this backend serves (used in messages and ``stats()``).
    scheme: str = "?"
    #: What this instance supports.
    capabilities: Capabilities = Capabilities()
    #: Whether :meth:`write_iter` copies each operation into the engine's own batch as
    #: it is produced (RocksDB's WriteBatch). The repository then hands it freshly
    #: encoded values it does not keep, instead of the exact-size copies it makes for
    #: values held until one write (see :attr:`~aurora_storage.codecs.Codec.encode_held`).
    streams_writes: bool = False
    #: Where this store's initialisation marker lives (a file-based engine sets it,
    #: usually ``aurora_storage.backend.marker_path(store_path)``); ``None`` for engines
    #: that keep no files. The repository writes the marker when it creates the store's
    #: metadata record, and refuses with CorruptionError a store whose marker exists but
    #: whose metadata record is gone, instead of initialising it again.
    marker_path: str | None = None

    def __init__(self) -> None:
        # Serialises the default read-then-write insert(); engines with a native
        # create-only write (LMDB's overwrite=False) override insert() instead.
        self._insert_lock = threading.Lock()

    # ------------------------------------------------------------------ required

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored at ``key``, or ``None`` if absent."""

    @abstractmethod
    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` at ``key``, replacing any previous value. Durable per the
        backend's documented settings once it returns."""

    @abstractmethod
    def delete(self, key: bytes) -> bool:
        """Remove ``key``; return whether it was present."""

    @abstractmethod
    def write(self, ops: Sequence[Op]) -> None:
        """Apply puts (``(k, v)``) and deletes (``(k, None)``) in order, atomically if
        ``capabilities.atomic_batches``: after a crash either all are visible or none."""

    @abstractmethod
    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` for ``start <= key < stop`` in byte order (descending if
        ``reverse``). A scan must never end early silently: an engine error (corruption)
        raises :class:`~aurora_storage.errors.CorruptionError` from the iterator."""

    @abstractmethod
    def close(self) -> None:
        """Release the store (locks, files, maps). Idempotent. Live scan iterators must
        afterwards raise RepositoryClosedError rather than keep the store open."""

    # ------------------------------------------------------------------ defaults

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """Like :meth:`scan` but keys only. Override when the engine can skip values."""
        for k, _ in self.scan(start, stop, reverse=reverse):
            yield k

    def write_iter(self, ops: Iterable[Op]) -> int:
        """Like :meth:`write`, for operations produced one at a time: ``ops`` is consumed
        once, and if producing it raises, nothing is written and that exception propagates
        unchanged. Returns how many operations were applied.

        ``put_many`` writes through this method, so its keys and values are encoded while
        the batch is built. The default collects ``ops`` and calls :meth:`write`; engines
        with a batch object of their own override it (and set :attr:`streams_writes`).
        """
        batch = list(ops)
        if batch:
            self.write(batch)
        return len(batch)

    def scan_chunks(
        self, start: bytes, stop: bytes, *, reverse: bool = False, values: bool = True
    ) -> Iterator[Chunk]:
        """The same records as :meth:`scan` (or :meth:`scan_keys` when ``values`` is
        false), as a stream of ``(keys, values)`` list pairs. Never yields an empty chunk.

        The repository's scans read through this method: per-item work then happens in
        one Python loop (the repository's) instead of two stacked generators, and keys are
        decoded a chunk at a time. Engines that read in chunks anyway (RocksDB, LMDB)
        override it to hand their chunks over directly. The default cuts :meth:`scan` /
        :meth:`scan_keys` into chunks of 256 records.
        """
        src: Iterator[Any] = (
            self.scan(start, stop, reverse=reverse)
            if values
            else self.scan_keys(start, stop, reverse=reverse)
        )
        try:
            while part := list(islice(src, _SCAN_CHUNK)):
                if values:
                    yield [k for k, _ in part], [v for _, v in part]
                else:
                    yield part, None
        finally:
            close = getattr(src, "close", None)
            if close is not None:
                close()

    def contains(self, key: bytes) -> bool:
        """Whether ``key`` is present. Override when the engine can answer without
        reading (or verifying) the value."""
        return self.get(key) is not None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values for ``keys`` in order, ``None`` for absent ones."""
        get = self.get
        return [get(k) for k in keys]

    def insert(self, key: bytes, value: bytes) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it was stored.

        The default is correct for backends owned by one process (a read then a write
        under a lock); multi-process engines must override it with a native operation.
        """
        with self._insert_lock:
            if self.get(key) is not None:
                return False
            self.put(key, value)
            return True

    def delete_range(self, start: bytes, stop: bytes) -> int:
        """Delete every key in ``[start, stop)``; return how many there were.

        The default deletes in batches of 10,000 keys, re-seeking after each, so memory
        stays flat however large the range (it is therefore not one atomic batch)."""
        total, lo = 0, start
        while True:
            keys = list(islice(self.scan_keys(lo, stop), _RANGE_CHUNK))
            if keys:
                self.write([(k, None) for k in keys])
                total += len(keys)
            if len(keys) < _RANGE_CHUNK:
                return total
            lo = keys[-1] + b"\x00"

    def count_range(self, start: bytes, stop: bytes) -> int:
        """Number of keys in ``[start, stop)``."""
        return sum(1 for _ in self.scan_keys(start, stop))

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        """The smallest key in ``[start, stop)``, or ``None``."""
        for k in self.scan_keys(start, stop):
            return k
        return None

    def flush(self) -> None:  # noqa: B027 - optional hook; a no-op is right for memory
        """Make every acknowledged write durable against an OS crash (fsync)."""

    def stats(self) -> dict[str, Any]:
        """Engine figures: size on disk, key counts, engine-specific properties."""
        return {}

    def describe(self) -> str:
        """Short text naming this store in messages (e.g. its path)."""
        return self.scheme
