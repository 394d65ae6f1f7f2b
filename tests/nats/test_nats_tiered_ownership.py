"""A tiered pair owns a NATS cold tier's bucket in this process, like a file store.

A pair owns its stores from the start of its open until close(): every repository on
them refuses writes, a second pair raises StoreLockedError. Ownership was keyed by the
live store handle, which file engines share per store (``open_stores``); the NATS backend
opens a new client per ``aurora_storage.open``, so the claim covered only the pair's own
tier object. A reviewer found that a plain ``aurora_storage.open(cold_url).put(...)`` was
accepted while the pair was open, and that a second pair (another hot store, the same
bucket) opened: the two overwrote each other's change-log entries (hot ``n=3`` at lag 0
against 4 history records).

Now a backend declares the identity of its store (NATS: its normalised server list and
bucket, credentials aside), and the ownership is keyed by it: every repository on the
bucket in this process is refused, a second pair raises StoreLockedError, nothing is
written. Real nats-server and real LMDB stores throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats_servers import MAX_BATCH, Server

import aurora_storage
from aurora_storage.backend import Backend, chunk_items
from aurora_storage.errors import ConfigurationError, ReadOnlyError, StoreLockedError
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository

Tiered = TieredRepository[Any, Any]


def _count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)


def _pair(hot: str, cold: str) -> Tiered:
    return TieredRepository(
        hot=aurora_storage.open(hot), cold=aurora_storage.open(cold), projection=_count
    )


def _raw(backend: Backend) -> dict[bytes, bytes]:
    return dict(chunk_items(backend.scan_chunks(b"", b"\xff" * 32)))


def _spellings(server: Server, bucket: str) -> list[str]:
    """Other URLs of the same bucket: other options, the server listed twice."""
    return [
        f"nats://{server.address}/{bucket}?max_batch={MAX_BATCH}&timeout=7",
        f"nats://{server.address},{server.address}/{bucket}?max_batch={MAX_BATCH}",
    ]


def test_a_plain_repository_on_the_nats_bucket_of_an_open_pair_is_refused(
    tmp_path: Path, nats_url: str, nats_server: Server, bucket: str
) -> None:
    # The reviewer's case: the plain put was accepted while the pair was open.
    repo = _pair(f"lmdb://{tmp_path}/hot", nats_url)
    repo.put("t", "e1", {})
    before = _raw(repo.cold.backend)
    for url in [nats_url, *_spellings(nats_server, bucket)]:
        with aurora_storage.open(url) as plain:
            with pytest.raises(ReadOnlyError) as info:
                plain.put("t", "e2", {})
            assert "is the cold tier of the tiered repository" in str(info.value)
            assert plain.get("t", "e1") == {}  # reads are free
    assert _raw(repo.cold.backend) == before
    repo.put("t", "e2", {})
    assert (repo.get("t", "n"), repo.history.count("t"), repo.lag) == (2, 2, 0)
    repo.close()
    with aurora_storage.open(nats_url) as plain:  # closed: the bucket is free again
        plain.put("scratch", "k", 1)
        assert plain.delete("scratch", "k")


def test_a_repository_opened_before_the_pair_is_refused_too(tmp_path: Path, nats_url: str) -> None:
    before_pair = aurora_storage.open(nats_url)
    repo = _pair(f"lmdb://{tmp_path}/hot", nats_url)
    with pytest.raises(ReadOnlyError, match="cold tier of the tiered repository"):
        before_pair.put("t", "e9", {})
    repo.close()
    before_pair.put("scratch", "k", 1)  # given back
    before_pair.close()


def test_a_second_pair_on_the_same_nats_bucket_is_refused(
    tmp_path: Path, nats_url: str, nats_server: Server, bucket: str
) -> None:
    # The reviewer's case: the second pair (its own hot store) opened, and the two
    # overwrote each other's change-log entries (hot n=3 at lag 0, 4 history records).
    first = _pair(f"lmdb://{tmp_path}/a", nats_url)
    first.put("t", "e1", {})
    for i, url in enumerate([nats_url, *_spellings(nats_server, bucket)]):
        hot_url = f"lmdb://{tmp_path}/b{i}"
        cold_before = _raw(first.cold.backend)
        hot, cold = aurora_storage.open(hot_url), aurora_storage.open(url)
        with pytest.raises(StoreLockedError) as info:
            TieredRepository(hot=hot, cold=cold, projection=_count)
        message = str(info.value)
        assert "the cold tier nats://" in message
        assert "already belongs to the open tiered repository" in message
        assert _raw(first.cold.backend) == cold_before  # nothing written
        hot.put("scratch", "k", 1)  # the refused pair kept nothing
        hot.close()  # and its tiers close as before
        cold.close()
    first.put("t", "e2", {})
    assert (first.get("t", "n"), first.history.count("t"), first.lag) == (2, 2, 0)
    first.close()
    with _pair(f"lmdb://{tmp_path}/a", nats_url) as again:  # closed: free again
        assert (again.get("t", "n"), again.lag) == (2, 0)


def test_the_same_bucket_as_both_tiers_is_refused(nats_url: str) -> None:
    hot = aurora_storage.open(nats_url)
    cold = aurora_storage.open(nats_url + "&timeout=7")
    with pytest.raises(ConfigurationError, match="two different stores"):
        TieredRepository(hot=hot, cold=cold, projection=_count)
    hot.close()
    cold.close()
