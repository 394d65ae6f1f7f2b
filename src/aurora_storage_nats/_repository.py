"""NATSRepository: the Repository over a JetStream key-value bucket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar, cast

from aurora_storage import Repository
from aurora_storage._eventstore import Watch
from aurora_storage._keys import NS_DATA, NS_DATA_END, decode_tenant_key
from aurora_storage.codecs import Codec
from aurora_storage.errors import ConfigurationError, CorruptionError, NotSupportedError

from ._backend import NATSBackend
from ._config import NATSConfig

__all__ = ["NATSRepository", "create_nats_repository"]

K = TypeVar("K")
V = TypeVar("V")


class NATSRepository(Repository[K, V]):
    """A repository stored in a NATS JetStream key-value bucket: shared by every process
    and machine that reaches the servers, replicated by JetStream.

    ``aurora_storage.open("nats://h1:4222,h2:4222/projections?replicas=3")`` returns one,
    or build it directly::

        repo = NATSRepository(servers="127.0.0.1:4222", bucket="projections")

    Args:
        servers: ``"host:port[,host:port...]"`` or a sequence of ``host:port``.
        bucket: the bucket name (``[A-Za-z0-9_-]+``).
        codec: value codec; default: the store's recorded codec, or ``json``.
        **options: any other :class:`NATSConfig` option (``replicas``, ``timeout``...).

    Raises:
        InvalidURLError: an unknown or malformed option.
        ConfigurationError: conflicting options, a missing bucket that may not be
            created, or a codec mismatch with the store.
        NATSConnectionError: no server reachable within ``connect_timeout``.
    """

    def __init__(
        self,
        servers: str | tuple[str, ...] | list[str],
        bucket: str,
        *,
        codec: str | Codec[Any] | None = None,
        **options: Any,
    ) -> None:
        config = NATSConfig.from_options(servers, bucket, options)
        backend = NATSBackend.open(config)
        Repository.__init__(self, backend, codec=codec, url=config.to_url())

    @property
    def config(self) -> NATSConfig:
        """The options this bucket was opened with."""
        return self._nats.config

    @property
    def _nats(self) -> NATSBackend:
        return cast(NATSBackend, self._backend)

    def _require_feed(self) -> None:
        # The generic refusal would suggest another store; on NATS the cure is the
        # bucket's history (a feed needs the previous message of each key, see _feed).
        self._check_open()
        if not self.capabilities.change_feed:
            raise NotSupportedError(
                f"watch() and last_position() need a change feed, and the bucket "
                f"{self.config.bucket!r} keeps one message per key (history=1), which "
                "leaves none: open a bucket created with history of 2 or more (the "
                "default is 16; history applies at creation)",
                backend="nats",
            )

    def watch(self, *args: Any, **kwargs: Any) -> Watch[K, V]:
        """See :meth:`Repository.watch`.

        Raises:
            NotSupportedError: the bucket keeps ``history=1`` (no change feed).
        """
        self._require_feed()
        return Repository.watch(self, *args, **kwargs)

    def last_position(self) -> int:
        """See :meth:`Repository.last_position`.

        Raises:
            NotSupportedError: the bucket keeps ``history=1`` (no change feed).
        """
        self._require_feed()
        return Repository.last_position(self)

    def _tenants(self) -> Iterator[str]:
        # One listing of the bucket instead of one per tenant (JetStream cannot seek).
        found: set[bytes] = set()
        for key in self._nats.list_keys(NS_DATA, NS_DATA_END):
            try:
                _, end = decode_tenant_key(key)
            except ValueError as exc:
                raise CorruptionError(f"a stored key has a damaged tenant: {exc}") from exc
            found.add(key[:end])
        for prefix in sorted(found):
            self._check_open()
            yield decode_tenant_key(prefix)[0]


def create_nats_repository(
    config: NATSConfig | None = None,
    *,
    codec: str | Codec[Any] | None = None,
    **options: Any,
) -> NATSRepository[Any, Any]:
    """Open a NATS repository from a config, or from ``servers=..., bucket=...`` and
    options.

    Raises:
        ConfigurationError: neither a config nor servers and bucket, both a config and
            options, or conflicting options.
    """
    if config is None:
        if "servers" not in options or "bucket" not in options:
            raise ConfigurationError(
                "create_nats_repository needs a NATSConfig or servers=... and bucket=...",
                backend="nats",
            )
        servers = options.pop("servers")
        bucket = options.pop("bucket")
        config = NATSConfig.from_options(servers, bucket, options)
    elif options:
        raise ConfigurationError(
            "pass either a NATSConfig or options, not both "
            f"(got config and {', '.join(sorted(options))})",
            backend="nats",
        )
    backend = NATSBackend.open(config)
    repo: NATSRepository[Any, Any] = NATSRepository.__new__(NATSRepository)
    Repository.__init__(repo, backend, codec=codec, url=config.to_url())
    return repo
