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

A store is ours only where aurora-storage puts records: the default column family.
aurora-storage never creates another column family, so a store listing one (read from
its MANIFEST, :func:`other_families`) is another program's whatever the default family
holds - records kept only in a family ``events`` made the store look empty, and it was
adopted and written into (breaker finding).

The view is made in the temporary directory, else beside the store (in its parent
directory, leaving the store's own directory as it was). A look can fail for two
reasons, and neither is taken to mean "ours":

* no view can be made (a temporary directory out of inodes, or mounted ``nosymfollow``):
  a read-write open is refused (:func:`no_view_message`); a read-only or secondary
  open - which writes no record - is checked after the real open instead
  (:func:`check_opened`);
* the engine fails on the view: a live writer's flush deleted files between the
  listing and the open (or the store is damaged). The look is repeated a few times,
  then the real open is checked the same way (a read-write open beside a live writer
  fails on RocksDB's LOCK before writing; one that succeeds is checked before a record
  of ours is written).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import time
from typing import Any, Literal

import rocksdict

from aurora_storage._metadata import META_KEY
from aurora_storage._stores import MARKER_NAME
from aurora_storage.errors import ConfigurationError, CorruptionError, ForeignStoreError

from ._damage import damaged_files

__all__ = [
    "DEFAULT_FAMILY",
    "check_opened",
    "family_names",
    "foreign_store_message",
    "no_view_message",
    "other_families",
    "refuse_foreign",
    "refuse_replacing",
    "store_contents",
]

#: Files the read-only view must not share with the store: the lock and the info logs
#: (RocksDB may create or rotate them) and rocksdict's side file (rewritten at open).
_PRIVATE = ("LOCK", "LOG", "rocksdict-config.json")

#: Looks tried before the engine's failure on the view is taken as inconclusive: each
#: lists the store again, so a live writer's flush between listing and open is missed
#: by the next look (seen: 41 of 60 single looks failed beside a writer flushing 64 KiB
#: memtables).
_ATTEMPTS = 6

SIDE_FILE = "rocksdict-config.json"

#: RocksDB's own column family, always present; the only one aurora-storage uses.
DEFAULT_FAMILY = "default"

#: Column families named in a message at most (the rest are counted).
_NAMED = 5

Contents = Literal["aurora", "empty", "foreign", "unknown", "no_view"]


class _NoView(Exception):
    """No directory of links to the store's files could be made and followed."""


def _make_view(path: str) -> str:
    """A new directory of symbolic links to the store's files (not the private ones),
    in the temporary directory, else in the store's parent directory; checked by
    following a link. Raises _NoView saying why each place failed."""
    parent = os.path.dirname(os.path.abspath(path))
    reasons = []
    for where in dict.fromkeys((tempfile.gettempdir(), parent)):
        view = None
        try:
            view = tempfile.mkdtemp(prefix=".aurora-rocksdb-probe-", dir=where)
            for name in os.listdir(path):
                if not name.startswith(_PRIVATE):
                    os.symlink(os.path.join(path, name), os.path.join(view, name))
            # A filesystem mounted nosymfollow makes the links but refuses to follow them.
            os.stat(os.path.join(view, "CURRENT"))
        except OSError as exc:
            if view is not None:
                shutil.rmtree(view, ignore_errors=True)
            reasons.append(f"{where}: {exc.strerror or exc}")
            continue
        return view
    raise _NoView("; ".join(reasons))


def other_families(path: str) -> list[str]:
    """The column families of the RocksDB store at ``path`` other than the default one,
    in the store's order; read from its ``CURRENT`` and MANIFEST without opening the
    store (nothing is written). Raises the engine's ``Exception`` when they cannot be
    read."""
    return [name for name in rocksdict.Rdict.list_cf(path) if name != DEFAULT_FAMILY]


def family_names(families: list[str]) -> str:
    """``families`` for a one-line message: quoted (``repr``: a newline in a name stays
    ``\\n``), the first few named and the rest counted."""
    named = ", ".join(repr(name) for name in families[:_NAMED])
    more = len(families) - _NAMED
    return named + (f" and {more} more" if more > 0 else "")


def _contents_of(db: Any) -> Contents:
    """What an open engine handle holds: aurora's metadata record, nothing, or records."""
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


def _look(path: str) -> tuple[Contents, str, list[str]]:
    """The store's contents, for ``"no_view"``/``"unknown"`` why the look failed, and
    its column families other than the default one (any makes it ``"foreign"``)."""
    why = ""
    for attempt in range(_ATTEMPTS):
        try:
            view = _make_view(path)
        except _NoView as exc:
            return "no_view", str(exc), []
        try:
            # Read through the view too: a writer's MANIFEST switch is retried below.
            families = other_families(view)
            if families:
                return "foreign", "", families
            opts = rocksdict.Options(raw_mode=True)
            opts.create_if_missing(False)
            # A store its writer was killed in has a torn last log record: the real
            # open deals with it; here only whether records exist matters.
            opts.set_wal_recovery_mode(rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records())
            db = rocksdict.Rdict(view, options=opts, access_type=rocksdict.AccessType.read_only())
            try:
                return _contents_of(db), "", []
            finally:
                with contextlib.suppress(Exception):
                    db.close()
        except Exception as exc:  # rocksdict raises plain Exception for engine errors
            why = str(exc)
        finally:
            shutil.rmtree(view, ignore_errors=True)
        # Let a writer's flush finish before listing again (not a correctness wait:
        # an inconclusive look is checked after the real open).
        time.sleep(0.005 * (attempt + 1))
    return "unknown", why, []


def store_contents(path: str) -> Contents:
    """What the RocksDB store at ``path`` holds, read without writing to it:
    ``"aurora"`` (aurora-storage's metadata record), ``"empty"`` (no record at all),
    ``"foreign"`` (records, none of them the metadata record, or a column family other
    than the default one), ``"no_view"`` (no
    directory of links could be made: see :func:`no_view_message`) or ``"unknown"``
    (the engine failed on the view in every try)."""
    return _look(path)[0]


def _what_is_foreign(families: list[str]) -> str:
    if families:
        return (
            f"it has column families other than RocksDB's default one ({family_names(families)}), "
            f"which aurora-storage never creates, and no {MARKER_NAME}"
        )
    return f"it has records but no {MARKER_NAME} and no aurora-storage metadata record"


def foreign_store_message(path: str, families: list[str] | None = None) -> str:
    """Why the store at ``path`` (holding records but no aurora-storage metadata, or
    the column families ``families`` besides the default one) is refused, and what to
    do."""
    return (
        f"{path} holds a RocksDB store that aurora-storage did not write: "
        f"{_what_is_foreign(families or [])} (such as a store of the TypeScript package "
        "@aurora/runtime-storage-rocksdb). It was not opened and nothing was written to "
        "it. Import a TypeScript store into a new path with "
        f"`aurora-storage import-seed {shlex.quote(path)} rocksdb:NEW_PATH` (see "
        "docs/migrating-from-typescript.md), or open another path"
    )


def refuse_replacing(path: str) -> None:
    """Refuse to replace the unmarked RocksDB store at ``path`` (``aurora-storage
    restore`` deletes what it replaces) unless a look inside shows it is ours: holding
    aurora-storage's metadata record or no record at all, and no column family but the
    default one. Nothing is written.

    Raises:
        ForeignStoreError: another program's store (records without the metadata
            record, or another column family).
        ConfigurationError: no look inside was possible, or the engine failed on every
            look (a damaged store, or one being written): nothing tells it is ours.
    """
    contents, why, families = _look(path)
    if contents == "foreign":
        raise ForeignStoreError(
            f"cannot restore into {path}: it holds a RocksDB store that aurora-storage did "
            f"not write: {_what_is_foreign(families)} (such as a store of the TypeScript "
            "package @aurora/runtime-storage-rocksdb), and restore would delete it; "
            "nothing was changed. Import a TypeScript store with `aurora-storage "
            f"import-seed {shlex.quote(path)} rocksdb:NEW_PATH`, restore into another "
            "path, or move the store away first if it is not needed",
            backend="rocksdb",
            path=path,
        )
    if contents in ("no_view", "unknown"):
        raise ConfigurationError(
            f"cannot restore into {path}: it holds a RocksDB store without {MARKER_NAME}, "
            "and a read-only look inside, to tell whether aurora-storage wrote it, failed "
            f"({why}); restore would delete it, so nothing was changed. Stop any program "
            "writing it and run the restore again (with TMPDIR on a filesystem where "
            "symbolic links can be made and followed), or move the store away first if it "
            "is not needed",
            backend="rocksdb",
            path=path,
        )


def no_view_message(path: str, why: str) -> str:
    """Why a read-write open of the unmarked store at ``path`` is refused when no
    directory of links for a look inside could be made (``why``: each place's error)."""
    return (
        f"cannot tell whether the RocksDB store at {path} (no {MARKER_NAME}) was written "
        "by aurora-storage: a read-only look inside needs a directory of symbolic links to "
        "its files, and neither the temporary directory nor the store's parent directory "
        f"can hold them ({why}). It was not opened and nothing was written to it. Set "
        "TMPDIR to a directory where symbolic links can be made and followed (a "
        "filesystem with free inodes, not mounted nosymfollow), or open the store with "
        "mode=read_only"
    )


def _unreadable_contents(
    path: str, exc: Exception, *, read_write: bool
) -> CorruptionError | ConfigurationError:
    """The error for an unmarked store whose metadata record (or first record) the
    engine could not read: damage (its block fails its checksum) or another failure."""
    text = " ".join(str(exc).split()).rstrip(".")
    low = text.lower()
    rewrote = (
        " (RocksDB's open rewrote its own MANIFEST, OPTIONS and log files)" if read_write else ""
    )
    if "corruption" in low or "checksum mismatch" in low:
        files = damaged_files(text)
        return CorruptionError(
            f"the RocksDB store {path} is damaged where its first records lie "
            f"({', '.join(files) or 'the engine named no file'}: {text}), and it has no "
            f"{MARKER_NAME} (a checkpoint or `aurora-storage backup` has none): nothing "
            "else tells that aurora-storage wrote it or which codec its values use, so it "
            f"cannot be opened; no record was written{rewrote}. Restore an earlier "
            "backup, or export what still reads from the store it was copied from "
            "(`aurora-storage export --salvage`)",
            backend="rocksdb",
            path=files[0] if len(files) == 1 else path,
        )
    return ConfigurationError(
        f"cannot tell whether the RocksDB store at {path} (no {MARKER_NAME}) was written "
        f"by aurora-storage: its first records cannot be read ({text}). It was closed "
        f"again before any record was written{rewrote}; open it again",
        backend="rocksdb",
        path=path,
    )


def refuse_foreign(path: str, *, read_write: bool) -> bool:
    """Refuse the existing RocksDB store at ``path`` (which has no marker) when it holds
    records but no aurora-storage metadata record; adopt an empty one or one with the
    record (see the module docstring).

    Returns:
        True when the look was inconclusive: the caller must check the opened engine
        with :func:`check_opened` before using it.

    Raises:
        ForeignStoreError: the store holds records and no metadata record.
        ConfigurationError: ``read_write`` and no directory of links could be made for
            the look (:func:`no_view_message`); nothing was written.
    """
    contents, why, families = _look(path)
    if contents == "foreign":
        raise ForeignStoreError(foreign_store_message(path, families), backend="rocksdb", path=path)
    if contents == "no_view" and read_write:
        raise ConfigurationError(no_view_message(path, why), backend="rocksdb", path=path)
    return contents in ("no_view", "unknown")


def check_opened(db: Any, path: str, *, side_file_existed: bool, read_write: bool) -> None:
    """Refuse the engine ``db`` just opened on the unmarked store at ``path`` when it
    holds records but no metadata record (the look before the open was inconclusive).
    The caller closes ``db`` when this raises. A read-only or secondary open wrote only
    rocksdict's side file: removed again unless it was there (``side_file_existed``).

    Raises:
        ForeignStoreError: the store holds records and no metadata record, or a column
            family other than the default one.
        CorruptionError: the block holding the metadata record (or the first record)
            is damaged: without the marker nothing else tells the store ours (a
            checkpoint, which ``aurora-storage backup`` writes, has no marker).
        ConfigurationError: its column families or first records cannot be read.
    """
    try:
        families = other_families(path)
    except Exception as exc:  # rocksdict raises plain Exception for engine errors
        families = []
        unreadable: Exception | None = exc
    else:
        unreadable = None
    unread: Exception | None = None
    if unreadable is None and not families:
        try:
            if _contents_of(db) != "foreign":
                return
        except Exception as exc:  # rocksdict raises plain Exception for engine errors
            # Escaped as the engine's plain Exception before (a PluginError, "a bug"):
            # a damaged backup's open, where the look before it failed on the damage.
            unread = exc
    if not side_file_existed and not read_write:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(path, SIDE_FILE))
    if unread is not None:
        raise _unreadable_contents(path, unread, read_write=read_write) from unread
    if unreadable is not None:
        raise ConfigurationError(
            f"cannot tell whether the RocksDB store at {path} (no {MARKER_NAME}) was "
            f"written by aurora-storage: its column families cannot be read ({unreadable}). "
            "It was closed again before any record was written; open it again",
            backend="rocksdb",
            path=path,
        ) from unreadable
    message = foreign_store_message(path, families)
    if read_write:
        # The engine's open already rewrote its own files (no record was written).
        message = message.replace(
            "It was not opened and nothing was written to it.",
            "It was closed again before any record was written (RocksDB's open rewrote "
            "its own MANIFEST, OPTIONS and log files).",
        )
    raise ForeignStoreError(message, backend="rocksdb", path=path)
