"""The one fork guard every engine plugin uses.

An engine handle cannot cross ``fork()``: a RocksDB child's writes would be lost (and
dropping its copy of the handle would flush the parent's memtable into the parent's
files), and LMDB forbids using an inherited environment (closing it could release the
parent's reader or writer slot). So a backend that holds a handle registers here with
:func:`guard`; in a forked child every registered backend still alive has its
``_forked_in_child()`` called (through :func:`os.register_at_fork`), where it gives up
its handle without releasing anything the parent owns, and from then on its calls raise
:class:`~aurora_storage.errors.InheritedHandleError` built by :func:`inherited_error`.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from typing import Protocol

from .errors import InheritedHandleError

__all__ = ["ForkAware", "forked_child", "guard", "inherited_error", "keep_forever", "release"]


class ForkAware(Protocol):
    """What the guard calls in a forked child (on the child's copy of the backend)."""

    def _forked_in_child(self) -> None:
        """Give up the inherited engine handle; later calls raise InheritedHandleError.

        Runs inside ``os.fork()`` in the child, before it returns there: it must not
        block, and must release nothing the parent still uses."""


# Backends alive in this process that hold an engine handle.
_LIVE: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def guard(backend: ForkAware) -> None:
    """Have ``backend._forked_in_child()`` called in any child forked from now on."""
    _LIVE.add(backend)


def release(backend: ForkAware) -> None:
    """Stop guarding ``backend`` (it closed its handle). No error if it was not guarded."""
    _LIVE.discard(backend)


def keep_forever(handle: object) -> None:
    """Make an inherited engine object immortal in this (child) process.

    Its deallocation would run engine code that acts on state shared with the parent (a
    flush of the parent's memtable, the end of a read transaction in the parent's reader
    slot); one leaked reference, never released, not even at interpreter shutdown, keeps
    it untouched until the process exits.
    """
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))


def inherited_error(
    *, engine: str, scheme: str, path: str, opened_pid: int, why: str, fix: str | None = None
) -> InheritedHandleError:
    """The error a backend raises when used through a handle inherited across fork().

    Args:
        engine: the engine's name for the message (``"RocksDB"``, ``"LMDB"``).
        scheme: the backend's URL scheme (the error's ``backend`` attribute).
        path: the store's path.
        opened_pid: the process that opened the store.
        why: why the engine cannot use an inherited handle.
        fix: what the child can do instead, where opening the store again in the
            child would itself be refused; ``None``: open it again in the child.
    """
    if fix is None:
        fix = (
            "Open the store again in the child (after forking), or use the 'spawn' "
            "multiprocessing start method"
        )
    return InheritedHandleError(
        f"this {engine} repository ({path}) was opened in process {opened_pid} and "
        f"inherited through fork() by process {os.getpid()}; {why}. {fix}",
        backend=scheme,
        path=path,
    )


def forked_child() -> bool:
    """Whether this process was forked from one that held an engine handle then (so
    some store may be held by the parent's handle, inherited here)."""
    return _FORKED_WITH_HANDLES


#: Set in a child forked while some backend held an engine handle (see forked_child).
_FORKED_WITH_HANDLES = False


def _after_fork_in_child() -> None:
    global _FORKED_WITH_HANDLES
    live = list(_LIVE)
    if live:
        _FORKED_WITH_HANDLES = True
    for backend in live:
        backend._forked_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
