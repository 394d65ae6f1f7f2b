"""Crash campaign: a writer SIGKILLed at random moments, many times.

After each kill the store must open, hold every acknowledged write, and every batch
must be all or nothing. The writer starts each run from a 64 KiB map, so kills also land
in the middle of map growth. ``AURORA_LMDB_CRASH_ROUNDS`` runs a longer campaign.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

import aurora_storage

CHILD = str(Path(__file__).with_name("lmdb_child.py"))
ROUNDS = int(os.environ.get("AURORA_LMDB_CRASH_ROUNDS", "15"))


@pytest.mark.slow
@pytest.mark.timeout(60 + 3 * ROUNDS)
def test_writer_killed_at_random_moments(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    rng = random.Random(20261123)
    acked_puts: set[str] = set()
    acked_batches: dict[str, int] = {}
    for round_no in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, CHILD, "crash-writer", path, str(round_no)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        # Wait until the writer is committing, then kill it at a random moment.
        first = proc.stdout.readline()
        assert first.endswith("\n"), proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        lines = (first + rest).split("\n")
        for line in lines[:-1]:  # the last piece may be a line cut by the kill
            kind, ident, *size = line.split()
            if kind == "P":
                acked_puts.add(ident)
            else:
                acked_batches[ident] = int(size[0])

        with aurora_storage.open(f"lmdb://{path}") as repo:
            present = set(repo.keys("p"))
            missing = acked_puts - present
            assert not missing, f"round {round_no}: acknowledged puts lost: {sorted(missing)[:5]}"
            groups: dict[str, list[int]] = defaultdict(list)
            for (bid, _j), (size, _pad) in repo.items("b"):
                groups[bid].append(size)
            for bid, sizes in groups.items():
                # All or nothing: a batch present at all is present whole.
                assert len(sizes) == sizes[0], f"round {round_no}: batch {bid} is partial"
            for bid, size in acked_batches.items():
                assert len(groups.get(bid, ())) == size, f"acknowledged batch {bid} lost"
    assert acked_puts
    assert acked_batches
