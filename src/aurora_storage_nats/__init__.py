"""The NATS JetStream plugin: a replicated, shared engine for users who outgrow one
machine.

``aurora_storage.open("nats://h1:4222,h2:4222/projections?replicas=3")`` opens a
:class:`NATSRepository` over a JetStream key-value bucket; so do
``NATSRepository(servers=..., bucket=...)`` and :func:`create_nats_repository`. It
registers the ``nats`` URL scheme through the ``aurora_storage`` entry point exactly as
an outside plugin would; install it with the ``nats`` extra (``pip install '.[nats]'``
from a clone). See ``docs/backends/nats.md`` for the options, key encoding, atomicity
limits and durability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import NATSConfig
from ._errors import (
    BatchTooLargeError,
    NATSConnectionClosedError,
    NATSConnectionError,
    NATSTimeoutError,
    ValueTooLargeError,
)

if TYPE_CHECKING:
    from ._backend import NATSAsyncBackend, NATSBackend
    from ._repository import NATSRepository, create_nats_repository

__all__ = [
    "BatchTooLargeError",
    "NATSAsyncBackend",
    "NATSBackend",
    "NATSConfig",
    "NATSConnectionClosedError",
    "NATSConnectionError",
    "NATSRepository",
    "NATSTimeoutError",
    "ValueTooLargeError",
    "create_nats_repository",
]

_LAZY = {
    "NATSAsyncBackend": "._backend",
    "NATSBackend": "._backend",
    "NATSRepository": "._repository",
    "create_nats_repository": "._repository",
}


def __getattr__(name: str) -> Any:
    # The client is imported on first use, so the entry point (``._plugin``, which
    # imports this package) and URL validation stay light.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aurora_storage_nats' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
