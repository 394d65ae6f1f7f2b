"""The event loop's largest gap during async calls, per backend (a benchmark, not a test).

A ticker task yields to the loop in a tight loop (``await asyncio.sleep(0)``) and records
the longest time between two of its turns: the longest stretch during which an async
call kept the loop from running anything else. Each workload runs alone, on a store of
``--n`` keys (tenant ``big``), with the ticker beside it.

    python benchmarks/loop_gap.py [--n 1000000] [--backends memory,rocksdb,lmdb]

Prints one line per backend and workload, in milliseconds: the largest gap and the 99th
percentile of the gaps (wall clock), the largest stretch of the loop thread's own CPU
time between two ticks (what an async call ran inline on the loop, whatever the load of
the machine), and the workload's duration. The goal (issue #11): no async call
blocks the loop for more than 10 ms. Run it on an otherwise idle machine; another busy
process on the same cores stretches every gap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aurora_storage
from aurora_storage import AsyncRepository

VALUE = {"type": "OrderCreated", "order": "o-1", "total": 123.45, "ts": "2026-11-23T10:00:00Z"}
FILL_STEP = 50_000


def _url(backend: str, root: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "lmdb":
        return f"lmdb://{root}/lmdb?map_size=4GiB&sync=false"
    return f"rocksdb://{root}/rocksdb"


async def _measure(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, float, float]:
    """Run ``work`` beside a ticker; return (largest gap, p99 gap, largest CPU gap,
    duration) in ms. The CPU gap is the loop thread's own CPU time between two ticks:
    the work an async call did inline on the loop, which the machine's load does not
    stretch (the wall-clock gap also holds time the thread waited for the GIL or for
    a core)."""
    gaps: list[float] = []
    cpu_gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while running:
            await asyncio.sleep(0)
            now, now_cpu = time.perf_counter(), time.thread_time()
            gaps.append(now - last)
            cpu_gaps.append(now_cpu - last_cpu)
            last, last_cpu = now, now_cpu

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    await work()
    duration = time.perf_counter() - t0
    running = False
    await tick
    gaps.sort()
    p99 = gaps[int(len(gaps) * 0.99)] if gaps else 0.0
    return (
        max(gaps, default=0.0) * 1e3,
        p99 * 1e3,
        max(cpu_gaps, default=0.0) * 1e3,
        duration * 1e3,
    )


def _workloads(arepo: AsyncRepository[Any, Any], n: int) -> dict[str, Callable[[], Any]]:
    keys = [f"k{i:08d}" for i in range(0, n, max(1, n // 10_000))][:10_000]

    async def scan_items() -> None:
        async for _ in arepo.items("big"):
            pass

    async def scan_keys_reverse() -> None:
        async for _ in arepo.keys("big", reverse=True):
            pass

    async def scan_prefix_limit() -> None:
        for i in range(100):
            async for _ in arepo.items("big", start=f"k{i * (n // 100):08d}", limit=100):
                pass

    async def count() -> None:
        await arepo.count("big")

    async def idle() -> None:
        # The baseline: no storage call at all, only the machine's own noise.
        await asyncio.sleep(0.3)

    async def point_ops() -> None:
        # Inline point calls never suspend, so yield between them: each gap is one call
        # (a loop of them without awaits would block by the user's design, not ours).
        for k in keys[:2000]:
            await arepo.get("big", k)
            await asyncio.sleep(0)
            await arepo.has("big", k)
            await asyncio.sleep(0)
            await arepo.put("side", k, VALUE)
            await asyncio.sleep(0)

    async def put_many() -> None:
        await arepo.put_many("side", [(k, VALUE) for k in keys])

    async def get_many() -> None:
        await arepo.get_many("big", keys)

    async def batch() -> None:
        # Adding to a batch is synchronous encoding in the caller's loop; one put at a
        # time is one gap. The commit runs in a worker thread.
        b = arepo.batch()
        for i, k in enumerate(keys):
            b.put("side", k, VALUE)
            if i % 10 == 0:
                await asyncio.sleep(0)
        await b.commit()

    async def delete_many() -> None:
        await arepo.delete_many("side", keys)

    async def tenants() -> None:
        async for _ in arepo.tenants():
            pass

    return {
        "idle (baseline)": idle,
        "scan items (all)": scan_items,
        "scan keys reverse (all)": scan_keys_reverse,
        "100 scans start+limit 100": scan_prefix_limit,
        "count": count,
        "2000 x get+has+put": point_ops,
        "put_many 10k": put_many,
        "get_many 10k": get_many,
        "batch 10k puts + commit": batch,
        "delete_many 10k": delete_many,
        "tenants": tenants,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="keys in the store")
    parser.add_argument("--backends", default="memory,rocksdb,lmdb")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load}")
    print(
        f"{'backend':8s} {'workload':28s} {'max gap':>9s} {'p99 gap':>9s} {'max CPU':>9s} "
        f"{'duration':>10s}"
    )
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            repo = aurora_storage.open(_url(backend, Path(tmp)))
            for lo in range(0, args.n, FILL_STEP):
                repo.put_many(
                    "big", [(f"k{i:08d}", VALUE) for i in range(lo, min(args.n, lo + FILL_STEP))]
                )
            arepo = repo.as_async()

            async def run(arepo: AsyncRepository[Any, Any] = arepo, backend: str = backend) -> None:
                for name, work in _workloads(arepo, args.n).items():
                    worst, p99, cpu, took = await _measure(work)
                    print(
                        f"{backend:8s} {name:28s} {worst:6.1f} ms {p99:6.2f} ms {cpu:6.1f} ms "
                        f"{took:7.0f} ms",
                        flush=True,
                    )

            asyncio.run(run())
            repo.close()


if __name__ == "__main__":
    main()
