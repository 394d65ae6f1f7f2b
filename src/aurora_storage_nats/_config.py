"""The NATS plugin's options, parsed in one place into a frozen config.

Imports no client: the entry point and URL validation stay light.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aurora_storage.config import URL, config_from_options, size_field
from aurora_storage.errors import ConfigurationError, InvalidURLError

__all__ = ["DEFAULT_PORT", "NATSConfig", "config_from_url"]

#: The NATS client port when a server names none.
DEFAULT_PORT = 4222

_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: The longest bucket name: its stream is ``KV_<bucket>``, and nats-server refuses a
#: stream name longer than 255 characters (err_code 10052, "stream name is too long").
MAX_BUCKET_NAME = 255 - len("KV_")
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$")
_SECRET = ("password", "token")


def _server(text: str) -> str:
    """``host[:port]`` (``[v6]:port`` too) to ``host:port``.

    Raises:
        ValueError: not a host with an optional port.
    """
    m = _HOST_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not host[:port]")
    port = int(m.group(2)) if m.group(2) else DEFAULT_PORT
    if not 0 < port < 65536:
        raise ValueError(f"port {port} of {text!r} is out of range")
    return f"{m.group(1)}:{port}"


@dataclass(frozen=True, slots=True)
class NATSConfig:
    """Options of ``nats://host:port[,host:port...]/<bucket>?option=value&...`` (see
    docs/backends/nats.md).

    Attributes:
        servers: ``host:port`` of each server to try (from the URL's host list).
        bucket: the JetStream key-value bucket (from the URL's path;
            ``[A-Za-z0-9_-]+``, at most 252 characters: its stream is ``KV_<bucket>``,
            and nats-server takes stream names of at most 255).
        user, password: user/password authentication (also ``nats://user:pw@...``).
            The password is never printed.
        token: token authentication (never printed).
        credentials: path of a ``.creds`` file (JWT + NKey seed) for decentralised
            auth (checked at open).
        tls: connect with TLS (``tls://``); implied by the ``tls_*`` files. A server
            that does not offer TLS is refused before anything is sent to it
            (ConfigurationError).
        tls_ca_file, tls_cert_file, tls_key_file: CA bundle to verify the servers, and
            a client certificate and key for mutual TLS (PEM files, checked at open).
        replicas: copies of the bucket's stream (1 on a single server; 3 recommended in
            a cluster). Applies when the bucket is created.
        storage: ``file`` (durable, default) or ``memory``. Applies at creation.
        history: changes kept per key (1..64; default 16). Applies at creation. The
            change feed reads them: a watcher may fall behind by up to ``history``
            changes of one key before its position expires; ``1`` turns ``watch()``
            off (see docs/backends/nats.md).
        max_value_size: the largest value the bucket accepts (``None``: the server's
            maximum message size). Applies at creation.
        max_bytes: the bucket's size limit (``None``: unlimited). Applies at creation.
        max_batch: the most operations one atomic batch may hold; must not exceed the
            server's ``jetstream { limits { batch { max_msgs } } }`` (1000 by default).
        connect_timeout: seconds to reach a server at open before
            :class:`~aurora_storage_nats.NATSConnectionError`.
        timeout: seconds to wait for each server answer before
            :class:`~aurora_storage_nats.NATSTimeoutError` (a scan: for the next record).
        max_reconnect_attempts: reconnect attempts per server after the connection is
            lost (``-1``, the default: forever, so the repository recovers whenever a
            server is back; ``0``: none). Once they are used up the connection is closed
            for good: every call raises NATSConnectionError saying so, and the
            repository must be opened again.
        reconnect_time_wait: seconds between reconnect attempts to one server.
        create_if_missing: create the bucket when it does not exist.
        read_only: refuse every write with ReadOnlyError (and never create or change
            the bucket).
    """

    servers: tuple[str, ...] = ()
    bucket: str = ""
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"
    history: int = 16
    max_value_size: int | None = size_field(None, help="largest value")
    max_bytes: int | None = size_field(None, help="bucket size limit")
    max_batch: int = 1000
    connect_timeout: float = 2.0
    timeout: float = 5.0
    max_reconnect_attempts: int = -1
    reconnect_time_wait: float = 0.5
    create_if_missing: bool = True
    read_only: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not self.servers:
            problems.append("no server: use nats://host:port/<bucket>")
        if not _BUCKET_RE.match(self.bucket or ""):
            problems.append(
                f"the bucket name {self.bucket!r} must be non-empty and use only "
                "A-Z a-z 0-9 _ - (it is the URL's path: nats://host:port/<bucket>)"
            )
        elif len(self.bucket) > MAX_BUCKET_NAME:
            problems.append(
                f"the bucket name is {len(self.bucket)} characters; nats-server takes at "
                f"most {MAX_BUCKET_NAME} (its stream KV_<bucket> may have 255): use a "
                "shorter name"
            )
        if not 1 <= self.replicas <= 5:
            problems.append(f"replicas must be 1..5, got {self.replicas}")
        if not 1 <= self.history <= 64:
            problems.append(f"history must be 1..64 (JetStream's limit), got {self.history}")
        if self.max_value_size is not None and self.max_value_size < 1:
            problems.append("max_value_size must be positive")
        if self.max_bytes is not None and self.max_bytes < 1:
            problems.append("max_bytes must be positive")
        if self.max_batch < 1:
            problems.append(f"max_batch must be at least 1, got {self.max_batch}")
        if not self.connect_timeout > 0 or not self.timeout > 0:
            problems.append("connect_timeout and timeout must be positive seconds")
        if self.reconnect_time_wait < 0 or self.max_reconnect_attempts < -1:
            problems.append(
                "reconnect_time_wait must be >= 0 and max_reconnect_attempts >= -1 (forever)"
            )
        if self.token is not None and (self.user is not None or self.password is not None):
            problems.append("use either token or user/password, not both")
        if self.password is not None and self.user is None:
            problems.append("password without user")
        if self.credentials is not None and (self.token is not None or self.user is not None):
            problems.append("use either a credentials file or user/password/token, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append("tls_cert_file and tls_key_file go together")
        if problems:
            raise ConfigurationError(
                f"invalid NATS options for {self.describe()}: " + "; ".join(problems),
                backend="nats",
            )

    @property
    def use_tls(self) -> bool:
        """Whether connections use TLS (``tls`` or any ``tls_*`` file)."""
        return self.tls or any(
            f is not None for f in (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        )

    @property
    def store_id(self) -> tuple[str, tuple[str, ...], str]:
        """The bucket's identity in this process (``Backend.store_id``): the servers,
        each ``host:port`` in lower case, sorted and deduplicated, and the bucket.
        Credentials, TLS and the client options are left out: every open of the bucket
        through these servers is the same store, whoever connects. A server spelled
        otherwise (a hostname and its address, another node of the cluster) is another
        identity."""
        return ("nats", tuple(sorted({s.lower() for s in self.servers})), self.bucket)

    @property
    def stream(self) -> str:
        """The bucket's stream name, ``KV_<bucket>``."""
        return f"KV_{self.bucket}"

    def server_urls(self) -> list[str]:
        """The URLs handed to the client (no credentials in them)."""
        scheme = "tls" if self.use_tls else "nats"
        return [f"{scheme}://{s}" for s in self.servers]

    def describe(self) -> str:
        """``nats://[user:***@]h1:p1,h2:p2/<bucket>``: names the store in messages,
        secrets hidden."""
        auth = ""
        if self.user is not None:
            auth = self.user + (":***" if self.password is not None else "") + "@"
        elif self.token is not None:
            auth = "***@"
        return f"nats://{auth}{','.join(self.servers)}/{self.bucket}"

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET and value is not None:
                parts.append(f"{f.name}='***'")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"NATSConfig({', '.join(parts)})"

    __str__ = __repr__

    @classmethod
    def from_options(
        cls, servers: str | tuple[str, ...] | list[str], bucket: str, options: Mapping[str, Any]
    ) -> NATSConfig:
        """Build from a server list (``"h1:4222,h2:4222"`` or a sequence), a bucket and
        option values (text from a URL or typed keywords).

        Raises:
            InvalidURLError: an unknown or malformed option, or a malformed server.
            ConfigurationError: conflicting options.
        """
        items = servers.split(",") if isinstance(servers, str) else list(servers)
        try:
            parsed = tuple(_server(s) for s in items if s.strip())
        except ValueError as exc:
            raise InvalidURLError(
                f"bad NATS server list: {exc}; write host:port[,host:port...]", backend="nats"
            ) from exc
        return config_from_options(
            cls, options, backend="nats", fixed={"servers": parsed, "bucket": bucket}
        )

    def to_url(self) -> URL:
        """The ``nats://`` URL naming this bucket, with the options that differ from the
        defaults (secrets included, hidden whenever the URL is printed)."""
        defaults = NATSConfig(servers=self.servers, bucket=self.bucket)
        query = []
        for f in dataclasses.fields(self):
            if f.name in ("servers", "bucket", "user", "password"):
                continue
            value = getattr(self, f.name)
            if value != getattr(defaults, f.name):
                text = ("true" if value else "false") if isinstance(value, bool) else str(value)
                query.append((f.name, text))
        host = ",".join(self.servers)
        return URL(
            scheme="nats",
            host=host,
            path="/" + self.bucket,
            username=self.user,
            password=self.password,
            query=tuple(query),
        )


def config_from_url(url: URL, options: Mapping[str, Any]) -> NATSConfig:
    """Parse ``nats://[user:password@ | token@]host:port[,host:port...]/<bucket>`` plus
    options (a lone user part is a token, as NATS reads it, unless a ``password`` option
    is given).

    Raises:
        InvalidURLError: no host, no bucket, or a bad option.
        ConfigurationError: conflicting options.
    """
    if not url.host:
        raise InvalidURLError(
            f"{url} names no server: use nats://host:port[,host:port...]/<bucket>",
            backend="nats",
        )
    servers = url.host if url.port is None else f"{url.host}:{url.port}"
    if ":" in url.host and "," not in url.host and not url.host.startswith("["):
        servers = f"[{url.host}]" + ("" if url.port is None else f":{url.port}")
    bucket = url.path.strip("/")
    opts = dict(options)
    userinfo: tuple[tuple[str, str | None], ...] = (
        ("user", url.username),
        ("password", url.password),
    )
    if url.username is not None and url.password is None and "password" not in opts:
        # nats://TOKEN@host: NATS's own form of token authentication (nats-py and the
        # nats CLI read a lone user part so); a user name comes with a password.
        userinfo = (("token", url.username),)
    for name, value in userinfo:
        if value is not None:
            if name in opts:
                raise InvalidURLError(
                    f"{name} is given both in the URL and as an option; give it once",
                    backend="nats",
                )
            opts[name] = value
    return NATSConfig.from_options(servers, bucket, opts)
