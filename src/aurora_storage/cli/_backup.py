"""``aurora-storage backup`` and ``restore``: a consistent copy of a store into a new
directory, and a backup swapped in for a store - refusing, before anything changes, a
store that another process has open where the result would not hold what it claims.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator
from typing import Any

import click

from .. import errors
from ._app import _confirm, _quiet_option, cli
from ._common import NoStoreError, engine_at, open_read, open_write, say

__all__ = ["backup", "restore"]


def _backup(repo: Any, target: str) -> str:
    if hasattr(repo, "checkpoint"):
        return str(repo.checkpoint(target))
    if hasattr(repo, "copy"):
        os.makedirs(target)
        return str(repo.copy(target, compact=True))
    raise errors.NotSupportedError(
        f"{repo.url} has no backup of its own; use `aurora-storage copy` to another store "
        "or `export` instead"
    )


_PARTIAL = ".partial-"


def _clean_partials(target: str) -> None:
    """Remove what killed runs left of a backup into ``target`` (``<target>.partial-<pid>``
    and ``<target>.partial-<pid>.tmp`` of a process that no longer runs); a running
    backup's is left alone."""
    parent, name = os.path.split(target)
    prefix = name + _PARTIAL
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        # <target>.partial-<pid>, and <target>.partial-<pid>.tmp: the directory a
        # RocksDB checkpoint is built in before RocksDB renames it (a run killed inside
        # the checkpoint leaves it).
        rest = entry[len(prefix) :].removesuffix(".tmp")
        if not rest.isdigit():
            continue
        pid = int(rest)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        except OSError:
            pass  # (someone else's process: it runs)
        else:
            if pid == os.getpid():
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


_ROCKSDB_LIVE_ADVICE = (
    "Its newest writes are in the writing process's memory and write-ahead log, which "
    "a backup from outside cannot include. Back it up from inside that process with "
    "RocksDBRepository.checkpoint(path) (repo.checkpoint(path)), or stop it first and "
    "run the backup again"
)


@contextlib.contextmanager
def _open_for_backup(url: str) -> Iterator[Any]:
    """The store to back up, open for the block. A RocksDB store another process
    writes is refused (see :data:`_ROCKSDB_LIVE_ADVICE`), and the probe's lock on its
    ``LOCK`` is held until the backup is done: a writer starting meanwhile is refused
    (StoreLockedError) instead of acknowledging writes the read-only checkpoint leaves
    out. A store whose killed writer left writes only in its log opens writable
    (replaying and flushing them; RocksDB's own lock keeps writers out). Everything
    else opens read-only."""
    from ..config import URL
    from ._common import held_by_others, rocksdb_needs_recovery, store_path

    parsed = URL.parse(url)
    path = store_path(parsed)
    if parsed.scheme == "lmdb" and path is not None and os.path.isfile(path):
        raise errors.NotSupportedError(
            f"backup writes a store directory; the LMDB store {path} is a single file "
            "(subdir=false): copy it with `aurora-storage copy` to another store instead"
        )
    if parsed.scheme != "rocksdb" or path is None:
        with open_read(url) as repo:
            yield repo
        return
    with held_by_others("rocksdb", path, doing=f"back up {url}", advice=_ROCKSDB_LIVE_ADVICE):
        recover = rocksdb_needs_recovery(path) and "mode" not in parsed.options
        if not recover:
            with open_read(url) as repo:
                yield repo
            return
    try:
        repo = open_write(url, create=False)
    except errors.StoreLockedError as exc:
        raise errors.StoreLockedError(
            f"cannot back up {url}: another process opened it for writing just now. "
            + _ROCKSDB_LIVE_ADVICE,
            backend="rocksdb",
            path=path,
        ) from exc
    with repo:
        yield repo


@cli.command()
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False))
@_quiet_option
def backup(url: str, directory: str, quiet: bool) -> None:
    """Write a consistent backup of a store into a new DIRECTORY (a RocksDB checkpoint,
    an LMDB compacting copy); the backup opens as a store of the same engine.

    LMDB may be backed up while a writer keeps writing. A RocksDB store that another
    process has open for writing is refused (exit 3): back it up from inside that
    process (``repo.checkpoint(path)``) or stop it first. The backup is written into
    DIRECTORY.partial-PID and renamed to DIRECTORY only once complete; the next backup
    into DIRECTORY removes what a killed run left.

    \b
    Example:
      aurora-storage backup rocksdb:///var/data/events /backups/events-2026-12-01
    """
    target = os.path.abspath(directory)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise click.UsageError(f"the backup target {target} exists and is not empty")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        # The engines create the backup folder itself only; RocksDB's own message for a
        # missing parent was a raw "IO error: ... While mkdir".
        raise click.UsageError(
            f"the folder {parent} that should hold the backup does not exist; create it "
            f"first (mkdir -p {parent})"
        )
    _clean_partials(target)
    partial = f"{target}{_PARTIAL}{os.getpid()}"
    try:
        with _open_for_backup(url) as repo:
            _backup(repo, partial)
        try:
            if os.path.isdir(target):
                os.rmdir(target)  # (empty, checked above)
            os.rename(partial, target)
        except OSError as exc:  # another backup into the same target finished first
            raise click.UsageError(
                f"the backup target {target} exists and is not empty (another backup "
                "wrote it meanwhile); nothing of this backup was kept"
            ) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    say(f"backup of {url} written to {target}", quiet=quiet)


class RestoreLeftoverError(errors.StorageError):
    """A ``<store>.replaced`` left by an earlier restore is still beside the store: a
    restore never deletes it without being told (it is the store the earlier restore
    replaced)."""


def _refuse_target(scheme: str, path: str) -> str | None:
    """Refuse a restore target that is not a store of ``scheme`` (or nothing, or an
    empty directory), before anything is changed: restore deletes what is there. Returns
    the engine found at ``path`` (``scheme``), or None for a new or empty target.

    Raises:
        NotSupportedError: an LMDB store in a single file (``subdir=false``).
        NoStoreError: a file, or a non-empty directory holding no store of ``scheme``
            (another engine's store, a folder of stores, anything else).
    """
    found = engine_at(path)
    if os.path.isdir(path):
        if not os.listdir(path):
            return None
        if found == scheme:
            return found
        what = (
            f"is a non-empty directory that holds no {scheme} store"
            if found is None
            else f"holds a {found} store, not a {scheme} one"
        )
        raise NoStoreError(
            f"cannot restore into {path}: it {what}, and restore replaces everything at "
            "the target (a mistyped URL, a folder of stores?). Restore into a "
            f"{scheme} store, a new path or an empty directory; nothing was changed",
            backend=scheme,
            path=path,
        )
    if not os.path.lexists(path):
        return None
    if scheme == "lmdb" and found == "lmdb":
        raise errors.NotSupportedError(
            f"restore writes a store directory; the LMDB store at {path} is a single file "
            "(subdir=false): restore the backup to a directory, or `aurora-storage copy` "
            "it into the store",
            backend=scheme,
            path=path,
        )
    what = "an LMDB store in a single file" if found == "lmdb" else "a file"
    raise NoStoreError(
        f"cannot restore into {path}: it is {what}, not a {scheme} store directory. "
        "Restore into a store directory, a new path or an empty directory; nothing was "
        "changed",
        backend=scheme,
        path=path,
    )


def _refuse_leftovers(path: str) -> None:
    """Refuse a target beside which an earlier restore left ``<path>.replaced`` (the
    store it replaced, never deleted without a word), or, when the target is missing,
    both copies of a restore interrupted between its renames.

    Raises:
        InterruptedRestoreError, RestoreLeftoverError: what is where, how to go on.
    """
    from ._common import REPLACED, InterruptedRestoreError, interrupted_restore

    old = path + REPLACED
    if not os.path.lexists(old):
        return
    interrupted = interrupted_restore(path)
    if interrupted is not None:
        raise InterruptedRestoreError(interrupted, path=path)
    raise RestoreLeftoverError(
        f"cannot restore into {path}: {old} is left from an earlier restore and holds the "
        f"store {path} held before it (that restore was stopped before deleting it, or "
        "another process made a new store at the path meanwhile). Check it, then delete "
        "it or move it away, and run the restore again; nothing was changed",
        path=path,
    )


def _live_source_advice(scheme: str, source: str) -> str:
    return (
        f"{source} is a live store, not a backup: a copy of its files taken while it "
        f"changes is not consistent. Back it up with `aurora-storage backup "
        f"{scheme}://{source} DIR` (a RocksDB store being written: "
        "repo.checkpoint(path) inside the writing process) and restore that backup; "
        "nothing was changed"
    )


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.argument("url")
@click.option("--yes", "-y", is_flag=True, help="Replace an existing store without asking.")
@_quiet_option
def restore(directory: str, url: str, yes: bool, quiet: bool) -> None:
    """Restore a backup DIRECTORY as the store at URL (same engine). An existing store
    at URL is replaced, after confirmation; a path holding anything else (another
    engine's store, a non-empty folder that is no store) is refused (exit 4). A store
    another process has open is refused (exit 3) and left as it is: stop the
    application first. A URL naming a symbolic link restores into the directory it
    points to.

    \b
    Example:
      aurora-storage restore /backups/events-2026-12-01 rocksdb:///var/data/events
    """
    from ..config import URL
    from ._common import RESTORING, held_by_others, store_path

    parsed = URL.parse(url)
    given = store_path(parsed)
    if given is None:
        raise click.UsageError(
            f"restore writes a store directory; {parsed.scheme}:// has none (use import/copy)"
        )
    # Every spelling of one directory names one store (docs/concepts/urls.md): a link
    # is followed, and the directory it points to is replaced; the link stays.
    path = os.path.realpath(given)
    source = os.path.realpath(directory)
    if source == path:
        raise click.UsageError(f"{directory} is the store at {url} itself; nothing to restore")
    _refuse_leftovers(path)
    found = _refuse_target(parsed.scheme, path)
    engine = engine_at(source)
    if engine != parsed.scheme:
        raise NoStoreError(
            f"{directory} holds {'no store' if engine is None else 'a ' + engine + ' store'}, "
            f"not a {parsed.scheme} backup",
            path=directory,
        )
    live = functools.partial(
        held_by_others,
        parsed.scheme,
        path,
        doing=f"restore over {path}",
        advice="A process using the store keeps its old files (its writes would be lost, "
        "or mixed into the restored store): stop it, then restore again. Nothing was "
        "changed",
    )
    in_use = functools.partial(
        held_by_others,
        parsed.scheme,
        source,
        doing=f"restore from {directory}",
        advice=_live_source_advice(parsed.scheme, source),
    )
    # Refused before the confirmation question, and checked again (then held, keeping
    # new openers out) while the backup is copied and swapped in.
    with in_use(), live():
        pass
    # The backup must open cleanly before anything at the target is touched.
    with open_read(f"{parsed.scheme}://{source}") as check:
        records = sum(check.count(t) for t in check.tenants())
    if found is not None:
        link = "" if given == path else f" (where {given} points)"
        _confirm(
            f"replace the {found} store at {path}{link} with the backup ({records} records)?",
            yes,
        )
    staging = path + RESTORING
    if os.path.lexists(staging):
        say(f"removing {staging}, left by an interrupted restore", quiet=quiet)
    try:
        with in_use(), live():
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging, ignore=shutil.ignore_patterns("LOCK", "lock.mdb"))
            _swap(staging, path, directory)
    except BaseException:
        # The copy is of the backup, which is still there: never left behind.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with open_read(url) as repo:
        got = sum(repo.count(t) for t in repo.tenants())
    say(f"restored {got} records into {path}", quiet=quiet)


def _swap(staging: str, path: str, directory: str) -> None:
    """Put the copy of the backup at ``staging`` in the place of ``path`` (two renames:
    the store aside to ``<path>.replaced``, the copy in), then delete the old store."""
    from ._common import REPLACED

    if not os.path.exists(path):
        os.rename(staging, path)
        return
    old = path + REPLACED
    os.rename(path, old)
    try:
        os.rename(staging, path)
    except OSError as exc:
        # The locks held lie on the files just moved away: a process opening the path
        # in between made a new store there. Nothing is deleted but the copy of the
        # backup (the backup itself is unchanged).
        raise errors.StoreLockedError(
            f"cannot restore over {path}: another process created a new store there while "
            f"the backup was being swapped in. The store that was there is now {old}, the "
            f"new one {path}; the backup {directory} is unchanged, and nothing else was "
            f"deleted. Stop that process, decide which store to keep, and move {old} away "
            "before running restore again (restore refuses while it is there)",
            path=path,
        ) from exc
    try:
        shutil.rmtree(old)
    except OSError as exc:
        say(
            f"warning: the backup is restored, but {old} (the store it replaced) could not "
            f"be deleted: {exc.strerror or exc}; delete it yourself"
        )
