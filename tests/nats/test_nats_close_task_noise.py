"""Nothing of nats-py reaches asyncio's exception handler when a connection with
``max_reconnect_attempts=0`` is lost with bytes still unsent.

The plugin closes such a client itself when it loses its connection (nats-py would
reconnect for ever with 0). nats-py's close writes the bytes still in its buffer to the
lost connection and waits for them to drain, which raises ``ConnectionResetError``: the
close stopped there - before its own cleanup and its closed callback, so later calls
did not say why the connection was closed for good - and the close task's exception,
never retrieved, was printed by asyncio at garbage collection ("Task exception was
never retrieved ... Client.close() ... ConnectionResetError: Connection lost").

The loss is made at a known point: the repository connects through a loopback relay
(:mod:`nats_relay`) that stalls the bytes of a few large batches until nats-py's flusher
is blocked on the full socket with bytes still in its buffer (which is what the
hammering threads of the report left there by chance: publishes made while the client
was reconnecting); then the relay drops the connection.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from nats_relay import Relay
from nats_servers import MAX_BATCH, Server

import aurora_storage
from aurora_storage_nats import NATSConnectionClosedError, NATSConnectionError, NATSTimeoutError
from aurora_storage_nats._connection import FLUSH_EVERY

#: A guard against a call that never returns (not a timing assertion).
GUARD = 120.0
#: The reason a call gives once the plugin has closed such a client (set by the
#: client's closed callback, which the failed close never reached).
NO_RECONNECT = "the connection was lost and max_reconnect_attempts=0 allows no reconnect"


@pytest.fixture
def relay(nats_server: Server) -> Iterator[Relay]:
    r = Relay(nats_server.port)
    try:
        yield r
    finally:
        r.release()
        r.close()


def _url(relay: Relay, bucket: str) -> str:
    # timeout=5: the calls jammed behind the stall wait that long for their answers
    # (the outcome, not the time, is checked; the jam outlasts their timeouts).
    return (
        f"nats://127.0.0.1:{relay.port}/{bucket}?codec=raw&max_batch={MAX_BATCH}"
        "&timeout=5&max_reconnect_attempts=0"
    )


def _batches(relay: Relay) -> list[list[tuple[Any, bytes]]]:
    """put_many calls that together hand nats-py more than the stalled connection takes
    in (the sockets, the relay): each publishes FLUSH_EVERY bytes, then waits for them
    to reach the server, which they never do. Started one after the other, once the
    previous one's bytes are on their way, they fill the socket: nats-py's flusher then
    blocks on it for good, and the next batch's bytes stay in nats-py's buffer."""
    n = -(-relay.in_flight_bound() // FLUSH_EVERY) + 2
    value = b"y" * 4096
    per = FLUSH_EVERY // len(value) + 16
    return [[((b, i), value) for i in range(per)] for b in range(n)]


async def _state(nc: Any) -> tuple[int, bool]:
    """The bytes nats-py has published, and whether bytes in its buffer stay there,
    unchanged, while the loop goes round a few times: each publish wakes nats-py's
    flusher, and a free flusher takes the whole buffer in one round, so it is blocked
    on the full socket."""
    before = nc.pending_data_size
    for _ in range(5):
        await asyncio.sleep(0)
    return int(nc.stats["out_bytes"]), bool(before > 0 and nc.pending_data_size == before)


def _state_of(nc: Any, loop: asyncio.AbstractEventLoop) -> tuple[int, bool]:
    """:func:`_state` of the client of a private loop (a synchronous repository's)."""
    return asyncio.run_coroutine_threadsafe(_state(nc), loop).result(GUARD)


def _asyncio_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "asyncio" and r.levelno >= logging.WARNING
    ]


def test_a_connection_lost_for_good_with_bytes_unsent_leaves_nothing_for_asyncio(
    nats_server: Server, bucket: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    repo = aurora_storage.open(_url(relay, bucket))
    loop = repo.backend._lt.loop  # type: ignore[attr-defined]  # the NATS backend's loop
    nc = repo.backend._core.nc  # type: ignore[attr-defined]  # and its client
    threads: list[threading.Thread] = []

    def call(fn: Any, *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except (NATSConnectionError, NATSTimeoutError):
                pass  # cut (what a cut batch says is test_nats_close_in_flight's matter)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)

    relay.stall_at(b"Nats-Batch-Id")
    try:
        deadline = time.monotonic() + GUARD
        published, jammed = _state_of(nc, loop)
        for items in _batches(relay):
            call(repo.put_many, "u", items)
            while not jammed and _state_of(nc, loop)[0] - published < FLUSH_EVERY // 2:
                assert time.monotonic() < deadline, "a batch published nothing"
                time.sleep(0.01)
            while True:  # until its bytes are handed on, or stay
                now, jammed = _state_of(nc, loop)
                if jammed or nc.pending_data_size == 0:
                    break
                assert time.monotonic() < deadline, "a batch's bytes neither went nor stayed"
                time.sleep(0.01)
            if jammed:
                break
            published = now
        assert jammed, "the client's flusher never blocked"
        relay.cut()
        for t in threads:
            t.join(GUARD)
            assert not t.is_alive(), "a call cut hangs"
        # The close went through: its callback told the repository why.
        with pytest.raises(NATSConnectionClosedError) as err:
            repo.get("u", 0)
        assert NO_RECONNECT in str(err.value)
    finally:
        relay.release()
        repo.close()
    del repo, nc, loop
    gc.collect()  # a task whose exception nobody retrieved is reported when collected
    assert _asyncio_errors(caplog) == []


def test_an_async_connection_lost_for_good_with_bytes_unsent_leaves_nothing_for_asyncio(
    nats_server: Server, bucket: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    reported: list[dict[str, Any]] = []

    async def main() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        ar = aurora_storage.open_async(_url(relay, bucket))
        await ar.put("u", -1, b"first")  # connects this loop's client
        (nc,) = [c.nc for c in ar.backend._native._cores.values()]  # type: ignore[attr-defined]  # the client of this loop
        relay.stall_at(b"Nats-Batch-Id")
        calls: list[asyncio.Future[Any]] = []
        try:
            deadline = time.monotonic() + GUARD
            published, jammed = await _state(nc)
            for items in _batches(relay):
                calls.append(asyncio.ensure_future(ar.put_many("u", items)))
                while not jammed and (await _state(nc))[0] - published < FLUSH_EVERY // 2:
                    assert time.monotonic() < deadline, "a batch published nothing"
                    await asyncio.sleep(0.01)
                while True:  # until its bytes are handed on, or stay
                    now, jammed = await _state(nc)
                    if jammed or nc.pending_data_size == 0:
                        break
                    assert time.monotonic() < deadline, "a batch's bytes neither went nor stayed"
                    await asyncio.sleep(0.01)
                if jammed:
                    break
                published = now
            assert jammed, "the client's flusher never blocked"
            await asyncio.to_thread(relay.cut)
            await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), GUARD)
            with pytest.raises(NATSConnectionClosedError) as err:
                await ar.get("u", 0)
        finally:
            relay.release()
            await ar.close()
        del ar, nc, calls
        gc.collect()  # (reported to this loop's handler when collected)
        await asyncio.sleep(0)
        return str(err.value)

    closed = asyncio.run(main())
    assert NO_RECONNECT in closed
    gc.collect()
    assert reported == []
    assert _asyncio_errors(caplog) == []
