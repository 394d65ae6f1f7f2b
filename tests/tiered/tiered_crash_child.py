"""Child process of the SIGKILL campaign: opens the tiered pair (RocksDB history, LMDB
projection), which catches up, then writes order events until it is killed.

Usage: python tiered_crash_child.py DATA_DIR SEED MODE   (MODE: projection | cache)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

from tiered_helpers import event, orders

import aurora_storage
from aurora_storage.tiered import TieredRepository

TENANTS = ("acme", "globex", "initech")
KINDS = ("OrderCreated", "OrderPaid", "OrderShipped", "OrderCancelled")


def main() -> None:
    data, seed, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rnd = random.Random(seed)
    repo: TieredRepository[Any, Any] = TieredRepository(
        # sync=false on the derived tier, as docs/tiered.md recommends: a kill loses
        # nothing from LMDB's page cache, and more writes happen between kills.
        hot=aurora_storage.open(f"lmdb://{data}/projection?sync=false"),
        cold=aurora_storage.open(f"rocksdb://{data}/history"),
        projection=orders if mode == "projection" else None,
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
        if roll < 0.6 or 0.981 <= roll < 0.998:
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
        elif roll < 0.96:
            with repo.batch() as b:
                for t in TENANTS:
                    b.put(t, (n, "e"), event("OrderCreated", f"o-{n % 7}", 2))
            n += 1
        elif roll < 0.98:
            if mode == "cache":
                repo.delete_many(tenant, [(n - i, "e") for i in range(1, 4)])
        elif roll < 0.981:
            repo.drop_tenant(tenant)
        else:
            repo.rebuild(rnd.choice([None, tenant]))


if __name__ == "__main__":
    main()
