"""The NATS plugin's own error types (light: imports no client).

They extend the core tree (:mod:`aurora_storage.errors`), so ``except StorageError``
still catches everything; the builtin mixed in is the one a caller would naturally
catch (``ConnectionError``, ``TimeoutError``, ``ValueError``).
"""

from __future__ import annotations

from aurora_storage import errors
from aurora_storage.errors import StorageError

__all__ = [
    "BatchTooLargeError",
    "NATSConnectionClosedError",
    "NATSConnectionError",
    "NATSTimeoutError",
    "ValueTooLargeError",
]


class NATSConnectionError(StorageError, ConnectionError):
    """No NATS server of the configured list could be reached (within
    ``connect_timeout``), the connection was lost and could not be re-established, or no
    JetStream server answered (no responders). The message names the server list
    (passwords hidden). Whether a write that raised this was applied is unknown: read it
    back, or repeat it (puts are idempotent; a compare-and-set reports a conflict)."""


class NATSConnectionClosedError(NATSConnectionError, errors.RepositoryClosedError):
    """The client stopped reconnecting (``max_reconnect_attempts`` used up, or the
    server closed the connection for a protocol error): the connection is closed for
    good and does not come back, so the repository can serve nothing more - close it and
    open it again once a server is reachable. A :class:`NATSConnectionError` (a
    ``ConnectionError``) and a :class:`~aurora_storage.errors.RepositoryClosedError`
    both, so that code retrying connection errors (an eventsourcing subscription does)
    can tell this one does not pass. With ``max_reconnect_attempts=-1`` (the default)
    it is never raised while the repository is open."""


class NATSTimeoutError(StorageError, TimeoutError):
    """A request to the JetStream server got no answer within ``timeout`` seconds. The
    message says what the client saw meanwhile: the connection lost (the client
    reconnecting, or reconnected since), or up all along (a leader election in a
    cluster, an overloaded server). Whether a write that raised this was applied is
    unknown (see :class:`NATSConnectionError`)."""


class BatchTooLargeError(errors.BatchTooLargeError):
    """An atomic batch holds more operations than one JetStream atomic publish allows
    (``max_batch``, the server's ``jetstream.limits.batch.max_msgs``, 1000 by default).
    Nothing was written; split the batch, or raise both limits together. The core's
    :class:`~aurora_storage.errors.BatchTooLargeError` (so ``except`` of that, of
    ``InvalidArgumentError`` or of ``ValueError`` catches it); the bucket states its
    bound as ``capabilities.max_batch_ops``.

    A batch with appends (``Batch.append``, the event store) also writes one internal
    record per sequence it appends to (the sequence's counter): those count against
    the limit too, so such a batch holds at most ``limit - internal`` operations.

    Attributes:
        size: the caller's operations in the batch (puts, deletes, inserts,
            compare-and-sets, appended records).
        internal: records the repository adds to them (the sequence counters).
        limit: the most messages one atomic publish may hold: ``max_batch``, or the
            server's own limit when the server refused the batch (-1 if it did not
            say).
    """

    def __init__(
        self, message: str, *, size: int, limit: int, internal: int = 0, backend: str = "nats"
    ) -> None:
        super().__init__(message, size=size, limit=limit, internal=internal, backend=backend)


class ValueTooLargeError(errors.ValueTooLargeError):
    """A value is larger than the bucket's ``max_value_size`` or the server's
    ``max_payload`` (1 MiB by default) allow for the write: the server counts a
    message's headers with its value, so an insert, a compare-and-set and a write in an
    atomic batch take a little less than a put (docs/backends/nats.md, "Value sizes").
    Refused before anything is sent; nothing was written.

    Attributes:
        size: the stored value's size in bytes.
        limit: the largest value that write takes.
        tenant, key: the record's (None for a record of the store's own).
    """
