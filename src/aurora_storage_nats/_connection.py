"""The connection half of the NATS backend's asyncio core: connecting (TLS,
credentials, reconnects), finding or creating the key-value bucket and checking its
configuration, closing, and the translation of client and server errors into
:mod:`aurora_storage.errors`. :class:`~._client.NATSCore` adds the reads and writes."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.js import api

from aurora_storage.errors import (
    ConfigurationError,
    NotSupportedError,
    StorageError,
    StorageFullError,
)

from ._config import NATSConfig
from ._errors import (
    BatchTooLargeError,
    NATSConnectionClosedError,
    NATSConnectionError,
    NATSTimeoutError,
    ValueTooLargeError,
)

__all__ = ["FLUSH_EVERY", "PENDING_SIZE", "NATSConnection", "reads", "writes"]

_log = logging.getLogger("aurora_storage.nats")

#: Bytes a batch hands the client before it waits for them to reach the server (a
#: flush: PING, then its PONG within ``timeout``); see NATSCore._publish_ops.
FLUSH_EVERY = 2 * 1024 * 1024
#: nats-py's outgoing buffer (its ``pending_size``). When a publish would go past it,
#: nats-py waits for its flusher without a bound, and swallows a cancellation of that
#: wait (a stalled link hung a batch for ever). So it is made larger than anything a
#: batch ever buffers - FLUSH_EVERY plus one message of at most the largest
#: max_payload nats-server allows (64 MiB) - and batches flush on their own first.
PENDING_SIZE = FLUSH_EVERY + 66 * 1024 * 1024

_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C", bound="NATSConnection")

# JetStream error codes (server/errors.json).
_STREAM_NOT_FOUND = 10059
_MSG_TOO_BIG = 10054
_BATCH_TOO_LARGE = 10199
_ATOMIC_DISABLED = (10174,)
#: The account may hold no more streams (JSMaximumStreamsLimitErr): each bucket is one,
#: so creating a bucket is refused.
_MAX_STREAMS = 10027
#: The server's (or the account's) JetStream storage is used up: insufficient resources,
#: insufficient storage / memory resources, account resource limits exceeded.
_SERVER_FULL = (10023, 10047, 10028, 10002)
_REPLICAS = 10074
_CONFLICT = 10058
_NO_MESSAGE = 10037
_CONSUMER_NOT_FOUND = 10014
#: An open retries the bucket lookup and creation while JetStream is unavailable or
#: silent (a fresh cluster electing its meta leader) for this many times ``timeout``.
OPEN_TIMEOUTS = 4


#: What a failed call's ``what`` starts with when the call was writing: only then may
#: a timeout or a lost connection have left it applied or not.
_WRITES = ("writing", "deleting", "inserting", "committing")


#: What ``what`` starts with for a commit holding appends (see :func:`_unknown_write`).
COMMITTING_APPENDS = "committing a batch with appends"

#: The advice for a commit holding appends whose outcome is unknown. A put repeated
#: writes the same value again and a conditional write repeated reports the conflict,
#: but an append repeated takes the next number: the record would be stored twice.
APPENDS_UNKNOWN = (
    "; the write may or may not have been applied, and it holds appends: read it back "
    "before repeating it - an append repeated is stored again under a new number (check "
    "last_sequence() or the sequence's last records for what you appended), or let the "
    "batch also insert an idempotency key (b.insert(tenant, ('applied', request_id), "
    "True)): repeated after it was applied, such a batch raises KeyExistsError and "
    "writes nothing"
)


def _unknown_write(what: str) -> str:
    """The clause a write's timeout or lost connection ends with (nothing for reads,
    scans, watches and opens, which write nothing)."""
    if what.startswith(COMMITTING_APPENDS):
        return APPENDS_UNKNOWN
    if what.startswith(_WRITES):
        return "; the write may or may not have been applied (read it back, or repeat it)"
    return ""


class _BucketMissing(ConfigurationError):
    """The server answered "stream not found" for the bucket: not yet a verdict. A
    server starting (before JetStream recovered its streams) or stopping (JetStream shut
    down before its clients) answers so for a bucket that exists. :func:`reads` and
    :func:`writes` confirm it with the server (:meth:`NATSConnection.settle`) before a
    caller sees it; unconfirmed it is still the :class:`ConfigurationError` it says."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message, backend="nats")
        self.what = what


class _ConsumerLost(NATSConnectionError):
    """A scan's consumer vanished while it ran (the server restarted, and a restarted
    server has forgotten its ephemeral consumers): transient, the scan is made again
    (:func:`reads`)."""


class TLSNotOfferedError(nats.errors.Error):
    """A server asked for TLS answered without requiring it (raised by
    :class:`_TLSClient` before anything is sent to the server)."""

    def __init__(self, server: str) -> None:
        super().__init__(f"the server {server} does not offer TLS")
        self.server = server


class _Client(Client):
    """nats-py's client, with what the plugin needs of it beside.

    * Its close, once the connection is lost, drops the bytes still in its buffer
      (publishes made while it was reconnecting, or behind a flusher blocked on a full
      socket) instead of writing them to the lost connection: nats-py writes them and
      waits for them to drain, which raises ``ConnectionResetError`` there and ends the
      close before its cleanup and its closed callback (the plugin learns from that
      callback why the connection is closed for good, and wakes waiting watches). A
      client closed while reconnecting never reconnects, so those bytes were never going
      to be sent; a close of a connected client still flushes them first.
    * Each connect attempt closes the connection of the attempt before it. nats-py
      keeps one transport and replaces its stream writer on each attempt without
      closing the old one: an attempt that reached something listening (a TCP proxy or
      load balancer before a server that is down) and then failed left its socket open
      until the garbage collector found it - one per attempt, every
      ``reconnect_time_wait`` for as long as the outage lasted, each reported as
      "ResourceWarning: unclosed <StreamWriter ...>".
    * ``clustered``: whether the server it (re)connected to last is a node of a cluster
      (its INFO names the cluster), so that a timeout mentions a leader election only
      where there can be one.
    """

    clustered = False

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection:
            self.clustered = bool(info.get("cluster"))
        await super()._process_info(info, initial_connection)

    async def _connect_to_server(self, s: Any) -> None:
        if self._transport is not None:
            self._transport.close()  # type: ignore[no-untyped-call]  # nats-py: unannotated
        await super()._connect_to_server(s)

    async def _close(self, status: int, do_cbs: bool = True) -> None:
        if not self.is_connected and not self.is_closed:
            self._pending = []
            self._pending_data_size = 0
        await super()._close(status, do_cbs)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Done callback of a close the plugin starts and nobody awaits: read its outcome
    (asyncio prints "Task exception was never retrieved" for an exception nobody read);
    the close is best effort, so what it raised is only logged, at debug level."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        _log.debug("closing a NATS client whose connection was lost raised %r", exc)


class _TLSClient(_Client):
    """The client, refusing any server that would not be reached over TLS.

    nats-py upgrades a connection to TLS only when the server's INFO says
    ``tls_required``; otherwise it sends CONNECT - user, password, token, signed nonce -
    in clear text, whatever TLS options it was given (a server without TLS, or a man in
    the middle stripping it). This client reads that INFO first (the hook nats-py calls
    right after parsing it, before any upgrade or CONNECT): a server offering TLS beside
    plain text (``allow_non_tls``: ``tls_available``) is upgraded, and one that offers no
    TLS at all is refused before a byte is sent to it. (``tls_handshake_first``, the
    other way to be sure, needs servers configured with ``handshake_first``: an
    ordinary TLS server's plain-text INFO breaks that handshake.)"""

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection and not info.get("tls_required"):
            if not info.get("tls_available"):
                server = self._current_server
                raise TLSNotOfferedError(server.uri.netloc if server is not None else "?")
            info["tls_required"] = True  # nats-py upgrades on this very dict
        await super()._process_info(info, initial_connection)


def _file_problem(option: str, path: str, what: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{option}={path}: {what}; {fix}", backend="nats", path=path)


def _read_file(option: str, path: str) -> bytes:
    """The bytes of the file an option names.

    Raises:
        ConfigurationError: it is missing, not a file, or unreadable.
    """
    if not os.path.exists(path):
        raise _file_problem(
            option, path, "the file does not exist", f"give {option} the path of an existing file"
        )
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise _file_problem(
            option,
            path,
            f"the file cannot be read ({exc.strerror or exc})",
            "check the path and its permissions",
        ) from exc


def tls_context(config: NATSConfig) -> ssl.SSLContext | None:
    """The TLS context of ``config`` (None without TLS), each file checked.

    Raises:
        ConfigurationError: a file option names a missing or unreadable file, or one
            that is not what the option needs (a PEM CA bundle; a PEM certificate and
            the private key that matches it).
    """
    if not config.use_tls:
        return None
    ca, cert, key = config.tls_ca_file, config.tls_cert_file, config.tls_key_file
    for option, path in (("tls_ca_file", ca), ("tls_cert_file", cert), ("tls_key_file", key)):
        if path is not None:
            _read_file(option, path)
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except ssl.SSLError as exc:
        assert ca is not None
        raise _file_problem(
            "tls_ca_file",
            ca,
            f"not a PEM bundle of CA certificates ({exc})",
            "give the CA certificate(s) that signed the servers' certificates, in PEM",
        ) from exc
    if cert is not None:
        assert key is not None
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise _file_problem(
                "tls_cert_file",
                cert,
                f"with tls_key_file={key}, not a PEM certificate and its matching "
                f"private key ({exc})",
                "give the client certificate and its own (unencrypted) key, in PEM",
            ) from exc
    return ctx


def check_credentials(config: NATSConfig) -> None:
    """Check the ``credentials`` file (nats-py reads it only when a server asks for it,
    and loops forever on a file without a JWT).

    Raises:
        ConfigurationError: missing, unreadable, or not a ``.creds`` file.
    """
    path = config.credentials
    if path is None:
        return
    text = _read_file("credentials", path)
    if b"BEGIN NATS USER JWT" not in text or b"BEGIN USER NKEY SEED" not in text:
        raise _file_problem(
            "credentials",
            path,
            "not a NATS credentials file (it must hold a user JWT and an NKey seed, "
            "between -----BEGIN NATS USER JWT----- and -----BEGIN USER NKEY SEED----- "
            "lines)",
            "give the .creds file your NATS operator issued (nsc generate creds)",
        )


def _full_text(description: str) -> bool:
    """Whether a server's error text says a stream limit is reached. The server sends
    these with varying codes (a 503 with err_code 10077, "store failed", wrapping
    "maximum bytes exceeded" or "maximum messages exceeded"), so the text decides."""
    text = description.lower()
    return "maximum bytes exceeded" in text or "maximum messages exceeded" in text


class NATSConnection:
    """One client connection to the bucket and its lifecycle; every method is a
    coroutine on the loop the connection was made on."""

    def __init__(self, config: NATSConfig) -> None:
        self.config = config
        self.nc: _Client | None = None
        self.js: Any = None
        self.pre = f"$KV.{config.bucket}."
        self.stream = config.stream
        self._get_pre = f"$JS.API.DIRECT.GET.{self.stream}.{self.pre}"
        self.atomic = False
        # Direct gets (any replica answers) for a single replica; a replicated bucket
        # reads through its leader so a read sees every acknowledged write.
        self.direct = True
        self.timeout = config.timeout
        self.history = 1
        # The stream's max_msg_size (the bucket's max_value_size; -1: none), which
        # bounds a message's headers and data together, as the server's max_payload
        # does (see NATSCore.msg_limit).
        self.max_msg_size = -1
        self.head_expires = False
        # Told when the client has reconnected (``reconnected()``: the change feed's
        # consumers, see _feed._Waker - a restarted server has forgotten them), and
        # woken (``notify()``) when the connection is closed for good, so that a
        # waiting watch reads again and meets the error instead of waiting forever.
        self.reconnect_listeners: weakref.WeakSet[Any] = weakref.WeakSet()
        # The client's last error (a failed reconnect: refused, no TLS, unreachable),
        # and why the connection was closed for good once it was (see _lost).
        self.last_error: BaseException | None = None
        self.gone: str | None = None
        # When (time.monotonic()) the connection was last lost or made again (None: not
        # since the open). A call that timed out within ``timeout`` of it waited across
        # it (see _why_silent).
        self.shaken: float | None = None
        self._closing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ errors

    def fail(self, exc: BaseException, what: str) -> NoReturn:
        """Raise the aurora error for a client or server error ``exc`` (chained)."""
        where = self.config.describe()
        if isinstance(exc, StorageError):
            raise exc
        if isinstance(exc, nats.js.errors.APIError):
            code = exc.err_code
            desc = exc.description or str(exc)
            if code == _STREAM_NOT_FOUND or (
                isinstance(exc, nats.js.errors.NotFoundError) and code is None
            ):
                raise _BucketMissing(
                    f"{what}: the bucket {self.config.bucket!r} does not exist on {where} "
                    "(was it deleted?); open it again with create_if_missing=true",
                    what,
                ) from exc
            if code == _CONSUMER_NOT_FOUND:
                raise _ConsumerLost(
                    f"{what}: the server no longer knows the consumer this call was "
                    f"reading through on {where} (the server restarted, or the consumer "
                    "was removed); repeat the call",
                    backend="nats",
                ) from exc
            if code == _MSG_TOO_BIG:
                raise ValueTooLargeError(
                    f"{what}: a value is larger than the bucket {self.config.bucket!r} "
                    f"allows ({desc}); store smaller values or raise max_value_size",
                    backend="nats",
                ) from exc
            if code == _BATCH_TOO_LARGE:
                raise self.too_large(-1, 0, exc) from exc
            if code in _ATOMIC_DISABLED:
                raise NotSupportedError(
                    f"{what}: atomic batch publish is disabled on the stream {self.stream} "
                    "(allow_atomic is false, or the server is older than 2.12); nothing "
                    "was written. Open the bucket writable once so it is enabled, or "
                    "upgrade the server",
                    backend="nats",
                ) from exc
            if code in _SERVER_FULL or "insufficient" in desc.lower():
                raise StorageFullError(
                    f"{what}: the JetStream storage of the server(s) of {where} is full "
                    f"({desc}): the server's max_file_store (max_memory_store for "
                    "storage=memory), its disk, or the account's JetStream limits are "
                    "used up; nothing was written. Free space on the server (delete "
                    "buckets or data), or raise its max_file_store",
                    backend="nats",
                ) from exc
            if code == _MAX_STREAMS:
                raise StorageFullError(
                    f"{what}: the NATS account on {where} may hold no more streams "
                    f"({desc}); every bucket is one stream (KV_<bucket>), so the bucket "
                    f"{self.config.bucket!r} cannot be created. Delete buckets the account "
                    "no longer needs, or raise the account's JetStream max_streams; nothing "
                    "was written",
                    backend="nats",
                ) from exc
            if _full_text(desc):
                raise StorageFullError(
                    f"{what}: the bucket {self.config.bucket!r} is full ({desc}); nothing "
                    "was written. Raise max_bytes or free space",
                    backend="nats",
                ) from exc
            if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                raise NATSConnectionError(
                    f"{what}: JetStream is unavailable on {where} ({desc}): the server "
                    "may be starting or stopping (repeat the call once it is back); if it "
                    "stays so, is JetStream enabled, and does the cluster have a leader?",
                    backend="nats",
                ) from exc
            raise StorageError(
                f"{what}: the JetStream server refused the request on {where}: {desc} "
                f"(err_code {code})",
                backend="nats",
            ) from exc
        if isinstance(exc, nats.errors.MaxPayloadError):
            raise ValueTooLargeError(
                f"{what}: a message is larger than the server's max_payload on {where}; "
                "store smaller values",
                backend="nats",
            ) from exc
        if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError):
            raise NATSConnectionError(
                f"{what}: no JetStream server answered for the bucket "
                f"{self.config.bucket!r} on {where} (the bucket was deleted, JetStream is "
                "off, or the cluster has no leader)",
                backend="nats",
            ) from exc
        nc = self.nc
        if nc is not None and nc.is_closed:
            raise self.closed_for_good(what) from exc
        if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError | TimeoutError):
            raise NATSTimeoutError(
                f"{what}: no answer from {where} within {self.timeout} s ({self._why_silent()})"
                + _unknown_write(what),
                backend="nats",
            ) from exc
        if isinstance(
            exc,
            nats.errors.ConnectionClosedError
            | nats.errors.StaleConnectionError
            | nats.errors.NoServersError
            | nats.errors.ConnectionReconnectingError
            | nats.errors.OutboundBufferLimitError
            | nats.errors.UnexpectedEOF
            | OSError,
        ):
            raise NATSConnectionError(
                f"{what}: the connection to {where} is lost ({type(exc).__name__}: {exc}; "
                "the client reconnects by itself)" + _unknown_write(what),
                backend="nats",
            ) from exc
        if isinstance(exc, nats.errors.Error):
            raise StorageError(f"{what} on {where}: {exc}", backend="nats") from exc
        if not isinstance(exc, Exception):
            raise exc  # a cancellation, an interrupt: not an error of the store
        # Anything else from the client (or the loop) is still reported as a storage
        # error, chained: no raw exception reaches the caller.
        raise StorageError(
            f"{what} on {where}: unexpected {type(exc).__name__} from the NATS client: {exc}",
            backend="nats",
        ) from exc

    async def _stream_exists(self, deadline: float) -> bool | None:
        """Ask the server for the bucket's stream until ``deadline``: True once it is
        found, None if the server does not answer usably (stopping, restarting,
        JetStream unavailable), False if it answers "stream not found" up to the
        deadline, every time (a server starting or stopping says so only for a moment:
        it stops, or recovers its streams)."""
        loop = asyncio.get_running_loop()
        subject = f"$JS.API.STREAM.INFO.{self.stream}"
        attempt = 0
        while True:
            try:
                nc = self._conn()
                wait = min(1.0, max(deadline - loop.time(), 0.05))
                msg = await nc.request(subject, b"", timeout=wait)
                err = orjson.loads(msg.data).get("error") if msg.data else {}
            except StorageError:
                raise  # closed: the repository's own error
            except Exception:
                return None
            if err is None:
                return True
            if err.get("err_code") != _STREAM_NOT_FOUND:
                return None
            if loop.time() >= deadline:
                return False
            attempt += 1
            await asyncio.sleep(min(0.05 * attempt, 0.5))

    async def settle(
        self, exc: _BucketMissing | _ConsumerLost, deadline: float, read: bool
    ) -> None:
        """Judge a call's "bucket missing" or "consumer lost" error ``exc``: return when
        a read may be made again (the bucket exists, or the server is not answering yet,
        and ``deadline`` is not passed); raise the error the caller sees otherwise.

        Raises:
            ConfigurationError: the server still says the stream does not exist after
                asking it again until ``deadline`` (the bucket was deleted).
            NATSConnectionError: the bucket exists (or the server stopped answering): it
                answered while starting or stopping. A write is not repeated (it may or
                may not have been applied); a read past ``deadline`` is not either.
        """
        loop = asyncio.get_running_loop()
        if isinstance(exc, _ConsumerLost):
            if read and loop.time() < deadline:
                await asyncio.sleep(0.05)
                return
            raise exc
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        exists = await self._stream_exists(deadline)
        if exists is False:
            raise ConfigurationError(str(exc), backend="nats") from cause
        if read and loop.time() < deadline:
            await asyncio.sleep(0.05)
            return
        state = "the bucket exists" if exists else "the server did not answer when asked again"
        raise NATSConnectionError(
            f"{exc.what}: the server {self.config.describe()} answered that the bucket "
            f"{self.config.bucket!r} does not exist while it was starting or stopping "
            f"({state}); repeat the call once the server is back" + _unknown_write(exc.what),
            backend="nats",
        ) from cause

    def _why_silent(self) -> str:
        """Why a request may have gone unanswered, from what the client knows when its
        timeout fires: the connection is down (reconnecting), it was lost and made
        again while the request waited (its request or answer went with the lost
        connection; a restarted server may also still be recovering JetStream), or it
        stayed up - then a cluster may be electing a leader (only a server in a
        cluster: a single server elects none), or the server is overloaded."""
        nc = self.nc
        if nc is not None and (nc.is_reconnecting or nc.is_connecting):
            return (
                "the connection was lost and the client is reconnecting; calls succeed "
                "again once a server is back" + self._last_error("; last error: {}")
            )
        shaken = self.shaken
        if shaken is not None and time.monotonic() - shaken <= self.timeout:
            return (
                "the connection was lost while the call waited, and the client has "
                "reconnected since - to a restarted server, or another one of the list"
            )
        if nc is not None and nc.clustered:
            return (
                "the connection stayed up: a leader election in the cluster, or an "
                "overloaded server"
            )
        return (
            "the connection stayed up: an overloaded or stalled server - a slow disk, a "
            "paused process - or a slow link"
        )

    def _last_error(self, form: str) -> str:
        """``form`` with ``{}`` replaced by the client's last (re)connect error, or ""."""
        err = self.last_error
        if err is None:
            return ""
        return form.format(f"{type(err).__name__}: {str(err) or 'no detail'}")

    def closed_for_good(self, what: str | None) -> NATSConnectionClosedError:
        """The error of every call once the client has stopped reconnecting: of a call
        cut off doing ``what``, or (None) of a call that found it closed and sent
        nothing."""
        return NATSConnectionClosedError(
            ("" if what is None else f"{what}: ")
            + f"the connection to {self.config.describe()} is closed for good: "
            f"{self.gone or 'the client closed it'}{self._last_error(' (last error: {})')}"
            + (" (nothing was sent)" if what is None else "")
            + ". A closed connection does not come back: close this repository and open "
            "it again once a server is reachable (with max_reconnect_attempts=-1, the "
            "default, the client keeps reconnecting for as long as the repository is "
            "open)" + ("" if what is None else _unknown_write(what)),
            backend="nats",
        )

    async def _lost(self, nc: _Client) -> None:
        """The client closed itself (not :meth:`close`): it gave up reconnecting. Every
        later call raises :meth:`closed_for_good`; waiting watches are woken to see it."""
        if self.nc is not nc:
            return  # closed by close(), or a connect that failed
        n = self.config.max_reconnect_attempts
        err = nc.last_error
        if type(err) is nats.errors.Error and "maximum payload" in str(err).lower():
            # (Writes check sizes first: a server whose max_payload is below what its
            # INFO said, or another client's message on this connection.)
            self.gone = (
                f"the server closed it on a message over its max_payload ({err}), "
                "after which the client does not reconnect"
            )
        else:
            self.gone = (
                "the connection was lost and max_reconnect_attempts=0 allows no reconnect"
                if n == 0
                else f"the client gave up reconnecting after max_reconnect_attempts={n} "
                "attempts per server"
            )
        for listener in list(self.reconnect_listeners):
            listener.notify()

    def too_large(
        self, size: int, internal: int, refused: BaseException | None = None
    ) -> BatchTooLargeError:
        """The error for an atomic batch of ``size`` caller operations plus ``internal``
        records the repository adds (sequence counters) that is over ``max_batch``, or
        that the server ``refused`` (its description names its own limit)."""
        c = self.config
        if refused is None:
            limit = c.max_batch
            over = f"larger than max_batch={limit} (the most one JetStream atomic publish holds)"
        else:
            desc = getattr(refused, "description", None) or str(refused)
            found = re.search(r"(\d+)\s*$", desc)
            limit = int(found.group(1)) if found else -1
            told = f"{limit} messages" if found else "a smaller limit"
            over = (
                f"refused by the server, which allows {told} per atomic publish "
                f"(its jetstream.limits.batch.max_msgs; max_batch={c.max_batch} is above it)"
            )
        what = "an atomic batch" if size < 0 else f"an atomic batch of {size} operations"
        if internal:
            counters = "counter" if internal == 1 else "counters"
            what += (
                f" plus {internal} internal record{'s' if internal > 1 else ''} (the "
                f"sequence {counters} of its appends, one per sequence)"
            )
        room = limit - internal
        split = (
            f"Split it into batches of at most {room} operations"
            if limit > 0 and size >= 0
            else "Split it"
        )
        return BatchTooLargeError(
            f"{what} is {over}; nothing was written. {split}, or raise the server's "
            "jetstream.limits.batch.max_msgs and max_batch together",
            size=size,
            internal=internal,
            limit=limit,
        )

    # ------------------------------------------------------------------ open/close

    async def connect(self) -> None:
        """Connect, then find (or create) the bucket.

        Raises:
            NATSConnectionError: no server reachable within ``connect_timeout``, or the
                credentials were refused.
            ConfigurationError: a file option names a missing or unusable file; TLS is
                asked for and a server does not offer it; the bucket is missing and may
                not be created, or it cannot be created with these options.
        """
        c = self.config
        tls = tls_context(c)
        check_credentials(c)
        # The client reports a refusal (wrong credentials, a server without TLS) to
        # error_cb and then retries the server list until the deadline: remember it,
        # and stop the connect at once, so the user sees the refusal, not a timeout.
        refusals: list[BaseException] = []
        refused_now = asyncio.Event()
        nc: _Client = _TLSClient() if tls is not None else _Client()

        async def on_error(exc: Exception) -> None:
            # (The client would log a traceback for every error by default; failures
            # reach the caller as typed errors instead.)
            if not nc.is_connected:
                self.last_error = exc  # why a (re)connect attempt failed
            if not refused_now.is_set() and (
                isinstance(
                    exc,
                    nats.errors.AuthorizationError
                    | TLSNotOfferedError
                    | ssl.SSLCertVerificationError,
                )
                or "authorization" in str(exc).lower()
            ):
                refusals.append(exc)  # (once: after the open, reconnects come here too)
                refused_now.set()

        async def closed() -> None:
            await self._lost(nc)

        async def disconnected() -> None:
            if self.nc is not nc or nc.is_closed:
                return  # closed by close(), or a connect that failed
            self.shaken = time.monotonic()
            if c.max_reconnect_attempts == 0:
                # Not awaited here: this runs inside the client's reconnect task, which
                # the close cancels. Awaited by close(); its outcome is read either way.
                self._closing = asyncio.get_running_loop().create_task(nc.close())
                self._closing.add_done_callback(_retrieve)

        kwargs: dict[str, Any] = {
            "servers": c.server_urls(),
            "connect_timeout": c.connect_timeout,
            # nats-py reads 0 as "forever" (it only counts attempts above 0): with 0,
            # the client is closed instead when the connection is lost (see below).
            "max_reconnect_attempts": c.max_reconnect_attempts or -1,
            "reconnect_time_wait": c.reconnect_time_wait,
            "allow_reconnect": True,
            "error_cb": on_error,
            "reconnected_cb": self._reconnected,
            "disconnected_cb": disconnected,
            "closed_cb": closed,
            "name": "aurora-storage",
            "pending_size": PENDING_SIZE,
        }
        if c.user is not None:
            kwargs["user"] = c.user
            kwargs["password"] = c.password or ""
        if c.token is not None:
            kwargs["token"] = c.token
        if c.credentials is not None:
            kwargs["user_credentials"] = c.credentials
        if tls is not None:
            kwargs["tls"] = tls
        # Bound the whole connect by connect_timeout: the client would otherwise keep
        # retrying the list (its own connect_timeout bounds each attempt only).
        connecting = asyncio.ensure_future(nc.connect(**kwargs))
        refusal = asyncio.ensure_future(refused_now.wait())
        try:
            done, _ = await asyncio.wait(
                {connecting, refusal},
                timeout=c.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if connecting in done:
                connecting.result()
            elif refusals:
                raise refusals[0]
            else:
                raise TimeoutError
        except BaseException as exc:
            for task in (connecting, refusal):
                task.cancel()
            await asyncio.gather(connecting, refusal, return_exceptions=True)
            try:
                await asyncio.wait_for(nc.close(), 0.2)
            except BaseException:
                pass
            if isinstance(exc, asyncio.CancelledError):
                raise
            no_tls = [e for e in refusals if isinstance(e, TLSNotOfferedError)]
            if no_tls:
                raise ConfigurationError(
                    f"the NATS server {no_tls[0].server} of {c.describe()} does not offer "
                    "TLS, which this repository asks for (tls=true, or a tls_* file): it "
                    "was refused before anything was sent to it, credentials included. "
                    "Enable TLS on the server (a tls { cert_file, key_file } block), or "
                    "connect in plain text on purpose (tls=false and no tls_* option)",
                    backend="nats",
                ) from exc
            bad_cert = [e for e in refusals if isinstance(e, ssl.SSLCertVerificationError)]
            if bad_cert:
                why = bad_cert[0].verify_message or bad_cert[0].reason or str(bad_cert[0])
                raise ConfigurationError(
                    f"the TLS certificate of the NATS server of {c.describe()} failed "
                    f"verification ({why}): nothing was sent to it. Give the CA that "
                    "signed the server's certificate as tls_ca_file (the system's CAs are "
                    "used without it), and connect by a name or address the certificate "
                    "holds",
                    backend="nats",
                ) from bad_cert[0]
            if refusals:
                raise NATSConnectionError(
                    f"the NATS server of {c.describe()} refused the credentials "
                    f"(authorization violation: wrong user, password, token or "
                    "credentials file); check them",
                    backend="nats",
                ) from exc
            detail = "timed out" if isinstance(exc, asyncio.TimeoutError) else repr(exc)
            raise NATSConnectionError(
                f"cannot reach any NATS server of {c.describe()} within "
                f"{c.connect_timeout} s ({detail}); check the servers are running and the "
                "credentials are right",
                backend="nats",
            ) from exc
        # Connected: the refusal watcher is not needed any more (left pending, it was
        # collected later with asyncio's "Task was destroyed but it is pending!").
        refusal.cancel()
        await asyncio.gather(refusal, return_exceptions=True)
        self.nc = nc
        self.js = nc.jetstream(timeout=c.timeout)
        try:
            await self._ensure_bucket()
        except BaseException:
            await self.close()
            raise

    async def _reconnected(self) -> None:
        self.last_error = None
        self.shaken = time.monotonic()
        for listener in list(self.reconnect_listeners):
            listener.reconnected()

    def _open_failed(self, exc: BaseException, what: str, waited: float) -> NoReturn:
        """The error for an open whose bucket lookup or creation got no usable answer
        from JetStream for the whole open deadline (:data:`OPEN_TIMEOUTS` x timeout)."""
        c = self.config
        if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError | TimeoutError):
            raise NATSTimeoutError(
                f"{what} {c.bucket!r} on {c.describe()}: JetStream did not answer for "
                f"{waited:.1f} s of retries (the open waits up to {OPEN_TIMEOUTS} x "
                f"timeout={c.timeout} s for a cluster to elect its meta leader, and a "
                "new replicated bucket its stream's leader); is JetStream enabled, and "
                "does the cluster have a quorum of nodes up?",
                backend="nats",
            ) from exc
        raise NATSConnectionError(
            f"{what} {c.bucket!r} on {c.describe()}: JetStream stayed unavailable for "
            f"{waited:.1f} s of retries ({type(exc).__name__}: {exc}); is JetStream "
            "enabled, and does the cluster have a quorum of nodes up?",
            backend="nats",
        ) from exc

    async def _ensure_bucket(self) -> None:
        c = self.config
        # A fresh cluster answers "JetStream unavailable", or nothing at all, until its
        # meta leader is elected: the open retries its lookup and creation until a
        # deadline of OPEN_TIMEOUTS x timeout, each request bounded by a shorter wait
        # so that a leader elected meanwhile is seen soon.
        start = time.monotonic()
        deadline = start + OPEN_TIMEOUTS * c.timeout
        js = self.nc.jetstream(timeout=min(c.timeout, 1.0)) if self.nc is not None else self.js
        attempt = 0
        while True:
            try:
                info = await js.stream_info(self.stream)
                break
            except nats.js.errors.NotFoundError:
                info = None
                break
            except (
                nats.js.errors.ServiceUnavailableError,
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
            ) as exc:
                if time.monotonic() >= deadline:
                    self._open_failed(exc, "opening the bucket", time.monotonic() - start)
            except Exception as exc:
                self.fail(exc, "opening the bucket")
            attempt += 1
            await asyncio.sleep(min(0.05 * attempt, 0.5))
        if info is None:
            if not c.create_if_missing or c.read_only:
                raise ConfigurationError(
                    f"the bucket {c.bucket!r} does not exist on {c.describe()}; create it "
                    "(open with create_if_missing=true, the default, and without read_only)",
                    backend="nats",
                )
            info = await self._create(start, deadline)
        cfg = info.config
        if f"{self.pre}>" not in (cfg.subjects or []) or (cfg.max_msgs_per_subject or 0) < 1:
            raise ConfigurationError(
                f"the stream {self.stream} on {c.describe()} is not a key-value bucket "
                f"(subjects {cfg.subjects}); choose another bucket name",
                backend="nats",
            )
        if (cfg.num_replicas or 1) > 1:
            await self._await_leader(start, deadline)
        self.atomic = bool(cfg.allow_atomic)
        if (not self.atomic or not cfg.allow_direct) and not c.read_only:
            # A bucket made by other tools (nats kv add) may lack atomic publish and
            # direct gets; allowing them changes nothing else (both are updatable).
            cfg.allow_atomic = True
            cfg.allow_direct = True
            try:
                info = await self.js.update_stream(cfg)
                cfg = info.config
                self.atomic = bool(cfg.allow_atomic)
            except Exception:
                self.atomic = False
        self.direct = (cfg.num_replicas or 1) <= 1
        # What the change feed needs to know of the stream's retention (see _feed).
        self.history = int(cfg.max_msgs_per_subject or 1)
        self.max_msg_size = int(cfg.max_msg_size or -1)
        self.head_expires = bool(cfg.max_age) or cfg.discard == api.DiscardPolicy.OLD
        if not cfg.allow_direct and self.direct:
            raise ConfigurationError(
                f"the bucket {c.bucket!r} on {c.describe()} does not allow direct gets "
                "(allow_direct), which reads need; open it once without read_only so it "
                "is enabled",
                backend="nats",
            )

    async def _await_leader(self, start: float, deadline: float) -> None:
        """Wait until the replicated stream's leader answers a read, within the open's
        deadline. A bucket just created (by this process or another one opening it at
        the same time) elects its stream's leader after the meta leader has answered
        the creation; until then the reads a replicated bucket makes through its leader
        (the repository's first one reads its metadata record) get no answer."""
        c = self.config
        nc = self._conn()
        # A key of nobody's (the token "_" is no key encoding): "no message found".
        req = orjson.dumps({"last_by_subj": self.pre + "_"})
        attempt = 0
        while True:
            last: Exception
            try:
                msg = await nc.request(
                    f"$JS.API.STREAM.MSG.GET.{self.stream}", req, timeout=min(c.timeout, 1.0)
                )
                err = orjson.loads(msg.data).get("error") if msg.data else {"code": 503}
                if not err or err.get("err_code") == _NO_MESSAGE:
                    return
                last = nats.js.errors.APIError(**err)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                last = exc
            except Exception as exc:
                self.fail(exc, "opening the bucket")
            if time.monotonic() >= deadline:
                self._open_failed(last, "opening the bucket", time.monotonic() - start)
            attempt += 1
            await asyncio.sleep(min(0.05 * attempt, 0.5))

    async def _create(self, start: float, deadline: float) -> Any:  # noqa: RET503 - see the loop
        c = self.config
        cfg = api.StreamConfig(
            name=self.stream,
            subjects=[f"{self.pre}>"],
            allow_direct=True,
            allow_rollup_hdrs=True,
            allow_atomic=True,
            deny_delete=True,
            discard=api.DiscardPolicy.NEW,
            duplicate_window=120.0,
            max_bytes=c.max_bytes if c.max_bytes is not None else -1,
            max_consumers=-1,
            max_msg_size=c.max_value_size if c.max_value_size is not None else -1,
            max_msgs=-1,
            max_msgs_per_subject=c.history,
            num_replicas=c.replicas,
            storage=api.StorageType.FILE if c.storage == "file" else api.StorageType.MEMORY,
        )
        last: Exception | None = None
        # A cluster electing its meta leader answers "unavailable" (or nothing) for a
        # moment: retried until the open's deadline (a create that was applied before
        # its answer was lost is answered as existing on the retry).
        attempt = 0
        while attempt == 0 or time.monotonic() < deadline:
            attempt += 1
            try:
                return await self.js.add_stream(cfg)
            except nats.js.errors.APIError as exc:
                last = exc
                if exc.err_code == _CONFLICT:
                    # Created meanwhile by another process with other options: use it.
                    return await self.js.stream_info(self.stream)
                if exc.err_code == _REPLICAS:
                    raise ConfigurationError(
                        f"cannot create the bucket {c.bucket!r} with replicas={c.replicas} "
                        f"on {c.describe()}: {exc.description} (a single server holds one "
                        "replica; use replicas=1 or a cluster)",
                        backend="nats",
                    ) from exc
                if not isinstance(exc, nats.js.errors.ServiceUnavailableError):
                    self.fail(exc, f"creating the bucket {c.bucket!r}")
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                last = exc
            await asyncio.sleep(min(0.05 * attempt, 0.5))
        assert last is not None
        self._open_failed(last, "creating the bucket", time.monotonic() - start)

    async def close(self) -> None:
        """Close the connection (pending publishes are flushed first), or let the close
        the client's lost connection started end (``max_reconnect_attempts=0``), so
        that nothing of it is left running on the loop."""
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), self.timeout)
            except BaseException:
                pass
        closing = self._closing
        if closing is not None and not closing.done():
            # (asyncio.wait raises nothing of the task's; _retrieve reads its outcome.)
            await asyncio.wait({closing}, timeout=self.timeout)

    def _conn(self) -> _Client:
        nc = self.nc
        if nc is None:
            from aurora_storage.errors import RepositoryClosedError

            raise RepositoryClosedError(
                f"the NATS repository {self.config.describe()} is closed", backend="nats"
            )
        if nc.is_closed:
            raise self.closed_for_good(None)
        return nc


def reads(
    fn: Callable[Concatenate[_C, _P], Awaitable[_R]],
) -> Callable[Concatenate[_C, _P], Coroutine[Any, Any, _R]]:
    """A read of the bucket, made again while the server answers "stream not found"
    for a bucket that exists, or loses the read's consumer (a server starting or
    stopping), within ``timeout`` (see :meth:`NATSConnection.settle`)."""

    @functools.wraps(fn)
    async def read(self: _C, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        deadline: float | None = None
        while True:
            try:
                return await fn(self, *args, **kwargs)
            except (_BucketMissing, _ConsumerLost) as exc:
                if deadline is None:
                    deadline = asyncio.get_running_loop().time() + self.timeout
                await self.settle(exc, deadline, read=True)

    return read


def writes(
    fn: Callable[Concatenate[_C, _P], Awaitable[_R]],
) -> Callable[Concatenate[_C, _P], Coroutine[Any, Any, _R]]:
    """A write of the bucket: a "stream not found" answer is confirmed with the server
    before it is reported as a missing bucket, and never repeated (see
    :meth:`NATSConnection.settle`)."""

    @functools.wraps(fn)
    async def write(self: _C, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(self, *args, **kwargs)
        except (_BucketMissing, _ConsumerLost) as exc:
            deadline = asyncio.get_running_loop().time() + self.timeout
            await self.settle(exc, deadline, read=False)
            raise  # (settle raises for a write)

    return write
