"""Cross-process change-feed latency on LMDB (``change_log=true``) (not a test).

    python benchmarks/watch_latency.py [--changes 1000] [--interval 0.005] [--sync]

A writer process puts ``--changes`` records, one every ``--interval`` seconds, each
value holding ``time.monotonic()`` at its commit (CLOCK_MONOTONIC is system-wide on
Linux, so two processes compare); this process watches the tenant (sync iterator, then
the async iterator in a second round) and records, per change, the time from the
writer's commit to delivery. Reported: p50, p90, p99 and the maximum, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import tempfile
import time
from typing import Any

import aurora_storage


def _writer(url: str, n: int, interval: float, tenant: str) -> None:
    with aurora_storage.open(url) as repo:
        time.sleep(0.2)  # let the watcher start
        for i in range(n):
            repo.put(tenant, i, time.monotonic())
            time.sleep(interval)


def _report(name: str, lat: list[float]) -> None:
    lat = sorted(lat)

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3

    print(
        f"{name:6} n={len(lat)}  p50 {q(0.5):6.2f} ms  p90 {q(0.9):6.2f} ms  "
        f"p99 {q(0.99):6.2f} ms  max {lat[-1] * 1e3:6.2f} ms"
    )


def _start(url: str, n: int, interval: float, tenant: str) -> Any:
    proc = multiprocessing.get_context("spawn").Process(
        target=_writer, args=(url, n, interval, tenant)
    )
    proc.start()
    return proc


def run_sync(repo: Any, url: str, n: int, interval: float) -> None:
    lat: list[float] = []
    with repo.watch("sync", timeout=30) as w:
        proc = _start(url, n, interval, "sync")
        for change in w:
            lat.append(time.monotonic() - change.value)
            if len(lat) == n:
                break
    proc.join()
    _report("sync", lat)


def run_async(repo: Any, url: str, n: int, interval: float) -> None:
    async def main() -> list[float]:
        lat: list[float] = []
        async with repo.as_async().watch("async", timeout=30) as w:
            proc = _start(url, n, interval, "async")
            async for change in w:
                lat.append(time.monotonic() - change.value)
                if len(lat) == n:
                    break
        await asyncio.to_thread(proc.join)
        return lat

    _report("async", asyncio.run(main()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.005)
    ap.add_argument("--sync", action="store_true", help="fsync per commit (sync=true)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aurora-watch-")
    url = f"lmdb://{tmp}/store?change_log=true&sync={'true' if args.sync else 'false'}"
    try:
        with aurora_storage.open(url) as repo:
            run_sync(repo, url, args.changes, args.interval)
            run_async(repo, url, args.changes, args.interval)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
