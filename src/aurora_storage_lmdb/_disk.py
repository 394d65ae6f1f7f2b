"""The LMDB store's files around the engine: checks before liblmdb maps anything, the
clean-close record, the creation lock, and cleaning up after a refused open.

liblmdb trusts its files and the disk: it maps ``lock.mdb`` after growing it with
``ftruncate`` (a sparse file: on a full filesystem the first touch of a page kills the
process with SIGBUS), and a damaged page of ``data.mdb`` can trip one of its assertions
(SIGABRT). Everything here runs before the engine sees the files, so such damage
becomes a typed error instead of a dead process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

import orjson

from aurora_storage.errors import ConfigurationError, StorageError, StorageFullError

__all__ = [
    "Created",
    "CreationLock",
    "OpenRecord",
    "StoreMoved",
    "alone_with",
    "check_path",
    "disk_nearly_full",
    "lock_file_size",
    "os_error",
    "preallocate",
    "same_file",
]

# liblmdb 0.9 (x86-64): a lock file is two 64-byte header cache lines plus one 64-byte
# line per reader slot (verified against the files it creates).
_LOCK_HEADER = 128
_READER_SLOT = 64
# Below this much free space an EIO from a commit is taken for a full disk: liblmdb
# reports a short write (the disk filled during the write) as EIO.
_NEARLY_FULL = 1 << 20


def lock_file_size(max_readers: int) -> int:
    """The size liblmdb gives a new ``lock.mdb`` with ``max_readers`` slots (bytes)."""
    return _LOCK_HEADER + _READER_SLOT * max_readers


def os_error(exc: OSError, what: str, path: str) -> StorageError:
    """The aurora-storage error for an OSError raised while preparing the store's files
    (the caller chains ``exc``): what to fix, by errno."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(
            f"{what}: the filesystem is full ({exc}); free space and retry",
            backend="lmdb",
            path=path,
        )
    if code == errno.EROFS:
        # Not "open it with read_only=true" alone: that fixes a read, never a write.
        return ConfigurationError(
            f"{what}: it is on a read-only filesystem. To write, choose a path this "
            "process may write (remount the filesystem read-write, or copy the store to a "
            "writable place); an existing store can be read where it is with "
            "read_only=true",
            backend="lmdb",
            path=path,
        )
    if code in (errno.EACCES, errno.EPERM):
        return ConfigurationError(
            f"{what}: {exc.strerror}; choose a path this process may write, or open the "
            "store with read_only=true",
            backend="lmdb",
            path=path,
        )
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return ConfigurationError(
            f"{what}: {exc.strerror} (a file is where a directory is needed, or the "
            "reverse); choose another path",
            backend="lmdb",
            path=path,
        )
    if code == errno.ENAMETOOLONG:
        return ConfigurationError(
            f"{what}: the path is too long for this filesystem; choose a shorter one",
            backend="lmdb",
            path=path,
        )
    return StorageError(f"{what}: {exc}", backend="lmdb", path=path)


def check_path(path: str, *, subdir: bool) -> None:
    """Refuse a store path that cannot work, before anything is created.

    Raises:
        ConfigurationError: a regular file where the store directory should be (or a
            directory where ``subdir=false`` expects the data file).
    """
    if subdir and os.path.exists(path) and not os.path.isdir(path):
        raise ConfigurationError(
            f"{path} is a file, not a directory: an LMDB store is a directory holding "
            "data.mdb and lock.mdb. Choose another path, or open the file itself with "
            "subdir=false",
            backend="lmdb",
            path=path,
        )
    if not subdir and os.path.isdir(path):
        raise ConfigurationError(
            f"{path} is a directory, but subdir=false names the data file itself; "
            "drop subdir=false or name a file",
            backend="lmdb",
            path=path,
        )


def preallocate(path: str, size: int) -> None:
    """Give ``path`` real disk blocks for its first ``size`` bytes (creating it if
    missing), so a later mapping of it never faults for lack of space.

    Raises:
        StorageFullError: the filesystem has no room; ConfigurationError/StorageError
        for other failures (see :func:`os_error`).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise os_error(exc, f"cannot create {path}", path) from exc
    try:
        current = os.fstat(fd).st_size
        if current > size:
            size = current  # never shrink: a live process may map all of it
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                    # No fallocate on this filesystem: write the bytes instead (zeros
                    # only where the file is shorter; existing content is kept).
                    if current < size:
                        os.pwrite(fd, bytes(size - current), current)
                else:
                    raise
    except OSError as exc:
        raise os_error(exc, f"cannot reserve {size} bytes for {path}", path) from exc
    finally:
        os.close(fd)


def lock_file_exclusive(path: str) -> bool:
    """Whether no process has the LMDB environment of lock file ``path`` open (probed
    with the same fcntl lock liblmdb takes on its first byte). A missing file counts as
    exclusive."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError:
        return False
    else:
        # (Closing the descriptor drops the probe lock; this process has no other
        # descriptor of this lock file, since the store is not open here.)
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def alone_with(path: str, *, create: bool, unknown: bool) -> Iterator[bool]:
    """Whether no process has the LMDB environment of lock file ``path`` open, holding
    the same fcntl lock liblmdb takes on its first byte for the block when so: a
    process opening the environment meanwhile waits in liblmdb until the block ends
    (so a check of the data file in the block sees no writer start).

    Args:
        create: create a missing lock file (as the open does right after), so that it
            can be held; without it a missing file counts as unused, unheld.
        unknown: the answer when the lock file cannot be opened (or created) for the
            probe (no write access: another user's store, a read-only filesystem).
    """
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        yield True
        return
    except OSError:
        yield unknown
        return
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            yield False
        else:
            yield True
    finally:
        # (Closing drops the probe lock; this process has no other descriptor of this
        # lock file, since the store is not open here: see LMDBBackend.open.)
        os.close(fd)


def disk_nearly_full(path: str) -> bool:
    """Whether the filesystem holding ``path`` has (almost) no space left for this
    process (root may use the reserved blocks)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize < _NEARLY_FULL


class Created:
    """The files and directories one open() created, removed again if it fails (a
    refused open leaves nothing behind).

    Only an open that holds the store's :class:`CreationLock` notes anything: it alone
    may be creating the store's files, so what did not exist when it looked is its own,
    and no other process can have started using it before the open ends."""

    def __init__(self) -> None:
        self._paths: list[str] = []

    def makedirs(self, path: str) -> None:
        """``os.makedirs(path)``, recording each directory it creates."""
        missing: list[str] = []
        p = os.path.abspath(path)
        while not os.path.exists(p):
            missing.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        try:
            for d in reversed(missing):
                os.mkdir(d)
                self._paths.append(d)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
        except OSError as exc:
            err = os_error(exc, f"cannot create the directory {d}", path)
            if type(err) is StorageError:
                # Any other reason a directory cannot be created there (a special
                # filesystem such as /proc answers ENOENT) is the path's: a
                # ConfigurationError, as docs/concepts/urls.md says and RocksDB raises.
                err = ConfigurationError(
                    f"cannot create the directory {d}: {exc.strerror or exc}; choose a "
                    "writable location",
                    backend="lmdb",
                    path=path,
                )
            raise err from exc

    def made(self, path: str) -> None:
        """Record ``path`` as created by this open (it created the file itself)."""
        self._paths.append(path)

    def note(self, *paths: str) -> list[str]:
        """Of ``paths``, those that do not exist yet; they are removed on failure if
        something creates them meanwhile."""
        new = [p for p in paths if not os.path.lexists(p)]
        self._paths.extend(new)
        return new

    def forget(self) -> None:
        """Forget what was noted without removing it (the paths now name another
        store's files: see :class:`StoreMoved`)."""
        self._paths.clear()

    def remove(self) -> None:
        """Remove what was created, newest first (best effort: a directory someone
        else filled meanwhile stays)."""
        for p in reversed(self._paths):
            with contextlib.suppress(OSError):
                if os.path.isdir(p) and not os.path.islink(p):
                    os.rmdir(p)
                else:
                    os.unlink(p)
        self._paths.clear()


# Descriptors of the exclusive locks this process holds for a moment (creation, the
# coordination gate, growth): a fork() child closes its copies.
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    # The child's copy of a descriptor shares the parent's lock (flock locks belong to
    # the open file description, and only go when every copy is closed or one unlocks
    # it); closing the copy drops the child's reference without releasing the parent's
    # lock, so a child that outlives its parent never keeps other openers waiting.
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


@contextlib.contextmanager
def exclusive(fd: int) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``fd`` for the block (the caller closes ``fd``).

    Fork-safe both ways: the descriptor is noted before the lock is taken, so a child
    forked meanwhile by another thread closes its copy; and the lock is released with
    ``LOCK_UN``, not by closing, because a copy left in a child would otherwise keep it
    held for as long as the child lives (every opener of the store, this process
    included, then waited for it: found by forking while another thread opened)."""
    _HELD.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # (a child that forked inside the block)
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _HELD.discard(fd)


class StoreMoved(Exception):
    """A lock file this open waited for is no longer at its path (a restore moved the
    store it belonged to away and put another in its place): the open starts again."""


def same_file(fd: int, path: str) -> bool:
    """Whether the open file ``fd`` is still the file at ``path`` (same device and
    inode: not deleted, renamed away or replaced since it was opened)."""
    st = os.fstat(fd)
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


class CreationLock:
    """The lock that serialises the creation of one store across processes.

    An exclusive ``flock`` on a small file of the store (``aurora-create.lock`` in the
    store directory, ``<data file>-create`` with ``subdir=false``), taken by an open that
    finds no marker (the store is new, or not finished) and held from its existence
    check until the backend is built: the engine's files made and initialised, the
    plugin's record and the change-log choice written. Another process opening the
    store meanwhile waits, then finds a finished engine store; an open of a store with
    a marker never takes it. A read-only open takes it shared (it only waits for a
    creation in progress).

    The file stays once a store is created (removing a lock file others may be
    waiting on lets two processes hold "the" lock). An open that fails removes it
    with the rest of what it created, still holding it; a waiter that then gets the
    lock of the removed file notices (the path names another file, or none) and
    starts again. The kernel drops the lock of a killed process: the next creator
    finds its half-made files and goes on with them (an empty data file is initialised
    by liblmdb like a missing one).
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def take(
        cls,
        path: str,
        *,
        created: Created | None,
        directory: str,
        shared: bool = False,
    ) -> CreationLock | None:
        """Wait for and take the creation lock at ``path``.

        Args:
            path: the lock file.
            created: where an open that may create the store records what it makes
                (the directory, the lock file); ``None`` for an open that creates
                nothing: it uses the lock file only if it exists.
            directory: the directory holding the lock file (made if ``created``).
            shared: take it shared (a read-only open) instead of exclusive.

        Returns:
            The lock, or ``None`` if an open that creates nothing found no lock file
            (nothing made by this library is being created there).

        Raises:
            StorageFullError, ConfigurationError, StorageError: the directory or the
                lock file cannot be created (see :func:`os_error`).
        """
        while True:
            made = False
            if created is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    return None
            else:
                created.makedirs(directory)
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                    made = True
                except FileExistsError:
                    # (flock needs no write access: another user's lock file will do.)
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except FileNotFoundError:
                        continue  # removed meanwhile by a creator that gave up
                    except OSError as exc:
                        raise os_error(exc, f"cannot open {path}", path) from exc
                except OSError as exc:
                    raise os_error(exc, f"cannot create {path}", path) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                st = os.fstat(fd)
                try:
                    now = os.stat(path)
                except FileNotFoundError:
                    now = None
            except BaseException:
                # (Interrupted while another process holds it: a lock file this open
                # made is not recorded as its own, so a failed open never removes a
                # lock file someone else holds.)
                os.close(fd)
                raise
            if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                if made and created is not None:
                    created.made(path)
                _HELD.add(fd)
                return cls(fd)
            # The file was removed (by the creator that held it and gave up) while this
            # open waited: its lock guards nothing any more.
            os.close(fd)

    def release(self) -> None:
        """Let the next creator (or opener) in. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(fd)
        try:
            # Explicitly: a copy of the descriptor in a child forked meanwhile (by
            # another thread) must not keep the lock held.
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _recorded_lock(raw: bytes) -> tuple[int, int] | None:
    """The lock file identity an in-use record holds (see OpenRecord._note_lock_file)."""
    try:
        recorded = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        return None
    lock = recorded.get("lock") if isinstance(recorded, dict) else None
    if isinstance(lock, list) and len(lock) == 2 and all(type(x) is int for x in lock):
        return (lock[0], lock[1])
    return None


class RecordLost(Exception):
    """Other processes hold the store's data file open, but its open record is missing
    or is not the one they hold: the store's lock files were removed while it is in
    use (see OpenRecord.entering). ``what`` names the evidence."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _unlock_and_close(fd: int) -> None:
    """Release this process's lock on ``fd`` and close it: explicitly, so a copy of the
    descriptor in a child forked while the store was open does not keep the record
    locked (other openers would take the store as in use by someone)."""
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class OpenRecord:
    """Who has the store open, and whether its last user closed it cleanly.

    Each process holds a shared ``flock`` on the record file while the store is open.
    The open and close checks run under the store's coordination lock (the growth
    lock file), so they never interleave. The process that closes last writes the data
    file's identity (device, inode, size, modification and change times) into the
    record; the first to open removes it (so a crash leaves none). A data file that
    does not match the record was not closed cleanly by this library: written after a crash, copied,
    restored or modified by something else.
    """

    def __init__(
        self,
        record_file: str,
        gate_file: str,
        data_file: str,
        *,
        read_only: bool = False,
        lock_file: str | None = None,
    ) -> None:
        self.record_file = record_file
        self.gate_file = gate_file
        self.data_file = data_file
        # liblmdb's lock file (None: opened with lock=false). While the store is in use
        # the record holds the identity of the lock file its first (writing) user found,
        # so a later user can tell that file from one made after it was removed.
        self.lock_file = lock_file
        # A read-only user changes neither the data file nor these files: it creates
        # none of them (read commands never create or change a store), and leaves the
        # record as it found it (the data file's identity still matches it).
        self.read_only = read_only
        self._flags = os.O_RDONLY if read_only else os.O_RDWR | os.O_CREAT
        self._fd: int | None = None
        # A shared flock on the data file, held while the store is open (see _hold_data).
        self._data_fd: int | None = None

    #: Whether the last :meth:`entering` could coordinate with other users (the gate
    #: and record files opened).
    coordinated = False
    #: For an :meth:`entering` that joined other users: the (device, inode) of the lock
    #: file they use, as the first of them recorded it (None: not recorded, e.g. the
    #: first was a read-only user, which writes nothing).
    lock_in_use: tuple[int, int] | None = None

    @contextlib.contextmanager
    def _gate(self) -> Iterator[bool]:
        try:
            fd = os.open(self.gate_file, self._flags, 0o644)
        except OSError:
            yield False  # a read-only directory: no coordination possible
            return
        try:
            with exclusive(fd):
                if not same_file(fd, self.gate_file):
                    raise StoreMoved(self.gate_file)
                yield True
        finally:
            os.close(fd)

    def _identity(self) -> dict[str, int] | None:
        try:
            st = os.stat(self.data_file)
        except OSError:
            return None
        # ctime_ns: a tool that writes into the file can put its mtime back (os.utime),
        # but nothing a user can call sets the inode change time back.
        return {
            "dev": st.st_dev,
            "ino": st.st_ino,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
        }

    @contextlib.contextmanager
    def entering(self) -> Iterator[bool | None]:
        """Register this process as a user of the store. Yields whether the data file
        is known clean: True (closed cleanly, untouched since), False (not known
        clean, and no other process has the store open through this library, so it
        may be checked now if none has it open through liblmdb either), or None
        (another process has it open through this library: it is in use and must not
        be checked from outside the engine). Without coordination (a read-only open
        of a store without the record or gate file, such as a backup copy, or files
        it may not open) the answer is False: not known clean, and whether another
        process has it open is for liblmdb's lock to tell. The body runs the check;
        if it raises, the registration is undone."""
        self.coordinated = False
        with self._gate() as gated:
            if not gated:
                yield False
                return
            try:
                # (Without O_CREAT first: a missing record is only made once no other
                # process is found holding the data file; see _hold_data.)
                fd = os.open(self.record_file, self._flags & ~os.O_CREAT)
            except FileNotFoundError:
                if self._hold_data(probe=True):
                    self._release_data()
                    raise RecordLost(f"its open record {self.record_file} is missing") from None
                try:
                    fd = os.open(self.record_file, self._flags, 0o644)
                except OSError:
                    self._release_data()
                    yield False
                    return
            except OSError:
                yield False
                return
            self.coordinated = True
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    fcntl.flock(fd, fcntl.LOCK_SH)  # others have it open: join them
                    joined = True
                else:
                    joined = False
                # A lock granted after a wait may be on a file that is no longer the
                # store's: `aurora-storage restore` holds it exclusively while it
                # copies a backup and swaps the copy in, and the file this open waited
                # on is then the replaced store's (deleted). Its lock guards nothing.
                if not same_file(fd, self.record_file):
                    raise StoreMoved(self.record_file)
                if joined and not self._hold_data(probe=True):
                    # Nobody holds the data file: what held the record was no user of
                    # the store (`aurora-storage restore`, which holds it exclusively
                    # while it swaps a backup in), and this open may be the first user
                    # (it was refused for the restored store's missing lock file).
                    # (A failed upgrade drops the shared lock on Linux: taken again.)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        fcntl.flock(fd, fcntl.LOCK_SH)
                    else:
                        joined = False
                if joined:
                    self.lock_in_use = _recorded_lock(os.pread(fd, 4096, 0))
                    yield None
                else:
                    if self._hold_data(probe=True):
                        # Others hold the data file, yet nobody held this record: it
                        # was removed (and made anew) while they use the store.
                        raise RecordLost(
                            f"its open record {self.record_file} is not the one they hold "
                            "(it was made anew)"
                        )
                    try:
                        recorded = orjson.loads(os.pread(fd, 4096, 0) or b"null")
                    except orjson.JSONDecodeError:
                        recorded = None
                    known_clean = recorded is not None and recorded == self._identity()
                    yield known_clean
                    if not self.read_only:
                        # In use from now on: a crash must leave no clean record behind.
                        os.ftruncate(fd, 0)
                        self._note_lock_file(fd)
                    elif not known_clean:
                        # A read-only first user: the record is not a clean one (it
                        # changes nothing the next open concludes), but may name the
                        # lock file of users long gone (a read-only last closer, a
                        # SIGKILL, a copy): a writer joining later would compare the
                        # lock file against it and be refused (finding). Record the
                        # lock file this user opens, when it may write the record.
                        self._renote_lock_file()
                    fcntl.flock(fd, fcntl.LOCK_SH)
            except BaseException:
                self._release_data()
                _unlock_and_close(fd)
                raise
            self._fd = fd

    def _hold_data(self, *, probe: bool) -> bool:
        """Take the shared flock on the data file every user holds while the store is
        open; with ``probe``, first tell whether other processes hold it.

        The data file cannot be removed without removing the store, unlike the lock
        files an operator may tidy away: that other processes hold it is what shows a
        missing or new open record (or lock file) was removed under them (finding:
        lock.mdb and aurora-open.lock removed beside a writer let a second writer in,
        and the store was destroyed). flock and liblmdb's fcntl locks are independent
        on Linux; a separate descriptor, opened at open only. Called under the gate.

        Returns:
            Whether ``probe`` found the data file held by other processes (False: not
            probed, or the data file cannot be opened).
        """
        if self._data_fd is not None:
            return False
        try:
            dfd = os.open(self.data_file, os.O_RDONLY)
        except OSError:
            return False  # not made yet (a creation), or not readable: nothing to hold
        try:
            held = False
            if probe:
                # (A process leaving releases the data file before the record, so a
                # record found free with the data file held is no leaving process.)
                try:
                    fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    held = True
            fcntl.flock(dfd, fcntl.LOCK_SH)
        except BaseException:
            os.close(dfd)
            raise
        self._data_fd = dfd
        return held

    def hold_data(self) -> None:
        """Hold the data file from now on if :meth:`entering` could not (it was made
        by this open's engine after it): call once the environment is open."""
        if self._fd is not None:
            self._hold_data(probe=False)

    def _release_data(self) -> None:
        dfd, self._data_fd = self._data_fd, None
        if dfd is not None:
            _unlock_and_close(dfd)

    def _renote_lock_file(self) -> None:
        """A read-only first user's :meth:`_note_lock_file`: through a writable
        descriptor of the record if it may have one, else nothing (a read-only
        filesystem: no writer can join there)."""
        try:
            wfd = os.open(self.record_file, os.O_WRONLY)
        except OSError:
            return
        try:
            os.ftruncate(wfd, 0)
            self._note_lock_file(wfd)
        except OSError:
            pass
        finally:
            os.close(wfd)

    def _note_lock_file(self, fd: int) -> None:
        """Record the identity of the lock file this first user opens (made by the
        caller's block if it was missing). Never a clean record: it holds no data file
        identity."""
        if self.lock_file is None:
            return
        try:
            st = os.stat(self.lock_file)
            os.pwrite(fd, orjson.dumps({"lock": [st.st_dev, st.st_ino]}), 0)
        except OSError:
            pass  # best effort: later users then only check that the lock file exists

    def leave(self, *, clean: bool) -> None:
        """Unregister; if this was the last user and ``clean``, record the data file's
        identity (call after the engine closed it)."""
        # The data file first: a process found holding it also holds the record.
        self._release_data()
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not clean or self.read_only:
                return
            with self._gate() as gated:
                if not gated:
                    return
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return  # another process still has the store open
                identity = self._identity()
                if identity is not None:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, orjson.dumps(identity), 0)
        except (OSError, StoreMoved):
            pass  # best effort: without a record the next open checks the file
        finally:
            _unlock_and_close(fd)

    def abandon_in_child(self) -> None:
        """Close the child's copy of the descriptor without unlocking it (a fork()
        child: the parent's shared lock stays, as it belongs to the open file
        description the parent still has; only LOCK_UN would release it)."""
        for fd in (self._fd, self._data_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._data_fd = None
