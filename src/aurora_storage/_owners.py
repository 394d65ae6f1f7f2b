"""Which repositories of this process wrap one live store handle, and the owner that
alone writes through it.

A store has one live handle per process (:data:`~aurora_storage._stores.open_stores`):
every repository opened on it wraps that same backend. An owner - a tiered pair, whose
change log and position must be the only writers of its tiers - *claims* the handles it
writes through their backends. While a handle is claimed, every repository over it
refuses writes (:meth:`Repository._refuse_writes`, ``ReadOnlyError`` with the owner's
reason): those open at the claim and those opened later. Reads stay free, and the
owner's own writes, which go to the backends, are not affected. :func:`release` lifts
the refusal.

Nothing here runs per write: the refusal is the repository's read-only flag, which its
write paths test anyway. A repository is registered when it is constructed, a claim costs
one pass over the repositories of the claimed handles.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._repository import Repository
    from .backend import Backend

__all__ = ["Why", "claim", "register", "release"]

#: the reason a repository refuses writes, given that repository (for its name)
Why = Callable[["Repository[Any, Any]"], str]


class _Entry:
    """One live handle: its repositories and, while claimed, its owner."""

    __slots__ = ("owner", "ref", "repos", "why")

    def __init__(self, ref: weakref.ref[Backend]) -> None:
        self.ref = ref
        self.repos: weakref.WeakSet[Repository[Any, Any]] = weakref.WeakSet()
        self.owner: object | None = None
        self.why: Why | None = None


_lock = threading.Lock()
#: id(backend) -> its entry, for as long as the backend object lives
_entries: dict[int, _Entry] = {}


def _entry(backend: Backend) -> _Entry:
    """The entry of ``backend`` (created on first use). Call it holding ``_lock``."""
    key = id(backend)
    entry = _entries.get(key)
    if entry is None or entry.ref() is not backend:

        def forget(
            ref: weakref.ref[Backend], key: int = key, entries: dict[int, _Entry] = _entries
        ) -> None:
            # The backend is gone (its id may be reused): drop its entry, not a newer one.
            # (``entries`` is bound here: at interpreter exit the module's globals go.)
            found = entries.get(key)
            if found is not None and found.ref is ref:
                del entries[key]

        entry = _Entry(weakref.ref(backend, forget))
        _entries[key] = entry
    return entry


def register(repo: Repository[Any, Any], backend: Backend) -> None:
    """Record that ``repo`` wraps ``backend``; refuse its writes now if an owner holds
    that handle."""
    with _lock:
        entry = _entry(backend)
        entry.repos.add(repo)
        if entry.why is not None:
            repo._refuse_writes(entry.why(repo))


def claim(owner: object, stores: Sequence[tuple[Backend, Why]]) -> tuple[int, object] | None:
    """Claim every handle of ``stores`` for ``owner``, or none of them.

    Args:
        owner: who alone writes them from now on (any object; :func:`release` takes it).
        stores: each handle with the reason its repositories refuse writes.

    Returns:
        ``None`` when claimed; else ``(index in stores, its owner)`` for the first handle
        another owner already holds, and nothing was claimed.
    """
    with _lock:
        entries = [_entry(backend) for backend, _ in stores]
        for i, entry in enumerate(entries):
            if entry.owner is not None and entry.owner is not owner:
                return i, entry.owner
        for entry, (_, why) in zip(entries, stores, strict=True):
            entry.owner, entry.why = owner, why
            for repo in list(entry.repos):
                repo._refuse_writes(why(repo))
        return None


def release(owner: object) -> None:
    """Give back every handle ``owner`` holds: their repositories write again (unless
    their store itself is read-only). Idempotent."""
    with _lock:
        for entry in list(_entries.values()):
            if entry.owner is owner:
                entry.owner = entry.why = None
                for repo in list(entry.repos):
                    repo._allow_writes()
