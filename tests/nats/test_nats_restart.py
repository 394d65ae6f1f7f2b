"""A server restarted under a live repository: a watch waiting for changes sees a change
committed after the restart promptly, and the process exits cleanly after the client
reconnected (no task of the private loop left pending). Real server processes, restarted
on the same port and store directory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nats_servers import Server

import aurora_storage
from aurora_storage.errors import StorageError

#: The functional deadline for a change committed after the restart to reach a waiting
#: watch, from the commit (the wake-up consumer is replaced when the client reconnects;
#: before that fix, the change arrived 10 to 20 s later, when the client noticed the
#: consumer's missing heartbeats).
DEADLINE = 5.0


def _consumers(address: str, bucket: str) -> int:
    """The number of consumers of the bucket's stream (raw client)."""
    import nats

    async def main() -> int:
        nc = await nats.connect(f"nats://{address}")
        try:
            info = await nc.jetstream().stream_info(f"KV_{bucket}")
            return int(info.state.consumer_count)
        finally:
            await nc.close()

    return asyncio.run(main())


def _until(what: str, check: Any, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            out = check()
        except StorageError:
            out = None
        if out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.05)


def _restart(server: Server) -> None:
    if server.name == "killed":
        server.kill()  # a crash: SIGKILL
    else:
        server.stop()
    server.start()  # same port, same store directory


@pytest.fixture(params=["stopped", "killed"])
def own_server(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A server of the test's own, restarted by it (gracefully, or after SIGKILL)."""
    server = Server(tmp_path, request.param)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _url(server: Server) -> str:
    return f"nats://{server.address}/b?reconnect_time_wait=0.1&max_reconnect_attempts=-1"


@pytest.fixture
def waiting(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a watch has read everything and is about to wait: its last requests
    are answered, so the restart cannot cut one off (a request in flight when the
    server goes away times out - documented - which is not what these tests are about).
    A spy on the feed's own last checks, calling through to the real ones."""
    from aurora_storage_nats._feed import NATSChangeFeed

    event = threading.Event()
    stored_after = NATSChangeFeed._stored_after
    read_async = NATSChangeFeed.read_async

    def spy_stored_after(self: NATSChangeFeed, after: int) -> bool:
        found = stored_after(self, after)
        if not found:
            event.set()  # the sync watch waits next
        return found

    async def spy_read_async(self: NATSChangeFeed, after: int, limit: int) -> Any:
        records = await read_async(self, after, limit)
        if not records:
            event.set()  # the async watch waits next
        return records

    monkeypatch.setattr(NATSChangeFeed, "_stored_after", spy_stored_after)
    monkeypatch.setattr(NATSChangeFeed, "read_async", spy_read_async)
    return event


def _write_after_restart(server: Server, repo: Any, waiting: threading.Event) -> None:
    # The watch is waiting (its wake-up consumer exists) before the server goes away.
    assert waiting.wait(30)
    assert _consumers(server.address, "b") == 1
    _restart(server)
    # Committed after the restart, through the same (reconnected) client.
    _until("a write after the restart", lambda: repo.put("t", "after", 1) or True)


def test_a_waiting_watch_sees_a_change_committed_after_a_server_restart(
    own_server: Server, waiting: threading.Event
) -> None:
    repo = aurora_storage.open(_url(own_server))
    try:
        repo.put("other", "before", 0)
        start = repo.last_position()
        got: list[Any] = []
        arrived = threading.Event()
        # No timeout of its own: a watch that times out reads once more before it
        # ends, which would find the change however late the wake-up came.
        w = repo.watch("t", after=start, timeout=None)

        def watch() -> None:
            for change in w:
                got.append((change.key, change.value))
                arrived.set()
                return

        t = threading.Thread(target=watch)
        t.start()
        try:
            _write_after_restart(own_server, repo, waiting)
            arrived.wait(DEADLINE)
        finally:
            w.close()
            t.join(60)
        assert got == [("after", 1)], f"no change within {DEADLINE} s of the write"
    finally:
        repo.close()


def test_a_waiting_async_watch_sees_a_change_committed_after_a_server_restart(
    own_server: Server, waiting: threading.Event
) -> None:
    repo = aurora_storage.open(_url(own_server))
    try:
        repo.put("other", "before", 0)
        start = repo.last_position()

        async def main() -> Any:
            arepo = repo.as_async()
            async with arepo.watch("t", after=start, timeout=None) as w:
                first = asyncio.ensure_future(w.__anext__())
                await asyncio.to_thread(_write_after_restart, own_server, repo, waiting)
                try:
                    change = await asyncio.wait_for(first, DEADLINE)
                except TimeoutError:
                    raise AssertionError(f"no change within {DEADLINE} s of the write") from None
                return change.key, change.value

        assert asyncio.run(main()) == ("after", 1)
    finally:
        repo.close()


_CHILD = textwrap.dedent(
    """
    import sys, time
    import aurora_storage

    url, ready, go = sys.argv[1], sys.argv[2], sys.argv[3]
    repo = aurora_storage.open(url)
    repo.put("t", "before", 1)
    w = repo.watch("t", timeout=0.05)
    assert list(w) == []
    open(ready, "w").close()
    import os
    while not os.path.exists(go):
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    while True:
        try:
            repo.put("t", "after", 2)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert repo.get("t", "after") == 2
    assert [c.key for c in repo.watch("t", timeout=0.3)] == []
    # A scan just before the close: its consumer's client tasks are cancelled as it
    # ends, and the loop stops soon after.
    assert repo.list("t") == ["after", "before"]
    repo.close()
    print("closed")
    """
)


def test_process_exits_cleanly_after_a_reconnect(own_server: Server, tmp_path: Path) -> None:
    ready, go = tmp_path / "ready", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, _url(own_server), str(ready), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        _until("the child opened the repository", ready.exists, within=60)
        _restart(own_server)
        go.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode()
    assert proc.returncode == 0, text
    assert out.decode().strip() == "closed"
    assert "Task was destroyed" not in text, text
    assert "Exception ignored" not in text, text


def _delete_consumers(address: str, bucket: str) -> int:
    """Delete every consumer of the bucket's stream, as another tool would (or as a
    cluster node taking its consumers down with it)."""
    import nats

    async def main() -> int:
        nc = await nats.connect(f"nats://{address}")
        try:
            js = nc.jetstream()
            names = [c.name for c in await js.consumers_info(f"KV_{bucket}")]
            for name in names:
                await js.delete_consumer(f"KV_{bucket}", name)
            return len(names)
        finally:
            await nc.close()

    return asyncio.run(main())


def test_a_waiting_watch_whose_consumer_is_lost_without_a_reconnect_recovers(
    nats_server: Server, bucket: str, waiting: threading.Event
) -> None:
    from aurora_storage_nats._feed import _MISSED, HEARTBEAT

    # The consumer's heartbeats stop; it is replaced after _MISSED missed beats.
    deadline = _MISSED * HEARTBEAT + DEADLINE
    repo = aurora_storage.open(f"nats://{nats_server.address}/{bucket}")
    try:
        start = repo.last_position()
        w = repo.watch("t", after=start, timeout=None)
        got: list[Any] = []
        arrived = threading.Event()

        def watch() -> None:
            for change in w:
                got.append((change.key, change.value))
                arrived.set()
                return

        t = threading.Thread(target=watch)
        t.start()
        try:
            assert waiting.wait(30)
            assert _delete_consumers(nats_server.address, bucket) == 1
            repo.put("t", "after", 1)
            arrived.wait(deadline)
        finally:
            w.close()
            t.join(60)
        assert got == [("after", 1)], f"no change within {deadline} s of the write"
        # The replacement is the only consumer, and it goes with the watch.
        assert _consumers(nats_server.address, bucket) == 0
    finally:
        repo.close()


# ------------------------------------------------------------------ outages past the bound


def _client(repo: Any) -> Any:
    """The nats-py client of a repository's private loop (read only, to follow its
    reconnect attempts)."""
    return repo.backend._core.nc


def test_the_default_keeps_reconnecting_through_any_outage(
    tmp_path: Path, waiting: threading.Event
) -> None:
    # nats-py's own default gave up after 60 attempts x 0.5 s: any outage over ~30 s
    # left the repository dead for good, even after the server was back. By default
    # the client now keeps reconnecting, and a waiting watch sees the next change.
    from aurora_storage_nats import NATSConnectionError, NATSTimeoutError

    server = Server(tmp_path, "outage")
    server.start()
    repo = aurora_storage.open(f"nats://{server.address}/b?reconnect_time_wait=0.02&timeout=1")
    try:
        repo.put("t", "before", 0)
        w = repo.watch("t", after=repo.last_position(), timeout=None)
        got: list[Any] = []
        failed: list[BaseException] = []

        def watch() -> None:
            try:
                for change in w:
                    got.append((change.key, change.value))
                    if change.key == "after":
                        return
            except BaseException as exc:
                failed.append(exc)

        t = threading.Thread(target=watch)
        t.start()
        try:
            assert waiting.wait(30)
            server.kill()
            nc = _client(repo)
            # Past the old bound: more failed attempts on the server than it allowed
            # (or the client closed, as it did).
            _until(
                "61 reconnect attempts",
                lambda: nc.is_closed or max(s.reconnects for s in nc._server_pool) > 60,
                within=120,
            )
            assert not nc.is_closed
            with pytest.raises((NATSTimeoutError, NATSConnectionError)):
                repo.put("t", "maybe", 1)
            server.start()

            def write_after() -> bool:
                repo.put("t", "after", 1)
                return True

            _until("a write after the restart", write_after)
            t.join(60)
        finally:
            w.close()
            t.join(60)
        assert not failed, failed
        # (The write that timed out was buffered by the client and applied on the
        # reconnect: "may or may not have been applied".)
        assert got, "no change"
        assert got[-1] == ("after", 1), got
        assert repo.get("t", "after") == 1
    finally:
        repo.close()
        server.stop()


@pytest.mark.parametrize(("form", "attempts"), [("sync", 2), ("async", 2), ("sync", 0)])
def test_a_connection_closed_for_good_wakes_the_watch_and_says_reopen(
    tmp_path: Path, waiting: threading.Event, form: str, attempts: int
) -> None:
    # With a bound, the client gives up and closes. A watch waiting then hung until
    # close(); every call said "the connection is lost ... a write may or may not have
    # been applied" forever, even once the server was back. Now the watch is woken with
    # the error, and every call says the connection is closed for good: reopen. (With
    # 0, nats-py reconnected forever: it only counts attempts above 0.)
    from aurora_storage_nats import NATSConnectionError, NATSTimeoutError

    server = Server(tmp_path, "giveup")
    server.start()
    url = f"nats://{server.address}/b?max_reconnect_attempts={attempts}&reconnect_time_wait=0.05"
    repo = aurora_storage.open(url)
    try:
        repo.put("t", "k", 1)
        start = repo.last_position()
        outcome: list[BaseException | str] = []

        def sync_watch() -> None:
            try:
                for _ in repo.watch("t", after=start, timeout=None):
                    outcome.append("a change")
                    return
                outcome.append("ended")
            except BaseException as exc:
                outcome.append(exc)

        async def async_watch() -> None:
            try:
                async with repo.as_async().watch("t", after=start, timeout=None) as w:
                    async for _ in w:
                        outcome.append("a change")
                        return
                outcome.append("ended")
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(
            target=sync_watch if form == "sync" else lambda: asyncio.run(async_watch())
        )
        t.start()
        assert waiting.wait(30)
        server.kill()
        t.join(60)
        assert not t.is_alive(), "the waiting watch was never woken"
        assert len(outcome) == 1, outcome
        assert isinstance(outcome[0], NATSConnectionError | NATSTimeoutError), outcome
        _until("the client gave up", lambda: _client(repo).is_closed, within=60)
        calls: list[Callable[[], object]] = [
            lambda: repo.get("t", "k"),
            lambda: repo.put("t", "k", 2),
        ]
        for call in calls:
            with pytest.raises(NATSConnectionError) as err:
                call()
            text = str(err.value)
            assert "closed for good" in text
            assert f"max_reconnect_attempts={attempts}" in text
            assert "open it again" in text
            assert "may or may not" not in text  # nothing was sent
        # The server back does not bring a closed client back: reopening does.
        server.start()
        with pytest.raises(NATSConnectionError, match="closed for good"):
            repo.get("t", "k")
        with aurora_storage.open(url) as again:
            assert again.get("t", "k") == 1
    finally:
        repo.close()
        server.stop()
