"""The instrumented backend: spans, metrics and slow-operation logs around each engine call.

Installed by :func:`instrument`, which puts an :class:`InstrumentedBackend` between a
repository and its backend. A repository that was never instrumented runs exactly the
code it runs without this module (nothing is checked per call), so "off" costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .._repository import _accepts_limit
from .._version import __version__
from ..backend import Append, Backend, Capabilities, Chunk, Condition, Op

__all__ = ["InstrumentedBackend", "Telemetry", "instrument", "uninstrument"]

logger = logging.getLogger("aurora_storage.observability")

T = TypeVar("T")

#: Instrumentation scope name (the tracer's and meter's).
SCOPE = "aurora_storage"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """What an instrumented repository reports, and where.

    Attributes:
        tracer: an OpenTelemetry tracer, or None for no spans.
        duration: the ``db.client.operation.duration`` histogram (seconds), or None.
        rows: the ``db.client.response.returned_rows`` histogram, or None.
        bytes_read: counter ``aurora_storage.client.bytes_read`` (By), or None.
        bytes_written: counter ``aurora_storage.client.bytes_written`` (By), or None.
        errors: counter ``aurora_storage.client.errors`` by ``error.type``, or None.
        system: ``db.system.name`` (the URL scheme).
        namespace: ``db.namespace`` (the store's path or URL, secrets hidden).
        include_tenant: add ``aurora_storage.tenant`` to spans (not to metrics:
            one series per tenant would explode their cardinality).
        slow_seconds: log a warning for calls that take longer; None: never.
    """

    tracer: Any
    duration: Any
    rows: Any
    bytes_read: Any
    bytes_written: Any
    errors: Any
    system: str
    namespace: str
    include_tenant: bool
    slow_seconds: float | None


def _tenant_of(key: bytes) -> str | None:
    from .._keys import NS_DATA, decode_tenant_key

    if key[:1] != NS_DATA:
        return None
    try:
        return decode_tenant_key(key)[0]
    except ValueError:
        return None


#: Span and metric attribute naming an operation's expected outcome other than doing what
#: it was asked (absent then): :data:`CONDITION_FAILED` or :data:`CANCELLED`. Neither is an
#: error: the span's status stays UNSET, no ``error.type``, not counted in
#: ``aurora_storage.client.errors`` (OpenTelemetry's "Recording errors": an instrumentation
#: with context MAY classify outcomes more precisely than "it raised").
OUTCOME = "aurora_storage.outcome"

#: A condition refused the operation and nothing was written: ``insert`` of an existing
#: key, a batch holding one, a stale ``compare_and_set`` (the caller gets
#: ``KeyExistsError`` / ``VersionConflictError``, the expected answer to a conditional
#: write).
CONDITION_FAILED = "condition_failed"

#: The async twin's caller cancelled the write before its commit point, and nothing was
#: written (the caller gets the cancellation).
CANCELLED = "cancelled"


def _outcome_of(exc: BaseException) -> str | None:
    """The expected outcome an exception from the engine stands for, or None (an error)."""
    from .._cancel import Aborted
    from ..errors import ConditionFailed

    if isinstance(exc, ConditionFailed):
        return CONDITION_FAILED
    if isinstance(exc, Aborted | asyncio.CancelledError):
        return CANCELLED
    return None


def _end_span(span: Any, exc: BaseException, outcome: str | None) -> None:
    """End the span of a call that raised ``exc``: an error (status ERROR, ``error.type``,
    the exception recorded), or an expected ``outcome`` (status left UNSET)."""
    if outcome is None:
        span.set_attribute("error.type", type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status(_error_status(str(exc)))
    else:
        span.set_attribute(OUTCOME, outcome)
    span.end()


class _Tally:
    """What a stream of batch operations held, counted as the engine consumes it."""

    __slots__ = ("count", "first", "size")

    def __init__(self) -> None:
        self.count = 0
        self.size = 0
        self.first: bytes | None = None

    def ops(self, ops: Iterable[Op]) -> Iterator[Op]:
        for k, v in ops:
            if self.first is None:
                self.first = k
            self.count += 1
            self.size += len(k) + (len(v) if v is not None else 0)
            yield k, v

    def values(self, values: Iterable[bytes]) -> Iterator[bytes]:
        for v in values:
            self.size += len(v)
            yield v


class InstrumentedBackend(Backend):
    """A backend that reports each call of the backend it wraps (see module docstring).

    Operation names (``db.operation.name``): ``get``, ``put``, ``delete``, ``insert``,
    ``contains``, ``get_many``, ``write`` (an atomic batch; ``db.operation.batch.size``),
    ``scan`` (``db.response.returned_rows``), ``count``, ``delete_range``, ``commit``.
    """

    def __init__(self, inner: Backend, telemetry: Telemetry) -> None:
        super().__init__()
        self.inner = inner
        self.t = telemetry
        self.scheme = inner.scheme
        self.streams_writes = inner.streams_writes
        self.capabilities: Capabilities = inner.capabilities
        self.marker_path = inner.marker_path
        self.store_id = inner.store_id
        self._inner_limit = _accepts_limit(inner)
        self._attrs = {"db.system.name": telemetry.system, "db.namespace": telemetry.namespace}
        #: kinds of telemetry failure already logged as a warning (see _telemetry_failed)
        self._reported: set[tuple[str, type[BaseException]]] = set()

    # ------------------------------------------------------------------ plumbing

    def __getattr__(self, name: str) -> Any:
        # Engine extras (checkpoint, compact, copy, verify, stats ...) reach the engine.
        return getattr(self.inner, name)

    def _call(
        self,
        op: str,
        fn: Callable[[], T],
        *,
        key: bytes | None = None,
        written: int = 0,
        batch: int | None = None,
        measure: Callable[[T], int] | None = None,
        refused: Callable[[T], bool] | None = None,
        tally: _Tally | None = None,
    ) -> T:
        """Run ``fn`` (the engine call), reporting it.

        Args:
            key: a key of the call (the tenant's, for ``include_tenant``).
            written: bytes the call writes (counted only if it succeeds).
            batch: operations in a batch (``db.operation.batch.size``).
            measure: bytes read, from the result.
            refused: whether the result says a condition refused the call (an insert of
                an existing key): then nothing was written (see :data:`CONDITION_FAILED`).
            tally: filled while ``fn`` consumes a stream of operations; its batch size,
                bytes and first key replace ``batch``, ``written`` and ``key``.

        Telemetry failures (a span processor or metric instrument that raises) are
        logged and never change what the caller sees: ``fn``'s result or error.
        """
        t = self.t
        attrs = dict(self._attrs)
        attrs["db.operation.name"] = op
        span = self._start_span(op, attrs, key, batch)
        start = time.perf_counter()
        try:
            result = fn()
        except BaseException as exc:
            elapsed = time.perf_counter() - start
            outcome = _outcome_of(exc)
            try:
                if span is not None:
                    if tally is not None:
                        # Not the batch's size: the stream was not consumed to its end.
                        self._late_span_attrs(span, tally, size=False)
                    _end_span(span, exc, outcome)
            except Exception as exc2:
                self._telemetry_failed("ending a span", exc2)
            try:
                if outcome is None:
                    attrs["error.type"] = type(exc).__qualname__
                    if t.errors is not None:
                        t.errors.add(1, attrs)
                else:
                    attrs[OUTCOME] = outcome
                if t.duration is not None:
                    t.duration.record(elapsed, attrs)
            except Exception as exc2:
                self._telemetry_failed("recording a metric", exc2)
            raise
        elapsed = time.perf_counter() - start
        if refused is not None and refused(result):
            attrs[OUTCOME] = CONDITION_FAILED
            written = 0  # refused: nothing was written
        elif tally is not None:
            written = tally.size
        if span is not None:
            try:
                if tally is not None:
                    self._late_span_attrs(span, tally)
                if OUTCOME in attrs:
                    span.set_attribute(OUTCOME, attrs[OUTCOME])
                span.end()
            except Exception as exc:
                self._telemetry_failed("ending a span", exc)
        try:
            if t.duration is not None:
                t.duration.record(elapsed, attrs)
            if written and t.bytes_written is not None:
                t.bytes_written.add(written, attrs)
            if measure is not None and t.bytes_read is not None:
                read = measure(result)
                if read:
                    t.bytes_read.add(read, attrs)
        except Exception as exc:
            self._telemetry_failed("recording a metric", exc)
        if t.slow_seconds is not None and elapsed > t.slow_seconds:
            logger.warning(
                "slow %s on %s %s: %.1f ms (threshold %.1f ms)",
                op,
                t.system,
                t.namespace,
                elapsed * 1000,
                t.slow_seconds * 1000,
            )
        return result

    def _start_span(
        self, op: str, attrs: dict[str, Any], key: bytes | None, batch: int | None
    ) -> Any:
        """A started client span of ``op``, or ``None``: no tracer, or the tracer failed
        (logged by :meth:`_telemetry_failed`, never raised)."""
        t = self.t
        if t.tracer is None:
            return None
        try:
            return t.tracer.start_span(
                f"{op} {t.namespace}", kind=_CLIENT, attributes=self._span_attrs(attrs, key, batch)
            )
        except Exception as exc:
            self._telemetry_failed("starting a span", exc)
            return None

    def _span_attrs(
        self, attrs: dict[str, Any], key: bytes | None, batch: int | None
    ) -> dict[str, Any]:
        span_attrs: dict[str, Any] = dict(attrs)
        if batch is not None:
            span_attrs["db.operation.batch.size"] = batch
        if self.t.include_tenant and key is not None:
            tenant = _tenant_of(key)
            if tenant is not None:
                span_attrs["aurora_storage.tenant"] = tenant
        return span_attrs

    def _late_span_attrs(self, span: Any, tally: _Tally, *, size: bool = True) -> None:
        """A streamed batch's size (``size``) and tenant, known once the stream was
        consumed."""
        if size:
            span.set_attribute("db.operation.batch.size", tally.count)
        if self.t.include_tenant and tally.first is not None:
            tenant = _tenant_of(tally.first)
            if tenant is not None:
                span.set_attribute("aurora_storage.tenant", tenant)

    def _telemetry_failed(self, doing: str, exc: Exception) -> None:
        """Log a failure of the telemetry itself (never raised: the operation's own
        outcome is what the caller gets). A WARNING the first time for each kind (what
        failed, and its exception class) on this repository, DEBUG after that, so a
        broken exporter does not log once per call."""
        kind = (doing, type(exc))
        if kind in self._reported:
            logger.debug("telemetry failed again %s: %s: %s", doing, type(exc).__name__, exc)
            return
        self._reported.add(kind)
        logger.warning(
            "telemetry failed %s for %s %s: %s: %s; the operation itself is unaffected "
            "(its result or its own error reaches the caller); further failures of this "
            "kind are logged at DEBUG",
            doing,
            self.t.system,
            self.t.namespace,
            type(exc).__name__,
            exc,
        )

    # ------------------------------------------------------------------ point ops

    def get(self, key: bytes) -> bytes | None:
        """See :meth:`Backend.get`."""
        return self._call("get", lambda: self.inner.get(key), key=key, measure=_len_or_zero)

    def put(self, key: bytes, value: bytes) -> None:
        """See :meth:`Backend.put`."""
        self._call(
            "put", lambda: self.inner.put(key, value), key=key, written=len(key) + len(value)
        )

    def delete(self, key: bytes) -> bool:
        """See :meth:`Backend.delete`."""
        return self._call("delete", lambda: self.inner.delete(key), key=key)

    def insert(self, key: bytes, value: bytes) -> bool:
        """See :meth:`Backend.insert`."""
        return self._call(
            "insert",
            lambda: self.inner.insert(key, value),
            key=key,
            written=len(key) + len(value),
            refused=operator.not_,
        )

    def contains(self, key: bytes) -> bool:
        """See :meth:`Backend.contains`."""
        return self._call("contains", lambda: self.inner.contains(key), key=key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """See :meth:`Backend.get_many`."""
        return self._call(
            "get_many",
            lambda: self.inner.get_many(keys),
            key=keys[0] if keys else None,
            batch=len(keys),
            measure=lambda vals: sum(len(v) for v in vals if v is not None),
        )

    # ------------------------------------------------------------------ batches

    def write(self, ops: Sequence[Op]) -> None:
        """See :meth:`Backend.write`."""
        size = sum(len(k) + (len(v) if v is not None else 0) for k, v in ops)
        self._call(
            "write",
            lambda: self.inner.write(ops),
            key=ops[0][0] if ops else None,
            written=size,
            batch=len(ops),
        )

    def write_iter(self, ops: Iterable[Op]) -> int:
        """See :meth:`Backend.write_iter` (the operations are counted as they pass: the
        span gets the batch's size and tenant when the engine has consumed them)."""
        tally = _Tally()
        return self._call("write", lambda: self.inner.write_iter(tally.ops(ops)), tally=tally)

    def write_puts(self, keys: Sequence[bytes], values: Iterable[bytes]) -> int:
        """See :meth:`Backend.write_puts` (the engine's own batch call; the values'
        bytes are counted as it consumes them)."""
        tally = _Tally()
        tally.count = len(keys)
        tally.first = keys[0] if keys else None
        tally.size = sum(map(len, keys))
        return self._call(
            "write", lambda: self.inner.write_puts(keys, tally.values(values)), tally=tally
        )

    def commit(
        self,
        ops: Sequence[Op],
        *,
        conditions: Sequence[Condition] = (),
        appends: Sequence[Append] = (),
    ) -> list[int]:
        """See :meth:`Backend.commit` (``db.operation.batch.size``: its operations and
        appended records; a refused condition is :data:`CONDITION_FAILED`, not an
        error)."""
        size = sum(len(k) + (len(v) if v is not None else 0) for k, v in ops)
        records = 0
        for a in appends:
            records += len(a.values)
            size += sum(map(len, a.values))
        first = ops[0][0] if ops else (appends[0].counter if appends else None)
        # Only what the caller passed: an engine's override may predate ``appends``.
        extra: dict[str, Any] = {}
        if conditions:
            extra["conditions"] = conditions
        if appends:
            extra["appends"] = appends
        return self._call(
            "commit",
            lambda: self.inner.commit(ops, **extra),
            key=first,
            written=size,
            batch=len(ops) + records,
        )

    # ------------------------------------------------------------------ scans

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """See :meth:`Backend.scan`."""
        for keys, vals in self.scan_chunks(start, stop, reverse=reverse):
            yield from zip(keys, vals or [], strict=True)

    def scan_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """See :meth:`Backend.scan_keys`."""
        for keys, _ in self.scan_chunks(start, stop, reverse=reverse, values=False):
            yield from keys

    def scan_chunks(
        self,
        start: bytes,
        stop: bytes,
        *,
        reverse: bool = False,
        values: bool = True,
        limit: int | None = None,
    ) -> Iterator[Chunk]:
        """See :meth:`Backend.scan_chunks`: one span for the whole scan, ended when the
        scan ends (exhausted, closed or failed), with the rows it returned."""
        attrs = dict(self._attrs)
        attrs["db.operation.name"] = "scan"
        span = self._start_span("scan", attrs, start, None)
        rows = read = 0
        began = time.perf_counter()
        if self._inner_limit:
            inner = self.inner.scan_chunks(start, stop, reverse=reverse, values=values, limit=limit)
        else:  # an older override without limit: the repository cuts the stream
            inner = self.inner.scan_chunks(start, stop, reverse=reverse, values=values)
        error: BaseException | None = None
        try:
            for keys, vals in inner:
                rows += len(keys)
                read += sum(map(len, keys)) + (sum(map(len, vals)) if vals else 0)
                yield keys, vals
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
            self._scanned(span, attrs, error, rows, read, time.perf_counter() - began)

    def _scanned(
        self,
        span: Any,
        attrs: dict[str, Any],
        error: BaseException | None,
        rows: int,
        read: int,
        elapsed: float,
    ) -> None:
        """Report a scan that ended (see :meth:`scan_chunks`); telemetry failures are
        logged, never raised (the scan's own outcome is what the caller gets)."""
        t = self.t
        outcome = None if error is None else _outcome_of(error)
        if span is not None:
            try:
                span.set_attribute("db.response.returned_rows", rows)
                if error is not None:
                    _end_span(span, error, outcome)
                else:
                    span.end()
            except Exception as exc:
                self._telemetry_failed("ending a span", exc)
        try:
            if error is not None:
                if outcome is None:
                    attrs["error.type"] = type(error).__qualname__
                    if t.errors is not None:
                        t.errors.add(1, attrs)
                else:
                    attrs[OUTCOME] = outcome
            if t.duration is not None:
                t.duration.record(elapsed, attrs)
            if t.rows is not None:
                t.rows.record(rows, attrs)
            if t.bytes_read is not None and read:
                t.bytes_read.add(read, attrs)
        except Exception as exc:
            self._telemetry_failed("recording a metric", exc)

    def count_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.count_range`."""
        return self._call("count", lambda: self.inner.count_range(start, stop), key=start)

    def first_key(self, start: bytes, stop: bytes) -> bytes | None:
        """See :meth:`Backend.first_key`."""
        return self._call("first_key", lambda: self.inner.first_key(start, stop), key=start)

    def last_key(self, start: bytes, stop: bytes) -> bytes | None:
        """See :meth:`Backend.last_key` (the newest-key lookup stays one engine seek)."""
        return self._call("last_key", lambda: self.inner.last_key(start, stop), key=start)

    def delete_range(self, start: bytes, stop: bytes) -> int:
        """See :meth:`Backend.delete_range`."""
        return self._call("delete_range", lambda: self.inner.delete_range(start, stop), key=start)

    # ------------------------------------------------------------------ the rest

    def get_versioned(self, key: bytes) -> tuple[bytes, bytes] | None:
        """See :meth:`Backend.get_versioned`."""
        return self._call("get", lambda: self.inner.get_versioned(key), key=key)

    def version_of(self, value: bytes) -> bytes:
        """See :meth:`Backend.version_of`."""
        return self.inner.version_of(value)

    def change_feed(self) -> Any:
        """See :meth:`Backend.change_feed`."""
        return self.inner.change_feed()

    def flush(self) -> None:
        """See :meth:`Backend.flush`."""
        self._call("flush", self.inner.flush)

    def stats(self) -> dict[str, Any]:
        """See :meth:`Backend.stats`."""
        return self.inner.stats()

    def describe(self) -> str:
        """See :meth:`Backend.describe`."""
        return self.inner.describe()

    def close(self) -> None:
        """See :meth:`Backend.close`."""
        self.inner.close()


def _len_or_zero(value: bytes | None) -> int:
    return 0 if value is None else len(value)


def _error_status(description: str) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, description)


try:
    from opentelemetry.trace import SpanKind

    _CLIENT: Any = SpanKind.CLIENT
except ImportError:  # the otel extra is not installed: no spans are made anyway
    _CLIENT = None


@dataclass(frozen=True, slots=True)
class _Instruments:
    """The tracer and metric instruments an :func:`instrument` call made (None: off,
    or its provider failed)."""

    tracer: Any = None
    duration: Any = None
    rows: Any = None
    bytes_read: Any = None
    bytes_written: Any = None
    errors: Any = None


def _make_instruments(
    *, tracer_provider: Any, meter_provider: Any, spans: bool, metrics: bool, what: str
) -> _Instruments:
    """The tracer and metric instruments from the providers (the global ones when None).

    A provider that raises (a broken SDK or exporter setup: ``get_tracer``,
    ``get_meter``, ``create_histogram`` ...) is a telemetry failure like any other (see
    :meth:`InstrumentedBackend._telemetry_failed`): logged as a WARNING on
    ``aurora_storage.observability`` with the provider's error, never raised. That part
    (spans, or all metrics) is off and the other is kept; ``what`` names the repository
    in the log.

    Raises:
        ConfigurationError: spans or metrics asked for without the ``otel`` extra (a
            setup the caller fixes, not a telemetry failure).
    """
    if not (spans or metrics):
        return _Instruments()
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace
    except ImportError as exc:
        from .._install import extra_hint
        from ..errors import ConfigurationError

        raise ConfigurationError(
            f"spans and metrics need OpenTelemetry: {extra_hint('otel')} "
            "(or call instrument(repo, spans=False, metrics=False) for slow-operation "
            "logs only)"
        ) from exc
    tracer = None
    if spans:
        try:
            tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        except Exception as exc:
            _setup_failed("tracer provider", "spans", what, exc)
    if not metrics:
        return _Instruments(tracer)
    try:
        meter = otel_metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        return _Instruments(
            tracer,
            duration=meter.create_histogram(
                "db.client.operation.duration",
                unit="s",
                description="Duration of database client operations.",
            ),
            rows=meter.create_histogram(
                "db.client.response.returned_rows",
                unit="{row}",
                description="Rows returned by a scan.",
            ),
            bytes_read=meter.create_counter(
                "aurora_storage.client.bytes_read", unit="By", description="Bytes read."
            ),
            bytes_written=meter.create_counter(
                "aurora_storage.client.bytes_written", unit="By", description="Bytes written."
            ),
            errors=meter.create_counter(
                "aurora_storage.client.errors",
                unit="{error}",
                description="Failed operations, by error.type.",
            ),
        )
    except Exception as exc:
        # All metrics or none: a partial set (durations without errors, say) would
        # read as a healthy store.
        _setup_failed("meter provider", "metrics", what, exc)
        return _Instruments(tracer)


def _setup_failed(provider: str, part: str, what: str, exc: Exception) -> None:
    """Log that ``provider`` failed while :func:`instrument` set up ``part``."""
    logger.warning(
        "telemetry could not be set up for %s: the OpenTelemetry %s failed (%s: %s); "
        "the repository works, without %s. Check the OpenTelemetry SDK setup (its "
        "providers and exporters), then open the repository again (or call instrument())",
        what,
        provider,
        type(exc).__name__,
        exc,
        part,
    )


def _telemetry(
    backend: Backend,
    url: Any,
    made: _Instruments,
    *,
    include_tenant: bool,
    slow_seconds: float | None,
) -> Telemetry:
    return Telemetry(
        tracer=made.tracer,
        duration=made.duration,
        rows=made.rows,
        bytes_read=made.bytes_read,
        bytes_written=made.bytes_written,
        errors=made.errors,
        system=backend.scheme,
        namespace=_namespace(backend, url),
        include_tenant=include_tenant,
        slow_seconds=slow_seconds,
    )


def _namespace(backend: Backend, url: Any) -> str:
    """``db.namespace``: the store's path, else its URL (secrets hidden), else the
    backend's own description."""
    path = getattr(getattr(backend, "config", None), "path", None)
    if isinstance(path, str):
        return path
    return str(url) if url is not None else backend.describe()


_BOUND = ("get", "put", "delete", "insert", "contains")


def _rebind(repo: Any, backend: Backend) -> None:
    repo._backend = backend
    for name in _BOUND:
        # The repository binds these once for its hot paths (see Repository.__init__).
        setattr(repo, f"_b{name}", getattr(backend, name))


def _target(repo: Any, call: str) -> tuple[Any, list[Any]]:
    """The sync repositories ``call`` works on for ``repo``: ``(repo's sync form, the
    repositories whose backends are wrapped)`` - a tiered pair's two tiers (the pair's own
    calls read its tiers' backends on each use, see ``tiered._core.Pair.hb``), a plain
    repository itself; an :class:`~aurora_storage.AsyncRepository` stands for its sync
    twin.

    Raises:
        InvalidArgumentError: ``repo`` is not a repository.
    """
    from .._async import AsyncRepository
    from .._repository import Repository
    from ..errors import InvalidArgumentError

    sync = repo.sync if isinstance(repo, AsyncRepository) else repo
    if not isinstance(sync, Repository):
        raise InvalidArgumentError(
            f"{call}() takes a Repository or an AsyncRepository (what aurora_storage.open "
            f"or open_async returns), got {type(repo).__name__}"
        )
    tiers = [getattr(sync, n, None) for n in ("hot", "cold")]
    if all(isinstance(t, Repository) for t in tiers):
        return sync, tiers
    return sync, [sync]


def instrument(
    repo: T,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    include_tenant: bool = False,
    slow_ms: float | None = None,
    spans: bool = True,
    metrics: bool = True,
) -> T:
    """Report what ``repo`` does: a span per operation and batch, metrics, and a
    warning log for slow calls. Returns ``repo`` itself, instrumented in place.

    Args:
        repo: an open repository. A tiered one is instrumented tier by tier (every
            operation of the pair on a tier is reported with that tier's engine); an
            :class:`~aurora_storage.AsyncRepository` by instrumenting its sync twin
            (``repo.sync``), which every async twin of it then reports through.
            Instrumenting again replaces the earlier settings (one span per call).
        tracer_provider / meter_provider: OpenTelemetry providers; default: the global
            ones (``opentelemetry.trace.set_tracer_provider`` ...).
        include_tenant: add the tenant to spans as ``aurora_storage.tenant`` (off by
            default: tenant ids may be personal data, and never go on metrics).
        slow_ms: log a warning on logger ``aurora_storage.observability`` for calls
            slower than this many milliseconds; None (default): never.
        spans / metrics: turn either off.

    A provider that raises while the tracer or the metric instruments are made (a
    broken SDK or exporter setup, a ``get_meter`` that fails) is a telemetry failure
    like any other: logged once as a WARNING on logger ``aurora_storage.observability``
    with the provider's error, never raised (the project's rule, see
    docs/observability.md); ``repo`` is returned instrumented with what could be set
    up (spans without metrics, or the reverse, or slow-operation logs only).

    Raises:
        ConfigurationError: spans or metrics asked for without the ``otel`` extra.
        InvalidArgumentError: ``repo`` is not a repository (also a ``TypeError``).
    """
    sync, targets = _target(repo, "instrument")
    inners = [
        t._backend.inner if isinstance(t._backend, InstrumentedBackend) else t._backend
        for t in targets
    ]
    # Once for all tiers: one provider call, one log line when it fails.
    made = _make_instruments(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        spans=spans,
        metrics=metrics,
        what=f"{inners[0].scheme} {_namespace(inners[0], sync.url)}"
        if len(targets) == 1
        else f"the tiered pair {sync.url or ''}".rstrip(),
    )
    for target, backend in zip(targets, inners, strict=True):
        telemetry = _telemetry(
            backend,
            target.url,
            made,
            include_tenant=include_tenant,
            slow_seconds=None if slow_ms is None else slow_ms / 1000.0,
        )
        _rebind(target, InstrumentedBackend(backend, telemetry))
    return repo


def uninstrument(repo: T) -> T:
    """Undo :func:`instrument`: ``repo`` (each tier of a tiered one; the sync twin of an
    :class:`~aurora_storage.AsyncRepository`) talks to its backend directly again.
    Returns ``repo``; a repository that is not instrumented is left as it is.

    Raises:
        InvalidArgumentError: ``repo`` is not a repository (also a ``TypeError``).
    """
    _, targets = _target(repo, "uninstrument")
    for target in targets:
        if isinstance(target._backend, InstrumentedBackend):
            _rebind(target, target._backend.inner)
    return repo
