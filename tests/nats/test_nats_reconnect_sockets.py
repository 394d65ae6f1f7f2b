"""A reconnect attempt that fails after its TCP connection was made leaves no socket
open behind it.

nats-py keeps one transport object per client and, on each connect attempt, replaces
its stream writer without closing the previous one. An attempt that reached something
listening - a TCP proxy or load balancer in front of a server that is down, here a
loopback relay (:mod:`nats_relay`) whose server was SIGKILLed - and then failed (the
connection closed before the server's INFO) left its socket open until the garbage
collector found it, one per attempt (every ``reconnect_time_wait`` for as long as the
outage lasts), each reported as "ResourceWarning: unclosed <StreamWriter ...>".
"""

from __future__ import annotations

import gc
import time
import warnings
from pathlib import Path

from nats_relay import Relay
from nats_servers import Server

import aurora_storage
from aurora_storage.errors import StorageError

#: A guard against waiting for ever (not a timing assertion).
GUARD = 120.0
#: Failed attempts the outage lasts for.
ATTEMPTS = 5


def test_failed_reconnect_attempts_leave_no_socket_open(tmp_path: Path) -> None:
    server = Server(tmp_path, "down")
    server.start()
    relay = Relay(server.port)
    repo = aurora_storage.open(
        f"nats://127.0.0.1:{relay.port}/b?timeout=2&reconnect_time_wait=0.05"
    )
    try:
        repo.put("t", "k", 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            server.kill()
            before = relay.accepted
            relay.drop()
            deadline = time.monotonic() + GUARD
            while relay.accepted < before + ATTEMPTS:  # each one closed by the relay
                assert time.monotonic() < deadline, "the client did not try to reconnect"
                time.sleep(0.01)
            server.start()
            while True:  # back through the relay
                try:
                    repo.put("t", "k", 2)
                    break
                except StorageError:
                    assert time.monotonic() < deadline, "the client did not reconnect"
            gc.collect()
        unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert unclosed == []
        assert repo.get("t", "k") == 2
    finally:
        repo.close()
        relay.close()
        server.stop()
