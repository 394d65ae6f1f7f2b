"""Point operations and batches timed as many short interleaved trials (not a test).

    python benchmarks/trials.py [--trials 600] [--engines rocksdb,lmdb]

``run.py`` compares medians of a few long rounds, which on a shared host swing by 20-50 %
from round to round. This script separates the structural cost from that noise: the same
100k-event store as ``run.py`` (str keys, ~200-byte orjson values), then hundreds of
short trials (500 gets, or one 1,000-item batch) alternating between aurora-storage and
the raw engine, each side on its own sample of keys (so neither reads what the other
just pulled into the CPU caches), and reports the minimum and the tenth percentile of
each side: the fastest trials are the ones no other process disturbed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import orjson

import aurora_storage
from aurora_storage_rocksdb import RocksDBBackend

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workload import TENANT, dataset, event, key_of  # noqa: E402

N = 100_000
GETS = 500


def _stats(xs: list[float], per: int) -> tuple[float, float]:
    xs = sorted(xs)
    return xs[0] / per * 1e6, xs[len(xs) // 10] / per * 1e6


def _fw_get(repo: Any) -> Callable[[list[str]], None]:
    """The aurora-storage side of a get comparison, bound to ``repo``."""

    def run(keys: list[str]) -> None:
        get = repo.get
        for k in keys:
            get(TENANT, k)

    return run


def _compare(
    name: str, sides: dict[str, Callable[[Any], None]], inputs: list[Any], per: int, trials: int
) -> None:
    # Each side gets its own input of the trial (no side reads records the other just
    # pulled into the CPU caches), and the side that goes first alternates.
    names = list(sides)
    times: dict[str, list[float]] = {side: [] for side in names}
    for t in range(trials):
        order = names if t % 2 == 0 else names[::-1]
        for side in order:
            arg = inputs[(2 * t + names.index(side)) % len(inputs)]
            t0 = time.perf_counter()
            sides[side](arg)
            times[side].append(time.perf_counter() - t0)
    (fw_min, fw_p10), (raw_min, raw_p10) = (_stats(times[s], per) for s in names)
    print(
        f"{name:<22}{fw_min:>9.2f}{fw_p10:>9.2f}{raw_min:>9.2f}{raw_p10:>9.2f}"
        f"{fw_min / raw_min:>8.2f}{fw_p10 / raw_p10:>8.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=600)
    ap.add_argument("--engines", default="rocksdb,lmdb")
    a = ap.parse_args()
    engines = {e.strip() for e in a.engines.split(",")}
    work = tempfile.mkdtemp(prefix="aurora-trials-")
    data = dataset(N)
    rnd = random.Random(5)
    pool = [event(i, random.Random(i)) for i in range(997)]
    hits = [[key_of(rnd.randrange(N)) for _ in range(GETS)] for _ in range(41)]
    misses = [[f"miss-{t:02d}-{i:06d}" for i in range(GETS)] for t in range(41)]
    batches = [
        [(key_of(rnd.randrange(N)), pool[(i + j) % 997]) for j in range(1000)] for i in range(21)
    ]
    dumps, loads = orjson.dumps, orjson.loads
    print("us per operation: minimum and tenth percentile of the trials")
    print(
        f"{'operation':<22}{'fw min':>9}{'fw p10':>9}{'raw min':>9}{'raw p10':>9}"
        f"{'min':>8}{'p10':>8}"
    )
    try:
        if "rocksdb" in engines:
            import rocksdict

            repo = aurora_storage.open(f"rocksdb://{work}/aurora-rocksdb")
            for i in range(0, N, 10_000):
                repo.put_many(TENANT, data[i : i + 10_000])
            # The raw side reads and writes the same records through the same engine
            # instance (same options, memtable and files): the same key bytes, and
            # values that are plain orjson in a RocksDB store.
            backend = repo.backend
            assert isinstance(backend, RocksDBBackend)
            raw = backend._db
            prefix = repo._prefix(TENANT) + b"\x20"

            def raw_get(keys: list[str]) -> None:
                get = raw.get
                for k in keys:
                    r = get(prefix + k.encode() + b"\x00")
                    if r is not None:
                        loads(r)

            def fw_batch(items: list[tuple[str, Any]]) -> None:
                repo.put_many(TENANT, items)

            def raw_batch(items: list[tuple[str, Any]]) -> None:
                wb = rocksdict.WriteBatch(raw_mode=True)
                put = wb.put
                for k, v in items:
                    put(prefix + k.encode() + b"\x00", dumps(v))
                raw.write(wb)

            sides = {"fw": _fw_get(repo), "raw": raw_get}
            _compare("rocksdb get (hit)", sides, hits, GETS, a.trials)
            _compare("rocksdb get (miss)", sides, misses, GETS, a.trials)
            _compare(
                "rocksdb put_many item",
                {"fw": fw_batch, "raw": raw_batch},
                batches,
                1000,
                a.trials // 3,
            )
            repo.close()
        if "lmdb" in engines:
            import lmdb

            # LMDB values carry the plugin's CRC trailer, so the raw side gets its own
            # environment with the same settings and the same key bytes.
            repo = aurora_storage.open(f"lmdb://{work}/aurora-lmdb?map_size=1GiB")
            env = lmdb.open(f"{work}/raw-lmdb", map_size=1 << 30, max_dbs=0)
            prefix = repo._prefix(TENANT) + b"\x20"
            for i in range(0, N, 10_000):
                repo.put_many(TENANT, data[i : i + 10_000])
                with env.begin(write=True) as txn:
                    for k, v in data[i : i + 10_000]:
                        txn.put(prefix + k.encode() + b"\x00", dumps(v))

            def lraw_get(keys: list[str]) -> None:
                begin = env.begin
                for k in keys:
                    with begin() as txn:
                        r = txn.get(prefix + k.encode() + b"\x00")
                    if r is not None:
                        loads(r)

            sides = {"fw": _fw_get(repo), "raw": lraw_get}
            _compare("lmdb get (hit)", sides, hits, GETS, a.trials)
            _compare("lmdb get (miss)", sides, misses, GETS, a.trials)
            repo.close()
            env.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
