"""Opening and closing the RocksDB engine: the damage checks before an open (a MANIFEST
cut short, a deleted write-ahead log, zeros where log records should be, a store written
in rocksdict's pickle mode), strict write-ahead log recovery that drops only a crash's
torn tail, point-in-time recovery when asked, the engine's options, and a close that
waits for calls in flight."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import re
import struct
import sys
import time
from typing import Any, NamedTuple

import rocksdict

from aurora_storage._stores import MARKER_NAME, open_stores
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    StorageError,
    StorageFullError,
    StoreLockedError,
)

from ._config import RocksDBConfig
from ._damage import (
    LogTail,
    damaged_files,
    dropped_in_info_log,
    log_chain_problem,
    manifest_numbers,
    scan_log,
    wal_files,
    written_before_boot,
    zeros_in_log,
)
from ._errors import translate

__all__ = [
    "check_raw_mode",
    "close_when_free",
    "free_bytes",
    "open_db",
    "open_space",
    "prune_info_logs",
    "store_at_rest",
]

_COMPRESSION = {
    "none": rocksdict.DBCompressionType.none,
    "snappy": rocksdict.DBCompressionType.snappy,
    "zstd": rocksdict.DBCompressionType.zstd,
    "lz4": rocksdict.DBCompressionType.lz4,
}
#: Info log files (LOG and LOG.old.*) RocksDB keeps; older ones are deleted at open.
_KEEP_INFO_LOGS = 3
_log = logging.getLogger("aurora_storage.rocksdb")
#: Free bytes an open needs beyond the write-ahead log it writes out: a new MANIFEST,
#: OPTIONS file, info log and log (measured: about 60 KB; the rest is headroom).
OPEN_MARGIN = 256 * 1024
#: Seconds close() waits for calls in flight on other threads before giving up.
_CLOSE_WAIT = 300.0
#: Seconds a read_only open beside a live writer keeps trying for a consistent view.
_READ_ONLY_PATIENCE = 10.0


def close_when_free(db: Any) -> None:
    """Close the engine once no other thread is inside a call on it.

    rocksdict refuses ``close()`` with "Already borrowed" while another thread is inside
    a call that released the GIL (a multi-get, an iterator step). New calls can no
    longer reach the engine (the backend dropped its reference before calling this), so
    the calls in flight finish and the close then goes through.
    """
    deadline = time.monotonic() + _CLOSE_WAIT
    delay = 0.0005
    while True:
        try:
            db.close()
            return
        except Exception as exc:
            if "already borrowed" not in str(exc).lower() or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def free_bytes(path: str) -> int | None:
    """Bytes free for this process on the filesystem of ``path`` (``None``: unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def open_space(path: str) -> tuple[int, int]:
    """``(needed, wal)``: about how many bytes must be free to open the store at
    ``path`` read-write, and how many its write-ahead logs hold.

    A read-write open replays the logs into memtables and writes them out as a table
    file before it returns (RocksDB's default, ``avoid_flush_during_recovery=false``;
    rocksdict does not expose that option): the table file is about the size of the
    logs' records, up to ``write_buffer_size`` x ``max_write_buffer_number`` of them.
    Compression may make it smaller; the estimate does not count on that.
    """
    wal = 0
    for log in wal_files(path):
        try:
            wal += os.path.getsize(log)
        except OSError:
            pass
    return wal + wal // 16 + OPEN_MARGIN, wal


def prune_info_logs(path: str) -> None:
    """Delete the oldest ``LOG.old.*`` info logs, keeping ``_KEEP_INFO_LOGS`` info logs
    with ``LOG`` (as RocksDB's ``keep_log_file_num`` does after an open).

    Every read-write open renames the info log ``LOG`` to ``LOG.old.<time>`` and starts
    a new one; RocksDB deletes the surplus only after an open succeeds. Opens that fail
    for lack of space (a service restarting, the backend retrying its reopen) would
    otherwise leave one more file each on the full disk (32 retries: 724 KB).
    """
    try:
        names = [n for n in os.listdir(path) if n.startswith("LOG.old.")]
    except OSError:
        return
    # The suffix is the rename time in microseconds: numeric order is age order.
    names.sort(key=lambda n: (len(n), n))
    for name in names[: max(0, len(names) - (_KEEP_INFO_LOGS - 1))]:
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass


def _open_full_error(config: RocksDBConfig, exc: BaseException) -> StorageFullError:
    """The StorageFullError of a read-write open that ran out of space: how much space
    the open needs, and why."""
    path = config.path
    needed, wal = open_space(path)
    free = free_bytes(path)
    now = "" if free is None else f"; {free:,} bytes free now"
    if not os.path.exists(os.path.join(path, "CURRENT")):
        return StorageFullError(
            f"no space left to create the RocksDB store {path}: it needs about "
            f"{needed:,} bytes free{now}. Free space on that filesystem and retry. Engine "
            f"message: {exc}",
            backend="rocksdb",
            path=path,
        )
    return StorageFullError(
        f"no space left to open the RocksDB store {path}: a read-write open writes the "
        f"records of its write-ahead log ({wal:,} bytes) out as a table file first, so it "
        f"needs up to about {needed:,} bytes free (less where compression shrinks the "
        f"records){now}. Free space on that filesystem and open it again: every "
        f"acknowledged write is in the log, nothing is lost. Engine message: {exc}",
        backend="rocksdb",
        path=path,
    )


def open_db(
    config: RocksDBConfig,
    secondary_tmp: str | None,
    *,
    engine_path: str | None = None,
    wal_hint: str | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """Open the engine (see ``_open_db_once``); a ``read_only`` open beside a live writer
    is repeated until it is a consistent view.

    ``engine_path``: the directory the engine opens instead of ``config.path``, a
    directory of symbolic links to its files (``import-seed`` reads a store it must not
    write to through one: rocksdict writes its side file at every open). The logs, the
    MANIFEST and the lock are judged in ``config.path``, and every message names the
    files there, never the links. ``wal_hint``: what to do about a damaged write-ahead
    log, replacing :data:`_WAL_HINT` (whose advice, a read-write open, does not apply
    to a store aurora-storage may not write).

    RocksDB's read-only open reads the MANIFEST, then lists and replays the write-ahead
    logs it names. A live writer that finishes a flush in between records the flushed
    table file in a MANIFEST edit the open did not read and deletes the flushed log: the
    view then lacks that log's writes while holding later ones (seen: 42 of 54 opens
    beside a writer with 64 KiB memtables had holes, and some failed with "No such
    file"). A flush always appends to the MANIFEST before it deletes a log, so an open
    during which the MANIFEST did not change saw a whole chain; any other open is
    closed and tried again.

    Raises:
        StoreLockedError: a ``read_only`` open beside a writer that flushes too often
            for a consistent view within ``_READ_ONLY_PATIENCE`` seconds (use
            ``mode=secondary``, built to follow a live writer).
    """
    opening = functools.partial(
        _open_db_once, engine_path=engine_path or config.path, wal_hint=wal_hint or _WAL_HINT
    )
    if config.mode != "read_only":
        return opening(config, secondary_tmp)
    path = config.path
    deadline = time.monotonic() + _READ_ONLY_PATIENCE
    attempt = 0
    last: StorageError | None = None
    while True:
        before = _manifest_state(path)
        try:
            db, recovery = opening(config, secondary_tmp)
        except StorageError as exc:
            if store_at_rest(path):
                raise
            last = exc
        else:
            if _manifest_state(path) == before:
                return db, recovery
            close_when_free(db)
        attempt += 1
        if time.monotonic() > deadline:
            break
        time.sleep(min(0.002 * attempt, 0.05))
    raise StoreLockedError(
        f"the RocksDB store {path} is being written by another process that flushes too "
        f"often for a consistent read-only view ({attempt} tries in "
        f"{_READ_ONLY_PATIENCE:.0f} s). Open it with mode=secondary, which follows a live "
        "writer, or try again when it is quieter",
        backend="rocksdb",
        path=path,
    ) from last


def _manifest_state(path: str) -> tuple[str, int, int] | None:
    """The MANIFEST's identity and size (``CURRENT``'s text, size, modification time in
    ns): what changes whenever a writer records a flush or compaction."""
    try:
        with open(os.path.join(path, "CURRENT"), encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
        st = os.stat(os.path.join(path, name))
    except OSError:
        return None
    return name, st.st_size, st.st_mtime_ns


def _no_live_writer(path: str) -> bool:
    """Whether no process holds the store's ``LOCK`` (RocksDB's fcntl lock) right now,
    so its files are at rest. A process that already holds a handle of this store
    shares it through ``open_stores`` and never gets here (POSIX locks are per process:
    closing any descriptor of ``LOCK`` would release our own)."""
    try:
        fd = os.open(os.path.join(path, "LOCK"), os.O_RDONLY)
    except OSError:
        return True  # no LOCK file: nothing has it open
    try:
        if _GETLK_LAYOUT is not None:
            # Asks without taking the lock: a probe that takes it, however briefly,
            # makes a writer opening in that instant fail (RocksDB does not wait).
            probe = struct.pack(_GETLK_LAYOUT, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            got = fcntl.fcntl(fd, fcntl.F_GETLK, probe)
            return bool(struct.unpack(_GETLK_LAYOUT, got)[0] == fcntl.F_UNLCK)
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


#: ``struct flock`` (l_type, l_whence, l_start, l_len, l_pid) where its layout is known:
#: 64-bit Linux. Elsewhere the probe takes a shared lock for an instant instead.
_GETLK_LAYOUT = "hhqqi4x" if sys.platform == "linux" and sys.maxsize > 2**32 else None


def store_at_rest(path: str) -> bool:
    """Whether no writer has the store open - none in this process (``open_stores``:
    probing our own ``LOCK`` would release it) and none elsewhere (``LOCK``) - so its
    write-ahead logs are at rest and a torn record in them is not one being written."""
    return open_stores.users(path) == 0 and _no_live_writer(path)


def _open_db_once(
    config: RocksDBConfig, secondary_tmp: str | None, *, engine_path: str, wal_hint: str
) -> tuple[Any, dict[str, Any] | None]:
    """Open the engine on ``config.path`` (which exists; the engine itself on
    ``engine_path``, see :func:`open_db`): the damage checks, strict write-ahead log
    recovery with a crash's torn tail dropped, or point-in-time recovery when asked.
    Returns the engine and what recovery did (``None``: nothing).

    Every mode judges the logs alike: a ``read_only`` or ``secondary`` open of a store
    no writer has open (its files at rest) refuses what a read-write open refuses and
    reports the torn tail it leaves out as a read-write open reports the one it drops
    (it changes no file: the tail stays for the next read-write open to drop). Beside
    a live writer the newest record may still be being written: that open tolerates a
    torn tail, as the writer's own open judged the logs - and reports it
    (:func:`_live_tail_report`): the holder of ``LOCK`` need not be a writer.

    Raises:
        CorruptionError: damaged files (named), StoreLockedError, StorageFullError, ...
    """
    path = config.path
    recovery: dict[str, Any] | None = None
    at_rest = config.mode != "read_write" and store_at_rest(path)
    try:
        if (config.mode != "secondary" or at_rest) and os.path.exists(
            os.path.join(path, "CURRENT")
        ):
            checks = _check_manifest(config)
        else:
            checks = _Checks()
        if config.mode == "secondary" and at_rest:
            # The engine's secondary open recovers to the first torn record without a
            # word (point-in-time, its only mode that can follow a writer): judge the
            # framing of the logs here, as the read-write open's engine would.
            recovery = _judge_logs(config, wal_hint)
        if config.mode == "read_only":
            access = rocksdict.AccessType.read_only()
        elif config.mode == "secondary":
            sec = config.secondary_path or secondary_tmp
            assert sec is not None  # _open_engine makes a temporary one
            access = rocksdict.AccessType.secondary(sec)
        else:
            access = rocksdict.AccessType.read_write()
        try:
            db = _engine_open(path, engine_path, _engine_options(config, at_rest=at_rest), access)
        except Exception as exc:
            if config.mode == "secondary" or not _is_corruption(exc):
                raise
            strict = config.wal_recovery == "strict" and (config.mode == "read_write" or at_rest)
            if not strict:
                raise _corruption(exc, config, wal_hint) from exc
            # Strict: the engine refused any damage in the logs. A crash's torn tail
            # is no damage: drop it (as RocksDB's default mode does) and say so.
            tail = None if damaged_files(str(exc)) else _crash_torn_tail(path)
            if tail is None:
                raise _corruption(exc, config, wal_hint) from exc
            db = _engine_open(
                path,
                engine_path,
                _engine_options(config, at_rest=at_rest, tolerate_tail=True),
                access,
            )
            recovery = _torn_tail_report(
                config, tail, "the record being written when the process died"
            )
        crash = checks.crash_zeros
        if crash is not None and recovery is None and config.wal_recovery == "strict":
            # The engine read the log up to the zeros without a word: say so.
            recovery = _torn_tail_report(
                config,
                crash,
                "zero-filled: what an OS crash leaves of writes whose data had not "
                "reached the disk",
            )
        if config.mode != "read_write" and not at_rest and recovery is None:
            # Beside a LOCK holder the engine read past a torn record without a word:
            # say so when one is there (a record being written, or damage).
            recovery = _live_tail_report(config)
        if config.wal_recovery == "point_in_time" and (config.mode == "read_write" or at_rest):
            # A read-write open's engine logs what it dropped in its info log; a
            # read-only or secondary one writes no info log: the framing says.
            dropped = dropped_in_info_log(path) if config.mode == "read_write" else _torn_logs(path)
            if checks.missing_wal is not None:
                missing = os.path.join(path, f"{checks.missing_wal:06d}.log")
                dropped.insert(0, (missing, 0, "the log file is missing"))
            dropped.extend(checks.zeros_dropped)
            if crash is not None:
                dropped.append(
                    (
                        crash.path,
                        crash.size - crash.complete_end,
                        "zero-filled tail (an OS crash's doing)",
                    )
                )
            if dropped:
                recovery = {
                    "mode": "point_in_time",
                    "dropped": [{"file": f, "bytes": n, "reason": why} for f, n, why in dropped],
                    "bytes_dropped": sum(n for _, n, _ in dropped),
                }
                _log.warning(
                    "RocksDB store %s opened with wal_recovery=point_in_time %s %d bytes "
                    "of its write-ahead log: %s",
                    path,
                    "dropped" if config.mode == "read_write" else f"(mode={config.mode}) left out",
                    recovery["bytes_dropped"],
                    "; ".join(f"{f}: {n} bytes ({why})" for f, n, why in dropped),
                )
        if config.sync:
            wo = rocksdict.WriteOptions()
            wo.sync = True
            db.set_write_options(wo)
    except Exception as exc:
        if not isinstance(exc, StorageError) and _is_corruption(exc):
            raise _corruption(exc, config, wal_hint) from exc
        err = translate(exc, config, "opening")
        if isinstance(err, StorageFullError) and err is not exc and config.mode == "read_write":
            prune_info_logs(path)
            err = _open_full_error(config, exc)
        raise err from exc
    return db, recovery


def _engine_open(path: str, engine_path: str, options: Any, access: Any) -> Any:
    """The engine opened on ``engine_path``; when that is a directory of links to the
    files of ``path`` (see :func:`open_db`), an engine error names the files of
    ``path``: the user's files, not the links of a temporary directory that is gone by
    the time the message is read."""
    try:
        return rocksdict.Rdict(engine_path, options=options, access_type=access)
    except Exception as exc:
        if engine_path == path:
            raise
        # rocksdict raises plain Exception for engine errors: the same, in the store's
        # own names (damaged_files and the messages read the text).
        raise Exception(str(exc).replace(engine_path, path)) from exc


def _torn_tail_report(config: RocksDBConfig, tail: LogTail, what: str) -> dict[str, Any]:
    """The ``recovery`` report of an open that drops (read-write) or leaves out
    (read-only, secondary: the file stays as it is) a crash's torn tail, logged as a
    warning: the tail cannot be told from the same file cut at that spot by damage
    (docs/backends/rocksdb.md, "What cannot be told"), so operators are told."""
    dropped = tail.size - tail.complete_end
    _log.warning(
        "RocksDB store %s%s the torn tail of its write-ahead log %s (%d bytes, %s%s). A "
        "cut of the file at that spot looks the same: if no writer of this store was "
        "killed and the machine did not crash, records after it are lost; restore the "
        "store from a backup",
        config.path,
        ": dropped" if config.mode == "read_write" else f" (mode={config.mode}): opened without",
        tail.path,
        dropped,
        what,
        ""
        if config.mode == "read_write"
        else "; the file is unchanged: a read-write open drops it",
    )
    return {"mode": "strict", "torn_tail": {"file": tail.path, "bytes_dropped": dropped}}


def _live_tail_report(config: RocksDBConfig) -> dict[str, Any] | None:
    """The ``recovery`` report of a read-only or secondary open made while a process
    holds the store's ``LOCK``, when a write-ahead log ends inside a record (or its
    framing breaks): the engine was told to tolerate that (the writer may be appending
    the newest record) and read the logs up to it without a word. Logged as a warning.
    ``None`` when every log ends on a whole record, or when the torn newest log grew
    while we looked (a writer is appending it: the torn record was being written).

    Whether the tail is a record being written or damage cannot be told for sure: a
    holder of ``LOCK`` need not be a writer, and a writer paused mid-append leaves the
    same bytes as a cut. The framing gives a hint (``write_shaped``): a write in
    progress stops where a killed write stops (see _damage.py: a page boundary, or
    between a header and its payload or two fragments); a log ending inside a record's
    payload elsewhere is most likely damage."""
    logs = wal_files(config.path)
    for log in logs:
        try:
            tail = scan_log(log)
        except OSError:
            continue  # unreadable, or deleted by the writer while we look
        if not tail.torn and tail.problem is None:
            continue
        if log == logs[-1]:
            try:
                grew = os.path.getsize(log) != tail.size
            except OSError:
                grew = True  # deleted: the writer moved on
            if grew:
                return None
        dropped = tail.size - tail.complete_end
        shaped = tail.problem is None and tail.crash_shaped
        _log.warning(
            "RocksDB store %s (mode=%s) opened while another process holds its LOCK, "
            "without the torn tail of its write-ahead log %s (%d bytes from offset %d%s). "
            "%s If no writer of this store is running, the records after that point are "
            "lost: restore the store from a backup",
            config.path,
            config.mode,
            log,
            dropped,
            tail.complete_end,
            f"; {tail.problem}" if tail.problem else "",
            "A record still being written looks like this, and so does a cut of the log "
            "there; which it is cannot be told while the LOCK is held."
            if shaped
            else "It ends where no write in progress stops (inside a record, not at a page "
            "or fragment boundary): most likely the log is damaged.",
        )
        return {
            "mode": config.wal_recovery,
            "torn_tail": {
                "file": log,
                "bytes_dropped": dropped,
                "live_writer": True,
                "write_shaped": shaped,
            },
        }
    return None


def _torn_logs(path: str) -> list[tuple[str, int, str]]:
    """``(file, bytes, reason)`` for each write-ahead log that ends inside a record or
    whose framing breaks: what a point-in-time recovery leaves out of it (at least)."""
    out: list[tuple[str, int, str]] = []
    for log in wal_files(path):
        try:
            tail = scan_log(log)
        except OSError:
            continue  # unreadable: the engine reports it
        if tail.problem is not None or tail.torn:
            why = tail.problem or f"it ends inside a record that starts at {tail.complete_end}"
            out.append((log, tail.size - tail.complete_end, why))
    return out


def _judge_logs(config: RocksDBConfig, wal_hint: str) -> dict[str, Any] | None:
    """A secondary open at rest: refuse write-ahead logs a read-write open refuses (a
    record cut where no crash ends a log, a torn log that is not the newest, broken
    framing); return the report of a crash's torn tail in the newest (``None``: the
    logs end on whole records). ``wal_recovery=point_in_time`` refuses nothing here
    (its report is made by the caller).

    Raises:
        CorruptionError: the logs are damaged (the file named).
    """
    if config.wal_recovery != "strict":
        return None
    bad = _torn_logs(config.path)
    if not bad:
        return None
    tail = _crash_torn_tail(config.path)
    if tail is not None:
        return _torn_tail_report(config, tail, "the record being written when the process died")
    file, _, why = bad[0]
    raise CorruptionError(
        f"the RocksDB store {config.path} is damaged: {file}: {why}, which no crash leaves "
        f"(the read-write open refuses it too). {wal_hint}",
        backend="rocksdb",
        path=file,
    )


#: What to do about a damaged write-ahead log found by an open that does not write.
_WAL_HINT = (
    "Restore the store from a backup, or open it read-write with "
    "wal_recovery=point_in_time to keep every record before the damage and drop the rest "
    "(what is dropped is logged and reported in stats()['recovery'])"
)


def _is_corruption(exc: BaseException) -> bool:
    low = str(exc).lower()
    return "corruption" in low or "checksum mismatch" in low


def _corruption(
    exc: BaseException, config: RocksDBConfig, wal_hint: str = _WAL_HINT
) -> CorruptionError:
    """The CorruptionError of a refused open, naming the damaged file(s); ``wal_hint``
    says what to do about a damaged write-ahead log found by an open that does not
    write (see :func:`open_db`)."""
    path = config.path
    text = str(exc)
    files = damaged_files(text)
    wal = False
    if not files and "CURRENT" in text:
        files = [os.path.join(path, "CURRENT")]
    if not files:
        if config.mode == "read_write":
            files = list(dict.fromkeys(f for f, _, _ in dropped_in_info_log(path)))
        else:
            # A read-only or secondary open writes no info log (the one there is an
            # earlier open's): the framing names a torn log.
            files = [f for f, _, _ in _torn_logs(path)]
        wal = bool(files)
    if not files and ("record" in text or "checksum mismatch" in text.lower()):
        files, wal = wal_files(path), True
    named = ", ".join(files) if files else "(the engine named no file)"
    hint = "Restore the store from a backup"
    if wal and config.mode == "read_write" and config.wal_recovery == "strict":
        hint += (
            ", or open it with wal_recovery=point_in_time to keep every record before the "
            "damage and drop the rest (what is dropped is logged and reported in "
            "stats()['recovery'])"
        )
    elif wal and config.wal_recovery == "strict":
        hint = wal_hint
    # The engine's message may span lines and end with its own period: one sentence.
    said = " ".join(text.split()).rstrip(".")
    return CorruptionError(
        f"the RocksDB store {path} is damaged: {named}: {said}. {hint}",
        backend="rocksdb",
        path=files[0] if len(files) == 1 else path,
    )


def _crash_torn_tail(path: str) -> LogTail | None:
    """The torn tail a crash left in the newest write-ahead log, if that is the only
    thing wrong with the logs (every older log complete), else ``None``."""
    logs = wal_files(path)
    if not logs:
        return None
    try:
        tails = [scan_log(f) for f in logs]
    except OSError:
        return None
    *older, newest = tails
    if any(t.torn or t.problem for t in older):
        return None
    if newest.problem or not newest.torn or not newest.crash_shaped:
        return None
    return newest


class _Checks(NamedTuple):
    """What the checks before an open found that the open goes on with."""

    #: the number of the write-ahead log the MANIFEST needs and that is missing
    #: (``wal_recovery=point_in_time`` only; otherwise it is refused)
    missing_wal: int | None = None
    #: the newest log's zero-filled tail that an OS crash may have left
    crash_zeros: LogTail | None = None
    #: ``(file, bytes, reason)`` of zeros a ``wal_recovery=point_in_time`` open drops
    zeros_dropped: tuple[tuple[str, int, str], ...] = ()


def _check_manifest(config: RocksDBConfig) -> _Checks:
    """Refuse a MANIFEST that was cut short or ends in zeros: RocksDB would open the
    state of its last complete record without a word - and then delete the table files
    the lost records listed (a store of 20,000 records reopened with a fraction of
    them, or none). Then check the write-ahead logs (:func:`_check_wal_present`,
    :func:`_check_wal_zeros`)."""
    path = config.path
    try:
        with open(os.path.join(path, "CURRENT"), encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
    except OSError:
        return _Checks()  # the engine reports a missing or unreadable CURRENT itself
    if not re.fullmatch(r"MANIFEST-\d+", name):
        raise CorruptionError(
            f"the RocksDB store {path} is damaged: its CURRENT file does not name a "
            f"MANIFEST ({name[:40]!r}). Restore the store from a backup",
            backend="rocksdb",
            path=os.path.join(path, "CURRENT"),
        )
    manifest = os.path.join(path, name)
    if not os.path.exists(manifest):
        raise CorruptionError(
            f"the RocksDB store {path} is damaged: its CURRENT file names {name}, which does "
            "not exist (CURRENT or the MANIFEST is damaged or was deleted). Restore the store "
            "from a backup",
            backend="rocksdb",
            path=os.path.join(path, "CURRENT"),
        )
    for attempt in range(3):
        try:
            tail = scan_log(manifest)
        except OSError:
            return _Checks()  # the engine reports a missing MANIFEST itself
        zeros = tail.zeros_at is not None and (tail.zero_hole or not written_before_boot(manifest))
        if tail.problem is None and (not tail.torn or tail.crash_shaped) and not zeros:
            missing = _check_wal_present(config, manifest)
            crash, dropped = _check_wal_zeros(config, manifest)
            return _Checks(missing, crash, dropped)
        if config.mode != "read_only" or attempt == 2:
            break
        # A read-only open beside a live writer may see its MANIFEST mid-append.
        time.sleep(0.05)
    if tail.problem is None and tail.zeros_at is not None:
        what = _zeros_text(tail, "it") + (
            ": RocksDB would open the state before them and delete the table files the "
            "lost records listed"
        )
    else:
        what = tail.problem or (
            f"it ends inside a record ({tail.size} bytes, the last complete record ends "
            f"at {tail.complete_end}): the file was cut short"
        )
    raise CorruptionError(
        f"the RocksDB store {path} is damaged: {manifest}: {what}. Restore the store from a backup",
        backend="rocksdb",
        path=manifest,
    )


def _zeros_text(tail: LogTail, subject: str) -> str:
    """What is wrong with a log (``subject``: its path, or "it") holding zeros where
    records should be."""
    assert tail.zeros_at is not None
    where = (
        f"zeros from offset {tail.zeros_at:,} with records after them"
        if tail.zero_hole
        else f"zeros from offset {tail.zeros_at:,} to its end ({tail.size - tail.zeros_at:,} bytes)"
    )
    why = (
        "records after zeros are no crash's tail"
        if tail.zero_hole
        else "an OS crash can leave zeros (a file's new size reaching the disk before its "
        "data), but the file was last written after this machine booted"
    )
    return (
        f"{subject} holds {where} where records should be. RocksDB never writes zeros into "
        f"its logs and a killed process cannot leave them; {why}"
    )


def _check_wal_zeros(
    config: RocksDBConfig, manifest: str
) -> tuple[LogTail | None, tuple[tuple[str, int, str], ...]]:
    """Refuse zeros where records should be in a write-ahead log the store still needs:
    the engine reads a log up to them (or skips them) without a word, so the records
    that were there - acknowledged writes, when the log was emptied or zeroed by damage
    rather than by a crash - would be gone. A zero-filled tail of the newest log, last
    written before this machine booted, is what an OS crash leaves: returned for the
    recovery report. With ``wal_recovery=point_in_time`` a zero-filled tail of the
    newest log is opened past and returned as dropped; zeros anywhere else are refused
    in every mode (the engine would replay the records after them over the hole)."""
    path = config.path
    logs = wal_files(path)
    if not logs:
        return None, ()
    number, _ = manifest_numbers(manifest)
    if number is not None:
        logs = [f for f in logs if int(os.path.basename(f)[:-4]) >= number]
    crash: LogTail | None = None
    dropped: list[tuple[str, int, str]] = []
    for log in logs:
        try:
            tail = zeros_in_log(log)
        except OSError:
            continue  # unreadable: the engine reports it at open
        if tail is None:
            continue
        assert tail.zeros_at is not None
        tail_of_newest = log == logs[-1] and not tail.zero_hole
        if tail_of_newest and written_before_boot(log):
            crash = tail
            continue
        if (
            tail_of_newest
            and config.wal_recovery == "point_in_time"
            and config.mode == "read_write"
        ):
            dropped.append((log, tail.size - tail.zeros_at, f"zeros from offset {tail.zeros_at}"))
            continue
        if tail_of_newest and config.mode == "read_write":
            hint = (
                "Restore the store from a backup, or open it with "
                "wal_recovery=point_in_time to keep the records before the zeros (what is "
                "dropped is logged and reported in stats()['recovery'])"
            )
        else:
            hint = (
                "Restore the store from a backup. wal_recovery=point_in_time cannot help "
                "here: the engine would replay the records after the zeros over the hole"
                if not tail_of_newest
                else "Restore the store from a backup"
            )
        raise CorruptionError(
            f"the RocksDB store {path} is damaged: its write-ahead log "
            f"{_zeros_text(tail, log)}. The store would open without the records that "
            f"were there, and without a word. {hint}",
            backend="rocksdb",
            path=log,
        )
    return crash, tuple(dropped)


def _check_wal_present(config: RocksDBConfig, manifest: str) -> int | None:
    """Refuse a store whose write-ahead log was deleted: the MANIFEST names the oldest
    log that still holds data (its ``log_number``; RocksDB keeps that log, or a newer
    one, on disk at all times), and RocksDB would open without it - every acknowledged
    write only in that log gone, without a word. With ``wal_recovery=point_in_time``
    the open goes on; the missing log's number is returned for the recovery report."""
    if not os.path.exists(os.path.join(config.path, MARKER_NAME)):
        # Only a store this library initialised in place is known to keep a log: a
        # RocksDB checkpoint (a backup) legitimately holds none when its memtables were
        # flushed, and carries no marker; its first open here writes one.
        return None
    number, last_sequence = manifest_numbers(manifest)
    if number is None:
        return None
    logs = wal_files(config.path)
    # log_number 0: nothing was ever flushed, every log is needed (and none at all is
    # a store that never wrote, or one whose logs were all deleted - not told apart).
    if number == 0 or any(int(os.path.basename(f)[:-4]) >= number for f in logs):
        hole = log_chain_problem(number, last_sequence, logs)
        if hole is None or not store_at_rest(config.path):
            # A live writer (holding LOCK) creates and deletes logs while we look; its
            # own open checked the chain, and the engine reports the lock.
            return None
        file, what, missing = hole
        if missing:
            what += (
                "; the writes acknowledged in the missing log are gone, while later ones are kept"
            )
        else:
            what += (
                ". The store is refused as it is (no file changed, nothing dropped): "
                "opened, it would have the damaged log's lost writes gone and later ones kept"
            )
        raise CorruptionError(
            f"the RocksDB store {config.path} is damaged: {what}. Restore the store from a "
            "backup. wal_recovery=point_in_time cannot help here: the engine would replay "
            "the later logs over the hole instead of stopping at it",
            backend="rocksdb",
            path=file,
        )
    if config.wal_recovery == "point_in_time" and config.mode == "read_write":
        return number
    raise CorruptionError(
        f"the RocksDB store {config.path} is damaged: its write-ahead log {number:06d}.log "
        f"(named by {os.path.basename(manifest)}) is missing, so the writes acknowledged "
        "since the last flush to table files are gone. Restore the store from a backup, or "
        "open it with wal_recovery=point_in_time to keep what the table files hold",
        backend="rocksdb",
        path=os.path.join(config.path, f"{number:06d}.log"),
    )


def _engine_options(
    config: RocksDBConfig, *, at_rest: bool = False, tolerate_tail: bool = False
) -> Any:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(config.create_if_missing)
    if config.error_if_exists:
        opts.set_error_if_exists(True)
    opts.set_compression_type(_COMPRESSION[config.compression]())
    opts.set_write_buffer_size(config.write_buffer_size)
    opts.set_max_write_buffer_number(config.max_write_buffer_number)
    opts.set_min_write_buffer_number_to_merge(config.min_write_buffer_number_to_merge)
    opts.set_max_open_files(config.max_open_files)
    opts.set_max_background_jobs(config.max_background_jobs)
    # Corruption found while reading is reported instead of skipped.
    opts.set_paranoid_checks(True)
    # Every read-write open starts a new info LOG and renames the old one to LOG.old.*;
    # without a bound, one file per open piles up (38 after 38 command-line writes).
    opts.set_keep_log_file_num(_KEEP_INFO_LOGS)
    modes = rocksdict.DBRecoveryMode
    if config.mode == "secondary":
        pass  # a secondary follows the live logs of its primary: the engine's default
    elif tolerate_tail or (config.mode == "read_only" and not at_rest):
        # A read-only open beside a live writer, whose newest record may still be being
        # written; damage before the tail is still refused. (At rest a read-only open
        # judges the logs as a read-write open does: see _open_db_once.)
        opts.set_wal_recovery_mode(modes.tolerate_corrupted_tail_records())
    elif config.wal_recovery == "point_in_time":
        opts.set_wal_recovery_mode(modes.point_in_time())
    else:
        # Strict: every record of every log must be whole; open() tells a crash's torn
        # tail from damage itself (see _damage.py).
        opts.set_wal_recovery_mode(modes.absolute_consistency())
    table = rocksdict.BlockBasedOptions()
    if config.bloom_filter:
        table.set_bloom_filter(config.bloom_bits_per_key, False)
    table.set_block_cache(rocksdict.Cache(config.block_cache_size))
    opts.set_block_based_table_factory(table)
    return opts


def check_raw_mode(path: str) -> None:
    """Refuse a store written by rocksdict in its default (pickle) mode: opening it in raw
    mode would rewrite its side file and hand back pickled bytes."""
    side = os.path.join(path, "rocksdict-config.json")
    try:
        with open(side, "rb") as f:
            text = f.read()
    except OSError:
        return
    try:
        raw = json.loads(text).get("raw_mode", True)
    except (ValueError, AttributeError):
        return
    if raw is False:
        raise ConfigurationError(
            f"{path} was written by rocksdict in its default (pickle) mode, not by "
            "aurora-storage; it cannot be opened as an aurora-storage store",
            backend="rocksdb",
            path=path,
        )
