"""Fixtures: a real single-node nats-server for the session, and a fresh bucket per
test (deleted afterwards)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats_servers import MAX_BATCH, Server


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One JetStream server (sync_interval: always) on a loopback port."""
    server = Server(Path(tmp_path_factory.mktemp("nats")), "single")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def delete_bucket(address: str, bucket: str, *, missing_ok: bool = True) -> None:
    """Delete a bucket's stream with the raw client (test cleanup; ``missing_ok=False``
    when the deletion is the test's own step and must happen)."""
    import nats

    async def main() -> None:
        nc = await nats.connect(f"nats://{address}", connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            try:
                await js.delete_stream(f"KV_{bucket}")
            except Exception:
                if not missing_ok:
                    raise
        finally:
            await nc.close()

    asyncio.run(main())


@pytest.fixture
def bucket(nats_server: Server) -> Iterator[str]:
    """A fresh bucket name, deleted after the test."""
    name = "t" + uuid.uuid4().hex[:16]
    yield name
    delete_bucket(nats_server.address, name)


@pytest.fixture
def nats_url(nats_server: Server, bucket: str) -> str:
    """The URL of a fresh bucket on the session's server."""
    return f"nats://{nats_server.address}/{bucket}?max_batch={MAX_BATCH}"
