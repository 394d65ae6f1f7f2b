"""Which repositories of this process are on one store, and the owner that alone writes
it.

A store is known by its identity: the live handle for engines that share one handle per
store in a process (:data:`~aurora_storage._stores.open_stores`: every repository opened
on it wraps that same backend), or the identity a backend declares
(:attr:`Backend.store_id <aurora_storage.backend.Backend.store_id>`) for engines whose
every open makes its own client (a NATS bucket). An owner - a tiered pair, whose change
log and position must be the only writers of its tiers - *claims* the stores it writes
through their backends. While a store is claimed, every repository on it refuses writes
(:meth:`Repository._refuse_writes`, ``ReadOnlyError`` with the owner's reason): those
open at the claim and those opened later. Reads stay free, and the owner's own writes,
which go to the backends, are not affected. The owner's own repositories (its tiers)
also refuse ``close()`` (``StoreLockedError``): closing one would close the store under
the owner. :func:`release` lifts both.

A write checks the refusal when it starts and commits later (a big ``put_many`` encodes
every value first), so a claim also waits for the writes that had passed the check:
each repository records its writes in flight (``Repository._writing``, and
``_awaiting`` for native-async writes), entered *before* the write reads its read-only
flag and left once its engine call has returned or raised. The claim sets the flags
first, then waits until no repository of the claimed stores has a write in flight:
either a write saw the flag, or the claim sees the write (list append and pop are
atomic, and the two sides do their two steps in opposite order). When :func:`claim`
returns, every write that passed the check before it has landed or failed, and every
later one is refused. The wait is bounded (:data:`CLAIM_WAIT`): a write that does not
finish by then undoes the claim and raises ``StoreLockedError``; so does, at once, a
native-async write awaited on the claiming thread's own event loop (it cannot go on
while the claim waits).

An owner is an :class:`Owner` token that holds nothing of what owns it: a tiered pair
dropped without ``close()`` can be garbage-collected, and its finaliser calls
:func:`release_collected`. That may run inside the garbage collector, at any allocation,
in any thread - also in one that holds this module's lock - so it never waits for the
lock: it queues the owner, and whoever holds the lock releases it before letting go.
Identities are per process: another process is not seen here.

Nothing of this module runs per write: a write appends to and pops from its
repository's own list (tens of nanoseconds) and tests the read-only flag, which its
write paths test anyway. A repository is registered when it is constructed; a claim costs
one pass over the repositories of the claimed stores, and the wait for their writes.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import StoreLockedError

if TYPE_CHECKING:
    from ._repository import Repository
    from .backend import Backend

__all__ = [
    "CLAIM_WAIT",
    "Owner",
    "Why",
    "claim",
    "register",
    "release",
    "release_collected",
    "same_store",
]

#: Seconds :func:`claim` waits for the writes in flight through the repositories of the
#: stores it claims (writes that had passed their check before the claim): a write
#: still in flight then undoes the claim (``StoreLockedError``: finish or stop those
#: writes, then open the owner again). Long enough for a big ``put_many`` to commit,
#: short enough that a write which cannot finish (waiting for the claiming thread)
#: does not hang the open.
CLAIM_WAIT = 5.0
#: The longest pause between two looks at the writes in flight while a claim waits.
_PAUSE_MAX = 0.02

#: the reason a repository refuses writes, given that repository (for its name)
Why = Callable[["Repository[Any, Any]"], str]


class Owner:
    """Who holds a claim, as messages name it (``name``). Holds nothing else: the
    object that owns the stores (a tiered pair) may be collected while the claim stands,
    and then releases it (``weakref.finalize``)."""

    __slots__ = ("__weakref__", "name")

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Owner {self.name}>"


class _Entry:
    """One store: its repositories and, while claimed, its owner."""

    __slots__ = ("owner", "ref", "repos", "why")

    def __init__(self, ref: weakref.ref[Backend] | None) -> None:
        #: the live handle, for a store known by its handle; ``None`` for a declared id
        self.ref = ref
        self.repos: weakref.WeakSet[Repository[Any, Any]] = weakref.WeakSet()
        self.owner: Owner | None = None
        self.why: Why | None = None


_lock = threading.Lock()
#: ("store", declared id) or ("handle", id(backend)) -> its entry; a handle's entry
#: lives as long as the backend object, a declared id's while it has repositories or
#: an owner
_entries: dict[Hashable, _Entry] = {}
#: each owner's own repositories (its tiers), whose close() is refused while it owns
_pinned: dict[Owner, list[Repository[Any, Any]]] = {}
#: owners whose object was garbage-collected, to release (see release_collected)
_collected: deque[Owner] = deque()


@contextmanager
def _locked() -> Iterator[None]:
    """Hold the lock; then release the owners collected meanwhile (by this thread's
    garbage collection, or by another thread's that found the lock taken)."""
    with _lock:
        yield
    _drain()


def _drain() -> None:
    # A collected owner is queued before its finaliser tries the lock, and the holder
    # looks at the queue after letting the lock go: one of the two releases it.
    while _collected and _lock.acquire(blocking=False):
        try:
            while _collected:
                _release(_collected.popleft())
        finally:
            _lock.release()


def release_collected(owner: Owner) -> None:
    """:func:`release` for a finaliser: never waits (the caller may be the garbage
    collector inside a holder of the lock); the release happens now, or when the
    holder lets the lock go."""
    _collected.append(owner)
    _drain()


def _declared(backend: Backend) -> Hashable | None:
    return getattr(backend, "store_id", None)


def same_store(a: Backend, b: Backend) -> bool:
    """Whether two backends reach one store: the same handle, or equal declared
    identities (see :attr:`Backend.store_id`)."""
    ident = _declared(a)
    return a is b or (ident is not None and ident == _declared(b))


def _sweep() -> None:
    """Drop the entries of declared ids nobody uses any more. Call it holding ``_lock``."""
    # A copy first: a handle's entry is removed by a weakref callback when the collector
    # frees its backend, which may happen at any allocation - also while a list of the
    # table's items is being built (dict.copy() allocates no object per item).
    for key, entry in list(_entries.copy().items()):
        unused = entry.ref is None and entry.owner is None and not entry.repos
        if unused and _entries.get(key) is entry:
            del _entries[key]


def _entry(backend: Backend) -> _Entry:
    """The entry of ``backend``'s store (created on first use). Call it holding ``_lock``."""
    ident = _declared(backend)
    if ident is not None:
        key: Hashable = ("store", ident)
        entry = _entries.get(key)
        if entry is None:
            _sweep()
            entry = _entries[key] = _Entry(None)
        return entry
    key = ("handle", id(backend))
    entry = _entries.get(key)
    if entry is None or entry.ref is None or entry.ref() is not backend:

        def forget(
            ref: weakref.ref[Backend],
            key: Hashable = key,
            entries: dict[Hashable, _Entry] = _entries,
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
    """Record that ``repo`` is on ``backend``'s store; refuse its writes now if an owner
    holds that store."""
    with _locked():
        entry = _entry(backend)
        entry.repos.add(repo)
        if entry.why is not None:
            repo._refuse_writes(entry.why(repo))


def claim(
    owner: Owner,
    stores: Sequence[tuple[Backend, Why]],
    own: Sequence[tuple[Repository[Any, Any], str]] = (),
) -> tuple[int, Owner] | None:
    """Claim every store of ``stores`` for ``owner``, or none of them.

    Args:
        owner: who alone writes them from now on (:func:`release` takes it).
        stores: each store's backend with the reason its repositories refuse writes.
        own: the owner's own repositories, each with the reason its ``close()`` is
            refused (``StoreLockedError``) until :func:`release`.

    Returns:
        ``None`` when claimed: every write through a repository of those stores that
        began before is done (see the module's text), every later one is refused.
        Else ``(index in stores, its owner)`` for the first store another owner already
        holds, and nothing was claimed.

    Raises:
        StoreLockedError: a write through a repository of those stores, begun before
            the claim, was still in flight after :data:`CLAIM_WAIT` seconds, or is a
            native-async write awaited on this thread's event loop; the claim is
            undone (the message names the repository).
    """
    with _locked():
        entries = [_entry(backend) for backend, _ in stores]
        for i, entry in enumerate(entries):
            if entry.owner is not None and entry.owner is not owner:
                return i, entry.owner
        writers: list[Repository[Any, Any]] = []
        for entry, (_, why) in zip(entries, stores, strict=True):
            entry.owner, entry.why = owner, why
            for repo in list(entry.repos):
                repo._refuse_writes(why(repo))  # before its writes in flight are read
                writers.append(repo)
        pinned = _pinned.setdefault(owner, [])
        for repo, why_close in own:
            repo._close_refused = why_close
            pinned.append(repo)
    # Waited for without the lock: repositories opened meanwhile are refused as they
    # register, and the writes in flight may open repositories of their own.
    _settle(owner, writers)
    return None


def _pause(seconds: float) -> None:
    """One pause of :func:`_settle` (a function of its own: tests release a held write
    from here, to see that a claim waits for it)."""
    time.sleep(seconds)


def _settle(owner: Owner, writers: Sequence[Repository[Any, Any]]) -> None:
    """Wait until none of ``writers`` (refusing writes already) has a write in flight;
    if one is still in flight after :data:`CLAIM_WAIT` seconds, or is awaited on this
    thread's own event loop, release ``owner`` and raise ``StoreLockedError``."""
    me = threading.get_ident()
    deadline = None
    pause = 0.0005
    while True:
        busy = None
        for repo in writers:
            if me in repo._awaiting:
                _refuse_claim(
                    owner,
                    repo,
                    "is awaited on this thread's event loop, which cannot run it while "
                    "this call waits (it would land after the claim). Await the writes "
                    "through the repositories on that store before opening",
                )
            if busy is None and (repo._writing or repo._awaiting):
                busy = repo
        if busy is None:
            return
        now = time.monotonic()
        if deadline is None:
            deadline = now + CLAIM_WAIT
        elif now >= deadline:
            _refuse_claim(
                owner,
                busy,
                f"was still in flight after {CLAIM_WAIT:g} s (it would land after the "
                "claim). Let the writes through the repositories on that store finish "
                "(or stop them) before opening; if the write is this thread's own (the "
                "pair is opened from inside a codec or hook of a write), it can never "
                "finish first: open the pair outside the write",
            )
        _pause(pause)
        pause = min(pause * 2, _PAUSE_MAX)


def _refuse_claim(owner: Owner, repo: Repository[Any, Any], why: str) -> NoReturn:
    """Undo ``owner``'s claim and raise the ``StoreLockedError`` saying ``why`` the
    write through ``repo`` (begun before the claim) keeps the store."""
    release(owner)
    raise StoreLockedError(
        f"cannot claim the store of the repository {repo._describe()} for {owner.name}: "
        f"a write through that repository began before the claim and {why}, then open "
        "again; nothing was claimed, nothing written",
        backend=repo._store.scheme,
    )


def release(owner: Owner) -> None:
    """Give back every store ``owner`` holds: their repositories write again (unless
    their store itself is read-only), and its own repositories close again.
    Idempotent."""
    with _locked():
        _release(owner)


def _release(owner: Owner) -> None:
    """:func:`release`; call it holding ``_lock``."""
    for entry in list(_entries.copy().values()):  # see _sweep
        if entry.owner is owner:
            entry.owner = entry.why = None
            for repo in list(entry.repos):
                repo._allow_writes()
    for repo in _pinned.pop(owner, ()):
        repo._close_refused = None
    _sweep()
