"""Tiered overhead and rebuild memory (not a test: run it by hand).

    python tests/tiered/bench_tiered.py            # write/read overhead
    python tests/tiered/bench_tiered.py rebuild    # 250k and 1M records, same function
                                                   # or every key changed: peak RSS

Write: a tiered write vs the sum of the same write done directly on each tier.
Read: a tiered read that hits hot vs a direct read of the hot tier. Best of 7 interleaved
rounds, per-operation microseconds.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aurora_storage
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository

N = 20_000
ROUNDS = 7
VALUE = {"type": "OrderPaid", "order": "o-123", "amount": 42, "note": "x" * 40}


def latest(record: HistoryRecord, state: ProjectionState) -> None:
    state.put(record.value["order"], record.value)


def latest_tagged(record: HistoryRecord, state: ProjectionState) -> None:
    """``latest`` with another value for every key: a rebuild with it changes them all."""
    state.put(record.value["order"], {**record.value, "v": 2})


def timed(fn: Callable[[int, int], object], base: int, n: int) -> float:
    """Per-call microseconds of ``fn(base, i)`` for ``i`` in ``range(n)``."""
    t = time.perf_counter()
    for i in range(n):
        fn(base, i)
    return (time.perf_counter() - t) / n * 1e6


def overhead(hot_opts: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        hot = aurora_storage.open(f"lmdb://{d}/hot{hot_opts}")
        cold = aurora_storage.open(f"rocksdb://{d}/cold")
        hot_d = aurora_storage.open(f"lmdb://{d}/hot_direct{hot_opts}")
        cold_d = aurora_storage.open(f"rocksdb://{d}/cold_direct")
        cache: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold)
        hot2 = aurora_storage.open(f"lmdb://{d}/hot2{hot_opts}")
        cold2 = aurora_storage.open(f"rocksdb://{d}/cold2")
        proj: TieredRepository[Any, Any] = TieredRepository(hot=hot2, cold=cold2, projection=latest)
        res: dict[str, list[float]] = {}
        # Each op is fn(base, i): a round's keys start at base (one round's puts do not
        # overwrite the previous round's).
        ops: dict[str, Callable[[int, int], object]] = {
            "direct cold put": lambda b, i: cold_d.put("acme", ("e", b + i), VALUE),
            "direct hot put": lambda b, i: hot_d.put("acme", ("e", b + i), VALUE),
            "tiered cache put": lambda b, i: cache.put("acme", ("e", b + i), VALUE),
            "tiered projection put": lambda b, i: proj.put("acme", ("e", b + i), VALUE),
            "direct hot get": lambda b, i: hot_d.get("acme", ("e", b + i)),
            "tiered cache get (hot hit)": lambda b, i: cache.get("acme", ("e", b + i)),
            "direct hot get (projection)": lambda b, i: hot2.get("acme", "o-123"),
            "tiered projection get": lambda b, i: proj.get("acme", "o-123"),
        }
        for r in range(ROUNDS):
            base = r * n
            for name, op in ops.items():
                res.setdefault(name, []).append(timed(op, base, n))
        best = {k: min(v) for k, v in res.items()}
        for k, v in best.items():
            print(f"  {k:32s} {v:8.2f} us")
        direct = best["direct cold put"] + best["direct hot put"]
        print(f"  cache write ratio      {best['tiered cache put'] / direct:.2f}x (target <= 1.3x)")
        print(f"  projection write ratio {best['tiered projection put'] / direct:.2f}x")
        print(
            f"  cache read ratio       "
            f"{best['tiered cache get (hot hit)'] / best['direct hot get']:.2f}x (target <= 1.3x)"
        )
        print(
            f"  projection read ratio  "
            f"{best['tiered projection get'] / best['direct hot get (projection)']:.2f}x"
        )
        for repo in (cache, proj, hot_d, cold_d):
            repo.close()


def rebuild_setup(d: str, n: int) -> None:
    """Write ``n`` history records (50,000 projected keys) into ``d`` and build their
    projection (the pair's first open): run in its own process, so that the measured
    process's peak RSS is the rebuild's alone."""
    cold = aurora_storage.open(f"rocksdb://{d}/cold")
    batch: list[tuple[Any, Any]] = []
    for i in range(n):
        batch.append(((i, "e"), {"order": f"o-{i % 50_000}", "n": i}))
        if len(batch) == 10_000:
            cold.put_many("acme", batch)
            batch = []
    cold.put_many("acme", batch)
    hot = aurora_storage.open(f"lmdb://{d}/hot?sync=false")
    TieredRepository(hot=hot, cold=cold, projection=latest).close()


def rebuild_child(n: int, changed: bool) -> None:
    """Rebuild a projection of ``n`` history records (50,000 projected keys) with the
    same function, or with one that changes every key's value (``changed``: the whole
    projection is switched in one transaction); time and peak RSS of the rebuild."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            [sys.executable, str(Path(__file__)), "rebuild-setup", d, str(n)], check=True
        )
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        repo: TieredRepository[Any, Any] = TieredRepository(
            hot=aurora_storage.open(f"lmdb://{d}/hot?sync=false"),
            cold=aurora_storage.open(f"rocksdb://{d}/cold"),
            projection=latest_tagged if changed else latest,
        )
        t = time.perf_counter()
        done = repo.rebuild()
        dt = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        what = "every key changed" if changed else "same function"
        print(
            f"  {n:>9,} records ({what}): rebuild {dt:6.1f} s ({done / dt:,.0f} records/s), "
            f"peak RSS {peak / 1024:6.1f} MiB (before the rebuild {before / 1024:6.1f} MiB)"
        )
        repo.close()


def main() -> None:
    if sys.argv[1:2] == ["rebuild-setup"]:
        rebuild_setup(sys.argv[2], int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["rebuild-child"]:
        rebuild_child(int(sys.argv[2]), sys.argv[3:4] == ["changed"])
        return
    if sys.argv[1:2] == ["rebuild"]:
        for n in (250_000, 1_000_000):
            for kind in ("same", "changed"):
                subprocess.run(
                    [sys.executable, str(Path(__file__)), "rebuild-child", str(n), kind],
                    check=True,
                )
        return
    # sync=true fsyncs every LMDB commit (~1 ms): fewer operations suffice there.
    for opts, n in (("?sync=false", N), ("", N // 20)):
        print(f"hot = lmdb{opts or ' (default: sync=true)'}, cold = rocksdb (default), {n} ops")
        overhead(opts, n)


if __name__ == "__main__":
    main()
