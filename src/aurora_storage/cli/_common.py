"""What every command shares: exit codes, opening stores safely, keys and values from
the command line, output that scripts can read, progress on stderr."""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import fcntl
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from typing import Any

import click
import orjson

from .. import _stores, errors
from ..config import URL, expand_store_path, local_path
from ._tagged import TaggedJSONError, from_tagged, loads_json, to_tagged

__all__ = [
    "ExitCode",
    "InterruptedRestoreError",
    "NoStoreError",
    "StoreDiffersError",
    "check_engine",
    "decide_status",
    "engine_at",
    "exit_code_for",
    "held_by_others",
    "interrupted_restore",
    "json_bytes",
    "open_read",
    "open_write",
    "parse_key",
    "parse_url",
    "parse_value",
    "plugin_store_path",
    "plural",
    "progress",
    "rocksdb_needs_recovery",
    "say",
    "show_library_warnings",
    "store_path",
    "text_bytes",
    "warn",
    "write_json",
    "write_line",
]


class ExitCode(enum.IntEnum):
    """The documented exit statuses (docs/cli.md, "Exit codes")."""

    OK = 0
    NOT_FOUND = 1  # the key (or tenant) asked for is absent
    USAGE = 2  # bad arguments, URL, option, key or value syntax
    STORE_ERROR = 3  # the store could not do it: locked, read-only, full, engine error
    NO_STORE = 4  # no store at the URL, or another engine's store there
    DAMAGED = 5  # verify found damage; copy's verification found a difference
    BROKEN_PLUGIN = 6  # backends: an installed plugin is broken (listed with the reason)
    INTERNAL = 70  # an unexpected failure: a bug (sysexits' EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C


class NoStoreError(errors.StorageError, FileNotFoundError):
    """No store at the URL (a read command never creates one), or a folder holding
    another engine's store."""


class InterruptedRestoreError(NoStoreError, errors.InterruptedRestoreError):
    """No store at the URL because a ``restore`` into it was interrupted: what it left
    beside the path (``<path>.replaced``, ``<path>.restoring``) holds the store and the
    backup; the message says which and how to finish or undo the restore. The library's
    :class:`aurora_storage.errors.InterruptedRestoreError` (an open that would create a
    store there) exits the same way (4)."""


class StoreDiffersError(errors.StorageError):
    """A copy's verification found the target different from the source."""


#: The exit status the running command decided before writing its report, if any (see
#: :func:`decide_status`); one command runs at a time in a process.
_decided: list[int] = []


def decide_status(code: int | None) -> None:
    """Record the exit status the running command has decided on before it writes its
    report (``None``: none yet), so a reader that goes away mid-report (``| head``)
    does not turn a failure into status 0: :func:`aurora_storage.cli.run` exits with
    this status on a closed pipe."""
    _decided[:] = [] if code is None else [int(code)]


def decided_status() -> int:
    """The status recorded by :func:`decide_status`, or 0."""
    return _decided[0] if _decided else 0


def exit_code_for(exc: errors.StorageError) -> ExitCode:
    """The exit status for an aurora-storage error."""
    if isinstance(exc, NoStoreError | errors.InterruptedRestoreError | errors.ForeignStoreError):
        return ExitCode.NO_STORE
    if isinstance(exc, errors.CorruptionError | StoreDiffersError):
        return ExitCode.DAMAGED
    if isinstance(
        exc,
        errors.InvalidURLError
        | errors.BackendNotFoundError
        | errors.InvalidKeyError
        | errors.InvalidTenantError,
    ):
        return ExitCode.USAGE
    return ExitCode.STORE_ERROR


# ----------------------------------------------------------------------- opening stores

#: Files that identify each engine's store directory.
_SIGNS = {
    "rocksdb": ("CURRENT", "IDENTITY"),
    "lmdb": ("data.mdb",),
}
#: How each file engine is told to open read-only: option and value.
_READ_ONLY = {"rocksdb": ("mode", "read_only"), "lmdb": ("read_only", "true")}


def plural(count: int, word: str) -> str:
    """``count`` and ``word``, in the plural unless ``count`` is 1 ("1 record", "2 records")."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def shell_url(scheme: str, path: str) -> str:
    """The store at ``path`` as an argument of a command line the CLI prints in its
    advice: its URL, percent-encoded as a URL (a ``%``, ``#``, ``?`` or space in a
    name), then quoted for the shell - pasted, it names that store, and nothing of it is
    run or expanded by the shell (``&``, ``;``, ``$``, quotes). Every command line the
    CLI prints names a store this way, a plain path with :func:`shlex.quote`, and a URL
    the user typed as typed, quoted."""
    return shlex.quote(URL(scheme, path).render(hide_secrets=False))


def parse_url(text: str | URL) -> URL:
    """:meth:`URL.parse` for a URL given on the command line.

    A plain path (no scheme) that holds a RocksDB or LMDB store gets the URL to use in
    the error, since that is what a newcomer most often means.

    Raises:
        InvalidURLError: as :meth:`URL.parse`.
    """
    try:
        return URL.parse(text)
    except errors.InvalidURLError as exc:
        if not isinstance(text, str) or not text or ":" in text:
            raise
        found = engine_at(text)
        if found is None:
            raise
        raise errors.InvalidURLError(
            f"{text!r} is not a URL: the path holds a {found} store, use "
            f"{shell_url(found, text)} (or {found}:///absolute/path)"
        ) from exc


def engine_at(path: str) -> str | None:
    """Which engine's store a directory (or LMDB single file) holds, or None."""
    if os.path.isfile(path):
        with contextlib.suppress(OSError), open(path, "rb") as f:
            # An LMDB data file starts with a meta page whose magic is 0xBEEFC0DE.
            head = f.read(32)
            if b"\xde\xc0\xef\xbe" in head:
                return "lmdb"
        return None
    if not os.path.isdir(path):
        return None
    from .._stores import MARKER_NAME, read_marker

    with contextlib.suppress(errors.StorageError):
        marker = read_marker(os.path.join(path, MARKER_NAME))
        if marker is not None and isinstance(marker.get("backend"), str):
            return str(marker["backend"])
    for engine, names in _SIGNS.items():
        if any(os.path.exists(os.path.join(path, n)) for n in names):
            return engine
    return None


def store_path(url: URL) -> str | None:
    """The local path of a file engine's URL, or None for other schemes."""
    if url.scheme not in _SIGNS:
        return None
    return os.path.abspath(
        expand_store_path(local_path(url, backend=url.scheme), backend=url.scheme)
    )


#: What ``restore`` leaves beside a store's path while it swaps a backup in: the store
#: that was there, moved aside, and the copy of the backup being swapped in.
REPLACED = _stores.REPLACED
RESTORING = _stores.RESTORING


def interrupted_restore(path: str) -> str | None:
    """Why there is no store at ``path`` when a ``restore`` into it was interrupted
    (killed, or the machine stopped) and left ``<path>.replaced`` or ``<path>.restoring``
    beside it, saying which holds what and how to finish or undo it (or that a restore
    into it runs); else None. See :func:`aurora_storage._stores.restore_leftovers`."""
    if os.path.islink(path):
        path = os.path.realpath(path)  # a link that points nowhere: its target counts
    if os.path.lexists(path):
        return None
    return _stores.restore_leftovers(path)


def check_engine(url: URL, *, must_exist: bool) -> None:
    """Refuse a file engine's URL whose path holds another engine's store (a command
    must not open, or create files in, a store of another engine), and with
    ``must_exist`` one whose path holds no store (read commands never create one). A
    missing path that an interrupted ``restore`` left its store and backup beside is
    refused by every command (a writing one would create an empty store there).

    Raises:
        InterruptedRestoreError: no store at the path, and what an interrupted restore
            left beside it (see :func:`interrupted_restore`).
        NoStoreError: another engine's store at the path, or (``must_exist``) none.
    """
    if url.scheme == "tiered":
        # Each tier's path too: opening the pair creates a missing tier store (an empty
        # one where a restore into it was interrupted). A tier may be missing (the
        # pair rebuilds hot), so only what lies at a tier's path is checked.
        for name in ("hot", "cold"):
            text = url.options.get(name)
            if isinstance(text, str) and text:
                check_engine(parse_url(text), must_exist=False)
        return
    path = store_path(url)
    if path is None:
        plugin_path = plugin_store_path(url)
        if plugin_path is not None:
            _check_plugin_store(url.scheme, plugin_path, must_exist=must_exist)
        return
    interrupted = interrupted_restore(path)
    if interrupted is not None:
        raise InterruptedRestoreError(interrupted, backend=url.scheme, path=path)
    found = engine_at(path)
    if found is not None and found != url.scheme:
        raise NoStoreError(
            f"{path} holds a {found} store, not a {url.scheme} one; use {found}://{path}",
            backend=url.scheme,
            path=path,
        )
    if found is None and must_exist:
        what = "does not exist" if not os.path.exists(path) else "holds no store"
        raise NoStoreError(
            f"no {url.scheme} store at {path} (the path {what}); read commands never create "
            "one - check the path, or write to it first (put, import, copy, restore)",
            backend=url.scheme,
            path=path,
        )


#: Schemes the command line knows to name no local store (or checks on its own).
_NOT_PLUGIN_PATHS = frozenset({"memory", "nats", "tiered", *_SIGNS})


def plugin_store_path(url: URL) -> str | None:
    """The local store path a plugin scheme's URL names, or None.

    A path for a scheme the command line does not know itself whose
    :class:`~aurora_storage.plugins.BackendSpec` keeps ``local_store`` (the default)
    and whose URL has the local form :func:`~aurora_storage.config.local_path` reads
    (``scheme:///abs/path``, ``scheme:relative/path``). None for any other URL: a
    scheme that is not installed, a URL with a host - the open then says what is wrong.
    """
    if url.scheme in _NOT_PLUGIN_PATHS:
        return None
    from .._registry import registry

    try:
        spec = registry.lookup(url.scheme)
        path = local_path(url, backend=url.scheme)
    except errors.StorageError:
        return None
    if not spec.local_store:
        return None
    return os.path.abspath(path)


def _check_plugin_store(scheme: str, path: str, *, must_exist: bool) -> None:
    """:func:`check_engine` for a plugin's store at ``path``: the marker the repository
    writes when it initialises a store (:func:`aurora_storage._stores.marker_path`:
    inside a directory, beside a single file) says a store is there and whose it is.

    Raises:
        NoStoreError: the marker (or a RocksDB or LMDB store's files) names another
            engine; or, with ``must_exist``, there is no marker.
    """
    marker = _stores.marker_path(path)
    try:
        info = _stores.read_marker(marker)
    except errors.CorruptionError:
        return  # a damaged marker still says a store was initialised: the open judges it
    found = info.get("backend") if info is not None else None
    if not isinstance(found, str) or not found:
        found = engine_at(path)  # RocksDB and LMDB stores from before markers
    if found is not None and found != scheme:
        raise NoStoreError(
            f"{path} holds a {found} store, not a {scheme} one; use {found}://{path}",
            backend=scheme,
            path=path,
        )
    if must_exist and info is None and found is None:
        # No marker: a path that is missing, or an empty directory, holds no store. A
        # path holding files may be the store of a backend that writes no marker (the
        # docs ask for one, older plugins may not): its backend judges it.
        if not os.path.lexists(path):
            what = "does not exist"
        elif os.path.isdir(path) and not os.listdir(path):
            what = f"holds no store: it is an empty directory, no {_stores.MARKER_NAME}"
        else:
            return
        raise NoStoreError(
            f"no {scheme} store at {path} (the path {what}); read commands never create "
            "one - check the path, or write to it first (put, import, copy)",
            backend=scheme,
            path=path,
        )


class NewStore:
    """The files a command is about to create for a store that does not exist yet, so
    that a command that fails before writing anything can remove them again.

    Only entries that were not there before are removed: the store's path (or, when it
    is an existing empty directory, what appeared in it) and siblings named after it
    (LMDB's ``<path>-lock`` and ``<path>-open`` beside a single-file store).
    """

    def __init__(self, path: str) -> None:
        anchor = path
        while not os.path.isdir(anchor) and os.path.dirname(anchor) != anchor:
            anchor = os.path.dirname(anchor)
        self.path = path
        self._anchor = anchor
        self._stem = None if anchor == path else os.path.relpath(path, anchor).split(os.sep)[0]
        self._before = set(os.listdir(anchor))

    @classmethod
    def at(cls, url: URL) -> NewStore | None:
        """For a file engine's URL whose path holds no store, else None."""
        path = store_path(url)
        if path is None or engine_at(path) is not None:
            return None
        with contextlib.suppress(OSError):
            return cls(path)
        return None

    def remove(self) -> None:
        """Remove what appeared since (best effort)."""
        import shutil

        with contextlib.suppress(OSError):
            for name in set(os.listdir(self._anchor)) - self._before:
                if self._stem is not None and not (
                    name == self._stem or name.startswith(self._stem + "-")
                ):
                    continue
                full = os.path.join(self._anchor, name)
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(full)


def _probe(path: str, how: str) -> int | None:
    """Open ``path`` and take a non-blocking lock on it: ``"posix"`` a whole-file fcntl
    lock (RocksDB's ``LOCK``), ``"lmdb"`` liblmdb's fcntl lock on the first byte of
    ``lock.mdb``, ``"flock"`` an exclusive flock (the library's LMDB open record).
    Returns the descriptor holding the lock (the caller releases it by closing it), or
    None when the file does not exist or cannot be opened for the probe.

    Raises:
        BlockingIOError: another process holds a conflicting lock.
    """
    try:
        # fcntl write locks need a writable descriptor; RocksDB's whole-file write
        # lock also conflicts with a read lock, which a read-only descriptor can take.
        fd = os.open(path, os.O_RDONLY if how in ("posix", "flock") else os.O_RDWR)
    except OSError:
        return None
    try:
        if how == "posix":
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        elif how == "lmdb":
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise BlockingIOError(exc.errno, exc.strerror, path) from exc
    return fd


def _lock_files(engine: str, path: str) -> list[tuple[str, str]]:
    """The files (and how to probe them) that show another process has the store of
    ``engine`` at ``path`` open."""
    if engine == "rocksdb":
        return [(os.path.join(path, "LOCK"), "posix")]
    if engine == "lmdb":
        if os.path.isfile(path):  # subdir=false: <path>-open and <path>-lock beside it
            return [(path + "-open", "flock"), (path + "-lock", "lmdb")]
        return [
            (os.path.join(path, "aurora-open.lock"), "flock"),
            (os.path.join(path, "lock.mdb"), "lmdb"),
        ]
    return []


@contextlib.contextmanager
def held_by_others(engine: str, path: str, *, doing: str, advice: str) -> Iterator[None]:
    """Refuse, before anything is changed, a store another process has open, and keep
    new openers out while the body runs (the probe locks are held until it ends).

    RocksDB: another process holds the POSIX lock on ``LOCK`` (a writer; read-only
    openers take none). LMDB: another process holds the library's open record (every
    process that opened the store through aurora_storage, reading or writing) or
    liblmdb's lock on ``lock.mdb`` (any process using the environment). The probe
    takes a lock of its own and releases it by closing its descriptor; this process
    must not have the store open itself (closing a descriptor drops all of this
    process's POSIX locks on that file).

    Raises:
        StoreLockedError: another process has the store open; ``advice`` says what to do.
    """
    held: list[int] = []
    try:
        for file, how in _lock_files(engine, path):
            try:
                fd = _probe(file, how)
            except BlockingIOError as exc:
                raise errors.StoreLockedError(
                    f"cannot {doing}: another process has the {engine} store at {path} "
                    f"open ({os.path.basename(file)} is locked). {advice}",
                    backend=engine,
                    path=path,
                ) from exc
            if fd is not None:
                held.append(fd)
        yield
    finally:
        for fd in held:
            os.close(fd)


def rocksdb_needs_recovery(path: str) -> bool:
    """Whether a RocksDB store (not open anywhere) has writes only in its write-ahead
    log (``*.log`` not empty): its writer was killed before flushing them. A read-only
    open replays them into memory only, and a checkpoint of it leaves them out."""
    with contextlib.suppress(OSError), os.scandir(path) as it:
        for entry in it:
            if entry.name.endswith(".log") and entry.is_file() and entry.stat().st_size:
                return True
    return False


def open_read(url_text: str, *, codec: Any = None) -> Any:
    """Open a store for reading: never creates or changes it (``codec``: as
    :func:`aurora_storage.open`'s).

    RocksDB opens ``mode=read_only`` (a view as of open time that works beside a live
    writer in another process, and writes no data: only rocksdict's side file
    ``rocksdict-config.json`` is rewritten, with the same content, as at every open -
    rocksdict's doing, see docs/backends/rocksdb.md) and LMDB ``read_only=true``, unless
    the URL chooses a mode itself (``mode=secondary``).

    Raises:
        NoStoreError: nothing at the path, or another engine's store.
        StorageError: what the open raised.
    """
    import aurora_storage

    return aurora_storage.open(_read_only_url(parse_url(url_text)), codec=codec)


def _read_only_url(url: URL) -> URL:
    """``url`` made read-only, after checking that its store exists.

    A ``tiered://`` URL is handled tier by tier: each tier URL inside ``hot=``/``cold=``
    must name an existing store and opens read-only, so a read command neither creates a
    tier nor lets the pair catch up, project or rebuild hot when it opens.

    Raises:
        NoStoreError: nothing at a path, or another engine's store.
    """
    if url.scheme == "tiered":
        # An interrupted restore at either tier's path is named before a tier found
        # missing (that is what its absence means).
        check_engine(url, must_exist=False)
        tiers = {}
        for name in ("hot", "cold"):
            text = url.options.get(name)
            if isinstance(text, str) and text:  # (a missing tier: the backend says so)
                tiers[name] = _read_only_url(parse_url(text)).render(hide_secrets=False)
        return url.with_options(**tiers) if tiers else url
    check_engine(url, must_exist=True)
    if url.scheme in _READ_ONLY:
        name, value = _READ_ONLY[url.scheme]
        if name not in url.options:
            url = url.with_options(**{name: value})
    return url


#: Bulk writes (import, copy) into RocksDB use smaller memtables and block cache unless
#: the URL says otherwise: memory stays bounded (two 16 MiB memtables instead of two of
#: 64 MiB; an 8 MiB block cache instead of 32 MiB, which a copy's one-pass verify would
#: fill for nothing: +58 MiB of growth for 1M records before, +37 MiB after).
_BULK_OPTIONS = {"rocksdb": (("write_buffer_size", "16MiB"), ("block_cache_size", "8MiB"))}


def open_write(
    url_text: str | URL, *, create: bool = True, bulk: bool = False, codec: Any = None
) -> Any:
    """Open a store for writing (creating it when ``create``); ``bulk`` for import and
    copy targets (see :data:`_BULK_OPTIONS`); ``codec`` as :func:`aurora_storage.open`'s.

    Raises:
        NoStoreError: another engine's store at the path, or none while not ``create``.
        StorageError: what the open raised.
    """
    import aurora_storage

    url = parse_url(url_text)
    check_engine(url, must_exist=not create)
    if bulk and url.scheme in _BULK_OPTIONS:
        for name, value in _BULK_OPTIONS[url.scheme]:
            if name not in url.options:
                url = url.with_options(**{name: value})
    return aurora_storage.open(url, codec=codec)


# ------------------------------------------------------------------ keys and values

KEY_FORMATS = ("text", "json", "int", "hex", "base64")
VALUE_FORMATS = ("text", "json", "hex", "base64")


def _decode_bytes(text: str, fmt: str, what: str) -> bytes:
    try:
        if fmt == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise click.BadParameter(f"{what} {text!r} is not {fmt}: {exc}") from exc


def parse_key(text: str, fmt: str) -> Any:
    """A key from the command line. ``text`` (default): the string itself; ``json``:
    tagged JSON (arrays are tuples, ``{"$bytes": "..."}`` is bytes); ``int``; ``hex`` /
    ``base64``: bytes.

    Raises:
        click.BadParameter: the text does not parse in that format (exit status 2).
    """
    if fmt == "text":
        return text
    if fmt == "int":
        try:
            return int(text)
        except ValueError as exc:
            raise click.BadParameter(f"key {text!r} is not an integer") from exc
    if fmt == "json":
        try:
            return from_tagged(loads_json(text), as_key=True)
        except (orjson.JSONDecodeError, TaggedJSONError) as exc:
            raise click.BadParameter(f"key {text!r} is not (tagged) JSON: {exc}") from exc
    return _decode_bytes(text, fmt, "key")


def parse_value(text: str, fmt: str) -> Any:
    """A value from the command line: ``text`` (default), ``json`` (tagged JSON),
    ``hex`` or ``base64`` (bytes).

    Raises:
        click.BadParameter: the text does not parse in that format (exit status 2).
    """
    if fmt == "text":
        return text
    if fmt == "json":
        try:
            return from_tagged(loads_json(text))
        except (orjson.JSONDecodeError, TaggedJSONError) as exc:
            raise click.BadParameter(f"value {text!r} is not (tagged) JSON: {exc}") from exc
    return _decode_bytes(text, fmt, "value")


# ------------------------------------------------------------------------ output


def json_bytes(obj: Any, *, indent: bool = False) -> bytes:
    """``obj`` as one (tagged) JSON document: every key, tenant and value a repository
    accepts has a form (a lone surrogate as ``{"$str": ...}``, NaN as
    ``{"$float": "nan"}`` ...).

    Raises:
        SerializationError: a value tagged JSON cannot carry (a plugin codec's own
            object type); export writes such a store's stored bytes instead.
    """
    try:
        doc = to_tagged(obj)
    except TaggedJSONError as exc:
        raise errors.SerializationError(
            f"cannot write {type(obj).__name__} output as JSON: {exc}; `export` writes "
            "any store (its values as the codec's stored bytes)"
        ) from exc
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)


def text_bytes(text: str) -> bytes:
    """``text`` for plain-text output: UTF-8; a lone surrogate from U+DC80 to U+DCFF (as
    :func:`os.fsdecode` makes of a byte that is not UTF-8) as that byte, and when the
    text holds any other lone surrogate, every surrogate as ``\\udXXX``. ``--json``
    output is the exact form."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace")


def write_line(data: bytes | str) -> None:
    """Write one line to stdout (bytes-level: no wrapping, no markup)."""
    out = sys.stdout.buffer
    out.write(data if isinstance(data, bytes) else text_bytes(data))
    out.write(b"\n")


def write_json(obj: Any, *, indent: bool = False) -> None:
    """Write one JSON document (tagged where plain JSON cannot carry a value).

    Raises:
        SerializationError: see :func:`json_bytes`.
    """
    write_line(json_bytes(obj, indent=indent))


def stderr_is_terminal() -> bool:
    """Whether progress bars make sense."""
    return sys.stderr.isatty()


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def total(self, total: int | None) -> None:
        """Set (or correct) the expected total."""
        if self._bar is not None:
            self._bar.update(self._task, total=total)


@contextlib.contextmanager
def progress(description: str, *, total: int | None, quiet: bool) -> Iterator[_Progress]:
    """A progress bar on stderr while the block runs; none when stderr is not a terminal
    or ``quiet``."""
    if quiet or not stderr_is_terminal():
        yield _Progress(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bar:
        yield _Progress(bar, bar.add_task(description, total=total))


def say(message: str, *, quiet: bool = False) -> None:
    """A status line on stderr (what a writing command did or will do)."""
    if not quiet:
        click.echo(message, err=True)


def warn(message: str) -> None:
    """A ``warning:`` line on stderr: something the command did not do that the user
    must know of (``--quiet`` does not hide it)."""
    click.echo(f"warning: {message}", err=True)


class _WarningLines(logging.Handler):
    """The library's warnings as ``warning:`` lines on stderr (see
    :func:`show_library_warnings`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            warn(record.getMessage())
        except Exception:
            self.handleError(record)


def show_library_warnings(show: bool) -> None:
    """Show the library's warnings (logger ``aurora_storage``, WARNING and above) as
    ``warning:`` lines on stderr, or stop (``show`` false: ``-v`` logs them itself).

    What an open did to get a store open is such a warning - a RocksDB open that drops
    or leaves out a torn write-ahead log tail, or what ``wal_recovery=point_in_time``
    dropped - and the user of a command must see it without ``-v``
    (docs/operations.md: watch ``recovery``)."""
    logger = logging.getLogger("aurora_storage")
    for handler in [h for h in logger.handlers if isinstance(h, _WarningLines)]:
        logger.removeHandler(handler)
    if show:
        logger.addHandler(_WarningLines(logging.WARNING))
