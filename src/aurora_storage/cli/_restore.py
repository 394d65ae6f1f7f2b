"""``aurora-storage restore``: a backup swapped in for a store - refusing, before
anything changes, a target that is not a store of the backup's engine, a store that
another process has open, or one another restore is restoring into.

A backup is read before ``restore`` touches the target (every record, checksums on: the
check ``verify`` makes, :func:`._backup._check_backup`): one written without the check
(``--no-verify``, older versions, a library checkpoint) or damaged since would otherwise
replace a store that may be intact with its damage.

The backup is copied beside the target (``<path>.restoring``, its locks held, see
:class:`_RestoreLocks`) and swapped in by two renames (the old store aside to
``<path>.replaced``, then deleted: :func:`_swap`). Like ``backup``, restore needs no
codec: a store whose codec only the application registered opens with a stand-in that
leaves values undecoded (:func:`._backup._opened`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shlex
import shutil
from typing import Any

import click

from .. import errors
from .._stores import MARKER_NAME
from ..config import URL
from ._app import _confirm, _quiet_option, cli
from ._backup import _check_backup, _name_damage, _opened, _unopened
from ._common import (
    NoStoreError,
    engine_at,
    open_read,
    parse_url,
    say,
    shell_url,
    warn,
)

__all__ = ["restore"]


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
        ForeignStoreError: a RocksDB store another program wrote (the rule every open
            follows, see ``aurora_storage_rocksdb._foreign``): restore would delete it.
        ConfigurationError: a RocksDB store without a marker that no look inside could
            tell is ours.
    """
    found = engine_at(path)
    if os.path.isdir(path):
        if not os.listdir(path):
            return None
        if found == scheme:
            if scheme == "rocksdb" and not os.path.exists(os.path.join(path, MARKER_NAME)):
                # Not necessarily ours (the TypeScript package's store at the same path):
                # an open refuses it, and restore, which deletes it, must too.
                from aurora_storage_rocksdb._foreign import refuse_replacing

                refuse_replacing(path)
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
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            what = "a symbolic link loop (following it leads back to it)"
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
    from ._common import REPLACED, RESTORING, InterruptedRestoreError, interrupted_restore

    old = path + REPLACED
    if not os.path.lexists(old):
        return
    interrupted = interrupted_restore(path)
    if interrupted is not None:
        raise InterruptedRestoreError(interrupted, path=path)
    copy = path + RESTORING
    also = (
        f" {copy} is there too: a copy of a backup that was not swapped in (maybe "
        "incomplete); delete it, or check whether it is the store you want."
        if os.path.lexists(copy)
        else ""
    )
    raise RestoreLeftoverError(
        f"cannot restore into {path}: {old} is left from an earlier restore and holds the "
        f"store {path} held before it (that restore was stopped before deleting it, or "
        "another process made a new store at the path meanwhile)."
        f"{also} Check it, then delete it or move it away, and run the restore again; "
        "nothing was changed",
        path=path,
    )


def _live_source_advice(scheme: str, source: str) -> str:
    return (
        f"{source} is a live store, not a backup: a copy of its files taken while it "
        f"changes is not consistent. Back it up with `aurora-storage backup "
        f"{shell_url(scheme, source)} DIR` (a RocksDB store being written: "
        "repo.checkpoint(path) inside the writing process) and restore that backup; "
        "nothing was changed"
    )


def _restore_damage_error(
    scheme: str, source: str, path: str, report: dict[str, Any], *, again: str, found: bool
) -> errors.CorruptionError:
    """Name each problem found in the backup at ``source`` on a ``warning:`` line, and
    return the error that ends a restore into ``path`` (``found``: a store is there)
    before anything there changed: which files of the backup hold the damage, and what
    to do instead (``again``: the restore's arguments, for ``--no-verify``)."""
    files, what_found = _name_damage(scheme, source, report)
    if report.get("opened", True):
        # (Quoted as a URL and for the shell: the path may hold '%', '#' or spaces.)
        backup = shell_url(scheme, source)
        todo = (
            "Restore an earlier backup; or save what still reads from this one with "
            f"`aurora-storage export --salvage {backup} -o FILE` and import that "
            "file into a new store; or, knowing that it is damaged, restore it anyway "
            f"with `aurora-storage restore --no-verify {again}`"
        )
        what = f"reading the backup {source} back (every record, checksums on) found {what_found}"
    else:
        # Neither a salvage of it nor --no-verify helps: nothing reads it.
        todo = (
            "Restore an earlier backup, or save what still reads from the store the "
            "backup was made from with `aurora-storage export --salvage URL -o FILE` and "
            "import that file into a new store"
        )
        what = f"the backup {source} cannot be opened ({what_found})"
    kept = f"The store at {path} is unchanged" if found else f"Nothing was written at {path}"
    return errors.CorruptionError(
        f'nothing was restored: {what}. {kept}. {todo} (docs/operations.md, "Backup and restore")',
        backend=scheme,
        path=files[0] if files else source,
    )


def _count_unchecked(scheme: str, source: str, path: str, *, again: str, found: bool) -> int | None:
    """``restore --no-verify``: the backup at ``source`` must open, as before the check
    existed; its records are counted for the question. Returns the count, or None when
    counting met damage (said on a ``warning:`` line: restored anyway, as asked).

    Raises:
        CorruptionError: the backup is too damaged to open; nothing was restored.
    """
    try:
        repo = _opened(open_read, URL(scheme, source).render(hide_secrets=False), tell=False)
    except errors.CorruptionError as exc:
        raise _restore_damage_error(
            scheme, source, path, _unopened(exc), again=again, found=found
        ) from exc
    with repo:
        try:
            return int(sum(repo.count(t) for t in repo.tenants()))
        except errors.CorruptionError as exc:
            warn(f"the backup {source} is damaged ({exc}); restoring it anyway (--no-verify)")
            return None


def _count_restored(url: str, *, verified: bool) -> int | None:
    """The records of the store restored at ``url``; None when counting met damage (a
    backup restored with ``--no-verify`` brought it), said on a ``warning:`` line: the
    restore is done, as asked."""
    try:
        with _opened(open_read, url, tell=False) as repo:
            return int(sum(repo.count(t) for t in repo.tenants()))
    except errors.CorruptionError as exc:
        was = "" if verified else ", as the backup was"
        warn(
            f"the restored store is damaged{was} ({exc}); check it with "
            f"`aurora-storage verify {shlex.quote(url)}`"
        )
        return None


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.argument("url")
@click.option("--yes", "-y", is_flag=True, help="Replace an existing store without asking.")
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Read every record of the backup, checksums on, before anything at URL is "
    "touched (exit 5 on damage, nothing restored).",
)
@_quiet_option
def restore(directory: str, url: str, yes: bool, verify: bool, quiet: bool) -> None:
    """Restore a backup DIRECTORY as the store at URL (same engine). An existing store
    at URL is replaced, after confirmation; a path holding anything else (another
    engine's store, a non-empty folder that is no store, a RocksDB store another
    program wrote) is refused (exit 4), also with --yes. A store
    another process has open, or that another restore is restoring into, is refused
    (exit 3) and left as it is: stop the application first. A URL naming a symbolic
    link restores into the directory it points to.

    The backup is read first (every record, checksums on, as `verify` does), before
    anything at URL is touched: a damaged backup is refused (exit 5), its damaged
    records and files named, and the store at URL left as it was. --no-verify skips
    the check, which reads the whole backup (see docs/operations.md for its cost).

    \b
    Example:
      aurora-storage restore /backups/events-2026-12-01 rocksdb:///var/data/events
    """
    from ._common import RESTORING, held_by_others, store_path

    parsed = parse_url(url)
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
    if os.path.commonpath([source, path]) == source or os.path.commonpath([source, path]) == path:
        # Inside the backup, the restore would write into the backup (and copy its own
        # partial copy); around it, it would replace the folder holding the backup.
        raise click.UsageError(
            f"{url} is inside the backup {directory}, or holds it; restore to a path "
            "outside it; nothing was changed"
        )
    staging = path + RESTORING
    locks = _RestoreLocks(parsed.scheme, path, staging)
    locks.refuse_running()
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
        advice=_LIVE_TARGET_ADVICE,
    )
    in_use = functools.partial(
        held_by_others,
        parsed.scheme,
        source,
        doing=f"restore from {directory}",
        advice=_live_source_advice(parsed.scheme, source),
    )
    # Refused before the confirmation question; the source is checked again (then held,
    # keeping new openers out) while the backup is copied, and the target is locked
    # from before the copy until the swap is done (see _RestoreLocks).
    with in_use(), live():
        pass
    # The backup is read before anything at the target is touched, and before the
    # question: a damaged backup would replace a store that may be intact with its
    # damage. (A URL built from the path quoted: '%', '#', '?' or a tab in a directory's
    # name would otherwise name another store, or be refused as a URL the user never
    # wrote.)
    records: int | None
    decoded = True
    again = f"{shlex.quote(directory)} {shlex.quote(url)}"
    if verify:
        report = _check_backup(parsed.scheme, source, quiet=quiet, own=False)
        if not report["ok"]:
            raise _restore_damage_error(
                parsed.scheme, source, path, report, again=again, found=found is not None
            )
        records = report["records"]
        decoded = report.get("decoded") is not False
    else:
        records = _count_unchecked(
            parsed.scheme, source, path, again=again, found=found is not None
        )
    if found is not None:
        link = "" if given == path else f" (where {given} points)"
        held = "its records not counted: it is damaged" if records is None else f"{records} records"
        _confirm(f"replace the {found} store at {path}{link} with the backup ({held})?", yes)
    try:
        with in_use():
            locks.start(lock_target=found is not None, quiet=quiet)
            _copy_checked(source, staging, path)
            _swap(staging, path, directory)
    except BaseException:
        # The copy is of the backup, which is still there: never left behind (but
        # another restore's copy is never touched: only one this run made).
        if locks.made_staging:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        locks.release()
    got = _count_restored(url, verified=verify)
    what = "the backup" if got is None else f"{got} records"
    checked = "backup checked" if verify else "backup not checked: --no-verify"
    if verify and not decoded:
        checked += ", its values not decoded"
    say(f"restored {what} into {path} ({checked})", quiet=quiet)


_LIVE_TARGET_ADVICE = (
    "A process using the store keeps its old files (its writes would be lost, or mixed "
    "into the restored store): stop it, then restore again. Nothing was changed"
)

#: The lock files restore takes in the target store and in its copy of the backup, per
#: engine, and how: ``posix`` RocksDB's own lock (a whole-file fcntl write lock on
#: ``LOCK``: a writer's open fails with StoreLockedError), ``flock`` the library's LMDB
#: open record taken exclusively (an opener waits for it, then finds the restored store
#: and opens that), ``create`` only created (the LMDB coordination gate: a read-only
#: opener coordinates only where it exists).
_RESTORE_LOCKS = {
    "rocksdb": (("LOCK", "posix"),),
    "lmdb": (("aurora-open.lock", "flock"), ("aurora-grow.lock", "create")),
}


def _take_lock(file: str, how: str, *, create: bool) -> int | None:
    """Open ``file`` (creating it when ``create``) and take the lock ``how`` names
    without waiting (``lmdb``: liblmdb's fcntl lock on the first byte of ``lock.mdb``).
    Returns the descriptor holding it, or None when the file is missing and not
    ``create``.

    Raises:
        BlockingIOError: another process holds a conflicting lock.
        OSError: the file cannot be opened or created.
    """
    try:
        fd = os.open(file, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        if how == "posix":
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif how == "lmdb":
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        elif how == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise BlockingIOError(exc.errno, exc.strerror, file) from exc
    return fd


class _RestoreLocks:
    """What keeps every other process out of a restore's way, from before the copy
    until the copy of the backup is in place.

    * The target store: the engine's own lock (see :data:`_RESTORE_LOCKS`; created if
      absent - a restored copy that was only read has none), and for LMDB liblmdb's
      lock on ``lock.mdb`` when there is one. A writer that would open the old store
      during the copy and keep it open over the swap (writing into the restored
      directory at its close, or using the new data file with the old lock files) is
      refused, or waits and then opens the restored store.
    * The copy, ``<path>.restoring``: the same lock files, made and locked before
      anything is copied into it. After the swap they are the restored store's, still
      held, so nobody opens the restored store before the restore is done; and a
      ``<path>.restoring`` whose lock is held belongs to a restore that runs: another
      restore into the same target is refused instead of deleting it as left by an
      interrupted restore.
    * The folder holding the target: an exclusive ``flock`` while the copy is checked,
      removed and made again, so two restores never both take one for a leftover.
    """

    def __init__(self, scheme: str, path: str, staging: str) -> None:
        self.scheme = scheme
        self.path = path
        self.staging = staging
        self.made_staging = False
        self._fds: list[int] = []

    def _running_error(self) -> errors.StoreLockedError:
        return errors.StoreLockedError(
            f"cannot restore into {self.path}: another restore into it is running (it "
            f"holds {self.staging}). Wait for it to finish, check the store it leaves, and "
            "run this restore again if it is still wanted; nothing was changed",
            backend=self.scheme,
            path=self.path,
        )

    def running(self) -> bool:
        """Whether a restore that runs holds ``<path>.restoring`` (its lock is held)."""
        for name, how in _RESTORE_LOCKS[self.scheme]:
            if how == "create":
                continue
            try:
                fd = _take_lock(os.path.join(self.staging, name), how, create=False)
            except BlockingIOError:
                return True
            except OSError:
                continue
            if fd is not None:
                # (This process holds no lock on that file: closing drops only the
                # probe's.)
                os.close(fd)
        return False

    def refuse_running(self) -> None:
        """Refuse a target another restore is restoring into.

        Raises:
            StoreLockedError: it names that restore's copy.
        """
        if self.running():
            raise self._running_error()

    def _hold(self, directory: str, *, target: bool) -> None:
        names = list(_RESTORE_LOCKS[self.scheme])
        if self.scheme == "lmdb" and target:
            names.append(("lock.mdb", "lmdb"))  # a process using liblmdb directly
        for name, how in names:
            file = os.path.join(directory, name)
            try:
                fd = _take_lock(file, how, create=how != "lmdb")
            except BlockingIOError as exc:
                if self.running():
                    raise self._running_error() from exc
                raise errors.StoreLockedError(
                    f"cannot restore over {self.path}: another process has the "
                    f"{self.scheme} store at {self.path} open ({name} is locked). "
                    + _LIVE_TARGET_ADVICE,
                    backend=self.scheme,
                    path=self.path,
                ) from exc
            except OSError as exc:
                raise errors.StorageError(
                    f"cannot restore over {self.path}: cannot open {file} to lock the "
                    f"store: {exc.strerror or exc}; nothing was changed",
                    backend=self.scheme,
                    path=self.path,
                ) from exc
            if fd is not None:
                self._fds.append(fd)

    def start(self, *, lock_target: bool, quiet: bool) -> None:
        """Lock the target store (``lock_target``: there is one), remove a copy an
        interrupted restore left, and make ``<path>.restoring`` with its locks held.

        Raises:
            StoreLockedError: another process has the store open, or another restore
                runs into it; nothing was changed.
            StorageError: a lock file cannot be made.
        """
        parent = os.path.dirname(self.staging)
        folder = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            self.refuse_running()
            if lock_target:
                self._hold(self.path, target=True)
            if os.path.lexists(self.staging):
                say(f"removing {self.staging}, left by an interrupted restore", quiet=quiet)
                shutil.rmtree(self.staging, ignore_errors=True)
            try:
                os.mkdir(self.staging)
            except OSError as exc:
                raise errors.StorageError(
                    f"cannot restore into {self.path}: the copy's folder {self.staging} "
                    f"cannot be made ({exc.strerror or exc}): the folder holding the "
                    "target must be writable; nothing was changed",
                    path=self.path,
                ) from exc
            self.made_staging = True
            self._hold(self.staging, target=False)
        finally:
            os.close(folder)  # (drops the flock)

    def release(self) -> None:
        """Let other processes in (the restored store is in place, or nothing changed)."""
        fds, self._fds = self._fds, []
        for fd in fds:
            # flock locks: unlocked explicitly, so a child that inherited the
            # descriptor cannot keep them; fcntl locks go with the close.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _copy_checked(source: str, staging: str, path: str) -> None:
    """:func:`_copy`, its failures as typed errors naming the file.

    Raises:
        StorageFullError: no space left for the copy.
        StorageError: a file of the backup could not be copied.
    """
    try:
        _copy(source, staging)
    except shutil.Error as exc:
        problems = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        what = "; ".join(f"{p[0]}: {p[2]}" for p in problems[:3]) or str(exc)
        full = any("No space left" in str(p[2]) for p in problems)
        cls = errors.StorageFullError if full else errors.StorageError
        raise cls(
            f"cannot restore {source} into {path}: copying the backup failed ({what}). "
            f"The store at {path} is unchanged and the partial copy was removed; nothing "
            "was changed",
            path=path,
        ) from exc
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        cls = errors.StorageFullError if full else errors.StorageError
        raise cls(
            f"cannot restore {source} into {path}: copying the backup failed "
            f"({exc.filename or source}: {exc.strerror or exc}). The store at {path} is "
            "unchanged and the partial copy was removed; nothing was changed",
            path=path,
        ) from exc


def _copy(source: str, staging: str) -> None:
    """Copy the backup at ``source`` into ``staging`` (made, holding restore's lock
    files): the backup's own lock files are not copied."""
    shutil.copytree(
        source,
        staging,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("LOCK", "lock.mdb", *_LMDB_LOCK_FILES),
    )


#: The LMDB library's coordination files: a copy of them is never a store's (the
#: restore makes its own, see _RESTORE_LOCKS).
_LMDB_LOCK_FILES = ("aurora-open.lock", "aurora-grow.lock", "aurora-create.lock")


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
            f"cannot restore over {path}: another process created a new store (or other "
            "files) there while the backup was being swapped in. The store that was there "
            f"is now {old}, the new one {path}; the backup {directory} is unchanged, and "
            "nothing else was deleted. Stop that process, decide which store to keep, and "
            f"move {old} away before running restore again (restore refuses while it is "
            "there)",
            path=path,
        ) from exc
    try:
        shutil.rmtree(old)
    except OSError as exc:
        say(
            f"warning: the backup is restored, but {old} (the store it replaced) could not "
            f"be deleted: {exc.strerror or exc}; delete it yourself"
        )
