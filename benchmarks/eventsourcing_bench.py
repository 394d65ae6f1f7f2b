"""Events per second through aurora_storage.eventsourcing vs eventsourcing's own SQLite
recorder, on the same machine in the same run, at the same durability.

Run from the repository root::

    .venv/bin/python benchmarks/eventsourcing_bench.py           # the figures in docs
    .venv/bin/python benchmarks/eventsourcing_bench.py --quick   # smoke run (tests use it)

What is measured: ``ApplicationRecorder.insert_events`` - what an eventsourcing
``Application.save()`` calls - writing new aggregates' events *with* their notification
ids (the application sequence), one call per aggregate, ``--batch`` events per call
(1 and 10 by default). Each contender gets a fresh store in a temporary directory on
the same file system. The contenders run interleaved: every round runs each of them
once, in a rotating order, and the table reports the median over rounds with the
spread (min-max).

What each contender does per save (one ``insert_events`` call):

``sqlite``
    eventsourcing's SQLite recorder: ``BEGIN``, one ``INSERT`` per event into its
    events table (the rowid is the notification id; a primary-key index on
    ``(originator_id, originator_version)`` refuses a repeated version), ``COMMIT``.
``aurora-lmdb`` / ``aurora-rocksdb``
    this package's module: one atomic batch per save, with a create-only
    ``Batch.insert`` of each event under ``(originator_id, version)`` and a
    ``Batch.append`` of its notification record (the counter read and updated in the
    same commit): one LMDB write transaction; on RocksDB, the reads and one WriteBatch
    under the backend's write lock.
``raw-lmdb`` / ``raw-rocksdb`` (not run by default)
    the floor under any layer: the same records and checks straight on the engine in
    the fewest Python operations (see :class:`_RawLMDB`).

Durability, matched per mode:

``fsync``
    every commit is on disk before ``insert_events`` returns: SQLite in WAL mode with
    ``synchronous=FULL`` (SQLite's default in WAL mode, which eventsourcing keeps: one
    fsync of the WAL per commit, plus the database file's at each checkpoint); LMDB
    ``sync=true`` (two fdatasyncs per commit: the data pages, then the meta page that
    makes them current - LMDB's design, which needs the data durable before the meta
    page points at it); RocksDB ``sync=true`` (one fsync of its write-ahead log per
    write).
``nofsync``
    every commit is handed to the operating system but not synced, so it survives a
    process crash, not an OS crash: SQLite ``synchronous=OFF`` (no fsync at all, the
    fastest SQLite setting); LMDB ``sync=false`` (no fsync); RocksDB ``sync=false``
    (the log written, not synced).

aurora-storage stores use the ``raw`` codec by default (``--codec``): the module packs
each record with msgpack itself. With ``msgpack`` the codec packs the record lists and
unpacks each value once more to check it round-trips (about 20% more CPU per event).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import msgpack
from eventsourcing import sqlite as es_sqlite
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    StoredEvent,
)
from eventsourcing.utils import Environment

MODES = ("fsync", "nofsync")
_packb = msgpack.packb
#: The aurora stores' codec (``--codec``): ``raw`` by default, where the module packs its
#: records with msgpack itself; ``msgpack`` also checks each value round-trips.
_CODEC = "raw"
STATE = json.dumps(
    {"name": "Fido", "tricks": ["roll over", "play dead"], "owner": "x" * 120}
).encode()


#: PRAGMA synchronous of the SQLite contender now (set by _open, per mode).
_SQLITE_LEVEL: str | None = None
#: What "nofsync" means for SQLite (``--sqlite-nofsync``): OFF (never syncs: the fastest
#: SQLite setting, and what LMDB sync=false does) or NORMAL (WAL: syncs at checkpoints).
_SQLITE_NOFSYNC = "OFF"
_original_create = es_sqlite.SQLiteConnectionPool._create_connection


def _create_connection(self: Any) -> Any:
    # eventsourcing's SQLite module has no setting for PRAGMA synchronous: every pooled
    # connection gets the current contender's level as it is created (for the whole
    # run, not only at open: a connection the pool makes later is covered too).
    conn = _original_create(self)
    if _SQLITE_LEVEL is not None:
        conn._sqlite_conn.execute(f"PRAGMA synchronous={_SQLITE_LEVEL}")
    return conn


es_sqlite.SQLiteConnectionPool._create_connection = _create_connection  # type: ignore[method-assign]  # patched for the benchmark process

_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def sqlite_settings(recorder: Any) -> tuple[str, str]:
    """``(journal_mode, synchronous)`` of the SQLite recorder's pooled connection, read
    back through it: the benchmark checks each run measured the settings it names."""
    with recorder.datastore.transaction(commit=False) as c:
        c.execute("PRAGMA journal_mode")
        mode = str(c.fetchone()[0]).lower()
        c.execute("PRAGMA synchronous")
        level = _SYNC_NAMES.get(int(c.fetchone()[0]), "?")
    return mode, level


def _open(name: str, mode: str, directory: str) -> tuple[InfrastructureFactory[Any], Any]:
    """A factory and its application recorder for contender ``name`` in ``mode``."""
    sync = "true" if mode == "fsync" else "false"
    if name == "sqlite":
        global _SQLITE_LEVEL
        _SQLITE_LEVEL = "FULL" if mode == "fsync" else _SQLITE_NOFSYNC
        env = Environment(
            "Bench",
            {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": os.path.join(directory, "events.sqlite"),
            },
        )
        factory = InfrastructureFactory.construct(env)
        recorder = factory.application_recorder()
        return factory, recorder
    if name in ("raw-lmdb", "raw-rocksdb"):
        floor = _RawLMDB(directory, mode) if name == "raw-lmdb" else _RawRocksDB(directory, mode)
        return floor, floor  # type: ignore[return-value]  # duck-typed: insert_events, close
    if name == "aurora-lmdb":
        url = f"lmdb://{directory}/store?codec={_CODEC}&sync={sync}"
    elif name == "aurora-rocksdb":
        url = f"rocksdb://{directory}/store?codec={_CODEC}&sync={sync}"
    else:
        raise SystemExit(f"unknown contender {name!r}")
    env = Environment(
        "Bench", {"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": url}
    )
    factory = InfrastructureFactory.construct(env)
    return factory, factory.application_recorder()


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class _RawLMDB:
    """The floor under any layer over LMDB (not a persistence module): the records and
    checks the aurora module writes - each event create-only, its notification under the
    next number, the counter - in one write transaction per save, in the fewest Python
    operations (keys by bytes concatenation, values packed by msgpack, no checksums, no
    tenants, no error translation). Same file system, map size and sync flags."""

    def __init__(self, directory: str, mode: str) -> None:
        import lmdb

        sync = mode == "fsync"
        path = os.path.join(directory, "raw-lmdb")
        self.env = lmdb.open(path, map_size=1 << 30, sync=sync, metasync=sync)

    def insert_events(self, stored_events: list[StoredEvent]) -> list[int]:
        ids = []
        with self.env.begin(write=True) as txn:
            put = txn.put
            raw = txn.get(b"c")
            n = 0 if raw is None else int.from_bytes(raw, "big")
            for s in stored_events:
                oid = _hex(s.originator_id)
                v = s.originator_version
                if not put(
                    b"e" + oid.encode() + v.to_bytes(8, "big"),
                    _packb([s.topic, s.state]),
                    overwrite=False,
                ):
                    raise IntegrityError(f"{oid} {v} exists")
                n += 1
                put(b"n" + n.to_bytes(8, "big"), _packb([oid, v, s.topic, s.state]))
                ids.append(n)
            put(b"c", n.to_bytes(8, "big"))
        return ids

    def close(self) -> None:
        self.env.close()


class _RawRocksDB:
    """The floor under any layer over RocksDB (see :class:`_RawLMDB`): a read of each
    event key and of the counter, then one WriteBatch per save, under a lock (as the
    backend serialises conditional commits). ``sync`` as the mode says."""

    def __init__(self, directory: str, mode: str) -> None:
        import threading

        import rocksdict

        self._rocksdict = rocksdict
        self.db = rocksdict.Rdict(
            os.path.join(directory, "raw-rocksdb"), options=rocksdict.Options(raw_mode=True)
        )
        wo = rocksdict.WriteOptions()
        wo.sync = mode == "fsync"
        self.db.set_write_options(wo)
        self.lock = threading.Lock()

    def insert_events(self, stored_events: list[StoredEvent]) -> list[int]:
        ids = []
        db = self.db
        with self.lock:
            raw = db.get(b"c")
            n = 0 if raw is None else int.from_bytes(raw, "big")
            wb = self._rocksdict.WriteBatch(raw_mode=True)
            for s in stored_events:
                oid = _hex(s.originator_id)
                v = s.originator_version
                k = b"e" + oid.encode() + v.to_bytes(8, "big")
                if db.get(k) is not None:
                    raise IntegrityError(f"{oid} {v} exists")
                wb.put(k, _packb([s.topic, s.state]))
                n += 1
                wb.put(b"n" + n.to_bytes(8, "big"), _packb([oid, v, s.topic, s.state]))
                ids.append(n)
            wb.put(b"c", n.to_bytes(8, "big"))
            db.write(wb)
        return ids

    def close(self) -> None:
        self.db.close()


def _workload(calls: int, batch: int) -> list[list[StoredEvent]]:
    out = []
    for _ in range(calls):
        oid = uuid4()
        out.append(
            [
                StoredEvent(
                    originator_id=oid, originator_version=v, topic="bench:Event", state=STATE
                )
                for v in range(1, batch + 1)
            ]
        )
    return out


def _run_once(recorder: ApplicationRecorder, work: list[list[StoredEvent]]) -> tuple[float, float]:
    """Events per wall-clock second and per CPU second of this process (all threads)."""
    insert: Callable[..., Any] = recorder.insert_events
    cpu0, start = time.process_time(), time.perf_counter()
    for events in work:
        insert(events)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    n = sum(len(e) for e in work)
    return n / elapsed, n / max(cpu, 1e-9)


def bench(
    contenders: list[str], modes: list[str], batches: list[int], calls: int, rounds: int
) -> list[dict[str, Any]]:
    """Median events/s (and min, max) per (mode, batch, contender)."""
    rows = []
    for mode in modes:
        for batch in batches:
            rates: dict[str, list[float]] = {c: [] for c in contenders}
            cpu_rates: dict[str, list[float]] = {c: [] for c in contenders}
            for r in range(rounds):
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                for name in order:
                    directory = tempfile.mkdtemp(prefix=f"esbench-{name}-", dir=_workdir())
                    factory, recorder = _open(name, mode, directory)
                    try:
                        recorder.insert_events(_workload(1, batch)[0])  # warm up
                        wall, cpu = _run_once(recorder, _workload(calls, batch))
                        rates[name].append(wall)
                        cpu_rates[name].append(cpu)
                        if name == "sqlite":
                            # Measured what it says: WAL, and the mode's sync level.
                            got = sqlite_settings(recorder)
                            assert got == ("wal", _SQLITE_LEVEL), got
                    finally:
                        factory.close()
                        shutil.rmtree(directory, ignore_errors=True)
            for name in contenders:
                values = rates[name]
                rows.append(
                    {
                        "mode": mode,
                        "batch": batch,
                        "contender": name,
                        "events_per_s": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                        "events_per_cpu_s": statistics.median(cpu_rates[name]),
                        "rounds": len(values),
                    }
                )
    return rows


_WORKDIR: str | None = None


def _workdir() -> str:
    return _WORKDIR or tempfile.gettempdir()


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, with each contender's ratio to SQLite (wall clock,
    and per CPU second of the benchmark process: steadier on a busy machine)."""
    base = {(r["mode"], r["batch"]): r for r in rows if r["contender"] == "sqlite"}
    out = [
        "| durability | events per insert | contender | events/s (median) | min-max "
        "| vs SQLite | events per CPU-s | vs SQLite (CPU) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ref = base.get((r["mode"], r["batch"]))
        ratio = f"{r['events_per_s'] / ref['events_per_s']:.2f}x" if ref else "-"
        cpu_ratio = f"{r['events_per_cpu_s'] / ref['events_per_cpu_s']:.2f}x" if ref else "-"
        out.append(
            f"| {r['mode']} | {r['batch']} | {r['contender']} | {r['events_per_s']:,.0f} | "
            f"{r['min']:,.0f}-{r['max']:,.0f} | {ratio} | {r['events_per_cpu_s']:,.0f} | "
            f"{cpu_ratio} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    global _WORKDIR, _CODEC, _SQLITE_NOFSYNC
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--calls", type=int, help="insert_events calls per round (default 2000)")
    ap.add_argument("--rounds", type=int, help="rounds (default 5)")
    ap.add_argument("--batches", default="1,10", help="events per call, comma-separated")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--contenders",
        default="sqlite,aurora-lmdb,aurora-rocksdb",
        help="of sqlite, aurora-lmdb, aurora-rocksdb, raw-lmdb, raw-rocksdb",
    )
    ap.add_argument("--codec", default=_CODEC, help="the aurora stores' codec (raw, msgpack)")
    ap.add_argument(
        "--sqlite-nofsync",
        default=_SQLITE_NOFSYNC,
        choices=["OFF", "NORMAL"],
        help="SQLite's PRAGMA synchronous in the nofsync mode (default OFF, its fastest)",
    )
    ap.add_argument("--dir", help="directory for the stores (default: the temp dir)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    _WORKDIR = a.dir
    _CODEC = a.codec
    _SQLITE_NOFSYNC = a.sqlite_nofsync
    calls = a.calls or (20 if a.quick else 2000)
    rounds = a.rounds or (1 if a.quick else 5)
    contenders = [c.strip() for c in a.contenders.split(",") if c.strip()]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if unknown := set(modes) - set(MODES):
        raise SystemExit(f"unknown mode(s) {sorted(unknown)}; use {', '.join(MODES)}")
    batches = [int(b) for b in a.batches.split(",")]
    rows = bench(contenders, modes, batches, calls, rounds)
    print(
        f"eventsourcing insert_events, {calls} calls x {rounds} rounds, aurora codec "
        f"{_CODEC}; SQLite WAL, synchronous FULL (fsync) / {_SQLITE_NOFSYNC} (nofsync); "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"calls": calls, "rounds": rounds, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
