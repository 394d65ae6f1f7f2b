"""LMDBRepository: the Repository with LMDB's maintenance calls."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from aurora_storage import Repository
from aurora_storage.codecs import Codec
from aurora_storage.config import URL, config_from_options

from ._backend import LMDBBackend
from ._config import LMDBConfig

__all__ = ["LMDBRepository", "create_lmdb_repository"]

K = TypeVar("K")
V = TypeVar("V")


class LMDBRepository(Repository[K, V]):
    """A :class:`~aurora_storage.Repository` on LMDB, with LMDB extras (:meth:`copy`,
    :meth:`reader_check`).

    ``LMDBRepository(path="./data/projections", map_size="64MiB", sync=False)`` is the
    same as ``aurora_storage.open("lmdb:data/projections?map_size=64MiB&sync=false")``.

    Args:
        path: the environment directory.
        map_size: initial map size (int or ``"64MiB"``); the map grows automatically.
        codec: value codec (default: the store's recorded one, else ``json``).
        **options: any other :class:`LMDBConfig` option.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        map_size: int | str | None = None,
        *,
        codec: str | Codec[Any] | None = None,
        **options: Any,
    ) -> None:
        opts = dict(options)
        if map_size is not None:
            opts["map_size"] = map_size
        config = config_from_options(
            LMDBConfig, opts, backend="lmdb", fixed={"path": os.fspath(path)}
        )
        backend = LMDBBackend.open(config)
        url = URL(scheme="lmdb", path=backend.path)
        Repository.__init__(self, backend, codec=codec, url=url)

    @property
    def lmdb_backend(self) -> LMDBBackend:
        """The LMDB backend (typed)."""
        backend = self._backend
        assert isinstance(backend, LMDBBackend)
        return backend

    def copy(self, path: str | os.PathLike[str], *, compact: bool = True) -> str:
        """A consistent backup of the live store into the directory ``path``; open it
        like any store. See :meth:`LMDBBackend.copy`."""
        self._check_open()
        return self.lmdb_backend.copy(path, compact=compact)

    def reader_check(self) -> int:
        """Reclaim reader slots left by killed processes; return how many."""
        self._check_open()
        return self.lmdb_backend.reader_check()


def create_lmdb_repository(
    path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    codec: str | Codec[Any] | None = None,
    **options: Any,
) -> LMDBRepository[Any, Any]:
    """Open (creating if missing) the LMDB repository at ``path``.

    Args:
        path: the store's path, or a mapping of options with ``"path"`` (the TypeScript
            package's config object, spelled with this package's option names).
        codec: the value codec (default: the store's recorded codec, or ``json``).
        **options: :class:`LMDBConfig` options (``map_size``, ``sync``, ...).

    Raises:
        ConfigurationError: a mapping without ``"path"``, or both a mapping and options.
        InvalidURLError: an unknown option (a camelCase TypeScript name is refused with
            the list of valid ones).
        InvalidArgumentError: ``path`` is none of the above.
    """
    from aurora_storage.errors import ConfigurationError, InvalidArgumentError

    if isinstance(path, Mapping):
        if options:
            raise ConfigurationError(
                "pass either a mapping of options or keyword options, not both "
                f"(got a mapping and {', '.join(sorted(options))})",
                backend="lmdb",
            )
        options = dict(path)
        if "path" not in options:
            raise ConfigurationError(
                "create_lmdb_repository's mapping of options needs 'path'", backend="lmdb"
            )
        path = options.pop("path")
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(
            "create_lmdb_repository takes the store's path or a mapping of options with "
            f"'path'; got {type(path).__name__}"
        )
    return LMDBRepository(path, codec=codec, **options)
