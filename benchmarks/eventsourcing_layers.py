"""Where the CPU time of an eventsourcing save on aurora-storage goes, layer by layer.

Run from the repository root::

    .venv/bin/python benchmarks/eventsourcing_layers.py                 # LMDB and RocksDB
    .venv/bin/python benchmarks/eventsourcing_layers.py --engines lmdb --batches 10

The same saves (``--batch`` new events of one new aggregate, with notifications, no
fsync) are timed through each layer, interleaved in rounds on fresh stores, and the
median CPU time per event of this process is reported:

``sqlite``
    eventsourcing's own SQLite recorder (the reference of eventsourcing_bench.py).
``module``
    ``AuroraApplicationRecorder.insert_events`` (what ``Application.save()`` calls).
``direct``
    what the module hands the repository layer: one ``_eventstore.insert_append`` (the
    direct path: keys of one aggregate from one encoded head, one ``Backend.commit``)
    with the key parts and packed values made beforehand.
``core``
    the same write as a batch through the public repository API (``repo.batch()``,
    ``Batch.insert`` and ``Batch.append`` per event): what ``insert_append`` stands in
    for, and what a persistence module of your own would write.
``backend``
    ``Backend.commit`` of that batch, encoded beforehand: planning (the conditions and
    slot checks of ``plan_commit``), the checksummed writes and the engine's commit.
``engine``
    the floor (``_RawLMDB`` / ``_RawRocksDB`` of eventsourcing_bench.py): the same
    records and checks straight on the engine in the fewest Python operations.
``min``
    what SQLite does, on the engine, in the fewest Python operations (``_MinLMDB`` /
    ``_MinRocksDB`` below): the state stored once (under its notification id, not
    packed), one small index record ``(originator_id, version) -> id`` written
    create-only, the counter. Not a persistence module (it keeps no topic, and reading
    an aggregate would take a lookup per event); the floor of *any* layout.

The differences between neighbouring columns are the layers' own costs, except
``direct`` and ``core``: two ways to the same commit, side by side.

A second table puts the recorder in its application: ``Application.save()`` of one
aggregate with ``--batch`` new events (created, then tricks added), on SQLite and on
aurora, and eventsourcing's own cost inside it that both sides pay alike - ``mapper``:
``Mapper.to_stored_event`` (the JSON transcoder) of the same events. However fast a
recorder, a save costs at least the mapper and the rest of ``save()``: the last column
is the ratio SQLite's save would have against a recorder that cost nothing.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from eventsourcing.persistence import IntegrityError

import eventsourcing_bench as eb

LAYERS = ("sqlite", "module", "direct", "core", "backend", "engine", "min")
#: (``recorder-sqlite``: SQLite's insert_events alone, timed in the same interleaved rounds
#: as the saves, for the "free recorder" column)
APP = ("mapper", "save-sqlite", "save-aurora", "recorder-sqlite")


class _MinLMDB:
    """SQLite's work on LMDB (see the module docstring): per event the state once and a
    create-only index record, the counter, in one write transaction."""

    def __init__(self, directory: str) -> None:
        import lmdb

        path = os.path.join(directory, "min-lmdb")
        self.env = lmdb.open(path, map_size=1 << 30, sync=False, metasync=False)

    def insert_events(self, stored_events: list[Any]) -> list[int]:
        ids = []
        with self.env.begin(write=True) as txn:
            put = txn.put
            raw = txn.get(b"c")
            n = 0 if raw is None else int.from_bytes(raw, "big")
            for s in stored_events:
                n += 1
                nb = n.to_bytes(8, "big")
                index = b"e" + eb._hex(s.originator_id).encode()
                if not put(index + s.originator_version.to_bytes(8, "big"), nb, overwrite=False):
                    raise IntegrityError("exists")
                put(b"n" + nb, s.state)
                ids.append(n)
            put(b"c", n.to_bytes(8, "big"))
        return ids

    def close(self) -> None:
        self.env.close()


class _MinRocksDB:
    """SQLite's work on RocksDB (see :class:`_MinLMDB`): a read of each index key and
    of the counter, one WriteBatch, under a lock."""

    def __init__(self, directory: str) -> None:
        import threading

        import rocksdict

        self._rocksdict = rocksdict
        self.db = rocksdict.Rdict(
            os.path.join(directory, "min-rocksdb"), options=rocksdict.Options(raw_mode=True)
        )
        wo = rocksdict.WriteOptions()
        wo.sync = False
        self.db.set_write_options(wo)
        self.lock = threading.Lock()

    def insert_events(self, stored_events: list[Any]) -> list[int]:
        ids = []
        db = self.db
        with self.lock:
            raw = db.get(b"c")
            n = 0 if raw is None else int.from_bytes(raw, "big")
            wb = self._rocksdict.WriteBatch(raw_mode=True)
            for s in stored_events:
                n += 1
                nb = n.to_bytes(8, "big")
                k = (
                    b"e"
                    + eb._hex(s.originator_id).encode()
                    + s.originator_version.to_bytes(8, "big")
                )
                if db.get(k) is not None:
                    raise IntegrityError("exists")
                wb.put(k, nb)
                wb.put(b"n" + nb, s.state)
                ids.append(n)
            wb.put(b"c", n.to_bytes(8, "big"))
            db.write(wb)
        return ids

    def close(self) -> None:
        self.db.close()


def _timed(calls: list[Callable[[], Any]]) -> float:
    c0 = time.process_time()
    for call in calls:
        call()
    return time.process_time() - c0


def _round(engine: str, layer: str, directory: str, calls: int, batch: int) -> float:
    """CPU seconds of this process for ``calls`` saves through ``layer``."""
    work = eb._workload(calls + 1, batch)
    if layer == "min":
        floor = _MinLMDB(directory) if engine == "lmdb" else _MinRocksDB(directory)
        try:
            floor.insert_events(work[0])
            return _timed([partial(floor.insert_events, e) for e in work[1:]])
        finally:
            floor.close()
    if layer == "sqlite" or layer == "engine":
        name = "sqlite" if layer == "sqlite" else f"raw-{engine}"
        factory, recorder = eb._open(name, "nofsync", directory)
        try:
            recorder.insert_events(work[0])
            return _timed([partial(recorder.insert_events, e) for e in work[1:]])
        finally:
            factory.close()
    factory, recorder = eb._open(f"aurora-{engine}", "nofsync", directory)
    try:
        recorder.insert_events(work[0])
        if layer == "module":
            return _timed([partial(recorder.insert_events, e) for e in work[1:]])
        repo, tenant, pack = recorder._repo, recorder._tenant, recorder._pack
        # As the module builds them: one originator id text per save (a save's events
        # share it, and the batch reuses the encoding of its key elements).
        saves = []
        for events in work[1:]:
            oid = eb._hex(events[0].originator_id)
            saves.append(
                [
                    (
                        ("e", "events", oid, s.originator_version),
                        pack([s.topic, s.state]),
                        pack([oid, s.originator_version, s.topic, s.state]),
                    )
                    for s in events
                ]
            )
        if layer == "direct":
            from aurora_storage._eventstore import insert_append

            base = ("e", "events")  # one tuple object, as the module keeps it
            directs: list[Callable[[], Any]] = []
            for rows in saves:
                oid = rows[0][0][2]
                runs = [(oid, [key[3] for key, _, _ in rows])]
                values = [value for _, value, _ in rows]
                notes = [note for _, _, note in rows]
                directs.append(partial(insert_append, repo, tenant, base, runs, values, "n", notes))
            return _timed(directs)
        if layer == "core":

            def save(rows: list[tuple[Any, Any, Any]]) -> None:
                with repo.batch() as b:
                    for key, value, note in rows:
                        b.insert(tenant, key, value)
                        b.append(tenant, "n", note)

            return _timed([partial(save, r) for r in saves])
        backend = repo.backend
        planned = []
        for rows in saves:
            b = repo.batch()
            for key, value, note in rows:
                b.insert(tenant, key, value)
                b.append(tenant, "n", note)
            appends = [a for a, _, _ in b._appends.values()]
            planned.append((b._ops, b._conditions, appends))
            b.discard()
        return _timed([partial(backend.commit, o, conditions=c, appends=a) for o, c, a in planned])
    finally:
        factory.close()


@functools.cache
def _dog_app() -> type[Any]:
    """An eventsourcing application whose aggregate gets ``batch`` events per save."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Dog(Aggregate):
        @event("Registered")
        def __init__(self, name: str) -> None:
            self.name = name
            self.tricks: list[str] = []

        @event("TrickAdded")
        def add_trick(self, trick: str) -> None:
            self.tricks.append(trick)

    class Dogs(Application[Any]):
        def new_dog(self, batch: int) -> Any:
            dog = Dog("Fido")
            for i in range(batch - 1):
                dog.add_trick(f"trick {i}")
            return dog

    return Dogs


def _app_round(engine: str, kind: str, directory: str, calls: int, batch: int) -> float:
    """CPU seconds for ``calls`` saves of a new aggregate with ``batch`` events: the
    whole ``Application.save()`` on SQLite or aurora, or only eventsourcing's mapper."""
    dogs = _dog_app()
    if kind == "save-aurora":
        url = f"{engine}://{directory}/store?codec={eb._CODEC}&sync=false"
        env = {"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": url}
    else:
        eb._SQLITE_LEVEL = eb._SQLITE_NOFSYNC
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": os.path.join(directory, "events.sqlite"),
        }
    app = dogs(env=env)
    try:
        app.save(app.new_dog(batch))  # warm up
        if kind == "mapper":
            pending = [app.new_dog(batch).collect_events() for _ in range(calls)]
            to_stored = app.mapper.to_stored_event
            return _timed([partial(lambda es: [to_stored(e) for e in es], es) for es in pending])
        aggregates = [app.new_dog(batch) for _ in range(calls)]
        return _timed([partial(app.save, a) for a in aggregates])
    finally:
        app.close()


def _layer_round(engine: str, calls: int, batch: int, layer: str, directory: str) -> float:
    return _round(engine, layer, directory, calls, batch)


def _app_kind_round(engine: str, calls: int, batch: int, kind: str, directory: str) -> float:
    if kind == "recorder-sqlite":
        return _round(engine, "sqlite", directory, calls, batch)
    return _app_round(engine, kind, directory, calls, batch)


def _median_rounds(
    names: tuple[str, ...], rounds: int, run: Callable[[str, str], float], per: int
) -> dict[str, float]:
    """Median CPU us per event of each name, interleaved in rotating order."""
    got: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            directory = tempfile.mkdtemp(prefix=f"eslayers-{name}-")
            try:
                got[name].append(run(name, directory) / per * 1e6)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
    return {n: statistics.median(v) for n, v in got.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="lmdb,rocksdb")
    ap.add_argument("--batches", default="1,10")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    print(
        f"CPU us per event (median of {a.rounds} interleaved rounds, {a.calls} saves each, "
        f"no fsync, codec {eb._CODEC}); load average {os.getloadavg()[0]:.1f}"
    )
    engines = [e.strip() for e in a.engines.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    print("| engine | events per save | " + " | ".join(LAYERS) + " |")
    print("| --- | ---: |" + " ---: |" * len(LAYERS))
    for engine in engines:
        for batch in batches:
            med = _median_rounds(
                LAYERS, a.rounds, partial(_layer_round, engine, a.calls, batch), a.calls * batch
            )
            cells = " | ".join(f"{med[layer]:.1f}" for layer in LAYERS)
            print(f"| {engine} | {batch} | {cells} |")
    print()
    print(
        "Application.save() of a new aggregate, CPU us per event (mapper: eventsourcing's "
        "own share, paid by both)"
    )
    print(
        "| engine | events per save | mapper | save, SQLite | save, aurora | aurora vs SQLite "
        "| SQLite vs a free recorder |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for engine in engines:
        for batch in batches:
            med = _median_rounds(
                APP, a.rounds, partial(_app_kind_round, engine, a.calls, batch), a.calls * batch
            )
            # A recorder that cost nothing: SQLite's save without its recorder's cost,
            # both timed in the same rounds. Noise can put the recorder alone at or
            # above the whole save: no figure then (it once printed 86301584000x).
            rest = med["save-sqlite"] - med["recorder-sqlite"]
            free = f"{med['save-sqlite'] / rest:.2f}x" if rest > 0 else "n/a (noise)"
            print(
                f"| {engine} | {batch} | {med['mapper']:.1f} | {med['save-sqlite']:.1f} | "
                f"{med['save-aurora']:.1f} | {med['save-sqlite'] / med['save-aurora']:.2f}x | "
                f"{free} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
