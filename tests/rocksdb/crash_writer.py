"""Run the ``crash-writer`` child (child_rocksdb.py), SIGKILL it at a random moment and
return the batches it acknowledged (shared by the crash and torn-tail campaigns; not a
test module)."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CHILD = str(Path(__file__).with_name("child_rocksdb.py"))


def run_and_kill(
    url: str, first: int, per_batch: int, rng: random.Random, *, max_delay: float, patience: float
) -> list[int]:
    """Start a writer of batches ``first, first+1, ...`` of ``per_batch`` records, wait
    (at most ``patience`` seconds) for its first acknowledgement, SIGKILL it after a
    random delay of up to ``max_delay`` seconds, and return the acknowledged batches."""
    proc = subprocess.Popen(
        [sys.executable, CHILD, "crash-writer", url, str(first), str(per_batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    buf = bytearray()
    assert proc.stdout is not None

    def reader() -> None:
        # A buffered pipe (bufsize=-1): read1 returns what arrived without waiting for more.
        assert isinstance(proc.stdout, io.BufferedReader)
        while chunk := proc.stdout.read1(65536):
            buf.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    # Wait until the child writes, then kill it somewhere in its stream of batches.
    deadline = time.monotonic() + patience
    while b"\n" not in buf and proc.poll() is None:
        assert time.monotonic() < deadline, "the writer never acknowledged a batch"
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, max_delay))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    t.join(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err
    acked: list[int] = []
    # Only complete lines count: a line cut by the kill was not acknowledged.
    for line in bytes(buf).decode().split("\n")[:-1]:
        assert line.startswith("ack "), line
        acked.append(int(line[4:]))
    return acked


def killed_writer_store(script: str, url: str) -> None:
    """Run ``script`` (Python source) with ``url`` as its argument: it writes, prints
    ``acked`` and SIGKILLs itself, leaving the store with its write-ahead logs as a
    crash does (the stores the log-damage tests copy and cut)."""
    out = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "acked", out.stderr
    assert out.returncode == -9
