"""Subscriptions to an application sequence, woken by the store's change feed.

eventsourcing's :class:`~eventsourcing.persistence.ListenNotifySubscription` already
does the reading: a thread pulls pages of notifications after the last one it delivered
whenever its "notified" event is set, and the iterator hands them out. What a store adds
is the notifying. Here a second thread follows ``repository.watch()`` on the tenant's
sequence keys and sets the event for every committed notification, in this process or
(on LMDB) in any other.

The notifications themselves are always read from the sequence (``select_notifications``),
never from the change records, so delivery is gap-free and in id order whatever the feed
does; the feed only says "there is something new". No change can slip between the
initial read and the feed: the watch is opened before the reader's first pull, so a
notification committed in between is both read and reported (and the extra pull finds
nothing). One watch serves the whole subscription: iterating it again after a timeout
resumes after the last change it examined. Backends without a change feed (or whose
feed does not cover other processes' writes to a multi-process store) are polled every
``WAKE_INTERVAL`` seconds instead; a RocksDB store opened ``mode=secondary`` beside its
writer process catches up with it before each poll (``RocksDBRepository.catch_up``), and
one opened ``mode=read_only`` (a view as of open) refuses to subscribe.

A store that is away for a while (a NATS server restarting, a lost connection: errors
that are builtin ``ConnectionError`` or ``TimeoutError`` subclasses, as the NATS
plugin's are, but not ``RepositoryClosedError``: a connection closed for good) does not
end the subscription. The watcher and the reader wait, with a
backoff from ``RETRY_FIRST`` up to ``RETRY_MAX`` seconds, and try again until the store
answers or the subscription is stopped: the watcher opens a fresh watch and wakes the
reader, which reads on from the last notification it delivered (so nothing is skipped
or repeated). Any other error stops the subscription and is raised by ``__next__``.

The same rule (:func:`retry_while_away`) serves the calls a runner makes while it
processes what the subscription delivered: the thread that iterates a subscription is
remembered as driven by it (:func:`runner_stop`), and the recorders' reads and commits
made on that thread - a ``ProjectionRunner``'s view, an ``EventSourcedProjectionRunner``'s
process recorder - wait for a store that is away until it answers or the subscription
is stopped (see ``_recorders``). So do those made on the threads of eventsourcing's
multi-threaded system runners, until the thread is stopped.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from eventsourcing.persistence import (
    ListenNotifySubscription,
    Notification,
    NotSupportedError,
    PersistenceError,
)

from aurora_storage.errors import PositionExpiredError, RepositoryClosedError, StorageError

from ._arguments import check_bound, check_topics
from ._errors import translate
from ._records import SEQUENCE

if TYPE_CHECKING:
    from aurora_storage import Repository

    from ._recorders import AuroraApplicationRecorder

__all__ = [
    "RETRY_FIRST",
    "RETRY_MAX",
    "WAKE_INTERVAL",
    "AuroraSubscription",
    "retry_while_away",
    "runner_stop",
    "unreachable",
]

_T = TypeVar("_T")

#: Seconds a watcher waits for a change before it reopens its watch (and, where the
#: feed cannot see every writer, polls): also the longest a stop() waits for it.
WAKE_INTERVAL = 0.2
#: Seconds before the first retry after the store was unreachable; each further retry
#: waits twice as long, up to ``RETRY_MAX``.
RETRY_FIRST = 0.05
RETRY_MAX = 2.0


def _rocksdb_mode(repo: Any) -> str | None:
    """The ``mode`` of a RocksDB repository (``read_write``, ``read_only``,
    ``secondary``), or ``None`` for another backend. Read from the repository's config,
    without importing the RocksDB plugin."""
    url = repo.url
    if url is None or url.scheme != "rocksdb":
        return None
    mode = getattr(getattr(repo, "config", None), "mode", None)
    return mode if isinstance(mode, str) else None


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` - an aurora-storage error, or the eventsourcing error it was
    translated to - says the store could not be reached or did not answer in time (a
    builtin ``ConnectionError`` or ``TimeoutError``): a condition that passes. Not when
    it is also a ``RepositoryClosedError``: a connection closed for good (a NATS client
    that stopped reconnecting) does not come back, and waiting would hide it forever."""
    cause = exc if isinstance(exc, StorageError) else exc.__cause__
    return (
        isinstance(cause, StorageError)
        and isinstance(cause, (ConnectionError, TimeoutError))
        and not isinstance(cause, RepositoryClosedError)
    )


def retry_while_away(attempt: Callable[[], _T], stopped: threading.Event, repo: Any) -> _T:
    """``attempt()``, made again while it fails because the store is away.

    The wait rule of subscriptions and runners: an error for which :func:`unreachable`
    holds is followed by a wait - ``RETRY_FIRST`` seconds, twice as long after each
    further failure, at most ``RETRY_MAX`` - and another attempt, until one succeeds.
    Each attempt is bounded by the repository's own per-call ``timeout``; the waiting
    as a whole is not (a bound would stop a runner for good after a long outage, the
    failure this rule exists to prevent).

    Args:
        attempt: the call; it must be safe to repeat after it failed (a read, or a
            write whose outcome the caller settles first).
        stopped: ends the waiting: set, the last error is raised (at once, if it was
            set before).
        repo: the repository ``attempt`` uses; once it is closed, the last error is
            raised (a closed repository never answers again).

    Raises:
        Exception: ``attempt``'s error, at once when it does not say the store is away,
            or when ``stopped`` is set or ``repo`` closed.
    """
    delay = RETRY_FIRST
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not unreachable(exc) or repo.closed or stopped.is_set():
                raise
        stopped.wait(delay)
        delay = min(2 * delay, RETRY_MAX)


#: The subscription the current thread iterates (a weak reference), if any: set by
#: AuroraSubscription.__next__, read by runner_stop().
_driver = threading.local()


@functools.cache
def _runner_threads() -> tuple[type[threading.Thread], ...]:
    """eventsourcing's system runner threads that call recorders, each with its
    ``is_stopping`` event: a ``MultiThreadedRunner``'s follower thread, a
    ``NewMultiThreadedRunner``'s pulling and processing threads."""
    from eventsourcing.system import MultiThreadedRunnerThread, ProcessingThread, PullingThread

    return (MultiThreadedRunnerThread, PullingThread, ProcessingThread)


def runner_stop() -> threading.Event | None:
    """The event that stops the runner whose thread this is, or ``None``.

    A thread that iterates an :class:`AuroraSubscription` (a ``ProjectionRunner``'s or
    an ``EventSourcedProjectionRunner``'s processing thread, or a user's own loop over a
    subscription) is driven by it while it is not stopped: the subscription's stop
    event. A thread of eventsourcing's multi-threaded system runners: its
    ``is_stopping`` event. Any other thread - the user's own calls, a
    ``SingleThreadedRunner``'s followers, which run in the thread that saved - is no
    runner's: ``None``, and its calls do not wait for a store that is away.
    """
    ref = getattr(_driver, "subscription", None)
    sub = ref() if ref is not None else None
    if sub is not None and not sub._stopped.is_set():
        stopped: threading.Event = sub._stopped
        return stopped
    thread = threading.current_thread()
    if isinstance(thread, _runner_threads()):
        event = getattr(thread, "is_stopping", None)
        if isinstance(event, threading.Event):
            return event
    return None


# The recorders' side of the rule (for _recorders and _view): whether a call waits,
# the read made again while it does, and the error once it stops waiting.


def _patience(exc: BaseException, repo: Repository[Any, Any]) -> threading.Event | None:
    """The stop event of the runner whose thread this is (:func:`runner_stop`) when
    ``exc`` says the store is away and ``repo`` is open: the call waits for the store.
    ``None`` - the call raises - for any other error, and on any other thread."""
    if not unreachable(exc) or repo.closed:
        return None
    return runner_stop()


def _gave_up(exc: StorageError, doing: str, repo: Repository[Any, Any]) -> PersistenceError:
    """``exc`` as eventsourcing's error, saying why a runner's call stopped waiting for
    the store when that is why it raises."""
    err = translate(exc, doing)
    if not unreachable(exc):
        return err
    if repo.closed:
        why = "the repository was closed while the call waited for the store to answer"
    else:
        why = "the runner stopped while the call waited for the store to answer"
    return type(err)(
        f"{err}; {why}: the call did not complete (a runner started again resumes from "
        "its tracking record)"
    )


def _again(
    exc: StorageError, repo: Repository[Any, Any], doing: str, attempt: Callable[[], _T]
) -> _T:
    """After the read ``attempt`` raised ``exc``: on a runner's thread, while the store is
    away, the read made again until the store answers (:func:`retry_while_away`);
    anywhere else, and for any other error, ``exc`` raised as eventsourcing's error.

    Raises:
        PersistenceError: ``exc`` translated (see ``_errors``); or the last error of the
            waiting, once the runner stopped or the repository was closed (saying so).
    """
    stop = _patience(exc, repo)
    if stop is None:
        raise translate(exc, doing) from exc
    try:
        return retry_while_away(attempt, stop, repo)
    except StorageError as last:
        raise _gave_up(last, doing, repo) from last


class AuroraSubscription(ListenNotifySubscription["AuroraApplicationRecorder"]):
    """An iterator of :class:`~eventsourcing.persistence.Notification` objects after
    ``gt``, which blocks for new ones (see the module docstring).

    Args:
        recorder: the application recorder to read from.
        gt: deliver notifications with ids above this (all if ``None``).
        topics: deliver only notifications of these topics (all if empty).

    Raises:
        DataError: ``gt`` is neither an int nor ``None`` (cause: InvalidKeyError).
        ProgrammingError: ``topics`` is not a collection of str (cause:
            InvalidArgumentError).
        NotSupportedError: the store cannot see new writes (RocksDB
            ``mode=read_only``; ``mode=secondary`` can, and is caught up at each poll).

    Raises (from ``__next__``):
        PersistenceError: the store failed while reading or watching (other than by
            being unreachable or slow to answer, which the subscription waits out);
            the subscription is stopped.
    """

    def __init__(
        self,
        recorder: AuroraApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        # Checked here, not in the reading thread: the caller gets the error.
        check_bound("subscribe", "subscribe", "gt", gt, "a notification id")
        topics = check_topics("subscribe", "subscribe", topics)
        self._repo = recorder.datastore.repository
        self._tenant = recorder.datastore.tenant
        mode = _rocksdb_mode(self._repo)
        if mode == "read_only":
            raise NotSupportedError(
                "could not subscribe: this RocksDB store is open with mode=read_only, "
                "which sees the store as it was when opened and never a write after: a "
                "subscription would wait forever. To follow a live writer from another "
                "process open it with mode=secondary (a subscription then catches up "
                f"with the writer every {WAKE_INTERVAL} s); to read what is there, use "
                "select_notifications()"
            )
        #: A RocksDB secondary sees the primary's writes only after a catch-up: the
        #: poll does one before every pull.
        self._catch_up: Any = self._repo.catch_up if mode == "secondary" else None  # type: ignore[attr-defined]  # RocksDBRepository's method; mode says the repository is one
        caps = self._repo.capabilities
        self._feed = caps.change_feed
        # A feed that misses other processes' commits to a store they share is only a
        # hint; keep polling then (see the module docstring).
        self._feed_is_complete = self._feed and (
            not caps.multi_process or caps.multi_process_change_feed
        )
        self._stopped = threading.Event()
        self._watch: Any = self._open_watch() if self._feed else None
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._watcher = threading.Thread(
            target=self._follow, name="aurora-subscription-watcher", daemon=True
        )
        self._watcher.start()

    def _open_watch(self) -> Any:
        try:
            return self._repo.watch(self._tenant, prefix=(SEQUENCE,), timeout=WAKE_INTERVAL)
        except StorageError as exc:
            raise translate(exc, "watch the application sequence") from exc

    def _rewatch(self, watch: Any) -> Any:
        """Close ``watch`` and open a new one, retrying while the store is unreachable;
        then wake the reader, which reads whatever the feed may have missed meanwhile.
        Returns the new watch (closed already if the subscription was stopped)."""
        watch.close()
        if self._stopped.is_set():
            return watch
        try:
            new = retry_while_away(
                lambda: self._repo.watch(self._tenant, prefix=(SEQUENCE,), timeout=WAKE_INTERVAL),
                self._stopped,
                self._repo,
            )
        except StorageError as exc:
            if self._stopped.is_set() and unreachable(exc) and not self._repo.closed:
                return watch  # stopped while the store was away
            raise
        self._watch = new
        if self._stopped.is_set():  # stop() may have closed the old one only
            new.close()
        self._has_been_notified.set()
        return new

    def _follow(self) -> None:
        watch = self._watch
        try:
            while not self._has_been_stopped:
                if watch is None:
                    # No change feed: poll.
                    if self._stopped.wait(WAKE_INTERVAL):
                        return
                    if self._catch_up is not None:
                        self._catch_up()  # a RocksDB secondary: see the primary's writes
                    # The reader's next pull reports a closed repository itself.
                    self._has_been_notified.set()
                    continue
                # Ends after WAKE_INTERVAL without a change, or when stop() closes the
                # watch; iterating again resumes after the last change examined.
                try:
                    for _change in watch:
                        self._has_been_notified.set()
                except PositionExpiredError:
                    # The feed dropped changes this watch had not examined yet (it
                    # retains a bounded number). Nothing is lost to the reader, which
                    # reads the sequence itself: watch afresh and pull once more.
                    watch = self._rewatch(watch)
                    continue
                except StorageError as exc:
                    if not unreachable(exc) or self._repo.closed:
                        raise
                    # The store is away (a server restarting, a lost connection):
                    # watch afresh once it answers, and pull once more.
                    self._stopped.wait(RETRY_FIRST)
                    watch = self._rewatch(watch)
                    continue
                if not self._feed_is_complete:
                    self._has_been_notified.set()
                if self._repo.closed:
                    raise RepositoryClosedError(
                        "the repository of this subscription was closed (its factory or "
                        "application was closed)"
                    )
        except BaseException as exc:
            if self._thread_error is None:
                if isinstance(exc, StorageError):
                    err = translate(exc, "follow the application sequence")
                    err.__cause__ = exc  # raised later, in __next__: chained as if raised here
                    self._thread_error = err
                else:
                    self._thread_error = exc
            self.stop()

    def _pull(self) -> None:
        # eventsourcing's reader (ListenNotifySubscription._pull) moves its position
        # only past notifications it handed on: after a failed read, pulling again
        # resumes from the last one delivered.
        try:
            retry_while_away(super()._pull, self._stopped, self._repo)
        except PersistenceError as exc:
            if self._stopped.is_set() and unreachable(exc) and not self._repo.closed:
                return  # stopped while the store was away
            raise

    def __next__(self) -> Notification:
        # The thread iterating this subscription processes what it hands out: its
        # recorder calls wait for a store that is away while this subscription runs
        # (runner_stop). A weak reference: a thread outliving its subscription does
        # not keep it alive.
        _driver.subscription = weakref.ref(self)
        return super().__next__()

    def stop(self) -> None:
        """Stop the subscription: iteration ends (after raising the error that stopped
        it, if one did), and the watch is closed."""
        self._stopped.set()
        super().stop()
        watch = self._watch
        if watch is not None:
            try:
                watch.close()  # wakes the watcher thread if it is waiting
            except StorageError:
                pass  # the repository is closed already: nothing left to release

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            if self._watcher is not threading.current_thread():
                self._watcher.join(timeout=10 * WAKE_INTERVAL)
