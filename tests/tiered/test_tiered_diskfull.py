"""Case 6: after a full disk, the pair reopens and catches up with only the space the
pending work needs, and full-disk errors are typed.

The real-disk test puts the hot tier (LMDB) on a small tmpfs, fills it, and frees space
in small steps until the pair reopens: catch-up commits in groups, each with its
position, so it needs room for a group, not for all of history. Mounting a tmpfs needs
root: without it that test is skipped (the reason is printed).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiered_helpers import Counting, dump, faulty_repo, flaky_repo, fold_counting

import aurora_storage
from aurora_storage.errors import StorageError, StorageFullError
from aurora_storage.tiered import HotTierError, HotTierFullError, TieredRepository


class Full(StorageFullError):
    """What an engine raises when its disk is full."""


def test_full_hot_tier_is_a_typed_durable_error() -> None:
    hot, fb = faulty_repo()
    cold = flaky_repo()
    proj = Counting()
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold, projection=proj)
    fb.fail(when="before", exc=Full)
    with pytest.raises(StorageFullError) as info:  # also an OSError, like the engines'
        t.put("acme", 1, {"i": 1, "mark": ""})
    assert isinstance(info.value, HotTierFullError)
    assert isinstance(info.value, HotTierError)
    assert isinstance(info.value, OSError)
    assert info.value.durable
    assert cold.has("acme", 1)
    fb.fail(when="before", exc=Full)
    with pytest.raises(StorageFullError):  # catch_up passes the engine's error through
        t.catch_up()
    assert t.catch_up() == 1
    assert dump(hot) == fold_counting(cold, set())


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs to fill (no mount command: {exc})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.mark.slow
def test_reopen_after_a_full_hot_disk_needs_only_the_pending_space(
    small_fs: Path, tmp_path: Path
) -> None:
    proj = Counting()

    def open_pair() -> TieredRepository[Any, Any]:
        return TieredRepository(
            hot=aurora_storage.open(f"lmdb://{small_fs}/hot?sync=false"),
            cold=aurora_storage.open(f"rocksdb://{tmp_path}/cold"),
            projection=proj,
        )

    t = open_pair()
    ballast = small_fs / "ballast"
    with ballast.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    os.truncate(ballast, max(0, ballast.stat().st_size - 1024 * 1024))
    i = failed = 0
    pending_bytes = 0
    durable: list[bool] = []
    while failed < 1000:
        value = {"i": i, "mark": "", "pad": "x" * 200}
        try:
            t.put("acme", (i, "e"), value)
        except HotTierError as exc:
            durable.append(exc.durable)
            failed += 1
            pending_bytes += 250
        i += 1
    lag = t.lag
    assert lag >= 1000
    assert all(durable)
    t.close()
    # Free space in small steps; the pair must reopen well before all of it is back.
    freed_needed = None
    for _ in range(32):
        os.truncate(ballast, max(0, ballast.stat().st_size - 128 * 1024))
        free = _free(small_fs)
        try:
            t = open_pair()
        except StorageError:
            continue  # (a failed attempt still commits the groups it could)
        freed_needed = free
        break
    assert freed_needed is not None, "the pair never reopened"
    assert t.lag == 0
    assert dump(t.hot) == fold_counting(t.history, set())  # each record applied once
    t.close()
    print(
        f"\n{i} events, {lag} pending after the hot disk filled (~{pending_bytes // 1024} KiB "
        f"of history); reopened when {freed_needed // 1024} KiB were free"
    )
    assert freed_needed <= max(1024 * 1024, 2 * pending_bytes)
