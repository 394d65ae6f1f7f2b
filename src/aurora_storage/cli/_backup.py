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
from ._common import NoStoreError, open_read, open_write, say

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
    of a process that no longer runs); a running backup's is left alone."""
    parent, name = os.path.split(target)
    prefix = name + _PARTIAL
    for entry in os.listdir(parent):
        if not entry.startswith(prefix) or not entry[len(prefix) :].isdigit():
            continue
        pid = int(entry[len(prefix) :])
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


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.argument("url")
@click.option("--yes", "-y", is_flag=True, help="Replace an existing store without asking.")
@_quiet_option
def restore(directory: str, url: str, yes: bool, quiet: bool) -> None:
    """Restore a backup DIRECTORY as the store at URL (same engine). An existing store
    at URL is replaced, after confirmation. A store another process has open is
    refused (exit 3) and left as it is: stop the application first.

    \b
    Example:
      aurora-storage restore /backups/events-2026-12-01 rocksdb:///var/data/events
    """
    from ..config import URL
    from ._common import engine_at, held_by_others, store_path

    parsed = URL.parse(url)
    path = store_path(parsed)
    if path is None:
        raise click.UsageError(
            f"restore writes a store directory; {parsed.scheme}:// has none (use import/copy)"
        )
    if os.path.isfile(path):
        raise errors.NotSupportedError(
            f"restore writes a store directory; the store at {path} is a single file "
            "(LMDB subdir=false): restore the backup to a directory, or `aurora-storage "
            "copy` it into the store"
        )
    engine = engine_at(os.path.abspath(directory))
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
    # Refused before the confirmation question, and checked again (then held, keeping
    # new openers out) while the backup is swapped in.
    with live():
        pass
    # The backup must open cleanly before anything at the target is touched.
    with open_read(f"{parsed.scheme}://{os.path.abspath(directory)}") as check:
        records = sum(check.count(t) for t in check.tenants())
    if os.path.exists(path) and os.listdir(path):
        _confirm(f"replace the store at {path} with the backup ({records} records)?", yes)
    staging = path + ".restoring"
    with live():
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(directory, staging, ignore=shutil.ignore_patterns("LOCK", "lock.mdb"))
        if os.path.exists(path):
            old = path + ".replaced"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(path, old)
            try:
                os.rename(staging, path)
            except OSError as exc:
                # The locks held lie on the files just moved away: a process opening
                # the path in between made a new store there. Nothing is deleted.
                raise errors.StoreLockedError(
                    f"cannot restore over {path}: another process created a new store "
                    f"there while the backup was being swapped in. The store that was "
                    f"there is now {old}, the backup {staging}, and the new one {path}; "
                    f"nothing was deleted. Stop that process, move {old} somewhere safe "
                    f"before running restore again (it removes a leftover {old}), then "
                    "decide which to keep",
                    path=path,
                ) from exc
            shutil.rmtree(old)
        else:
            os.rename(staging, path)
    with open_read(url) as repo:
        got = sum(repo.count(t) for t in repo.tenants())
    say(f"restored {got} records into {path}", quiet=quiet)
