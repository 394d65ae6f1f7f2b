"""eventsourcing's recorders on aurora-storage's event-store primitives.

Every guarantee eventsourcing asks of a recorder is delegated to one atomic
primitive, evaluated in the engine (one LMDB write transaction, the RocksDB backend's
write lock, the memory backend's lock), never to a read followed by a write under a
Python lock:

* an aggregate event is written with ``Batch.insert`` under ``(originator_id, version)``:
  two writers of one version cannot both succeed, and a conflict fails the whole batch
  (``IntegrityError``, nothing written);
* its notification is written in the same batch with ``Batch.append``, which numbers it
  gap-free and in commit order, so notification ids and aggregate events commit together
  or not at all;
* a tracking record moves forward only, by ``compare_and_set`` against the version read
  with it (``version=None``: "only if absent"), in the same batch as a process's events.

A store that is away (a NATS server restarting: an error :func:`unreachable` holds
for) does not stop a runner. The calls a runner's thread makes (see
:func:`runner_stop`: a ``ProjectionRunner``'s view, an ``EventSourcedProjectionRunner``'s
or a system follower's process recorder, the leader's notifications it reads) wait for
it with the subscriptions' rule (:func:`retry_while_away`): a read is made again; a
commit that moves a tracking record - ``track()``, ``insert_tracking()``, a process's
``insert_events(tracking=...)`` - may have landed or not when the store went away, so
the tracking record decides (:meth:`AuroraRecorder._check_tracking`, read back after
the failure): at this call's notification id, the commit landed and the call returns
as if it had answered; below it, nothing landed (the batch is atomic) and the call runs
again from its first read (``track()``'s update on a fresh :class:`ViewState`). That
re-run is conditional like the first (events create-only, the record compared and
set), so a first commit that lands after the read-back (still in flight then) makes it
fail on a conflict rather than apply twice; the record, read once more, then shows this
call's id and the call returns as if the first had answered. Calls
made on any other thread do not wait: they raise after the repository's ``timeout``,
and a commit whose outcome is unknown is read back once to say which.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatabaseError,
    DataError,
    IntegrityError,
    Notification,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
    WaitInterruptedError,
)

from aurora_storage import Repository
from aurora_storage._eventstore import insert_append, watch_arguments
from aurora_storage.errors import (
    KeyExistsError,
    PositionExpiredError,
    SerializationError,
    StorageError,
    VersionConflictError,
)

from ._arguments import check_bound, check_limit, check_topics
from ._errors import _batch_too_large, _exists_error, _packing_error, _version_error, translate
from ._records import (
    EVENT,
    SEQUENCE,
    VIEW,
    OriginatorIdType,
    ValueLayout,
    id_reader,
    id_text,
    tracking_key,
    uuid_id_text,
    value_layout,
)
from ._subscription import (
    RETRY_FIRST,
    RETRY_MAX,
    _again,
    _gave_up,
    _patience,
    runner_stop,
    unreachable,
)
from ._view import ViewState

__all__ = [
    "AuroraAggregateRecorder",
    "AuroraApplicationRecorder",
    "AuroraDatastore",
    "AuroraProcessRecorder",
    "AuroraRecorder",
    "AuroraTrackingRecorder",
]


#: The fields of a notification record, in its order (see ``_records``), stand-ins that
#: every layout stores (for finding which field of an event cannot be stored), and what
#: each field must be.
_FIELDS = ("originator_id", "originator_version", "topic", "state")
_STAND_INS: tuple[Any, ...] = ("", 1, "", b"")
_HINTS = {
    "originator_id": "an originator id is a UUID or a str without lone surrogates",
    "originator_version": "a version is an int of at most 64 bits",
    "topic": "a topic is a str without lone surrogates",
    "state": "the state is bytes",
}
#: What a notification id bound is, for check_bound's message.
_NID = "a notification id"
#: The largest notification id (the sequence's counter is 64-bit).
_MAX_NOTIFICATION_ID = (1 << 64) - 1

#: What the module stores under each kind of key, for the error a record of another
#: shape raises (see AuroraRecorder._foreign).
_A_NOTIFICATION = (
    "a notification: the key ('n', id) with an int id, and the value "
    "[originator_id, version, topic, state] (a str, an int, the topic, the state)"
)
_AN_EVENT = (
    "an aggregate event: the key ('e', purpose, originator_id, version) with an int "
    "version, and the value [topic, state]"
)
_A_TRACKING_RECORD = "a tracking record: a notification id, an int from 0 to 2**64 - 1"


#: What _check_tracking returns when a commit of the call whose outcome was unknown is
#: found to have landed.
_LANDED: Any = object()


@dataclass(frozen=True, eq=False, init=False)
class AuroraDatastore:
    """What the recorders of one application share: the repository and the tenant.

    Built by :class:`~aurora_storage.eventsourcing.AuroraFactory` from the environment;
    to put recorders on a repository you opened yourself, construct one directly::

        repo = aurora_storage.open("lmdb:///var/data/events?codec=msgpack")
        recorder = AuroraApplicationRecorder(AuroraDatastore(repo, "BankAccounts"))

    Args:
        repository: see the attribute.
        tenant: see the attribute.
        originator_id_type: see the attribute; default ``"uuid"``.
        layout: see the attribute; default (``None``): the layout the factory picks for
            the repository's codec, so records written either way read back alike.

    Attributes:
        repository: an open :class:`aurora_storage.Repository` whose backend declares
            ``conditional_writes`` and ``sequences`` (and ``change_feed`` for waiting
            without polling).
        tenant: the tenant holding this application's records.
        originator_id_type: ``"uuid"`` (ids read back as :class:`uuid.UUID`) or
            ``"text"`` (as str).
        layout: how records become values of the store's codec (see
            :func:`~aurora_storage.eventsourcing._records.value_layout`).
    """

    repository: Repository[Any, Any]
    tenant: str
    originator_id_type: OriginatorIdType
    layout: ValueLayout

    def __init__(
        self,
        repository: Repository[Any, Any],
        tenant: str,
        originator_id_type: OriginatorIdType = "uuid",
        layout: ValueLayout | None = None,
    ) -> None:
        if layout is None:
            layout = value_layout(repository.codec)
        object.__setattr__(self, "repository", repository)
        object.__setattr__(self, "tenant", tenant)
        object.__setattr__(self, "originator_id_type", originator_id_type)
        object.__setattr__(self, "layout", layout)


class AuroraRecorder:
    """Base of the aurora recorders: holds the datastore.

    Args:
        datastore: the repository and tenant the recorder works on.
    """

    def __init__(self, datastore: AuroraDatastore) -> None:
        self.datastore = datastore
        self._repo = datastore.repository
        self._tenant = datastore.tenant
        self._pack = datastore.layout.pack
        self._layout = datastore.layout
        self._unpack = datastore.layout.unpack
        self._pack_int = datastore.layout.pack_int
        self._unpack_int = datastore.layout.unpack_int
        self._read_id = id_reader(datastore.originator_id_type)
        #: The key element of an originator id a write stores (see uuid_id_text).
        self._write_id: Callable[[Any], str] = (
            id_text if datastore.originator_id_type == "text" else uuid_id_text
        )
        #: Tracking keys by upstream application name (plain str names only).
        self._tracking_keys: dict[str, tuple[str, Any]] = {}

    def _foreign(
        self, doing: str, key: Any, value: Any, expected: str, cause: BaseException | None = None
    ) -> DataError:
        """The error for a record of the tenant that is not what the module writes
        under its key: another tool's, or damaged. The caller raises it ``from cause``."""
        why = "" if cause is None else f" ({type(cause).__name__}: {cause})"
        return DataError(
            f"could not {doing}: the record {key!r:.160} of tenant {self._tenant!r} is not "
            f"what aurora_storage.eventsourcing writes there: expected {expected} (in "
            f"the {self._layout.name} layout of the {self._repo.codec.name} codec), found "
            f"{value!r:.80}{why}. Another tool or application wrote into this "
            "application's tenant, or the record is damaged: give the application a "
            "tenant of its own (AURORA_TENANT), or move the record away"
        )

    def _tracking_key(self, doing: str, application_name: str) -> tuple[str, Any]:
        """The key of ``application_name``'s tracking record (see :func:`tracking_key`).

        Raises:
            DataError: ``application_name`` is not an aurora-storage key element (cause:
                InvalidKeyError).
        """
        cache = self._tracking_keys
        # Plain str names only: a str subclass lying in __eq__/__hash__ would match
        # another name's entry.
        if type(application_name) is str:
            key = cache.get(application_name)
            if key is not None:
                return key
        try:
            key = tracking_key(self._tenant, application_name, self._repo._full)
        except StorageError as exc:
            raise translate(exc, doing) from exc
        if type(application_name) is str:
            if len(cache) >= _TRACKING_KEYS_MAX:
                cache.clear()
            cache[application_name] = key
        return key

    def _tracking_id(self, doing: str, application_name: str, value: Any) -> int:
        """The notification id a tracking record's stored ``value`` holds.

        Raises:
            DataError: it holds no notification id (see :meth:`_foreign`).
        """
        try:
            nid = self._unpack_int(value)
        except Exception as exc:  # any failure to decode: not the module's record
            key = self._tracking_key(doing, application_name)
            raise self._foreign(doing, key, value, _A_TRACKING_RECORD, exc) from exc
        if not 0 <= nid <= _MAX_NOTIFICATION_ID:
            key = self._tracking_key(doing, application_name)
            raise self._foreign(doing, key, value, _A_TRACKING_RECORD)
        return nid

    def _tracking_value(self, tracking: Tracking) -> Any:
        """The stored value of ``tracking``'s notification id.

        Raises:
            DataError: the id is not an int from 0 to 2**64 - 1 (cause:
                SerializationError); nothing was written.
        """
        nid = tracking.notification_id
        if type(nid) is not int or not 0 <= nid <= _MAX_NOTIFICATION_ID:
            exc = SerializationError(
                f"the tracking record of {tracking.application_name!r:.80}: notification_id "
                f"must be an int from 0 to 2**64 - 1 (a notification's id), got "
                f"{type(nid).__name__} {nid!r:.80}; nothing was written"
            )
            raise translate(exc, "record tracking") from exc
        return self._pack_int(nid)

    def _unstorable(
        self, stored_events: Sequence[StoredEvent], notify: bool
    ) -> StorageError | None:
        """The error naming the first field of ``stored_events`` that the layout and the
        store's codec cannot store, or ``None`` if each field alone can be stored.

        Called only when packing or encoding the records failed: it packs and encodes
        each field on its own, among stand-ins (events' records hold the topic and the
        state; notifications the id and the version as well).
        """
        encode, pack = self._repo.codec.encode, self._pack
        codec = self._repo.codec.name
        how = (
            "by the raw codec (the module packs records with msgpack)"
            if self._layout.name == "packed"
            else f"by the {codec} codec"
        )
        first = 0 if notify else 2
        for i, s in enumerate(stored_events):
            try:
                oid = id_text(s.originator_id)
            except StorageError as exc:  # an id neither UUID nor str
                return exc
            record = [oid, s.originator_version, s.topic, s.state]
            for j in range(first, 4):
                probe = list(_STAND_INS)
                probe[j] = record[j]
                try:
                    encode(pack(probe[first:]))
                except Exception as exc:  # any failure: this field cannot be stored
                    field = _FIELDS[j]
                    error = SerializationError(
                        f"event {i} of the call (originator_id {record[0]!r:.80}, "
                        f"originator_version {s.originator_version!r:.80}): its {field} "
                        f"{record[j]!r:.80} cannot be stored {how} "
                        f"({type(exc).__name__}: {exc}); {_HINTS[field]}; nothing was written",
                        value_path=field,
                    )
                    error.__cause__ = exc
                    return error
        return None

    def _check_tracking(
        self, tracking: Tracking, doubt: StorageError | None = None, doing: str = ""
    ) -> Any:
        """The version of the tracking record to compare-and-set against; raises
        IntegrityError if the record is at or past ``tracking`` already. On a runner's
        thread the read waits for a store that is away (see the module docstring).

        Args:
            tracking: where the caller's commit moves the record.
            doubt: the error of a commit of this call that moved the record to
                ``tracking`` and failed because the store was away, so it may or may
                not have landed (``None``: no such commit). The record decides: at
                ``tracking.notification_id`` exactly, it landed (returns ``_LANDED``);
                below it, nothing had landed when read - a commit is atomic - and the
                version is returned for the commit to run again on a runner's thread
                (if that re-run meets a conflict, the caller asks again with the same
                ``doubt``: the first commit may have landed late, still in flight). A caller on
                any other thread is not run again: it gets OperationalError saying
                nothing was written, or, if the record cannot be read either, the doubt
                and how to settle it (``has_tracking_id``).
            doing: what the caller does, for those errors (``"record a view update"``).

        Raises:
            IntegrityError: the record is at or past ``tracking`` (with ``doubt``: past
                it).
            OperationalError: with ``doubt``, off a runner's thread, as said above.
        """
        name, nid = tracking.application_name, tracking.notification_id
        key = self._tracking_key("read a tracking record", name)
        repo, tenant = self._repo, self._tenant
        try:
            current, version = repo.get_versioned(tenant, key)
        except StorageError as exc:
            if doubt is not None and _patience(exc, repo) is None:
                raise self._unsettled(doubt, tracking, doing, exc) from doubt
            current, version = _again(
                exc, repo, "read a tracking record", lambda: repo.get_versioned(tenant, key)
            )
        if current is not None:
            current = self._tracking_id("read a tracking record", name, current)
        if doubt is not None and current == nid:
            return _LANDED
        if current is not None and current >= nid:
            lost = (
                " (a commit of this call, whose answer was lost, may have been one of them)"
                if doubt is not None
                else ""
            )
            raise IntegrityError(
                f"tracking record of {name!r} is at notification {current}, not below "
                f"{nid}: that notification was processed already{lost}"
            )
        if doubt is not None and runner_stop() is None:
            err = translate(doubt, doing)
            where = "absent" if current is None else f"at notification {current}"
            raise type(err)(
                f"{err}; read back, the tracking record of {name!r} is {where}, below "
                f"{nid}: the commit had not landed when read back (a commit still in "
                "flight in the server may land later) - call again: the repeat is safe, "
                "it raises IntegrityError ('processed already') if the first one landed"
            ) from doubt
        return version

    def _unsettled(
        self, doubt: StorageError, tracking: Tracking, doing: str, exc: StorageError
    ) -> PersistenceError:
        """The error for a commit whose outcome is unknown (``doubt``) when reading the
        tracking record back failed too (``exc``): how to settle it."""
        err = translate(doubt, doing)
        name, nid = tracking.application_name, tracking.notification_id
        return type(err)(
            f"{err}; reading the tracking record back failed too ({exc}). The tracking "
            f"record decides: has_tracking_id({name!r}, {nid}) is True once the commit "
            "landed (read it when the store answers again). Calling again is safe either "
            "way: if it landed, IntegrityError says that notification was processed already"
        )

    def _commit_failed(self, exc: StorageError, doing: str, delay: float) -> float:
        """After a commit that moves a tracking record raised ``exc``: raises it, as
        eventsourcing's error, unless it says the store is away; on a runner's thread
        first waits ``delay`` seconds (raising if the runner stopped meanwhile). The
        caller then reads the tracking record back (:meth:`_check_tracking` with
        ``doubt=exc``), which says whether the commit landed.

        Returns:
            The wait after the next failure (twice ``delay``, at most ``RETRY_MAX``).
        """
        if not unreachable(exc) or self._repo.closed:
            raise translate(exc, doing) from exc
        stop = runner_stop()
        if stop is None:
            return delay
        if stop.wait(delay):
            raise _gave_up(exc, doing, self._repo) from exc
        return min(2 * delay, RETRY_MAX)


class AuroraAggregateRecorder(AuroraRecorder, AggregateRecorder):
    """Records stored events in aggregate sequences (eventsourcing's
    :class:`~eventsourcing.persistence.AggregateRecorder`).

    Args:
        datastore: the repository and tenant.
        purpose: the name of this sequence of aggregate records: ``"events"`` for an
            application's events, ``"snapshots"`` for its snapshots.
    """

    def __init__(self, datastore: AuroraDatastore, purpose: str = "events") -> None:
        super().__init__(datastore)
        self.purpose = purpose
        # The events' keys are (*_base, originator id, version); one tuple object, so
        # the repository's memo of its encoded head hits (see insert_append).
        self._base: tuple[str, str] = (EVENT, purpose)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write ``stored_events`` atomically: all of them or, if any
        ``(originator_id, originator_version)`` is recorded already (or repeated in
        ``stored_events``), none.

        Returns:
            ``None`` (aggregate recorders assign no notification ids).

        Raises:
            IntegrityError: a version exists already or is repeated; nothing written.
            DataError: a field the store cannot hold: an ``originator_version`` that is
                not an int (bool, float, str, None; cause: InvalidKeyError), an
                originator id neither UUID nor str (InvalidKeyError), or a field the
                layout and codec cannot store (cause: SerializationError naming the
                event and the field); nothing written.
            ProgrammingError: more events than one atomic batch of the store may hold
                (NATS: ``max_batch``); the message says how many one call may hold;
                nothing written.
            PersistenceError: any other failure of the store (see ``_errors``).
        """
        self._write(stored_events, None, notify=False)
        return None

    def _write(
        self, stored_events: Sequence[StoredEvent], tracking: Tracking | None, *, notify: bool
    ) -> list[int] | None:
        """One atomic batch: the events (create-only), their notifications if ``notify``,
        and the tracking record if given. Returns the notification ids if ``notify``."""
        if not stored_events and tracking is None:
            return [] if notify else None
        tenant, purpose = self._tenant, self.purpose
        pack = self._layout.packer()
        if tracking is None:
            return self._insert(stored_events, pack, notify)
        tracking_value = self._tracking_value(tracking)
        # Keys and values are built once, before the batch (a retry reuses them): the
        # event record, and its notification record when notifying. One call's events
        # usually share one aggregate: its key elements are then the same objects, which
        # lets the batch reuse their encoding (see Batch.insert). A repeated
        # (originator_id, version) is refused by the batch (KeyExistsError, nothing
        # written): the argument's validation costs no pass of its own.
        events: list[tuple[tuple[str, str, str, int], Any, Any]] = []
        add = events.append
        last_id: Any = None
        oid = ""
        write_id = self._write_id
        try:
            for s in stored_events:
                if s.originator_id is not last_id:
                    last_id = s.originator_id
                    oid = write_id(last_id)
                version, topic, state = s.originator_version, s.topic, s.state
                if type(version) is not int:
                    raise _version_error(stored_events, s)
                add(
                    (
                        (EVENT, purpose, oid, version),
                        pack([topic, state]),
                        pack([oid, version, topic, state]) if notify else None,
                    )
                )
        except StorageError as exc:  # an id or a version of the wrong type
            raise translate(exc, "insert events") from exc
        except (TypeError, ValueError, OverflowError) as exc:  # a field the packer refused
            cause = self._unstorable(stored_events, notify) or _packing_error(exc)
            raise translate(cause, "insert events") from cause
        repo = self._repo
        doubt: StorageError | None = None
        delay = RETRY_FIRST
        while True:
            tracking_version: Any = None
            if tracking is not None:
                tracking_version = self._check_tracking(tracking, doubt, "insert events")
                if tracking_version is _LANDED:
                    return self._landed(events, tracking, notify)
            slots = []
            try:
                with repo.batch() as b:
                    insert = b.insert
                    if notify:
                        append = b.append
                        for key, value, note in events:
                            insert(tenant, key, value)
                            slots.append(append(tenant, SEQUENCE, note))
                    else:
                        for key, value, _ in events:
                            insert(tenant, key, value)
                    if tracking is not None:
                        b.compare_and_set(
                            tenant,
                            self._tracking_key("insert events", tracking.application_name),
                            tracking_value,
                            version=tracking_version,
                        )
            except VersionConflictError as exc:
                if tracking is None:  # pragma: no cover - only tracking records are conditional
                    raise translate(exc, "insert events") from exc
                # Another writer moved the tracking record between our read and our
                # batch; nothing was written. Read it again: either it is now at or past
                # ours (IntegrityError above) or we try once more.
                continue
            except SerializationError as exc:  # the codec refused a record's value
                cause = self._unstorable(stored_events, notify) or exc
                raise translate(cause, "insert events") from cause
            except KeyExistsError as exc:  # an existing version, or one repeated
                # A re-run after a commit in doubt: that commit may have landed after
                # the read-back said it had not (still in flight then: queued in the
                # server, or finished by a server shutting down), and this batch met
                # its events. The tracking record, read again, decides.
                if (
                    doubt is not None
                    and tracking is not None
                    and self._check_tracking(tracking, doubt, "insert events") is _LANDED
                ):
                    return self._landed(events, tracking, notify)
                raise _exists_error(stored_events, exc) from exc
            except StorageError as exc:
                too_large = _batch_too_large(exc, notify=notify, tracking=True)
                if too_large is not None:
                    raise too_large from exc
                # The store is away (else this raises): the commit, with its tracking
                # record, landed or not; the record, read back, says (on a runner's
                # thread the batch runs again if not; elsewhere the call raises).
                delay = self._commit_failed(exc, "insert events", delay)
                doubt = exc
                continue
            if not notify:
                return None
            try:
                return [slot.number for slot in slots]
            except StorageError as exc:  # pragma: no cover - committed slots have numbers
                raise translate(exc, "read notification ids") from exc

    def _landed(
        self,
        events: list[tuple[tuple[str, str, str, int], Any, Any]],
        tracking: Tracking,
        notify: bool,
    ) -> list[int] | None:
        """What :meth:`_write` returns for its batch, found landed after its answer was
        lost (the tracking record is at ``tracking``, see :meth:`_check_tracking`): the
        ids of its notifications if ``notify``.

        The tracking record says that notification was processed; the batch's first
        event, create-only, says it was processed by this batch - holding what this call
        wrote - and not by another writer's.

        Raises:
            IntegrityError: another writer's batch processed it (this one's first event
                is absent, or holds other data); nothing of this call was written.
        """
        if not events:
            return [] if notify else None
        repo, tenant = self._repo, self._tenant
        key, value, _ = events[0]
        try:
            stored = repo.get(tenant, key, _ABSENT)
        except StorageError as exc:
            stored = _again(exc, repo, "insert events", lambda: repo.get(tenant, key, _ABSENT))
        if stored != value:
            raise IntegrityError(
                f"could not insert events: the tracking record of "
                f"{tracking.application_name!r} is at notification "
                f"{tracking.notification_id} and this call's commit, whose answer was "
                f"lost, did not land (its first event, {key[2:]!r}, "
                f"{'is absent' if stored is _ABSENT else 'holds other data'}): that "
                "notification was processed already, by another writer; nothing of this "
                "call was written"
            )
        if not notify:
            return None
        try:
            return self._find_notes(key[2], key[3], len(events))
        except StorageError as exc:
            return _again(
                exc,
                repo,
                "read notification ids",
                lambda: self._find_notes(key[2], key[3], len(events)),
            )

    def _find_notes(self, oid: str, version: int, count: int) -> list[int]:
        """The ids of the ``count`` notifications of a batch that landed, whose first
        records ``(oid, version)``: the batch appended them in one run (consecutive
        ids), and each ``(oid, version)`` is in one notification only (events are
        create-only). Read down from the sequence's counter, in blocks of point reads:
        the batch is recent, so only what was appended since is read.

        Raises:
            DatabaseError: no notification records it (the sequence was changed by
                hand since).
        """
        repo, tenant, unpack = self._repo, self._tenant, self._unpack
        top = repo.last_sequence(tenant, SEQUENCE)
        block = _MIN_BLOCK
        while top >= 1:
            ids = range(max(1, top - block + 1), top + 1)
            values = repo.get_many(tenant, [(SEQUENCE, i) for i in ids], _ABSENT)
            for i, value in zip(reversed(ids), reversed(values), strict=True):
                if value is _ABSENT:
                    continue
                try:
                    note = unpack(value)
                except Exception:  # not the module's record: not ours either
                    continue
                if isinstance(note, list) and note[:2] == [oid, version]:
                    return list(range(i, i + count))
            top = ids[0] - 1
            block = min(2 * block, _MAX_BLOCK)
        raise DatabaseError(
            f"could not insert events: the batch of this call landed (its answer was "
            f"lost), but no notification of tenant {tenant!r} records its first event "
            f"({oid!r}, version {version}): the application sequence was changed by hand"
        )

    def _insert(
        self, stored_events: Sequence[StoredEvent], pack: Callable[[list[Any]], Any], notify: bool
    ) -> list[int] | None:
        """:meth:`_write` without tracking: one :func:`insert_append` of the events
        (create-only) and, if ``notify``, their notifications. The events of one
        aggregate (the usual call) make one run ``(originator id, versions)``, whose key
        head is encoded once."""
        base = self._base
        if base[1] is not self.purpose:
            base = self._base = (EVENT, self.purpose)
        runs: list[tuple[str, list[int]]] = []
        values: list[Any] = []
        notes: list[Any] | None = [] if notify else None
        add_value = values.append
        last_id: Any = None
        oid = ""
        write_id = self._write_id
        versions: list[int] = []
        add_version = versions.append
        # One try around the loop (free while nothing raises): a field the layout's packer
        # refuses raises here, before anything is written.
        try:
            for s in stored_events:
                if s.originator_id is not last_id:
                    last_id = s.originator_id
                    oid = write_id(last_id)
                    versions = []
                    add_version = versions.append
                    runs.append((oid, versions))
                version, topic, state = s.originator_version, s.topic, s.state
                if type(version) is not int:
                    raise _version_error(stored_events, s)
                add_version(version)
                add_value(pack([topic, state]))
                if notes is not None:
                    notes.append(pack([oid, version, topic, state]))
        except StorageError as exc:  # an id or a version of the wrong type
            raise translate(exc, "insert events") from exc
        except (TypeError, ValueError, OverflowError) as exc:  # a field the packer refused
            cause = self._unstorable(stored_events, notify) or _packing_error(exc)
            raise translate(cause, "insert events") from cause
        try:
            ids = insert_append(self._repo, self._tenant, base, runs, values, SEQUENCE, notes)
        except SerializationError as exc:  # the codec refused a record's value
            cause = self._unstorable(stored_events, notify) or exc
            raise translate(cause, "insert events") from cause
        except KeyExistsError as exc:  # an existing version, or one repeated
            raise _exists_error(stored_events, exc) from exc
        except StorageError as exc:
            raise (
                _batch_too_large(exc, notify=notify, tracking=False)
                or translate(exc, "insert events")
            ) from exc
        return ids if notify else None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The stored events of one aggregate with ``gt < version <= lte``, ascending
        (descending if ``desc``), at most ``limit``: one ordered scan of the
        aggregate's key range, with ``reverse`` and ``limit`` handed to the engine.

        Raises:
            DataError: ``originator_id`` is neither a UUID nor a str, or ``gt`` or
                ``lte`` is neither an int nor ``None`` (bool, float and str are refused;
                cause: InvalidKeyError).
            ProgrammingError: ``limit`` is neither ``None`` nor an int from 0 up
                (cause: InvalidArgumentError).
        """
        try:
            oid = id_text(originator_id)
        except StorageError as exc:
            raise translate(exc, "select events") from exc
        check_bound("select events", "select_events", "gt", gt, "a version")
        check_bound("select events", "select_events", "lte", lte, "a version")
        check_limit("select events", "select_events", limit, optional=True)
        prefix = (EVENT, self.purpose, oid)
        start = None if gt is None else (EVENT, self.purpose, oid, gt + 1)
        stop = None if lte is None else (EVENT, self.purpose, oid, lte + 1)
        unpack = self._unpack
        repo, tenant = self._repo, self._tenant

        def read() -> list[tuple[Any, Any]]:
            return list(
                repo.items(tenant, prefix=prefix, start=start, stop=stop, reverse=desc, limit=limit)
            )

        try:
            items = read()
        except StorageError as exc:
            items = _again(exc, repo, "select events", read)
        if not items:
            return []
        originator_id_read = self._read_id(oid)
        out = []
        for key, value in items:
            try:
                topic, state = unpack(value)
            except Exception as exc:  # any failure to decode: not the module's record
                raise self._foreign("select events", key, value, _AN_EVENT, exc) from exc
            version = key[3] if len(key) == 4 else None
            if type(version) is not int:
                raise self._foreign("select events", key, value, _AN_EVENT)
            out.append(
                StoredEvent(
                    originator_id=originator_id_read,
                    originator_version=version,
                    topic=topic,
                    state=state,
                )
            )
        return out


class AuroraApplicationRecorder(AuroraAggregateRecorder, ApplicationRecorder):
    """Records stored events in aggregate sequences and in the application sequence
    (eventsourcing's :class:`~eventsourcing.persistence.ApplicationRecorder`).

    Notification ids are gap-free and increase in commit order: 1, 2, 3, ... in the
    tenant, across every process writing to the store.
    """

    def __init__(self, datastore: AuroraDatastore, purpose: str = "events") -> None:
        super().__init__(datastore, purpose)
        #: Whether notifications are read by id (point reads) rather than by scans:
        #: on a store whose scans list their whole range whatever the limit.
        self._point_reads = _scans_list_everything(self._repo)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write ``stored_events`` and their notifications atomically.

        Returns:
            the notification ids assigned, in the order of ``stored_events``.

        Raises:
            IntegrityError: a version exists already or is repeated; nothing written.
            DataError: a field the store cannot hold (see
                :meth:`AuroraAggregateRecorder.insert_events`); nothing written.
        """
        return self._write(stored_events, None, notify=True)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Notifications with ``start <= id`` (``start < id`` unless
        ``inclusive_of_start``) and ``id <= stop``, in id order, at most ``limit``,
        only of ``topics`` if given.

        Raises:
            DataError: ``start`` or ``stop`` is neither an int nor ``None`` (bool,
                float and str are refused; cause: InvalidKeyError).
            ProgrammingError: ``limit`` is not an int from 0 up, or ``topics`` is not a
                collection of str (a str is refused: one topic is ``[topic]``; cause:
                InvalidArgumentError).
        """
        doing = "select notifications"
        check_bound(doing, "select_notifications", "start", start, _NID)
        check_bound(doing, "select_notifications", "stop", stop, _NID)
        check_limit(doing, "select_notifications", limit, optional=False)
        wanted = frozenset(check_topics(doing, "select_notifications", topics))
        first = 1 if start is None else (start if inclusive_of_start else start + 1)
        first = max(first, 1)
        if limit == 0:
            return []

        def read() -> list[Notification]:
            out: list[Notification] = []
            rest = self._by_id(first, stop, limit, wanted, out)
            if rest is not None:
                self._scan(rest, stop, limit, wanted, out)
            return out

        try:
            return read()
        except StorageError as exc:
            # On a runner's thread (a system follower reading its leader), a store that
            # is away is waited for, and the page read again from the start.
            return _again(exc, self._repo, "select notifications", read)

    def _notification(self, key: Any, value: Any) -> Notification:
        """The notification stored as ``value`` under ``key``.

        Raises:
            DataError: it is not one (another tool's record, or a damaged one).
        """
        try:
            oid, version, topic, state = self._unpack(value)
        except Exception as exc:  # any failure to decode: not the module's record
            raise self._foreign("select notifications", key, value, _A_NOTIFICATION, exc) from exc
        nid = key[1] if len(key) == 2 else None
        # The fields the module checks before writing (the topic and the state are
        # stored as given, in any type the codec holds).
        if type(nid) is not int or type(oid) is not str or type(version) is not int:
            raise self._foreign("select notifications", key, value, _A_NOTIFICATION)
        return Notification(
            id=nid,
            originator_id=self._read_id(oid),
            originator_version=version,
            topic=topic,
            state=state,
        )

    def _scan(
        self,
        first: int,
        stop: int | None,
        limit: int,
        wanted: frozenset[str],
        out: list[Notification],
    ) -> None:
        """Add to ``out`` the notifications from id ``first`` up to ``stop`` (of
        ``wanted`` topics, if any) until it holds ``limit``: one scan of the sequence's
        key range."""
        hi = None if stop is None else (SEQUENCE, stop + 1)
        # With topics the scan filters; without, the engine stops at the limit.
        scan = self._repo.items(
            self._tenant,
            prefix=(SEQUENCE,),
            start=(SEQUENCE, first),
            stop=hi,
            limit=None if wanted else limit - len(out),
        )
        notification = self._notification
        for key, value in scan:
            n = notification(key, value)
            if wanted and n.topic not in wanted:
                continue
            out.append(n)
            if len(out) >= limit:
                break

    def _by_id(
        self,
        first: int,
        stop: int | None,
        limit: int,
        wanted: frozenset[str],
        out: list[Notification],
    ) -> int | None:
        """What :meth:`_scan` adds, by reading the ids themselves, on a store whose
        scans list the whole range whatever the limit (see ``_point_reads``): the
        sequence's counter (one read), then the ids ``first``, ``first + 1``, ... up to
        it (or ``stop``) in blocks of point reads (``get_many``) until ``out`` holds
        ``limit``.

        The same notifications as the scan: ids are gap-free and assigned by the
        counter in the batch that writes the record, and the module never removes a
        record, so every notification up to the counter is at its id and none is past
        it. Where a store breaks that - no counter (records written by
        ``aurora-storage import``, which does not carry counters), an id up to the
        counter without its record (deleted by hand, a dropped tenant, a batch a NATS
        reader meets half-stored) - it stops there and the caller scans on from that id.
        (A record another tool put past the counter is seen by the scan only.)

        Returns:
            ``None`` if ``out`` is complete, else the id from which the caller must
            :meth:`_scan` on.
        """
        if not self._point_reads:
            return first
        repo, tenant = self._repo, self._tenant
        last = repo.last_sequence(tenant, SEQUENCE)
        if last == 0:
            return first  # nothing appended: empty (the scan is as cheap), or imported
        top = last if stop is None else min(stop, last)
        block = min(max(limit, _MIN_BLOCK), _MAX_BLOCK)
        notification = self._notification
        nid = first
        while nid <= top:
            ids = range(nid, min(nid + block - 1, top) + 1)
            values = repo.get_many(tenant, [(SEQUENCE, i) for i in ids], _ABSENT)
            for i, value in zip(ids, values, strict=True):
                if value is _ABSENT:
                    return i  # a hole: the scan sees the store as one consistent cut
                n = notification((SEQUENCE, i), value)
                if wanted and n.topic not in wanted:
                    continue
                out.append(n)
                if len(out) >= limit:
                    return None
            nid = ids[-1] + 1
        return None

    def max_notification_id(self) -> int | None:
        """The highest notification id recorded, or ``None``: one reverse seek to the
        newest key of the sequence; on a store whose scans list the whole range (see
        ``_point_reads``), the sequence's counter and the record at it (two point
        reads), with the seek only if that record is absent (see :meth:`_by_id`)."""
        repo, tenant = self._repo, self._tenant

        def read() -> Any:
            if self._point_reads:
                last = repo.last_sequence(tenant, SEQUENCE)
                if last and repo.get(tenant, (SEQUENCE, last), _ABSENT) is not _ABSENT:
                    return last
            newest = list(repo.keys(tenant, prefix=(SEQUENCE,), reverse=True, limit=1))
            return newest[0] if newest else None

        try:
            found = read()
        except StorageError as exc:
            found = _again(exc, repo, "read the highest notification id", read)
        if found is None or type(found) is int:
            return found
        key = found
        nid = key[1] if len(key) == 2 else None
        if type(nid) is not int:
            raise self._foreign("read the highest notification id", key, "...", _A_NOTIFICATION)
        return nid

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """An iterator of the notifications after ``gt`` (all if ``None``) that blocks
        for new ones as they are recorded (woken by the store's change feed); stop it
        with ``stop()`` or by leaving its ``with`` block.

        Raises:
            DataError: ``gt`` is neither an int nor ``None`` (cause: InvalidKeyError).
            ProgrammingError: ``topics`` is not a collection of str (cause:
                InvalidArgumentError).
        """
        from ._subscription import AuroraSubscription

        return AuroraSubscription(self, gt=gt, topics=topics)


#: get_many's default: tells an absent record from any stored value.
_ABSENT: Any = object()
#: The fewest and most ids one point read of select_notifications asks for.
_MIN_BLOCK = 64
_MAX_BLOCK = 1000


def _scans_list_everything(repo: Repository[Any, Any]) -> bool:
    """Whether ``repo``'s scans read their whole key range whatever their ``limit``:
    an unordered engine (sorted by the repository), and NATS JetStream, which keeps no
    key order and has no range reads (docs/backends/nats.md, ordering and its cost).
    Nothing in the capabilities says it: the URL scheme does."""
    url = repo.url
    return not repo.capabilities.ordered_scans or (url is not None and url.scheme == "nats")


#: Seconds between re-reads of a tracking record in ``wait()`` (see there).
_WAIT_SLICE = 0.1
#: Tracking keys a recorder keeps before its cache starts over.
_TRACKING_KEYS_MAX = 1024


class AuroraTrackingRecorder(AuroraRecorder, TrackingRecorder):
    """Records how far an application has processed another's notifications
    (eventsourcing's :class:`~eventsourcing.persistence.TrackingRecorder`): one record
    per upstream application name that only moves forward.

    It is also the base of a materialised view (an eventsourcing ``Projection``'s
    ``view_class``): :meth:`track` writes the view's records and the tracking record in
    one atomic batch, and :meth:`get` reads them back.
    """

    def insert_tracking(self, tracking: Tracking) -> None:
        """Move the tracking record of ``tracking.application_name`` to
        ``tracking.notification_id``.

        On a runner's thread it waits for a store that is away, and a write whose
        outcome the outage left unknown is settled by the tracking record (see the
        module docstring).

        Raises:
            IntegrityError: the record is at or past that id already.
            DataError: the id is not an int from 0 to 2**64 - 1; nothing written.
            OperationalError: the store failed (off a runner's thread: also when it is
                away; the message says whether the write landed, or how to tell).
        """
        doing = "insert a tracking record"
        value = self._tracking_value(tracking)
        doubt: StorageError | None = None
        delay = RETRY_FIRST
        while True:
            version = self._check_tracking(tracking, doubt, doing)
            if version is _LANDED:
                return
            try:
                self._repo.compare_and_set(
                    self._tenant,
                    self._tracking_key(doing, tracking.application_name),
                    value,
                    version=version,
                )
            except VersionConflictError:
                continue  # moved meanwhile: re-read (see AuroraAggregateRecorder._write)
            except StorageError as exc:
                delay = self._commit_failed(exc, doing, delay)
                doubt = exc  # landed or not: the tracking record, read back, says
                continue
            return

    def track(self, tracking: Tracking, update: Callable[[ViewState], None]) -> None:
        """Apply ``update`` to this recorder's view records and move the tracking record
        to ``tracking``, in one atomic batch: a materialised view whose state and
        position can never disagree, even across a crash.

        ``update`` receives a :class:`ViewState` to read and write the view's records.
        The batch is conditional on everything ``update`` read being unchanged when it
        commits: the tracking record, and every view record it read through
        :meth:`ViewState.get` - present or absent (absent must still be absent). If
        another writer changed any of them meanwhile (another process, or another
        runner that follows a different upstream application and shares this view's
        tenant), nothing is written and ``update`` runs again on fresh state, so it must
        only read and write through the :class:`ViewState` (no other side effects). A
        read-modify-write such as ``state.put(k, state.get(k, 0) + 1)`` therefore never
        loses an increment.

        How: a record read and then put is written by ``compare_and_set`` against the
        version read (``Repository.get_versioned``). A batch conditions a key only by
        writing it, so a record read and not put (only read, or deleted) is covered by
        the view's stamp, the record ``("vs",)`` of the tenant, read before the first
        view record: every ``track()`` that writes view records changes it, and a batch
        with such reads is conditioned on it unchanged. Records written without being
        read need no condition, and an update that writes no view record moves only the
        tracking record (nothing of the view rests on what it read).

        On a runner's thread (a ``ProjectionRunner``'s) a store that is away is waited
        for: its reads are made again, and a commit the outage may or may not have
        applied is settled by the tracking record - at ``tracking`` it landed and
        ``track`` returns; below, nothing landed and ``update`` runs again on fresh
        state, so a view update is applied once. Elsewhere ``track`` raises after the
        repository's ``timeout`` (see the module docstring).

        Raises:
            IntegrityError: the tracking record is at or past
                ``tracking.notification_id`` (that event was processed already);
                ``update`` was not called.
            DataError: ``tracking.notification_id`` is not an int from 0 to 2**64 - 1;
                ``update`` was not called, nothing was written. Or a key ``update``
                used is not an aurora-storage key, or a value the codec cannot store;
                nothing was written.
            PersistenceError: the store failed; nothing was written unless the message
                says the outcome is unknown (a store that went away off a runner's
                thread), and then how to tell.
        """
        doing = "record a view update"
        tracking_value = self._tracking_value(tracking)
        pack_int = self._pack_int
        doubt: StorageError | None = None
        delay = RETRY_FIRST
        while True:
            version = self._check_tracking(tracking, doubt, doing)
            if version is _LANDED:
                return
            # A fresh state each time: a run after a conflict or a commit that did not
            # land reads the view again.
            state = ViewState(self._repo, self._tenant)
            update(state)
            try:
                with self._repo.batch() as b:
                    state._add_to(b, pack_int)
                    b.compare_and_set(
                        self._tenant,
                        self._tracking_key(doing, tracking.application_name),
                        tracking_value,
                        version=version,
                    )
            except VersionConflictError:
                # The tracking record, a view record the update read, or the view's
                # stamp changed since it was read; nothing was written. Read again:
                # IntegrityError above if the record is now at or past ours, else the
                # update runs again on fresh state.
                continue
            except StorageError as exc:
                delay = self._commit_failed(exc, doing, delay)
                doubt = exc  # landed or not: the tracking record, read back, says
                continue
            return

    def get(self, key: Any, default: Any = None) -> Any:
        """A view record written through :meth:`track`, or ``default``. On a runner's
        thread a store that is away is waited for (see the module docstring).

        Args:
            key: any aurora-storage key (str, int, tuples of these, ...).
        """
        repo, tenant = self._repo, self._tenant
        try:
            return repo.get(tenant, (VIEW, key), default)
        except StorageError as exc:
            return _again(
                exc, repo, "read a view record", lambda: repo.get(tenant, (VIEW, key), default)
            )

    def wait(
        self,
        application_name: str,
        notification_id: int | None,
        timeout: float = 1.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        """Block until the tracking record of ``application_name`` reaches
        ``notification_id`` (at once if it is ``None``).

        eventsourcing's default polls with a backoff of up to 0.8 s; here a
        ``watch()`` on the tracking record wakes the wait as soon as a commit moves it
        (through this process; the record is re-read every 0.1 s in any case, so other
        processes' commits are seen too).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            WaitInterruptedError: ``interrupt`` was set first.
            DataError: ``notification_id`` is neither an int nor ``None`` (cause:
                InvalidKeyError).
            ProgrammingError: ``timeout`` is not a number of seconds ``>= 0`` (NaN, a
                bool, a str; cause: InvalidArgumentError), checked as ``watch()``
                checks its own; ``None``, ``inf`` or a timeout past
                :data:`threading.TIMEOUT_MAX` waits without a bound.
        """
        check_bound("wait for a tracking record", "wait", "notification_id", notification_id, _NID)
        try:
            # eventsourcing's own wait() computes ``monotonic() + timeout``: NaN never
            # passes, and None or a str raise a raw TypeError.
            seconds = watch_arguments(None, timeout)[1]
        except StorageError as exc:
            raise translate(exc, "wait for a tracking record") from exc
        if notification_id is None:
            return
        if not self._repo.capabilities.change_feed:
            super().wait(
                application_name,
                notification_id,
                math.inf if seconds is None else seconds,
                interrupt,
            )
            return
        deadline = math.inf if seconds is None else time.monotonic() + seconds
        try:
            # Opened before the first read: a commit after that read wakes the loop.
            watch = self._repo.watch(
                self._tenant,
                prefix=self._tracking_key("watch a tracking record", application_name),
                timeout=_WAIT_SLICE,
            )
        except StorageError as exc:
            raise translate(exc, "watch a tracking record") from exc
        with watch:
            while True:
                if self.has_tracking_id(application_name, notification_id):
                    return
                if interrupt is not None and interrupt.is_set():
                    raise WaitInterruptedError
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"Timed out waiting for notification {notification_id} "
                        f"from application '{application_name}' to be processed"
                    )
                try:
                    for _change in watch:
                        break  # a commit moved the record: read it again
                except PositionExpiredError:
                    pass  # the feed moved on without us: just read again
                except StorageError as exc:
                    raise translate(exc, "watch a tracking record") from exc

    def has_tracking_id(self, application_name: str, notification_id: int | None) -> bool:
        """Whether the tracking record of ``application_name`` is at or past
        ``notification_id`` (``True`` if it is ``None``).

        Raises:
            DataError: ``notification_id`` is neither an int nor ``None`` (cause:
                InvalidKeyError).
        """
        check_bound(
            "read a tracking record", "has_tracking_id", "notification_id", notification_id, _NID
        )
        return super().has_tracking_id(application_name, notification_id)

    def max_tracking_id(self, application_name: str) -> int | None:
        """The highest notification id of ``application_name`` recorded as processed,
        or ``None``. On a runner's thread a store that is away is waited for (see the
        module docstring)."""
        repo, tenant = self._repo, self._tenant
        key = self._tracking_key("read a tracking record", application_name)
        try:
            value = repo.get(tenant, key)
        except StorageError as exc:
            value = _again(exc, repo, "read a tracking record", lambda: repo.get(tenant, key))
        if value is None:
            return None
        return self._tracking_id("read a tracking record", application_name, value)


class AuroraProcessRecorder(AuroraTrackingRecorder, AuroraApplicationRecorder, ProcessRecorder):
    """An application recorder that also records tracking, atomically with the events
    a process application writes for the notification it processed (eventsourcing's
    :class:`~eventsourcing.persistence.ProcessRecorder`)."""

    def __init__(self, datastore: AuroraDatastore) -> None:
        super().__init__(datastore)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write ``stored_events``, their notifications and, if ``tracking=`` is
        given, the tracking record, in one atomic batch.

        With ``tracking``, on a runner's thread (a system follower's, an
        ``EventSourcedProjectionRunner``'s) a store that is away is waited for, and a
        batch the outage may or may not have applied is settled by the tracking record:
        landed, the call returns its notification ids (read back); not, it runs again,
        and a re-run that finds its own events stored (the first batch landed after the
        read-back) reads the record once more and returns them likewise.
        Elsewhere the call raises, saying whether it landed or how to tell (see the
        module docstring).

        Raises:
            IntegrityError: a version exists already, or the tracking record is at or
                past ``tracking.notification_id``; nothing written.
            DataError: a field the store cannot hold (see
                :meth:`AuroraAggregateRecorder.insert_events`), or a
                ``tracking.notification_id`` that is not an int from 0 to 2**64 - 1;
                nothing written.
        """
        tracking: Tracking | None = kwargs.get("tracking")
        return self._write(stored_events, tracking, notify=True)
