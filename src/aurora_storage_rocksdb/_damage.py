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

__all__ = ["LogTail", "damaged_files", "scan_log", "wal_files"]

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
