"""A projection's view state: the view records one ``track()`` update reads and writes.

An eventsourcing ``Projection`` whose ``view_class`` is an
:class:`~aurora_storage.eventsourcing.AuroraTrackingRecorder` keeps a materialised view:
records in the recorder's tenant, under ``(VIEW, key)`` (see ``_records``).
:meth:`AuroraTrackingRecorder.track` hands the projection's update a :class:`ViewState`:
its reads see the store plus the update's own writes, and its writes are held until
``track`` commits them - in the same atomic batch that moves the tracking record, so the
view's state and its position can never disagree, even across a crash.

Why the reads belong to that commit too: the batch is conditional on everything the
update read being unchanged when it commits, so an update that runs while another writer
(another process, or another runner that shares the view's tenant) changes a record it
read writes nothing and runs again on fresh state; a read-modify-write such as
``state.put(k, state.get(k, 0) + 1)`` never loses an increment. Every record read is
remembered with its version (absent included): a record read and then put is written by
``compare_and_set`` against it, and a record read and not put is covered by the view's
stamp (``(VIEW_STAMP,)``), read before the update's first record and changed by every
batch that writes view records (see :meth:`ViewState._add_to`).

On a runner's thread a store that is away is waited for: a read is made again until the
store answers (the subscriptions' rule, :func:`retry_while_away`); elsewhere it raises
after the repository's ``timeout`` (see ``_recorders``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from aurora_storage import Batch, Repository, Version, encode_key
from aurora_storage.errors import StorageError

from ._errors import translate
from ._records import VIEW, VIEW_STAMP
from ._subscription import _again

__all__ = ["ViewState"]

_DELETED: Any = object()
#: The key of a view tenant's stamp (see ViewState._add_to).
_STAMP = (VIEW_STAMP,)


class ViewState:
    """The view records :meth:`AuroraTrackingRecorder.track` reads and writes: reads see
    the store plus this update's own writes; writes are applied when ``track`` commits.

    Every record read from the store is remembered with its version (absent included),
    so that ``track`` can condition its batch on it: see :meth:`AuroraTrackingRecorder.track`.

    Values go through the store's codec as they are (so a ``raw`` store holds bytes
    only); keys are any aurora-storage keys.
    """

    def __init__(self, repository: Repository[Any, Any], tenant: str) -> None:
        self._repo = repository
        self._tenant = tenant
        # Keyed by the canonical key encoding: equal keys (1 and 1.0, dicts in any
        # order) are one record, and unhashable keys (lists, dicts) work.
        self._pending: dict[bytes, tuple[Any, Any]] = {}
        # The version each record had when this update first read it from the store
        # (None: absent).
        self._read: dict[bytes, Version | None] = {}
        # The version of the view's stamp, read before the first record (see _add_to).
        self._stamp_read = False
        self._stamp: Version | None = None

    def get(self, key: Any, default: Any = None) -> Any:
        """The record's value (as this update left it), or ``default``. On a runner's
        thread a store that is away is waited for (see the module docstring).

        Raises:
            DataError: ``key`` is not an aurora-storage key (cause: InvalidKeyError).
        """
        try:
            encoded = encode_key(key)
        except StorageError as exc:
            raise translate(exc, "read a view record") from exc
        pending = self._pending.get(encoded)
        if pending is not None:
            return default if pending[1] is _DELETED else pending[1]
        try:
            value, version = self._read_store(key)
        except StorageError as exc:
            # On a runner's thread, a store that is away is waited for (the stamp, once
            # read, is not read again: it still comes before this record).
            value, version = _again(
                exc, self._repo, "read a view record", lambda: self._read_store(key)
            )
        # The first read's version: what the update computed may rest on it.
        self._read.setdefault(encoded, version)
        return default if version is None else value

    def _read_store(self, key: Any) -> tuple[Any, Version | None]:
        """The record ``key`` and its version as stored; the view's stamp first, before
        the update's first record."""
        repo, tenant = self._repo, self._tenant
        if not self._stamp_read:
            # Before any record: a commit of another update after this read changes
            # the stamp, whichever records it wrote.
            self._stamp = repo.get_versioned(tenant, _STAMP)[1]
            self._stamp_read = True
        return repo.get_versioned(tenant, (VIEW, key))

    def put(self, key: Any, value: Any) -> None:
        """Set the record ``key`` to ``value`` when the update commits.

        Raises:
            DataError: ``key`` is not an aurora-storage key (cause: InvalidKeyError).
        """
        self._pending[self._encode(key)] = (key, value)

    def delete(self, key: Any) -> None:
        """Remove the record ``key`` (if present) when the update commits.

        Raises:
            DataError: ``key`` is not an aurora-storage key (cause: InvalidKeyError).
        """
        self._pending[self._encode(key)] = (key, _DELETED)

    @staticmethod
    def _encode(key: Any) -> bytes:
        try:
            return encode_key(key)
        except StorageError as exc:
            raise translate(exc, "write a view record") from exc

    def _add_to(self, batch: Batch[Any, Any], pack_int: Callable[[int], Any]) -> None:
        """Add this update's writes to ``batch``, conditioned on everything it read.

        A record read and then put is written with ``compare_and_set`` against the
        version read (``None``: only if still absent). A record read and not put - only
        read, or read and deleted - has no condition of its own (a batch conditions a
        key only by writing it), so the batch is conditioned on the view's stamp
        instead: a record every batch that writes view records changes, read before the
        update's first read. Records written without being read need no condition.

        An update that writes no view record (it only read) adds nothing, not even the
        stamp: nothing of the view could rest on a stale read, so the batch needs no
        condition on its reads, and rewriting the stamp would only make every other
        update that read the view meanwhile fail and run again for nothing.
        """
        if not self._pending:
            return
        tenant, read = self._tenant, self._read
        on_stamp = False
        for encoded, (key, value) in self._pending.items():
            if value is _DELETED:
                batch.delete(tenant, (VIEW, key))
                on_stamp = on_stamp or encoded in read
            elif encoded in read:
                batch.compare_and_set(tenant, (VIEW, key), value, version=read[encoded])
            else:
                batch.put(tenant, (VIEW, key), value)
        if not on_stamp:
            pending = self._pending
            on_stamp = any(encoded not in pending for encoded in read)
        if on_stamp:
            # Read with the first record (on_stamp needs a record read).
            batch.compare_and_set(tenant, _STAMP, _stamp_value(pack_int), version=self._stamp)
        else:
            batch.put(tenant, _STAMP, _stamp_value(pack_int))


def _stamp_value(pack_int: Callable[[int], Any]) -> Any:
    """A new value of a view's stamp: random (from the OS, so forked processes differ),
    hence a new version whatever the stamp held (one chance in 2**63 to repeat it)."""
    return pack_int(secrets.randbits(63))
