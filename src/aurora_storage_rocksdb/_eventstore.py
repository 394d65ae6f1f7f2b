"""Event-store primitives of the RocksDB backend (kept apart from the adapter's I/O paths).

rocksdict exposes no transactions (no TransactionDB, no OptimisticTransactionDB), so a
conditional commit is evaluated under the backend's write lock, which every write of the
store takes (``put``, ``insert``, ``delete``, batches, ``delete_range``). RocksDB allows
one writer process per store (the engine's LOCK file), so that lock serialises every
write there is: reading the conditions and counters, then writing one WriteBatch, is
atomic. The change feed is in-process: recording starts at the first ``watch()`` /
``last_position()`` (before that a write pays one ``is None`` test), and a commit's
number is the engine's sequence number after its write (persistent and strictly
increasing, so positions never repeat across reopens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import rocksdict

from aurora_storage.backend import Append, Condition, Op, RecentChanges, plan_commit
from aurora_storage.errors import StorageError

from . import _limits

if TYPE_CHECKING:
    from ._backend import RocksDBBackend

__all__ = ["commit", "record", "start_feed"]


def commit(
    backend: RocksDBBackend,
    ops: Sequence[Op],
    conditions: Sequence[Condition],
    appends: Sequence[Append],
) -> list[int]:
    """:meth:`Backend.commit` for RocksDB: plan and write under the write lock."""

    def read(key: bytes) -> bytes | None:
        # Not backend._get itself: that is a method of the engine object, and a failed
        # condition's traceback would keep the engine alive after close() (a fork()
        # child collecting it would then flush from a process without RocksDB's threads).
        return backend._get(key)

    with backend._insert_lock:
        backend._check()
        try:
            final, firsts = plan_commit(read, ops, conditions, appends, last=backend.last_key)
            changes = effective(backend, final) if backend._feed is not None else final
            wb = rocksdict.WriteBatch(raw_mode=True)
            for k, v in final:
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)
            # A record over the engine's limit: the batch holds it, or dropped it
            # without a word (see _limits).
            lost = wb.len() != len(final)
            if lost or wb.size_in_bytes() > _limits.MAX_RECORD_SIZE:
                _limits.check_batch(final, backend.config.path, lost=lost)
            backend._db.write(wb)
        except StorageError:
            raise  # ConditionFailed, CorruptionError of a counter: already typed
        except Exception as exc:
            raise backend._error(exc, "conditional commit") from exc
        if backend._feed is not None:
            record(backend, changes)
        return firsts


def effective(backend: RocksDBBackend, ops: Sequence[Op]) -> Sequence[Op]:
    """``ops`` as changes for the feed: without the deletes of keys that are absent when
    they apply (a delete that removes nothing is not a change; a WriteBatch deletes
    blindly). Read under the write lock, before the write."""
    if all(v is not None for _, v in ops):
        return ops
    exists: dict[bytes, bool] = {}  # within the batch, as its operations apply
    out: list[Op] = []
    for k, v in ops:
        if v is not None:
            exists[k] = True
            out.append((k, v))
            continue
        now = exists.get(k)
        if now is None:
            now = backend._get(k) is not None
        if now:
            out.append((k, None))
        exists[k] = False
    return out


def record(backend: RocksDBBackend, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Record a write in the feed (the caller holds the write lock, the write is done)."""
    feed = backend._feed
    if feed is not None:
        feed.record(backend._db.latest_sequence_number(), changes)


def start_feed(backend: RocksDBBackend) -> RecentChanges:
    """The backend's feed, created (under the write lock) on first use."""
    with backend._insert_lock:
        backend._check()
        if backend._feed is None:
            backend._feed = RecentChanges(start=backend._db.latest_sequence_number())
        return backend._feed
