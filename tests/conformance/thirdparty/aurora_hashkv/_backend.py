"""An unordered backend: a hash table whose scans return keys in hash order.

This is what an engine without ranges looks like to aurora-storage (gdbm, dbm.dumb, a
key-value service that lists keys by hash): it filters ``start <= key < stop`` but
returns the keys in its own order, so it declares ``ordered_scans=False`` and leaves
key order, ``reverse`` and ``limit`` to the repository. (``dbm.dumb`` itself rewrites its
whole index on every delete, too slow for ranges of tens of thousands of keys.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aurora_storage.backend import Backend, Capabilities, Op
from aurora_storage.config import URL
from aurora_storage.errors import InvalidURLError, RepositoryClosedError


class HashKVBackend(Backend):
    """One dict behind a lock; scans walk a set of the keys (hash order)."""

    scheme = "hashkv"
    capabilities = Capabilities(ordered_scans=False, persistent=False, thread_safe=True)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._data: dict[bytes, bytes] | None = {}

    @classmethod
    def from_url(cls, url: URL, options: Mapping[str, Any]) -> HashKVBackend:
        """``hashkv://`` takes no path and no options."""
        if options:
            raise InvalidURLError(f"hashkv takes no options, got {sorted(options)}")
        return cls()

    def _d(self) -> dict[bytes, bytes]:
        data = self._data
        if data is None:
            raise RepositoryClosedError("the hashkv store is closed", backend="hashkv")
        return data

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._d().get(key)

    def put(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._d()[key] = value

    def delete(self, key: bytes) -> bool:
        with self._lock:
            return self._d().pop(key, None) is not None

    def write(self, ops: Sequence[Op]) -> None:
        # Puts and deletes of a dict cannot fail half way: applied under the lock, the
        # batch is atomic for every reader of this instance.
        with self._lock:
            data = self._d()
            for k, v in ops:
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        # Hash order: the order of a set of the keys. ``reverse`` reverses that order
        # (an unordered engine has no better meaning for it).
        with self._lock:
            data = self._d()
            picked = [(k, data[k]) for k in set(data) if start <= k < stop]
        if reverse:
            picked.reverse()
        for item in picked:
            self._d()  # a scan outliving close() raises instead of reading on
            yield item

    def close(self) -> None:
        with self._lock:
            self._data = None
