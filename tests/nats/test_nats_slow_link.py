"""A batch through a slow or stalled link. A throttling TCP relay (a real socket relay on
loopback, between the client and a real nats-server) passes the client's bytes at 4 MB/s,
or none while stalled.

A batch hands its messages to nats-py, whose outgoing buffer, when full, made a publish
wait for the socket without a bound - and swallowed the cancellation meant to bound it:
a put_many through a stalled link waited for ever. A batch now waits for every 2 MiB it
has handed on to reach the server (a flush, bounded by ``timeout``) and never fills that
buffer: through a stalled link it raises NATSTimeoutError, its commit unsent, nothing
stored; through a slow one it goes on as long as bytes move.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats_servers import Server, free_port

import aurora_storage
from aurora_storage_nats import NATSTimeoutError

RATE = 4_000_000  # bytes per second, client -> server
VALUE = b"x" * 100_000


class Throttle:
    """A loopback relay to ``target``: client bytes at ``rate`` (or none while
    ``stalled``), server bytes as they come."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.stalled = threading.Event()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, throttle: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(16384)
                if not data:
                    break
                while throttle and self.stalled.is_set():
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
                if throttle:
                    await asyncio.sleep(len(data) / RATE)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        try:
            await asyncio.gather(self._pipe(cr, sw, True), self._pipe(sr, cw, False))
        finally:
            sw.close()
            cw.close()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            ready.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        # Let the cancelled relays close their sockets, then close the loop.
        rest = asyncio.all_tasks(self.loop)
        self.loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        self.loop.close()

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)


def _stalled_batch(repo: Any, relay: Throttle) -> None:
    """Put ``before``, then a batch of 100 values through the stalled link: the
    client's outgoing buffer fills, then nothing moves - NATSTimeoutError. The link
    moves again afterwards."""
    repo.put("t", "before", b"1")
    relay.stalled.set()
    try:
        with pytest.raises(NATSTimeoutError):
            repo.put_many("t", [(i, VALUE) for i in range(100)])
    finally:
        relay.stalled.clear()


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[Server, Throttle]]:
    server = Server(tmp_path, "slow")
    server.start()
    relay = Throttle(server.port)
    try:
        yield server, relay
    finally:
        relay.close()
        server.stop()


def test_a_batch_that_keeps_going_out_is_not_timed_out(slow: tuple[Server, Throttle]) -> None:
    server, relay = slow
    # 70 x 100 KB at 4 MB/s: about 1.75 s of sending; the commit's answer waits for
    # what the client and the kernel still buffer (up to about 4 MB here).
    with aurora_storage.open(
        f"nats://127.0.0.1:{relay.port}/slowlink?codec=raw&timeout=5&max_batch=100"
    ) as repo:
        repo.put_many("t", [(i, VALUE) for i in range(70)])
    with aurora_storage.open(f"nats://{server.address}/slowlink?codec=raw") as direct:
        assert direct.count("t") == 70


def test_a_batch_that_stops_going_out_is_a_typed_timeout(slow: tuple[Server, Throttle]) -> None:
    server, relay = slow
    with aurora_storage.open(
        f"nats://127.0.0.1:{relay.port}/stalled?codec=raw&timeout=1.5&max_batch=100"
    ) as repo:
        _stalled_batch(repo, relay)
    with aurora_storage.open(f"nats://{server.address}/stalled?codec=raw") as direct:
        # The batch's commit was never sent: none of it is stored.
        assert sorted(direct.keys("t")) == ["before"]


def test_the_repository_works_again_once_a_stalled_link_moves(
    slow: tuple[Server, Throttle],
) -> None:
    """nats-py's own ``flush(timeout)`` cancels its PING's future when the timeout
    passes, and when the PONG then arrives its read loop fails on the cancelled future
    (``InvalidStateError``) and stops, with the connection still counted as connected:
    every later call of the repository timed out, for minutes, though its writes were
    applied. The batch's flush now waits on the PING without ever cancelling it."""
    _server, relay = slow
    with aurora_storage.open(
        f"nats://127.0.0.1:{relay.port}/unwedged?codec=raw&timeout=1.5&max_batch=100"
    ) as repo:
        _stalled_batch(repo, relay)
        # The late PONG arrives with the buffered bytes; the repository answers again.
        repo.put("t", "after", b"2")
        assert repo.get("t", "after") == b"2"
        assert sorted(repo.keys("t")) == ["after", "before"]
