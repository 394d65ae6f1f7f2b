"""Telling a crash's torn tail from damage in RocksDB's log files (write-ahead logs and
the MANIFEST), and naming the damaged file.

RocksDB writes both kinds of log in the same framing: 32 KiB blocks of physical records,
each a 7-byte header (CRC32C, 2-byte length, type; 11 bytes for the recyclable types)
and a payload; a logical record is one FULL fragment or FIRST, MIDDLE..., LAST. The
engine checks every CRC itself. What it cannot tell - and what this module decides - is
whether a log that *ends inside a record* was torn by a crash (normal: the write was
never acknowledged) or cut short by damage (acknowledged records are gone):

* A process killed in ``write()`` leaves the file ending at a page boundary (the kernel
  copies page by page and stops between pages when the kill arrives), or at a boundary
  between RocksDB's own buffer flushes, which fall between a header and its payload or
  between two fragments.
* A crash of the OS can leave a zero-filled tail: a file's new size can reach the disk
  before its data, on some filesystems. Nothing else puts zeros where a record should
  be - RocksDB never writes them (its log reader skips them as the preallocated space
  of the mmap writes of old versions), and a killed process leaves the kernel's copy of
  what it wrote. So zeros are a crash's tail only in a log last written before the
  machine booted (:func:`written_before_boot`); elsewhere they are damage, and RocksDB
  would replay the log up to them without a word.

Anything else - a log ending in the middle of a payload at an unaligned offset, a torn
record in a log that is not the newest - is damage. A log cut exactly at a record
boundary (emptied, in the extreme) cannot be told from a shorter log: that is the limit
of any check without an out-of-band record of the log's length (documented in
docs/backends/rocksdb.md).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

__all__ = [
    "LogTail",
    "damaged_files",
    "log_chain_problem",
    "log_damage",
    "log_sequence_span",
    "manifest_log_number",
    "manifest_numbers",
    "scan_log",
    "wal_files",
    "written_before_boot",
    "zeros_in_log",
]

_BLOCK = 32 * 1024
_PAGE = 4096
_HEADER = 7
_RECYCLABLE_HEADER = 11
# Record types: 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST; 5-8 their recyclable forms; 9/10
# metadata records (compression type, timestamp sizes) and 11/12 recyclable forms.
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_KNOWN_TYPES = set(range(1, 13))


@dataclass(frozen=True, slots=True)
class LogTail:
    """What the end of one log file looks like.

    Attributes:
        path: the file.
        size: its size in bytes.
        complete_end: offset just after the last complete logical record.
        crash_shaped: the bytes after ``complete_end`` are what a crash leaves (see the
            module docstring); always true when the log ends on a record.
        problem: text for a message when the framing itself is broken (a length that
            runs past its block, an unknown record type), else ``None``.
        zeros_at: where zeros begin in place of a record (a record header of zeros, or
            zeros after the last whole fragment), else ``None``.
        zero_hole: whether something other than zeros follows them (records after a
            hole: never a crash's tail).
    """

    path: str
    size: int
    complete_end: int
    crash_shaped: bool
    problem: str | None = None
    zeros_at: int | None = None
    zero_hole: bool = False

    @property
    def torn(self) -> bool:
        """Whether the log ends inside a record."""
        return self.complete_end < self.size


def scan_log(path: str) -> LogTail:
    """Walk the framing of one log file (no CRCs: the engine checks those) and describe
    its tail. Reads the whole file once.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    return _scan(path, data)


def zeros_in_log(path: str) -> LogTail | None:
    """The tail of one log file when zeros stand where a record should be (see
    :class:`LogTail`'s ``zeros_at``), else ``None``. Cheap for most logs: without a run
    of seven zero bytes (a record header of zeros) and with a last byte that is not
    zero there is nothing to walk.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    if b"\x00" * _HEADER not in data and data[-1:] != b"\x00":
        return None
    tail = _scan(path, data)
    return tail if tail.zeros_at is not None else None


def _scan(path: str, data: bytes) -> LogTail:
    size = len(data)
    pos = 0
    complete_end = 0  # after the last complete logical record
    phys_end = 0  # after the last complete physical fragment
    in_record = False
    zeros_at: int | None = None
    hole = False
    while pos < size:
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:
            # Block trailer: RocksDB pads it with zeros.
            pos += left_in_block
            if not in_record:
                complete_end = min(pos, size)
            phys_end = min(pos, size)
            continue
        if size - pos < _HEADER:
            break  # a partial header
        length = data[pos + 4] | (data[pos + 5] << 8)
        rtype = data[pos + 6]
        if rtype == 0 and length == 0:
            # Zeros where a record should start: an OS crash's zero fill, or damage
            # (RocksDB skips them silently); the log is read up to here. Records after
            # them make a hole (the header's checksum may be a torn write's prefix).
            zeros_at = pos
            hole = bool(data[pos + 4 :].strip(b"\x00"))
            break
        if rtype not in _KNOWN_TYPES:
            return LogTail(path, size, complete_end, False, f"unknown record type {rtype} at {pos}")
        header = _RECYCLABLE_HEADER if rtype in (5, 6, 7, 8, 11, 12) else _HEADER
        if header + length > left_in_block:
            return LogTail(
                path,
                size,
                complete_end,
                False,
                f"record length {length} at {pos} runs past its block",
            )
        if pos + header + length > size:
            break  # a partial payload
        pos += header + length
        phys_end = pos
        kind = rtype - 4 if 5 <= rtype <= 8 else rtype
        if kind in (_FULL, _LAST) or kind > _LAST:
            in_record = False
            complete_end = pos
        elif kind == _FIRST:
            in_record = True
        # MIDDLE: still inside the record
    if complete_end >= size:
        return LogTail(path, size, size, True)
    tail = data[phys_end:]
    # Only bytes there can be zeros: a log ending right after a whole fragment (a kill
    # between two fragments of a record, on a block boundary) holds none.
    zero_tail = bool(tail) and not tail.strip(b"\x00")
    if zeros_at is None and zero_tail:
        zeros_at = phys_end  # zeros after the last whole fragment
    crash_shaped = (
        size % _PAGE == 0
        or size == phys_end
        or size - phys_end in (_HEADER, _RECYCLABLE_HEADER)
        or zero_tail
    )
    return LogTail(path, size, complete_end, crash_shaped, None, zeros_at, hole)


#: Seconds after the boot during which a file's modification still counts as before it
#: (the boot time is read to the second, and clocks are set during the boot).
_BOOT_SLACK = 120.0


def boot_time() -> float | None:
    """When the running kernel booted (seconds since the epoch), or ``None`` where that
    is not known (then no file is judged by it)."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return None
    return time.time() - time.clock_gettime(boottime)


def written_before_boot(path: str) -> bool:
    """Whether ``path`` was last modified before the machine booted - so an OS crash
    may have come between its last write and now, and a zero-filled tail may be that
    crash's doing. ``True`` where the boot time or the file's time cannot be read (the
    check then accepts what it accepted before it existed)."""
    boot = boot_time()
    if boot is None:
        return True
    try:
        return os.stat(path).st_mtime < boot + _BOOT_SLACK
    except OSError:
        return True


def wal_files(path: str) -> list[str]:
    """The store's write-ahead logs, oldest first."""
    try:
        names = [n for n in os.listdir(path) if re.fullmatch(r"\d+\.log", n)]
    except OSError:
        return []
    return [os.path.join(path, n) for n in sorted(names, key=lambda n: int(n[:-4]))]


_FILE_RE = re.compile(r"(/[^\s:;,']*?(?:\d+\.(?:log|sst|blob)|MANIFEST-\d+|CURRENT|OPTIONS-\d+))")
_DROP_RE = re.compile(r"(/\S+\.log): dropping (\d+) bytes; (.*)$")


def damaged_files(text: str) -> list[str]:
    """The engine files an engine message names (``/dir/000012.sst``, ``MANIFEST-...``)."""
    return list(dict.fromkeys(_FILE_RE.findall(text)))


def dropped_in_info_log(path: str) -> list[tuple[str, int, str]]:
    """``(log file, bytes, reason)`` for each part of a write-ahead log the engine
    dropped (or refused) during its last open, from its info log ``LOG``."""
    out: list[tuple[str, int, str]] = []
    try:
        with open(os.path.join(path, "LOG"), encoding="utf-8", errors="replace") as f:
            for line in f:
                m = _DROP_RE.search(line.rstrip("\n"))
                if m:
                    out.append((m.group(1), int(m.group(2)), m.group(3).strip()))
    except OSError:
        pass
    return out


def _records(data: bytes) -> list[bytes] | None:
    """The logical records of a log file's bytes, or ``None`` if its framing is not
    understood (the caller then checks nothing)."""
    out: list[bytes] = []
    pos, size = 0, len(data)
    parts: list[bytes] | None = None
    while pos < size:
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:
            pos += left_in_block
            continue
        if size - pos < _HEADER:
            break
        length = data[pos + 4] | (data[pos + 5] << 8)
        rtype = data[pos + 6]
        if rtype == 0 and length == 0:
            break
        if rtype not in _KNOWN_TYPES:
            return None
        header = _RECYCLABLE_HEADER if rtype in (5, 6, 7, 8, 11, 12) else _HEADER
        if pos + header + length > size:
            break
        payload = data[pos + header : pos + header + length]
        pos += header + length
        kind = rtype - 4 if 5 <= rtype <= 8 else rtype
        if kind == _FULL:
            out.append(payload)
        elif kind == _FIRST:
            parts = [payload]
        elif kind == _MIDDLE and parts is not None:
            parts.append(payload)
        elif kind == _LAST and parts is not None:
            parts.append(payload)
            out.append(b"".join(parts))
            parts = None
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _slice(data: bytes, pos: int) -> int:
    length, pos = _varint(data, pos)
    if pos + length > len(data):
        raise ValueError("bad slice")
    return pos + length


# VersionEdit tags (RocksDB db/version_edit.h).
_LOG_NUMBER = 2
_LAST_SEQUENCE = 4
_SAFE_IGNORE = 1 << 13


def _edit_fields(edit: bytes) -> tuple[int | None, int | None]:
    """The ``log_number`` field of one VersionEdit of the default column family and its
    ``last_sequence`` field (database-wide), each ``None`` when absent. Raises
    ``ValueError`` on a tag it does not know how to skip."""
    pos, found, family, last_sequence = 0, None, 0, None
    while pos < len(edit):
        tag, pos = _varint(edit, pos)
        if tag in (_LOG_NUMBER, 3, 4, 9, 10):  # log, next file, last seq, prev log, min log
            value, pos = _varint(edit, pos)
            if tag == _LOG_NUMBER:
                found = value
            elif tag == _LAST_SEQUENCE:
                last_sequence = value
        elif tag == 1 or tag == 201:  # comparator name, column family add
            pos = _slice(edit, pos)
        elif tag in (5,):  # compact cursor: level, key
            _, pos = _varint(edit, pos)
            pos = _slice(edit, pos)
        elif tag == 6:  # deleted file: level, number
            _, pos = _varint(edit, pos)
            _, pos = _varint(edit, pos)
        elif tag in (7, 100, 102, 103):  # new file
            _, pos = _varint(edit, pos)  # level
            _, pos = _varint(edit, pos)  # number
            if tag == 102:
                _, pos = _varint(edit, pos)  # path id
            _, pos = _varint(edit, pos)  # size
            pos = _slice(edit, pos)  # smallest
            pos = _slice(edit, pos)  # largest
            if tag != 7:
                _, pos = _varint(edit, pos)  # smallest seqno
                _, pos = _varint(edit, pos)  # largest seqno
            if tag == 103:
                while True:
                    field, pos = _varint(edit, pos)
                    if field == 1:  # kTerminate
                        break
                    pos = _slice(edit, pos)
        elif tag in (200, 203, 300):  # column family, max column family, atomic group
            value, pos = _varint(edit, pos)
            if tag == 200:
                family = value
        elif tag == 202:  # column family drop
            pass
        elif tag & _SAFE_IGNORE:
            pos = _slice(edit, pos)
        else:
            raise ValueError(f"unknown VersionEdit tag {tag}")
    return (found if family == 0 else None), last_sequence


def manifest_log_number(manifest: str) -> int | None:
    """The oldest write-ahead log the MANIFEST says still holds data of the default
    column family (its latest ``log_number``), or ``None`` if the file cannot be read or
    parsed completely (then nothing is concluded from it)."""
    return manifest_numbers(manifest)[0]


def manifest_numbers(manifest: str) -> tuple[int | None, int | None]:
    """``(log_number, last_sequence)`` of the MANIFEST's latest state: the oldest
    write-ahead log still holding data of the default column family, and the last
    sequence number the engine had given out when it last wrote the MANIFEST (every
    write up to it is in a table file or a log at least as new as ``log_number``).
    ``(None, None)`` if the file cannot be read or parsed completely."""
    try:
        with open(manifest, "rb") as f:
            data = f.read()
    except OSError:
        return None, None
    records = _records(data)
    if records is None:
        return None, None
    number = last = None
    try:
        for edit in records:
            found, seq = _edit_fields(edit)
            if found is not None:
                number = found if number is None else max(number, found)
            if seq is not None:
                last = seq if last is None else max(last, seq)
    except ValueError:
        return None, None
    return number, last


def log_sequence_span(path: str) -> tuple[int, int] | None:
    """``(first, next)``: the sequence number of the first write batch in one
    write-ahead log and the number just after its last batch's entries, or ``None`` for
    an empty log or one whose framing is not understood.

    Every logical record of a write-ahead log is one write batch whose first 12 bytes
    are its sequence number (8 bytes) and entry count (4 bytes), little-endian (RocksDB
    db/write_batch.cc); without ``seq_per_batch`` (not used here) a batch takes one
    sequence number per entry, so the batches of consecutive logs number their entries
    without a gap.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        records = _records(f.read())
    batches = [r for r in records or () if len(r) >= 12]
    if not batches:
        return None
    first = int.from_bytes(batches[0][:8], "little")
    last = batches[-1]
    return first, int.from_bytes(last[:8], "little") + int.from_bytes(last[8:12], "little")


def log_chain_problem(
    log_number: int, last_sequence: int | None, logs: list[str]
) -> tuple[str, str, bool] | None:
    """Whether a write-ahead log between the oldest one the MANIFEST still needs and
    the newest one on disk is missing or damaged: ``(the file to name, what is wrong,
    whether a log is missing rather than damaged)``, or ``None`` when nothing is seen
    wrong.

    ``logs`` are the store's logs, oldest first (``wal_files``); ``log_number`` and
    ``last_sequence`` come from ``manifest_numbers``. Two kinds of hole are seen, both
    by sequence numbers (log file numbers are shared with table files, so they have
    gaps; and RocksDB deletes a log that never held a write, so the log the MANIFEST
    names may be absent without harm):

    * the oldest log still holding data starts after ``last_sequence + 1``: the writes
      between are in no table file (the MANIFEST had given them out when it was last
      written) and in no log - the oldest needed log is gone;
    * two logs that remain do not run on from one to the next: a log between is gone.

    Before either conclusion the logs that ARE there before the hole are examined: one
    cut inside a record, with bytes after its last whole record that are no record
    (garbage), or with zeros where records should be explains the hole itself - that
    log is named with what is wrong with it (:func:`log_damage`), not a missing one.

    RocksDB replays whatever logs it finds without checking either, so the store would
    open with the writes of the missing log gone and later writes kept. Not seen: the
    newest log deleted (what remains is a whole, older chain: the same limit as a log
    cut at a record boundary), and the oldest one deleted when the MANIFEST was written
    after its successor started (``last_sequence`` then lies inside the successor).
    """
    needed = [f for f in logs if int(os.path.basename(f)[:-4]) >= log_number]
    previous: tuple[str, int] | None = None
    for log in needed:
        try:
            span = log_sequence_span(log)
        except OSError:
            return None  # unreadable: the engine reports it at open
        if span is None:
            continue
        if previous is None:
            if last_sequence is not None and span[0] > last_sequence + 1:
                damaged = _damaged_before(needed, log)
                if damaged is not None:
                    return damaged
                named = os.path.join(os.path.dirname(log), f"{log_number:06d}.log")
                # log_number 0 (never flushed) names no log: name the one after the hole.
                missing = named if log_number and named != log else log
                return (
                    missing,
                    f"the writes with sequence numbers {last_sequence + 1} to "
                    f"{span[0] - 1} are in no table file and no write-ahead log (the "
                    f"oldest log, {os.path.basename(log)}, starts at {span[0]}): the "
                    "log that held them is missing",
                    True,
                )
        elif span[0] != previous[1]:
            damaged = _damaged_before(needed, log, previous[0])
            if damaged is not None:
                return damaged
            return (
                log,
                f"the write-ahead logs have a gap: {os.path.basename(previous[0])} ends "
                f"before sequence number {previous[1]} and {os.path.basename(log)} starts "
                f"at {span[0]}, so a log between them is missing",
                True,
            )
        previous = (log, span[1])
    return None


def log_damage(tail: LogTail) -> str | None:
    """What is wrong with one log file, in words for a message (the file not named),
    or ``None`` when it ends on a whole record and its framing holds.

    Used where the log is known to be damaged rather than torn by a crash (an older
    log, or one whose successor starts after a hole): bytes after the last whole
    record that are no record (garbage), zeros where records should be, or a cut
    inside a record."""
    name = os.path.basename(tail.path)
    if tail.problem is not None:
        return (
            f"{name} has garbage after its last whole record (which ends at offset "
            f"{tail.complete_end:,}; {tail.problem}): bytes that are no log record were "
            "appended or written over its records"
        )
    if tail.zeros_at is not None:
        return (
            f"{name} holds zeros from offset {tail.zeros_at:,} where records should be "
            "(a zeroed tail, or a hole): the records that were there are gone"
        )
    if tail.torn:
        return (
            f"{name} is cut inside a record: it ends at {tail.size:,} bytes, inside the "
            f"record that starts at offset {tail.complete_end:,}, so it lost that record "
            "and any after it"
        )
    return None


def _damaged_before(
    needed: list[str], after: str, start: str | None = None
) -> tuple[str, str, bool] | None:
    """The first log of ``needed`` from ``start`` (default: the first) up to, not
    including, ``after`` that is damaged (:func:`log_damage`): ``(its path, what is
    wrong, and that the writes after the damage are in no other log, ``False``)``,
    else ``None``."""
    begin = needed.index(start) if start is not None else 0
    for log in needed[begin : needed.index(after)]:
        try:
            what = log_damage(scan_log(log))
        except OSError:
            continue  # unreadable: the engine reports it at open
        if what is not None:
            return (
                log,
                f"its write-ahead log {what}; the next log with records, "
                f"{os.path.basename(after)}, starts after a hole in the sequence numbers, "
                "so writes acknowledged in the damaged part are in no table file and no "
                "other log",
                False,
            )
    return None
