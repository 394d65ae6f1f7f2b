"""Key order over engines that do not keep it (``Capabilities.ordered_scans=False``).

The repository promises every scan in key order (ascending, or descending with
``reverse``), with ``limit`` taking the first keys *in that order*, whatever the engine.
An unordered engine (a hash table: gdbm, a dict, a key-value service without ranges)
still filters ``start <= key < stop``, but returns the keys in its own order. For such an
engine the repository reads through :func:`ordered_chunks`:

* each *pass* scans the remaining range once and keeps the :data:`PASS_RECORDS` smallest
  keys (largest when reversed) in a bounded heap, then hands them over sorted;
* the next pass starts after the last key handed over, so a range of ``N`` keys costs
  ``ceil(N / PASS_RECORDS)`` scans of what is left of it - about ``N * N / (2 *
  PASS_RECORDS)`` records read, ``O(N log PASS_RECORDS)`` comparisons per pass - and never
  holds more than :data:`PASS_RECORDS` records (with their values for an items scan);
* ``limit=k`` with ``k <= PASS_RECORDS`` is one pass; ``keys(..., limit=1)`` is one pass
  holding one key.

This is the documented cost of an unordered engine: a full range scan of 100,000 keys
reads about 550,000 records. Ordered engines never come here.

A scan of several passes is not a snapshot: a key written behind the current pass's
position while the scan runs is not seen, and one written ahead of it is (the same rule
as an ordered engine's chunked iterator without a snapshot).
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Iterator
from itertools import chain
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import Backend, Chunk

__all__ = ["PASS_RECORDS", "ordered_chunks", "scan_in_order"]

#: How many records one pass over an unordered engine holds (and hands over sorted).
PASS_RECORDS = 10_000

#: ``scan(start, stop)``: the engine's chunks of ``[start, stop)``, in its own order.
ChunkScan = Callable[[bytes, bytes], Iterator["Chunk"]]


def ordered_chunks(
    scan: ChunkScan,
    start: bytes,
    stop: bytes,
    *,
    reverse: bool = False,
    values: bool = True,
    limit: int | None = None,
    pass_records: int = PASS_RECORDS,
) -> Iterator[Chunk]:
    """The records of ``[start, stop)`` of an unordered engine, in key order.

    Args:
        scan: reads the engine's chunks of a range, in any order (values included when
            ``values``): usually ``functools.partial(backend.scan_chunks, values=...)``.
        start: the first key of the range (inclusive).
        stop: the end of the range (exclusive).
        reverse: descending key order.
        values: whether the chunks carry values (an items or values scan).
        limit: at most this many records in all (``None``: every record).
        pass_records: the most records one pass holds.

    Returns:
        Chunks (never empty) in key order; every chunk holds at most ``pass_records``
        records.

    Raises:
        Whatever the engine's scan raises (a
        :class:`~aurora_storage.errors.CorruptionError`, say), unchanged.
    """
    left = limit
    lo, hi = start, stop
    while left is None or left > 0:
        want = pass_records if left is None else min(pass_records, left)
        chunks = scan(lo, hi)
        vals: list[bytes] | None = None
        try:
            if values:
                pairs = chain.from_iterable(zip(ks, vs or (), strict=True) for ks, vs in chunks)
                # Keys are unique, so a pair comparison never reaches the values.
                picked = heapq.nlargest(want, pairs) if reverse else heapq.nsmallest(want, pairs)
                keys = [k for k, _ in picked]
                vals = [v for _, v in picked]
            else:
                every = chain.from_iterable(ks for ks, _ in chunks)
                keys = heapq.nlargest(want, every) if reverse else heapq.nsmallest(want, every)
        finally:
            # Released before the records are handed over: the caller may write.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not keys:
            return
        yield keys, vals
        if len(keys) < want:
            return
        if left is not None:
            left -= len(keys)
        if reverse:
            hi = keys[-1]  # the smallest handed over; stop is exclusive
        else:
            lo = keys[-1] + b"\x00"  # the next key after the largest handed over


def scan_in_order(
    backend: Backend, start: bytes, stop: bytes, *, reverse: bool = False, values: bool = True
) -> Iterator[Chunk]:
    """``backend.scan_chunks(start, stop, ...)`` in key order whatever the engine: as is on
    an ordered engine, through :func:`ordered_chunks` on an unordered one. For readers
    that need key order from a backend directly (the command line's ``export`` and
    ``copy``)."""
    if backend.capabilities.ordered_scans:
        return backend.scan_chunks(start, stop, reverse=reverse, values=values)
    return ordered_chunks(
        functools.partial(backend.scan_chunks, values=values),
        start,
        stop,
        reverse=reverse,
        values=values,
    )
