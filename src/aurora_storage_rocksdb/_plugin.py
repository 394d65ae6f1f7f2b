"""Entry point of the RocksDB backend (light: rocksdict is imported only when a
``rocksdb://`` URL is opened)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    from ._backend import RocksDBBackend

    return RocksDBBackend.from_url(url, options)


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``rocksdb`` scheme."""
    return [
        BackendSpec(
            scheme="rocksdb",
            open=_open,
            description="RocksDB (rocksdict): durable, compressed, write-heavy history store",
            package="aurora-storage",
        )
    ]
