"""SIGKILL a writer of large batches (each a write-ahead-log record of many 32 KiB
fragments) at random moments: the strict log recovery must accept whatever tail a real
kill leaves - the store always opens, with every acknowledged batch whole - while the
damage tests show it refuses other tails. The figure printed says how many kills left a
torn tail (few: a kill must land inside the kernel's copy of a write)."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest
from crash_writer import run_and_kill

import aurora_storage

KILLS = 8
K = 2400  # records per batch: about 250 KB of log per batch


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_large_batches_killed_at_random_moments_always_reopen(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/s"
    rng = random.Random(101)
    acked: set[int] = set()
    first = 0
    torn_tails = 0
    for _ in range(KILLS):
        acked.update(run_and_kill(url, first, K, rng, max_delay=0.3, patience=60))
        with aurora_storage.open(url) as repo:  # strict recovery: must open
            if (repo.stats()["recovery"] or {}).get("torn_tail"):
                torn_tails += 1
            items: dict[int, int] = defaultdict(int)
            for (batch, _item), _value in repo.items("t0"):
                items[batch] += 1
            assert all(n == len(range(0, K, 3)) for n in items.values()), "a partial batch"
            assert acked <= set(items), f"acknowledged batches lost: {sorted(acked - set(items))}"
            first = max(items, default=-1) + 1
    print(f"\n{KILLS} kills of a large-batch writer: {torn_tails} reopened past a torn log tail")
