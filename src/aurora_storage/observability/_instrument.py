"""The instrumented backend: spans, metrics and slow-operation logs around each engine call.

Installed by :func:`instrument`, which puts an :class:`InstrumentedBackend` between a
repository and its backend. A repository that was never instrumented runs exactly the
code it runs without this module (nothing is checked per call), so "off" costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .._repository import _accepts_limit
from .._version import __version__
from ..backend import Backend, Capabilities, Chunk, Op

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
    ) -> T:
        t = self.t
        attrs = dict(self._attrs)
        attrs["db.operation.name"] = op
        span_attrs: dict[str, Any] = dict(attrs)
        if batch is not None:
            span_attrs["db.operation.batch.size"] = batch
        if t.include_tenant and key is not None:
            tenant = _tenant_of(key)
            if tenant is not None:
                span_attrs["aurora_storage.tenant"] = tenant
        span = None
        if t.tracer is not None:
            span = t.tracer.start_span(f"{op} {t.namespace}", kind=_CLIENT, attributes=span_attrs)
        start = time.perf_counter()
        try:
            result = fn()
        except BaseException as exc:
            elapsed = time.perf_counter() - start
            error = type(exc).__qualname__
            attrs["error.type"] = error
            if span is not None:
                span.set_attribute("error.type", error)
                span.record_exception(exc)
                span.set_status(_error_status(str(exc)))
                span.end()
            if t.errors is not None:
                t.errors.add(1, attrs)
            if t.duration is not None:
                t.duration.record(elapsed, attrs)
            raise
        elapsed = time.perf_counter() - start
        if t.duration is not None:
            t.duration.record(elapsed, attrs)
        if written and t.bytes_written is not None:
            t.bytes_written.add(written, attrs)
        if measure is not None:
            read = measure(result)
            if read and t.bytes_read is not None:
                t.bytes_read.add(read, attrs)
        if span is not None:
            span.end()
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
            "insert", lambda: self.inner.insert(key, value), key=key, written=len(key) + len(value)
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
        """See :meth:`Backend.write_iter` (the operations are counted as they pass)."""
        counted = [0, 0]
        first: list[bytes] = []

        def tally() -> Iterator[Op]:
            for k, v in ops:
                if not first:
                    first.append(k)
                counted[0] += 1
                counted[1] += len(k) + (len(v) if v is not None else 0)
                yield k, v

        n = self._call("write", lambda: self.inner.write_iter(tally()))
        if self.t.bytes_written is not None and counted[1]:
            attrs = dict(self._attrs)
            attrs["db.operation.name"] = "write"
            self.t.bytes_written.add(counted[1], attrs)
        return n

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`Backend.commit`."""
        return self._call("commit", lambda: self.inner.commit(*args, **kwargs))

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
        t = self.t
        attrs = dict(self._attrs)
        attrs["db.operation.name"] = "scan"
        span_attrs: dict[str, Any] = dict(attrs)
        if t.include_tenant:
            tenant = _tenant_of(start)
            if tenant is not None:
                span_attrs["aurora_storage.tenant"] = tenant
        span = None
        if t.tracer is not None:
            span = t.tracer.start_span(f"scan {t.namespace}", kind=_CLIENT, attributes=span_attrs)
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
            elapsed = time.perf_counter() - began
            if error is not None:
                attrs["error.type"] = type(error).__qualname__
                if t.errors is not None:
                    t.errors.add(1, attrs)
            if t.duration is not None:
                t.duration.record(elapsed, attrs)
            if t.rows is not None:
                t.rows.record(rows, attrs)
            if t.bytes_read is not None and read:
                t.bytes_read.add(read, attrs)
            if span is not None:
                span.set_attribute("db.response.returned_rows", rows)
                if error is not None:
                    span.set_attribute("error.type", type(error).__qualname__)
                    span.record_exception(error)
                    span.set_status(_error_status(str(error)))
                span.end()

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


def _telemetry(
    backend: Backend,
    url: Any,
    *,
    tracer_provider: Any,
    meter_provider: Any,
    include_tenant: bool,
    slow_seconds: float | None,
    spans: bool,
    metrics: bool,
) -> Telemetry:
    tracer = duration = rows = bytes_read = bytes_written = errors = None
    if spans or metrics:
        try:
            from opentelemetry import metrics as otel_metrics
            from opentelemetry import trace
        except ImportError as exc:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                "spans and metrics need OpenTelemetry: pip install 'aurora-storage[otel]' "
                "(or call instrument(repo, spans=False, metrics=False) for slow-operation "
                "logs only)"
            ) from exc
        if spans:
            tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        if metrics:
            meter = otel_metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
            duration = meter.create_histogram(
                "db.client.operation.duration",
                unit="s",
                description="Duration of database client operations.",
            )
            rows = meter.create_histogram(
                "db.client.response.returned_rows",
                unit="{row}",
                description="Rows returned by a scan.",
            )
            bytes_read = meter.create_counter(
                "aurora_storage.client.bytes_read", unit="By", description="Bytes read."
            )
            bytes_written = meter.create_counter(
                "aurora_storage.client.bytes_written", unit="By", description="Bytes written."
            )
            errors = meter.create_counter(
                "aurora_storage.client.errors",
                unit="{error}",
                description="Failed operations, by error.type.",
            )
    namespace = str(url) if url is not None else backend.describe()
    path = getattr(getattr(backend, "config", None), "path", None)
    if isinstance(path, str):
        namespace = path
    return Telemetry(
        tracer=tracer,
        duration=duration,
        rows=rows,
        bytes_read=bytes_read,
        bytes_written=bytes_written,
        errors=errors,
        system=backend.scheme,
        namespace=namespace,
        include_tenant=include_tenant,
        slow_seconds=slow_seconds,
    )


_BOUND = ("get", "put", "delete", "insert", "contains")


def _rebind(repo: Any, backend: Backend) -> None:
    repo._backend = backend
    for name in _BOUND:
        # The repository binds these once for its hot paths (see Repository.__init__).
        setattr(repo, f"_b{name}", getattr(backend, name))


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
        repo: an open repository (for a tiered one, each tier is instrumented).
        tracer_provider / meter_provider: OpenTelemetry providers; default: the global
            ones (``opentelemetry.trace.set_tracer_provider`` ...).
        include_tenant: add the tenant to spans as ``aurora_storage.tenant`` (off by
            default: tenant ids may be personal data, and never go on metrics).
        slow_ms: log a warning on logger ``aurora_storage.observability`` for calls
            slower than this many milliseconds; None (default): never.
        spans / metrics: turn either off.

    Raises:
        ConfigurationError: spans or metrics asked for without the ``otel`` extra.
        TypeError: ``repo`` is not a repository.
    """
    from .._repository import Repository

    tiers = [getattr(repo, n, None) for n in ("hot", "cold")]
    if all(isinstance(t, Repository) for t in tiers):
        for tier in tiers:
            instrument(
                tier,
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                include_tenant=include_tenant,
                slow_ms=slow_ms,
                spans=spans,
                metrics=metrics,
            )
        return repo
    if not isinstance(repo, Repository):
        raise TypeError(f"instrument() takes a Repository, got {type(repo).__name__}")
    backend = repo._backend
    if isinstance(backend, InstrumentedBackend):
        backend = backend.inner
    telemetry = _telemetry(
        backend,
        repo.url,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        include_tenant=include_tenant,
        slow_seconds=None if slow_ms is None else slow_ms / 1000.0,
        spans=spans,
        metrics=metrics,
    )
    _rebind(repo, InstrumentedBackend(backend, telemetry))
    return repo


def uninstrument(repo: T) -> T:
    """Undo :func:`instrument`: ``repo`` talks to its backend directly again."""
    from .._repository import Repository

    for tier in (getattr(repo, "hot", None), getattr(repo, "cold", None)):
        if isinstance(tier, Repository):
            uninstrument(tier)
    if isinstance(repo, Repository) and isinstance(repo._backend, InstrumentedBackend):
        _rebind(repo, repo._backend.inner)
    return repo
