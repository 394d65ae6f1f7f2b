"""The LMDB plugin of aurora-storage: the fast, memory-mapped projection store.

``aurora_storage.open("lmdb:///var/data/projections?map_size=1GiB")`` returns an
:class:`LMDBRepository`; so does ``LMDBRepository(path=..., map_size=...)``. The map
grows automatically, values carry a CRC32 so on-disk damage raises
:class:`~aurora_storage.errors.CorruptionError`, and several processes may read and
write one store. It registers the ``lmdb`` URL scheme through the ``aurora_storage``
entry point exactly as an outside plugin would. See ``docs/backends/lmdb.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._config import LMDBConfig

if TYPE_CHECKING:
    from ._backend import LMDBBackend
    from ._repository import LMDBRepository, create_lmdb_repository

__all__ = ["LMDBBackend", "LMDBConfig", "LMDBRepository", "create_lmdb_repository"]

_LAZY = {
    "LMDBBackend": "._backend",
    "LMDBRepository": "._repository",
    "create_lmdb_repository": "._repository",
}


def __getattr__(name: str) -> Any:
    # py-lmdb is imported on first use, so the entry point (``._plugin``, which imports
    # this package) stays light: listing or loading plugins imports no engine.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
