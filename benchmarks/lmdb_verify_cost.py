"""What a full verification of an LMDB store costs, per GiB of data file.

    .venv/bin/python benchmarks/lmdb_verify_cost.py            # a ~256 MiB store
    .venv/bin/python benchmarks/lmdb_verify_cost.py --mib 64   # smaller, quicker

Builds a store of small JSON records (the projection store's usual shape), closes it,
then times, each as the median of ``--rounds`` runs:

* the structural walk alone (``lmdb.verify``, what ``verify=auto`` runs at an open
  after an unclean close), and
* ``Repository.verify()`` (the walk, plus every record read through the engine with its
  envelope checksum and decoded by the codec),
* a read-only open of a compact copy of the store (what ``backup`` writes: no
  clean-close record, so ``verify=auto`` walks it at every read-only open; every read
  command on a backup directory pays this), against the same open with
  ``verify=false``,

and prints them in seconds per GiB of data file. docs/backends/lmdb.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from lmdb import verify as lmdb_verify

import aurora_storage


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="data file size to build")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    base = tempfile.mkdtemp(prefix="aurora-verify-cost-")
    path = os.path.join(base, "store")
    try:
        value = {"status": "paid", "total": 1234.5, "items": ["a", "b"], "pad": "x" * 150}
        with aurora_storage.open(f"lmdb://{path}?sync=false") as repo:
            batch = 0
            while os.path.getsize(os.path.join(path, "data.mdb")) < args.mib << 20:
                repo.put_many("t", {(batch, i): value for i in range(20_000)})
                batch += 1
            records = repo.count("t")
            copy = os.path.join(base, "copy")
            os.mkdir(copy)
            repo.copy(copy, compact=True)  # type: ignore[attr-defined]  # LMDBRepository.copy; open() is typed as Repository
        size = os.path.getsize(os.path.join(path, "data.mdb"))
        gib = size / (1 << 30)
        copy_gib = os.path.getsize(os.path.join(copy, "data.mdb")) / (1 << 30)
        walk: list[float] = []
        full: list[float] = []
        checked_open: list[float] = []
        plain_open: list[float] = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            problems = lmdb_verify.verify(path, True)  # type: ignore[no-untyped-call]  # py-lmdb's verify module is untyped
            walk.append(time.perf_counter() - t)
            assert not problems, problems
            with aurora_storage.open(f"lmdb://{path}?verify=false") as repo:
                t = time.perf_counter()
                report = repo.verify()
                full.append(time.perf_counter() - t)
            assert report.ok, report
            assert report.records == records, report
            for url, times in (
                (f"lmdb://{copy}?read_only=true", checked_open),
                (f"lmdb://{copy}?read_only=true&verify=false", plain_open),
            ):
                t = time.perf_counter()
                with aurora_storage.open(url) as repo:
                    times.append(time.perf_counter() - t)
                    assert repo.stats()["verified_at_open"] is ("verify=false" not in url)
        print(f"store: {records} records, data file {size / (1 << 20):.0f} MiB")
        w, f = statistics.median(walk), statistics.median(full)
        print(f"structural walk (lmdb.verify):        {w:.2f} s = {w / gib:.1f} s/GiB")
        print(f"Repository.verify() (walk + records): {f:.2f} s = {f / gib:.1f} s/GiB")
        c, o = statistics.median(checked_open), statistics.median(plain_open)
        print(
            f"read-only open of a compact copy ({copy_gib * 1024:.0f} MiB): {c:.2f} s "
            f"= {c / copy_gib:.1f} s/GiB (with verify=false: {o:.3f} s)"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
