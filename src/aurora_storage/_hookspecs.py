"""The hook specifications: what a plugin implements (:class:`BackendSpec`, how it
describes a backend, lives in :mod:`aurora_storage._backendspec`, which needs no pluggy).

Public through :mod:`aurora_storage.plugins`; kept apart so that the registry and the
public facade both import it and neither imports the other. Imported with the first
plugin (the registry's plugin manager, a plugin's ``hookimpl``), not by
``import aurora_storage``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from ._backendspec import PROJECT, BackendSpec

if TYPE_CHECKING:
    from .codecs import Codec

__all__ = ["PROJECT", "BackendSpec", "HookSpecs", "hookimpl", "hookspec"]


hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """The hooks a plugin may implement (all optional)."""

    @hookspec
    def aurora_storage_backends(self) -> list[BackendSpec]:  # type: ignore[empty-body]  # a spec: pluggy reads only its signature
        """Return the backends this plugin provides."""

    @hookspec
    def aurora_storage_codecs(self) -> list[Codec[Any]]:  # type: ignore[empty-body]  # a spec: pluggy reads only its signature
        """Return the value codecs this plugin provides."""
