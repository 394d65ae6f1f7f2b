"""Event-store primitives of the LMDB backend (kept apart from the adapter's I/O paths).

A conditional commit is one LMDB write transaction: the conditions and sequence counters
are read, and the writes, numbered records and counter updates applied, inside it. LMDB
allows one write transaction at a time per environment, across processes (its own lock
file), so the commit is atomic against every other writer of the store - other threads
and other processes alike - with no lock file of ours.

The change feed is in-process: recording starts at the first ``watch()`` /
``last_position()``, and a commit's number is its LMDB transaction id (strictly
increasing across processes and reopens, so positions never repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aurora_storage.backend import Append, Condition, Op, RecentChanges, plan_commit

if TYPE_CHECKING:
    from ._backend import LMDBBackend

__all__ = ["commit", "record", "start_feed"]


def commit(
    backend: LMDBBackend,
    ops: Sequence[Op],
    conditions: Sequence[Condition],
    appends: Sequence[Append],
) -> list[int]:
    """:meth:`Backend.commit` for LMDB: everything in one write transaction."""
    from ._backend import _wrap

    unwrap = backend._unwrap
    done: list[Any] = []

    def work(txn: Any) -> list[int]:
        get = txn.get

        def read(key: bytes) -> bytes | None:
            raw = get(key)
            return None if raw is None else unwrap(key, raw)

        final, firsts = plan_commit(read, ops, conditions, appends)
        put, delete = txn.put, txn.delete
        for k, v in final:
            if v is None:
                delete(k)
            else:
                put(k, _wrap(v))
        done[:] = [txn.id(), final]  # a retried transaction overwrites its first try
        return firsts

    def on_commit(_result: list[int], _tid: int) -> None:
        # Still under the process write lock: the feed sees commits in commit order.
        record(backend, done[0], done[1])

    return backend._write_txn(work, on_commit=on_commit)


def record(backend: LMDBBackend, tid: int, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Record a committed write transaction ``tid`` in the in-process feed."""
    feed = backend._feed
    if feed is not None:
        feed.record(tid, changes)


def start_feed(backend: LMDBBackend) -> RecentChanges:
    """The backend's feed, created (under the write lock) on first use; it starts after
    the store's last committed transaction."""
    with backend._wlock:
        if backend._dead:
            backend._check()
        if backend._feed is None:
            backend._feed = RecentChanges(start=backend._env.info()["last_txnid"])
        return backend._feed
