"""A scan never copies into Python the value of a key outside its range (RocksDB, LMDB).

A scan used to read a chunk of records from the engine and cut it at the range's end
afterwards: RocksDB's reverse scans read backwards from the upper end (the binding has no
working lower bound), LMDB's scans in both directions read whole chunks. So the value
stored just outside the range - another aggregate's snapshot, another tenant's record,
however big - was fetched and thrown away: an empty ``items(reverse=True, limit=1,
prefix=...)`` next to a 100 MB value took 0.3-0.4 s and 100 MB. eventsourcing's
``select_events(id, desc=True, limit=1)`` on the snapshot store (every
``repository.get`` with snapshotting on) hit it.

Measured with tracemalloc, not time: the engine binding copying a value into a bytes
object is a Python allocation, so the peak during a scan stays far below the size of a
big value unless the scan reads one. The big values sit right before and right after
every range scanned (in the same tenant and in the neighbouring tenants), and the
results are compared with ``memory://`` holding the same records.
"""

from __future__ import annotations

import functools
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import aurora_storage

BIG = 4_000_000
#: Far below BIG, far above what a scan of a few small records allocates.
PEAK_LIMIT = BIG // 8

RECORDS: list[tuple[str, tuple[Any, ...], bytes]] = [
    ("L", ("z", 9), b"L" * BIG),  # the tenant before M: its last record is big
    ("M", ("a", 1), b"a" * BIG),
    ("M", ("c", 1), b"c1"),
    ("M", ("c", 2), b"c2"),
    ("M", ("e", 1), b"e" * BIG),
    ("M", ("g", 1), b"g1"),
    ("N", ("a", 0), b"N" * BIG),  # the tenant after M: its first record is big
]


def _scan(method: str, tenant: str, **kwargs: Any) -> Callable[[Any], Any]:
    """``list(repo.<method>(tenant, **kwargs))`` on the repository given."""

    def call(repo: Any) -> Any:
        return list(getattr(repo, method)(tenant, **kwargs))

    return call


#: (label, call on a repository): every scan's range holds small values only.
SCANS: list[tuple[str, Callable[[Any], Any]]] = []
for _label, _kw in [
    ("empty prefix between big values", {"prefix": ("b",)}),
    ("empty prefix before a big value", {"prefix": ("d",)}),
    ("prefix between big values", {"prefix": ("c",)}),
    ("start/stop between big values", {"start": ("b",), "stop": ("d",)}),
    ("start/stop, empty", {"start": ("b",), "stop": ("c",)}),
    ("start only", {"start": ("f",)}),
    ("stop only, empty", {"stop": ("a",)}),
]:
    for _reverse in (True, False):
        for _limit in (1, 2, None):
            for _method in ("items", "values", "keys"):
                SCANS.append(
                    (
                        f"{_method} {_label} reverse={_reverse} limit={_limit}",
                        _scan(_method, "M", **_kw, reverse=_reverse, limit=_limit),
                    )
                )
for _tenant in ("Mm", "K", "O"):  # empty tenants next to big values
    for _reverse in (True, False):
        for _limit in (1, None):
            for _method in ("items", "values", "keys"):
                SCANS.append(
                    (
                        f"{_method} empty tenant {_tenant} reverse={_reverse} limit={_limit}",
                        _scan(_method, _tenant, reverse=_reverse, limit=_limit),
                    )
                )
# Keys-only reads never read a value, not even in their range.
KEY_ONLY: list[tuple[str, Callable[[Any], Any]]] = [
    ("keys of a tenant of big values", lambda r: list(r.keys("M"))),
    ("keys reversed", lambda r: list(r.keys("M", reverse=True))),
    (
        "newest key of a big record",
        lambda r: list(r.keys("M", prefix=("e",), reverse=True, limit=1)),
    ),
    ("first key of a big record", lambda r: list(r.keys("M", prefix=("a",), limit=1))),
    ("count", lambda r: r.count("M")),
    ("count of a prefix", lambda r: r.count("M", prefix=("e",))),
    ("tenants", lambda r: list(r.tenants())),
]


def _peak(call: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        got = call()
        return got, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


ENGINES = ["rocksdb", "lmdb"]


@pytest.fixture(scope="module", params=ENGINES)
def repos(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Any]]:
    path = tmp_path_factory.mktemp(request.param)
    repo = aurora_storage.open(f"{request.param}://{path}/store?codec=raw")
    ref = aurora_storage.open("memory://?codec=raw")
    for tenant, key, value in RECORDS:
        repo.put(tenant, key, value)
        ref.put(tenant, key, value)
    try:
        yield repo, ref
    finally:
        repo.close()
        ref.close()


@pytest.mark.parametrize(("label", "scan"), SCANS + KEY_ONLY, ids=[s[0] for s in SCANS + KEY_ONLY])
def test_scan_reads_no_value_outside_its_range(
    repos: tuple[Any, Any], label: str, scan: Callable[[Any], Any]
) -> None:
    repo, ref = repos
    got, peak = _peak(lambda: scan(repo))
    assert got == scan(ref)
    assert peak < PEAK_LIMIT, f"{label}: {peak:,} bytes allocated (a big value read?)"


def test_rocksdb_scan_in_memtable_and_table_files(tmp_path: Path) -> None:
    """RocksDB: the same from table files (after a flush) as from the memtable (the
    module's store keeps its records in the memtable)."""
    repo: Any = aurora_storage.open(f"rocksdb://{tmp_path}/store?codec=raw")
    try:
        for tenant, key, value in RECORDS:
            repo.put(tenant, key, value)
        repo.flush(memtables=True)
        for label, scan in SCANS:
            _, peak = _peak(functools.partial(scan, repo))
            assert peak < PEAK_LIMIT, f"{label}: {peak:,} bytes allocated"
    finally:
        repo.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_eventsourcing_get_reads_no_neighbour_snapshot(tmp_path: Path, engine: str) -> None:
    """``repository.get(B)`` with snapshotting on asks the snapshot store for B's newest
    snapshot (``select_events(B, desc=True, limit=1)``); B has none, and aggregate A's
    big snapshot, stored just before, is not read."""
    app = _blob_store_class()(
        env={
            "PERSISTENCE_MODULE": "aurora_storage.eventsourcing",
            "AURORA_URL": f"{engine}://{tmp_path}/es?codec=msgpack",
        }
    )
    try:
        blob = _blob_class()
        a = blob._create(blob.Created, id=UUID(int=1), data="x" * BIG)
        app.save(a)
        app.take_snapshot(a.id)
        b = blob._create(blob.Created, id=UUID(int=2), data="small")
        app.save(b)
        got, peak = _peak(lambda: app.repository.get(b.id))
        assert got.data == "small"
        assert peak < PEAK_LIMIT, f"{peak:,} bytes allocated (A's snapshot read?)"
    finally:
        app.close()


@functools.cache
def _blob_class() -> Any:
    """The aggregate, made once: eventsourcing registers each class under its topic
    and refuses a second class of the same name (the test runs per engine)."""
    from eventsourcing.domain import Aggregate, event

    class Blob(Aggregate):
        @event("Created")
        def __init__(self, data: str) -> None:
            self.data = data

    return Blob


@functools.cache
def _blob_store_class() -> Any:
    from eventsourcing.application import Application

    class Store(Application[UUID]):
        is_snapshotting_enabled = True

    return Store
