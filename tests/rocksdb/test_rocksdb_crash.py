"""Crash campaign: SIGKILL a writer at random moments, many times over one store.

After every kill the store must open, hold every batch the child acknowledged, and hold
every batch entirely or not at all (batches span three tenants and include a delete).
``AURORA_ROCKSDB_CRASH_KILLS`` sets the number of kills (default 20, CI-sized).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

import aurora_storage

CHILD = str(Path(__file__).with_name("child_rocksdb.py"))
KILLS = int(os.environ.get("AURORA_ROCKSDB_CRASH_KILLS", "20"))
K = 12  # records per batch


def _run_and_kill(url: str, first: int, rng: random.Random) -> list[int]:
    """Start a writer, SIGKILL it after a random delay, return the acknowledged batches."""
    proc = subprocess.Popen(
        [sys.executable, CHILD, "crash-writer", url, str(first), str(K)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acked: list[int] = []
    buf = bytearray()
    assert proc.stdout is not None

    def reader() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            buf.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    # Wait until the child writes, then kill it somewhere in its stream of batches.
    deadline = time.monotonic() + 30
    while b"\n" not in buf and proc.poll() is None:
        assert time.monotonic() < deadline, "the writer never acknowledged a batch"
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.25))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    t.join(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err
    text = bytes(buf).decode()
    # Only complete lines count: a line cut by the kill was not acknowledged.
    for line in text.split("\n")[:-1]:
        assert line.startswith("ack "), line
        acked.append(int(line[4:]))
    return acked


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
        acked = _run_and_kill(url, last + 1, rng)
        assert acked, "the writer was killed before acknowledging anything"
        acked_total.update(acked)
        last = _check(url, acked_total)
        assert last >= max(acked)
    # Enough data to have crossed the write buffer: kills hit flushes too.
    assert last > 100
