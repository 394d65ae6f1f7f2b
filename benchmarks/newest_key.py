"""The newest key of a prefix: aurora-storage against the raw engine's seek (not a test).

    python benchmarks/newest_key.py [--trials 300] [--aggregates 2000] [--events 20]

``keys(t, prefix=(agg,), reverse=True, limit=1)`` - "the current version of this
aggregate", "the highest notification id" - against the raw engine's own seek to the
last key below the prefix's successor (RocksDB: an ``RdictIter`` ``seek_for_prev``;
LMDB: a cursor ``set_range`` + ``prev`` in a read transaction). Many short trials
(200 lookups of random aggregates each), alternating which side goes first, each side on
its own random sample; reported: the minimum and the tenth percentile per lookup, and
their ratio. Each side gets its lookup argument ready-made (aurora the prefix tuple, the
engine the encoded upper bound), so what is timed is the lookup itself; aurora's side
also returns the decoded key ``(aggregate, version)``, the engine's the key bytes.

Also ``memory://``: append one key, then read the newest (the case that used to re-sort
every key).

``--floor`` adds, on LMDB, three stripped-down lookups timed in the same loop, to show
what Python costs around the seek: ``bare`` (a method with the same keyword arguments,
the bounds-cache lookup and the one-element result iterator, no engine call),
``bare+last_key`` (plus ``Backend.last_key``) and ``bare+seek`` (plus the seek pasted
into the method). None checks its arguments or decodes the key.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aurora_storage
from aurora_storage._keys import encode_prefix, prefix_successor
from aurora_storage_lmdb import LMDBBackend
from aurora_storage_rocksdb import RocksDBBackend

PER_TRIAL = 200


def _stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return xs[0] / PER_TRIAL * 1e6, xs[len(xs) // 10] / PER_TRIAL * 1e6


def _compare(
    name: str, sides: dict[str, Callable[[list[int]], None]], aggs: int, trials: int
) -> None:
    """Print aurora's side against the raw side (the first two of ``sides``), then any
    further sides against the raw one."""
    times: dict[str, list[float]] = {s: [] for s in sides}
    names = list(sides)
    for t in range(trials):
        order = names if t % 2 == 0 else names[::-1]
        for side in order:
            sample = [random.randrange(aggs) for _ in range(PER_TRIAL)]
            t0 = time.perf_counter()
            sides[side](sample)
            times[side].append(time.perf_counter() - t0)
    (a_min, a_p10), (r_min, r_p10) = (_stats(times[s]) for s in names[:2])
    print(
        f"{name:8} aurora {a_min:6.2f} us (p10 {a_p10:6.2f})   raw {r_min:6.2f} us "
        f"(p10 {r_p10:6.2f})   ratio {a_min / r_min:4.2f}x (p10 {a_p10 / r_p10:4.2f}x)"
    )
    for extra in names[2:]:
        e_min, e_p10 = _stats(times[extra])
        print(f"{'':8} {extra:14} {e_min:6.2f} us (p10 {e_p10:6.2f})   {e_min / r_min:4.2f}x raw")


def _fill(repo: Any, aggs: int, events: int) -> None:
    for a in range(aggs):
        repo.put_many("bank", [((f"agg-{a}", v), {"v": v}) for v in range(1, events + 1)])


def _bounds(repo: Any, a: int) -> bytes:
    p = repo._prefix("bank") + encode_prefix((f"agg-{a}",))
    return prefix_successor(p)


def _aurora_side(repo: Any, aggs: int, events: int) -> Callable[[list[int]], None]:
    """The aurora side of a trial: the newest key of each sampled aggregate's prefix
    (the prefix tuples are built once, as the raw side's bounds are)."""
    prefixes = [(f"agg-{a}",) for a in range(aggs)]

    def aurora(sample: list[int]) -> None:
        keys = repo.keys
        for a in sample:
            (last,) = keys("bank", prefix=prefixes[a], reverse=True, limit=1)
            assert last[1] == events

    return aurora


def bench_rocksdb(tmp: str, aggs: int, events: int, trials: int) -> None:
    import rocksdict

    repo = aurora_storage.open(f"rocksdb://{tmp}/rocks")
    _fill(repo, aggs, events)
    backend = repo.backend
    assert isinstance(backend, RocksDBBackend)
    db = backend._db  # the engine handle under the repository: the raw side of the pair
    his = [_bounds(repo, a) for a in range(aggs)]
    aurora = _aurora_side(repo, aggs, events)

    def raw(sample: list[int]) -> None:
        for a in sample:
            ro = rocksdict.ReadOptions()
            hi = his[a]
            ro.set_iterate_upper_bound(hi)
            it = db.iter(ro)
            it.seek_for_prev(hi)
            if it.valid() and it.key() >= hi:
                it.prev()
            assert it.valid()
            del it

    _compare("rocksdb", {"aurora": aurora, "raw": raw}, aggs, trials)
    repo.close()


def _floor_sides(repo: Any, aggs: int) -> dict[str, Callable[[list[int]], None]]:
    """The stripped-down lookups of ``--floor`` (see the module docstring)."""
    prefixes = [(f"agg-{a}",) for a in range(aggs)]
    cache = {
        ("bank", p): (repo._prefix("bank") + encode_prefix(p), _bounds(repo, a), p[0])
        for a, p in enumerate(prefixes)
    }
    backend = repo.backend
    begin = backend._env.begin

    class Bare:
        def bare(
            self,
            tenant: str,
            *,
            prefix: Any = None,
            reverse: bool = False,
            limit: int | None = None,
        ) -> Any:
            _lo, _hi, first = cache[(tenant, prefix)]
            return iter(((first, 20),))

        def last_key(
            self,
            tenant: str,
            *,
            prefix: Any = None,
            reverse: bool = False,
            limit: int | None = None,
        ) -> Any:
            lo, hi, first = cache[(tenant, prefix)]
            backend.last_key(lo, hi)
            return iter(((first, 20),))

        def seek(
            self,
            tenant: str,
            *,
            prefix: Any = None,
            reverse: bool = False,
            limit: int | None = None,
        ) -> Any:
            _lo, hi, first = cache[(tenant, prefix)]
            txn = begin()
            cur = txn.cursor()
            cur.key() if (cur.prev() if cur.set_range(hi) else cur.last()) else None
            txn.abort()
            return iter(((first, 20),))

    bare = Bare()

    def side(method: Callable[..., Any]) -> Callable[[list[int]], None]:
        def run(sample: list[int]) -> None:
            for a in sample:
                (_last,) = method("bank", prefix=prefixes[a], reverse=True, limit=1)

        return run

    return {
        "bare": side(bare.bare),
        "bare+last_key": side(bare.last_key),
        "bare+seek": side(bare.seek),
    }


def bench_lmdb(tmp: str, aggs: int, events: int, trials: int, floor: bool = False) -> None:
    repo = aurora_storage.open(f"lmdb://{tmp}/lmdb")
    _fill(repo, aggs, events)
    backend = repo.backend
    assert isinstance(backend, LMDBBackend)
    env = backend._env  # the engine handle under the repository: the raw side of the pair
    his = [_bounds(repo, a) for a in range(aggs)]
    aurora = _aurora_side(repo, aggs, events)

    def raw(sample: list[int]) -> None:
        for a in sample:
            with env.begin() as txn:
                cur = txn.cursor()
                if cur.set_range(his[a]):
                    cur.prev()
                else:
                    cur.last()
                assert cur.key()

    sides = {"aurora": aurora, "raw": raw}
    if floor:
        sides.update(_floor_sides(repo, aggs))
    _compare("lmdb", sides, aggs, trials)
    repo.close()


def bench_memory(n: int) -> None:
    repo = aurora_storage.open("memory://")
    repo.put_many("t", [(("log", i), i) for i in range(n)])
    t0 = time.perf_counter()
    rounds = 2000
    for i in range(n, n + rounds):
        repo.put("t", ("log", i), i)
        (last,) = repo.keys("t", prefix=("log",), reverse=True, limit=1)
        assert last[1] == i
    per = (time.perf_counter() - t0) / rounds * 1e6
    print(f"memory   append + newest key at {n:,} keys: {per:.1f} us per round")
    repo.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--aggregates", type=int, default=2000)
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--floor", action="store_true", help="also the stripped-down lookups")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aurora-newest-")
    try:
        bench_rocksdb(tmp, args.aggregates, args.events, args.trials)
        bench_lmdb(tmp, args.aggregates, args.events, args.trials, args.floor)
        bench_memory(100_000)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
