"""What every file-based engine shares about its store on disk.

* **One live handle per store per process.** :data:`open_stores` maps a store's identity
  - the ``(st_dev, st_ino)`` of its path after symlinks are resolved, so ``a/../b``,
  ``b/``, a symlink to ``b`` and a bind mount of ``b`` are one store - to the one engine
  handle open on it. A second open of the same store shares that handle (reference
  counted; the engine closes when its last user closes); a second open with different
  options raises :class:`~aurora_storage.errors.ConfigurationError` naming them. Two
  engine handles on one store break both engines we ship: RocksDB's in-process lock
  table does not stop a second handle reached through another spelling, and the two
  handles then overwrite each other's table files; LMDB's ``fcntl`` locks are per
  process, so a second environment in one process silently breaks reader tracking.
* **A store knows it was initialised.** :func:`write_marker` leaves a small file beside
  the engine's files when a store is created (see :func:`marker_path`). A store whose
  marker exists but whose engine shows no metadata record lost its data (a truncated
  MANIFEST, a deleted data file): the repository reports it as
  :class:`~aurora_storage.errors.CorruptionError` instead of initialising it again.
* **No store is created beside a restore's copies**: :func:`refuse_beside_a_restore`
  refuses to create one at a path beside which ``aurora-storage restore`` left (or is
  writing) ``<path>.replaced`` or ``<path>.restoring``.
* **Paths that are refused leave nothing behind**: :func:`plan_store_dir` checks a path
  before anything is created and says which directories an open will create, so a failed
  open can remove exactly those (:func:`remove_created`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import shlex
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from .errors import (
    ConfigurationError,
    CorruptionError,
    InterruptedRestoreError,
    StorageError,
    StorageFullError,
)

__all__ = [
    "MARKER_NAME",
    "StoreHandles",
    "check_marker_backend",
    "config_signature",
    "create_store_dir",
    "marker_path",
    "open_stores",
    "plan_store_dir",
    "read_marker",
    "refuse_beside_a_restore",
    "remove_created",
    "restore_leftovers",
    "store_identity",
    "write_marker",
]

#: File name of the marker a store directory holds once the store is initialised.
MARKER_NAME = "aurora-store.json"

H = TypeVar("H")


def store_identity(path: str) -> tuple[int, int] | None:
    """The identity of an existing store path: ``(st_dev, st_ino)`` of what it names
    after following symlinks, or ``None`` if nothing is there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def config_signature(config: Any, *, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """A frozen config dataclass as ``{option: value}``, without the fields in ``ignore``
    (the path, and options that only matter at creation such as ``create_if_missing``),
    for :meth:`StoreHandles.acquire` to compare two opens of one store."""
    skip = {"path", *ignore}
    return {
        f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in skip
    }


@dataclass(slots=True)
class _Entry:
    handle: Any
    options: dict[str, Any]
    path: str
    users: int


class StoreHandles:
    """The process-wide table of open stores (one per process: :data:`open_stores`).

    An engine's ``open`` calls :meth:`acquire` with a function that really opens the
    engine; its ``close`` calls :meth:`release` with a function that really closes it.
    Opening and the last close of a store run under one lock, so a store is never
    opened twice nor opened while its last close is still releasing the engine's locks.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_identity: dict[tuple[int, int], _Entry] = {}
        self._by_handle: dict[int, tuple[int, int]] = {}

    def acquire(
        self,
        path: str,
        options: Mapping[str, Any],
        opener: Callable[[], H],
        *,
        backend: str,
    ) -> H:
        """The live handle of the store at ``path``: the one already open in this
        process (one more user), or a new one from ``opener()``.

        Args:
            path: the store's path (any spelling).
            options: the options that must agree between two opens of one store
                (see :func:`config_signature`).
            opener: opens the engine; called under the table's lock, at most once.
            backend: the scheme, for messages.

        Raises:
            ConfigurationError: the store is already open in this process with other
                options (the message names each one and both values).
            Anything ``opener`` raises.
        """
        with self._lock:
            ident = store_identity(path)
            entry = self._by_identity.get(ident) if ident is not None else None
            if entry is not None:
                diff = {
                    k: (entry.options.get(k), v)
                    for k, v in options.items()
                    if entry.options.get(k) != v
                }
                if diff:
                    named = "; ".join(
                        f"{k}={new!r} (open: {old!r})" for k, (old, new) in diff.items()
                    )
                    raise ConfigurationError(
                        f"the {backend} store {path} is already open in this process "
                        f"(as {entry.path}) with other options: {named}. A store has one "
                        "live handle per process: open it with the same options to share "
                        "that handle, or close the other repository first",
                        backend=backend,
                        path=path,
                    )
                entry.users += 1
                handle: H = entry.handle
                return handle
            handle = opener()
            ident = store_identity(path)
            if ident is not None:
                self._by_identity[ident] = _Entry(handle, dict(options), path, 1)
                self._by_handle[id(handle)] = ident
            return handle

    def release(self, handle: object, closer: Callable[[], None]) -> bool:
        """One user of ``handle`` is done: call ``closer()`` (under the table's lock)
        if it was the last one. Returns whether ``closer`` ran. A handle the table does
        not know (opened before it was registered, or already fully released) is
        closed at once."""
        with self._lock:
            ident = self._by_handle.get(id(handle))
            entry = self._by_identity.get(ident) if ident is not None else None
            if entry is not None and entry.handle is handle:
                entry.users -= 1
                if entry.users > 0:
                    return False
                del self._by_identity[ident]  # type: ignore[arg-type]  # ident is set here
                del self._by_handle[id(handle)]
            closer()
            return True

    def users(self, path: str) -> int:
        """How many users share the store at ``path`` in this process (0: not open)."""
        with self._lock:
            ident = store_identity(path)
            entry = self._by_identity.get(ident) if ident is not None else None
            return entry.users if entry is not None else 0

    def _forget_all(self) -> None:
        # In a fork() child: the parent's handles are not the child's to share.
        self._lock = threading.RLock()
        self._by_identity.clear()
        self._by_handle.clear()


#: The table of this process.
open_stores = StoreHandles()

os.register_at_fork(after_in_child=open_stores._forget_all)


# ---------------------------------------------------------------------- marker


def marker_path(store_path: str) -> str:
    """Where the marker of the store at ``store_path`` lives: inside the store directory,
    or beside a single-file store as ``<file>-aurora-store.json``."""
    if os.path.isdir(store_path):
        return os.path.join(store_path, MARKER_NAME)
    return f"{store_path}-{MARKER_NAME}"


def read_marker(path: str) -> dict[str, Any] | None:
    """The marker at ``path`` (from :func:`marker_path`), or ``None`` if there is none.

    Raises:
        CorruptionError: the marker exists but cannot be read or parsed.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptionError(f"cannot read the store marker {path}: {exc}", path=path) from exc
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise CorruptionError(
            f"the store marker {path} is damaged ({exc}); the store it belongs to was "
            "initialised, check its engine files",
            path=path,
        ) from exc
    return data


def check_marker_backend(marker: str | None, *, backend: str, store_path: str) -> None:
    """Refuse to open another engine's store: the marker at ``marker`` (if any, and
    readable) names the engine that initialised the store.

    File engines call this before judging their own files missing as damage: an LMDB
    store opened with a ``rocksdb://`` URL has a marker and no ``CURRENT`` file, which
    is a wrong URL, not a damaged store to restore from a backup.

    Args:
        marker: the marker's path (:func:`marker_path`), or ``None`` for none.
        backend: the scheme of the engine opening the store (``"rocksdb"``).
        store_path: the store's path, for the message.

    Raises:
        ConfigurationError: the marker names another engine; the message says which and
            the URL scheme to use. Nothing is written.
    """
    if marker is None:
        return
    try:
        info = read_marker(marker)
    except CorruptionError:
        return  # a damaged marker: the engine's own checks tell what is wrong
    found = info.get("backend") if info is not None else None
    if isinstance(found, str) and found and found != backend:
        raise ConfigurationError(
            f"{store_path} holds a {found} store (its marker {marker} says so), not a "
            f"{backend} one; open it with {found}://{store_path}",
            backend=backend,
            path=store_path,
        )


def write_marker(path: str, info: Mapping[str, Any]) -> None:
    """Write the marker at ``path`` durably: a temporary file, fsync, rename, fsync of
    the directory - so after a crash it is either absent or whole.

    Safe to call from several threads and processes at once (the first opens of one
    store): each writer has its own temporary file (process, thread and a random part
    in its name, created exclusively), so one writer never renames or removes
    another's, and the rename is atomic: the marker is one writer's whole text. The
    callers write the same facts (the store's recorded backend, format and codec), so
    which rename lands last does not matter.

    Args:
        path: where the marker goes (:func:`marker_path`).
        info: what it records (a JSON object).

    Raises:
        StorageFullError: no space left for it.
        StorageError: another I/O failure.
    """
    tmp = f"{path}.tmp{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, orjson.dumps(dict(info), option=orjson.OPT_INDENT_2) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(
                f"no space left to write the store marker {path}; free some space and open "
                "the store again",
                path=path,
            ) from exc
        raise StorageError(f"cannot write the store marker {path}: {exc}", path=path) from exc


# ---------------------------------------------------------------------- paths


def plan_store_dir(path: str, *, backend: str, create: bool = True) -> list[str]:
    """Check that ``path`` can be (or is) a store directory, before anything is created.

    Returns the directories an open would create, outermost first (empty when ``path``
    exists), so a failed open removes exactly those with :func:`remove_created`. A
    relative ``path`` (``mykv:relative/path`` through
    :func:`~aurora_storage.config.local_path`) is planned relative to the working
    directory, and the entries returned are relative too, spelled as in ``path``.

    Raises:
        ConfigurationError: ``path`` (or an ancestor) is not a directory, or a missing
            directory cannot be created there (no write permission).
    """
    missing: list[str] = []
    cur = path
    while True:
        try:
            st = os.stat(cur)
        except (FileNotFoundError, NotADirectoryError):
            # Not there (or a file above it): walk up to what exists. A spelling that
            # ends in ".", ".." or "/" names no directory of its own (it is one its
            # parent chain creates or already has), so it is not planned.
            if os.path.basename(cur) not in ("", os.curdir, os.pardir):
                missing.append(cur)
            # The parent of a relative path's first component is the working directory
            # ("" is no path: mkdir("") fails, so "mykv:rel" once could not be created).
            parent = os.path.dirname(cur) or os.curdir
            if parent == cur:
                break
            cur = parent
            continue
        except OSError as exc:
            raise ConfigurationError(
                f"the {backend} store path {path} cannot be used: {exc.strerror} ({cur}); "
                "choose another path",
                backend=backend,
                path=path,
            ) from exc
        if not stat.S_ISDIR(st.st_mode):
            what = "the store path" if cur == path else f"{cur}, on the store path,"
            raise ConfigurationError(
                f"{what} is a file, not a directory; a {backend} store is a directory: "
                f"choose another path than {path}",
                backend=backend,
                path=path,
            )
        if missing and create and not os.access(cur, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"cannot create the {backend} store directory {path}: {cur} is not writable "
                "by this process; choose a writable location or fix the permissions",
                backend=backend,
                path=path,
            )
        break
    missing.reverse()
    return missing


def create_store_dir(path: str, *, backend: str) -> list[str]:
    """Create the store directory ``path`` and any missing ancestors, after the checks
    of :func:`plan_store_dir`. Returns the directories this call created, outermost
    first: one that another process created meanwhile (two processes creating one new
    store at once) is used, not returned.

    Raises:
        ConfigurationError: the path cannot be a directory or cannot be created (the
            message says why); nothing is left behind.
        StorageFullError: no space (or quota) left to create it.
    """
    planned = plan_store_dir(path, backend=backend)
    created: list[str] = []
    try:
        for d in planned:
            try:
                os.mkdir(d)
            except FileExistsError:
                if not os.path.isdir(d):
                    raise
                # Another opener (a process creating the same store) made it since the
                # plan: it is theirs, not ours to remove if this open fails.
                continue
            created.append(d)
    except OSError as exc:
        remove_created(created)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(
                f"no space left to create the {backend} store directory {path}",
                backend=backend,
                path=path,
            ) from exc
        raise ConfigurationError(
            f"cannot create the {backend} store directory {path}: {exc.strerror}; choose "
            "a writable location or fix the permissions",
            backend=backend,
            path=path,
        ) from exc
    return created


def remove_created(created: Iterable[str]) -> None:
    """Remove directories :func:`plan_store_dir` said an open would create (innermost
    first, with anything an engine put in them)."""
    import shutil

    for d in reversed(list(created)):
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------- restores

#: What ``aurora-storage restore`` leaves beside a store's path while it swaps a backup
#: in: the store that was there, moved aside, and the copy of the backup.
REPLACED = ".replaced"
RESTORING = ".restoring"
#: The lock files a running restore holds in ``<path>.restoring`` (RocksDB's ``LOCK``,
#: an fcntl lock; the LMDB open record, a flock).
_RESTORE_HELD = (("LOCK", "fcntl"), ("aurora-open.lock", "flock"))


def restore_running(path: str) -> bool:
    """Whether a restore into ``path`` runs: it holds the lock file in
    ``<path>.restoring`` (``aurora-storage restore`` makes the copy with it)."""
    import fcntl

    for name, how in _RESTORE_HELD:
        try:
            fd = os.open(os.path.join(path + RESTORING, name), os.O_RDWR)
        except OSError:
            continue
        try:
            if how == "fcntl":
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            # (Closing drops the probe's lock; this process holds no other lock on a
            # restore's copy.)
            os.close(fd)
    return False


def restore_leftovers(path: str) -> str | None:
    """What a restore into ``path`` left beside it (``<path>.replaced``,
    ``<path>.restoring``) when there is no store at ``path`` (nothing there, or an
    empty directory): which holds what, and how to finish or undo the restore, in
    commands that fail instead of moving a directory into one at ``path``. None when
    neither is there. A symbolic link at ``path`` that points nowhere now stands for
    its target (a restore through the link swapped the target)."""
    if os.path.islink(path):
        path = os.path.realpath(path)
    old, new = path + REPLACED, path + RESTORING
    has_old, has_new = os.path.isdir(old), os.path.isdir(new)
    if not has_old and not has_new:
        return None
    if restore_running(path):
        return (
            f"no store at {path} yet: a restore into it is running ({new} is its copy of "
            "the backup); wait for it to finish"
        )
    # `test ! -e` first: `mv DIR PATH` moves DIR into PATH when PATH is a directory.
    # Every path quoted for the shell (a space, or a name like "x -o y", would change
    # what the guard tests).
    path_q, old_q, new_q = shlex.quote(path), shlex.quote(old), shlex.quote(new)
    only = f"test ! -e {path_q} && "
    empty = (
        f" ({path} is an empty directory now: remove it first, rmdir {path_q})"
        if os.path.isdir(path)
        else ""
    )
    if has_old and has_new:
        return (
            f"no store at {path}: a restore into it was interrupted between its two "
            f"renames. {old} holds the store that was there before, {new} the whole "
            f"copy of the backup. To finish the restore: {only}mv {new_q} {path_q} && rm -r "
            f"{old_q}; to undo it: {only}mv {old_q} {path_q} && rm -r {new_q}{empty}"
        )
    if has_old:
        return (
            f"no store at {path}: a restore into it was interrupted, and {old} holds the "
            f"store that was there before it. Put it back ({only}mv {old_q} {path_q}), or "
            f"move it away and run the restore again{empty}"
        )
    return (
        f"no store at {path}: a restore into it was interrupted while it copied the "
        f"backup; {new} is that copy, maybe incomplete. Run the restore again (it "
        f"removes {new} first), or delete {new}{empty}"
    )


def refuse_beside_a_restore(path: str, *, backend: str) -> None:
    """Refuse to create a store at ``path`` beside what a restore left (see
    :func:`restore_leftovers`): an empty store there hides the replaced store and the
    backup, and finishing the restore afterwards moves the backup into it. Engines call
    it before creating anything for a store that does not exist.

    Raises:
        InterruptedRestoreError: what is where, how to go on; nothing was created.
    """
    text = restore_leftovers(path)
    if text is not None:
        raise InterruptedRestoreError(
            f"{text}. A new store is not created there", backend=backend, path=path
        )
