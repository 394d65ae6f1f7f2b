"""Framework cost by named workload: aurora-storage next to the raw engine, paired trials.

    python benchmarks/workloads.py                      # every workload, RocksDB and LMDB
    python benchmarks/workloads.py --quick              # tiny sizes: proves it runs (CI)
    python benchmarks/workloads.py --engines lmdb --workloads get_hit,get_miss --trials 201

Each workload runs as many short trials. In every trial both sides do the same work, one
after the other, and which side goes first alternates from trial to trial; each side
reads its own sample of keys (a side must not find in the CPU caches what the other just
read). A trial gives one ratio (aurora-storage's time over the raw side's); the table
shows the median of those per-trial ratios with the tenth and ninetieth percentile
beside it, and each side's median microseconds per item. On a shared machine the
absolute figures move with the load; the per-trial ratios are what carries over.

The raw side (benchmarks/contenders.py, ``StoredKeysRocksDB`` / ``StoredKeysLMDB``) is
rocksdict or py-lmdb with the plugin's default options and durability, writing and
reading the very same key bytes as aurora-storage and orjson values (aurora-storage's
default codec); it skips what the framework adds: validation, dispatch, error
translation, LMDB's value checksum.

The goals printed next to the ratios are issue #17's; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import aurora_storage  # noqa: E402
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository  # noqa: E402
from contenders import StoredKeysLMDB, StoredKeysRocksDB  # noqa: E402
from workload import TENANT, event, key_of  # noqa: E402

#: Workload id -> (description, {engine: goal of the aurora/raw ratio}), issue #17.
WORKLOADS: dict[str, tuple[str, dict[str, float]]] = {
    "bulk_load": (
        "bulk load into a fresh store: put_many, sequential new keys, batches of 1,000 (per item)",
        {"rocksdb": 1.15, "lmdb": 1.15},
    ),
    "bulk_10k": (
        "bulk load into a fresh store: put_many in chunks of 10,000 (per item)",
        {"lmdb": 1.3},
    ),
    "overwrite": ("random overwrite into the preloaded store: put", {}),
    "get_hit": ("hot-key reads: get, key present", {"rocksdb": 1.10, "lmdb": 1.10}),
    "get_miss": ("misses: get, key absent", {"rocksdb": 1.25, "lmdb": 1.25}),
    "scan": ("full scan of the tenant: items() (per item)", {}),
    "tiered_write": (
        "tiered write, projection mode, vs a plain cold put plus a hot put",
        {"tiered": 1.5},
    ),
    "tiered_write_interleaved": (
        "tiered write, projection mode, vs a cold put and a hot put per record, interleaved",
        {},
    ),
}
ENGINES = ("rocksdb", "lmdb")
BATCH = 1_000
CHUNK = 10_000


@dataclass
class Result:
    """One workload on one engine: per-trial microseconds per item of both sides."""

    workload: str
    engine: str
    items_per_trial: int
    aurora_us: list[float] = field(default_factory=list)
    raw_us: list[float] = field(default_factory=list)
    raw_label: str = "raw engine"
    note: str = ""

    @property
    def ratios(self) -> list[float]:
        return [a / r for a, r in zip(self.aurora_us, self.raw_us, strict=True)]


@dataclass
class Config:
    records: int
    trials: int
    reads: int  # gets per trial
    rocksdb_puts: int  # puts per trial on RocksDB (no fsync)
    lmdb_puts: int  # puts per trial on LMDB (each commit fsyncs by default)
    bulk_batches: int  # batches of 1,000 per bulk-load trial
    chunk_trials: int
    scan_trials: int
    tiered_writes: int
    lmdb_sync: bool


def quantile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` (nearest rank; the min/max for tiny samples)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def paired(
    res: Result,
    aurora: Callable[[Any], object],
    raw: Callable[[Any], object],
    inputs: Callable[[int, str], Any],
    trials: int,
) -> Result:
    """Run ``trials`` paired trials: each side once on its own input, the side going
    first alternating; record microseconds per item of each side."""
    per = res.items_per_trial
    # One untimed trial first (input index ``trials``, unused by the timed ones): the
    # first call of a path pays for imports, caches and the engine's first blocks.
    for side, fn in (("aurora", aurora), ("raw", raw)):
        fn(inputs(trials, side))
    for t in range(trials):
        args = {"aurora": inputs(t, "aurora"), "raw": inputs(t, "raw")}
        order = ("aurora", "raw") if t % 2 == 0 else ("raw", "aurora")
        took: dict[str, float] = {}
        for side in order:
            fn = aurora if side == "aurora" else raw
            t0 = time.perf_counter()
            fn(args[side])
            took[side] = time.perf_counter() - t0
        res.aurora_us.append(took["aurora"] / per * 1e6)
        res.raw_us.append(took["raw"] / per * 1e6)
    return res


# --------------------------------------------------------------------------- the sides


def _value_pool() -> list[dict[str, Any]]:
    return [event(i, random.Random(i)) for i in range(997)]


def open_pair(engine: str, workdir: str, lmdb_sync: bool) -> tuple[Any, Any]:
    """A fresh aurora-storage store and a fresh raw store of ``engine`` under ``workdir``."""
    os.makedirs(os.path.join(workdir, "raw"), exist_ok=True)
    store = os.path.join(workdir, "aurora", "store")
    raw: Any
    if engine == "rocksdb":
        repo = aurora_storage.open(f"rocksdb://{store}")
        raw = StoredKeysRocksDB()
    else:
        sync = "true" if lmdb_sync else "false"
        repo = aurora_storage.open(f"lmdb://{store}?sync={sync}&metasync={sync}")
        raw = StoredKeysLMDB(sync=lmdb_sync)
    raw.open(os.path.join(workdir, "raw"))
    return repo, raw


def _aurora_put_many(repo: Any) -> Callable[[list[list[tuple[str, Any]]]], None]:
    def run(batches: list[list[tuple[str, Any]]]) -> None:
        put_many = repo.put_many
        for b in batches:
            put_many(TENANT, b)

    return run


def _raw_put_many(raw: Any) -> Callable[[list[list[tuple[str, Any]]]], None]:
    def run(batches: list[list[tuple[str, Any]]]) -> None:
        put_many = raw.put_many
        for b in batches:
            put_many(TENANT, b)

    return run


def _aurora_put(repo: Any) -> Callable[[tuple[list[str], list[Any]]], None]:
    def run(kv: tuple[list[str], list[Any]]) -> None:
        put = repo.put
        for k, v in zip(*kv, strict=True):
            put(TENANT, k, v)

    return run


def _raw_put(raw: Any) -> Callable[[tuple[list[str], list[Any]]], None]:
    def run(kv: tuple[list[str], list[Any]]) -> None:
        raw.put(*kv)

    return run


def _aurora_get(repo: Any) -> Callable[[list[str]], None]:
    def run(keys: list[str]) -> None:
        get = repo.get
        for k in keys:
            get(TENANT, k)

    return run


def _aurora_scan(repo: Any, expected: int) -> Callable[[None], None]:
    def run(_: None) -> None:
        n = 0
        for _item in repo.items(TENANT):
            n += 1
        if n != expected:
            raise RuntimeError(f"aurora scan returned {n} records, expected {expected}")

    return run


def _raw_scan(raw: Any, expected: int) -> Callable[[None], None]:
    def run(_: None) -> None:
        n = raw.scan_items()
        if n != expected:
            raise RuntimeError(f"raw scan returned {n} records, expected {expected}")

    return run


def _actor(record: HistoryRecord, state: ProjectionState) -> None:
    """The projection of the tiered workload: each actor's latest event (one hot put)."""
    state.put(record.value["actor"]["id"], record.value)


# --------------------------------------------------------------------------- workloads


def bulk(
    engine: str, workdir: str, cfg: Config, chunk: int, batches: int, trials: int, name: str
) -> Result:
    """put_many of new sequential keys into a fresh store pair, ``batches`` batches of
    ``chunk`` items per trial (both sides write the same keys, each into its own store)."""
    repo, raw = open_pair(engine, workdir, cfg.lmdb_sync)
    pool = _value_pool()
    res = Result(name, engine, chunk * batches)

    def inputs(t: int, _side: str) -> list[list[tuple[str, Any]]]:
        # The untimed first trial (t == trials) writes the first keys: keys stay sequential.
        base = (0 if t == trials else t + 1) * chunk * batches
        return [
            [
                (key_of(base + b * chunk + j), pool[(base + b * chunk + j) % 997])
                for j in range(chunk)
            ]
            for b in range(batches)
        ]

    try:
        return paired(res, _aurora_put_many(repo), _raw_put_many(raw), inputs, trials)
    finally:
        repo.close()
        raw.close()


def preloaded(engine: str, workdir: str, cfg: Config, names: list[str]) -> list[Result]:
    """The workloads on a store pair preloaded with ``cfg.records`` records."""
    repo, raw = open_pair(engine, workdir, cfg.lmdb_sync)
    n = cfg.records
    rnd = random.Random(11)
    for i in range(0, n, CHUNK):
        items = [(key_of(j), event(j, rnd)) for j in range(i, min(n, i + CHUNK))]
        repo.put_many(TENANT, items)
        raw.put_many(TENANT, items)
    # The preloaded data is never freed: keep it out of the collector's full passes.
    gc.collect()
    gc.freeze()
    pool = _value_pool()
    out: list[Result] = []

    def sample(seed: int, m: int) -> list[int]:
        r = random.Random(seed)
        return [r.randrange(n) for _ in range(m)]

    try:
        side_no = {"aurora": 0, "raw": 1}
        for name in names:
            if name == "overwrite":
                m = cfg.rocksdb_puts if engine == "rocksdb" else cfg.lmdb_puts
                res = Result(name, engine, m)

                def puts(t: int, side: str, m: int = m) -> tuple[list[str], list[Any]]:
                    idx = sample(1_000 + 2 * t + side_no[side], m)
                    return [key_of(i) for i in idx], [pool[(i + t) % 997] for i in idx]

                out.append(paired(res, _aurora_put(repo), _raw_put(raw), puts, cfg.trials))
            elif name == "get_hit":
                res = Result(name, engine, cfg.reads)

                def hits(t: int, side: str) -> list[str]:
                    return [key_of(i) for i in sample(50_000 + 2 * t + side_no[side], cfg.reads)]

                out.append(paired(res, _aurora_get(repo), raw.get, hits, cfg.trials))
            elif name == "get_miss":
                res = Result(name, engine, cfg.reads)

                def misses(t: int, side: str) -> list[str]:
                    # Same length as a present key and spread over the tenant's range.
                    idx = sample(90_000 + 2 * t + side_no[side], cfg.reads)
                    return [f"evt-{i:07d}x" for i in idx]

                out.append(paired(res, _aurora_get(repo), raw.get, misses, cfg.trials))
            elif name == "scan":
                res = Result(name, engine, n)
                out.append(
                    paired(
                        res,
                        _aurora_scan(repo, n),
                        _raw_scan(raw, n),
                        lambda _t, _s: None,
                        cfg.scan_trials,
                    )
                )
            print(f"  {engine} {name}: {summary(out[-1])}", flush=True)
    finally:
        repo.close()
        raw.close()
        gc.unfreeze()
    return out


def tiered(workdir: str, cfg: Config, interleaved: bool) -> Result:
    """A tiered write in projection mode (hot LMDB ``sync=false``, cold RocksDB) next to
    the same record written by a plain cold put and the projection's hot put, on two
    plain stores of the same engines and settings. Not interleaved: all cold puts of the
    trial, then all hot puts (each engine's cost alone). Interleaved: cold put, hot put,
    record by record (what a tiered write does)."""
    d = os.path.join(workdir, "tiered-" + ("interleaved" if interleaved else "sum"))
    hot_url = f"lmdb://{d}/hot?sync=false"
    tier: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot_url),
        cold=aurora_storage.open(f"rocksdb://{d}/cold"),
        projection=_actor,
    )
    hot = aurora_storage.open(f"lmdb://{d}/direct-hot?sync=false")
    cold = aurora_storage.open(f"rocksdb://{d}/direct-cold")
    pool = _value_pool()
    m = cfg.tiered_writes
    name = "tiered_write_interleaved" if interleaved else "tiered_write"
    res = Result(name, "tiered", m, raw_label="cold put + hot put")

    def inputs(t: int, _side: str) -> list[tuple[str, Any]]:
        base = (0 if t == cfg.trials else t + 1) * m
        return [(key_of(base + i), pool[(base + i) % 997]) for i in range(m)]

    def aurora(items: list[tuple[str, Any]]) -> None:
        put = tier.put
        for k, v in items:
            put(TENANT, k, v)

    def direct(items: list[tuple[str, Any]]) -> None:
        cput, hput = cold.put, hot.put
        if interleaved:
            for k, v in items:
                cput(TENANT, k, v)
                hput(TENANT, v["actor"]["id"], v)
        else:
            for k, v in items:
                cput(TENANT, k, v)
            for _k, v in items:
                hput(TENANT, v["actor"]["id"], v)

    try:
        return paired(res, aurora, direct, inputs, cfg.trials)
    finally:
        tier.close()
        hot.close()
        cold.close()


# --------------------------------------------------------------------------- report


def summary(r: Result) -> str:
    ratios = r.ratios
    return (
        f"aurora {statistics.median(r.aurora_us):.2f} us, raw {statistics.median(r.raw_us):.2f} "
        f"us, ratio {statistics.median(ratios):.2f} "
        f"({quantile(ratios, 0.1):.2f}-{quantile(ratios, 0.9):.2f})"
    )


def _fmt(us: float) -> str:
    return f"{us:.0f}" if us >= 100 else f"{us:.2f}"


def table(results: list[Result]) -> str:
    """The Markdown table of ``results``, goals of issue #17 beside the ratios."""
    lines = [
        "| workload | engine | aurora us/item | raw us/item | ratio (median of trials) "
        "| p10-p90 | trials x items | goal |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        ratios = r.ratios
        ratio = statistics.median(ratios)
        goal = WORKLOADS[r.workload][1].get(r.engine)
        verdict = "-" if goal is None else f"<= {goal:.2f} {'met' if ratio <= goal else 'MISSED'}"
        lines.append(
            f"| {r.workload} | {r.engine} | {_fmt(statistics.median(r.aurora_us))} "
            f"| {_fmt(statistics.median(r.raw_us))} | {ratio:.2f} "
            f"| {quantile(ratios, 0.1):.2f}-{quantile(ratios, 0.9):.2f} "
            f"| {len(ratios)} x {r.items_per_trial:,} | {verdict} |"
        )
    return "\n".join(lines)


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` when files differ), or ``unknown``."""
    root = os.path.dirname(HERE)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("rocksdict", "lmdb", "orjson"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="subset of rocksdb,lmdb")
    ap.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}"
    )
    ap.add_argument("--records", type=int, help="records of the preloaded store [100000]")
    ap.add_argument("--trials", type=int, help="paired trials per point workload [61]")
    ap.add_argument(
        "--lmdb-sync",
        choices=("true", "false"),
        default="true",
        help="LMDB sync/metasync on both sides (the plugin's default: true)",
    )
    ap.add_argument("--workdir", help="where stores are created [a temporary directory]")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="results directory")
    a = ap.parse_args(argv)
    engines = [e for e in ENGINES if e in {x.strip() for x in a.engines.split(",")}]
    names = [w.strip() for w in a.workloads.split(",") if w.strip()]
    for bad in [w for w in names if w not in WORKLOADS]:
        ap.error(f"unknown workload {bad!r}")
    trials = a.trials or (4 if a.quick else 61)
    cfg = Config(
        records=a.records or (2_000 if a.quick else 100_000),
        trials=trials,
        reads=100 if a.quick else 500,
        rocksdb_puts=100 if a.quick else 500,
        lmdb_puts=5 if a.quick else 20,
        bulk_batches=1 if a.quick else 2,
        chunk_trials=2 if a.quick else max(5, trials // 3),
        scan_trials=2 if a.quick else max(5, trials // 4),
        tiered_writes=50 if a.quick else 200,
        lmdb_sync=a.lmdb_sync == "true",
    )
    workdir = a.workdir or tempfile.mkdtemp(prefix="aurora-workloads-")
    started = time.time()
    load_before = os.getloadavg()
    print(
        f"# framework cost by workload: {cfg.records:,} preloaded records, {trials} trials, "
        f"load average {load_before[0]:.2f}",
        flush=True,
    )
    results: list[Result] = []
    try:
        for engine in engines:
            d = os.path.join(workdir, engine)
            if "bulk_load" in names:
                results.append(
                    bulk(engine, d + "-bulk", cfg, BATCH, cfg.bulk_batches, trials, "bulk_load")
                )
                print(f"  {engine} bulk_load: {summary(results[-1])}", flush=True)
            if "bulk_10k" in names:
                results.append(
                    bulk(engine, d + "-chunks", cfg, CHUNK, 1, cfg.chunk_trials, "bulk_10k")
                )
                print(f"  {engine} bulk_10k: {summary(results[-1])}", flush=True)
            rest = [w for w in names if w in ("overwrite", "get_hit", "get_miss", "scan")]
            if rest:
                results += preloaded(engine, d + "-store", cfg, rest)
        for interleaved, name in ((False, "tiered_write"), (True, "tiered_write_interleaved")):
            if name in names:
                results.append(tiered(workdir, cfg, interleaved))
                print(f"  {name}: {summary(results[-1])}", flush=True)
    finally:
        if not a.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    text = table(results)
    doc = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "commit": git_commit(),
        "load_before": load_before,
        "load_after": load_after,
        "versions": versions(),
        "config": asdict(cfg) | {"engines": engines, "workloads": names, "quick": a.quick},
        "goals": {w: g for w, (_d, g) in WORKLOADS.items()},
        "descriptions": {w: d for w, (d, _g) in WORKLOADS.items()},
        "results": [asdict(r) | {"ratios": r.ratios} for r in results],
        "table": text,
    }
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    path = os.path.join(a.out, f"workloads-{'quick-' if a.quick else ''}{stamp}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print()
    print(
        f"{doc['started']}, commit {doc['commit']}, load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after, {doc['elapsed_s']} s"
    )
    print()
    print(text)
    print()
    for w in dict.fromkeys(r.workload for r in results):
        print(f"- {w}: {WORKLOADS[w][0]}")
    print(f"\nresults in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
