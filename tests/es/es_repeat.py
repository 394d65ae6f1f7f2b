"""Repeat eventsourcing's concurrency test cases on every engine, N runs in a row.

    .venv/bin/python tests/es/es_repeat.py            # 50 runs per engine
    .venv/bin/python tests/es/es_repeat.py --runs 5 --engines memory

The cases: ``ApplicationRecorderTestCase.test_concurrent_no_conflicts`` (10 writer
threads, 100 inserts of 100 events, two reader threads), ``test_concurrent_throughput``
and ``NonInterleavingNotificationIDsBaseCase.test`` (two threads racing 1,000-event
inserts whose notification ids must not interleave). Each engine's cases run in one
pytest process, the test file given N times (``--keep-duplicates``), so every run uses
a fresh store; the script stops at the first failing engine and exits non-zero.
Kept out of the test suite to keep CI short; its result is reported in the docs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SELECT = "test_concurrent_no_conflicts or test_concurrent_throughput or NonInterleaving"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--engines", default="memory,rocksdb,lmdb")
    a = ap.parse_args(argv)
    for engine in a.engines.split(","):
        path = str(HERE / f"test_es_{engine.strip()}.py")
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--keep-duplicates",
                "-q",
                "-p",
                "no:cacheprovider",
                "-k",
                SELECT,
                *([path] * a.runs),
            ],
            capture_output=True,
            text=True,
        )
        tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "(no output)"
        print(f"{engine}: {a.runs} runs: {tail} ({time.monotonic() - started:.0f} s)")
        if proc.returncode != 0:
            print(proc.stdout[-5000:], proc.stderr[-2000:], sep="\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
