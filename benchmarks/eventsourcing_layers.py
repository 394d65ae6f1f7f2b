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
``core``
    the module's batch, built and committed through the repository API
    (``repo.batch()``, ``Batch.insert`` and ``Batch.append`` per event) with the keys
    and packed values made beforehand.
``backend``
    ``Backend.commit`` of that batch, encoded beforehand: planning (the conditions and
    slot checks of ``plan_commit``), the checksummed writes and the engine's commit.
``engine``
    the floor (``_RawLMDB`` / ``_RawRocksDB`` of eventsourcing_bench.py): the same
    records and checks straight on the engine in the fewest Python operations.

The differences between neighbouring rows are the layers' own costs.
"""

from __future__ import annotations

import argparse
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

import eventsourcing_bench as eb

LAYERS = ("sqlite", "module", "core", "backend", "engine")


def _timed(calls: list[Callable[[], Any]]) -> float:
    c0 = time.process_time()
    for call in calls:
        call()
    return time.process_time() - c0


def _round(engine: str, layer: str, directory: str, calls: int, batch: int) -> float:
    """CPU seconds of this process for ``calls`` saves through ``layer``."""
    work = eb._workload(calls + 1, batch)
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
        saves = [
            [
                (
                    ("e", "events", eb._hex(s.originator_id), s.originator_version),
                    pack([s.topic, s.state]),
                    pack([eb._hex(s.originator_id), s.originator_version, s.topic, s.state]),
                )
                for s in events
            ]
            for events in work[1:]
        ]
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
    print("| engine | events per save | " + " | ".join(LAYERS) + " |")
    print("| --- | ---: |" + " ---: |" * len(LAYERS))
    for engine in [e.strip() for e in a.engines.split(",")]:
        for batch in [int(b) for b in a.batches.split(",")]:
            per: dict[str, list[float]] = {layer: [] for layer in LAYERS}
            for r in range(a.rounds):
                order = LAYERS[r % len(LAYERS) :] + LAYERS[: r % len(LAYERS)]
                for layer in order:
                    directory = tempfile.mkdtemp(prefix=f"eslayers-{layer}-")
                    try:
                        cpu = _round(engine, layer, directory, a.calls, batch)
                    finally:
                        shutil.rmtree(directory, ignore_errors=True)
                    per[layer].append(cpu / (a.calls * batch) * 1e6)
            cells = " | ".join(f"{statistics.median(per[layer]):.1f}" for layer in LAYERS)
            print(f"| {engine} | {batch} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
