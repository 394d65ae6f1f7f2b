"""Entry point of the LMDB backend (light: py-lmdb is imported only when a store opens)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    from ._backend import LMDBBackend

    return LMDBBackend.from_url(url, options)


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
        )
    ]
