"""Peak memory and speed of one big scan, in a fresh process.

``python benchmarks/memscan.py build URL N`` writes N event records into tenant ``acme``;
``python benchmarks/memscan.py rebuild TIERED_URL N`` builds N records through a tiered
pair and times ``rebuild()``.
``python benchmarks/memscan.py scan URL N`` opens the store in a new process, scans all
items and prints JSON: resident memory before the scan and its peak growth during it,
both total (VmRSS, which includes LMDB's file-backed map pages) and anonymous (RssAnon,
the process's own heap: what "memory stays flat" means), and microseconds per item.
For ``memory://`` both steps run in one process (the store lives only there).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import aurora_storage
from aurora_storage.tiered import TieredRepository
from workload import TENANT, dataset

SAMPLE_EVERY = 10_000


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                out[name] = int(rest.split()[0]) * 1024
    return out


def build(repo: aurora_storage.Repository[Any, Any], n: int) -> None:
    """Write ``n`` records in batches of 10k (the data is generated per batch so the
    builder itself stays small)."""
    step = 10_000
    for lo in range(0, n, step):
        items = dataset(min(step, n - lo), seed=lo)
        items = [(f"evt-{lo + i:08d}", v) for i, (_, v) in enumerate(items)]
        repo.put_many(TENANT, items)


def scan(repo: aurora_storage.Repository[Any, Any], n: int) -> dict[str, float]:
    """Scan all items of the tenant, sampling memory; return the figures."""
    import gc

    gc.collect()
    before = _status()
    peak = dict(before)
    count = 0
    t0 = time.perf_counter()
    for _k, _v in repo.items(TENANT):
        count += 1
        if count % SAMPLE_EVERY == 0:
            for name, value in _status().items():
                peak[name] = max(peak[name], value)
    elapsed = time.perf_counter() - t0
    for name, value in _status().items():
        peak[name] = max(peak[name], value)
    if count != n:
        raise SystemExit(f"scan returned {count} records, expected {n}")
    return {
        "records": count,
        "us_per_item": elapsed / max(count, 1) * 1e6,
        "rss_before_mb": before["VmRSS"] / 2**20,
        "rss_growth_mb": (peak["VmRSS"] - before["VmRSS"]) / 2**20,
        "anon_growth_mb": (peak["RssAnon"] - before["RssAnon"]) / 2**20,
        "file_growth_mb": (peak["RssFile"] - before["RssFile"]) / 2**20,
    }


def main() -> None:
    mode, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "build":
        with aurora_storage.open(url) as repo:
            t0 = time.perf_counter()
            build(repo, n)
            print(json.dumps({"build_s": time.perf_counter() - t0}))
    elif mode == "scan":
        with aurora_storage.open(url) as repo:
            print(json.dumps(scan(repo, n)))
    elif mode == "rebuild":
        # A tiered pair: build history through it, then recompute hot from cold.
        with aurora_storage.open(url) as repo:
            assert isinstance(repo, TieredRepository)  # a tiered:// URL
            t0 = time.perf_counter()
            build(repo, n)
            out = {"build_s": time.perf_counter() - t0}
            before = _status()
            t0 = time.perf_counter()
            done = repo.rebuild()
            out["rebuild_s"] = time.perf_counter() - t0
            after = _status()
            if done != n:
                raise SystemExit(f"rebuild applied {done} records, expected {n}")
            out["us_per_item"] = out["rebuild_s"] / n * 1e6
            out["anon_growth_mb"] = (after["RssAnon"] - before["RssAnon"]) / 2**20
            print(json.dumps(out))
    elif mode == "both":
        with aurora_storage.open(url) as repo:
            t0 = time.perf_counter()
            build(repo, n)
            out = {"build_s": time.perf_counter() - t0}
            out.update(scan(repo, n))
            print(json.dumps(out))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
