"""Entry point of the LMDB backend (light: py-lmdb is imported only when a store opens).

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
    from ._backend import LMDBBackend
    from ._repository import LMDBRepository

    opts = dict(options)
    # The codec the caller chose (accepts_codec below), for the repository's own check.
    codec = opts.pop("codec", None)
    backend = LMDBBackend.from_url(url, opts)
    return LMDBRepository._from_backend(backend, codec=codec, url=url)


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``lmdb`` scheme."""
    return [
        BackendSpec(
            scheme="lmdb",
            open=_open,
            description="LMDB (py-lmdb): memory-mapped, read-heavy projection store; "
            "multi-process readers and writers",
            package="aurora-storage",
            accepts_codec=True,
        )
    ]
