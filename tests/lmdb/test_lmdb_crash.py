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
from typing import Any

import pytest

import aurora_storage

CHILD = str(Path(__file__).with_name("lmdb_child.py"))
ROUNDS = int(os.environ.get("AURORA_LMDB_CRASH_ROUNDS", "15"))


def _verify(
    repo: aurora_storage.Repository[Any, Any], seed: int, puts: set[str], batches: dict[str, int]
) -> None:
    present = set(repo.keys(f"p{seed}"))
    missing = puts - present
    assert not missing, f"writer {seed}: acknowledged puts lost: {sorted(missing)[:5]}"
    groups: dict[str, list[int]] = defaultdict(list)
    for (bid, _j), (size, _pad) in repo.items(f"b{seed}"):
        groups[bid].append(size)
    for bid, sizes in groups.items():
        # All or nothing: a batch present at all is present whole.
        assert len(sizes) == sizes[0], f"writer {seed}: batch {bid} is partial"
    for bid, size in batches.items():
        assert len(groups.get(bid, ())) == size, f"acknowledged batch {bid} lost"


@pytest.mark.slow
@pytest.mark.timeout(60 + 4 * ROUNDS)
def test_writer_killed_at_random_moments(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    rng = random.Random(20261123)
    acked: list[tuple[set[str], dict[str, int]]] = []
    for seed in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, CHILD, "crash-writer", path, str(seed)],
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
        puts: set[str] = set()
        batches: dict[str, int] = {}
        for line in (first + rest).split("\n")[:-1]:  # the last piece may be cut
            kind, ident, *size = line.split()
            if kind == "P":
                puts.add(ident)
            else:
                batches[ident] = int(size[0])
        acked.append((puts, batches))
        with aurora_storage.open(f"lmdb://{path}") as repo:
            _verify(repo, seed, puts, batches)
    # Later crashes (and map growth) must not have damaged earlier writers' data.
    with aurora_storage.open(f"lmdb://{path}") as repo:
        for seed, (puts, batches) in enumerate(acked):
            _verify(repo, seed, puts, batches)
    assert any(p for p, _ in acked)
    assert any(b for _, b in acked)
