"""The infrastructure factory eventsourcing finds through ``PERSISTENCE_MODULE``."""

from __future__ import annotations

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
from aurora_storage import Repository, encode_stored_key
from aurora_storage.errors import KeyTooLargeError, StorageError

from ._recorders import (
    AuroraAggregateRecorder,
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraProcessRecorder,
    AuroraTrackingRecorder,
)
from ._records import EVENT, OriginatorIdType, value_layout

__all__ = ["AuroraFactory"]

#: The tenant used when neither AURORA_TENANT nor an application name is given.
DEFAULT_TENANT = "eventsourcing"

#: The largest key the module writes for any application with UUID ids: an event of
#: the snapshots sequence at the largest 64-bit version. A tenant is refused unless it
#: fits (then the notifications, tracking records of short names and the sequence's
#: counter, all shorter, fit too).
_LARGEST_KEY = (EVENT, "snapshots", "f" * 32, (1 << 64) - 1)


class AuroraFactory(InfrastructureFactory[AuroraTrackingRecorder]):
    """Builds eventsourcing recorders on an aurora-storage repository.

    Selected with ``PERSISTENCE_MODULE=aurora_storage.eventsourcing``. Settings (read
    through eventsourcing's :class:`~eventsourcing.utils.Environment`, so each may be
    prefixed with the upper-cased application name, ``BANKACCOUNTS_AURORA_URL``):

    ``AURORA_URL`` (required)
        the store, e.g. ``lmdb:///var/data/events?codec=msgpack``. Each factory opens
        its own repository on it; factories of one process naming the same persistent
        store share its engine handle (the core's one live handle per store), and
        :meth:`close` closes this factory's repository only: its recorders then raise
        ``InterfaceError`` while other factories go on. ``memory://`` is a new, empty
        store for each factory, as eventsourcing's POPO module gives each application
        its own.
    ``AURORA_TENANT``
        the tenant holding this application's records; default: the application's
        name (so applications sharing a store are kept apart), or ``eventsourcing``.
        It must leave room for the module's keys under the key limit (511 bytes
        encoded, tenant included): at most 448 bytes of UTF-8 (448 ASCII characters).
    ``ORIGINATOR_ID_TYPE``
        ``uuid`` (default) or ``text``: the type of the originator ids read back.

    Raises:
        InfrastructureFactoryError: ``AURORA_URL`` is missing, or the store cannot be
            opened (the aurora-storage error is chained), or its backend lacks the
            event-store primitives, or the tenant (``AURORA_TENANT`` or the application
            name) cannot hold the module's records (too long for the key limit).
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
        tenant = self._tenant()
        try:
            repo = aurora_storage.open(url)
        except StorageError as exc:
            raise InfrastructureFactoryError(
                f"cannot open the aurora-storage store {url!r}: {exc}"
            ) from exc
        self._closed = False
        try:
            _check_capabilities(repo)
        except BaseException:
            repo.close()
            raise
        self.datastore = AuroraDatastore(
            repository=repo,
            tenant=tenant,
            originator_id_type=cast(OriginatorIdType, id_type),
            layout=value_layout(repo.codec),
        )

    def _tenant(self) -> str:
        """The tenant of this application's records, checked to hold them.

        Raises:
            InfrastructureFactoryError: it cannot (naming the setting, the limit and
                the fix).
        """
        given = self.env.get(self.AURORA_TENANT)
        if given:
            tenant = given
            setting = next(
                f"The {key} setting"
                for key in self.env.create_keys(self.AURORA_TENANT)
                if dict.get(self.env, key) is not None
            )
        elif self.env.name:
            tenant = self.env.name
            setting = f"The application name (the tenant when {self.AURORA_TENANT} is not set)"
        else:
            return DEFAULT_TENANT
        shown = f"{tenant[:40]!r}{'...' if len(tenant) > 40 else ''}"
        try:
            encode_stored_key(tenant, _LARGEST_KEY)
        except KeyTooLargeError as exc:
            room = exc.limit - (len(encode_stored_key("x", _LARGEST_KEY)) - 1)
            raise InfrastructureFactoryError(
                f"{setting} {shown} ({len(tenant)} characters) cannot be the tenant of "
                f"this application's records: with it an event's key takes {exc.size} "
                f"bytes, over the {exc.limit}-byte key limit of every backend. A tenant "
                f"may take at most {room} bytes of UTF-8 ({room} ASCII characters); set "
                f"{self.AURORA_TENANT} to a shorter tenant"
            ) from exc
        except StorageError as exc:
            raise InfrastructureFactoryError(
                f"{setting} {shown} cannot be a tenant: {exc}; set {self.AURORA_TENANT} "
                "to another tenant"
            ) from exc
        return tenant

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
        """Close this factory's repository: its recorders raise ``InterfaceError`` from
        now on, whatever other factories still hold the store (the store itself closes
        with the last repository on it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.datastore.repository.close()


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
