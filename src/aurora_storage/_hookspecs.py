"""The hook specifications: what a plugin implements, and how it describes a backend.

Public through :mod:`aurora_storage.plugins`; kept apart so that the registry and the
public facade both import it and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .backend import Backend
    from .codecs import Codec
    from .config import URL

__all__ = ["PROJECT", "BackendSpec", "HookSpecs", "hookimpl", "hookspec"]

#: The pluggy project name and the entry-point group.
PROJECT = "aurora_storage"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """How to open one URL scheme.

    Attributes:
        scheme: the URL scheme, lower case.
        open: ``open(url, options) -> Backend`` where ``options`` merges the URL's query
            options (text) with keyword overrides (typed values, taking precedence),
            minus the core's own options (``codec``). It parses them into the backend's
            frozen config (see :func:`aurora_storage.config.config_from_options`). It may
            also return a ready :class:`~aurora_storage.Repository` (composite backends).
        description: one line for ``aurora-storage backends``.
        package: the distribution that provides it, for install hints.
        accepts_codec: schemes whose ``open`` returns a ready repository (``tiered``,
            which opens other repositories; the RocksDB and LMDB plugins, which wrap
            their backend in their own repository class) set this; ``open`` then
            receives the chosen codec as the ``codec`` option.
    """

    scheme: str
    open: Callable[[URL, Mapping[str, Any]], Backend | Any]
    description: str = ""
    package: str | None = None
    accepts_codec: bool = False


class HookSpecs:
    """The hooks a plugin may implement (all optional)."""

    @hookspec
    def aurora_storage_backends(self) -> list[BackendSpec]:  # type: ignore[empty-body]  # a spec: pluggy reads only its signature
        """Return the backends this plugin provides."""

    @hookspec
    def aurora_storage_codecs(self) -> list[Codec[Any]]:  # type: ignore[empty-body]  # a spec: pluggy reads only its signature
        """Return the value codecs this plugin provides."""
