"""``aurora-storage backup``: a consistent copy of a store into a new directory -
refusing, before anything changes, a store that another process has open where the copy
would not hold what it claims.

A backup is read back before it gets its name (every record, checksums on: the check
``verify`` makes): a RocksDB checkpoint hard-links the store's table files and an LMDB
copy copies its pages as they are, so a damaged store's damage lands in the backup, and
without the check the operator learnt of it only when the backup was needed. ``restore``
(:mod:`._restore`) reads a backup the same way before it touches the target, with
:func:`_check_backup` from here.

Neither needs the store's codec: a store whose codec only the application registered
opens with a stand-in that leaves values undecoded (:func:`_opened`), and the check
then reads every record with the engine's checksums only.

A killed backup leaves ``DIR.partial-<pid>``: the next backup into the same folder
removes it, or reports it while another backup writes there (:func:`_backup_folder`).
The commands printed in advice paste into a shell as printed (``shell_url``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import stat
from collections.abc import Callable, Iterator
from typing import Any

import click

from .. import errors
from ..config import URL
from ._app import _quiet_option, _verify, _where, cli
from ._common import (
    open_read,
    open_write,
    parse_url,
    plural,
    say,
    shell_url,
    warn,
)

__all__ = ["backup"]


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
