"""Entry point of aurora-hashkv (light: the backend module is imported only at open)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    from ._backend import HashKVBackend

    return HashKVBackend.from_url(url, options)


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``hashkv`` scheme."""
    return [
        BackendSpec(
            scheme="hashkv",
            open=_open,
            description="in-memory hash table, unordered scans (a third-party example)",
            package="aurora-hashkv",
        )
    ]
