"""A NATSTimeoutError says what the client knew when the call's wait ran out.

A single, non-clustered server was SIGKILLed and restarted while calls waited: the
calls whose timeout fired after the client had reconnected blamed "a leader election,
or an overloaded server" (only a call still waiting while the client was reconnecting
said the connection was lost). Now a timeout says the connection was lost while the
call waited when it was (the client has reconnected since, or is reconnecting), and
mentions a leader election only when the connection stayed up and the server is a node
of a cluster.

Each call is stopped at a known point: the repository connects through a loopback
relay (:mod:`nats_relay`) that passes the call's request on to the real server and
holds back its answer; the server is then SIGKILLed, the relay drops the connection
(the answer held is lost with it) and the server is started again on the same port,
where the client reconnects through the relay.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats_relay import Relay
from nats_servers import Server, cluster

import aurora_storage
from aurora_storage_nats import NATSTimeoutError

#: A guard against a call that never returns (not a timing assertion).
GUARD = 120.0
#: What every timeout of a call that waited across a lost connection says (whether the
#: client has reconnected when the timeout fires, or is still reconnecting).
LOST = "the connection was lost"
ELECTION = "leader"

#: The request of a get (a direct get), and its answer (a message, headers or not).
GET = (b"$JS.API.DIRECT.GET", b"MSG")
#: The request of a put (a publish to the key's subject), and its acknowledgement.
PUT = (b"PUB $KV.", b'"seq"')


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, "single")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def relay(server: Server) -> Iterator[Relay]:
    r = Relay(server.port)
    try:
        yield r
    finally:
        r.release()
        r.close()


def _url(relay: Relay, timeout: float) -> str:
    return (
        f"nats://127.0.0.1:{relay.port}/b?timeout={timeout}&reconnect_time_wait=0.05"
        "&connect_timeout=5"
    )


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    out: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _kill_and_restart(server: Server, relay: Relay) -> None:
    """SIGKILL the server while the call's answer is held, drop the client's connection
    (the answer is lost with it), and start the server again on its port."""
    server.kill()
    relay.drop()
    server.start()


@pytest.mark.parametrize("op", ["get", "put"])
def test_a_call_whose_server_is_killed_and_restarted_blames_the_lost_connection(
    server: Server, relay: Relay, op: str
) -> None:
    repo = aurora_storage.open(_url(relay, 3.0))
    try:
        repo.put("t", "k", 1)
        marker, answer = GET if op == "get" else PUT
        relay.hold_after(marker, answer=answer)
        worker, out = _in_thread(
            (lambda: repo.get("t", "k")) if op == "get" else (lambda: repo.put("t", "k", 2))
        )
        assert relay.answered.wait(GUARD), "the server never answered the call"
        _kill_and_restart(server, relay)
        worker.join(GUARD)
        assert not worker.is_alive(), "the call hangs"
        (exc,) = out
        assert isinstance(exc, NATSTimeoutError), repr(exc)
        text = str(exc)
        assert LOST in text, text
        assert ELECTION not in text, text
        assert "overloaded" not in text, text
        if op == "put":
            assert "may or may not have been applied" in text, text
        # The client is back: calls succeed again (the put was applied by the server
        # before it was killed: sync_interval always).
        assert repo.get("t", "k") == (1 if op == "get" else 2)
    finally:
        repo.close()


def test_an_async_call_whose_server_is_killed_and_restarted_blames_the_lost_connection(
    server: Server, relay: Relay
) -> None:
    async def main() -> BaseException:
        ar = aurora_storage.open_async(_url(relay, 3.0))
        try:
            await ar.put("t", "k", 1)
            relay.hold_after(*GET)
            call = asyncio.ensure_future(ar.get("t", "k"))
            assert await asyncio.to_thread(relay.answered.wait, GUARD)
            await asyncio.to_thread(_kill_and_restart, server, relay)
            try:
                await asyncio.wait_for(call, GUARD)
            except TimeoutError as exc:
                return exc
            pytest.fail("the get answered although its answer was lost")
        finally:
            await ar.close()

    exc = asyncio.run(main())
    assert isinstance(exc, NATSTimeoutError), repr(exc)
    assert LOST in str(exc), str(exc)
    assert ELECTION not in str(exc), str(exc)


def test_a_timeout_on_a_single_server_that_stayed_connected_blames_no_election(
    relay: Relay,
) -> None:
    # The answer is held until the call's timeout: the connection stays up all along.
    repo = aurora_storage.open(_url(relay, 0.5))
    try:
        repo.put("t", "k", 1)
        relay.hold_after(*GET)
        with pytest.raises(NATSTimeoutError) as err:
            repo.get("t", "k")
        text = str(err.value)
        assert "the connection stayed up" in text, text
        assert ELECTION not in text, text
        assert LOST not in text, text
    finally:
        relay.release()
        repo.close()


def test_a_timeout_on_a_cluster_node_that_stayed_connected_may_be_an_election(
    tmp_path: Path,
) -> None:
    nodes = cluster(tmp_path)
    for node in nodes:
        node.start()
    relay = Relay(nodes[0].port)
    try:
        # (A fresh cluster elects its meta leader first: the open waits for it.)
        with aurora_storage.open(f"nats://{nodes[0].address}/b?timeout=5") as setup:
            setup.put("t", "k", 1)
        repo: Any = aurora_storage.open(_url(relay, 0.5))
        try:
            relay.hold_after(*GET)
            with pytest.raises(NATSTimeoutError) as err:
                repo.get("t", "k")
            text = str(err.value)
            assert "the connection stayed up" in text, text
            assert "a leader election in the cluster" in text, text
        finally:
            relay.release()
            repo.close()
    finally:
        relay.close()
        for node in nodes:
            node.stop()
