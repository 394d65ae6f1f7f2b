"""Framework overhead against raw rocksdict (raw mode) + orjson, side by side.

Not a test (never assert speed in tests); run it by hand::

    python tests/rocksdb/overhead_rocksdb.py [N]

Prints microseconds per operation for each path, raw and through aurora-storage, and
their ratio (best of several interleaved rounds, to damp noise on a shared machine).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections.abc import Callable

import orjson
import rocksdict

import aurora_storage


def _best(fn: Callable[[], object], n_items: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n_items * 1e6


def main(n: int = 20_000, rounds: int = 7) -> None:
    tmp = tempfile.mkdtemp(prefix="aurora-overhead-")
    opts = rocksdict.Options(raw_mode=True)
    raw = rocksdict.Rdict(f"{tmp}/raw", opts)
    repo = aurora_storage.open(f"rocksdb://{tmp}/aurora")
    value = {"type": "order.created", "order": 12345, "amount": 99.5, "tags": ["a", "b"]}
    raw_keys = [b"acme:" + str(i).encode() for i in range(n)]
    ids = list(range(n))

    def raw_put() -> None:
        put, dumps = raw.put, orjson.dumps
        for k in raw_keys:
            put(k, dumps(value))

    def fw_put() -> None:
        put = repo.put
        for i in ids:
            put("acme", i, value)

    def raw_get() -> None:
        get, loads = raw.get, orjson.loads
        for k in raw_keys:
            loads(get(k))

    def fw_get() -> None:
        get = repo.get
        for i in ids:
            get("acme", i)

    batch = 1000

    def raw_put_many() -> None:
        dumps = orjson.dumps
        for s in range(0, n, batch):
            wb = rocksdict.WriteBatch(raw_mode=True)
            for k in raw_keys[s : s + batch]:
                wb.put(k, dumps(value))
            raw.write(wb)

    def fw_put_many() -> None:
        for s in range(0, n, batch):
            repo.put_many("acme", [(i, value) for i in ids[s : s + batch]])

    def raw_scan() -> None:
        ro = rocksdict.ReadOptions()
        ro.set_iterate_upper_bound(b"acme;")
        loads = orjson.loads
        for _k, v in raw.items(from_key=b"acme:", read_opt=ro):
            loads(v)

    def fw_scan() -> None:
        for _k, _v in repo.items("acme"):
            pass

    pairs = [
        ("put", raw_put, fw_put, n),
        ("get", raw_get, fw_get, n),
        ("put_many item", raw_put_many, fw_put_many, n),
        ("scan item", raw_scan, fw_scan, n),
    ]
    raw_put()
    fw_put()
    print(f"{'operation':<15}{'raw us':>9}{'aurora us':>11}{'ratio':>8}")
    for name, r, f, items in pairs:
        rb, fb = float("inf"), float("inf")
        for _ in range(rounds):
            rb = min(rb, _best(r, items, 1))
            fb = min(fb, _best(f, items, 1))
        print(f"{name:<15}{rb:>9.2f}{fb:>11.2f}{fb / rb:>8.2f}")
    repo.close()
    raw.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
