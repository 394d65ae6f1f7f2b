"""Entry point of aurora-tinykv (light: sqlite3 is imported only when a URL is opened)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    from ._backend import TinyKVBackend

    return TinyKVBackend.from_url(url, options)


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``tinykv`` scheme."""
    return [
        BackendSpec(
            scheme="tinykv",
            open=_open,
            description="sqlite3 file (a third-party example)",
            package="aurora-tinykv",
        )
    ]
