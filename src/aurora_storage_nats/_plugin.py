"""Entry point of the NATS JetStream backend (light: nats-py is imported only when a
``nats://`` URL is opened)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    try:
        from ._backend import NATSBackend
        from ._repository import NATSRepository
    except ImportError as exc:
        from aurora_storage._install import extra_hint
        from aurora_storage.errors import BackendNotFoundError

        raise BackendNotFoundError(
            f"the nats:// backend needs the NATS client (nats-py), which is not installed "
            f"({exc}); install it with: {extra_hint('nats')}",
            backend="nats",
        ) from exc
    opts = dict(options)
    # The codec the caller chose (accepts_codec below), for the repository's own check.
    codec = opts.pop("codec", None)
    # Built in one direction - config, backend, repository - so the backend need not
    # know its repository class (and the two modules do not import each other).
    backend = NATSBackend.from_url(url, opts)
    return NATSRepository._from_backend(backend, codec=codec, url=url)


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``nats`` scheme."""
    return [
        BackendSpec(
            scheme="nats",
            open=_open,
            description="NATS JetStream key-value (nats-py): replicated, shared by many "
            "processes and machines",
            package="aurora-storage[nats]",
            accepts_codec=True,
            local_store=False,  # a bucket on a server: no files to check
        )
    ]
