"""Streaming work over whole stores: export, import, copy (resumable) and comparison.

Everything here holds at most one chunk of records in memory, whatever the store's size.

**Export format** (JSON Lines, UTF-8). The first line is a header::

    {"aurora-storage-export": 2, "codec": "json", "values": "json"}

then one record per line, in key order (tenant by tenant)::

    {"tenant": "acme", "key": ["order", 7], "value": {"status": "paid"}}

and last an end record with the number of records::

    {"aurora-storage-export-end": true, "records": 1}

Keys are tagged JSON (see :mod:`._tagged`); a tenant is a JSON string, or
``{"$str": ...}`` when it holds a lone surrogate. With the ``json`` codec a value is the
stored JSON document itself, copied byte for byte. With any other codec
(``"values": "base64"``) a value is the base64 of the codec's stored bytes, so an
import into a store with the same codec restores every value exactly (msgpack's bytes
and maps with non-string keys included); importing into a store with another codec
decodes and re-encodes it.

An export that stops part-way (an error, a kill, a full disk) has no end record, and
import refuses it (:class:`IncompleteExportError`); so does a file with records missing
or added (the count differs) or with anything after the end record.

**Salvage** (``export --salvage``, a damaged store). Damaged records and regions are
skipped (each named on stderr) instead of ending the export, and the end record counts
them, so the file never reads as a complete export::

    {"aurora-storage-export-end": true, "records": 5, "damaged": 2}

Import accepts such a file (it is how what still reads is carried to a new store), and
warns that it is a salvage missing the damaged records.

**Sequence counters** (format 3). A store whose event-store sequences were appended to
(``Batch.append``) has a counter per ``(tenant, sequence)``; its export is format 3:
after the records, one line per counter, and the end record counts them too::

    {"tenant": "acme", "sequence": "notifications", "last": 5}
    {"aurora-storage-export-end": true, "records": 1, "sequences": 1}

An import raises each counter to at least ``last`` (never lowers one), so numbers the
source used - a deleted record's included - are not given again. Each raise is a
compare-and-set on the counter (:func:`_raise_counters`), so an append committed by
another process meanwhile is never undone. A file names each counter once (a repeated
one is refused before anything is written), and only a format-3 file has counter
lines. An export without counters stays format 2 (older versions read it); format 2
files are read, and carry no counters (an append then goes past the newest record when
the number after the counter is taken, see ``docs/eventsourcing.md``). A target without
sequences (a tiered pair) cannot hold counters: import and copy say how many were not
carried (the ``warn`` callback).

**A projection-mode tiered pair is its history** to these commands (:func:`records_of`):
its records are the events in its cold tier, from which the projection is derived. An
export writes the history; an import or copy into the pair appends to it through the
pair (each record projected); the check after a copy compares histories; ``copy
--resume`` continues after the last key the target's history holds; and a record the
history already holds with the same value is skipped (:func:`_append_new`), so an
interrupted import is run again as into a plain store. History is append-only: a
record it holds with another value is refused (``KeyExistsError``), not overwritten.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, NamedTuple

import orjson

from .. import errors
from .._keys import (
    NS_DATA,
    NS_DATA_END,
    NS_SYSTEM,
    decode_key,
    decode_tenant_key,
    prefix_successor,
    tenant_range,
)
from .._ordering import scan_in_order
from ..backend import (
    Backend,
    VerifyProblem,
    decode_counter,
    encode_counter,
    read_past_damage,
)
from ..codecs import get_codec
from ._common import StoreDiffersError
from ._tagged import (
    TaggedJSONError,
    from_tagged,
    loads_json,
    plain_str,
    tag_tenant,
    to_tagged,
)

__all__ = [
    "ExportHeader",
    "ImportFormatError",
    "IncompleteExportError",
    "compare",
    "copy_store",
    "export_store",
    "import_store",
    "raw_records",
    "read_header",
    "records_of",
]

#: The export format: 2 added the end record (format 1 files had none); 3 adds the
#: sequence counters (written only when the export holds one).
FORMAT = 3
#: The formats read.
_FORMATS = (2, 3)
#: The name that marks the end record.
END = "aurora-storage-export-end"
#: Where the event-store sequence counters live (copied with a whole store).
_SEQ = NS_SYSTEM + b"aurora:seq:"
#: Records per chunk: per atomic write of an import or copy, per progress step. Every
#: atomic write here is also at most the target's ``capabilities.max_batch_ops`` (see
#: :func:`_batch_size`): NATS refuses a batch over its ``max_batch`` (1000 by default).
CHUNK = 2000
#: Records per atomic write of a raw copy (each commit may fsync: fewer, larger ones).
COPY_CHUNK = 10_000
#: Counters per compare-and-set commit of :func:`_raise_counters`.
COUNTER_CHUNK = 500

Progress = Callable[[int], None]
#: Told what a command did not carry (sequence counters into a store without them).
Warn = Callable[[str], None]


def _batch_size(target: Any, chunk: int) -> int:
    """The records per atomic write into ``target`` (a repository or a backend): ``chunk``,
    or the target's ``capabilities.max_batch_ops`` if smaller - a batch over it is
    refused whole (NATS's ``max_batch``; a tiered pair states what both its tiers take
    with what the pair adds to each batch)."""
    bound = target.capabilities.max_batch_ops
    return chunk if bound is None else min(chunk, bound)


def records_of(repo: Any) -> Any:
    """What export, import, copy and their checks move of ``repo``: a projection-mode
    tiered pair's history (its cold tier: the projection is derived from it, and only
    history can be written back into a pair), every other repository itself."""
    from ..tiered import TieredRepository

    if isinstance(repo, TieredRepository) and repo.mode == "projection":
        return repo.history
    return repo


def _is_history_pair(repo: Any) -> bool:
    """Whether ``repo`` is a projection-mode tiered pair (written as history)."""
    return records_of(repo) is not repo


def _append_new(
    repo: Any,
    tenant: str,
    records: list[tuple[Any, Any]],
    where: Callable[[int], str],
    done: str,
) -> list[int]:
    """The positions in ``records`` (of ``tenant``) of those the history of the
    projection-mode pair ``repo`` does not hold yet; the others it holds with the same
    value (a resumed copy, an import run again: skipped). ``where(i)`` starts the
    refusal for record ``i`` (its line), ``done`` says what earlier chunks wrote.

    Raises:
        KeyExistsError: the history holds a record's key with another value: history
            is append-only, so it cannot be overwritten (nothing of this chunk written).
    """
    history = records_of(repo)
    stored = history.get_many(tenant, [k for k, _ in records], _ABSENT)
    fresh = []
    for i, ((key, value), old) in enumerate(zip(records, stored, strict=True)):
        if old is _ABSENT:
            fresh.append(i)
        elif not _same_value(history.codec, old, value):
            raise errors.KeyExistsError(
                f"{where(i)}the history of the tiered pair {repo.url} already holds key "
                f"{key!r} of tenant {tenant!r} with another value: history is append-only "
                "in projection mode, so it is not overwritten; nothing of this chunk was "
                f"written{done}. Write into a new pair, or drop the tenant from the pair "
                "first",
                tenant=tenant,
                key=key,
                backend="tiered",
            )
    return fresh


#: get_many's marker for a key the history lacks
_ABSENT = object()


def _same_value(codec: Any, stored: Any, value: Any) -> bool:
    """Whether ``value`` is the value ``stored`` (as read back): equal, or encoding to
    the same bytes (a tuple read back where the source has a list, or the reverse)."""
    if stored == value:
        return True
    try:
        return bool(codec.encode(stored) == codec.encode(value))
    except Exception:  # a value the codec cannot encode is not the stored one
        return False


def _is_plain(repo: Any) -> bool:
    """Whether ``repo`` is a core repository over one backend (raw records readable)."""
    from .._repository import Repository

    backend = getattr(repo, "_backend", None)
    return isinstance(repo, Repository) and isinstance(backend, Backend)


def raw_records(
    repo: Any, *, tenant: str | None = None, after: bytes | None = None
) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """Chunks of stored ``(keys, values)`` of the user data, in byte order, optionally
    one tenant's and only keys after ``after``."""
    start, stop = tenant_range(tenant) if tenant is not None else (NS_DATA, NS_DATA_END)
    if after is not None and after >= start:
        start = after + b"\x00"
    backend: Backend = repo._backend
    # In key order on every engine (an unordered one is ordered in bounded passes):
    # copy --resume continues after the last key the target holds.
    yield from scan_in_order(backend, start, stop)  # type: ignore[misc]  # values are present in an items scan


def _split(full: bytes) -> tuple[str, Any]:
    try:
        tenant, offset = decode_tenant_key(full)
        return tenant, decode_key(full, offset)
    except ValueError as exc:
        raise errors.CorruptionError(
            f"the stored key {full!r} is not a valid key encoding: {exc}"
        ) from exc


# ------------------------------------------------------------------------ export


def export_store(
    repo: Any,
    out: IO[bytes],
    *,
    tenant: str | None = None,
    advance: Progress | None = None,
    salvage: Warn | None = None,
) -> int:
    """Write ``repo``'s records (one tenant's, or all) to ``out`` as JSON Lines; a
    projection-mode tiered pair's records are its history (:func:`records_of`).

    Args:
        salvage: a salvage of a damaged store: damaged records and regions are skipped
            and each is told to ``salvage`` (what, and where), and the end record counts
            them as ``"damaged"`` (see the module docstring). Needs a plain repository.

    Returns:
        How many records were written.

    Raises:
        CorruptionError: a stored key or value cannot be read (the export stops there;
            with ``salvage``, only when the damage stops the read of the sequence
            counters).
        NotSupportedError: ``salvage`` with a composed repository (a cache-mode
            tiered pair; a projection-mode pair's history is one store, salvaged).
        StorageError: the store failed.
    """
    repo = records_of(repo)
    if salvage is not None and not _is_plain(repo):
        raise errors.NotSupportedError(
            f"export --salvage reads one store's records past damage; {repo!r} is a "
            "composed repository: salvage each of its stores (tiers) on its own"
        )
    skipped = 0

    def damaged(problem: VerifyProblem) -> None:
        nonlocal skipped
        skipped += 1
        assert salvage is not None
        salvage(_skipped_text(problem))

    structure = _structural_damage(repo) if salvage is not None else None
    if structure is not None:
        assert salvage is not None
        skipped += 1  # the file is damaged though every record may read: a salvage
        salvage(structure)
    codec = repo.codec.name
    as_json = codec == "json"
    try:
        counters = _counter_range(repo, tenant)
    except errors.CorruptionError as exc:
        if salvage is None:
            raise
        # A seek for the counters meets damage (RocksDB: it reads the first block of
        # every L0 table file before their range): the salvage carries no counters.
        counters = None
        skipped += 1
        salvage(
            f"skipped the sequence counters (whether the store holds any cannot be read: "
            f"{exc}); an append to an event-store sequence of the imported store starts "
            "after its newest record"
        )
    header = {
        "aurora-storage-export": FORMAT if counters is not None else 2,
        "codec": codec,
        "values": "json" if as_json else "base64",
    }
    out.write(orjson.dumps(header) + b"\n")
    n = 0
    if not _is_plain(repo):
        # A composed repository (tiered, ...): through its public scans.
        tenants = [tenant] if tenant is not None else list(repo.tenants())
        enc = repo.codec.encode
        for t in tenants:
            it = iter(repo.items(t))
            head = b'{"tenant":' + _T(tag_tenant(t)) + b',"key":'
            while chunk := list(itertools.islice(it, CHUNK)):
                out.write(b"".join(_line(head, k, enc(v), as_json) for k, v in chunk))
                n += len(chunk)
                if advance is not None:
                    advance(len(chunk))
        return _end(out, n)
    loads, dumps, b64 = orjson.loads, orjson.dumps, base64.b64encode
    # Records of one tenant share its encoded prefix: decode it once per run of keys.
    prefix = b"\x00"  # matches no data key
    head = b""
    offset = 0
    t = ""
    chunks = (
        raw_records(repo, tenant=tenant)
        if salvage is None
        else _salvaged_records(repo, tenant, damaged)
    )
    for keys, vals in chunks:
        lines = []
        for full, raw in zip(keys, vals, strict=True):
            try:
                if not full.startswith(prefix):
                    t, offset = _split_tenant(full)
                    prefix = full[:offset]
                    head = b'{"tenant":' + dumps(tag_tenant(t)) + b',"key":'
                try:
                    key = decode_key(full, offset)
                except ValueError as exc:
                    raise errors.CorruptionError(
                        f"the stored key {full!r} is not a valid key encoding: {exc}", tenant=t
                    ) from exc
                k = dumps(key) if type(key) is str and plain_str(key) else dumps(to_tagged(key))
                if as_json:
                    try:
                        loads(raw)  # the value goes in verbatim: it must be a JSON document
                    except orjson.JSONDecodeError as exc:
                        raise errors.CorruptionError(
                            f"the stored value of key {key!r} (tenant {t!r}) is not JSON: {exc}",
                            tenant=t,
                            key=key,
                        ) from exc
                    lines.append(head + k + b',"value":' + raw + b"}\n")
                else:
                    lines.append(head + k + b',"value":"' + b64(raw) + b'"}\n')
            except errors.CorruptionError as exc:
                if salvage is None:
                    raise
                prefix = b"\x00"  # decode the next key's tenant afresh
                damaged(VerifyProblem(str(exc), key=full))
        out.write(b"".join(lines))
        n += len(lines)
        if advance is not None:
            advance(len(keys))
    sequences = _write_counters(repo, out, counters)
    return _end(out, n, sequences, skipped if salvage is not None else None)


def _salvaged_records(
    repo: Any, tenant: str | None, damaged: Callable[[VerifyProblem], None]
) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """:func:`raw_records` going on past damage (:func:`read_past_damage`)."""
    start, stop = tenant_range(tenant) if tenant is not None else (NS_DATA, NS_DATA_END)
    backend: Backend = repo._backend

    def chunks(lo: bytes, hi: bytes) -> Iterator[tuple[list[bytes], list[bytes] | None]]:
        return scan_in_order(backend, lo, hi)

    for keys, values in read_past_damage(backend, start, stop, damaged, chunks):
        assert values is not None  # an items scan
        yield keys, values


def _structural_damage(repo: Any) -> str | None:
    """The damage to the store's file structure a salvage reads past, in words, or
    ``None`` (none found, or an engine without such a check). An engine that checks its
    structure offline (LMDB) runs the check here, since a salvage opens without it
    (``verify=false``): damage a reader never meets (LMDB's free list) is named and
    the records are read; other structural damage raises.

    Raises:
        CorruptionError: the structure is damaged where reading could crash the
            process (LMDB: the records' own trees).
    """
    check = getattr(repo._backend, "salvage_check", None)
    if check is None:
        return None
    problems: list[str] = check()
    if not problems:
        return None
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return (
        f"the store's file structure is damaged where no record lies ({shown}{more}): "
        "every record is still read, but do not write to the store again; import this "
        "salvage into a new store"
    )


def _skipped_text(problem: VerifyProblem) -> str:
    """What a salvage skipped, in words (a record, or a region between two keys)."""
    where = f" (file {problem.path})" if problem.path else ""
    if problem.key is not None:
        return f"skipped the damaged record {problem.key!r}{where}: {problem.message}"
    after = "the start" if problem.after is None else repr(problem.after)
    resume = "the end" if problem.resume is None else repr(problem.resume)
    return f"skipped the unreadable records after {after} up to {resume}{where}: {problem.message}"


def _counter_range(repo: Any, tenant: str | None) -> tuple[bytes, bytes] | None:
    """The stored-key range of the sequence counters an export of ``repo`` (one
    tenant's, or all) carries, or None when it holds none (the export is format 2)."""
    if not _is_plain(repo):
        return None  # a composed repository (tiered) has no sequences
    if tenant is None:
        lo, hi = _SEQ, prefix_successor(_SEQ)
    else:
        t_lo, t_hi = tenant_range(tenant)
        lo, hi = _SEQ + t_lo, _SEQ + t_hi
    backend: Backend = repo._backend
    return (lo, hi) if backend.last_key(lo, hi) is not None else None


def _write_counters(repo: Any, out: IO[bytes], span: tuple[bytes, bytes] | None) -> int | None:
    """Write a line per sequence counter in ``span`` (read after the records, so each
    is at least the number of every record exported); return how many (None: none)."""
    if span is None:
        return None
    backend: Backend = repo._backend
    m = 0
    for keys, vals in scan_in_order(backend, *span):
        assert vals is not None  # an items scan
        lines = []
        for key, raw in zip(keys, vals, strict=True):
            rest = key[len(_SEQ) :]
            try:
                t, offset = decode_tenant_key(rest)
                (name,) = decode_key(rest + b"\x00", offset)
            except ValueError as exc:
                raise errors.CorruptionError(
                    f"the sequence counter record {key!r} has no valid key: {exc}"
                ) from exc
            line = {"tenant": tag_tenant(t), "sequence": tag_tenant(name)}
            line["last"] = decode_counter(raw, key)
            lines.append(orjson.dumps(line) + b"\n")
        out.write(b"".join(lines))
        m += len(keys)
    return m


def _end(out: IO[bytes], n: int, sequences: int | None = None, damaged: int | None = None) -> int:
    """Write the end record (a complete export's, or a salvage's counting what it
    skipped as ``damaged``); return ``n``."""
    end: dict[str, Any] = {END: True, "records": n}
    if sequences is not None:
        end["sequences"] = sequences
    if damaged is not None:
        end["damaged"] = damaged
    out.write(orjson.dumps(end) + b"\n")
    out.flush()
    return n


def _split_tenant(full: bytes) -> tuple[str, int]:
    try:
        return decode_tenant_key(full)
    except ValueError as exc:
        raise errors.CorruptionError(
            f"the stored key {full!r} is not a valid key encoding: {exc}"
        ) from exc


_T = orjson.dumps


def _line(head: bytes, key: Any, raw: bytes, as_json: bool) -> bytes:
    """One record; ``head`` is ``{"tenant":<tenant>,"key":``."""
    k = _T(to_tagged(key))
    if as_json:
        # The stored JSON document goes in as it is: no decode, no re-encode.
        return head + k + b',"value":' + raw + b"}\n"
    return head + k + b',"value":"' + base64.b64encode(raw) + b'"}\n'


# ------------------------------------------------------------------------ import


class ImportFormatError(errors.SerializationError):
    """An import file that is not an aurora-storage export (names the line)."""


class IncompleteExportError(ImportFormatError):
    """An export without its end record (cut short), or whose record count differs."""


_END_BYTES = b'"' + END.encode() + b'"'


def _end_ok(rec: dict[str, Any], version: int) -> bool:
    """Whether ``rec`` is a well-formed end record of an export of ``version``."""
    keys = (
        {END, "records", "sequences"} if version >= 3 and "sequences" in rec else {END, "records"}
    )
    if "damaged" in rec:
        keys.add("damaged")  # a salvage (export --salvage)
    return rec[END] is True and set(rec) == keys and all(type(rec[k]) is int for k in keys - {END})


def _counter_line(rec: Any, version: int) -> bool:
    """Whether the parsed line ``rec`` is a sequence counter line: a ``"sequence"`` at
    its top level (format 3; in format 2, which has none, a line that names a sequence
    and no key, so that it is named as what it is)."""
    return isinstance(rec, dict) and "sequence" in rec and (version >= 3 or "key" not in rec)


def _not_in_format_2(lineno: int, done: str) -> ImportFormatError:
    """The error for a counter line in a format-2 file."""
    return ImportFormatError(
        f"line {lineno} is a sequence counter line: a format-2 export has none (the "
        "counters came with format 3, whose header says 3) - the header was edited or "
        f"the file put together from two exports; {done}. Export the store again"
    )


class _Counters:
    """The counter lines of a file seen so far: refuses a repeated ``(tenant,
    sequence)``, which an export never writes (two lines "last": 3 then 1 would leave
    the counter at 1, and number 3 given again)."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], int] = {}

    def see(self, lineno: int, tenant: str, name: str, done: str) -> None:
        first = self.lines.setdefault((tenant, name), lineno)
        if first != lineno:
            raise ImportFormatError(
                f"line {lineno} repeats the counter of sequence {name!r} of tenant "
                f"{tenant!r} (line {first}): an export writes one line per counter - the "
                f"file was edited or put together from two exports; {done}. Keep one "
                'line per counter (the highest "last") and import again'
            )


def _counts_differ(rec: dict[str, Any], seen: int, counted: int) -> str | None:
    """What the end record ``rec`` counts against what the file holds (``seen``
    records, ``counted`` counter lines), worded, or None when they agree."""
    if rec["records"] == seen and rec.get("sequences", 0) == counted:
        return None
    if "sequences" in rec or counted:
        return (
            f"{rec['records']} records and {rec.get('sequences', 0)} sequence counters, "
            f"the file holds {seen} and {counted}"
        )
    return f"{rec['records']} records, the file holds {seen}"


#: What a line holds textually when it may be a sequence counter line or the end record:
#: the key written plainly, or any ``\\u`` escape (a key can be spelled with one,
#: ``"sequ\\u0065nce"``, and parses the same). A line with none of these is a record
#: line (well-formed or not): :func:`_check_file_first` need not parse it.
_MAY_BE_APART = (b'"sequence"', _END_BYTES, b"\\u")


def _may_be_apart(line: bytes) -> bool:
    """Whether ``line`` may be a counter line or the end record (see ``_MAY_BE_APART``)."""
    return any(mark in line for mark in _MAY_BE_APART)


class _Reader:
    """The one reading of an export's lines after its header, for the file check
    (:func:`_check_file_first`) and the import (:func:`import_store`) alike: what each
    line is (a record, a sequence counter line, the end record, blank) and what is wrong
    with one that is none of them, so that a file and a stream are refused with the
    same error at the same line.

    Args:
        header: the export's header.
        done: what was imported when an error is raised (ends its message).
        parse_all: False for the file check: a line that cannot be a counter line or
            the end record (:func:`_may_be_apart`) is counted as a record unparsed;
            whether it is a well-formed one is found by the import (or by a second,
            parsing pass of the check, when the check refuses a later line).
    """

    def __init__(
        self, header: ExportHeader, done: Callable[[], str], *, parse_all: bool = True
    ) -> None:
        self.version = header.version
        self.base64_values = header.base64_values
        self.source_codec = get_codec(header.codec)
        self.done = done
        self.parse_all = parse_all
        #: The number of the line read last (1: the header, read already).
        self.lineno = 1
        #: (line, tenant, sequence, last) of the counter lines, in file order.
        self.sequences: list[tuple[int, str, str, int]] = []
        self._counters = _Counters()
        self._seen = 0
        self._end: int | None = None
        #: What a salvage's end record counts as skipped (``"damaged"``; 0 otherwise).
        self.damaged = 0

    def read(
        self, lines: Iterable[bytes], stop: int | None = None
    ) -> Iterator[tuple[int, str, Any, Any]]:
        """Yield ``(line, tenant, key, value)`` of each record line parsed, in file
        order; a counter line goes to :attr:`sequences`. With ``stop``, the lines
        before that one only (and no end record required).

        Raises:
            IncompleteExportError: no end record, a line after it, counts that differ
                from the end record's, a last line cut short.
            ImportFormatError: a line that is not part of an export (its number
                named), a counter line in a format-2 file, a counter named twice.
        """
        for line in lines:
            self.lineno += 1
            if stop is not None and self.lineno >= stop:
                return
            if not line.strip():
                continue
            if self._end is not None:
                raise IncompleteExportError(
                    f"line {self.lineno}: a line follows the end record (line {self._end}), "
                    f"as in two exports put together or a file appended to; {self.done()}. "
                    "Import each export on its own"
                )
            if not self.parse_all and not _may_be_apart(line):
                self._seen += 1
                continue
            record = self._line(line)
            if record is not None:
                self._seen += 1
                yield record
        if stop is None and self._end is None:
            raise IncompleteExportError(
                f"the export ends at line {self.lineno} without its end record "
                f'({{"{END}": true, "records": N}}): it was cut short (an export that failed '
                f"or was killed, a partial copy); {self.done()}. Export the store again"
            )

    def _line(self, line: bytes) -> tuple[int, str, Any, Any] | None:
        """The record ``line`` holds, or None for a counter line or the end record."""
        lineno = self.lineno
        try:
            try:
                rec = loads_json(line)
            except ValueError as exc:
                if line.endswith(b"\n"):
                    raise
                raise IncompleteExportError(
                    f"line {lineno}, the last, is cut short (no newline, not JSON: {exc}): "
                    f"the export was cut short; {self.done()}. Export the store again"
                ) from exc
            if not isinstance(rec, dict):
                raise TypeError(f"a JSON object, got {type(rec).__name__}")
            if END in rec:
                if not _end_ok(rec, self.version):
                    raise ValueError(f'a malformed end record: {{"{END}": true, "records": N}}')
                counts = _counts_differ(rec, self._seen, len(self.sequences))
                if counts is not None:
                    raise IncompleteExportError(
                        f"line {lineno}: the end record counts {counts}: lines were lost "
                        f"or added; {self.done()}. Export the store again"
                    )
                self._end = lineno
                self.damaged = rec.get("damaged", 0)
                return None
            if _counter_line(rec, self.version):
                if self.version < 3:
                    raise _not_in_format_2(lineno, self.done())
                t = _plain(rec["tenant"], "a tenant")
                name = _plain(rec["sequence"], "a sequence name")
                last = rec["last"]
                if type(last) is not int or not 0 <= last < 1 << 64 or len(rec) != 3:
                    raise ValueError(
                        'a sequence counter line is {"tenant": ..., "sequence": ..., '
                        '"last": N} with N from 0 to 2**64 - 1'
                    )
                self._counters.see(lineno, t, name, self.done())
                self.sequences.append((lineno, t, name, last))
                return None
            t = _plain(rec["tenant"], "a tenant")
            key = from_tagged(rec["key"], as_key=True)
            value = rec["value"]
            if self.base64_values:
                value = self.source_codec.decode(base64.b64decode(value, validate=True))
        except ImportFormatError:
            raise
        except (ValueError, KeyError, TypeError, TaggedJSONError) as exc:
            raise ImportFormatError(
                f"line {lineno} is not an export record ({type(exc).__name__}: {exc}); "
                f"{self.done()}"
            ) from exc
        return lineno, t, key, value


def _check_file_first(lines: IO[bytes], header: ExportHeader) -> None:
    """Refuse a seekable file that is not a complete export, before anything is
    written. One pass over the file with the import's own reading (:class:`_Reader`),
    parsing only the lines that may be the end record or a sequence counter line,
    finds no end record, a line after it, a record or counter count that differs from
    the end record's, a counter line in a format-2 file, a counter named twice, and a
    malformed line among those it parses. A stream (stdin) is checked as it is read.

    When this pass refuses line N, a second pass parses every line up to N: a
    malformed record line there is named instead, as the import of the same file from
    stdin would name it first (same error, same line, by either path).

    Raises:
        IncompleteExportError: see above; nothing was imported.
        ImportFormatError: see above; nothing was imported.
    """
    try:
        if not lines.seekable():
            return
        start = lines.tell()
    except (OSError, ValueError):  # not a regular file after all: checked as it is read
        return

    def nothing() -> str:
        return "nothing was imported"

    try:
        check = _Reader(header, nothing, parse_all=False)
        try:
            for _ in check.read(lines):
                pass
        except ImportFormatError as exc:
            refused, at = exc, check.lineno
        else:
            return
        lines.seek(start)
        # Up to line N included: when N is the last line (no end record after it), it
        # may be a malformed record, which the import names as such.
        for _ in _Reader(header, nothing).read(lines, stop=at + 1):
            pass
        raise refused
    finally:
        lines.seek(start)


class ExportHeader(NamedTuple):
    """What an export's first line says."""

    codec: str
    base64_values: bool
    #: The format (2: no sequence counters; 3: may carry them).
    version: int = FORMAT


#: The kinds of value an export's header names.
_VALUES = ("json", "base64")


def read_header(lines: IO[bytes]) -> ExportHeader:
    """Read and check an export's first line (see the module docstring).

    Raises:
        ImportFormatError: not an export header, another format, an unknown codec or
            kind of value.
    """
    first = lines.readline()
    try:
        header = loads_json(first)
        if not isinstance(header, dict) or "aurora-storage-export" not in header:
            raise ValueError("no export header")
        version = header["aurora-storage-export"]
        codec_name = header["codec"]
        values = header["values"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ImportFormatError(
            f"line 1 is not an aurora-storage export header ({exc}); expected "
            f'{{"aurora-storage-export": {FORMAT}, "codec": ..., "values": ...}}'
        ) from exc
    if type(version) is not int or version not in _FORMATS:
        raise ImportFormatError(
            f"line 1: an export of format {version!r}; this version reads formats 2 and "
            f"{FORMAT} (format 1, from before the end record, cannot be told complete "
            "from cut short): export the store again with this version"
        )
    if type(codec_name) is not str or values not in _VALUES or type(values) is not str:
        raise ImportFormatError(
            f'line 1: the header names codec {codec_name!r} and "values" {values!r}; an '
            'export names a codec and "values": "json" or "base64"'
        )
    get_codec(codec_name)  # an unknown codec is refused before anything is written
    return ExportHeader(codec_name, values == "base64", version)


def import_store(
    repo: Any,
    lines: IO[bytes],
    *,
    tenant: str | None = None,
    advance: Progress | None = None,
    header: ExportHeader | None = None,
    warn: Warn | None = None,
    skipped: Progress | None = None,
) -> int:
    """Read an export (see the module docstring) into ``repo``, a chunk per atomic batch.

    Into a projection-mode tiered pair the records are appended to its history (each
    projected); a record the history holds already with the same value is skipped
    (``skipped`` is told how many), so an interrupted import is run again.

    A seekable file is checked whole before anything is written (its end record, no
    line after it, its record count: :func:`_check_file_first`); a stream (stdin) as
    it is read, so the chunks read before a stream turns out incomplete are written.
    Both read the lines alike (:class:`_Reader`): a file and the same bytes on stdin are
    refused with the same error class at the same line. Malformed record lines are found
    as they are read, in a file too (unless the check refuses a later line first).

    Args:
        tenant: import only this tenant's records.
        header: the header, when the caller read it (:func:`read_header`) already.
        warn: told how many sequence counters were not carried, when ``repo`` has no
            sequences (a tiered pair).
        skipped: told how many records a projection-mode pair's history held already
            with the same value (not written again).

    Returns:
        How many records were written.

    Raises:
        IncompleteExportError: no end record (the export was cut short, also inside its
            last line), a record count that differs from the end record's, or lines
            after it.
        ImportFormatError: a line that is not part of an export (its number named);
            the chunks before it are written. A counter line in a format-2 file, or a
            counter named twice (refused before writing, for a file).
        SerializationError: a value the store's codec refuses.
        KeyExistsError: a projection-mode pair's history holds a record's key with
            another value (history is append-only); the chunks before are written.
        StorageError: what the store raised writing a chunk; when chunks before it
            were written, a note says how many records they imported, and that the
            import may be run again.
    """
    if header is None:
        header = read_header(lines)
    _check_file_first(lines, header)
    n = 0

    def done() -> str:
        return f"{n} records of earlier chunks were imported"

    # The sequence counter lines (format 3) go to reader.sequences: applied after the
    # records, so a counter never stands without the records it numbers.
    reader = _Reader(header, done)

    def records() -> Iterator[tuple[int, str, Any, Any]]:
        for record in reader.read(lines):
            if tenant is None or record[1] == tenant:
                yield record

    it = records()
    history_pair = _is_history_pair(repo)
    step = _batch_size(repo, CHUNK)
    while chunk := list(itertools.islice(it, step)):
        if history_pair:
            chunk = _new_records(repo, chunk, n, skipped)
        with _told_done(repo, n, step, history_pair), repo.batch() as b:
            for at, t, key, value in chunk:
                try:
                    b.put(t, key, value)
                except (
                    errors.InvalidKeyError,
                    errors.InvalidTenantError,
                    errors.InvalidArgumentError,
                    errors.SerializationError,
                ) as exc:
                    # A record that parses but that the store cannot hold (a NaN key,
                    # an integer the codec cannot encode): a bad record like any other,
                    # named by its line. Raised inside the batch: its chunk is not
                    # written.
                    raise ImportFormatError(
                        f"line {at}: the store cannot hold this record "
                        f"({type(exc).__name__}: {exc}); {n} records of earlier chunks "
                        "were imported"
                    ) from exc
        n += len(chunk)
        if advance is not None:
            advance(len(chunk))
    sequences = [c for c in reader.sequences if tenant is None or c[1] == tenant]
    if reader.damaged and warn is not None:
        warn(
            f"this export is a salvage of a damaged store: {reader.damaged} damaged records "
            "or regions were skipped when it was written (export --salvage named them); "
            "their records are missing"
        )
    _raise_counters(repo, sequences, n, warn)
    return n


@contextlib.contextmanager
def _told_done(repo: Any, n: int, step: int, history_pair: bool) -> Iterator[None]:
    """Around the atomic batch of one import chunk: a store error (a lost connection, a
    full store) gets a note of the ``n`` records the batches before it imported, which
    stay, and that the import may be run again. Not the import's own refusals
    (:class:`ImportFormatError`), whose messages say it already."""
    try:
        yield
    except errors.StorageError as exc:
        if n and not isinstance(exc, ImportFormatError):
            again = (
                "the records the pair's history holds with the same value are skipped"
                if history_pair
                else "it overwrites existing keys, so the records already imported are "
                "written again with the same values"
            )
            exc.add_note(
                f"({n} record{'' if n == 1 else 's'} {'was' if n == 1 else 'were'} imported "
                f"into {repo.url} before this error, in atomic batches of {step}; the "
                "failing batch wrote nothing unless the error says it may have. Fix the "
                f"cause and run the import again: it is safe, {again})"
            )
        raise


def _new_records(
    repo: Any, chunk: list[tuple[int, str, Any, Any]], n: int, skipped: Progress | None
) -> list[tuple[int, str, Any, Any]]:
    """The records of an import chunk that the history of the projection-mode pair
    ``repo`` does not hold yet (see :func:`_append_new`); ``skipped`` is told how many
    it holds already with the same value.

    Raises:
        KeyExistsError: the history holds a record's key with another value (named by
            its line); nothing of the chunk is written.
    """
    by_tenant: dict[str, list[int]] = {}
    for i, rec in enumerate(chunk):
        by_tenant.setdefault(rec[1], []).append(i)
    keep: list[int] = []  # positions in chunk of the records to write
    for t, at in by_tenant.items():

        def where(i: int, at: list[int] = at) -> str:
            return f"line {chunk[at[i]][0]}: "

        records = [(chunk[i][2], chunk[i][3]) for i in at]
        done = f", {n} records of earlier chunks were imported"
        fresh = _append_new(repo, t, records, where, done)
        keep.extend(at[j] for j in fresh)
    if skipped is not None and len(keep) < len(chunk):
        skipped(len(chunk) - len(keep))
    return [chunk[i] for i in sorted(keep)]


def _plain(tagged: Any, what: str) -> str:
    """A tenant or sequence name of an export line (a JSON string, or tagged)."""
    if type(tagged) is str:
        return tagged
    value = from_tagged(tagged)
    if type(value) is not str:
        raise TypeError(f"{what} is a string, got {type(value).__name__}")
    return value


def _has_sequences(repo: Any) -> bool:
    """Whether ``repo`` holds sequence counters: a core repository over one backend
    that declares sequences (a tiered pair has none: its appends are refused)."""
    return _is_plain(repo) and bool(repo.capabilities.sequences)


def _not_carried(repo: Any, k: int, what: str, warn: Warn | None) -> None:
    """Tell ``warn`` that ``k`` sequence counters of ``what`` were not carried into
    ``repo``, which has no sequences."""
    if not k or warn is None:
        return
    from ..tiered import TieredRepository

    why = (
        "a tiered pair has no sequences (Batch.append is refused on it)"
        if isinstance(repo, TieredRepository)
        else "the target's backend has no sequences (capabilities.sequences is false)"
    )
    warn(
        f"{k} sequence counter{'' if k == 1 else 's'} "
        f"{'was' if k == 1 else 'were'} not carried from {what}: {why}. A store opened alone "
        "later (a tier of the pair) numbers those sequences from its newest record, and "
        "a source's deleted numbers may be given again; to keep the counters, import or "
        "copy into a plain store"
    )


def _raise_counters(
    repo: Any, sequences: list[tuple[int, str, str, int]], n: int, warn: Warn | None = None
) -> None:
    """Raise each imported sequence's counter to at least the source's (never lower
    one): the numbers the source used are not given again. A repository without
    sequences (a tiered pair) has no counters to set (its appends are refused): ``warn``
    is told how many were not carried.

    Raises:
        ImportFormatError: a tenant or sequence name the store cannot hold (named by
            its line; the records were imported).
    """
    if not sequences:
        return
    if not _has_sequences(repo):
        _not_carried(repo, len(sequences), "the export", warn)
        return
    from .. import _eventstore

    raised: list[tuple[bytes, int]] = []
    for at, t, name, last in sequences:
        try:
            raised.append((_eventstore.sequence_keys(repo, t, name).counter, last))
        except (errors.InvalidKeyError, errors.InvalidTenantError) as exc:
            raise ImportFormatError(
                f"line {at}: the store cannot hold this sequence counter "
                f"({type(exc).__name__}: {exc}); the {n} records were imported"
            ) from exc
    raise_counters(repo._backend, raised)


def raise_counters(backend: Backend, counters: Iterable[tuple[bytes, int]]) -> None:
    """Raise each counter record ``key`` to at least ``last`` (never lower one),
    atomically against concurrent appends: each raise is a commit conditioned on the
    counter's version as read (absent: create-only); a counter an append moved
    meanwhile fails its condition and is read again - a read, then a plain write, set a
    counter back below the records another process had appended meanwhile.

    Raises:
        StorageError: what the backend raised.
    """
    it = iter(counters)
    step = _batch_size(backend, COUNTER_CHUNK)
    while part := list(itertools.islice(it, step)):
        wanted = dict(part)  # a key twice (never, from an export): the later wins
        # Cheap first pass: most counters are at or past the imported ones already.
        current = backend.get_many(list(wanted))
        pending = [
            (k, last)
            for (k, last), raw in zip(wanted.items(), current, strict=True)
            if decode_counter(raw, k) < last
        ]
        while pending:
            ops: list[tuple[bytes, bytes | None]] = []
            conditions: list[tuple[bytes, bytes | None]] = []
            for key, last in pending:
                got = backend.get_versioned(key)
                if decode_counter(got[0] if got else None, key) >= last:
                    continue  # an append passed it meanwhile
                ops.append((key, encode_counter(last)))
                conditions.append((key, got[1] if got else None))
            if not ops:
                break
            try:
                backend.commit(ops, conditions=conditions)
            except errors.ConditionFailed:
                # Those counters moved since they were read (an append): read them
                # again. None of them was written (the commit is atomic).
                pending = [(k, wanted[k]) for k, _ in ops]
                continue
            break


# -------------------------------------------------------------------------- copy


def _last_raw_key(repo: Any, tenant: str | None) -> bytes | None:
    start, stop = tenant_range(tenant) if tenant is not None else (NS_DATA, NS_DATA_END)
    backend: Backend = repo._backend
    return backend.last_key(start, stop)


def copy_store(
    src: Any,
    dst: Any,
    *,
    tenant: str | None = None,
    resume: bool = False,
    advance: Progress | None = None,
    warn: Warn | None = None,
) -> int:
    """Copy ``src``'s records (one tenant's, or all) into ``dst`` in key order, one
    atomic batch per chunk, then its sequence counters (raised, never lowered: see
    :func:`raise_counters`; ``warn`` is told how many were not carried into a target
    without sequences).

    Resumable without any state file: records are written in key order, so after an
    interruption the target's last key says where to continue (``resume``). Between
    two plain repositories with the same codec the stored bytes are copied as they are
    (no decode, no re-encode); otherwise records go through the public API.

    A projection-mode tiered pair is its history (:func:`records_of`): as the source,
    its history is copied; as the target, records are appended to its history through
    the pair (each projected), the target's last history key says where to continue,
    and a record the history holds already with the same value is skipped.

    Returns:
        How many records were written by this run.

    Raises:
        KeyExistsError: a projection-mode target's history holds a record's key with
            another value (history is append-only); the chunks before are written.
        StorageError: what either store raised.
    """
    n = 0
    src = records_of(src)
    if _is_plain(src) and _is_plain(dst) and src.codec.name == dst.codec.name:
        after = _last_raw_key(dst, tenant) if resume else None
        target: Backend = dst._backend
        step = _batch_size(target, COPY_CHUNK)
        pending: list[tuple[bytes, bytes | None]] = []
        for keys, vals in raw_records(src, tenant=tenant, after=after):
            pending.extend(zip(keys, vals, strict=True))
            while len(pending) >= step:
                target.write(pending[:step])
                n += step
                if advance is not None:
                    advance(step)
                del pending[:step]
        if pending:
            target.write(pending)
            n += len(pending)
            if advance is not None:
                advance(len(pending))
        _copy_counters(src, dst, tenant, warn)
        return n
    held = records_of(dst)  # what the target holds: a projection-mode pair's history
    history_pair = held is not dst
    step = _batch_size(dst, CHUNK)  # a pair's: the records go through it
    tenants = [tenant] if tenant is not None else list(src.tenants())
    for t in tenants:
        start = None
        skip = None
        if resume:
            for last in held.keys(t, reverse=True, limit=1):
                start = skip = last
        it = iter(src.items(t, start=start) if start is not None else src.items(t))
        while chunk := list(itertools.islice(it, step)):
            if skip is not None and chunk[0][0] == skip:
                chunk = chunk[1:]
                skip = None
            if chunk and history_pair:
                done = f", {n} records were copied before it"
                chunk = [chunk[i] for i in _append_new(dst, t, chunk, lambda i: "", done)]
            if chunk:
                dst.put_many(t, chunk)
            n += len(chunk)
            if advance is not None:
                advance(len(chunk))
    _copy_counters(src, dst, tenant, warn)
    return n


def _copy_counters(src: Any, dst: Any, tenant: str | None, warn: Warn | None) -> None:
    """Raise ``dst``'s sequence counters to ``src``'s (one tenant's, or all), after the
    records; the stored counter keys do not depend on the codec."""
    span = _counter_range(src, tenant)
    if span is None:
        return
    pairs = (
        (key, decode_counter(raw, key))
        for keys, vals in scan_in_order(src._backend, *span)
        for key, raw in zip(keys, vals, strict=True)  # type: ignore[arg-type]  # an items scan has values
    )
    if _has_sequences(dst):
        raise_counters(dst._backend, pairs)
    else:
        _not_carried(dst, sum(1 for _ in pairs), "the source", warn)


# ----------------------------------------------------------------------- compare


def compare(
    src: Any, dst: Any, *, tenant: str | None = None, advance: Progress | None = None
) -> int:
    """Check that ``dst`` holds exactly ``src``'s records (one tenant's, or all).

    A projection-mode tiered pair, on either side, is its history
    (:func:`records_of`): the projection is derived from it.

    Returns:
        How many records were compared.

    Raises:
        StoreDiffersError: the first difference, named (tenant and key).
    """
    src, dst = records_of(src), records_of(dst)
    if _is_plain(src) and _is_plain(dst) and src.codec.name == dst.codec.name:
        a: Iterator[tuple[Any, Any]] = (
            p for ks, vs in raw_records(src, tenant=tenant) for p in zip(ks, vs, strict=True)
        )
        b: Iterator[tuple[Any, Any]] = (
            p for ks, vs in raw_records(dst, tenant=tenant) for p in zip(ks, vs, strict=True)
        )
        name: Callable[[Any], str] = lambda k: "tenant {!r} key {!r}".format(*_split(k))  # noqa: E731 - one-line namer
    else:
        tenants = sorted(
            {tenant} if tenant is not None else set(src.tenants()) | set(dst.tenants())
        )
        a = (((t, k), v) for t in tenants for k, v in src.items(t))
        b = (((t, k), v) for t in tenants for k, v in dst.items(t))
        name = lambda k: f"tenant {k[0]!r} key {k[1]!r}"  # noqa: E731 - one-line namer
    n = 0
    missing = object()
    for x, y in itertools.zip_longest(a, b, fillvalue=(missing, missing)):
        if x[0] is missing:
            raise StoreDiffersError(f"the target has a record the source lacks: {name(y[0])}")
        if y[0] is missing:
            raise StoreDiffersError(f"the target lacks {name(x[0])}")
        if x[0] != y[0]:
            raise StoreDiffersError(
                f"record {n + 1} differs: the source has {name(x[0])}, the target {name(y[0])}"
            )
        if x[1] != y[1]:
            raise StoreDiffersError(f"the value of {name(x[0])} differs")
        n += 1
        if advance is not None and n % CHUNK == 0:
            advance(CHUNK)
    if advance is not None:
        advance(n % CHUNK)
    return n
