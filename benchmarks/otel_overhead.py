"""What the observability layer costs per operation: off (never instrumented, and
instrumented then uninstrumented), spans and metrics through the OpenTelemetry SDK
(spans to a no-op processor, metrics to an in-memory reader), and slow-operation
logging only.

Run from the repository root (needs the SDK, which the test extra installs)::

    .venv/bin/python benchmarks/otel_overhead.py [--ops 20000] [--rounds 5]

Prints a Markdown table of the median microseconds per get and per put over the rounds
(rounds interleave the variants, so machine load hits them alike).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aurora_storage
from aurora_storage.observability import instrument, uninstrument


def _variants(tmp: str) -> dict[str, Callable[[], Any]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider = TracerProvider()  # spans are made and ended, exported nowhere
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def plain(name: str) -> Any:
        # sync=false: the figures are the CPU cost per call, not fsync latency.
        return aurora_storage.open(f"lmdb://{tmp}/{name}?sync=false")

    def off_again() -> Any:
        return uninstrument(instrument(plain("off-again"), spans=False, metrics=False))

    def full() -> Any:
        return instrument(
            plain("otel"), tracer_provider=tracer_provider, meter_provider=meter_provider
        )

    def logs() -> Any:
        return instrument(plain("logs"), spans=False, metrics=False, slow_ms=1000.0)

    return {
        "off (never instrumented)": lambda: plain("off"),
        "off (instrumented, then uninstrumented)": off_again,
        "slow-operation logging only": logs,
        "spans + metrics (SDK)": full,
    }


def _time(fn: Callable[[Any, int], Any], repo: Any, ops: int) -> float:
    start = time.perf_counter()
    for i in range(ops):
        fn(repo, i)
    return (time.perf_counter() - start) / ops * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="aurora-otel-bench-")
    try:
        repos = {name: make() for name, make in _variants(tmp).items()}
        for repo in repos.values():
            repo.put_many("acme", ((i, {"i": i}) for i in range(args.ops)))
        gets: dict[str, list[float]] = {n: [] for n in repos}
        puts: dict[str, list[float]] = {n: [] for n in repos}
        names = list(repos)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                repo = repos[name]
                gets[name].append(_time(lambda r, i: r.get("acme", i), repo, args.ops))
                puts[name].append(_time(lambda r, i: r.put("acme", i, {"i": i}), repo, args.ops))
        for repo in repos.values():
            repo.close()
        print(f"\nLMDB, {args.ops} operations x {args.rounds} rounds; median (min-max) us/op\n")
        print("| variant | get | put |")
        print("| --- | ---: | ---: |")
        for name in names:
            g, p = gets[name], puts[name]
            print(
                f"| {name} | {statistics.median(g):.2f} ({min(g):.2f}-{max(g):.2f}) "
                f"| {statistics.median(p):.2f} ({min(p):.2f}-{max(p):.2f}) |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
