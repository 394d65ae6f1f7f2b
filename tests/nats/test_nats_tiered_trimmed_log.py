"""A stale writer never reuses a change-log number that a trim deleted: NATS cold.

The LMDB variant, and the breaker's finding, are in
tests/tiered/test_tiered_trimmed_log_reuse.py. Here cold is a bucket on a real
nats-server: the create-only batch's condition on cold's HEAD is checked by the server
(the batch carries the subject sequence HEAD had when the pair read it), and HEAD is
written in the same atomic batch (JetStream checks only a condition on a key the batch
writes). Hot is a shared LMDB store; the writers are real processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nats_servers import MAX_BATCH, Server

sys.path.insert(0, str(Path(__file__).parent.parent / "tiered"))
from tiered_writers import (  # found through the path set above
    interleaved_writers,
    stale_writer_after_trim,
    store_without_head,
)


def _cold(nats_server: Server, bucket: str) -> str:
    return f"nats://{nats_server.address}/{bucket}?max_batch={MAX_BATCH}"


@pytest.mark.parametrize("mode", ["projection", "cache"])
def test_nats_stale_writer_after_trim_is_refused(
    nats_server: Server, bucket: str, tmp_path: Path, mode: str
) -> None:
    stale_writer_after_trim(f"lmdb://{tmp_path}/hot", _cold(nats_server, bucket), mode)


@pytest.mark.parametrize("mode", ["projection", "cache"])
def test_nats_interleaved_writers_apply_each_record_once(
    nats_server: Server, bucket: str, tmp_path: Path, mode: str
) -> None:
    interleaved_writers(f"lmdb://{tmp_path}/hot", _cold(nats_server, bucket), mode, seed=0)


def test_nats_store_without_head_refuses_a_taken_entry(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    store_without_head(f"lmdb://{tmp_path}/hot", _cold(nats_server, bucket))
