"""The description of one URL scheme a plugin serves (:class:`BackendSpec`) and the
plugin project's name: what the registry and :mod:`aurora_storage.plugins` need without
pluggy, so that `import aurora_storage` does not load pluggy (the hook machinery in
:mod:`aurora_storage._hookspecs` is imported with the first plugin)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Backend
    from .config import URL

__all__ = ["PROJECT", "BackendSpec"]

#: The pluggy project name and the entry-point group.
PROJECT = "aurora_storage"


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
        local_store: whether a URL of this scheme in the local form (``scheme:///abs/path``,
            ``scheme:relative/path``: no host, port or user; read with
            :func:`aurora_storage.config.local_path`) names a store on this machine whose
            backend sets ``marker_path`` to :func:`aurora_storage.backend.marker_path` of
            that path (the default, what docs/extending/writing-a-backend.md describes).
            The command line then checks the path before opening it: a read command
            refuses a path without the store marker (it never creates a store), and
            every command refuses a path holding another engine's store, before anything
            is written. ``False`` for a scheme whose URLs name no local files (a network
            engine that reads ``scheme:///name`` as a name on its default host, an
            in-memory store) or whose backend writes no marker: the command line then
            opens its URLs as given.
    """

    scheme: str
    open: Callable[[URL, Mapping[str, Any]], Backend | Any]
    description: str = ""
    package: str | None = None
    accepts_codec: bool = False
    local_store: bool = True
