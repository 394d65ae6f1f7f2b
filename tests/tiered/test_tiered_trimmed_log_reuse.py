"""A stale writer never reuses a change-log number that a trim deleted.

A breaker found (round 3): two processes write one pair whose cold tier other processes
may write (LMDB here; NATS in tests/nats/test_nats_tiered_trimmed_log.py), so each
change-log entry was written create-only. Process A held a stale sequence number (5);
process B wrote entries 6..N and trimmed the applied log (``trim_every``), deleting 6. A's
next create-only entry 6 found the key absent and was written: one number used twice.
Hot's position said 6 was applied, so A's record was never projected (or B's records
were projected twice), and ``lag`` said 0.

Now every create-only cold batch also writes the cold *head* record (the number and
nonce of the newest entry, outside the log range, so a trim never deletes it),
conditioned on the head this pair last saw: a stale writer is refused
(``VersionConflictError``, nothing written) whether or not its entry still exists, and
re-reads both positions before its next write.

Real processes (tiered_writer_child.py) on real LMDB stores (hot and cold shared).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiered_writers import interleaved_writers, stale_writer_after_trim, store_without_head


@pytest.mark.parametrize("mode", ["projection", "cache"])
def test_stale_writer_after_trim_is_refused(tmp_path: Path, mode: str) -> None:
    stale_writer_after_trim(f"lmdb://{tmp_path}/hot", f"lmdb://{tmp_path}/cold", mode)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mode", ["projection", "cache"])
def test_interleaved_writers_apply_each_record_once(tmp_path: Path, mode: str, seed: int) -> None:
    interleaved_writers(f"lmdb://{tmp_path}/hot", f"lmdb://{tmp_path}/cold", mode, seed)


def test_store_without_head_refuses_a_taken_entry(tmp_path: Path) -> None:
    store_without_head(f"lmdb://{tmp_path}/hot", f"lmdb://{tmp_path}/cold")
