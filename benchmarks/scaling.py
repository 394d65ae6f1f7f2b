"""Scaling: per-operation cost of aurora-storage and the raw engine as a store grows.

    python benchmarks/scaling.py                                  # 10k, 100k, 1M, 10M records
    python benchmarks/scaling.py --sizes 10k,100k,1M --engines lmdb
    python benchmarks/scaling.py --sizes 1k,2k --out /tmp/s --plot /tmp/s/scaling.png  # smoke

For each engine one aurora-storage store and one raw store (rocksdict / py-lmdb with the
plugin's default options and durability, the same key bytes; benchmarks/contenders.py)
grow side by side, step by step, to each size in ``--sizes``: the records are added in
``put_many`` chunks of 10,000 (new sequential keys, ~200-byte events), then at each
step both sides are timed in paired trials (the side going first alternates, each side
on its own random sample of keys) on:

- ``put``: overwrite of a random existing key (LMDB commits with fsync: fewer per trial);
- ``get``: a random existing key;
- ``put_many item``: one batch of 1,000 random existing keys, per item;
- ``scan item``: 2,000 ``(key, value)`` items from a random start key, per item.

A figure is a side's median microseconds per operation over the trials; the ratio is
the median of the per-trial ratios. At each step the process's resident memory (all of
it: both sides of the engine live in this process; LMDB's mapped pages count as
file-backed) and each side's size on disk (RocksDB's includes its write-ahead log) are
recorded. Prints Markdown tables, writes JSON to ``--out`` and a PNG plot to ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from workload import TENANT, event, key_of  # noqa: E402
from workloads import (  # noqa: E402
    CHUNK,
    Result,
    _value_pool,
    git_commit,
    open_pair,
    paired,
    quantile,
    versions,
)

ENGINES = ("rocksdb", "lmdb")
OPS = ("put", "get", "put_many item", "scan item")
BATCH = 1_000
SCAN = 2_000
DEFAULT_PLOT = os.path.join(os.path.dirname(HERE), "docs", "img", "scaling.png")


def parse_size(text: str) -> int:
    """``10k`` -> 10,000, ``1M`` -> 1,000,000, ``2500`` -> 2,500."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 10k, 1M, 2500)")
    n = int(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    if n < 1:
        raise argparse.ArgumentTypeError(f"a size must be at least 1, got {text!r}")
    return n


def label(n: int) -> str:
    """The short form of a size: 10k, 1M, 2500."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def memory() -> dict[str, float]:
    """This process's resident memory in MiB (total, anonymous, file-backed) and peak."""
    out: dict[str, float] = {}
    names = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in names:
                    out[names[key] + "_mib"] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def du(path: str) -> int:
    """Bytes of the files under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def grow(repo: Any, raw: Any, start: int, stop: int, rnd: random.Random) -> dict[str, float]:
    """Add records ``start..stop`` to both sides in chunks of 10,000, the side going
    first alternating; return each side's median microseconds per item over the chunks."""
    took: dict[str, list[float]] = {"aurora": [], "raw": []}
    for n, i in enumerate(range(start, stop, CHUNK)):
        items = [(key_of(j), event(j, rnd)) for j in range(i, min(stop, i + CHUNK))]
        sides = (("aurora", repo.put_many), ("raw", raw.put_many))
        for side, put_many in sides if n % 2 == 0 else sides[::-1]:
            t0 = time.perf_counter()
            put_many(TENANT, items)
            took[side].append((time.perf_counter() - t0) / len(items) * 1e6)
    return {side: statistics.median(xs) for side, xs in took.items() if xs}


_BUSY = (
    "rocksdb.compaction-pending",
    "rocksdb.num-running-compactions",
    "rocksdb.num-running-flushes",
)


def settle(repo: Any, raw: Any, limit_s: float = 600.0) -> float:
    """Wait until neither RocksDB store flushes or compacts in the background (a bulk
    load leaves level-0 files that are compacted for a while, taking a core and making
    reads slower meanwhile); return the seconds waited, at most ``limit_s``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        busy = [int(repo.property(p) or 0) for p in _BUSY]
        busy += [raw.db.property_int_value(p) or 0 for p in _BUSY]
        if not any(busy):
            break
        time.sleep(0.5)
    return time.perf_counter() - t0


def measure(engine: str, repo: Any, raw: Any, size: int, trials: int) -> dict[str, Result]:
    """The four operations at ``size`` records, as paired trials."""
    pool = _value_pool()
    puts = 200 if engine == "rocksdb" else 10  # LMDB fsyncs every commit
    side_no = {"aurora": 0, "raw": 1}

    def sample(op: int, t: int, side: str, m: int, below: int) -> list[int]:
        r = random.Random(size * 31 + op * 100_003 + 2 * t + side_no[side])
        return [r.randrange(below) for _ in range(m)]

    def put_in(t: int, side: str) -> tuple[list[str], list[Any]]:
        idx = sample(1, t, side, puts, size)
        return [key_of(i) for i in idx], [pool[(i + t) % 997] for i in idx]

    def get_in(t: int, side: str) -> list[str]:
        return [key_of(i) for i in sample(2, t, side, 500, size)]

    def batch_in(t: int, side: str) -> list[tuple[str, Any]]:
        return [(key_of(i), pool[(i + t) % 997]) for i in sample(3, t, side, BATCH, size)]

    scan_n = min(SCAN, size)

    def scan_in(t: int, side: str) -> str:
        return key_of(sample(4, t, side, 1, max(1, size - scan_n + 1))[0])

    def a_put(kv: tuple[list[str], list[Any]]) -> None:
        put = repo.put
        for k, v in zip(*kv, strict=True):
            put(TENANT, k, v)

    def a_get(keys: list[str]) -> None:
        get = repo.get
        for k in keys:
            get(TENANT, k)

    def a_scan(start: str) -> None:
        n = 0
        for _item in repo.items(TENANT, start=start, limit=scan_n):
            n += 1
        if n != scan_n:
            raise RuntimeError(f"aurora scan from {start} gave {n} items, expected {scan_n}")

    def r_scan(start: str) -> None:
        n = raw.scan_from(start, scan_n)
        if n != scan_n:
            raise RuntimeError(f"raw scan from {start} gave {n} items, expected {scan_n}")

    plan = (
        ("put", puts, a_put, lambda kv: raw.put(*kv), put_in),
        ("get", 500, a_get, raw.get, get_in),
        (
            "put_many item",
            BATCH,
            lambda b: repo.put_many(TENANT, b),
            lambda b: raw.put_many(TENANT, b),
            batch_in,
        ),
        ("scan item", scan_n, a_scan, r_scan, scan_in),
    )
    out: dict[str, Result] = {}
    for op, per, a_fn, r_fn, inputs in plan:
        out[op] = paired(Result(op, engine, per), a_fn, r_fn, inputs, trials)
    return out


def cell(r: dict[str, Any]) -> str:
    def f(us: float) -> str:
        return f"{us:.0f}" if us >= 100 else f"{us:.2f}"

    return f"{f(r['aurora_us'])} / {f(r['raw_us'])} ({r['ratio']:.2f})"


def tables(doc: dict[str, Any]) -> str:
    """The Markdown tables of a run: cost per operation by size, then resources."""
    sizes = doc["config"]["sizes"]
    steps = {(s["engine"], s["records"]): s for s in doc["steps"]}
    lines = [
        "**Microseconds per operation, aurora-storage / raw engine (median ratio of the "
        "paired trials)**",
        "",
        "| engine | operation | " + " | ".join(label(n) for n in sizes) + " |",
        "| --- | --- |" + " ---: |" * len(sizes),
    ]
    for engine in doc["config"]["engines"]:
        for op in OPS:
            cells = [
                cell(steps[engine, n]["ops"][op]) if (engine, n) in steps else "-" for n in sizes
            ]
            lines.append(f"| {engine} | {op} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**At each step**: building (put_many in chunks of 10,000, us per item), the "
        "process's resident memory (both sides), each side's size on disk, the load",
        "",
        "| engine | records | build aurora | build raw | RSS MiB | anon MiB | file MiB "
        "| disk aurora MiB | disk raw MiB | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in doc["steps"]:
        b, m, d = s["build"], s["memory"], s["disk_bytes"]
        lines.append(
            f"| {s['engine']} | {label(s['records'])} | {b.get('aurora', 0):.2f} "
            f"| {b.get('raw', 0):.2f} | {m.get('rss_mib', 0):.0f} | {m.get('anon_mib', 0):.0f} "
            f"| {m.get('file_mib', 0):.0f} | {d['aurora'] / 2**20:.1f} | {d['raw'] / 2**20:.1f} "
            f"| {s['load']:.1f} |"
        )
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: str) -> None:
    """A PNG of the per-operation cost against the store's size: one row per engine,
    one panel per operation, aurora-storage solid, the raw engine dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = [e for e in doc["config"]["engines"] if any(s["engine"] == e for s in doc["steps"])]
    cols = len(OPS) + 1
    fig, axes = plt.subplots(
        len(engines), cols, figsize=(3.6 * cols, 3.2 * len(engines)), squeeze=False
    )
    for row, engine in enumerate(engines):
        steps = [s for s in doc["steps"] if s["engine"] == engine]
        xs = [s["records"] for s in steps]
        for col, op in enumerate(OPS):
            ax = axes[row][col]
            for side, style in (("aurora", "-o"), ("raw", "--s")):
                ys = [s["ops"][op][f"{side}_us"] for s in steps]
                name = "aurora-storage" if side == "aurora" else f"raw {engine}"
                ax.plot(xs, ys, style, label=name)
            ax.set_xscale("log")
            ax.set_xticks(xs, [label(x) for x in xs])
            ax.minorticks_off()
            ax.set_ylim(bottom=0)
            ax.set_title(f"{engine}: {op}")
            ax.set_xlabel("records in the store")
            ax.set_ylabel("us per " + ("item" if "item" in op else "operation"))
            ax.grid(True, alpha=0.3)
            if col == 0:
                ax.legend(fontsize="small")
        # The ratios: what carries over from this machine's load to another machine.
        ax = axes[row][len(OPS)]
        for op in OPS:
            ax.plot(xs, [s["ops"][op]["ratio"] for s in steps], "-o", label=op, markersize=4)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xticks(xs, [label(x) for x in xs])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_title(f"{engine}: aurora / raw (median ratio)")
        ax.set_xlabel("records in the store")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    loads = [s["load"] for s in doc["steps"]]
    fig.suptitle(
        f"aurora-storage (solid) vs the raw engine (dashed) as the store grows: "
        f"{doc['started']}, commit {doc['commit']}, load average {min(loads):.1f}-"
        f"{max(loads):.1f} on {doc.get('cores', '?')} cores",
        fontsize="medium",
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_engine(engine: str, sizes: list[int], trials: int, workdir: str) -> None:
    """The child process of one engine: grow its store pair through ``sizes``, print
    each measured step as one ``STEP {json}`` line, remove the stores at the end."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    d = os.path.join(workdir, engine)
    before = memory()
    repo, raw = open_pair(engine, d, lmdb_sync=True)
    rnd = random.Random(7)
    have = 0
    try:
        for size in sizes:
            t0 = time.perf_counter()
            build = grow(repo, raw, have, size, rnd)
            have = size
            built = time.perf_counter() - t0
            settled = settle(repo, raw) if engine == "rocksdb" else 0.0
            results = measure(engine, repo, raw, size, trials)
            step: dict[str, Any] = {
                "engine": engine,
                "records": size,
                "build": build,
                "build_s": round(built, 1),
                "settle_s": round(settled, 1),
                "load": os.getloadavg()[0],
                "memory": memory(),
                "memory_at_start": before,
                "disk_bytes": {
                    "aurora": du(os.path.join(d, "aurora")),
                    "raw": du(os.path.join(d, "raw")),
                },
                "ops": {
                    op: {
                        "aurora_us": statistics.median(r.aurora_us),
                        "raw_us": statistics.median(r.raw_us),
                        "ratio": statistics.median(r.ratios),
                        "ratio_p10": quantile(r.ratios, 0.1),
                        "ratio_p90": quantile(r.ratios, 0.9),
                        "trials": len(r.ratios),
                        "items_per_trial": r.items_per_trial,
                    }
                    for op, r in results.items()
                },
            }
            print("STEP " + json.dumps(step), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        repo.close()
        raw.close()
        shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        default="10k,100k,1M,10M",
        help="store sizes to measure at, ascending (the store grows to each in turn)",
    )
    ap.add_argument("--engines", default=",".join(ENGINES), help="subset of rocksdb,lmdb")
    ap.add_argument("--trials", type=int, default=41, help="paired trials per operation [41]")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="JSON results directory")
    ap.add_argument("--plot", default=DEFAULT_PLOT, help="PNG to write [docs/img/scaling.png]")
    ap.add_argument("--no-plot", action="store_true", help="write no PNG")
    ap.add_argument("--workdir", help="where stores are created [a temporary directory]")
    ap.add_argument(
        "--from-json",
        metavar="PATH",
        help="measure nothing: print the tables of an earlier run's JSON and redraw its plot",
    )
    ap.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            old = json.load(f)
        print(tables(old))
        if not a.no_plot:
            plot(old, a.plot)
            print(f"plot: {a.plot}")
        return 0
    try:
        sizes = [parse_size(s) for s in a.sizes.split(",") if s.strip()]
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    if not sizes or sizes != sorted(set(sizes)):
        ap.error("--sizes must be distinct and ascending: the store grows from one to the next")
    if a.child:
        assert a.workdir is not None
        run_engine(a.child, sizes, a.trials, a.workdir)
        return 0
    wanted = {e.strip() for e in a.engines.split(",") if e.strip()}
    for bad in wanted - set(ENGINES):
        ap.error(f"unknown engine {bad!r}")
    engines = [e for e in ENGINES if e in wanted]
    workdir = a.workdir or tempfile.mkdtemp(prefix="aurora-scaling-")
    started = time.time()
    doc: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "commit": git_commit(),
        "versions": versions(),
        "cores": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "config": {"sizes": sizes, "engines": engines, "trials": a.trials, "chunk": CHUNK},
        "steps": [],
    }
    print(
        f"# scaling: {', '.join(label(n) for n in sizes)} records, {', '.join(engines)}, "
        f"{a.trials} trials; load average {doc['load_before']:.2f}",
        flush=True,
    )
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    path = os.path.join(a.out, f"scaling-{stamp}.json")
    # SIGTERM ends the run like Ctrl-C: the steps measured so far are reported.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    child: subprocess.Popen[str] | None = None
    failed = False
    try:
        for engine in engines:
            # One process per engine: its memory figures are its own, not what the
            # previous engine's heap left behind.
            child = subprocess.Popen(
                [
                    *(sys.executable, os.path.abspath(__file__), "--child", engine),
                    *("--sizes", ",".join(map(str, sizes)), "--trials", str(a.trials)),
                    *("--workdir", workdir),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            for line in child.stdout:
                if not line.startswith("STEP "):
                    print(line, end="", flush=True)
                    continue
                step = json.loads(line[5:])
                doc["steps"].append(step)
                with open(path, "w") as f:  # kept current: a long run may be stopped
                    json.dump(doc | {"partial": True}, f, indent=1)
                ops = ", ".join(f"{op} {cell(v)}" for op, v in step["ops"].items())
                print(
                    f"  {engine} {label(step['records'])}: built in {step['build_s']:.1f} s, "
                    f"compactions settled in {step['settle_s']:.1f} s; {ops}; "
                    f"RSS {step['memory'].get('rss_mib', 0):.0f} MiB; load {step['load']:.1f}",
                    flush=True,
                )
            if child.wait() != 0:
                failed = True
                print(f"{engine}: the child process failed", file=sys.stderr, flush=True)
            child = None
    except KeyboardInterrupt:
        doc["interrupted"] = True
        print("interrupted: reporting the steps measured so far", flush=True)
        if child is not None:
            child.terminate()
            child.wait()
    finally:
        if not a.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if not doc["steps"]:
        print("no step was measured", file=sys.stderr)
        return 1
    doc["load_after"] = os.getloadavg()[0]
    doc["elapsed_s"] = round(time.time() - started, 1)
    doc["table"] = tables(doc)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    if not a.no_plot:
        plot(doc, a.plot)
        print(f"plot: {a.plot}")
    print()
    print(
        f"{doc['started']}, commit {doc['commit']}, load average {doc['load_before']:.2f} "
        f"before, {doc['load_after']:.2f} after, {doc['elapsed_s']} s"
    )
    print()
    print(doc["table"])
    print(f"\nresults in {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
