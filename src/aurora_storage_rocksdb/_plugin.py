"""Entry point of the RocksDB backend (light: rocksdict is imported only when a
``rocksdb://`` URL is opened).

Opening a URL builds the plugin's pieces in one direction: the config from the URL, the
backend from the config, the repository around the backend. Neither the backend nor the
repository module imports this one, and the backend does not know its repository class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    from ._backend import RocksDBBackend
    from ._repository import RocksDBRepository

    opts = dict(options)
    # The codec the caller chose (accepts_codec below), for the repository's own check.
    codec = opts.pop("codec", None)
    backend = RocksDBBackend.from_url(url, opts)
    return RocksDBRepository._from_backend(backend, codec=codec, url=url)


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``rocksdb`` scheme."""
    return [
        BackendSpec(
            scheme="rocksdb",
            open=_open,
            description="RocksDB (rocksdict): durable, compressed, write-heavy history store",
            package="aurora-storage",
            accepts_codec=True,
        )
    ]
