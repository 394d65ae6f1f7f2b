"""Child process of the SIGKILL campaign: opens the tiered pair (RocksDB history, LMDB
projection), which catches up, then writes order events until it is killed.

Usage: python tiered_crash_child.py DATA_DIR SEED
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from tiered_helpers import event, orders

import aurora_storage
from aurora_storage.tiered import TieredRepository

TENANTS = ("acme", "globex", "initech")
KINDS = ("OrderCreated", "OrderPaid", "OrderShipped", "OrderCancelled")


def main() -> None:
    data, seed = Path(sys.argv[1]), int(sys.argv[2])
    rnd = random.Random(seed)
    repo = TieredRepository(
        hot=aurora_storage.open(f"lmdb://{data}/projection"),
        cold=aurora_storage.open(f"rocksdb://{data}/history"),
        projection=orders,
        trim_every=64,
        rebuild_chunk=50,
    )
    # Keys grow with write order, so history's key order is its write order.
    n = 1 + max(
        (k[0] for t in TENANTS for k in repo.history.keys(t, reverse=True, limit=1)), default=0
    )
    print("ready", flush=True)
    while True:
        tenant = rnd.choice(TENANTS)
        roll = rnd.random()
        if roll < 0.6:
            repo.put(tenant, (n, "e"), event(rnd.choice(KINDS), f"o-{n % 7}", n % 10))
            n += 1
        elif roll < 0.9:
            size = rnd.randint(2, 6)
            repo.put_many(
                tenant,
                [
                    ((n + i, "e"), event(rnd.choice(KINDS), f"o-{(n + i) % 7}", 1))
                    for i in range(size)
                ],
            )
            n += size
        elif roll < 0.95:
            with repo.batch() as b:
                for t in TENANTS:
                    b.put(t, (n, "e"), event("OrderCreated", f"o-{n % 7}", 2))
            n += 1
        elif roll < 0.98:
            repo.drop_tenant(tenant)
        else:
            repo.rebuild(rnd.choice([None, tenant]))


if __name__ == "__main__":
    main()
