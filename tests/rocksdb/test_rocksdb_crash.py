"""Crash campaign: SIGKILL a writer at random moments, many times over one store.

After every kill the store must open, hold every batch the child acknowledged, and hold
every batch entirely or not at all (batches span three tenants and include a delete).
``AURORA_ROCKSDB_CRASH_KILLS`` sets the number of kills (default 20, CI-sized).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from pathlib import Path

import pytest
from crash_writer import run_and_kill

import aurora_storage

KILLS = int(os.environ.get("AURORA_ROCKSDB_CRASH_KILLS", "20"))
K = 12  # records per batch


def _check(url: str, acked_total: set[int]) -> int:
    """Open after a kill; verify; return the highest batch present."""
    with aurora_storage.open(url) as repo:
        items: dict[int, set[int]] = defaultdict(set)
        for tenant in ("t0", "t1", "t2"):
            for (batch, item), value in repo.items(tenant):
                assert value == {"batch": batch, "item": item, "pad": "x" * 64}
                items[batch].add(item)
        torn = {b: sorted(s) for b, s in items.items() if len(s) != K}
        assert not torn, f"batches applied partly: {torn}"
        missing = acked_total - set(items)
        assert not missing, f"acknowledged batches lost: {sorted(missing)}"
        present = set(items)
        assert present == set(range(len(present))), "a gap in the batch sequence"
        markers = repo.list("markers")
        # Each batch deletes its predecessor's marker in the same atomic batch.
        assert markers == ([max(present)] if present else []), markers
        return max(present) if present else -1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_campaign_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/history?write_buffer_size=256KiB"
    rng = random.Random(int(os.environ.get("AURORA_ROCKSDB_CRASH_SEED", "1234")))
    acked_total: set[int] = set()
    last = -1
    for _ in range(KILLS):
        acked = run_and_kill(url, last + 1, K, rng, max_delay=0.25, patience=30)
        assert acked, "the writer was killed before acknowledging anything"
        acked_total.update(acked)
        last = _check(url, acked_total)
        assert last >= max(acked)
    # Enough data to have crossed the write buffer: kills hit flushes too.
    assert last > 100
