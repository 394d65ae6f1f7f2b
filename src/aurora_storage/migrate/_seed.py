"""Import a RocksDB store written by the TypeScript package into any aurora-storage URL.

The source is read, never written: RocksDB is opened read-only on a directory of
symbolic links to the store's files (the binding would otherwise add its own side file
to the store), so a store on a read-only mount or in a backup imports as well. The open
judges the store's files as every read-only open of the RocksDB plugin does
(``aurora_storage_rocksdb._engine.open_db``: a write-ahead log damaged or cut where no
crash ends one is refused, a crash's torn tail is read past and reported), and a store
another process has open (its application still running) is refused. While an import
(not a dry run) reads it, a shared lock on the store's RocksDB ``LOCK`` file keeps
other processes from opening it for writing (see :func:`_keep_writers_out`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import fcntl
import hashlib
import json
import logging
import os
import shlex
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .. import errors
from .._keys import encode_key, encode_tenant
from .._metadata import META_KEY
from ..config import URL
from ..errors import SeedKeyError, SeedSourceError, StorageError
from ._split import JS_SAFE_INTEGER, SeedSplit, parse_json, split_seed_key

if TYPE_CHECKING:
    from ..codecs import Codec
    from ..config import URL

__all__ = ["SeedImportReport", "SeedProblem", "import_seed"]

#: Records read per chunk (and per progress step), and per atomic batch written to a
#: target that does not bound its atomic batches lower (Capabilities.max_batch_ops).
CHUNK = 2000
#: Problems kept in a report (all are counted).
MAX_PROBLEMS = 1000
#: Files of a RocksDB directory the read-only view must not share with the source: the
#: lock and the info logs (RocksDB may create or rotate them) and rocksdict's side file.
_PRIVATE = ("LOCK", "LOG", "rocksdict-config.json")
#: The marker of an aurora-storage store (see aurora_storage._stores).
_AURORA_MARKER = "aurora-store.json"
_log = logging.getLogger("aurora_storage.migrate")
#: What to do about a source whose write-ahead log is damaged (instead of the RocksDB
#: plugin's advice, a read-write open of the store, which import-seed never makes).
_SEED_WAL_HINT = (
    "Restore the TypeScript store from a backup and import that; or, to import the "
    "records before the damage (those after it are lost), open a copy of the store once "
    "read-write with RocksDB's point-in-time recovery and import the copy (see "
    'docs/migrating-from-typescript.md, "A damaged source")'
)


@dataclasses.dataclass(frozen=True)
class SeedProblem:
    """A stored record that was not imported, and why.

    Attributes:
        key: the stored key as text (bytes that are not UTF-8 as ``\\xNN`` escapes).
        reason: ``unsplittable``, ``ambiguous``, ``unknown-tenant`` (see
            :class:`~aurora_storage.migrate.SeedKeyError`), ``not-utf8`` (the key is not
            UTF-8 text), ``bad-value`` (the value is not UTF-8 JSON), ``refused`` (the
            target refuses the tenant, key or value: empty tenant, key too large,
            integer beyond the codec's range, a lone surrogate such as ``"\\ud800"`` in a
            key or value ...), ``collision`` (another stored key
            maps to the same aurora key: JSON objects with the same members in another
            order, ``1`` and ``1.0``, a text key and the same JSON string; the one in
            canonical form was imported, or else the first in stored key order).
        message: what was wrong and what to do.
        candidates: the tenant ids that fit, for ``ambiguous`` and ``unknown-tenant``.
    """

    key: str
    reason: str
    message: str
    candidates: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict."""
        return {
            "key": self.key,
            "reason": self.reason,
            "message": self.message,
            "candidates": list(self.candidates),
        }


@dataclasses.dataclass(frozen=True)
class SeedImportReport:
    """What :func:`import_seed` did.

    Attributes:
        source: the source directory.
        target: the target URL (secrets hidden), or ``None`` for a dry run without one.
        dry_run: nothing was written.
        records: stored records read from the source.
        imported: records written to the target (in a dry run: that would be written).
        tenants: records imported per tenant.
        text_keys: records whose key was resolved through a known tenant and imported
            as text (their stored key held no JSON after the tenant).
        problem_count: records not imported, by reason.
        problems: the first :data:`MAX_PROBLEMS` problems, in source key order (all of
            them go to ``on_problem`` of :func:`import_seed`).
        recovery: what the read-only open of the source left out, as the RocksDB
            plugin's ``stats()["recovery"]`` reports it (``{"mode": ..., "torn_tail":
            {"file", "bytes_dropped"}}``: the torn tail of the source's write-ahead log
            that a killed writer left, logged as a warning too), or ``None``.
        codec: the name of the codec values were written with (in a dry run: checked
            with, see ``dry_run`` of :func:`import_seed`).
    """

    source: str
    target: str | None
    dry_run: bool
    records: int
    imported: int
    tenants: dict[str, int]
    text_keys: int
    problem_count: dict[str, int]
    problems: tuple[SeedProblem, ...]
    recovery: dict[str, Any] | None = None
    codec: str | None = None

    @property
    def problems_truncated(self) -> bool:
        """Whether :attr:`problems` lists fewer problems than were counted."""
        return len(self.problems) < sum(self.problem_count.values())

    @property
    def ok(self) -> bool:
        """Whether every record was imported (or would be, in a dry run)."""
        return not self.problem_count

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (the command line's ``--json`` output)."""
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "records": self.records,
            "imported": self.imported,
            "not_imported": sum(self.problem_count.values()),
            "tenants": self.tenants,
            "text_keys": self.text_keys,
            "problem_count": self.problem_count,
            "problems": [p.to_json() for p in self.problems],
            # Whether "problems" lists fewer than all (not_imported counts them all).
            "problems_truncated": self.problems_truncated,
            "recovery": self.recovery,
            "codec": self.codec,
        }


# ----------------------------------------------------------------------- the source


def _shell_url(scheme: str, path: str) -> str:
    """The store at ``path`` as a command-line argument in advice: its URL,
    percent-encoded, quoted for the shell (as the CLI's ``shell_url`` writes it; the
    migration module does not import the CLI)."""
    return shlex.quote(URL(scheme, path).render(hide_secrets=False))


def _check_source(path: str) -> None:
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.exists(path) else "is not a directory"
        raise SeedSourceError(
            f"no RocksDB store at {path} (the path {what}); give the directory the "
            "TypeScript package's RocksDBConfig.path named",
            path=path,
        )
    marker = os.path.join(path, _AURORA_MARKER)
    if os.path.exists(marker):
        scheme = _marker_scheme(marker, path)
        raise SeedSourceError(
            f"{path} is an aurora-storage store, not one written by the TypeScript package; "
            f"copy it with `aurora-storage copy {_shell_url(scheme, path)} URL`. If it "
            "holds a "
            "TypeScript store that an earlier aurora-storage opened and took over "
            "(`aurora-storage verify` reports its records as outside aurora-storage's key "
            f"space), move {marker} out of the directory and run import-seed again: the "
            "TypeScript records are imported, records aurora-storage wrote there are "
            "reported (see docs/migrating-from-typescript.md)",
            backend=scheme,
            path=path,
        )
    if not os.path.isfile(os.path.join(path, "CURRENT")):
        raise SeedSourceError(
            f"{path} holds no RocksDB store (no CURRENT file); give the directory the "
            "TypeScript package's RocksDBConfig.path named",
            path=path,
        )


def _marker_scheme(marker: str, path: str) -> str:
    """The engine an aurora-storage store's marker names (``rocksdb`` when it names none
    or cannot be read: a directory holding ``CURRENT`` is RocksDB's, else LMDB's)."""
    from .._stores import read_marker

    with contextlib.suppress(errors.StorageError):
        backend = (read_marker(marker) or {}).get("backend")
        if isinstance(backend, str) and backend:
            return backend
    return "rocksdb" if os.path.exists(os.path.join(path, "CURRENT")) else "lmdb"


class _SourceError(errors.CorruptionError):
    """The source store cannot be opened or read; :func:`import_seed` raises it as a
    :class:`~aurora_storage.errors.CorruptionError` saying what was written."""


@dataclasses.dataclass(frozen=True)
class _Source:
    """The source store opened read-only.

    Attributes:
        db: the rocksdict handle (raw bytes).
        path: the store's directory.
        view: the directory of symbolic links the engine opened.
        recovery: what the open left out (see :attr:`SeedImportReport.recovery`).
    """

    db: Any
    path: str
    view: str
    recovery: dict[str, Any] | None

    def named(self, text: str) -> str:
        """An engine message naming the store's own files, not the view's links (a
        temporary directory that is gone by the time the message is read)."""
        return text.replace(self.view, self.path)


def _store_files(path: str) -> list[str]:
    """The names of the store's files the read-only view links to (all but
    :data:`_PRIVATE`), sorted: every read-write open of the store changes them (a new
    MANIFEST and write-ahead log), read-only opens do not."""
    return sorted(name for name in os.listdir(path) if not name.startswith(_PRIVATE))


def _live_error(path: str) -> errors.StoreLockedError:
    """The refusal of a source another process has open (see :func:`_refuse_live`)."""
    return errors.StoreLockedError(
        f"the TypeScript store {path} is open in another process (its RocksDB LOCK is "
        "held): the application is still running, and what it writes after the import "
        "reads the store would be missing from the target at cut-over. Stop the "
        "application (and keep it stopped until it runs on aurora-storage), then run "
        "import-seed again; a dry run (--dry-run) may read a live store. Nothing was "
        "written",
        backend="rocksdb",
        path=path,
    )


def _refuse_live(path: str, *, dry_run: bool) -> None:
    """Refuse a source another process has open - the application still running, its
    RocksDB ``LOCK`` held: the import reads the store as of its open, so what the
    application writes afterwards would be missing from the target at cut-over. A dry
    run writes nothing: it reads the store as of now, with a warning.

    Raises:
        StoreLockedError: another process holds the store's ``LOCK`` (not a dry run).
    """
    from aurora_storage_rocksdb._engine import store_at_rest

    if store_at_rest(path):
        return
    if not dry_run:
        raise _live_error(path)
    _log.warning(
        "the TypeScript store %s is open in another process (its RocksDB LOCK is held): "
        "the dry run reads it as of now; stop the application before the import itself, "
        "which refuses a live store",
        path,
    )


def _keep_writers_out(path: str) -> int | None:
    """Take a shared lock on the store's RocksDB ``LOCK`` file and return the descriptor
    holding it (closing it releases the lock), or ``None`` when the store has no
    ``LOCK`` file (a checkpoint copy: nothing runs on it) or it cannot be opened.

    RocksDB's own lock is a whole-file fcntl write lock on ``LOCK``, taken without
    waiting: while this shared lock is held, an application (re)started on the store
    fails to open it (RocksDB's ``IO error: While lock file: <path>/LOCK: Resource
    temporarily unavailable``) instead of writing records the import, which reads the
    store as of its open, would leave out. ``backup`` keeps writers out of a store it
    backs up the same way (``aurora_storage.cli._common.held_by_others``). Read-only
    openers take no lock and are not kept out. POSIX locks belong to the process: this
    keeps other processes out, and must be taken after this process's last open or
    probe of the same ``LOCK`` file (closing any descriptor of it drops the lock), so
    :func:`_open_source` takes it once the source is open.

    Raises:
        StoreLockedError: another process holds the lock (it opened the store since
            :func:`_refuse_live` looked).
    """
    try:
        fd = os.open(os.path.join(path, "LOCK"), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise _live_error(path) from exc
    return fd


@contextlib.contextmanager
def _open_source(path: str, *, dry_run: bool) -> Iterator[_Source]:
    """The store at ``path`` opened read-only, never written: the engine's directory is
    a temporary one of symbolic links to the store's files. The open judges the files
    as every read-only open of the RocksDB plugin does (``open_db``, which names the
    store's own files in its messages). Unless ``dry_run``, other processes are kept
    from opening the store for writing until the block ends
    (:func:`_keep_writers_out`); a dry run keeps no application from starting.

    Raises:
        SeedSourceError: no TypeScript store at ``path`` (see :func:`_check_source`), or
            records in other column families.
        StoreLockedError: another process has the store open (see :func:`_refuse_live`
            and :func:`_keep_writers_out`).
        _SourceError: the store is damaged (the file named).
    """
    from aurora_storage_rocksdb._config import RocksDBConfig
    from aurora_storage_rocksdb._engine import open_db

    _check_source(path)
    _refuse_live(path, dry_run=dry_run)
    with tempfile.TemporaryDirectory(prefix="aurora-seed-view-") as view:
        names = _store_files(path)
        for name in names:
            os.symlink(os.path.join(path, name), os.path.join(view, name))
        config = RocksDBConfig(path=path, mode="read_only", create_if_missing=False)
        try:
            db, recovery = open_db(config, None, engine_path=view, wal_hint=_SEED_WAL_HINT)
        except errors.CorruptionError as exc:
            raise _SourceError(exc.message, backend="rocksdb", path=exc.path) from exc
        source = _Source(db, path, view, recovery)
        held = None
        try:
            _refuse_other_families(source)
            if not dry_run:
                # Taken after open_db, whose probe of LOCK (closing its descriptor)
                # would drop a lock this process held already.
                held = _keep_writers_out(path)
                # A writer that opened the store (and closed it again) between the
                # check above and the lock left a new MANIFEST and log behind: what it
                # wrote may be missing from the view, so the import is refused.
                if _store_files(path) != names:
                    raise _live_error(path)
            yield source
        finally:
            db.close()
            if held is not None:
                os.close(held)


def _refuse_other_families(source: _Source) -> None:
    """Refuse a source holding records in a column family other than the default one:
    the TypeScript package keeps every record in the default family, the only one read
    here, so importing would leave them out while reporting success (``imported 0 of 0
    records``, breaker finding). An empty family hides nothing and is let through.

    Raises:
        SeedSourceError: names the families holding records.
        _SourceError: a family cannot be read.
    """
    import rocksdict

    from aurora_storage_rocksdb._foreign import family_names, other_families

    path = source.path
    try:
        families = other_families(path)
        full = []
        for name in families:
            family = source.db.get_column_family(name)
            it = family.iter(rocksdict.ReadOptions())
            try:
                it.seek_to_first()
                if it.valid():
                    full.append(name)
                it.status()
            finally:
                del it, family
    except Exception as exc:  # rocksdict raises plain Exception for engine errors
        raise _SourceError(
            f"the column families of the RocksDB store {path} cannot be read: "
            f"{source.named(str(exc))}",
            backend="rocksdb",
            path=path,
        ) from exc
    if full:
        raise SeedSourceError(
            f"{path} holds records in column families other than RocksDB's default one "
            f"({family_names(full)}); import-seed reads the TypeScript package's layout, "
            "every record in the default column family, so it imported nothing. Such a "
            "store was written by another program (or another version of it): export "
            "those records with the program that wrote them, or import a TypeScript "
            "package's store",
            backend="rocksdb",
            path=path,
        )


def _estimate(db: Any) -> int | None:
    with contextlib.suppress(Exception):
        n = db.property_int_value("rocksdb.estimate-num-keys")
        return int(n) if n is not None else None
    return None


def _chunks(source: _Source) -> Iterator[list[tuple[bytes, bytes]]]:
    """The stored records in key order, :data:`CHUNK` at a time; a read error is a
    :class:`_SourceError` (naming the damaged file), never a shortened scan."""
    import rocksdict

    from aurora_storage_rocksdb._damage import damaged_files

    it = source.db.iter(rocksdict.ReadOptions())
    it.seek_to_first()
    chunk: list[tuple[bytes, bytes]] = []
    while it.valid():
        key = bytes(it.key())
        # aurora-storage's metadata record, in a TypeScript store an earlier version took
        # over (see _check_source): its bookkeeping, not a record of the application.
        if key != META_KEY:
            chunk.append((key, bytes(it.value())))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
        it.next()
    try:
        it.status()
    except Exception as exc:  # rocksdict raises plain Exception for engine errors
        text = " ".join(source.named(str(exc)).split()).rstrip(".")
        files = damaged_files(text)
        raise _SourceError(
            f"the RocksDB store {source.path} is damaged: reading it failed: {text}. "
            "Restore the TypeScript store from a backup and import that",
            backend="rocksdb",
            path=files[0] if len(files) == 1 else source.path,
        ) from exc
    if chunk:
        yield chunk


# ---------------------------------------------------------------------- conversion


def _canonical(value: Any) -> str:
    """One JSON text per aurora key: equal aurora keys (``1`` and ``1.0``, objects with
    the same members in any order) give the same text, different ones different texts.
    A stored key whose JSON is not this text may share its aurora key with another."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        # aurora keys compare numbers by value: 1.0 is the key 1. Beyond JavaScript's
        # safe integers, the number is a double (see _split.js_integer): its canonical
        # text is JSON.stringify's (the shortest digits that give it, then zeros).
        if -JS_SAFE_INTEGER <= value <= JS_SAFE_INTEGER:
            return str(int(value))
        shortest = repr(float(value))
        return str(int(decimal.Decimal(shortest))) if abs(value) < 1e21 else shortest
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    members = sorted(value.items())
    return (
        "{"
        + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_canonical(v)}" for k, v in members)
        + "}"
    )


@dataclasses.dataclass
class _Tally:
    records: int = 0
    imported: int = 0
    text_keys: int = 0
    tenants: Counter[str] = dataclasses.field(default_factory=Counter)
    reasons: Counter[str] = dataclasses.field(default_factory=Counter)
    problems: list[SeedProblem] = dataclasses.field(default_factory=list)
    #: Called with every problem (the report keeps only the first MAX_PROBLEMS).
    on_problem: Callable[[SeedProblem], None] | None = None
    #: Digest of the aurora (tenant, key) -> the stored key imported under it, for
    #: stored keys not in canonical form (see _collision).
    seen: dict[bytes, str] = dataclasses.field(default_factory=dict)

    def problem(
        self, key: str, reason: str, message: str, candidates: tuple[str, ...] = ()
    ) -> None:
        self.reasons[reason] += 1
        problem = SeedProblem(key, reason, message, candidates)
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        if self.on_problem is not None:
            self.on_problem(problem)


def _convert(
    raw_key: bytes, raw_value: bytes, known: frozenset[str] | None, tally: _Tally
) -> tuple[SeedSplit, Any] | None:
    """One stored record as ``(split, value)``, or ``None`` after recording its problem."""
    try:
        text = raw_key.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = raw_key.decode("utf-8", "backslashreplace")
        tally.problem(shown, "not-utf8", f"the stored key is not UTF-8 text: {exc}")
        return None
    try:
        split = split_seed_key(text, known_tenants=known)
    except SeedKeyError as exc:
        tally.problem(text, exc.reason, str(exc), exc.candidates)
        return None
    if not split.tenant:
        tally.problem(
            text,
            "refused",
            f"{text!r} has an empty tenant id (the stored key starts with ':'), and an "
            "aurora-storage tenant id is a non-empty text. If the record is needed, put it "
            "under a tenant id of your choice: aurora-storage put URL TENANT KEY VALUE "
            "--key-json --value-json, with the key and the value as stored",
        )
        return None
    for what, part in (("tenant", split.tenant), ("key", _canonical(split.key))):
        try:
            part.encode("utf-8")
        except UnicodeEncodeError as exc:
            # JSON.stringify writes a lone surrogate (half of a UTF-16 pair) as "\udXXX";
            # it is no Unicode text, so export, keys and other languages could not read it.
            tally.problem(
                text,
                "refused",
                f"the {what} of {text!r} holds a lone surrogate ({exc.reason} at "
                f"{exc.start}), which is not Unicode text; fix the record in the source "
                "application and import again",
            )
            return None
    try:
        value = parse_json(raw_value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        tally.problem(
            text,
            "bad-value",
            f"the value of {text!r} is not UTF-8 JSON text ({exc}); the TypeScript package "
            "writes JSON.stringify(value)",
        )
        return None
    return split, value


def _importable(
    raw_key: bytes, raw_value: bytes, known: frozenset[str] | None, checker: Any
) -> bool:
    """Whether the stored record ``raw_key`` -> ``raw_value`` is imported when its turn
    comes: it converts (:func:`_convert`) and ``checker`` (a scratch repository with the
    target's codec) takes it. Nothing is recorded."""
    converted = _convert(raw_key, raw_value, known, _Tally())
    if converted is None:
        return False
    split, value = converted
    try:
        checker.put(split.tenant, split.key, value)
    except (errors.InvalidKeyError, errors.InvalidTenantError, errors.SerializationError):
        return False
    checker.delete(split.tenant, split.key)
    return True


def _collision(
    db: Any,
    text: str,
    split: SeedSplit,
    tally: _Tally,
    known: frozenset[str] | None,
    checker: Any,
) -> tuple[bytes, str | None]:
    """Whether the record stored under ``text`` maps to the aurora key of another record
    that is imported: ``(digest, that record's stored key or None)``; an empty digest
    when ``text`` is in canonical form (:func:`_canonical`).

    Of the stored keys sharing one aurora key at most one is canonical: a non-canonical
    key looks that one up in the source - it wins, whatever the key order, when it is
    imported itself (:func:`_importable`: a twin whose value the target's codec refuses,
    or that is no JSON, leaves the aurora key to the others) - and otherwise the
    non-canonical keys already imported (remembered by digest, so memory grows only
    with keys written in a non-canonical form, such as objects whose members are not in
    sorted order).
    """
    canonical = _canonical(split.key)
    if not split.text_key and text[len(split.tenant) + 1 :] == canonical:
        return b"", None
    twin = f"{split.tenant}:{canonical}"
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: no such stored key
        raw_twin = twin.encode("utf-8")
        stored = db.get(raw_twin)
        if stored is not None and _importable(raw_twin, bytes(stored), known, checker):
            return b"", twin
    digest = hashlib.blake2b(
        encode_tenant(split.tenant) + encode_key(split.key), digest_size=16
    ).digest()
    return digest, tally.seen.get(digest)


def _write_chunk(
    db: Any,
    repo: Any,
    records: list[tuple[str, SeedSplit, Any]],
    tally: _Tally,
    known: frozenset[str] | None,
    checker: Any,
) -> None:
    """Write ``records`` to ``repo`` in one atomic batch, recording each record the
    repository refuses, or that would overwrite another record, as a problem. The
    tally counts the records as imported once the batch has committed (a batch that
    raises wrote nothing: an error's note must not count it)."""
    imported = text_keys = 0
    tenants: Counter[str] = Counter()
    with repo.batch() as batch:
        for text, split, value in records:
            try:
                digest, earlier = _collision(db, text, split, tally, known, checker)
                if earlier is not None:
                    # Writing it would overwrite the other record (or be overwritten).
                    tally.problem(
                        text,
                        "collision",
                        f"{text!r} is the same aurora key as {earlier!r} (imported): aurora "
                        "keys compare by value (objects with the same members, 1 and 1.0, "
                        "a text key and the JSON string); this record was not imported",
                    )
                    continue
                batch.put(split.tenant, split.key, value)
            except (
                errors.InvalidKeyError,
                errors.InvalidTenantError,
                errors.SerializationError,
            ) as exc:
                tally.problem(text, "refused", f"{text!r}: {exc}")
                continue
            if digest:
                tally.seen[digest] = text
            imported += 1
            text_keys += split.text_key
            tenants[split.tenant] += 1
    tally.imported += imported
    tally.text_keys += text_keys
    tally.tenants.update(tenants)


# ------------------------------------------------------------------------ the import


def import_seed(
    source: str | os.PathLike[str],
    target: str | Any | None,
    *,
    known_tenants: Iterable[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int | None], None] | None = None,
    on_problem: Callable[[SeedProblem], None] | None = None,
) -> SeedImportReport:
    """Copy every record of a RocksDB store written by the TypeScript package
    (``tenantId:JSON(key)`` keys, JSON values) into an aurora-storage store.

    Each stored key is split by :func:`~aurora_storage.migrate.split_seed_key`; its JSON
    key becomes the Python key (arrays are lists, objects dicts) and its JSON value the
    value. Records that cannot be imported exactly are reported in the returned report,
    never guessed or silently dropped; the others are written in atomic batches of up
    to :data:`CHUNK` records, or of up to the target's ``capabilities.max_batch_ops``
    when it bounds its atomic batches (a NATS bucket's ``max_batch``). Existing keys of
    the target are overwritten, so an import can be run again (for example with more
    known tenants, or after fixing what stopped it).

    The source's files are judged as every read-only open of the RocksDB plugin judges
    them: a write-ahead log damaged in the middle, or cut where no crash ends one, is
    refused (nothing is written); the torn tail a killed writer leaves is read past,
    logged as a warning and reported in :attr:`SeedImportReport.recovery`.

    Args:
        source: the directory of the TypeScript package's store (``RocksDBConfig.path``).
            It is only read (see the module docstring). The application writing it must
            be stopped first: a store another process has open is refused, and while
            the import runs (not a dry run) it holds a shared lock on the store's
            RocksDB ``LOCK`` file, so an application started meanwhile in another
            process fails to open it (RocksDB: ``IO error: While lock file:
            <path>/LOCK: Resource temporarily unavailable``) instead of writing records
            the import would leave out.
        target: an aurora-storage URL (opened, and closed afterwards), or an open
            repository (left open). May be ``None`` for a dry run.
        known_tenants: the application's tenant ids; when given, each key must split
            into one of them (see :func:`~aurora_storage.migrate.split_seed_key`).
        dry_run: read and check everything, write nothing (the target is not written).
            Records are checked against a ``memory://`` repository with the codec the
            import would write with (:attr:`SeedImportReport.codec`): an open
            repository's, else the one the URL names (``?codec=``), else the one the
            existing target recorded - a ``rocksdb``/``lmdb`` store's marker at the
            URL's path, a NATS bucket's (opened read-only, never created), a
            ``tiered`` pair's tiers' (each by the same rules) - else ``json`` (a new
            store's). A dry run may read a store another process has open (a warning
            is logged), and keeps no application from starting.
        progress: called with the number of records read after each chunk (of up to
            :data:`CHUNK` records, once they are written).
        total: called once with the source's estimated record count (``None`` when
            unknown), for a progress bar.
        on_problem: called with every problem as it is found, in source key order (the
            report lists only the first :data:`MAX_PROBLEMS`); for a problems file.

    Returns:
        What was imported and what was not (:class:`SeedImportReport`).

    Raises:
        SeedSourceError: no RocksDB store at ``source``, an aurora-storage store there,
            or records in a column family other than the default one (not the TypeScript
            package's layout; nothing is imported).
        StoreLockedError: another process has the source open (its RocksDB ``LOCK`` is
            held: the application is still running); nothing is written. Not raised for
            a dry run.
        InvalidArgumentError: ``known_tenants`` is a ``str`` (pass a list) or holds
            something other than non-empty ``str`` tenant ids.
        CorruptionError: the source cannot be opened or read: its message names the
            damaged file and says how many records were written to the target before
            (none when the open failed).
        ConfigurationError: ``target`` names the source directory itself, or a
            non-empty directory holding no aurora-storage store (nothing is written).
        StorageError: what opening or writing the target raised (its message says how
            many records were written before, when some were, in batches of how many,
            and to run the import again once its cause is fixed).
    """
    import aurora_storage

    path = os.path.abspath(os.fspath(source))
    known = _known_tenants(known_tenants)
    if isinstance(target, str):
        _refuse_target(path, target)
    shown = None
    if isinstance(target, str):
        shown = aurora_storage.URL.parse(target).render()
    elif target is not None:
        shown = str(getattr(target, "url", None) or type(target).__name__)
    tally = _Tally(on_problem=on_problem)
    recovery = None
    opened = False
    # Records per atomic batch: at most what one atomic batch of the target holds (a
    # NATS bucket: max_batch, 1,000 by default; Capabilities.max_batch_ops).
    step = CHUNK
    try:
        with _open_source(path, dry_run=dry_run) as src, contextlib.ExitStack() as stack:
            recovery = src.recovery
            if total is not None:
                total(_estimate(src.db))
            repo: Any = None
            if not dry_run:
                if target is None:
                    raise errors.ConfigurationError("import_seed needs a target unless dry_run")
                if isinstance(target, str):
                    repo = stack.enter_context(aurora_storage.open(target))
                else:
                    repo = target
                opened = True
                step = min(CHUNK, repo.capabilities.max_batch_ops or CHUNK)
            codec = _target_codec(target, repo)
            # Tells whether a record is imported before its turn (see _collision).
            checker = stack.enter_context(aurora_storage.open("memory://", codec=codec))
            for chunk in _chunks(src):
                tally.records += len(chunk)
                records: list[tuple[str, SeedSplit, Any]] = []
                for raw_key, raw_value in chunk:
                    converted = _convert(raw_key, raw_value, known, tally)
                    if converted is not None:
                        records.append((raw_key.decode("utf-8"), *converted))
                if dry_run:
                    # The same checks as a real write, against a scratch store with the
                    # target's codec (a new one per chunk: memory stays bounded).
                    with aurora_storage.open("memory://", codec=codec) as scratch:
                        _write_chunk(src.db, scratch, records, tally, known, checker)
                else:
                    for i in range(0, len(records), step):
                        part = records[i : i + step]
                        _write_chunk(src.db, repo, part, tally, known, checker)
                if progress is not None:
                    progress(len(chunk))
            if repo is not None and hasattr(repo, "flush"):
                repo.flush()
    except _SourceError as exc:
        note = _written(tally.imported, shown, dry_run=dry_run, opened=opened, batch=step)
        raise errors.CorruptionError(
            f"{exc.message.rstrip('.')}. {note}", backend="rocksdb", path=exc.path
        ) from (exc.__cause__ or exc)
    except StorageError as exc:
        if tally.imported and not dry_run:
            # The target failed part way: say what the batches before it wrote.
            note = _written(tally.imported, shown, opened=True, batch=step)
            exc.message = f"{exc.message.rstrip('.')}. {note}"
            exc.args = (exc.message,)
        raise
    return SeedImportReport(
        source=path,
        target=shown,
        dry_run=dry_run,
        records=tally.records,
        imported=tally.imported,
        tenants=dict(sorted(tally.tenants.items())),
        text_keys=tally.text_keys,
        problem_count=dict(sorted(tally.reasons.items())),
        problems=tuple(tally.problems),
        recovery=recovery,
        codec=codec.name,
    )


def _written(
    imported: int, shown: str | None, *, dry_run: bool = False, opened: bool, batch: int
) -> str:
    """What an import that failed part way wrote to the target, in atomic batches of
    ``batch`` records, and what to do. The failure may be the source's (damage found
    part way) or the target's (a full bucket, a lost connection): the advice names both."""
    if dry_run:
        return "Nothing was written (a dry run)"
    if not opened:
        return f"Nothing was written to {shown}"
    if not imported:
        return f"No record was written to {shown}"
    return (
        f"{imported} records were written to {shown} before this, in atomic batches of "
        f"up to {batch} records (the failing batch wrote nothing unless the error says "
        "it may have). Fix the cause - the source or the target - and run import-seed "
        "again into the same target (it overwrites what this run wrote and adds the "
        "rest), or delete the target to start over"
    )


def _target_codec(target: str | Any | None, repo: Any) -> Codec[Any]:
    """The codec the target stores values with (what a dry run checks values with): an
    open repository's; for a URL that is not opened (a dry run), the one a real open of
    it would give - see :func:`_url_codec` - else ``json`` (what a new store gets)."""
    from ..codecs import get_codec
    from ..config import URL

    held = repo if repo is not None else target
    if held is not None and not isinstance(held, str):
        codec = getattr(held, "codec", None)
        return codec if codec is not None else get_codec("json")
    if held is None:
        return get_codec("json")
    found = _url_codec(URL.parse(held))
    return found if found is not None else get_codec("json")


def _url_codec(url: URL) -> Codec[Any] | None:
    """The codec a store opened from ``url`` would store values with, found without
    writing anything, or ``None`` for a new store (``json``, unless a tier says else):

    * the codec the URL names (``?codec=``; a real open refuses a store recorded with
      another);
    * ``rocksdb``/``lmdb``: the one an existing store at the URL's path recorded in its
      marker (nothing is opened);
    * ``nats``: the one an existing bucket recorded, read through a read-only open that
      never creates the bucket (a bucket that cannot be opened so is taken as new, with
      a warning unless it does not exist);
    * ``tiered``: its tiers' (each found by these rules): cold's in cache mode, hot's in
      projection mode (a ``projection`` option, or tiers that differ: cache mode keeps
      one codec in both), as :attr:`TieredRepository.codec` is;
    * any other scheme: ``None`` (``memory://`` is always new).
    """
    from .._stores import marker_path, read_marker
    from ..codecs import get_codec
    from ..config import URL

    named = url.options.get("codec")
    if named:
        return get_codec(named)
    if url.scheme in ("rocksdb", "lmdb"):
        where = _target_dir(url.render(hide_secrets=False))
        if where is not None and os.path.exists(where):
            marker = read_marker(marker_path(where)) or {}
            if isinstance(marker.get("codec"), str):
                return get_codec(marker["codec"])
        return None
    if url.scheme == "nats":
        return _bucket_codec(url)
    if url.scheme == "tiered":
        tiers = {}
        for name in ("hot", "cold"):
            text = url.options.get(name)
            tiers[name] = _url_codec(URL.parse(text)) if isinstance(text, str) and text else None
        hot, cold = tiers["hot"], tiers["cold"]
        if url.options.get("projection") or (
            hot is not None and cold is not None and hot.name != cold.name
        ):
            return hot
        return cold if cold is not None else hot
    return None


def _bucket_codec(url: URL) -> Codec[Any] | None:
    """The codec an existing NATS bucket recorded, read through a read-only open that
    neither creates nor changes the bucket; ``None`` when there is no such bucket, or
    (with a warning saying why) when it cannot be opened."""
    import aurora_storage

    shown = url.render()
    try:
        with aurora_storage.open(
            url.with_options(read_only="true", create_if_missing="false")
        ) as repo:
            return repo.codec
    except errors.StorageError as exc:
        # A missing bucket is a new store (the import creates it): nothing to say.
        if isinstance(exc, errors.ConfigurationError) and "does not exist" in str(exc):
            return None
        _log.warning(
            "could not read the codec of %s (%s): the dry run checks values with json, "
            "what a new bucket gets; the import itself uses the codec the bucket recorded",
            shown,
            exc,
        )
        return None


def _target_dir(target: str) -> str | None:
    """The local directory of a file engine's target URL, or None for other schemes."""
    from ..config import URL, expand_store_path, local_path

    url = URL.parse(target)
    if url.scheme not in ("rocksdb", "lmdb"):
        return None
    return os.path.abspath(
        expand_store_path(local_path(url, backend=url.scheme), backend=url.scheme)
    )


def foreign_target_message(target: str) -> str | None:
    """Why the directory of ``target`` must not be written, or None when it may be: an
    existing, non-empty directory that holds no aurora-storage store (another
    application's data, or another TypeScript store that an import would spoil).

    A directory without ``aurora-store.json`` is still ours when its engine store holds
    aurora-storage's metadata record, or no record at all (and, RocksDB, no column
    family but the default one): what an import (or any open)
    killed between the engine's files and the marker leaves, so running it again
    resumes (the same rule as opening, see ``aurora_storage_rocksdb._foreign``).
    """
    where = _target_dir(target)
    if where is None or not os.path.isdir(where) or not os.listdir(where):
        return None
    if os.path.exists(os.path.join(where, _AURORA_MARKER)):
        return None
    if _unmarked_store_is_ours(where):
        return None
    return (
        f"{where} is a non-empty directory that holds no aurora-storage store (no "
        f"{_AURORA_MARKER}, and no aurora-storage metadata record in an engine store); "
        "importing would add files beside the ones there - import into a new or empty "
        "directory, or into an aurora-storage store"
    )


def _unmarked_store_is_ours(where: str) -> bool:
    """Whether the engine store in directory ``where`` (no marker) holds aurora-storage's
    metadata record or no record at all; read without writing to it."""
    if os.path.isfile(os.path.join(where, "CURRENT")):
        from aurora_storage_rocksdb._foreign import store_contents

        return store_contents(where) in ("aurora", "empty")
    data = os.path.join(where, "data.mdb")
    if os.path.isfile(data):
        if os.path.getsize(data) == 0:
            return True  # a creator killed inside liblmdb's open: the LMDB open finishes it
        import lmdb

        try:
            # Read-only without the lock file: nothing is created or written.
            env = lmdb.open(where, readonly=True, lock=False, max_dbs=0)
        except lmdb.Error:
            return False
        try:
            with env.begin() as txn:
                if txn.get(META_KEY) is not None:
                    return True
                return not txn.cursor().first()
        except lmdb.Error:
            return False
        finally:
            env.close()
    return False


def _known_tenants(given: Iterable[str] | None) -> frozenset[str] | None:
    """``known_tenants`` as a set of non-empty tenant ids; a ``str`` or ``bytes`` (which
    would iterate to letters) or any other item is refused."""
    if given is None:
        return None
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        raise errors.InvalidArgumentError(
            f"known_tenants must be an iterable of tenant ids, not {type(given).__name__}; "
            f"pass [{given!r}] for one tenant"
        )
    known = frozenset(given)
    for tenant in known:
        if not isinstance(tenant, str) or not tenant:
            raise errors.InvalidArgumentError(
                f"known_tenants holds {tenant!r}: each tenant id is a non-empty str"
            )
    return known


def _refuse_target(path: str, target: str) -> None:
    """Refuse a target URL naming the source directory (it would write into the store
    being imported), or a directory that holds something other than an aurora-storage
    store (:func:`foreign_target_message`)."""
    where = _target_dir(target)
    if where is None:
        return
    if os.path.realpath(where) == os.path.realpath(path):
        raise errors.ConfigurationError(
            f"the target {target} is the source store itself; import into another path",
            path=path,
        )
    message = foreign_target_message(target)
    if message is not None:
        raise errors.ConfigurationError(message, path=where)
