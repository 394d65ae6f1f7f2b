"""Side-by-side cost of the framework vs raw py-lmdb + orjson (not a test; run by hand).

    python tests/lmdb/bench_lmdb_overhead.py [--sync]

Prints per-operation times and the framework/raw ratio for get, put, put_many item and
scanned item. Both sides use the same environment settings, key bytes and values.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import lmdb
import orjson

import aurora_storage

N = 20_000
VALUE = {"name": "projection", "count": 12, "tags": ["a", "b"], "ok": True}


def best(fn: Callable[[], None], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    sync = "--sync" in sys.argv
    n_put = 500 if sync else N
    tmp = tempfile.mkdtemp()
    repo = aurora_storage.open(f"lmdb://{tmp}/fw?map_size=1GiB&sync={str(sync).lower()}")
    raw = lmdb.open(f"{tmp}/raw", map_size=1 << 30, sync=sync, max_dbs=0, lib_version=0)
    keys = [f"key-{i:08d}" for i in range(N)]
    # The same key bytes the framework stores, so both B-trees have the same shape.
    fulls = [repo._full("tenant", k) for k in keys]
    repo.put_many("tenant", dict.fromkeys(keys, VALUE))
    with raw.begin(write=True) as txn:
        for f in fulls:
            txn.put(f, orjson.dumps(VALUE))

    def fw_get() -> None:
        get = repo.get
        for k in keys:
            get("tenant", k)

    def raw_get() -> None:
        # Typed as taking any value: every key read here exists (no None check in the loop).
        loads: Callable[[Any], Any] = orjson.loads
        begin = raw.begin
        for f in fulls:
            with begin() as txn:
                loads(txn.get(f))

    def fw_put() -> None:
        put = repo.put
        for k in keys[:n_put]:
            put("tenant", k, VALUE)

    def raw_put() -> None:
        begin, dumps = raw.begin, orjson.dumps
        for f in fulls[:n_put]:
            with begin(write=True) as txn:
                txn.put(f, dumps(VALUE))

    def fw_put_many() -> None:
        repo.put_many("tenant", [(k, VALUE) for k in keys])

    def raw_put_many() -> None:
        dumps = orjson.dumps
        with raw.begin(write=True) as txn:
            put = txn.put
            for f in fulls:
                put(f, dumps(VALUE))

    def fw_scan() -> None:
        for _ in repo.items("tenant"):
            pass

    def raw_scan() -> None:
        loads = orjson.loads
        with raw.begin() as txn:
            cur = txn.cursor()
            cur.set_range(fulls[0])
            for _k, v in cur:
                loads(v)

    be = repo.backend
    bget, bput, bwrite, bscan = be.get, be.put, be.write, be.scan

    def be_get() -> None:
        loads: Callable[[Any], Any] = orjson.loads  # as in raw_get
        for f in fulls:
            loads(bget(f))

    def be_put() -> None:
        dumps = orjson.dumps
        for f in fulls[:n_put]:
            bput(f, dumps(VALUE))

    def be_put_many() -> None:
        dumps = orjson.dumps
        bwrite([(f, dumps(VALUE)) for f in fulls])

    def be_scan() -> None:
        loads = orjson.loads
        for _k, v in bscan(fulls[0], fulls[-1] + b"\xff"):
            loads(v)

    rows = [
        ("get", fw_get, be_get, raw_get, N, 1.3),
        (f"put (sync={sync})", fw_put, be_put, raw_put, n_put, 1.3),
        ("put_many item", fw_put_many, be_put_many, raw_put_many, N, 1.3),
        ("scanned item", fw_scan, be_scan, raw_scan, N, 1.5),
    ]
    print("per operation, best of interleaved rounds; 'backend' = the plugin alone")
    print("(bytes-level Backend + orjson, without the core's key encoding and checks)")
    head = f"{'operation':<20}{'framework':>11}{'backend':>11}{'raw':>11}"
    print(head + f"{'fw/raw':>8}{'be/raw':>8}{'budget':>8}")
    for name, fw, bk, rw, n, budget in rows:
        rounds = 3 if sync and name.startswith("put (") else 15
        t_fw = t_be = t_raw = float("inf")
        for _ in range(rounds):
            # Interleaved, so load from other processes hits all sides alike.
            t_raw = min(t_raw, best(rw, 1))
            t_fw = min(t_fw, best(fw, 1))
            t_be = min(t_be, best(bk, 1))
        us = [t / n * 1e6 for t in (t_fw, t_be, t_raw)]
        print(
            f"{name:<20}{us[0]:>9.2f}us{us[1]:>9.2f}us{us[2]:>9.2f}us"
            f"{us[0] / us[2]:>8.2f}{us[1] / us[2]:>8.2f}{budget:>8}"
        )
    repo.close()
    raw.close()


if __name__ == "__main__":
    main()
