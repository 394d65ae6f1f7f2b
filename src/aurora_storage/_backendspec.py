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
    """

    scheme: str
    open: Callable[[URL, Mapping[str, Any]], Backend | Any]
    description: str = ""
    package: str | None = None
    accepts_codec: bool = False
