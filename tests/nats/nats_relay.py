"""A loopback TCP relay between a client and a real nats-server, for tests that must
stop a call at a known point of its exchange with the server. Nothing is mocked: the
client and the server are real, only the bytes between them are held back or dropped,
and the test learns from a ``threading.Event`` when that happened (no sleeps).

* :meth:`Relay.stall_at`: once the client sends ``marker``, none of the client's bytes
  from the chunk holding it on reach the server; the relay stops reading them, so the
  client's socket buffers fill (at most :meth:`Relay.in_flight_bound` bytes).
  ``stalled`` is set then.
* :meth:`Relay.hold_after`: the client's bytes pass; once ``marker`` is on its way to
  the server, none of the server's bytes reach the client. ``held`` is set then, and
  ``answered`` once the server has sent back bytes holding ``answer`` (held too): the
  server has handled the request by then.
* :meth:`Relay.release` lets everything held go on; :meth:`Relay.cut` drops every
  connection instead (what is held is lost, as with a server gone away) and refuses new
  ones (until :meth:`Relay.reopen`: as with a server gone and back, its clients'
  connections are refused meanwhile); :meth:`Relay.drop` drops every connection too (a
  broken link) but relays the client's new ones (its reconnects) afresh.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

#: The relay's receive buffer per client connection (the kernel doubles it). Set on the
#: listening socket, it is inherited by accepted sockets and turns autotuning off, so a
#: stalled client can put only this much in the relay's socket.
RCVBUF = 64 * 1024
#: What asyncio's stream reader buffers before it stops reading the socket (twice its
#: 64 KiB limit), and one read's chunk held by the relay.
_READER = 2 * 64 * 1024 + 65536


def _tcp_wmem_max() -> int:
    """The most a TCP socket's send buffer grows to (Linux: ``tcp_wmem``'s third value);
    a generous 64 MiB where it cannot be read."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 64 * 1024 * 1024


class Relay:
    """A relay on ``127.0.0.1:port`` to the server at ``127.0.0.1:target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.stalled = threading.Event()
        self.held = threading.Event()
        self.answered = threading.Event()
        self._mode: str | None = None
        self._marker = b""
        self._answer = b""
        self._cut = False
        #: Bumped by drop(): a connection relayed under an older generation is dropped.
        self._generation = 0
        #: Counts the arms: bytes passed on before the latest one never match its marker.
        self._arms = 0
        #: Connections accepted so far (a client's reconnect attempts reach the relay
        #: even while its server is down: each is closed then).
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._sock = self._listening(0)
        self.port: int = self._sock.getsockname()[1]
        self.rcvbuf: int = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the relay did not start"

    @staticmethod
    def _listening(port: int) -> socket.socket:
        """A socket bound to ``127.0.0.1:port`` (0: any free port) to listen on; its
        address reusable at once, for :meth:`reopen`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind(("127.0.0.1", port))
        return sock

    def in_flight_bound(self) -> int:
        """The most bytes a client can have sent past a stall: its socket's send buffer,
        the relay's receive buffer and what the relay's reader holds."""
        return _tcp_wmem_max() + self.rcvbuf + _READER

    # ------------------------------------------------------------------ test side

    def stall_at(self, marker: bytes) -> None:
        """Arm: stall the client's bytes from the chunk holding ``marker`` on."""
        self.loop.call_soon_threadsafe(self._arm, "stall", marker, b"")

    def hold_after(self, marker: bytes, answer: bytes = b"") -> None:
        """Arm: hold the server's bytes once ``marker`` has been passed on to it;
        ``answered`` is set when held bytes hold ``answer``."""
        self.loop.call_soon_threadsafe(self._arm, "hold", marker, answer)

    def release(self) -> None:
        """Let everything held go on (nothing to do once the relay is cut or closed)."""
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._open_gates)
            except RuntimeError:
                pass  # closed meanwhile

    def cut(self) -> None:
        """Drop every connection (what is held is lost) and refuse new ones; returns once
        done."""
        done = threading.Event()

        def cut() -> None:
            self._cut = True
            self.server.close()
            for w in list(self._writers):
                w.transport.abort()
            self._open_gates()  # what waits there drops its bytes (see _conn)
            done.set()

        self.loop.call_soon_threadsafe(cut)
        assert done.wait(10), "the relay did not cut its connections"

    def reopen(self) -> None:
        """After :meth:`cut`: accept connections on the same port again (new ones only:
        what cut() dropped stays dropped); returns once listening."""

        async def reopen() -> None:
            self._generation += 1  # the connections cut() dropped stay dropped
            self._cut = False
            self.server = await asyncio.start_server(self._conn, sock=self._listening(self.port))

        asyncio.run_coroutine_threadsafe(reopen(), self.loop).result(10)

    def drop(self) -> None:
        """Drop every connection (what is held is lost, as with a broken link), disarm,
        and go on relaying new connections; returns once done."""
        done = threading.Event()

        def drop() -> None:
            self._generation += 1
            self._mode = None
            for w in list(self._writers):
                w.transport.abort()
            self._open_gates()  # what waits there drops its bytes (see _conn)
            done.set()

        self.loop.call_soon_threadsafe(drop)
        assert done.wait(10), "the relay did not drop its connections"

    def close(self) -> None:
        """Stop the relay (its connections dropped) and its thread."""

        def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        if self.thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(stop)
            except RuntimeError:
                pass  # the loop is closed already
            self.thread.join(10)

    # ------------------------------------------------------------------ relay side

    def _arm(self, mode: str, marker: bytes, answer: bytes) -> None:
        self._mode, self._marker, self._answer = mode, marker, answer
        self._arms += 1

    def _dropping(self, generation: int) -> bool:
        """Whether cut(), or drop() since the connection of ``generation`` was made,
        dropped it (asked again after every wait: it happens while a pipe waits at a
        gate)."""
        return self._cut or generation != self._generation

    def _open_gates(self) -> None:
        self._up.set()
        self._down.set()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._up = asyncio.Event()
            self._down = asyncio.Event()
            self._open_gates()
            self.server = await asyncio.start_server(self._conn, sock=self._sock)
            ready.set()
            # Until close() cancels it: cut() closes the server only (see reopen).
            await asyncio.Event().wait()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        # Let the cancelled relays close their sockets, then close the loop.
        rest = asyncio.all_tasks(self.loop)
        self.loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        self.loop.close()

    async def _conn(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        generation = self._generation
        self.accepted += 1
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            cw.close()
            return
        self._writers.update((cw, sw))

        async def up() -> None:  # client -> server
            tail = b""
            arms = self._arms
            try:
                while data := await cr.read(65536):
                    await self._up.wait()
                    if self._dropping(generation):
                        break
                    if arms != self._arms:
                        # Armed since the last chunk: the tail kept for a marker split
                        # between two chunks was passed on before, and must not match.
                        arms, tail = self._arms, b""
                    seen = tail + data
                    tail = seen[-64:]
                    if self._mode is not None and self._marker in seen:
                        mode, self._mode = self._mode, None
                        if mode == "stall":
                            self._up.clear()
                            self.stalled.set()
                            await self._up.wait()
                            if self._dropping(generation):
                                break
                        else:
                            # Closed before the marker goes on: the server's answer to
                            # it cannot slip through.
                            self._down.clear()
                            self.held.set()
                    sw.write(data)
                    await sw.drain()
            except OSError:
                pass
            finally:
                sw.close()

        async def down() -> None:  # server -> client
            try:
                while data := await sr.read(65536):
                    if not self._down.is_set():
                        if self._answer in data:
                            self.answered.set()
                        await self._down.wait()
                    if self._dropping(generation):
                        break
                    cw.write(data)
                    await cw.drain()
            except OSError:
                pass
            finally:
                cw.close()

        try:
            await asyncio.gather(up(), down())
        finally:
            self._writers.discard(cw)
            self._writers.discard(sw)
            cw.close()
            sw.close()
