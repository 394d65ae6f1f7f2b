"""Observability: OpenTelemetry spans and metrics, and slow-operation logs.

::

    import aurora_storage
    from aurora_storage.observability import instrument

    repo = instrument(aurora_storage.open("rocksdb:///var/data/events"))
    # or: aurora_storage.open("rocksdb:///var/data/events?otel=true")

A span per repository operation and batch (``get``, ``put``, ``write``, ``scan`` ...)
and the metrics ``db.client.operation.duration``, ``db.client.response.returned_rows``,
``aurora_storage.client.bytes_read``/``bytes_written`` and
``aurora_storage.client.errors``, following OpenTelemetry's semantic conventions for
database clients (``db.system.name``, ``db.namespace``, ``db.operation.name``,
``error.type``). Needs the ``otel`` extra (``pip install '.[otel]'`` from a clone) for
spans and metrics; slow-operation warnings need nothing. A repository that is not
instrumented pays nothing.

A tiered pair is instrumented tier by tier (each span names the engine that did the
work); an ``AsyncRepository`` through its sync twin. A refused condition (``insert`` of an
existing key, a stale ``compare_and_set``) and a cancelled write are expected outcomes,
not errors: no ``error.type``, span status UNSET, ``aurora_storage.outcome`` says which.
Telemetry that fails (a raising exporter) is logged, never raised: a call's result or
its own error is what the caller gets. See docs/observability.md.
"""

from __future__ import annotations

from ._instrument import InstrumentedBackend, Telemetry, instrument, uninstrument

__all__ = ["InstrumentedBackend", "Telemetry", "instrument", "uninstrument"]
