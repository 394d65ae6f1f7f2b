"""Tiers given the wrong way round, or a tier of another pair, are named for what they are.

A breaker found (round 3): opening a pair whose hot store is another pair's cold tier
(or an existing pair with its two URLs swapped) was refused with "the hot and cold tiers
must be two different stores ... are the same store", which is not what was wrong and
sent the user looking for a DNS alias. Now "the same store" is said only when the probe
proves it (a record just written in one tier is seen in the other); a hot tier holding a
pair's cold record is called the cold (history) tier of a tiered pair, a cold tier
holding a pair's hot record the hot tier of one, and a swapped pair is told to swap the
URLs. Nothing is written to either store. Real LMDB and RocksDB stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.backend import chunk_items
from aurora_storage.errors import ConfigurationError
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository


def count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)


def _made(hot: str, cold: str, key: str = "e1") -> list[str]:
    """A pair on ``hot``/``cold`` with one more event ``key``, closed; its history keys."""
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold), projection=count
    )
    try:
        r.put("t", key, {})
        return [str(k) for k, _ in r.history.items("t")]
    finally:
        r.close()


def _raw(url: str) -> dict[bytes, bytes]:
    with aurora_storage.open(url) as r:
        return dict(chunk_items(r.backend.scan_chunks(b"", b"\xff" * 32)))


def _refused(hot: str, cold: str) -> str:
    """The open's ConfigurationError message; both stores checked unchanged."""
    before = _raw(hot), _raw(cold)
    h, c = aurora_storage.open(hot), aurora_storage.open(cold)
    try:
        with pytest.raises(ConfigurationError) as info:
            TieredRepository(hot=h, cold=c, projection=count)
    finally:
        h.close()
        c.close()
    assert (_raw(hot), _raw(cold)) == before  # nothing written
    message = str(info.value)
    assert "same store" not in message
    assert "must be two different stores" not in message
    assert "nothing was written" in message
    return message


def test_swapped_tiers_of_a_pair(tmp_path: Path) -> None:
    hot, cold = f"lmdb://{tmp_path}/hot", f"rocksdb://{tmp_path}/cold"
    _made(hot, cold)
    message = _refused(cold, hot)
    assert f"the hot tier {cold} is the cold (history) tier of a tiered pair" in message
    assert f"the cold tier {hot} is that pair's hot tier" in message
    assert "swap the hot and cold URLs" in message
    assert _made(hot, cold, "e2") == ["e1", "e2"]  # the pair still opens, history whole


def test_hot_that_is_another_pairs_cold(tmp_path: Path) -> None:
    _made(f"lmdb://{tmp_path}/hot1", f"lmdb://{tmp_path}/cold1")
    message = _refused(f"lmdb://{tmp_path}/cold1", f"lmdb://{tmp_path}/cold2")
    assert (
        f"the hot tier lmdb://{tmp_path}/cold1 is the cold (history) tier of a tiered pair"
        in message
    )
    assert "give hot an empty store of its own" in message
    assert "swap" in message  # in case the URLs were given the wrong way round


def test_cold_that_is_another_pairs_hot(tmp_path: Path) -> None:
    _made(f"lmdb://{tmp_path}/hot1", f"lmdb://{tmp_path}/cold1")
    message = _refused(f"lmdb://{tmp_path}/hot2", f"lmdb://{tmp_path}/hot1")
    assert (
        f"the cold tier lmdb://{tmp_path}/hot1 is the hot (derived) tier of a tiered pair"
        in message
    )
    assert "give cold a store of its own" in message
