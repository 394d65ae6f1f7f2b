"""A server whose JetStream storage is used up (``max_file_store``) answers writes with
"insufficient resources": that is StorageFullError saying the server's JetStream storage
is full, not NATSConnectionError asking whether JetStream is enabled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats_servers import Server

import aurora_storage
from aurora_storage.errors import StorageError, StorageFullError


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    """A server with 2 MB of JetStream file storage."""
    server = Server(tmp_path, "small")
    server.conf.write_text(
        server.conf.read_text().replace(
            "  sync_interval: always", "  sync_interval: always\n  max_file_store: 2MB"
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fill(repo: Any, write: Callable[[Any, int], object]) -> StorageError:
    for i in range(1000):
        try:
            write(repo, i)
        except StorageError as exc:
            return exc
    pytest.fail("2 MB of JetStream storage never filled")


def test_puts_on_a_full_server_raise_storage_full(small_server: Server) -> None:
    url = f"nats://{small_server.address}/full?codec=raw&timeout=3"
    with aurora_storage.open(url) as repo:
        exc = _fill(repo, lambda r, i: r.put("t", i, b"x" * 100_000))
        assert isinstance(exc, StorageFullError), repr(exc)
        assert "JetStream storage" in str(exc)
        assert "max_file_store" in str(exc)
        assert "nothing was written" in str(exc)
        with pytest.raises(StorageFullError):
            repo.delete("t", 0)


def test_writes_after_a_batch_met_a_full_server_raise_storage_full(small_server: Server) -> None:
    url = f"nats://{small_server.address}/full?codec=raw&timeout=3&max_batch=1000"
    with aurora_storage.open(url) as repo:
        # The batch that meets the limit may get no answer at all (the server keeps part
        # of it without its commit, see docs/backends/nats.md): any storage error.
        _fill(repo, lambda r, i: r.put_many("t", {(i, j): b"x" * 10_000 for j in range(20)}))
        with pytest.raises(StorageFullError, match="JetStream storage"):
            repo.put("t", "small", b"1")
        with pytest.raises(StorageFullError):
            repo.put_many("u", {1: b"1", 2: b"2"})


def test_an_account_at_its_stream_limit_is_named_when_a_bucket_is_created(
    tmp_path: Path,
) -> None:
    # Every bucket is one JetStream stream; an account whose max_streams is reached
    # refuses a new one (err_code 10027). That is the account's stream limit, not a full
    # bucket: the message must not ask to raise max_bytes.
    server = Server(tmp_path, "streams")
    server.conf.write_text(
        server.conf.read_text()
        + "accounts {\n"
        + "  A: { jetstream: { max_streams: 1, max_file: 1G, max_mem: 1G },\n"
        + "       users: [ {user: u, password: p} ] }\n"
        + "}\n"
    )
    server.start()
    try:
        with aurora_storage.open(f"nats://u:p@{server.address}/first") as repo:
            repo.put("t", "k", 1)
        with pytest.raises(StorageFullError) as info:
            aurora_storage.open(f"nats://u:p@{server.address}/second")
        text = str(info.value)
        assert "may hold no more streams" in text
        assert "max_streams" in text
        assert "'second'" in text
        assert "max_bytes" not in text
        # Nothing was created: the first bucket still works, the second does not exist.
        with pytest.raises(StorageError, match="does not exist"):
            aurora_storage.open(f"nats://u:p@{server.address}/second?create_if_missing=false")
        with aurora_storage.open(f"nats://u:p@{server.address}/first") as repo:
            assert repo.get("t", "k") == 1
    finally:
        server.stop()
