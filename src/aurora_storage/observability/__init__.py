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
``error.type``). Needs the ``otel`` extra (``pip install 'aurora-storage[otel]'``) for
spans and metrics; slow-operation warnings need nothing. A repository that is not
instrumented pays nothing. See docs/observability.md.
"""

from __future__ import annotations

from ._instrument import InstrumentedBackend, Telemetry, instrument, uninstrument

__all__ = ["InstrumentedBackend", "Telemetry", "instrument", "uninstrument"]
