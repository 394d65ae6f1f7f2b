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
* A crash of the OS can leave a zero-filled tail.

Anything else - a log ending in the middle of a payload at an unaligned offset, a torn
record in a log that is not the newest - is damage. A log cut exactly at a record
boundary cannot be told from a shorter log: that is the limit of any check without an
out-of-band record of the log's length (documented in docs/backends/rocksdb.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["LogTail", "damaged_files", "manifest_log_number", "scan_log", "wal_files"]

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
    """

    path: str
    size: int
    complete_end: int
    crash_shaped: bool
    problem: str | None = None

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
    size = len(data)
    pos = 0
    complete_end = 0  # after the last complete logical record
    phys_end = 0  # after the last complete physical fragment
    in_record = False
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
            # Zeros: preallocated space (or an OS crash's zero fill); the log ends here.
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
    crash_shaped = (
        size % _PAGE == 0
        or size == phys_end
        or size - phys_end in (_HEADER, _RECYCLABLE_HEADER)
        or not tail.strip(b"\x00")
    )
    return LogTail(path, size, complete_end, crash_shaped)


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
_SAFE_IGNORE = 1 << 13


def _edit_log_number(edit: bytes) -> int | None:
    """The ``log_number`` field of one VersionEdit of the default column family, if it
    has one. Raises ``ValueError`` on a tag it does not know how to skip."""
    pos, found, family = 0, None, 0
    while pos < len(edit):
        tag, pos = _varint(edit, pos)
        if tag in (_LOG_NUMBER, 3, 4, 9, 10):  # log, next file, last seq, prev log, min log
            value, pos = _varint(edit, pos)
            if tag == _LOG_NUMBER:
                found = value
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
    return found if family == 0 else None


def manifest_log_number(manifest: str) -> int | None:
    """The oldest write-ahead log the MANIFEST says still holds data of the default
    column family (its latest ``log_number``), or ``None`` if the file cannot be read or
    parsed completely (then nothing is concluded from it)."""
    try:
        with open(manifest, "rb") as f:
            data = f.read()
    except OSError:
        return None
    records = _records(data)
    if records is None:
        return None
    number = None
    try:
        for edit in records:
            found = _edit_log_number(edit)
            if found is not None:
                number = found if number is None else max(number, found)
    except ValueError:
        return None
    return number
