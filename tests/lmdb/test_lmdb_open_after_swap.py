"""An LMDB open that waits for one of the store's lock files while the store is swapped
for another (what ``aurora-storage restore`` does: it holds the open record exclusively
while it copies a backup and swaps the copy in) opens the store that is at the path once
the lock is granted - every file of it - and not the new data file with the old, deleted
lock files (two writers without a common lock: records lost, CorruptionError in other
processes). Real processes: this one plays the restore, a child opens."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aurora_storage

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/locks and /proc/<pid>/fd"
)

_OPENER = """
import json, os, sys, aurora_storage
store = sys.argv[1]
url = f"lmdb://{store}" + ("?read_only=true" if sys.argv[2] == "1" else "")
print("opening", flush=True)
with aurora_storage.open(url) as r:
    if sys.argv[2] != "1":
        r.put("w", "k", "written")
    files = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(os.path.dirname(store)):
            files.append(target)
    print(json.dumps({"files": sorted(files), "value": r.get("t", "k")}), flush=True)
"""


def _blocked(pid: int) -> bool:
    """Whether process ``pid`` waits for a file lock (a ``->`` line of /proc/locks)."""
    with open("/proc/locks") as f:
        return any(
            len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid)
            for fields in (line.split() for line in f)
        )


@pytest.mark.parametrize("held", ["aurora-open.lock", "aurora-grow.lock"])
@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_an_open_waiting_while_the_store_is_swapped_opens_the_new_store_whole(
    tmp_path: Path, held: str, read_only: bool
) -> None:
    store, other = tmp_path / "store", tmp_path / "other"
    for path, value in ((store, "old"), (other, "new")):
        with aurora_storage.open(f"lmdb://{path}") as r:
            r.put("t", "k", value)
    # The swapped-in store is a plain copy of the files (as a restore's copy of a
    # backup is), with its own coordination files.
    for name in ("aurora-open.lock", "aurora-grow.lock"):
        assert (other / name).exists()
    fd = os.open(store / held, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    child = subprocess.Popen(
        [sys.executable, "-c", _OPENER, str(store), "1" if read_only else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "opening"
        deadline = time.monotonic() + 120
        while not _blocked(child.pid):
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never waited for the lock"
            time.sleep(0.01)
        os.rename(store, f"{store}.replaced")
        os.rename(other, store)
        shutil.rmtree(f"{store}.replaced")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    answer = json.loads(out)
    assert answer["value"] == "new"
    assert answer["files"], answer
    stray = [f for f in answer["files"] if "(deleted)" in f or not f.startswith(f"{store}/")]
    assert not stray, answer
    # The store is whole, and open to the next writer.
    with aurora_storage.open(f"lmdb://{store}") as r:
        assert r.get("t", "k") == "new"
        assert r.verify().ok
