"""LMDB map growth while other threads read (issue #10, finding 6).

    .venv/bin/python benchmarks/lmdb_growth_readers.py

A store starts with a 64 KiB map; 100 ``put_many`` batches of 50 values of 3 KB make
it grow about a dozen times. Timed as the median of ``--rounds`` runs, each:

* without readers,
* with 3 threads looping on ``get`` (growth needs every thread out of LMDB: the
  writer-preferring gate makes new reads wait for it), and
* with the same readers and a map large enough from the start (no growth at all),
  which separates the cost of the readers themselves (they hold the GIL between
  LMDB calls) from the cost of growing while they read.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time

import aurora_storage


def once(readers: int, map_size: str) -> float:
    base = tempfile.mkdtemp(prefix="aurora-growth-")
    try:
        repo = aurora_storage.open(f"lmdb://{base}/s?map_size={map_size}&sync=false")
        repo.put("t", "k", 1)
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                repo.get("t", "k")

        threads = [threading.Thread(target=read) for _ in range(readers)]
        for t in threads:
            t.start()
        start = time.perf_counter()
        for b in range(100):
            repo.put_many("t", {(b, i): "x" * 3000 for i in range(50)})
        took = time.perf_counter() - start
        stop.set()
        for t in threads:
            t.join()
        assert repo.count("t") == 5001
        repo.close()
        return took
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    cases = {
        "growth, no readers": (0, "64KiB"),
        "growth, 3 reader threads": (3, "64KiB"),
        "no growth, 3 reader threads": (3, "1GiB"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (readers, size) in cases.items():  # interleaved: same machine state
            times[name].append(once(readers, size))
    for name, ts in times.items():
        print(
            f"{name:30} median {statistics.median(ts):.3f} s (min {min(ts):.3f}, max {max(ts):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
