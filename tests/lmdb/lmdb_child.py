"""Child-process helper for the LMDB tests (run as a script, never collected).

    python lmdb_child.py <mode> <store path> [args...]

Modes:
    write <path> <worker> <count>     put <count> keys for tenant w<worker> (single puts
                                      and put_many batches), tiny map; prints "done".
    wait-read <path> <key>            open, print "ready", wait for a line on stdin, then
                                      print the value of (t, key) as JSON.
    hold-url <path> <url>             open <url>, read, print "ready", wait for a line on
                                      stdin, then close and print "closed".
    hold-reader <path>                raw py-lmdb: begin a read transaction, print
                                      "ready", sleep until killed.
    read-only <path>                  open read_only, print the count of tenant t and
                                      whether a put is refused.
    crash-writer <path> <seed>        write forever (tenants p<seed> and b<seed>), printing
                                      one line per acknowledged commit: "P <key>"
                                      (single put) or "B <id> <n>"
                                      (a put_many of n keys (id, j), each value
                                      [n, padding]).
"""

from __future__ import annotations

import json
import random
import sys
import time

import aurora_storage
from aurora_storage.errors import ReadOnlyError


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    url = f"lmdb://{path}"
    if mode == "write":
        worker, count = int(sys.argv[3]), int(sys.argv[4])
        with aurora_storage.open(url, map_size="64KiB", sync=False) as repo:
            tenant = f"w{worker}"
            i = 0
            while i < count:
                if i % 3 == 0:
                    repo.put_many(tenant, {i + j: "v" * 300 for j in range(50) if i + j < count})
                    i += 50
                else:
                    repo.put(tenant, i, "v" * 300)
                    i += 1
        print("done", flush=True)
    elif mode == "wait-read":
        key = sys.argv[3]
        with aurora_storage.open(url, map_size="64KiB") as repo:
            repo.get("t", "warm-up")
            print("ready", flush=True)
            sys.stdin.readline()
            print(json.dumps(repo.get("t", key)), flush=True)
    elif mode == "hold-url":
        with aurora_storage.open(sys.argv[3]) as repo:
            repo.get("t", "warm-up")
            print("ready", flush=True)
            sys.stdin.readline()
        print("closed", flush=True)
    elif mode == "hold-reader":
        import lmdb

        env = lmdb.open(path, lib_version=0, max_spare_txns=0)
        txn = env.begin()
        txn.get(b"x")
        print("ready", flush=True)
        time.sleep(600)
    elif mode == "read-only":
        with aurora_storage.open(url, read_only=True) as repo:
            try:
                repo.put("t", "x", 1)
                refused = False
            except ReadOnlyError:
                refused = True
            print(json.dumps({"count": repo.count("t"), "refused": refused}), flush=True)
    elif mode == "crash-writer":
        rng = random.Random(int(sys.argv[3]))
        sync = rng.random() < 0.3
        repo = aurora_storage.open(url, map_size="64KiB", sync=sync)
        out = sys.stdout
        n = 0
        while True:
            n += 1
            if rng.random() < 0.5:
                size = rng.randint(2, 200)
                bid = f"{sys.argv[3]}-{n}"
                repo.put_many(
                    f"b{sys.argv[3]}",
                    {(bid, j): [size, "x" * rng.randint(1, 2000)] for j in range(size)},
                )
                out.write(f"B {bid} {size}\n")
            else:
                key = f"{sys.argv[3]}-{n}"
                repo.put(f"p{sys.argv[3]}", key, n)
                out.write(f"P {key}\n")
            out.flush()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
