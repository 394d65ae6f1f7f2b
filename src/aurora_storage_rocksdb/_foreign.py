"""Telling an aurora-storage RocksDB store from one another program wrote, before a byte
of it is written.

A RocksDB directory without ``aurora-store.json`` is either ours - created before markers
existed, or by a run killed between RocksDB's files and the marker (the metadata record
is written and flushed before the marker, see :func:`aurora_storage._metadata.check_metadata`),
or created by a run killed before its metadata record (an empty engine store) - or
another program's: above all the TypeScript package's store at the very path its README
and ours both use (``./data/events``). Opening that one as ours would show it empty and
write into it (a new MANIFEST, OPTIONS, log, the marker and the metadata record), and
``import-seed`` would then refuse it as an aurora-storage store.

So :func:`refuse_foreign` looks inside before the engine opens the store for real: a
read-only RocksDB handle on a temporary directory of symbolic links to the store's
files (as ``import-seed`` reads its source), which writes nothing into the store - not
even rocksdict's side file or RocksDB's info log.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Literal

import rocksdict

from aurora_storage._metadata import META_KEY
from aurora_storage._stores import MARKER_NAME
from aurora_storage.errors import ForeignStoreError

__all__ = ["foreign_store_message", "refuse_foreign", "store_contents"]

#: Files the read-only view must not share with the store: the lock and the info logs
#: (RocksDB may create or rotate them) and rocksdict's side file (rewritten at open).
_PRIVATE = ("LOCK", "LOG", "rocksdict-config.json")

Contents = Literal["aurora", "empty", "foreign", "unknown"]


def store_contents(path: str) -> Contents:
    """What the RocksDB store at ``path`` holds, read without writing to it:
    ``"aurora"`` (aurora-storage's metadata record), ``"empty"`` (no record at all),
    ``"foreign"`` (records, none of them the metadata record) or ``"unknown"`` (the
    read-only view could not be opened or read: the real open reports why)."""
    try:
        with tempfile.TemporaryDirectory(prefix="aurora-rocksdb-probe-") as view:
            for name in os.listdir(path):
                if not name.startswith(_PRIVATE):
                    os.symlink(os.path.join(path, name), os.path.join(view, name))
            opts = rocksdict.Options(raw_mode=True)
            opts.create_if_missing(False)
            # A store its writer was killed in has a torn last log record: the real
            # open deals with it; here only whether records exist matters.
            opts.set_wal_recovery_mode(rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records())
            db = rocksdict.Rdict(view, options=opts, access_type=rocksdict.AccessType.read_only())
            try:
                if db.get(META_KEY) is not None:
                    return "aurora"
                it = db.iter(rocksdict.ReadOptions())
                try:
                    it.seek_to_first()
                    found = it.valid()
                    it.status()
                finally:
                    del it
                return "foreign" if found else "empty"
            finally:
                with contextlib.suppress(Exception):
                    db.close()
    except Exception:  # rocksdict raises plain Exception for engine errors
        return "unknown"


def foreign_store_message(path: str) -> str:
    """Why the store at ``path`` (holding records but no aurora-storage metadata) is
    refused, and what to do."""
    return (
        f"{path} holds a RocksDB store that aurora-storage did not write: it has records "
        f"but no {MARKER_NAME} and no aurora-storage metadata record (such as a store of "
        "the TypeScript package @aurora/runtime-storage-rocksdb). It was not opened and "
        "nothing was written to it. Import a TypeScript store into a new path with "
        f"`aurora-storage import-seed {path} rocksdb:NEW_PATH` (see "
        "docs/migrating-from-typescript.md), or open another path"
    )


def refuse_foreign(path: str) -> None:
    """Refuse the existing RocksDB store at ``path`` (which has no marker) when it holds
    records but no aurora-storage metadata record; adopt an empty one or one with the
    record (see the module docstring).

    Raises:
        ForeignStoreError: the store holds records and no metadata record.
    """
    if store_contents(path) == "foreign":
        raise ForeignStoreError(foreign_store_message(path), backend="rocksdb", path=path)
