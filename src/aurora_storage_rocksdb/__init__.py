"""The RocksDB plugin: the durable, compressed, write-heavy event-history store.

``aurora_storage.open("rocksdb:///abs/path?compression=zstd")`` opens a
:class:`RocksDBRepository`; so do ``RocksDBRepository(path=...)`` and
:func:`create_rocksdb_repository`. It registers the ``rocksdb`` URL scheme through the
``aurora_storage`` entry point exactly as an outside plugin would. See
``docs/backends/rocksdb.md`` for the options, tuning and durability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aurora_storage.errors import InheritedHandleError

from ._config import RocksDBConfig
from ._limits import MAX_RECORD_SIZE, ValueTooLargeError

if TYPE_CHECKING:
    from ._backend import RocksDBBackend
    from ._repository import RocksDBRepository, create_rocksdb_repository

__all__ = [
    "MAX_RECORD_SIZE",
    "InheritedHandleError",
    "RocksDBBackend",
    "RocksDBConfig",
    "RocksDBRepository",
    "ValueTooLargeError",
    "create_rocksdb_repository",
]

_LAZY = {
    "RocksDBBackend": "._backend",
    "RocksDBRepository": "._repository",
    "create_rocksdb_repository": "._repository",
}


def __getattr__(name: str) -> Any:
    # The engine is imported on first use, so the entry point (``._plugin``, which
    # imports this package) and URL validation stay light.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aurora_storage_rocksdb' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
