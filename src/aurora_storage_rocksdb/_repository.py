"""RocksDBRepository: the Repository with RocksDB's maintenance calls."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from aurora_storage import Repository
from aurora_storage.codecs import Codec

from ._backend import RocksDBBackend
from ._config import RocksDBConfig

__all__ = ["RocksDBRepository", "create_rocksdb_repository"]

K = TypeVar("K")
V = TypeVar("V")


class RocksDBRepository(Repository[K, V]):
    """A repository stored in RocksDB: durable, compressed, made for write-heavy history.

    ``aurora_storage.open("rocksdb:///abs/path?compression=zstd")`` returns one, or build
    it directly::

        repo = RocksDBRepository(path="./data/events", compression=True)

    Args:
        path: the store directory.
        compression: ``True``/``"snappy"`` (default), ``"zstd"``, ``"lz4"``,
            ``False``/``"none"``.
        codec: value codec; default: the store's recorded codec, or ``json``.
        **options: any other :class:`RocksDBConfig` option (``sync``, ``mode``, ...).

    Raises:
        InvalidURLError: an unknown or malformed option.
        ConfigurationError: conflicting options, a missing store that may not be created,
            or a codec/format mismatch with the store.
        StoreLockedError: another writer holds the store.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compression: bool | str = "snappy",
        codec: str | Codec[Any] | None = None,
        **options: Any,
    ) -> None:
        config = RocksDBConfig.from_options(path, {"compression": compression, **options})
        backend = RocksDBBackend.open(config)
        Repository.__init__(self, backend, codec=codec, url=config.to_url())

    @property
    def config(self) -> RocksDBConfig:
        """The options this store was opened with."""
        return self._rocks.config

    @property
    def _rocks(self) -> RocksDBBackend:
        return cast(RocksDBBackend, self._backend)

    def flush(self, *, memtables: bool = False) -> None:
        """Make every acknowledged write durable against an OS crash (fsync the
        write-ahead log); with ``memtables`` also write the memtables out as table files."""
        self._check_open()
        self._rocks.flush(memtables=memtables)

    def compact(self) -> None:
        """Compact the whole store: reclaims the space of deleted and overwritten records
        and applies the configured compression to everything.

        Raises:
            ReadOnlyError: the store was opened read-only or secondary.
        """
        self._check_open()
        self._rocks.compact()

    def checkpoint(self, path: str | os.PathLike[str]) -> str:
        """Write a consistent online backup to ``path`` (a new directory, hard-linked
        where the filesystem allows) while writes continue; it opens as a store. Returns
        the absolute path.

        Raises:
            ConfigurationError: ``path`` already exists.
        """
        self._check_open()
        return self._rocks.checkpoint(path)

    def catch_up(self) -> None:
        """In ``mode=secondary``: see everything the primary wrote so far.

        Raises:
            ConfigurationError: the repository is not a secondary.
        """
        self._check_open()
        self._rocks.catch_up()

    def property(self, name: str) -> str | None:
        """A RocksDB property as text (``"rocksdb.stats"``, ``"rocksdb.levelstats"``...),
        or ``None`` if RocksDB does not know it."""
        self._check_open()
        return self._rocks.property(name)


def create_rocksdb_repository(
    config: RocksDBConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    codec: str | Codec[Any] | None = None,
    **options: Any,
) -> RocksDBRepository[Any, Any]:
    """Open a RocksDB repository from a config, or from ``path=...`` and options.

    Examples::

        create_rocksdb_repository(RocksDBConfig(path="/var/data/events", compression="zstd"))
        create_rocksdb_repository(path="./events", sync=True)
        create_rocksdb_repository({"path": "./events", "compression": True})

    Args:
        config: a :class:`RocksDBConfig`; a mapping of options with ``"path"`` (the
            TypeScript package's config object, spelled with this package's option names);
            the store's path; or ``None`` with ``path=...`` among ``options``.
        codec: the value codec (default: the store's recorded codec, or ``json``).
        **options: :class:`RocksDBConfig` options (``compression``, ``sync``, ...).

    Raises:
        ConfigurationError: neither a config nor a path, both a config and options, or
            conflicting options.
        InvalidURLError: an unknown option (a camelCase TypeScript name is refused with
            the list of valid ones).
        InvalidArgumentError: ``config`` is none of the above.
    """
    from aurora_storage.errors import ConfigurationError, InvalidArgumentError

    if isinstance(config, (str, os.PathLike)):
        options = {**options, "path": config}
        config = None
    elif isinstance(config, Mapping):
        if options:
            raise ConfigurationError(
                "pass either a mapping of options or keyword options, not both "
                f"(got a mapping and {', '.join(sorted(options))})",
                backend="rocksdb",
            )
        options = dict(config)
        config = None
    elif config is not None and not isinstance(config, RocksDBConfig):
        raise InvalidArgumentError(
            "create_rocksdb_repository takes a RocksDBConfig, a mapping of options with "
            f"'path', or a path; got {type(config).__name__}"
        )
    if config is None:
        if "path" not in options:
            raise ConfigurationError(
                "create_rocksdb_repository needs a RocksDBConfig or path=...", backend="rocksdb"
            )
        path = options.pop("path")
        config = RocksDBConfig.from_options(path, options)
    elif options:
        raise ConfigurationError(
            "pass either a RocksDBConfig or options, not both "
            f"(got config and {', '.join(sorted(options))})",
            backend="rocksdb",
        )
    backend = RocksDBBackend.open(config)
    repo: RocksDBRepository[Any, Any] = RocksDBRepository.__new__(RocksDBRepository)
    Repository.__init__(repo, backend, codec=codec, url=config.to_url())
    return repo
