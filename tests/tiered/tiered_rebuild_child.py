"""Child process of the SIGKILL-during-rebuild campaign: opens the pair (RocksDB
history, LMDB projection) with projection version VERSION and rebuilds, over and over,
until it is killed.

Usage: python tiered_rebuild_child.py DATA_DIR VERSION
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tiered_helpers import versioned

import aurora_storage
from aurora_storage.tiered import TieredRepository


def main() -> None:
    data, version = Path(sys.argv[1]), int(sys.argv[2])
    repo: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(f"lmdb://{data}/projection?sync=false"),
        cold=aurora_storage.open(f"rocksdb://{data}/history"),
        projection=versioned(version),
        rebuild_chunk=100,
    )
    print("ready", flush=True)
    while True:
        repo.rebuild()
        print("rebuilt", flush=True)


if __name__ == "__main__":
    main()
