"""The framework's own cost per operation on memory://, by key shape.

For each operation the repository call is timed next to the same backend call with the
key and value already encoded (the codec's time is on both sides), so the difference is
what aurora-storage adds: tenant lookup, key encoding/decoding, validation, dispatch.

    python benchmarks/framework_cost.py [--n 50000] [--reps 9]

Best of ``--reps`` runs per figure; run it a few times on a busy machine. The disk
engines' cost, by named workload next to the raw engine, is measured by workloads.py.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson

import aurora_storage

VALUE = {
    "type": "OrderCreated",
    "order": "o-1",
    "customer": "c-42",
    "total": 123.45,
    "ts": "2026-11-23T10:00:00Z",
}


def _best(fn: Callable[[], None], n: int, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="keys per shape")
    parser.add_argument("--reps", type=int, default=9, help="runs per figure (best kept)")
    args = parser.parse_args()
    n = args.n
    repo = aurora_storage.open("memory://")
    backend = repo.backend
    shapes: dict[str, list[object]] = {
        "str": [f"order-{i:06d}" for i in range(n)],
        "int": list(range(1, n + 1)),
        "tuple": [("order", i) for i in range(n)],
    }
    # loads takes any value: every key read here exists (no None check in the loop).
    dumps = orjson.dumps
    loads: Callable[[Any], Any] = orjson.loads
    print(f"{'key':6s} {'operation':10s} {'repository':>11s} {'backend':>9s} {'framework':>10s}")
    # Methods are bound once per loop on both sides, as a hot loop in user code would.
    for label, keys in shapes.items():
        fulls = [repo._full("acme", k) for k in keys]
        repo.put_many("acme", [(k, VALUE) for k in keys])
        prefix = repo._prefix("acme")

        def fw_put(keys: list[object] = keys) -> None:
            put = repo.put
            for k in keys:
                put("acme", k, VALUE)

        def be_put(fulls: list[bytes] = fulls) -> None:
            put = backend.put
            for k in fulls:
                put(k, dumps(VALUE))

        def fw_get(keys: list[object] = keys) -> None:
            get = repo.get
            for k in keys:
                get("acme", k)

        def be_get(fulls: list[bytes] = fulls) -> None:
            get = backend.get
            for k in fulls:
                loads(get(k))

        def fw_has(keys: list[object] = keys) -> None:
            has = repo.has
            for k in keys:
                has("acme", k)

        def be_has(fulls: list[bytes] = fulls) -> None:
            contains = backend.contains
            for k in fulls:
                contains(k)

        def fw_scan() -> None:
            for _ in repo.items("acme"):
                pass

        def be_scan(prefix: bytes = prefix) -> None:
            for _k, v in backend.scan(prefix, prefix + b"\xff"):
                loads(v)

        pairs = (
            ("put", fw_put, be_put),
            ("get", fw_get, be_get),
            ("has", fw_has, be_has),
            ("scan item", fw_scan, be_scan),
        )
        for name, fw, be in pairs:
            a, b = _best(fw, n, args.reps), _best(be, n, args.reps)
            print(f"{label:6s} {name:10s} {a:8.0f} ns {b:6.0f} ns {a - b:7.0f} ns")
        repo.drop_tenant("acme")
    repo.close()


if __name__ == "__main__":
    main()
