"""aurora-storage benchmarks: the framework next to the raw engines and the alternatives.

Run from the repository root::

    .venv/bin/python benchmarks/run.py            # full run (see docs/performance.md)
    .venv/bin/python benchmarks/run.py --quick    # tiny sizes: proves the runner works

Every contender does the same work (see contenders.py) in one process; the contenders
are interleaved inside each round (their order rotates) and the rounds repeat, and the
tables report the median over rounds with the spread (min-max) beside it. Results are
written to benchmarks/results/ as JSON, and the tables are printed as Markdown.

Then, in a process of its own, workloads.py (the framework's cost by named workload, as
paired trials; ``--no-workloads`` skips it); with ``--quick`` also scaling.py at 1,000
and 2,000 records into a temporary directory (its full run takes long: run it alone).
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from contenders import (  # noqa: E402
    Contender,
    DictOrjson,
    DiskCache,
    Framework,
    PlainDict,
    RawLMDB,
    RawRocksDB,
    Shelve,
    SqliteDictAlt,
)
from workload import SCAN_TENANT_RECORDS, TENANT, dataset, event, key_of  # noqa: E402

OPS = (
    "put",
    "get_hit",
    "get_miss",
    "has",
    "insert",
    "delete",
    "put_many",
    "async_get",
    "async_put",
    "scan_keys",
    "scan_items",
)
POINT_OPS = ("put", "get_hit", "get_miss", "has", "insert", "delete")
WRITE_OPS = ("put", "insert", "delete", "async_put", "put_many")
ENGINES = ("memory", "rocksdb", "lmdb", "tiered", "alt")
#: Ratio targets of aurora-storage / raw engine.
POINT_TARGET, SCAN_TARGET, ASYNC_TARGET = 1.3, 1.5, 1.5
DISKCACHE_FACTOR, SCAN_RSS_MB = 10.0, 50.0
BATCH = 1000


# --------------------------------------------------------------------------- contenders


def _file_url(scheme: str, query: str = "") -> Callable[[str], str]:
    def url(path: str) -> str:
        return f"{scheme}://{path}" + (f"?{query}" if query else "")

    return url


def _tiered_url(path: str) -> str:
    hot = quote(f"lmdb://{path}/hot", safe="")
    cold = quote(f"rocksdb://{path}/cold", safe="")
    return f"tiered://?hot={hot}&cold={cold}"


def build_contenders(engines: set[str]) -> list[Contender]:
    """The contenders of the selected engine families, in table order."""
    out: list[Contender] = []
    if "memory" in engines:
        out += [Framework("aurora memory", "memory", lambda _p: "memory://"), DictOrjson()]
    if "rocksdb" in engines:
        out += [Framework("aurora rocksdb", "rocksdb", _file_url("rocksdb")), RawRocksDB()]
    if "lmdb" in engines:
        # Each LMDB write commits with fsync (the plugin's default sync=true): fewer ops.
        out += [
            Framework("aurora lmdb", "lmdb", _file_url("lmdb"), write_scale=0.05),
            RawLMDB(write_scale=0.05),
        ]
    if "tiered" in engines:
        out += [Framework("aurora tiered", "tiered", _tiered_url, write_scale=0.05)]
    if "alt" in engines:
        out += [
            PlainDict(),
            DiskCache(write_scale=0.25),
            SqliteDictAlt(write_scale=0.02, read_scale=0.25),
            Shelve(write_scale=0.02, read_scale=0.5),
        ]
    return out


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"


def try_open(c: Contender, workdir: str) -> str | None:
    """Open ``c`` in a fresh directory; return why it cannot run, or None."""
    d = os.path.join(workdir, c.name.replace(" ", "_").replace("+", "_"))
    os.makedirs(d, exist_ok=True)
    c.dir = d
    try:
        c.open(d)
    except Exception as exc:
        return _why(exc)
    return None


# --------------------------------------------------------------------------- measuring


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter_ns()
    result = fn(*args)
    return (time.perf_counter_ns() - t0) / 1e3, result


def round_inputs(r: int, size: int, m: int, pool: list[Any]) -> dict[str, Any]:
    rnd = random.Random(1000 + r)
    tenant_n = min(size, SCAN_TENANT_RECORDS)
    hits = [key_of(rnd.randrange(tenant_n)) for _ in range(m)]
    return {
        "hits": hits,
        "misses": [f"miss-{r:02d}-{i:06d}" for i in range(m)],
        "new": [f"new-{r:02d}-{i:06d}" for i in range(m)],
        "values": [pool[(r * 7919 + i) % len(pool)] for i in range(m)],
        "batches": [
            [(key_of(rnd.randrange(tenant_n)), pool[(i + j) % len(pool)]) for j in range(BATCH)]
            for i in range(max(1, m // BATCH))
        ],
    }


SLICES = 4


def sliced(fn: Callable[..., Any], *columns: list[Any]) -> tuple[float, int]:
    """Run ``fn`` over ``SLICES`` consecutive slices of the argument columns; return the
    fastest slice's (microseconds, operations) scaled to the whole run. On a shared
    machine the fastest slice is the one least disturbed by other processes; every
    contender is measured the same way."""
    n = len(columns[0])
    if n < SLICES * 10:
        return timed(fn, *columns)[0], n
    step = n // SLICES
    best = min(
        timed(fn, *(col[i * step : (i + 1) * step] for col in columns))[0] / step
        for i in range(SLICES)
    )
    return best * n, n


def run_op(c: Contender, op: str, inp: dict[str, Any], tenant_n: int) -> tuple[float, int]:
    """Run ``op`` once on ``c``; return (total microseconds, operations done)."""
    scale = c.op_scale.get(op, c.write_scale if op in WRITE_OPS else c.read_scale)
    m = max(10, int(len(inp["hits"]) * scale))
    hits, vals, new = inp["hits"][:m], inp["values"][:m], inp["new"][:m]
    if op == "put":
        return sliced(c.put, hits, vals)
    if op == "get_hit":
        return sliced(c.get, hits)
    if op == "get_miss":
        return sliced(c.get, inp["misses"][:m])
    if op == "has":
        return sliced(c.has, hits)
    if op == "insert":
        return sliced(c.insert, new, vals)
    if op == "delete":
        return sliced(c.delete, new)
    if op == "put_many":
        nb = max(1, m // BATCH)
        per_batch = sorted(timed(c.put_many, TENANT, b)[0] for b in inp["batches"][:nb])
        # The fastest quarter of the batches, for the same reason as sliced().
        fast = per_batch[: max(1, nb // SLICES)]
        return sum(fast) / len(fast) * nb, nb * BATCH
    if op == "async_get":
        return sliced(c.aget, hits)
    if op == "async_put":
        return sliced(c.aput, hits, vals)
    if op in ("scan_keys", "scan_items"):
        us, n = timed(c.scan_keys if op == "scan_keys" else c.scan_items)
        if n != tenant_n:
            raise RuntimeError(f"{c.name} {op} returned {n} records, expected {tenant_n}")
        return us, n
    raise ValueError(op)


def supports(c: Contender, op: str) -> bool:
    return c.has_async or not op.startswith("async_")


def load(c: Contender, size: int, data: list[tuple[str, Any]]) -> float:
    """Preload: the scanned tenant gets the first 100k records, the rest other tenants."""
    t0 = time.perf_counter()
    tenant_n = min(size, SCAN_TENANT_RECORDS)
    c.load(TENANT, data[:tenant_n])
    rest = data[tenant_n:]
    for i in range(0, len(rest), SCAN_TENANT_RECORDS):
        c.load(f"tenant-{i // SCAN_TENANT_RECORDS:03d}", rest[i : i + SCAN_TENANT_RECORDS])
    return time.perf_counter() - t0


def du(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------- the run


def bench_ops(
    contenders: list[Contender], ops: list[str], size: int, m: int, rounds: int, workdir: str
) -> tuple[dict[str, Any], dict[str, str], dict[str, int]]:
    """Preload every contender with ``size`` records, then run ``rounds`` interleaved
    rounds of ``ops``; return us/op per contender/op/round, skip reasons, disk sizes."""
    skipped: dict[str, str] = {}
    live: list[Contender] = []
    for c in contenders:
        why = try_open(c, workdir)
        if why is None:
            live.append(c)
        else:
            skipped[c.name] = why
            print(f"  skip {c.name}: {why}", flush=True)
    data = dataset(size)
    pool = [event(i, random.Random(i)) for i in range(997)]
    tenant_n = min(size, SCAN_TENANT_RECORDS)
    results: dict[str, Any] = {c.name: {"load_s": 0.0, "ops": {}} for c in live}
    for c in list(live):
        try:
            results[c.name]["load_s"] = load(c, size, data)
            print(f"  loaded {c.name}: {results[c.name]['load_s']:.1f} s", flush=True)
        except Exception as exc:
            skipped[c.name] = f"load failed: {_why(exc)}"
            print(f"  skip {c.name}: {skipped[c.name]}", flush=True)
            traceback.print_exc()
            live.remove(c)
            results.pop(c.name)
    del data
    for r in range(rounds):
        inp = round_inputs(r, size, m, pool)
        t0 = time.perf_counter()
        walls: list[tuple[float, str]] = []
        for op in ops:
            order = live[r % len(live) :] + live[: r % len(live)] if live else []
            for c in order:
                if not supports(c, op) or c.name in skipped:
                    continue
                if op.startswith("scan") and r >= c.scan_rounds:
                    continue
                try:
                    us, n = run_op(c, op, inp, tenant_n)
                except Exception as exc:
                    skipped[c.name] = f"{op} failed: {_why(exc)}"
                    print(f"  {c.name}: {skipped[c.name]}", flush=True)
                    traceback.print_exc()
                    continue
                results[c.name]["ops"].setdefault(op, []).append(us / n)
                walls.append((us / 1e6, f"{c.name} {op}"))
        slowest = ", ".join(f"{w:.1f} s {what}" for w, what in sorted(walls)[-3:][::-1])
        print(
            f"  round {r + 1}/{rounds}: {time.perf_counter() - t0:.1f} s (slowest: {slowest})",
            flush=True,
        )
    sizes: dict[str, int] = {}
    for c in live:
        try:
            c.close()
        except Exception as exc:
            print(f"  close {c.name}: {type(exc).__name__}: {exc}")
        if c.on_disk:
            sizes[c.name] = du(c.dir)
    for name in skipped:
        results.pop(name, None)
    return results, skipped, sizes


def disk_sizes(size: int, workdir: str) -> dict[str, Any]:
    """Size on disk of ``size`` records per engine and compression, written through the
    framework in batches and measured after close and a reopen (RocksDB flushes its
    memtable to SST files then, so compression shows)."""
    import aurora_storage

    urls = {
        f"rocksdb compression={c}": f"rocksdb://{{}}?compression={c}"
        for c in ("none", "snappy", "zstd", "lz4")
    }
    urls["lmdb"] = "lmdb://{}"
    out: dict[str, Any] = {}
    data = dataset(size)
    for label, pattern in urls.items():
        d = os.path.join(workdir, "disk-" + label.replace(" ", "_").replace("=", "_"))
        url = pattern.format(os.path.join(d, "store"))
        try:
            with aurora_storage.open(url) as repo:
                for i in range(0, size, 10_000):
                    repo.put_many(TENANT, data[i : i + 10_000])
            with aurora_storage.open(url):
                pass
        except Exception as exc:
            out[label] = f"skipped: {_why(exc)}"
            continue
        out[label] = du(d)
        shutil.rmtree(d, ignore_errors=True)
    return out


def mem_scans(engines: set[str], n: int, workdir: str) -> dict[str, Any]:
    """Peak memory growth of a scan over ``n`` records, one fresh process per engine."""
    out: dict[str, Any] = {}
    script = os.path.join(HERE, "memscan.py")
    targets = {"memory": "memory://", "rocksdb": "rocksdb://{}", "lmdb": "lmdb://{}"}
    for engine, pattern in targets.items():
        if engine not in engines:
            continue
        d = os.path.join(workdir, f"memscan-{engine}")
        url = pattern.format(os.path.join(d, "store"))
        steps = ["both"] if engine == "memory" else ["build", "scan"]
        row: dict[str, Any] = {}
        for step in steps:
            proc = subprocess.run(
                [sys.executable, script, step, url, str(n)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
                row = {"skipped": f"{step} failed: {tail}"}
                break
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        if "skipped" not in row and engine != "memory":
            row["disk_bytes"] = du(d)
        out[engine] = row
        print(f"  {engine}: {row}", flush=True)
        shutil.rmtree(d, ignore_errors=True)
    if "tiered" in engines:
        d = os.path.join(workdir, "memscan-tiered")
        proc = subprocess.run(
            [sys.executable, script, "rebuild", _tiered_url(d), str(n)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
            out["tiered rebuild"] = {"skipped": f"rebuild failed: {tail}"}
        else:
            out["tiered rebuild"] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  tiered rebuild: {out['tiered rebuild']}", flush=True)
        shutil.rmtree(d, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- report


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def paired(a: list[float], b: list[float]) -> float:
    """The ratio a/b: the median of the per-round ratios when both sides ran in every
    round (the two ran back to back then, so a slow spell of the machine hits both),
    else the ratio of the medians."""
    if len(a) == len(b):
        return med([x / y for x, y in zip(a, b, strict=True)])
    return med(a) / med(b)


def fmt(xs: list[float] | None) -> str:
    if not xs:
        return "-"
    m = med(xs)
    spread = (max(xs) - min(xs)) / m * 100 if m else 0.0
    digits = 2 if m < 10 else 1 if m < 100 else 0
    return f"{m:.{digits}f} ±{spread / 2:.0f}%"


def report(doc: dict[str, Any]) -> str:
    """The Markdown tables of a run."""
    res = doc["ops"]
    lines: list[str] = []
    families = [
        ("memory", "aurora memory", "dict+orjson"),
        ("rocksdb", "aurora rocksdb", "raw rocksdict"),
        ("lmdb", "aurora lmdb", "raw lmdb"),
    ]
    checks: list[tuple[str, float | None, str, bool | None]] = []
    lines.append(
        f"### Microseconds per operation ({doc['config']['size']:,} records, "
        f"median of {doc['config']['rounds']} rounds ± half the min-max spread)\n"
    )
    for fam, fw, raw in families:
        if fw not in res and raw not in res:
            continue
        lines.append(f"**{fam}**: aurora-storage vs {raw}\n")
        lines.append(f"| operation | {fw} | {raw} | ratio | target |")
        lines.append("| --- | ---: | ---: | ---: | --- |")
        for op in doc["config"]["ops"]:
            a = res.get(fw, {}).get("ops", {}).get(op)
            b = res.get(raw, {}).get("ops", {}).get(op)
            ratio = paired(a, b) if a and b else None
            target = None
            if op in POINT_OPS or op == "put_many":
                target = POINT_TARGET
            elif op.startswith("scan"):
                target = SCAN_TARGET
            rtxt = f"{ratio:.2f}" if ratio is not None else "-"
            if target is not None and ratio is not None and fam != "memory":
                ok = ratio <= target
                checks.append((f"{fam} {op}: aurora/raw <= {target}", ratio, rtxt, ok))
                ttxt = f"<= {target} {'ok' if ok else 'MISSED'}"
            elif fam == "memory":
                ttxt = "report"
            else:
                ttxt = ""
            label = f"{op} (per item, batches of {BATCH})" if op == "put_many" else op
            label = f"{op} (per item)" if op.startswith("scan") else label
            lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {rtxt} | {ttxt} |")
        lines.append("")
    # async next to sync
    fws = [n for n in res if n.startswith("aurora ")]
    if fws:
        lines.append("**async vs sync** (aurora-storage, same store)\n")
        lines.append("| store | get | async get | ratio | put | async put | ratio |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n in fws:
            o = res[n]["ops"]
            cells = [n]
            for s, a in (("get_hit", "async_get"), ("put", "async_put")):
                if o.get(s) and o.get(a):
                    r = paired(o[a], o[s])
                    checks.append(
                        (f"{n} {a} / {s} <= {ASYNC_TARGET}", r, f"{r:.2f}", r <= ASYNC_TARGET)
                    )
                    cells += [fmt(o[s]), fmt(o[a]), f"{r:.2f}"]
                else:
                    cells += ["-", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    tiered = res.get("aurora tiered", {}).get("ops", {})
    hot = res.get("aurora lmdb", {}).get("ops", {})
    cold = res.get("aurora rocksdb", {}).get("ops", {})
    if tiered:
        lines.append("**tiered** (hot lmdb, cold rocksdb, cache mode) vs direct tier calls\n")
        lines.append("| operation | tiered | direct | ratio | target |")
        lines.append("| --- | ---: | ---: | ---: | --- |")
        pairs: list[tuple[str, str, Callable[[str], float]]] = [
            ("put", "hot put + cold put", lambda o: med(hot[o]) + med(cold[o])),
            ("put_many", "hot + cold put_many", lambda o: med(hot[o]) + med(cold[o])),
            ("get_hit", "hot get", lambda o: med(hot[o])),
            ("has", "hot has", lambda o: med(hot[o])),
        ]
        for op, label, direct in pairs:
            if not tiered.get(op) or not hot.get(op) or (label.count("cold") and not cold.get(op)):
                continue
            dv = direct(op)
            r = med(tiered[op]) / dv
            ok = r <= POINT_TARGET
            checks.append((f"tiered {op} <= {POINT_TARGET}x {label}", r, f"{r:.2f}", ok))
            lines.append(
                f"| {op} | {fmt(tiered[op])} | {dv:.2f} ({label}) | {r:.2f} | "
                f"<= {POINT_TARGET} {'ok' if ok else 'MISSED'} |"
            )
        lines.append("")
    # everything side by side
    names = list(res)
    lines.append("**All contenders** (us/op, median)\n")
    lines.append("| operation | " + " | ".join(names) + " |")
    lines.append("| --- |" + " ---: |" * len(names))
    for op in doc["config"]["ops"]:
        cells = []
        for n in names:
            xs = res[n]["ops"].get(op)
            cells.append(f"{med(xs):.2f}" if xs else "-")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines.append("")
    dc = res.get("diskcache", {}).get("ops", {}).get("put")
    if dc:
        for n in fws:
            p = res[n]["ops"].get("put")
            if p:
                f = med(dc) / med(p)
                checks.append(
                    (
                        f"{n} put throughput >= {DISKCACHE_FACTOR:.0f}x diskcache's",
                        f,
                        f"{f:.1f}x",
                        f >= DISKCACHE_FACTOR,
                    )
                )
    if doc.get("disk"):
        lines.append(f"**Size on disk** ({doc['config']['size']:,} records of ~200-byte events)\n")
        lines.append("| store | MiB | bytes/record |")
        lines.append("| --- | ---: | ---: |")
        for label, b in doc["disk"].items():
            if isinstance(b, int):
                lines.append(f"| {label} | {b / 2**20:.1f} | {b / doc['config']['size']:.0f} |")
            else:
                lines.append(f"| {label} | {b} | |")
        lines.append("")
    if doc.get("memscan"):
        n = doc["config"]["scan_size"]
        lines.append(f"**Scan of {n:,} records** (fresh process; RSS growth at the peak)\n")
        lines.append(
            "| engine | us/item | RSS growth MiB | anonymous (heap) MiB | file-backed "
            "MiB | build s | disk MiB |"
        )
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for eng, row in doc["memscan"].items():
            if eng == "tiered rebuild":
                continue
            if "skipped" in row:
                lines.append(f"| {eng} | {row['skipped']} | | | | | |")
                continue
            disk = f"{row['disk_bytes'] / 2**20:.0f}" if "disk_bytes" in row else "-"
            lines.append(
                f"| {eng} | {row['us_per_item']:.2f} | {row['rss_growth_mb']:.1f} | "
                f"{row['anon_growth_mb']:.1f} | {row['file_growth_mb']:.1f} | "
                f"{row['build_s']:.1f} | {disk} |"
            )
            if eng != "memory":
                g = row["anon_growth_mb"]
                checks.append(
                    (
                        f"{eng} scan of {n:,}: heap growth < {SCAN_RSS_MB:.0f} MiB",
                        g,
                        f"{g:.1f} MiB",
                        g < SCAN_RSS_MB,
                    )
                )
        lines.append("")
    rb = doc.get("memscan", {}).get("tiered rebuild")
    if rb:
        n = doc["config"]["scan_size"]
        if "skipped" in rb:
            lines.append(f"**Tiered rebuild of {n:,} records**: {rb['skipped']}\n")
        else:
            lines.append(
                f"**Tiered rebuild of {n:,} records** (hot lmdb from cold rocksdb): "
                f"{rb['rebuild_s']:.1f} s, {rb['us_per_item']:.2f} us/record, heap after "
                f"minus before {rb['anon_growth_mb']:.1f} MiB (building them through the pair took "
                f"{rb['build_s']:.1f} s)\n"
            )
    if checks:
        lines.append("**Targets**\n")
        lines.append("| target | measured | result |")
        lines.append("| --- | ---: | --- |")
        for label, _v, txt, met in checks:
            lines.append(f"| {label} | {txt} | {'ok' if met else 'MISSED'} |")
        lines.append("")
    if doc.get("skipped"):
        lines.append("**Skipped**\n")
        for name, why in doc["skipped"].items():
            lines.append(f"- {name}: {why}")
        lines.append("")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            d: ver(d)
            for d in ("aurora-storage", "rocksdict", "lmdb", "orjson", "diskcache", "sqlitedict")
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    ap.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated subset of {','.join(ENGINES)}",
    )
    ap.add_argument("--ops", default=",".join(OPS), help=f"subset of {','.join(OPS)}")
    ap.add_argument("--size", type=int, help="records preloaded for the timed ops [100000]")
    ap.add_argument("--scan-size", type=int, help="records of the memory scan [1000000]")
    ap.add_argument("--ops-per-round", type=int, help="point operations per round [20000]")
    ap.add_argument("--rounds", type=int, help="interleaved rounds [5]")
    ap.add_argument("--no-disk", action="store_true", help="skip the size-on-disk table")
    ap.add_argument("--no-memscan", action="store_true", help="skip the memory scan")
    ap.add_argument(
        "--memscan-engines",
        default="rocksdb,lmdb,tiered",
        help="engines of the big scan (tiered: its rebuild); memory:// holds the whole "
        "store in RAM and is left out unless named",
    )
    ap.add_argument(
        "--no-workloads", action="store_true", help="skip workloads.py (and the scaling smoke)"
    )
    ap.add_argument("--workdir", help="where stores are created [a temporary directory]")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="results directory")
    a = ap.parse_args(argv)
    size = a.size or (2_000 if a.quick else 100_000)
    scan_size = a.scan_size or (5_000 if a.quick else 1_000_000)
    m = a.ops_per_round or (1_000 if a.quick else 20_000)
    rounds = a.rounds or (2 if a.quick else 5)
    engines = {e.strip() for e in a.engines.split(",") if e.strip()}
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    for bad in (engines - set(ENGINES)) | (set(ops) - set(OPS)):
        ap.error(f"unknown engine or operation {bad!r}")
    workdir = a.workdir or tempfile.mkdtemp(prefix="aurora-bench-")
    os.makedirs(workdir, exist_ok=True)
    started = time.time()
    doc: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "config": {
            "size": size,
            "scan_size": scan_size,
            "ops_per_round": m,
            "rounds": rounds,
            "ops": ops,
            "engines": sorted(engines),
            "quick": a.quick,
            "batch": BATCH,
        },
    }
    try:
        print(f"# timed operations: {size:,} records, {m:,} ops/round, {rounds} rounds", flush=True)
        results, skipped, sizes = bench_ops(
            build_contenders(engines), ops, size, m, rounds, workdir
        )
        doc["ops"], doc["skipped"] = results, skipped
        doc["disk"] = {f"{n} (after the run)": b for n, b in sizes.items()}
        if not a.no_disk and engines & {"rocksdb", "lmdb"}:
            print(f"# size on disk per compression: {size:,} records", flush=True)
            doc["disk"].update(disk_sizes(size, workdir))
        if not a.no_memscan:
            print(f"# memory of a scan over {scan_size:,} records", flush=True)
            chosen = {e.strip() for e in a.memscan_engines.split(",")} & engines
            doc["memscan"] = mem_scans(chosen, scan_size, workdir)
    finally:
        if not a.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        for leftover in glob.glob(os.path.join(workdir, "memscan-*")):
            shutil.rmtree(leftover, ignore_errors=True)
    doc["elapsed_s"] = round(time.time() - started, 1)
    table = report(doc)
    doc["table"] = table
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    name = f"bench-{'quick-' if a.quick else ''}{stamp}.json"
    for path in (os.path.join(a.out, name), os.path.join(a.out, "latest.json")):
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
    print()
    print(table)
    print(f"elapsed {doc['elapsed_s']} s; results in {os.path.join(a.out, name)}")
    # A backend that is not installed is skipped; one that breaks during the run fails it.
    broken = [n for n, why in doc["skipped"].items() if " failed: " in why]
    # The memory runs too: a step that fails is a broken benchmark, not a skip (a wrong
    # assertion in memscan.py's build step went unnoticed while the run exited 0).
    for name, row in (doc.get("memscan") or {}).items():
        if isinstance(row, dict) and " failed: " in str(row.get("skipped", "")):
            broken.append(f"memscan {name}")
    if not a.no_workloads:
        broken += run_workloads(a.quick, engines, a.out)
    if broken:
        print(f"FAILED during the run: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def run_workloads(quick: bool, engines: set[str], out: str) -> list[str]:
    """Run workloads.py (and, with ``quick``, scaling.py at tiny sizes into a temporary
    directory, plot included) as child processes; return the names of those that failed."""
    chosen = [e for e in ("rocksdb", "lmdb") if e in engines]
    if not chosen:
        return []
    runs: list[tuple[str, list[str]]] = [
        (
            "workloads.py",
            [os.path.join(HERE, "workloads.py"), "--engines", ",".join(chosen), "--out", out]
            + (["--quick"] if quick else []),
        )
    ]
    tmp = tempfile.mkdtemp(prefix="aurora-scaling-smoke-")
    if quick:
        runs.append(
            (
                "scaling.py",
                [
                    os.path.join(HERE, "scaling.py"),
                    *("--sizes", "1k,2k", "--trials", "3", "--engines", ",".join(chosen)),
                    *("--out", tmp, "--plot", os.path.join(tmp, "scaling.png")),
                ],
            )
        )
    failed: list[str] = []
    try:
        for name, args in runs:
            print(f"\n# {name} {' '.join(args[1:])}", flush=True)
            t0 = time.perf_counter()
            if subprocess.run([sys.executable, *args], check=False).returncode != 0:
                failed.append(name)
            print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
