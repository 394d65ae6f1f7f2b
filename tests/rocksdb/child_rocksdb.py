"""Helper process for the RocksDB multi-process and crash tests (not a test module).

python child_rocksdb.py try-open URL
    open URL, print "opened" or "<ErrorClass>: <message>" and exit.
python child_rocksdb.py read URL
    open URL, print the JSON list of [tenant, key, value] of tenant "t", then wait for
    lines on stdin: "catch_up" -> catch up and print the list again; "quit" -> exit.
python child_rocksdb.py fill-and-die URL F W B
    write F records to tenant "t" and flush them to table files, W more left only in the
    write-ahead log, and a batch of B 2,000-byte records to tenant "big"; print "acked"
    and SIGKILL itself.
python child_rocksdb.py verify URL N F
    open URL, read records 0..N-1 written by fill-and-die with F flushed, and print a JSON
    count of ok / missing / wrong / reported (CorruptionError) records.
python child_rocksdb.py crash-writer URL FIRST K
    write batches FIRST, FIRST+1, ... of K records each (spread over three tenants,
    plus a delete of the previous batch's marker) through repo.batch(), printing
    "ack <n>" after each commit returns, until killed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import aurora_storage
from aurora_storage_rocksdb import RocksDBRepository


def _dump(repo: aurora_storage.Repository[Any, Any]) -> str:
    return json.dumps([[k, v] for k, v in repo.items("t")])


def main(argv: list[str]) -> int:
    cmd, url = argv[0], argv[1]
    if cmd == "try-open":
        try:
            repo = aurora_storage.open(url)
        except aurora_storage.StorageError as exc:
            print(f"{type(exc).__name__}: {exc}", flush=True)
            return 0
        print("opened", flush=True)
        repo.close()
        return 0
    if cmd == "read":
        with aurora_storage.open(url) as repo:
            print(_dump(repo), flush=True)
            for line in sys.stdin:
                if line.strip() == "catch_up":
                    assert isinstance(repo, RocksDBRepository)  # a secondary's catch_up
                    repo.catch_up()
                    print(_dump(repo), flush=True)
                else:
                    break
        return 0
    if cmd == "crash-writer":
        first, k = int(argv[2]), int(argv[3])
        repo = aurora_storage.open(url)
        n = first
        out = sys.stdout
        while True:
            with repo.batch() as b:
                for j in range(k):
                    b.put(f"t{j % 3}", (n, j), {"batch": n, "item": j, "pad": "x" * 64})
                b.put("markers", n, n)
                b.delete("markers", n - 1)
            out.write(f"ack {n}\n")
            out.flush()
            n += 1
    if cmd == "fill-and-die":
        # Records 0..F-1 flushed to table files, F..F+W-1 only in the write-ahead log,
        # then (if B > 0) one batch of B large records; "acked" once all returned, then
        # SIGKILL: nothing is flushed at exit.
        flushed, in_wal, big = int(argv[2]), int(argv[3]), int(argv[4])
        repo = aurora_storage.open(url)
        assert isinstance(repo, RocksDBRepository)  # flush(memtables=) below
        for i in range(flushed):
            repo.put("t", i, {"i": i, "pad": "p" * 40})
        repo.flush(memtables=True)
        for i in range(flushed, flushed + in_wal):
            repo.put("t", i, {"i": i, "pad": "w" * 40})
        if big:
            repo.put_many("big", [(j, "b" * 2000) for j in range(big)])
        print("acked", flush=True)
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    if cmd == "verify":
        # Open URL and read records 0..N-1 of tenant "t" written by fill-and-die; print
        # one JSON object counting them: ok, missing, wrong, reported (CorruptionError).
        n, flushed = int(argv[2]), int(argv[3])
        counts = {"ok": 0, "missing": 0, "wrong": 0, "reported": 0}
        try:
            repo = aurora_storage.open(url)
        except aurora_storage.StorageError as exc:
            print(json.dumps({"open": type(exc).__name__, "message": str(exc)[:300]}), flush=True)
            return 0
        for i in range(n):
            try:
                value = repo.get("t", i)
            except aurora_storage.CorruptionError:
                counts["reported"] += 1
                continue
            if value is None:
                counts["missing"] += 1
            elif value != {"i": i, "pad": ("p" if i < flushed else "w") * 40}:
                counts["wrong"] += 1
            else:
                counts["ok"] += 1
        scan: str
        try:
            keys = repo.list("t")
            scan = "ok" if keys == [i for i in range(n) if i in set(keys)] else "misordered"
        except aurora_storage.CorruptionError:
            scan = "reported"
        try:
            repo.close()
        except aurora_storage.StorageError as exc:
            scan += f"; close: {type(exc).__name__}"
        print(json.dumps({"open": "ok", **counts, "scan": scan}), flush=True)
        return 0
    raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
