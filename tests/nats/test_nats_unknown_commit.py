"""A commit whose answer never comes: what the NATSTimeoutError tells the caller to do.

A loopback relay between the client and a real nats-server passes everything until the
client sends a batch's commit, then holds the server's bytes back: the server stores the
batch, the client hears nothing and raises NATSTimeoutError ("may or may not have been
applied"). The advice used to be "read it back, or repeat it" for every write; an
append repeated is stored again under a new number, so a commit holding appends now
says to read back first (and how), while puts and conditional writes keep "repeat it".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from nats_servers import Server, free_port

import aurora_storage
from aurora_storage.errors import KeyExistsError, RepositoryClosedError
from aurora_storage_nats import NATSTimeoutError

_COMMIT = b"Nats-Batch-Commit"


class HoldingRelay:
    """A loopback relay to ``target`` that, once armed, holds every server -> client
    byte after the client sent a batch's commit, until released."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.armed = False
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.open = asyncio.Event()
            self.open.set()
            self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port)
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

    async def _conn(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target)

        async def up() -> None:  # client -> server, watching for a commit
            tail = b""
            try:
                while data := await cr.read(65536):
                    sw.write(data)
                    await sw.drain()
                    seen, tail = tail + data, (tail + data)[-len(_COMMIT) :]
                    if self.armed and _COMMIT in seen:
                        self.armed = False
                        self.open.clear()
            except OSError:
                pass
            finally:
                sw.close()

        async def down() -> None:  # server -> client, held while closed
            try:
                while data := await sr.read(65536):
                    await self.open.wait()
                    cw.write(data)
                    await cw.drain()
            except OSError:
                pass
            finally:
                cw.close()

        await asyncio.gather(up(), down())

    def arm(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "armed", True)

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.open.set)

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)


@pytest.fixture
def relay(nats_server: Server) -> Iterator[HoldingRelay]:
    r = HoldingRelay(nats_server.port)
    try:
        yield r
    finally:
        r.release()
        r.close()


def _unanswered(relay: HoldingRelay, call: object) -> str:
    relay.arm()
    try:
        with pytest.raises(NATSTimeoutError) as err:
            call()  # type: ignore[operator]  # a callable of the test's own
    finally:
        relay.release()
    return str(err.value)


def test_a_timed_out_commit_with_appends_says_to_read_back_before_repeating(
    relay: HoldingRelay, bucket: str
) -> None:
    repo = aurora_storage.open(f"nats://127.0.0.1:{relay.port}/{bucket}?timeout=1")
    try:
        repo.put("t", "warm", 1)

        def append() -> None:
            with repo.batch() as b:
                b.append("t", "orders", {"order": "o-1"})

        text = _unanswered(relay, append)
        assert "may or may not have been applied" in text
        assert "read it back before repeating" in text
        assert "new number" in text
        assert "last_sequence" in text
        assert "KeyExistsError" in text  # the idempotency-key way, named
        # Why: the server stored it; a repeat would store it again as number 2.
        assert repo.last_sequence("t", "orders") == 1

        # The advice given works: a batch that also inserts an idempotency key, repeated
        # after an unknown outcome, raises KeyExistsError and stores nothing twice.
        def keyed() -> None:
            with repo.batch() as b:
                b.append("t", "orders", {"order": "o-2"})
                b.insert("t", ("applied", "o-2"), True)

        _unanswered(relay, keyed)
        with pytest.raises(KeyExistsError):
            keyed()
        assert repo.last_sequence("t", "orders") == 2

        # A conditional batch without appends keeps its own advice: repeat it (the
        # repeat reports the conflict if the first was applied).
        def inserts() -> None:
            with repo.batch() as b:
                b.insert("t", "once", 1)
                b.put("t", "also", 2)

        text = _unanswered(relay, inserts)
        assert "read it back, or repeat it" in text
        assert "new number" not in text
        with pytest.raises(KeyExistsError):
            inserts()
    finally:
        repo.close()


def test_a_commit_with_appends_cut_by_close_says_to_read_back_before_repeating(
    relay: HoldingRelay, bucket: str
) -> None:
    repo = aurora_storage.open(f"nats://127.0.0.1:{relay.port}/{bucket}?timeout=30")
    errors: list[BaseException] = []

    def append() -> None:
        try:
            with repo.batch() as b:
                b.append("t", "orders", {"order": "o-1"})
        except BaseException as exc:
            errors.append(exc)

    try:
        repo.put("t", "warm", 1)
        relay.arm()
        worker = threading.Thread(target=append)
        worker.start()
        held = threading.Event()
        # Wait (bounded) until the relay holds the commit's answer back.
        for _ in range(400):
            if not relay.open.is_set():
                held.set()
                break
            worker.join(0.025)
        assert held.is_set(), "the commit was never sent"
        repo.close()
        worker.join(30)
    finally:
        relay.release()
        repo.close()
    assert len(errors) == 1
    assert isinstance(errors[0], RepositoryClosedError)
    text = str(errors[0])
    assert "may or may not have been applied" in text
    assert "read it back before repeating" in text
    assert "new number" in text
