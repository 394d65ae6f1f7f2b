"""Framework overhead against raw rocksdict (raw mode) + orjson, side by side.

Not a test (never assert speed in tests); run it by hand::

    python tests/rocksdb/overhead_rocksdb.py [N] [--separate]

By default the raw side uses the repository's own engine instance (same options, same
memtable and files); ``--separate`` gives it its own store with default options.

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
from aurora_storage_rocksdb import RocksDBBackend


def _best(fn: Callable[[], object], n_items: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n_items * 1e6


def main(n: int = 5_000, rounds: int = 25, same_engine: bool = True) -> None:
    tmp = tempfile.mkdtemp(prefix="aurora-overhead-")
    repo = aurora_storage.open(f"rocksdb://{tmp}/aurora")
    if same_engine:
        # The raw side writes to the same engine instance (keys outside aurora's data
        # namespace), so both sides see the same memtable, files and options.
        backend = repo.backend
        assert isinstance(backend, RocksDBBackend)
        raw = backend._db
    else:
        raw = rocksdict.Rdict(f"{tmp}/raw", rocksdict.Options(raw_mode=True))
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
        # Short interleaved rounds: both sides see the same machine load.
        rb, fb = float("inf"), float("inf")
        for _ in range(rounds):
            rb = min(rb, _best(r, items, 1))
            fb = min(fb, _best(f, items, 1))
        print(f"{name:<15}{rb:>9.2f}{fb:>11.2f}{fb / rb:>8.2f}")
    # The plugin's own share: the bytes-level backend against the raw engine, with the
    # same pre-encoded keys and values (no key encoding, no codec).
    backend = repo.backend
    data = orjson.dumps(value)
    enc_keys = [repo._full("acme", i) for i in ids]
    ops = [(k, data) for k in enc_keys]

    def raw_put_b() -> None:
        put = raw.put
        for k in enc_keys:
            put(k, data)

    def be_put() -> None:
        put = backend.put
        for k in enc_keys:
            put(k, data)

    def raw_get_b() -> None:
        get = raw.get
        for k in enc_keys:
            get(k)

    def be_get() -> None:
        get = backend.get
        for k in enc_keys:
            get(k)

    def raw_write_b() -> None:
        for s in range(0, n, batch):
            wb = rocksdict.WriteBatch(raw_mode=True)
            for k, v in ops[s : s + batch]:
                wb.put(k, v)
            raw.write(wb)

    def be_write() -> None:
        for s in range(0, n, batch):
            backend.write(ops[s : s + batch])

    lo, hi = enc_keys[0][:6], enc_keys[0][:6] + b"\xff"

    def raw_scan_b() -> None:
        ro = rocksdict.ReadOptions()
        ro.set_iterate_upper_bound(hi)
        for _ in raw.items(from_key=lo, read_opt=ro):
            pass

    def be_scan() -> None:
        for _ in backend.scan(lo, hi):
            pass

    raw_put_b()
    print(f"\n{'backend only':<15}{'raw us':>9}{'backend us':>11}{'ratio':>8}")
    for name, r, f, items in [
        ("put", raw_put_b, be_put, n),
        ("get", raw_get_b, be_get, n),
        ("write item", raw_write_b, be_write, n),
        ("scan item", raw_scan_b, be_scan, n),
    ]:
        rb, fb = float("inf"), float("inf")
        for _ in range(rounds):
            rb = min(rb, _best(r, items, 1))
            fb = min(fb, _best(f, items, 1))
        print(f"{name:<15}{rb:>9.2f}{fb:>11.2f}{fb / rb:>8.2f}")
    if not same_engine:
        raw.close()
    repo.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 5_000, same_engine="--separate" not in sys.argv)
