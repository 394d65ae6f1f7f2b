"""The private event-loop thread the synchronous NATS repository runs its client on.

One loop thread per process, shared by every sync NATS repository of the process and
started on first use; it stops when the last of them closes. After ``fork()`` the child
starts its own (a loop thread does not survive a fork; repositories opened before the
fork refuse to be used in the child, see :class:`LoopThread`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from aurora_storage.errors import InheritedHandleError, StorageError

__all__ = ["LoopThread", "acquire", "release"]

T = TypeVar("T")

_lock = threading.Lock()
_current: LoopThread | None = None


class LoopThread:
    """An asyncio loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.users = 0
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name="aurora-storage-nats", daemon=True
        )
        self._thread.start()
        ready.wait()
        self.ident = self._thread.ident

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            self._finish()

    def _finish(self) -> None:
        # What asyncio.run() does before closing its loop: tasks still pending (the
        # client's own - an ordered consumer's heartbeat check, a reconnect attempt -
        # or one just cancelled that has not run since) are cancelled and run to their
        # end, and async generators finalised. A loop closed with a pending task makes
        # the interpreter print "Task was destroyed but it is pending!" at exit.
        loop = self.loop
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop.

        Raises:
            StorageError: called from the loop's own thread (waiting there would
                deadlock).
            InheritedHandleError: called from another process than the one that
                started the loop (a repository inherited across ``fork()``).
        """
        if threading.get_ident() == self.ident:
            coro.close()
            raise StorageError(
                "a synchronous NATS repository call was made from inside its private event "
                "loop (a callback running on the client's loop); waiting there would "
                "deadlock. Use open_async() and await the call instead",
                backend="nats",
            )
        if os.getpid() != self.pid:
            coro.close()
            # The same error class as LMDB's and RocksDB's fork guard (a closed-repository
            # error: nothing of the parent's can be used here).
            raise InheritedHandleError(
                f"this NATS repository was opened in process {self.pid} and cannot be used "
                f"in process {os.getpid()} (after fork); open it again in this process",
                backend="nats",
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Stop the loop and join its thread (after its last user closed)."""
        if os.getpid() != self.pid or not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


def acquire() -> LoopThread:
    """The process's loop thread (started if needed), with one more user."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = LoopThread()
        _current.users += 1
        return _current


def release(lt: LoopThread) -> None:
    """One user fewer; the last one stops the thread."""
    global _current
    with _lock:
        lt.users -= 1
        if lt.users > 0:
            return
        if _current is lt:
            _current = None
    lt.stop()


def _after_fork() -> None:
    # The parent's loop thread does not exist in the child: forget it (without closing
    # the parent's objects) so the child's first repository starts its own.
    global _current, _lock
    _current = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
