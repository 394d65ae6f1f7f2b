"""Throughput and memory of the command line's bulk commands: export, import, copy, verify.

Each command runs as the real entry point in its own process; its peak RSS comes from
``wait4``'s resource usage (ru_maxrss) and is compared with the RSS of the same entry
point doing almost nothing (``count`` on the same store), so the figure is the memory the
bulk work added - it must not grow with the store (constant memory).

Run from the repository root::

    .venv/bin/python benchmarks/cli_throughput.py                  # 1,000,000 records
    .venv/bin/python benchmarks/cli_throughput.py --records 100000 # quicker

It prints a Markdown table: records per second (wall clock of the whole process, start-up
included) and the RSS growth over the baseline, per command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.path.join(os.path.dirname(sys.executable), "aurora-storage")


def _anon_rss(pid: int) -> int:
    """The process's anonymous resident memory (heap, not mapped files), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run(args: list[str]) -> tuple[float, float, int, int]:
    """Run the CLI; return (wall seconds, CPU seconds, peak RSS, peak anonymous RSS).

    Peak RSS includes the pages of memory-mapped store files the process touched (LMDB
    maps its whole data file; those pages are the page cache, reclaimable); the peak
    anonymous RSS (sampled every 20 ms from /proc) is the memory the process allocated.
    """
    start = time.perf_counter()
    proc = subprocess.Popen([CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    anon = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        anon = max(anon, _anon_rss(proc.pid))
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}): {err.decode()}")
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss * 1024, anon  # Linux reports ru_maxrss in KiB


_FILL = """
import sys, aurora_storage
url, n = sys.argv[1], int(sys.argv[2])
with aurora_storage.open(url) as repo:
    chunk = 50_000
    for base in range(0, n, chunk):
        tenant = ("acme", "beta", "gamma")[(base // chunk) % 3]
        repo.put_many(
            tenant,
            (
                (("event", i), {"i": i, "kind": "order-paid", "amount": i * 0.01})
                for i in range(base, min(n, base + chunk))
            ),
        )
"""


def _fill(url: str, n: int) -> None:
    # In a child process: on Linux a child's ru_maxrss starts from its parent's RSS at
    # fork(), so this process must stay small for the figures to be the CLI's own.
    subprocess.run([sys.executable, "-c", _FILL, url, str(n)], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores")
    args = parser.parse_args()
    n = args.records
    tmp = tempfile.mkdtemp(prefix="aurora-cli-bench-")
    try:
        rocks = f"rocksdb://{tmp}/src-rocksdb"
        print(f"filling {n} records into {rocks} ...", file=sys.stderr)
        _fill(rocks, n)
        _, _, baseline, baseline_anon = _run(["count", rocks, "acme"])
        dump = os.path.join(tmp, "dump.jsonl")
        rows: list[tuple[str, str, float, float, int, int]] = []
        jobs: list[tuple[str, list[str]]] = [
            ("export rocksdb -> file", ["export", rocks, "-o", dump, "-q"]),
            ("import file -> lmdb", ["import", f"lmdb://{tmp}/imported", dump, "-q"]),
            (
                "copy rocksdb -> lmdb (no verify)",
                ["copy", rocks, f"lmdb://{tmp}/copy1", "--no-verify", "-q"],
            ),
            (
                "copy lmdb -> rocksdb (+ verify)",
                ["copy", f"lmdb://{tmp}/copy1", f"rocksdb://{tmp}/copy2", "-q"],
            ),
            ("verify rocksdb", ["verify", rocks, "-q"]),
            ("verify lmdb", ["verify", f"lmdb://{tmp}/copy1", "-q"]),
        ]
        for name, cmd in jobs:
            elapsed, cpu, rss, anon = _run(cmd)
            rows.append((name, " ".join(["aurora-storage", *cmd]), elapsed, cpu, rss, anon))
            print(f"{name}: {elapsed:.1f} s", file=sys.stderr)
        print(
            f"\n{n:,} records; baseline (count): RSS {baseline / 2**20:.0f} MiB, "
            f"anonymous {baseline_anon / 2**20:.0f} MiB; load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs\n"
        )
        print(
            "| command | records/s (wall) | records per CPU-second | peak RSS "
            "| peak anonymous RSS | anonymous growth over baseline |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, _, elapsed, cpu, rss, anon in rows:
            print(
                f"| {name} | {n / elapsed:,.0f} | {n / cpu:,.0f} | {rss / 2**20:.0f} MiB "
                f"| {anon / 2**20:.0f} MiB | {(anon - baseline_anon) / 2**20:+.0f} MiB |"
            )
        print("\nCommands:")
        for _, cmd_text, *_ in rows:
            print(f"    {cmd_text}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
