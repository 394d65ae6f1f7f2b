"""Hot restored from a backup of another timeline is derived again, not caught up.

A breaker found (2026-12-02, night): cold restored from an older backup and written on,
then hot restored from its own (newer) backup: the change-log numbers restarted, so hot's
position matched cold's last entry and the open accepted a projection of another
timeline (events no longer in history projected, the new ones missing). Now every
change-log entry carries a random nonce that hot records with its position; at open, the
entry cold holds at hot's position must carry that nonce, else hot is derived again.
Real LMDB hot and RocksDB cold, copied with their files closed (a backup and a restore).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository
from aurora_storage.tiered._log import LOG, LOG_END, POS, split


def count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)
    k = f"seen:{record.key}"
    state.put(k, state.get(k, 0) + 1)


def _pair(d: Path, trim_every: int) -> TieredRepository[Any, Any]:
    return TieredRepository(
        hot=aurora_storage.open(f"lmdb://{d}/hot"),
        cold=aurora_storage.open(f"rocksdb://{d}/cold"),
        projection=count,
        trim_every=trim_every,
    )


def _check(r: TieredRepository[Any, Any]) -> None:
    history = [str(k) for k, _ in r.history.items("t")]
    projected = {k[len("seen:") :]: r.get("t", k) for k in r.keys("t") if k != "n"}
    assert projected == dict.fromkeys(history, 1)
    assert r.get("t", "n") == len(history)
    assert r.lag == 0


def _restore(d: Path, name: str, backup: str) -> None:
    shutil.rmtree(d / name)
    shutil.copytree(d / backup, d / name)


@pytest.mark.parametrize("trim_every", [1, 1024])
def test_hot_of_another_timeline_is_derived_again(tmp_path: Path, trim_every: int) -> None:
    r = _pair(tmp_path, trim_every)
    for i in range(8):
        r.put("t", f"a{i:02d}", {})
    r.close()
    shutil.copytree(tmp_path / "cold", tmp_path / "cold-backup")  # history at 8 events
    r = _pair(tmp_path, trim_every)
    for i in range(8, 10):
        r.put("t", f"a{i:02d}", {})
    r.close()
    shutil.copytree(tmp_path / "hot", tmp_path / "hot-backup")  # projection at 10
    _restore(tmp_path, "cold", "cold-backup")  # history lost: back to 8 events
    r = _pair(tmp_path, trim_every)  # hot ahead of cold: derived again (as before)
    for i in range(2):
        r.put("t", f"b{i:02d}", {})  # another timeline: entries 9 and 10 again
    _check(r)
    r.close()
    _restore(tmp_path, "hot", "hot-backup")  # projection lost: back to timeline A at 10
    r = _pair(tmp_path, trim_every)
    try:
        assert sorted(k for k, _ in r.history.items("t")) == [
            *(f"a{i:02d}" for i in range(8)),
            "b00",
            "b01",
        ]
        _check(r)
    finally:
        r.close()


def test_trim_keeps_the_entry_at_hots_position(tmp_path: Path) -> None:
    """The check needs cold's entry at hot's saved position: trim deletes the log up to
    it, never it; and hot's POS carries that entry's nonce."""
    r = _pair(tmp_path, 1)
    for i in range(5):
        r.put("t", f"a{i}", {})
    r.close()
    with aurora_storage.open(f"rocksdb://{tmp_path}/cold") as cold:
        log = list(cold.backend.scan(LOG, LOG_END))
    with aurora_storage.open(f"lmdb://{tmp_path}/hot") as hot:
        pos = hot.backend.get(POS)
    assert pos is not None
    assert len(pos) == 16
    assert [k for k, _ in log] == [LOG + pos[:8]]
    assert split(log[0][1])[0] == pos[8:]


def test_store_without_nonces_opens_and_catches_up(tmp_path: Path) -> None:
    """A store written before nonces (8-byte POS, entries without nonce) opens, catches
    up and is written on; the missing nonces are not checked."""
    r = _pair(tmp_path, 1024)
    for i in range(3):
        r.put("t", f"a{i}", {})
    r.close()
    with aurora_storage.open(f"rocksdb://{tmp_path}/cold") as cold:
        ops = [(k, split(v)[1]) for k, v in cold.backend.scan(LOG, LOG_END)]
        cold.backend.write(ops)
    with aurora_storage.open(f"lmdb://{tmp_path}/hot") as hot:
        raw = hot.backend.get(POS)
        assert raw is not None
        hot.backend.write([(POS, raw[:8])])
    r = _pair(tmp_path, 1024)
    try:
        r.put("t", "a3", {})
        _check(r)
    finally:
        r.close()
