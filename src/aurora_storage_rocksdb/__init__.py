"""The RocksDB plugin: the durable, compressed, write-heavy event-history store.

``aurora_storage.open("rocksdb:///abs/path?compression=zstd")`` opens a
:class:`RocksDBRepository`; so do ``RocksDBRepository(path=...)`` and
:func:`create_rocksdb_repository`. It registers the ``rocksdb`` URL scheme through the
``aurora_storage`` entry point exactly as an outside plugin would. See
``docs/backends/rocksdb.md`` for the options, tuning and durability.
"""

from ._backend import InheritedHandleError, RocksDBBackend
from ._config import RocksDBConfig
from ._repository import RocksDBRepository, create_rocksdb_repository

__all__ = [
    "InheritedHandleError",
    "RocksDBBackend",
    "RocksDBConfig",
    "RocksDBRepository",
    "create_rocksdb_repository",
]
