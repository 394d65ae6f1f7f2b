"""aurora-storage's NATS backend next to raw nats-py doing the same work on the same
server (a local nats-server with JetStream).

Run from the repository root::

    .venv/bin/python benchmarks/nats_bench.py                  # 41 paired trials, 100k scan
    .venv/bin/python benchmarks/nats_bench.py --quick          # tiny sizes: proves it runs
    .venv/bin/python benchmarks/nats_bench.py --storage file   # fsync per write (slower, noisier)

Pairs: put, get, batch item (a 100-item atomic batch / 100; raw: the same atomic batch
publish with the documented headers), and async put and get (aurora's native-async path
vs raw nats-py awaited on the same loop). The sync raw side runs its coroutines on a
loop thread, as any synchronous caller of nats-py must. Each trial runs a block of
operations on one side then the other (the order alternates), so both see the same
machine load; the table gives the median per-operation time of each side and the median
of the per-trial ratios (the figure to read on a shared machine). Then a scan of
100,000 keys (one tenant, keys and values, sorted) against raw nats-py listing the same
subjects with an ordered consumer. The load average is printed with the results.

The default server stores in memory so that the figures show the client-side cost (the
part that is aurora's); ``--storage file`` adds the fsync of ``sync_interval: always``
to both sides.
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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats
from nats.js import api

import aurora_storage


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


Row = tuple[str, float, float, float]


def _paired(name: str, a: Callable[[int], float], b: Callable[[int], float], trials: int) -> Row:
    """Median us/op of each side and the median of the per-trial ratios a/b."""
    xs: list[float] = []
    ys: list[float] = []
    for t in range(trials):
        if t % 2:
            y = b(t)
            x = a(t)
        else:
            x = a(t)
            y = b(t)
        xs.append(x)
        ys.append(y)
    ratio = statistics.median(x / y for x, y in zip(xs, ys, strict=True))
    return name, statistics.median(xs), statistics.median(ys), ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--storage", choices=("memory", "file"), default="memory")
    ap.add_argument("--trials", type=int, default=0)
    ap.add_argument("--ops", type=int, default=0, help="operations per side per trial")
    ap.add_argument("--scan", type=int, default=-1, help="keys in the scan (0: no scan)")
    args = ap.parse_args()
    ops = args.ops or (20 if args.quick else 100)
    trials = args.trials or (5 if args.quick else 41)
    scan_n = args.scan if args.scan >= 0 else (2000 if args.quick else 100_000)
    tmp = tempfile.mkdtemp(prefix="aurora-nats-bench-")
    proc, port = _server(tmp)
    try:
        run(port, args.storage, ops, trials, scan_n)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(port: int, storage: str, ops: int, trials: int, scan_n: int) -> None:
    load0 = os.getloadavg()
    bucket = "bench" + uuid.uuid4().hex[:8]
    url = f"nats://127.0.0.1:{port}/{bucket}?codec=raw&storage={storage}&max_batch=1000"
    repo = aurora_storage.open(url)
    backend: Any = repo.backend
    lt = backend._lt  # the raw client runs on the same kind of loop thread

    async def raw_connect() -> Any:
        return await nats.connect(f"nats://127.0.0.1:{port}")

    nc = asyncio.run_coroutine_threadsafe(raw_connect(), lt.loop).result()
    pre = f"$KV.{bucket}."
    get_pre = f"$JS.API.DIRECT.GET.KV_{bucket}.{pre}"
    value = b"x" * 100

    def raw(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, lt.loop).result()

    async def raw_put(k: str) -> None:
        msg = await nc.request(pre + k, value, timeout=5)
        if b'"error"' in msg.data:
            raise RuntimeError(msg.data)

    async def raw_get(k: str) -> bytes:
        msg = await nc.request(get_pre + k, b"", timeout=5)
        data: bytes = msg.data
        return data

    async def raw_batch(keys: list[str]) -> None:
        bid = uuid.uuid4().hex
        for i, k in enumerate(keys, 1):
            h = {"Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(i)}
            if i < len(keys):
                await nc.publish(pre + k, value, headers=h)
            else:
                h["Nats-Batch-Commit"] = "1"
                msg = await nc.request(pre + k, value, timeout=5, headers=h)
                if b'"error"' in msg.data:
                    raise RuntimeError(msg.data)

    def timed(f: Callable[[int], object], count: int) -> float:
        t0 = time.perf_counter()
        for i in range(count):
            f(i)
        return (time.perf_counter() - t0) / count * 1e6

    rows: list[Row] = []
    rows.append(
        _paired(
            "put",
            lambda t: timed(lambda i: repo.put("t", f"p{t}-{i}", value), ops),
            lambda t: timed(lambda i: raw(raw_put(f"r.p{t}-{i}")), ops),
            trials,
        )
    )
    rows.append(
        _paired(
            "get",
            lambda t: timed(lambda i: repo.get("t", f"p{t}-{i}"), ops),
            lambda t: timed(lambda i: raw(raw_get(f"r.p{t}-{i}")), ops),
            trials,
        )
    )
    per = 100
    nb = max(1, ops // 20)

    def aur_batch(t: int) -> float:
        return (
            timed(lambda b: repo.put_many("t", [(f"b{t}-{b}-{i}", value) for i in range(per)]), nb)
            / per
        )

    def raw_batch_t(t: int) -> float:
        return timed(lambda b: raw(raw_batch([f"r.b{t}-{b}-{i}" for i in range(per)])), nb) / per

    rows.append(_paired(f"batch item ({per}/batch)", aur_batch, raw_batch_t, trials))
    scan = _scan(repo, raw, nc, pre, bucket, value, scan_n) if scan_n else None
    raw(nc.close())
    # Last: the async rows end by closing the repository on their loop (an async
    # repository's close ends the whole repository, sync calls included).
    rows += asyncio.run(_async_rows(repo, port, pre, get_pre, value, ops, trials))
    load1 = os.getloadavg()

    print(f"storage={storage}, {trials} paired trials of {ops} operations per side")
    print(
        f"load average before: {load0[0]:.1f} {load0[1]:.1f}, after: {load1[0]:.1f} {load1[1]:.1f}"
    )
    print("| operation | aurora (us/op) | raw nats-py (us/op) | median ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, a, r, ratio in rows:
        print(f"| {name} | {a:.1f} | {r:.1f} | {ratio:.2f}x |")
    if scan is not None:
        a_s, r_s = scan
        print(
            f"\nscan of {scan_n:,} keys with values: aurora items() {a_s:.2f} s "
            f"({a_s / scan_n * 1e6:.1f} us/key); raw ordered consumer {r_s:.2f} s "
            f"({r_s / scan_n * 1e6:.1f} us/key); {a_s / r_s:.2f}x"
        )


async def _async_rows(
    repo: Any, port: int, pre: str, get_pre: str, value: bytes, ops: int, trials: int
) -> list[Row]:
    """Async put and get, both sides awaited on this loop."""
    arepo = repo.as_async()
    anc = await nats.connect(f"nats://127.0.0.1:{port}")

    async def timed(f: Callable[[int], Awaitable[Any]]) -> float:
        t0 = time.perf_counter()
        for i in range(ops):
            await f(i)
        return (time.perf_counter() - t0) / ops * 1e6

    async def r_put(k: str) -> None:
        msg = await anc.request(pre + k, value, timeout=5)
        if b'"error"' in msg.data:
            raise RuntimeError(msg.data)

    pairs: list[tuple[str, Callable[[int], Awaitable[float]], Callable[[int], Awaitable[float]]]]
    pairs = [
        (
            "async put",
            lambda t: timed(lambda i: arepo.put("t", f"ap{t}-{i}", value)),
            lambda t: timed(lambda i: r_put(f"r.ap{t}-{i}")),
        ),
        (
            "async get",
            lambda t: timed(lambda i: arepo.get("t", f"ap{t}-{i}")),
            lambda t: timed(lambda i: anc.request(f"{get_pre}r.ap{t}-{i}", b"", timeout=5)),
        ),
    ]
    await arepo.get("t", "warm")
    rows: list[Row] = []
    for name, fa, fr in pairs:
        xs: list[float] = []
        ys: list[float] = []
        for t in range(trials):
            if t % 2:
                y = await fr(t)
                x = await fa(t)
            else:
                x = await fa(t)
                y = await fr(t)
            xs.append(x)
            ys.append(y)
        ratio = statistics.median(x / y for x, y in zip(xs, ys, strict=True))
        rows.append((name, statistics.median(xs), statistics.median(ys), ratio))
    await arepo.close()
    await anc.close()
    return rows


def _scan(
    repo: Any,
    raw: Callable[[Coroutine[Any, Any, Any]], Any],
    nc: Any,
    pre: str,
    bucket: str,
    value: bytes,
    scan_n: int,
) -> tuple[float, float]:
    """Seconds for aurora's items() over ``scan_n`` keys, and for raw nats-py listing the
    same subjects (ordered consumer, last per subject, with values; then sorted)."""
    for start in range(0, scan_n, 1000):
        repo.put_many(
            "scan", [(f"k{i:07d}", value) for i in range(start, min(start + 1000, scan_n))]
        )
    t0 = time.perf_counter()
    count = sum(1 for _ in repo.items("scan"))
    a_s = time.perf_counter() - t0
    if count != scan_n:
        raise RuntimeError(f"scanned {count} of {scan_n}")
    from aurora_storage_nats._subjects import scan_filter

    lo, hi, _ = repo._bounds("scan", None, None, None)
    subject = pre + scan_filter(lo, hi)

    async def listing() -> int:
        js = nc.jetstream()
        seen: dict[str, bytes] = {}
        done = asyncio.Event()

        async def cb(msg: Any) -> None:
            seen[msg.subject] = msg.data
            if msg.metadata.num_pending == 0:
                done.set()

        sub = await js.subscribe(
            subject,
            stream=f"KV_{bucket}",
            cb=cb,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
        )
        await asyncio.wait_for(done.wait(), 600)
        await sub.unsubscribe()
        return len(sorted(seen))

    t0 = time.perf_counter()
    got = raw(listing())
    r_s = time.perf_counter() - t0
    if got != scan_n:
        raise RuntimeError(f"raw listing saw {got} of {scan_n}")
    return a_s, r_s


if __name__ == "__main__":
    main()
