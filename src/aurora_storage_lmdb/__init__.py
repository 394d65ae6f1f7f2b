"""The LMDB plugin of aurora-storage: the fast, memory-mapped projection store.

``aurora_storage.open("lmdb:///var/data/projections?map_size=1GiB")`` returns an
:class:`LMDBRepository`; so does ``LMDBRepository(path=..., map_size=...)``. The map
grows automatically, values carry a CRC32 so on-disk damage raises
:class:`~aurora_storage.errors.CorruptionError`, and several processes may read and
write one store. See ``docs/backends/lmdb.md``.
"""

from ._backend import LMDBBackend, LMDBRepository, create_lmdb_repository
from ._config import LMDBConfig

__all__ = ["LMDBBackend", "LMDBConfig", "LMDBRepository", "create_lmdb_repository"]
