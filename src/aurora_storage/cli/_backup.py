"""``aurora-storage backup`` and ``restore``: a consistent copy of a store into a new
directory, and a backup swapped in for a store - refusing, before anything changes, a
store that another process has open where the result would not hold what it claims.

A backup is read back before it gets its name (every record, checksums on: the check
``verify`` makes): a RocksDB checkpoint hard-links the store's table files and an LMDB
copy copies its pages as they are, so a damaged store's damage lands in the backup, and
without the check the operator learnt of it only when the backup was needed. A backup
is read the same way before ``restore`` touches the target: one written without the
check (``--no-verify``, older versions, a library checkpoint) or damaged since would
otherwise replace a store that may be intact with its damage.

Neither needs the store's codec: a store whose codec only the application registered
opens with a stand-in that leaves values undecoded (:func:`_opened`), and the check
then reads every record with the engine's checksums only.

A killed backup leaves ``DIR.partial-<pid>``: the next backup into the same folder
removes it, or reports it while another backup writes there (:func:`_backup_folder`).
The commands printed in advice paste into a shell as printed (``shell_url``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import re
import shlex
import shutil
import stat
from collections.abc import Callable, Iterator
from typing import Any

import click

from .. import errors
from .._stores import MARKER_NAME
from ..config import URL
from ._app import _confirm, _quiet_option, _verify, _where, cli
from ._common import (
    NoStoreError,
    engine_at,
    open_read,
    open_write,
    parse_url,
    plural,
    say,
    shell_url,
    warn,
)

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

#: The name of a partial backup (``<name>.partial-<pid>``), and of the directory a RocksDB
#: checkpoint is built in before RocksDB renames it (``<name>.partial-<pid>.tmp``: a run
#: killed inside the checkpoint leaves it).
_PARTIAL_NAME = re.compile(r"(?P<name>.+)\.partial-(?P<pid>[1-9][0-9]{0,6})(?:\.tmp)?")


@contextlib.contextmanager
def _backup_folder(target: str, *, quiet: bool) -> Iterator[None]:
    """Deal with what killed backups left beside ``target`` (:func:`_clean_partials`),
    then hold a shared ``flock`` on the folder for the block (the whole backup): another
    backup then knows that one runs there, whatever machine or container it runs in
    (a process id tells only on this machine). The leftovers are removed only when no
    other backup holds the lock - an exclusive one is free - and this one keeps it
    exclusive while it removes them: another backup starting meanwhile waits, and makes
    its partial directory only once it holds its shared lock. A filesystem that takes
    no lock on a folder (some network filesystems) is told apart (see
    :func:`_clean_partials`)."""
    parent = os.path.dirname(target)
    try:
        fd: int | None = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        fd = None
    try:
        if fd is None:
            _clean_partials(target, alone=None, quiet=quiet)
        else:
            alone: bool | None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
                # Waits while another backup removes leftovers (it holds the lock
                # exclusive meanwhile): what it removed is not reported.
                fcntl.flock(fd, fcntl.LOCK_SH)
            except OSError:
                alone = None
            _clean_partials(target, alone=alone, quiet=quiet)
            if alone:
                fcntl.flock(fd, fcntl.LOCK_SH)  # (from exclusive: another may start now)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # (drops the lock)


def _size_text(path: str) -> str:
    """The size of the files under ``path`` (links not followed), for a person."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    if total < 1000:
        return f"{total} bytes"
    for unit, size in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if total < size * 1000 or unit == "GB":
            return f"{total / size:.1f} {unit}"
    raise AssertionError  # pragma: no cover - the loop returns


def _leftover(parent: str, entry: str) -> tuple[str, int] | None:
    """The backup target's name and the process id in ``entry``'s name when ``entry``
    (in ``parent``) is what a killed backup leaves - a directory (not a link) named as
    :data:`_PARTIAL_NAME`, owned by this user, holding only files - and that process no
    longer runs on this machine; else None (a running backup's, or anything else:
    never touched)."""
    m = _PARTIAL_NAME.fullmatch(entry)
    if m is None:
        return None
    pid = int(m["pid"])
    path = os.path.join(parent, entry)
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return None
        with os.scandir(path) as inside:
            if any(not e.is_file(follow_symlinks=False) for e in inside):
                return None  # (a backup's partial copy holds files only)
    except OSError:
        return None
    if pid == os.getpid():
        return m["name"], pid  # (an earlier process's with this one's id: not running)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return m["name"], pid
    except (OSError, OverflowError):
        pass  # (someone else's process: it runs)
    return None


def _clean_partials(target: str, *, alone: bool | None, quiet: bool) -> None:
    """Deal with what killed backups left in the folder of ``target`` (see
    :func:`_leftover`). Each is removed, and said (path, size), when no other backup
    writes into the folder (``alone``, see :func:`_backup_folder`). While one does
    (``alone`` False), a process id may be another machine's or container's, so a
    leftover is reported on a ``warning:`` line instead (path, size, how to delete it)
    and left for a later backup. On a filesystem without folder locks (``alone`` None)
    only ``target``'s own leftovers are removed (what backup always did) and the
    others reported."""
    parent, name = os.path.split(target)
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return
    for entry in entries:
        found = _leftover(parent, entry)
        if found is None:
            continue
        path = os.path.join(parent, entry)
        size = _size_text(path)
        why = f"left by a backup that was killed (its process {found[1]} no longer runs)"
        delete = f"delete it yourself (rm -r {shlex.quote(path)})"
        if alone or (alone is None and found[0] == name):
            try:
                shutil.rmtree(path)
            except OSError as exc:
                warn(
                    f"{path} ({size}) is {why}, but it could not be removed "
                    f"({exc.strerror or exc}): {delete}"
                )
            else:
                say(f"removed {path} ({size}), {why}", quiet=quiet)
            continue
        busy = (
            f"another backup is writing into {parent} now, so it was not removed"
            if alone is False
            else f"{parent} takes no lock that tells whether another backup runs there, "
            "so it was not removed"
        )
        warn(
            f"{path} ({size}) is {why}; {busy}: the next backup into {parent} removes it "
            f"once none runs there, or {delete}"
        )


# ------------------------------------------------------------------ a codec the CLI lacks


def _undecoded(data: bytes) -> bytes:
    return data


def _unwritable(value: Any) -> bytes:
    raise TypeError("the command line writes no value with a codec it does not know")


def _stood_in(repo: Any) -> bool:
    """Whether ``repo`` was opened with :func:`_opened`'s stand-in for its codec."""
    return getattr(getattr(repo, "codec", None), "decode", None) is _undecoded


#: How to make a codec known to the command line (an application's ``register_codec``
#: runs in the application's process only).
_CODEC_PLUGIN = (
    "make the codec known to the command line as a codec plugin: a module in the "
    "aurora_storage entry-point group whose aurora_storage_codecs() returns it "
    "(docs/concepts/plugins.md)"
)

#: The engines whose store backup and restore handle, by scheme: the backend class that
#: reads a store's metadata record without a repository (without its codec).
_BACKENDS = {
    "rocksdb": ("aurora_storage_rocksdb._backend", "RocksDBBackend"),
    "lmdb": ("aurora_storage_lmdb._backend", "LMDBBackend"),
}


def _recorded_codec(url_text: str) -> str | None:
    """The name of the codec the store at ``url_text`` (RocksDB or LMDB) recorded: its
    marker's (``aurora-store.json``), else - a backup has no marker - its metadata
    record's, read through the engine's backend opened read-only (no repository, so no
    codec needed). None when neither can be read."""
    import importlib

    import orjson

    from .._metadata import META_KEY
    from .._stores import marker_path, read_marker
    from ._common import _read_only_url, store_path

    parsed = parse_url(url_text)
    path = store_path(parsed)
    if path is None or parsed.scheme not in _BACKENDS:
        return None
    with contextlib.suppress(errors.StorageError):
        info = read_marker(marker_path(path))
        if info is not None and info.get("backend") == parsed.scheme:
            name = info.get("codec")
            if isinstance(name, str):
                return name
    module, cls_name = _BACKENDS[parsed.scheme]
    try:
        url = _read_only_url(parsed)
        options = {k: v for k, v in url.options.items() if k not in ("codec", "otel")}
        backend = getattr(importlib.import_module(module), cls_name).from_url(url, options)
        try:
            raw = backend.get(META_KEY)
        finally:
            backend.close()
        name = orjson.loads(raw)["codec"] if raw is not None else None
    except (errors.StorageError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _opened(open_store: Callable[..., Any], url_text: str, *, tell: bool, **kwargs: Any) -> Any:
    """``open_store(url_text, **kwargs)`` (:func:`open_read`, :func:`open_write`). A store
    whose codec the command line does not know - one the application registered with
    ``register_codec`` - opens with a stand-in under the codec's name that returns the
    stored bytes undecoded and encodes nothing: backup and restore copy files as they are
    and their check reads every record with the engine's checksums, which needs no codec
    (only the check that each value decodes is left out). ``tell``: say so on a
    ``warning:`` line (once per command, where it checks records).

    Raises:
        StorageError: what the open raised; for a codec the command line does not know
            and whose name the store does not tell, with a note on how to make it known.
    """
    from ..codecs import Codec, get_codec

    try:
        return open_store(url_text, **kwargs)
    except (errors.ConfigurationError, errors.PluginError) as exc:
        if isinstance(exc, (errors.ForeignStoreError, errors.InvalidURLError)):
            raise
        name = _recorded_codec(url_text)
        try:
            if name is None:
                raise LookupError(url_text)
            get_codec(name)
        except (errors.ConfigurationError, errors.PluginError, LookupError):
            pass  # (not known here: the stand-in below)
        else:
            raise  # a known codec: the open failed for another reason
        if name is None:
            if str(exc).startswith("unknown codec"):
                exc.add_note(f"(to back up or restore this store, {_CODEC_PLUGIN})")
            raise
    stand_in: Codec[bytes] = Codec(name, encode=_unwritable, decode=_undecoded)
    repo = open_store(url_text, codec=stand_in, **kwargs)
    if tell:
        warn(
            f"the store's codec {name!r} is not known to the command line (registered in "
            "the application only?). Backup and restore need none - they copy files as "
            "they are, and read every record with the engine's checksums - but they do "
            f"not decode the values, so a value the codec cannot read is not found; to "
            f"have them decoded, {_CODEC_PLUGIN}"
        )
    return repo


_ROCKSDB_LIVE_ADVICE = (
    "Its newest writes are in the writing process's memory and write-ahead log, which "
    "a backup from outside cannot include. Back it up from inside that process with "
    "RocksDBRepository.checkpoint(path) (repo.checkpoint(path)), or stop it first and "
    "run the backup again"
)


@contextlib.contextmanager
def _open_for_backup(url: str, *, tell: bool = True) -> Iterator[Any]:
    """The store to back up, open for the block. A RocksDB store another process
    writes is refused (see :data:`_ROCKSDB_LIVE_ADVICE`), and the probe's lock on its
    ``LOCK`` is held until the backup is done: a writer starting meanwhile is refused
    (StoreLockedError) instead of acknowledging writes the read-only checkpoint leaves
    out. A store whose killed writer left writes only in its log opens writable
    (replaying and flushing them; RocksDB's own lock keeps writers out). Everything
    else opens read-only. ``tell``: see :func:`_opened`."""
    from ._common import held_by_others, rocksdb_needs_recovery, store_path

    parsed = parse_url(url)
    path = store_path(parsed)
    if parsed.scheme == "lmdb" and path is not None and os.path.isfile(path):
        raise errors.NotSupportedError(
            f"backup writes a store directory; the LMDB store {path} is a single file "
            "(subdir=false): copy it with `aurora-storage copy` to another store instead"
        )
    if parsed.scheme != "rocksdb" or path is None:
        with _opened(open_read, url, tell=tell) as repo:
            yield repo
        return
    with held_by_others("rocksdb", path, doing=f"back up {url}", advice=_ROCKSDB_LIVE_ADVICE):
        recover = rocksdb_needs_recovery(path) and "mode" not in parsed.options
        if not recover:
            with _opened(open_read, url, tell=tell) as repo:
                yield repo
            return
    try:
        repo = _opened(open_write, url, tell=tell, create=False)
    except errors.StoreLockedError as exc:
        raise errors.StoreLockedError(
            f"cannot back up {url}: another process opened it for writing just now. "
            + _ROCKSDB_LIVE_ADVICE,
            backend="rocksdb",
            path=path,
        ) from exc
    with repo:
        yield repo


#: How a backup is opened to be checked, per engine: LMDB without the structural walk
#: at open (``verify()`` walks the file itself first, as the ``verify`` command does)
#: and without liblmdb's lock file (it would be left in the backup; nothing else opens
#: the partial directory, which is this process's); RocksDB with a small block cache
#: (one pass over every block fills a cache for nothing, as in a copy's verify).
_CHECK_OPTIONS: dict[str, dict[str, str]] = {
    "lmdb": {"verify": "false", "lock": "false"},
    "rocksdb": {"block_cache_size": "8MiB"},
}


def _check_backup(scheme: str, path: str, *, quiet: bool, own: bool = True) -> dict[str, Any]:
    """Read the backup at ``path`` back: ``Repository.verify()`` of it (every record,
    the engine's checksums on - RocksDB's block checksums, the LMDB plugin's record
    envelopes - after LMDB's structural walk). ``own``: the directory is this
    process's (a backup being written, under its partial name), which LMDB opens without
    liblmdb's lock file; a backup being restored is opened with it, as before the check
    (another process may open it meanwhile). Returns ``verify``'s report (see
    :func:`aurora_storage.cli._app._verify`), with ``decoded`` False when the store's
    codec is not known here (see :func:`_opened`); damage that keeps the backup from
    opening at all is reported as its one problem.

    Raises:
        StorageError: the backup could not be read for another reason than damage.
    """
    options = dict(_CHECK_OPTIONS.get(scheme, {}))
    if not own:
        options.pop("lock", None)
    url = URL(scheme, path).with_options(**options)
    try:
        with _opened(open_read, url.render(hide_secrets=False), tell=not own) as repo:
            report = _verify(repo, quiet=quiet)
            report["decoded"] = not _stood_in(repo)
            return report
    except errors.CorruptionError as exc:
        return _unopened(exc)


def _unopened(exc: errors.CorruptionError) -> dict[str, Any]:
    """A check's report for a store whose damage keeps it from opening at all (a RocksDB
    backup damaged where its metadata record lies: a checkpoint has no marker to fall
    back on): the open's error is its one problem."""
    return {
        "ok": False,
        "opened": False,
        "records": 0,
        "problem_count": 1,
        "unchecked": None,
        "problems": [{"message": str(exc), "tenant": exc.tenant, "key": None, "path": exc.path}],
    }


def _name_damage(
    scheme: str, backup: str, report: dict[str, Any], rename: Callable[[str], str] | None = None
) -> tuple[list[str], str]:
    """Name each problem of a check of the backup at ``backup`` on a ``warning:`` line
    (``rename`` rewrites the paths the engines named, as the partial directory of a
    backup being written). Returns the damaged files and what was found, as a phrase
    (``3 damaged records or regions in FILE, ...`` or ``damage in FILE that keeps it
    from opening``)."""

    def here(text: str) -> str:
        return text if rename is None else rename(text)

    files: list[str] = []
    for p in report["problems"]:
        path = here(p["path"]) if isinstance(p.get("path"), str) else None
        if path == backup and scheme == "lmdb":
            path = os.path.join(backup, "data.mdb")  # (its one data file)
        p = {**p, "path": path, "message": here(str(p["message"]))}
        warn(f"damaged in the backup:{_where(p)} {p['message']}")
        if path is not None and path not in files:
            files.append(path)
    named = ", ".join(files[:5]) or backup
    if len(files) > 5:
        named += f" and {len(files) - 5} more files"
    if not report.get("opened", True):
        return files, f"damage in {named} that keeps it from opening"
    unchecked = report.get("unchecked")
    unread = (
        ""
        if unchecked == 0
        else "; an unknown number of records could not be read"
        if unchecked is None
        else f"; about {plural(unchecked, 'record')} could not be read"
    )
    count = report.get("problem_count") or len(report["problems"])
    return files, f"{plural(count, 'damaged record or region')} in {named}{unread}"


def _damage_error(
    url: str, scheme: str, target: str, partial: str, report: dict[str, Any]
) -> errors.CorruptionError:
    """Name each problem :func:`_check_backup` found in the backup (now at ``target``)
    on a ``warning:`` line, and return the error that ends the command: which files
    hold the damage, that the backup was kept and holds it, and what to do."""
    # The engines name the partial directory the backup was checked in.
    files, found = _name_damage(scheme, target, report, lambda t: t.replace(partial, target))
    # Salvaged from the backup (a copy nobody writes) where it opens; one too damaged
    # to open (a RocksDB backup has no marker to fall back on) from the store. (Both
    # quoted for the shell, the backup's as a URL: see shell_url.)
    salvage = shell_url(scheme, target) if report.get("opened", True) else shlex.quote(url)
    return errors.CorruptionError(
        f"the backup {target} was written, but reading it back found {found}. The "
        "backup holds the damage, so it is not a good backup: keep your earlier ones. "
        f"The damage is most likely {url}'s own (the backup copies its files as they "
        f"are): check it with `aurora-storage verify {shlex.quote(url)}`. Save what still "
        f"reads with `aurora-storage export --salvage {salvage} -o FILE` and import that file into "
        'a new store, or restore an earlier backup (docs/operations.md, "Backup and '
        'restore")',
        backend=scheme,
        path=files[0] if files else target,
    )


def _write_backup(
    url: str, scheme: str, target: str, partial: str, *, verify: bool, quiet: bool
) -> dict[str, Any] | None:
    """Write the backup of ``url`` into ``partial``, read it back (``verify``), and
    rename it to ``target``. Returns the check's report (None: not checked).

    Raises:
        StorageFullError: no space left for the backup; nothing of it is left.
        click.UsageError: another backup wrote ``target`` meanwhile.
        StorageError: what the store's open, the backup or its check raised.
    """
    try:
        # (The codec stand-in is said only when the backup is checked: without the
        # check, nothing would be decoded anyway.)
        with _open_for_backup(url, tell=verify) as repo:
            try:
                _backup(repo, partial)
            except errors.StorageFullError as exc:
                if exc.path is None or not exc.path.startswith(partial):
                    raise  # the source's own disk (a checkpoint flushes it first)
                # The engines name the partial folder; the user knows the target.
                raise errors.StorageFullError(
                    f"no space left for the backup {target}: the backup was not made "
                    f"(nothing of it is left), and {url} is unaffected. Free space on "
                    f"that filesystem, or back up elsewhere. Engine error: "
                    f"{exc.__cause__ or exc}",
                    path=target,
                ) from exc
        # Checked once the store is closed (a RocksDB store's LOCK, held until then,
        # keeps its writers out no longer than the copy takes), and before the backup
        # gets its name (a run killed while checking leaves no DIRECTORY).
        report = None
        if verify:
            try:
                report = _check_backup(scheme, partial, quiet=quiet)
            except errors.StorageError as exc:
                exc.add_note(f"(reading the backup back failed: nothing of {target} was kept)")
                raise
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
    return report


@cli.command()
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Read every record of the backup back, checksums on, before it gets its name "
    "(exit 5 on damage).",
)
@_quiet_option
def backup(url: str, directory: str, verify: bool, quiet: bool) -> None:
    """Write a consistent backup of a store into a new DIRECTORY (a RocksDB checkpoint,
    an LMDB compacting copy); the backup opens as a store of the same engine.

    LMDB may be backed up while a writer keeps writing. A RocksDB store that another
    process has open for writing is refused (exit 3): back it up from inside that
    process (``repo.checkpoint(path)``) or stop it first. The backup is written into
    DIRECTORY.partial-PID and renamed to DIRECTORY only once complete; the next backup
    into DIRECTORY removes what a killed run left.

    The backup is then read back (every record, checksums on, as `verify` does). A
    damaged store's backup holds its damage: it is kept, the damaged records and files
    are named and the exit status is 5. --no-verify skips the check (it reads the whole
    backup; see docs/operations.md for its cost).

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
            f"first (mkdir -p {shlex.quote(parent)})"
        )
    scheme = parse_url(url).scheme
    partial = f"{target}{_PARTIAL}{os.getpid()}"
    with _backup_folder(target, quiet=quiet):
        report = _write_backup(url, scheme, target, partial, verify=verify, quiet=quiet)
    if report is None:
        say(f"backup of {url} written to {target} (not checked: --no-verify)", quiet=quiet)
        return
    if not report["ok"]:
        # Kept, not removed: it is a consistent copy of the damaged store to salvage
        # from (``export --salvage``), which a store still in use may not be; the
        # error says it holds the damage (exit 5, as verify's).
        raise _damage_error(url, scheme, target, partial, report)
    checked = plural(report["records"], "record")
    if report.get("decoded") is False:
        checked += " checked, values not decoded"
    else:
        checked += " checked"
    say(f"backup of {url} written to {target} ({checked})", quiet=quiet)


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
