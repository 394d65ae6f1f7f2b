"""aurora-storage's NATS backend next to raw nats-py doing the same work on the same
server (a local nats-server, JetStream, sync_interval: always).

Run from the repository root::

    .venv/bin/python benchmarks/nats_bench.py            # 1,000 ops per trial, 100k scan
    .venv/bin/python benchmarks/nats_bench.py --quick    # tiny sizes: proves it runs

Pairs: put, get, batch item (a 100-item atomic batch / 100; raw: the same atomic batch
publish with the documented headers), async put and get (aurora's native-async path vs
raw nats-py awaited on the same loop), and a scan of 100,000 keys. Each figure is the
median of interleaved trials (the two sides alternate), in microseconds per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

import aurora_storage
import nats


def _server(tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = os.path.join(tmp, "server.conf")
    with open(conf, "w") as f:
        f.write(
            f'listen: "127.0.0.1:{port}"\n'
            f'jetstream {{ store_dir: "{tmp}/store", sync_interval: always }}\n'
        )
    binary = os.path.join(os.path.dirname(sys.executable), "nats-server")
    proc = subprocess.Popen(
        [binary if os.path.exists(binary) else "nats-server", "-c", conf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nats-server did not start")


def _median_pair(
    a: Callable[[int], float], b: Callable[[int], float], trials: int
) -> tuple[float, float]:
    xs, ys = [], []
    for t in range(trials):
        if t % 2:
            ys.append(b(t))
            xs.append(a(t))
        else:
            xs.append(a(t))
            ys.append(b(t))
    return statistics.median(xs), statistics.median(ys)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 200 if args.quick else 1000
    scan_n = 2000 if args.quick else 100_000
    trials = 3 if args.quick else 5
    tmp = tempfile.mkdtemp(prefix="aurora-nats-bench-")
    proc, port = _server(tmp)
    try:
        run(port, n, scan_n, trials)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(port: int, n: int, scan_n: int, trials: int) -> None:
    bucket = "bench" + uuid.uuid4().hex[:8]
    repo = aurora_storage.open(f"nats://127.0.0.1:{port}/{bucket}?codec=raw")
    lt = repo.backend._lt  # the raw client runs on the same kind of loop thread

    async def raw_connect() -> Any:
        return await nats.connect(f"nats://127.0.0.1:{port}")

    nc = asyncio.run_coroutine_threadsafe(raw_connect(), lt.loop).result()
    pre = f"$KV.{bucket}."
    value = b"x" * 100

    def raw(coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, lt.loop).result()  # type: ignore[arg-type]

    async def raw_put(k: str) -> None:
        msg = await nc.request(pre + k, value, timeout=5)
        assert b"error" not in msg.data

    async def raw_get(k: str) -> bytes:
        msg = await nc.request(f"$JS.API.DIRECT.GET.KV_{bucket}.{pre}{k}", b"", timeout=5)
        return msg.data

    async def raw_batch(keys: list[str]) -> None:
        bid = uuid.uuid4().hex
        for i, k in enumerate(keys, 1):
            h = {"Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(i)}
            if i < len(keys):
                await nc.publish(pre + k, value, headers=h)
            else:
                h["Nats-Batch-Commit"] = "1"
                msg = await nc.request(pre + k, value, timeout=5, headers=h)
                assert b"error" not in orjson.dumps(msg.data.decode())

    results: list[tuple[str, float, float]] = []

    def aur_put(t: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            repo.put("t", f"p{t}-{i}", value)
        return (time.perf_counter() - t0) / n * 1e6

    def raw_put_t(t: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            raw(raw_put(f"r.p{t}-{i}"))
        return (time.perf_counter() - t0) / n * 1e6

    results.append(("put", *_median_pair(aur_put, raw_put_t, trials)))

    def aur_get(t: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            repo.get("t", f"p{t}-{i}")
        return (time.perf_counter() - t0) / n * 1e6

    def raw_get_t(t: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            raw(raw_get(f"r.p{t}-{i}"))
        return (time.perf_counter() - t0) / n * 1e6

    results.append(("get", *_median_pair(aur_get, raw_get_t, trials)))

    batches = max(1, n // 100)

    def aur_batch(t: int) -> float:
        t0 = time.perf_counter()
        for b in range(batches):
            repo.put_many("t", [(f"b{t}-{b}-{i}", value) for i in range(100)])
        return (time.perf_counter() - t0) / (batches * 100) * 1e6

    def raw_batch_t(t: int) -> float:
        t0 = time.perf_counter()
        for b in range(batches):
            raw(raw_batch([f"r.b{t}-{b}-{i}" for i in range(100)]))
        return (time.perf_counter() - t0) / (batches * 100) * 1e6

    results.append(("batch item (100/batch)", *_median_pair(aur_batch, raw_batch_t, trials)))

    # async: both sides awaited on one user loop
    async def async_pairs() -> None:
        arepo = repo.as_async()
        anc = await nats.connect(f"nats://127.0.0.1:{port}")

        async def a_put(t: int) -> float:
            t0 = time.perf_counter()
            for i in range(n):
                await arepo.put("t", f"ap{t}-{i}", value)
            return (time.perf_counter() - t0) / n * 1e6

        async def r_put(t: int) -> float:
            t0 = time.perf_counter()
            for i in range(n):
                msg = await anc.request(f"{pre}r.ap{t}-{i}", value, timeout=5)
                assert b"error" not in msg.data
            return (time.perf_counter() - t0) / n * 1e6

        async def a_get(t: int) -> float:
            t0 = time.perf_counter()
            for i in range(n):
                await arepo.get("t", f"ap{t}-{i}")
            return (time.perf_counter() - t0) / n * 1e6

        async def r_get(t: int) -> float:
            t0 = time.perf_counter()
            for i in range(n):
                await anc.request(
                    f"$JS.API.DIRECT.GET.KV_{bucket}.{pre}r.ap{t}-{i}", b"", timeout=5
                )
            return (time.perf_counter() - t0) / n * 1e6

        await arepo.get("t", "warm")
        for name, fa, fr in (("async put", a_put, r_put), ("async get", a_get, r_get)):
            xs, ys = [], []
            for t in range(trials):
                pair = (fa, fr) if t % 2 == 0 else (fr, fa)
                for f in pair:
                    (xs if f is fa else ys).append(await f(t))
            results.append((name, statistics.median(xs), statistics.median(ys)))
        await arepo._native.aclose()  # type: ignore[union-attr]
        await anc.close()

    asyncio.run(async_pairs())

    # scan of scan_n keys in one tenant
    for start in range(0, scan_n, 1000):
        repo.put_many("scan", [(f"k{i:07d}", value) for i in range(start, start + 1000)])
    t0 = time.perf_counter()
    count = sum(1 for _ in repo.items("scan"))
    scan_s = time.perf_counter() - t0
    assert count == scan_n

    print("| operation | aurora (us/op) | raw nats-py (us/op) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, a, r in results:
        print(f"| {name} | {a:.1f} | {r:.1f} | {a / r:.2f}x |")
    print(
        f"\nscan of {scan_n:,} keys (items, sorted): {scan_s:.2f} s "
        f"({scan_s / scan_n * 1e6:.1f} us/key)"
    )
    raw(nc.close())
    repo.close()


if __name__ == "__main__":
    main()
