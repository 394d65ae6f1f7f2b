"""SIGKILL a writer of large batches (each a write-ahead-log record of many 32 KiB
fragments) at random moments: the strict log recovery must accept whatever tail a real
kill leaves - the store always opens, with every acknowledged batch whole - while the
damage tests show it refuses other tails. The figure printed says how many kills left a
torn tail (few: a kill must land inside the kernel's copy of a write)."""

from __future__ import annotations

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
KILLS = 8
K = 2400  # records per batch: about 250 KB of log per batch


def _run_and_kill(url: str, first: int, rng: random.Random) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, CHILD, "crash-writer", url, str(first), str(K)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    buf = bytearray()
    assert proc.stdout is not None

    def reader() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            buf.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    deadline = time.monotonic() + 60
    while b"\n" not in buf and proc.poll() is None:
        assert time.monotonic() < deadline, "the writer never acknowledged a batch"
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    t.join(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err
    lines = bytes(buf).decode().split("\n")[:-1]
    return [int(line[4:]) for line in lines]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_large_batches_killed_at_random_moments_always_reopen(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/s"
    rng = random.Random(101)
    acked: set[int] = set()
    first = 0
    torn_tails = 0
    for _ in range(KILLS):
        acked.update(_run_and_kill(url, first, rng))
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
