"""Entry point of the memory backend (light: nothing heavy is imported here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    from ._backend import MemoryBackend

    return MemoryBackend.from_url(url, options)


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``memory`` scheme."""
    return [
        BackendSpec(
            scheme="memory",
            open=_open,
            description="process-local, in-memory reference backend (tests, caches)",
            package="aurora-storage",
            local_store=False,  # a store in this process: no files to check
        )
    ]
