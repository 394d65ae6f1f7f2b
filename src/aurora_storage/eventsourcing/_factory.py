"""The infrastructure factory eventsourcing finds through ``PERSISTENCE_MODULE``."""

from __future__ import annotations

import os
import threading
from typing import Any, cast

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    InfrastructureFactoryError,
    ProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import StorageError

from ._recorders import (
    AuroraAggregateRecorder,
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraProcessRecorder,
    AuroraTrackingRecorder,
)
from ._records import OriginatorIdType, value_layout

__all__ = ["AuroraFactory"]

#: The tenant used when neither AURORA_TENANT nor an application name is given.
DEFAULT_TENANT = "eventsourcing"


class _SharedStores:
    """One open repository per persistent store URL per process, shared by the
    factories that name it.

    Several applications of one process (an eventsourcing ``System``, or two
    applications sharing a store through tenancy) each build a factory; LMDB refuses a
    second handle on an environment in one process and RocksDB allows one writer. A
    factory therefore borrows the repository here and gives it back on ``close()``; the
    last one closes it. Keyed by process id as well: a child process never reuses its
    parent's handle.
    """

    def __init__(self) -> None:
        # Reentrant: eventsourcing's Application.__del__ closes its factory, which gives
        # the repository back here - and the garbage collector may run that finaliser
        # in a thread that already holds this lock (an open() inside borrow allocates).
        # With a plain Lock the thread waited for itself forever (the suite hung).
        self._lock = threading.RLock()
        self._open: dict[tuple[int, str], tuple[Repository[Any, Any], int]] = {}

    def borrow(self, url: str) -> Repository[Any, Any]:
        key = (os.getpid(), url)
        with self._lock:
            found = self._open.get(key)
            if found is not None and not found[0].closed:
                self._open[key] = (found[0], found[1] + 1)
                return found[0]
            repo = aurora_storage.open(url)
            if repo.capabilities.persistent:
                # A non-persistent store (memory://) is a new store at every open, as
                # eventsourcing's POPO module gives each application its own.
                self._open[key] = (repo, 1)
            return repo

    def give_back(self, url: str, repo: Repository[Any, Any]) -> None:
        key = (os.getpid(), url)
        with self._lock:
            found = self._open.get(key)
            if found is None or found[0] is not repo:
                repo.close()
                return
            if found[1] > 1:
                self._open[key] = (repo, found[1] - 1)
                return
            del self._open[key]
        repo.close()


_stores = _SharedStores()


class AuroraFactory(InfrastructureFactory[AuroraTrackingRecorder]):
    """Builds eventsourcing recorders on an aurora-storage repository.

    Selected with ``PERSISTENCE_MODULE=aurora_storage.eventsourcing``. Settings (read
    through eventsourcing's :class:`~eventsourcing.utils.Environment`, so each may be
    prefixed with the upper-cased application name, ``BANKACCOUNTS_AURORA_URL``):

    ``AURORA_URL`` (required)
        the store, e.g. ``lmdb:///var/data/events?codec=msgpack``. Factories of one
        process naming the same URL share one open repository.
    ``AURORA_TENANT``
        the tenant holding this application's records; default: the application's
        name (so applications sharing a store are kept apart), or ``eventsourcing``.
    ``ORIGINATOR_ID_TYPE``
        ``uuid`` (default) or ``text``: the type of the originator ids read back.

    Raises:
        InfrastructureFactoryError: ``AURORA_URL`` is missing, or the store cannot be
            opened (the aurora-storage error is chained), or its backend lacks the
            event-store primitives.
    """

    AURORA_URL = "AURORA_URL"
    AURORA_TENANT = "AURORA_TENANT"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

    aggregate_recorder_class: type[AuroraAggregateRecorder] = AuroraAggregateRecorder
    application_recorder_class: type[AuroraApplicationRecorder] = AuroraApplicationRecorder
    tracking_recorder_class: type[AuroraTrackingRecorder] = AuroraTrackingRecorder
    process_recorder_class: type[AuroraProcessRecorder] = AuroraProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        url = self.env.get(self.AURORA_URL)
        if not url:
            raise InfrastructureFactoryError(
                "aurora-storage URL not found in the environment; set one of "
                f"{', '.join(self.env.create_keys(self.AURORA_URL))} "
                "(e.g. 'lmdb:///var/data/events?codec=msgpack')"
            )
        id_type = (self.env.get(self.ORIGINATOR_ID_TYPE) or "uuid").lower()
        if id_type not in ("uuid", "text"):
            raise InfrastructureFactoryError(
                f"invalid {self.ORIGINATOR_ID_TYPE} {id_type!r}: use 'uuid' or 'text'"
            )
        tenant = self.env.get(self.AURORA_TENANT) or self.env.name or DEFAULT_TENANT
        try:
            repo = _stores.borrow(url)
        except StorageError as exc:
            raise InfrastructureFactoryError(
                f"cannot open the aurora-storage store {url!r}: {exc}"
            ) from exc
        self._url = url
        self._closed = False
        try:
            _check_capabilities(repo)
        except BaseException:
            _stores.give_back(url, repo)
            raise
        self.datastore = AuroraDatastore(
            repository=repo,
            tenant=tenant,
            originator_id_type=cast(OriginatorIdType, id_type),
            layout=value_layout(repo.codec),
        )

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        """An aggregate recorder for ``purpose`` (``events`` or ``snapshots``)."""
        return self.aggregate_recorder_class(self.datastore, purpose)

    def application_recorder(self) -> ApplicationRecorder:
        """The application recorder (``APPLICATION_RECORDER_TOPIC`` may name a subclass
        of :class:`AuroraApplicationRecorder`)."""
        cls: type[AuroraApplicationRecorder] = self.application_recorder_class
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        if topic:
            cls = resolve_topic(topic)
            _check_subclass(cls, AuroraApplicationRecorder, self.APPLICATION_RECORDER_TOPIC)
        return cls(self.datastore)

    def tracking_recorder(
        self, tracking_recorder_class: type[AuroraTrackingRecorder] | None = None
    ) -> AuroraTrackingRecorder:
        """A tracking recorder: ``tracking_recorder_class``, else the class named by
        ``TRACKING_RECORDER_TOPIC``, else :class:`AuroraTrackingRecorder`."""
        cls = tracking_recorder_class
        if cls is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            cls = resolve_topic(topic) if topic else self.tracking_recorder_class
        _check_subclass(cls, AuroraTrackingRecorder, self.TRACKING_RECORDER_TOPIC)
        return cls(self.datastore)

    def process_recorder(self) -> ProcessRecorder:
        """The process recorder (``PROCESS_RECORDER_TOPIC`` may name a subclass of
        :class:`AuroraProcessRecorder`)."""
        cls: type[AuroraProcessRecorder] = self.process_recorder_class
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        if topic:
            cls = resolve_topic(topic)
            _check_subclass(cls, AuroraProcessRecorder, self.PROCESS_RECORDER_TOPIC)
        return cls(self.datastore)

    def close(self) -> None:
        """Give the repository back (the last factory using it closes it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        _stores.give_back(self._url, self.datastore.repository)


def _check_subclass(cls: Any, base: type, setting: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise InfrastructureFactoryError(f"{setting} must name a subclass of {base.__name__}")


def _check_capabilities(repo: Repository[Any, Any]) -> None:
    caps = repo.capabilities
    missing = [
        name
        for name, declared in (
            ("conditional_writes", caps.conditional_writes),
            ("sequences", caps.sequences),
        )
        if not declared
    ]
    if missing:
        raise InfrastructureFactoryError(
            f"the store {repo.url or repo.backend.describe()} does not declare "
            f"{' and '.join(missing)}, which event sourcing needs (aggregate versions and "
            "notification ids are assigned atomically in the engine); use memory://, "
            "rocksdb:// or lmdb://"
        )
