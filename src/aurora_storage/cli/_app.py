"""The commands of ``aurora-storage`` (see docs/cli.md, the operator's guide)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from .. import errors
from ._common import (
    KEY_FORMATS,
    VALUE_FORMATS,
    ExitCode,
    NewStore,
    decided_status,
    json_bytes,
    open_read,
    open_write,
    parse_key,
    parse_url,
    parse_value,
    plural,
    progress,
    say,
    show_library_warnings,
    text_bytes,
    warn,
    write_json,
    write_line,
)

__all__ = ["cli"]

F = TypeVar("F", bound=Callable[..., Any])

_EPILOG_URLS = """
\b
URLs: memory://, rocksdb:///abs/path, rocksdb:relative/path, lmdb:///abs/path,
tiered://?hot=...&cold=... (see `aurora-storage backends`).
"""


def _key_options(fn: F) -> F:
    fn = click.option(
        "--key-format",
        "-K",
        type=click.Choice(KEY_FORMATS),
        default="text",
        show_default=True,
        help="How KEY (and --prefix/--start/--stop) are written: text as is, json "
        '(tagged JSON: ["order", 7], {"$bytes": "AAE="}), int, hex or base64 (bytes).',
    )(fn)
    return click.option("--key-json", is_flag=True, help="Same as --key-format json.")(fn)


def _key_format(key_format: str, key_json: bool) -> str:
    return "json" if key_json else key_format


def _json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(fn)


def _quiet_option(fn: F) -> F:
    return click.option(
        "--quiet", "-q", is_flag=True, help="No progress or status lines on stderr."
    )(fn)


def _confirm(question: str, yes: bool) -> None:
    """Ask before a destructive step, unless ``--yes``; refuse when nobody can answer."""
    if yes:
        return
    # A closed stdin (`<&-`) leaves sys.stdin None: nobody can answer either.
    if sys.stdin is None or not sys.stdin.isatty():
        raise click.UsageError(f"{question} - pass --yes to confirm (stdin is not a terminal)")
    if not click.confirm(question, err=True):
        raise click.exceptions.Exit(int(ExitCode.USAGE))


class _Group(click.Group):
    """The command group; a closed stdout (``| head``) ends the command quietly."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away: not a failure of ours (click itself would exit 1).
            # Point stdout at devnull so the interpreter's final flush stays quiet. A
            # status decided before the report (see decide_status) stands.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(decided_status()) from None


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG_URLS,
)
@click.version_option(package_name="aurora-storage")
@click.option("--verbose", "-v", count=True, help="Log to stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """aurora-storage: inspect, export, copy, verify and back up stores.

    \b
    Read commands (info, tenants, keys, items, get, count, export, verify, backup)
    never create or change a store: RocksDB opens read-only, LMDB read-only, so they
    work beside a live writer. Exit codes: 0 ok, 1 not found, 2 usage, 3 store error,
    4 no store at the URL, 5 damaged or different, 6 a broken plugin (backends),
    70 internal error (a bug: report it), 130 interrupted.

    \b
    Examples:
      aurora-storage info rocksdb:///var/data/events
      aurora-storage keys lmdb:///var/data/proj acme --prefix order --limit 10
      aurora-storage get rocksdb:///var/data/events acme '["order", 7]' --key-json
      aurora-storage export rocksdb:///var/data/events -o events.jsonl
      aurora-storage copy rocksdb:///var/data/events lmdb:///var/data/copy
    """
    # Without -v the library's warnings (a torn log tail an open dropped or left out)
    # still reach the user, as warning: lines; with -v the log handler shows them.
    show_library_warnings(not verbose)
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            stream=sys.stderr,
            format="%(levelname)s %(name)s: %(message)s",
        )


# -------------------------------------------------------------------------- demo


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the stores (default: a temporary directory, removed afterwards).",
)
@click.option(
    "--events",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Order events to write (0 or more).",
)
def demo(data_dir: Path | None, events: int) -> None:
    """Run the event -> history (RocksDB) -> projection (LMDB) demo."""
    from ._demo import run_demo

    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        run_demo(data_dir, events=events)
        return
    with tempfile.TemporaryDirectory(prefix="aurora-demo-") as tmp:
        run_demo(Path(tmp), events=events)


# ------------------------------------------------------------------- inspection


@cli.command()
@_json_option
def backends(as_json: bool) -> int:
    """List the installed backends, with broken plugins and why they are broken.

    Every plugin is loaded. A broken plugin (fails to import, implements no hook, serves
    another scheme than its entry point's name or one its distribution declares no entry
    point for, or its scheme is claimed by two distributions) is a row with status
    ``broken`` and the reason naming its distribution. A plugin that loads but whose
    optional extra is not installed (``nats`` without nats-py) is ``unavailable``, with
    the command that installs it: not broken, since the install left it out on purpose.
    Exit status 0 when every plugin loads, 6 when any is broken.

    \b
    Example:
      aurora-storage backends --json
    """
    from .._registry import missing_client, registry

    rows: list[dict[str, Any]] = []
    registry.specs()  # loads every plugin, so failures are known
    for scheme in registry.schemes():
        failure = registry.failures.get(scheme)
        if failure is not None:
            rows.append(_broken(scheme, failure))
            continue
        try:
            spec = registry.lookup(scheme)
        except errors.StorageError as exc:
            rows.append(_broken(scheme, exc))
            continue
        row = {
            "scheme": scheme,
            "status": "ok",
            "description": spec.description,
            "package": registry.distribution(scheme) or spec.package or "",
        }
        missing = missing_client(scheme)
        if missing is not None:
            row.update(status="unavailable", error=missing)
        rows.append(row)
    listed = {r["scheme"] for r in rows}
    for name, err in registry.failures.items():
        if name not in listed:
            rows.append(_broken(name, err))
    rows.sort(key=lambda r: r["scheme"])
    if as_json:
        write_json(rows)
    else:
        for r in rows:
            detail = r.get("error") or f"{r['description']} ({r['package']})"
            write_line(f"{r['scheme']}\t{r['status']}\t{detail}")
    broken = any(r["status"] == "broken" for r in rows)
    return int(ExitCode.BROKEN_PLUGIN if broken else ExitCode.OK)


def _broken(scheme: str, err: BaseException) -> dict[str, Any]:
    """The row of a broken plugin: the reason, and its distribution where known."""
    return {
        "scheme": scheme,
        "status": "broken",
        "error": str(err),
        "package": getattr(err, "distribution", None) or "",
    }


def _info(repo: Any) -> dict[str, Any]:
    return {
        "url": str(repo.url) if repo.url is not None else None,
        "codec": repo.codec.name,
        "capabilities": dataclasses.asdict(repo.capabilities),
        "stats": repo.stats(),
    }


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out.extend(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return [(prefix, value)]


@cli.command()
@click.argument("url")
@click.option("--tenants", "with_tenants", is_flag=True, help="Also count each tenant's keys.")
@_json_option
def info(url: str, with_tenants: bool, as_json: bool) -> None:
    """Show a store's codec, capabilities and engine statistics (sizes, estimated key
    counts, LMDB map use, RocksDB levels and pending compaction). Also named `stats`.

    \b
    Example:
      aurora-storage info lmdb:///var/data/proj --tenants --json
    """
    with open_read(url) as repo:
        doc = _info(repo)
        if with_tenants:
            doc["tenants"] = {t: repo.count(t) for t in repo.tenants()}
    if as_json:
        write_json(doc)
        return
    for name, value in _flat("", doc):
        write_line(f"{name}\t{value}")


cli.add_command(info, "stats")


@cli.command()
@click.argument("url")
@click.option("--counts", is_flag=True, help="Also count each tenant's keys.")
@_json_option
def tenants(url: str, counts: bool, as_json: bool) -> None:
    """List the tenants that hold data (one per line, or JSON Lines with --json).

    \b
    Example:
      aurora-storage tenants rocksdb:///var/data/events --counts
    """
    with open_read(url) as repo:
        for tenant in repo.tenants():
            n = repo.count(tenant) if counts else None
            if as_json:
                write_json({"tenant": tenant, "count": n} if counts else {"tenant": tenant})
            elif counts:
                write_line(f"{tenant}\t{n}")
            else:
                write_line(tenant)


def _scan_options(fn: F) -> F:
    for opt in reversed(
        [
            click.option("--prefix", default=None, help="Only keys starting with this."),
            click.option("--start", default=None, help="First key (inclusive)."),
            click.option("--stop", default=None, help="End key (exclusive)."),
            click.option("--reverse", is_flag=True, help="Descending key order."),
            click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N."),
        ]
    ):
        fn = opt(fn)
    return fn


def _scan_args(
    fmt: str,
    prefix: str | None,
    start: str | None,
    stop: str | None,
    reverse: bool,
    limit: int | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"reverse": reverse, "limit": limit}
    for name, text in (("prefix", prefix), ("start", start), ("stop", stop)):
        if text is not None:
            out[name] = parse_key(text, fmt)
    return out


def _key_text(key: Any) -> bytes:
    """A key for text output: a str as text (see :func:`text_bytes`), any other key as
    tagged JSON."""
    return text_bytes(key) if type(key) is str else json_bytes(key)


@cli.command()
@click.argument("url")
@click.argument("tenant")
@_scan_options
@_key_options
@_json_option
def keys(
    url: str, tenant: str, key_format: str, key_json: bool, as_json: bool, **scan: Any
) -> None:
    """List a tenant's keys in key order, one per line.

    Text output prints string keys as they are and other keys as tagged JSON; --json
    prints every key as tagged JSON (feed it back with --key-json).

    \b
    Examples:
      aurora-storage keys rocksdb:///var/data/events acme --prefix order --limit 10
      aurora-storage keys lmdb:///var/data/proj acme --start '["order", 5]' --key-json
    """
    args = _scan_args(_key_format(key_format, key_json), **scan)
    with open_read(url) as repo:
        for key in repo.keys(tenant, **args):
            write_line(json_bytes(key) if as_json else _key_text(key))


@cli.command()
@click.argument("url")
@click.argument("tenant")
@_scan_options
@_key_options
@click.option(
    "--json", "as_json", is_flag=True, help="Accepted for symmetry: the output is JSON Lines."
)
def items(
    url: str, tenant: str, key_format: str, key_json: bool, as_json: bool, **scan: Any
) -> None:
    """Stream a tenant's records as JSON Lines: {"key": ..., "value": ...} (with or
    without --json).

    \b
    Example:
      aurora-storage items lmdb:///var/data/proj acme --prefix order --limit 5
    """
    args = _scan_args(_key_format(key_format, key_json), **scan)
    with open_read(url) as repo:
        for key, value in repo.items(tenant, **args):
            write_line(json_bytes({"key": key, "value": value}))


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.argument("key")
@_key_options
@click.option(
    "--raw", is_flag=True, help="Write a str value as text and a bytes value as its bytes."
)
def get(url: str, tenant: str, key: str, key_format: str, key_json: bool, raw: bool) -> int:
    """Print one value as (tagged) JSON; exit 1 if the key is absent.

    \b
    Examples:
      aurora-storage get rocksdb:///var/data/events acme order-7
      aurora-storage get rocksdb:///var/data/events acme '["order", 7]' --key-json
      aurora-storage get lmdb:///var/data/blobs acme 0001ff --key-format hex --raw > blob
    """
    k = parse_key(key, _key_format(key_format, key_json))
    missing = object()
    with open_read(url) as repo:
        value = repo.get(tenant, k, missing)
    if value is missing:
        click.echo(f"not found: key {k!r} of tenant {tenant!r}", err=True)
        return int(ExitCode.NOT_FOUND)
    if raw and isinstance(value, bytes):
        sys.stdout.buffer.write(value)
    elif raw and isinstance(value, str):
        write_line(value)
    else:
        write_json(value)
    return 0


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.option("--prefix", default=None, help="Only keys starting with this.")
@_key_options
@_json_option
def count(
    url: str, tenant: str, prefix: str | None, key_format: str, key_json: bool, as_json: bool
) -> None:
    """Count a tenant's keys (all, or those under --prefix)."""
    p = None if prefix is None else parse_key(prefix, _key_format(key_format, key_json))
    with open_read(url) as repo:
        n = repo.count(tenant, prefix=p)
    if as_json:
        write_json({"tenant": tenant, "count": n})
    else:
        write_line(str(n))


# ---------------------------------------------------------------------- writing


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.argument("key")
@click.argument("value")
@_key_options
@click.option(
    "--value-format",
    "-V",
    type=click.Choice(VALUE_FORMATS),
    default="text",
    show_default=True,
    help="How VALUE is written: text as is, json (tagged JSON), hex or base64 (bytes).",
)
@click.option("--value-json", is_flag=True, help="Same as --value-format json.")
@_quiet_option
def put(
    url: str,
    tenant: str,
    key: str,
    value: str,
    key_format: str,
    key_json: bool,
    value_format: str,
    value_json: bool,
    quiet: bool,
) -> None:
    """Store one value (creates the store if there is none).

    \b
    Examples:
      aurora-storage put rocksdb:///var/data/events acme greeting hello
      aurora-storage put lmdb:///var/data/proj acme '["order", 7]' '{"paid": true}' \\
          --key-json --value-json
    """
    k = parse_key(key, _key_format(key_format, key_json))
    v = parse_value(value, "json" if value_json else value_format)
    with open_write(url) as repo:
        repo.put(tenant, k, v)
    say(f"stored key {k!r} of tenant {tenant!r}", quiet=quiet)


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.argument("key")
@_key_options
@_quiet_option
def delete(url: str, tenant: str, key: str, key_format: str, key_json: bool, quiet: bool) -> int:
    """Delete one key; exit 1 if it was absent."""
    k = parse_key(key, _key_format(key_format, key_json))
    with open_write(url, create=False) as repo:
        existed = repo.delete(tenant, k)
    if not existed:
        click.echo(f"not found: key {k!r} of tenant {tenant!r}", err=True)
        return int(ExitCode.NOT_FOUND)
    say(f"deleted key {k!r} of tenant {tenant!r}", quiet=quiet)
    return 0


@cli.command("drop-tenant")
@click.argument("url")
@click.argument("tenant")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def drop_tenant(url: str, tenant: str, yes: bool) -> None:
    """Delete every record of one tenant (asks first unless --yes)."""
    with open_write(url, create=False) as repo:
        n = repo.count(tenant)
        _confirm(f"delete all {n} records of tenant {tenant!r} in {repo.url}?", yes)
        count = repo.drop_tenant(tenant)
    click.echo(f"deleted {count} records of tenant {tenant!r}")


# ------------------------------------------------------------- export / import


@cli.command()
@click.argument("url")
@click.option("--tenant", "-t", default=None, help="Only this tenant (default: all).")
@click.option(
    "--output", "-o", type=click.Path(allow_dash=True), default="-", help="File (default: stdout)."
)
@click.option(
    "--salvage",
    is_flag=True,
    help="A damaged store: skip damaged records and regions (each named on stderr), "
    "export the rest, mark the file as a salvage and exit 5.",
)
@_quiet_option
def export(url: str, tenant: str | None, output: str, salvage: bool, quiet: bool) -> int:
    """Write a store (or one tenant) as JSON Lines, streaming in constant memory.

    The first line is a header naming the codec; each record is
    {"tenant": ..., "key": <tagged JSON>, "value": ...}; the last line is an end record
    with the record count, without which import refuses the file. A file is written
    under a temporary name and renamed once complete. See docs/cli.md.

    With --salvage (a store that verify reports DAMAGED), what cannot be read is
    skipped and named on stderr, the end record counts it ("damaged": N) so the file
    never passes for a complete export, and the exit status is 5 when anything was
    skipped. Import accepts such a file, with a warning.

    \b
    Examples:
      aurora-storage export rocksdb:///var/data/events -o events.jsonl
      aurora-storage export lmdb:///var/data/proj --tenant acme | gzip > acme.jsonl.gz
    """
    from ._transfer import export_store, records_of

    skipped: list[str] = []

    def skip(message: str) -> None:
        skipped.append(message)
        warn(message)

    target = parse_url(url)
    if salvage and target.scheme == "lmdb" and "verify" not in target.options:
        # The structural check at open (verify=auto, for a file not known clean) would
        # refuse the store at its first problem; the salvage runs it itself, reading
        # past damage no reader meets (see export_store).
        url = target.with_options(verify="false").render(hide_secrets=False)
    with open_read(url) as repo:
        total = _estimate(records_of(repo), tenant)
        try:
            with _output(output) as out, progress("export", total=total, quiet=quiet) as bar:
                n = export_store(
                    repo, out, tenant=tenant, advance=bar.advance, salvage=skip if salvage else None
                )
        except errors.CorruptionError as exc:
            if not salvage:
                exc.add_note(
                    "(nothing was exported; `export --salvage` exports every record that "
                    "still reads, skipping and naming the damaged ones)"
                )
            raise
        except OSError as exc:
            if output == "-" or isinstance(exc, (BrokenPipeError, errors.StorageError)):
                raise  # stdout's own failure, or the store's: words of their own
            # Writing the file failed (a full disk, an I/O error): _output removed the
            # partial file, so say that nothing was exported and what to do.
            try:
                regular: bool | None = stat.S_ISREG(os.stat(output).st_mode)
            except OSError:
                regular = None  # not there: the partial file was never renamed to it
            if regular is False:  # a device or FIFO, written directly: part may be out
                done = f"the export to {output} stopped part-way"
            else:
                kept = "left unchanged" if regular else "not created"
                done = f"nothing was exported ({output} {kept}, its partial file removed)"
            message = (
                f"cannot write the export to {output}: {exc.strerror or exc}; {done}: free "
                "space or choose another place, then export again"
            )
            if exc.errno == errno.ENOSPC:
                raise errors.StorageFullError(message, path=output) from exc
            raise errors.StorageError(message, path=output) from exc
    if skipped:
        # Said even with --quiet: the file is not the whole store.
        where = "" if output == "-" else f" to {output}"
        warn(
            f"salvaged {n} records{where}, skipping {len(skipped)} damaged records or "
            'regions (named above); the end record counts them as "damaged", so the '
            "file is marked as a salvage, not a complete export"
        )
        return int(ExitCode.DAMAGED)
    if output != "-":
        say(f"exported {n} records to {output}", quiet=quiet)
    return 0


def _estimate(repo: Any, tenant: str | None) -> int | None:
    """A record count for a progress bar, where it is cheap to know."""
    if tenant is not None:
        return None
    stats = repo.stats()
    for name in ("estimated_keys", "entries", "keys", "records"):
        if isinstance(stats.get(name), int):
            return int(stats[name])
    return None


class _output:
    """stdout's binary stream, or a file.

    A file is written as ``FILE.partial-<pid>`` beside it (beside the target of a
    symbolic link), flushed to disk and renamed to ``FILE`` only when the export is
    complete: a failed or interrupted export leaves no ``FILE`` (an existing one
    unchanged) and removes its partial file. A path that exists and is not a regular
    file (``/dev/null``, a FIFO) is written directly.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.file: IO[bytes] | None = None
        self.final: str | None = None
        self.partial: str | None = None

    def __enter__(self) -> IO[bytes]:
        if self.name == "-":
            return sys.stdout.buffer
        target = os.path.realpath(self.name)
        try:
            try:
                mode: int | None = os.stat(target).st_mode
            except FileNotFoundError:
                mode = None
            if mode is not None and not stat.S_ISREG(mode):
                self.file = open(target, "wb")
                return self.file
            self.final = target
            self.partial = f"{target}.partial-{os.getpid()}"
            self.file = open(self.partial, "wb")
            if mode is not None:
                os.chmod(self.partial, stat.S_IMODE(mode))
        except OSError as exc:
            raise click.BadParameter(
                f"cannot write {self.name}: {exc.strerror or exc}", param_hint="'--output'"
            ) from exc
        return self.file

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self.file is None:
            return
        try:
            if exc_type is None and self.partial is not None and self.final is not None:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
                os.replace(self.partial, self.final)
                self.partial = None
                _fsync_dir(os.path.dirname(self.final))
            else:
                self.file.close()
        finally:
            if self.partial is not None:
                with contextlib.suppress(OSError):
                    self.file.close()
                with contextlib.suppress(OSError):
                    os.unlink(self.partial)


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (where the platform allows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@cli.command("import")
@click.argument("url")
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--tenant", "-t", default=None, help="Only this tenant's records.")
@_quiet_option
def import_(url: str, source: IO[bytes], tenant: str | None, quiet: bool) -> None:
    """Read an export (a file, or stdin) into a store, one atomic batch per 2000 records
    (fewer where the store bounds its batches: NATS's max_batch).

    Existing keys are overwritten; an interrupted import can simply be run again. A
    store that does not exist yet is created with the export's codec (unless the URL
    names one), and removed again when the import fails before writing a record.

    \b
    Example:
      aurora-storage import lmdb:///var/data/restored events.jsonl
    """
    from ._transfer import import_store, read_header

    header = read_header(source)
    target = parse_url(url)
    new_store = NewStore.at(target)
    if new_store is not None and "codec" not in target.options:
        target = target.with_options(codec=header.codec)
    written = 0
    held = 0  # records a projection-mode pair's history held already (not written)
    try:
        with (
            open_write(target, bulk=True) as repo,
            progress("import", total=None, quiet=quiet) as bar,
        ):

            def advance(k: int) -> None:
                nonlocal written
                written += k
                bar.advance(k)

            def skipped(k: int) -> None:
                nonlocal held
                held += k
                bar.advance(k)

            n = import_store(
                repo,
                source,
                tenant=tenant,
                advance=advance,
                header=header,
                warn=warn,
                skipped=skipped,
            )
    except BaseException:
        if new_store is not None and written == 0:
            new_store.remove()  # the store this import created holds nothing: gone
        raise
    also = f" ({held} already in its history with the same value, skipped)" if held else ""
    say(f"imported {n} records into {url}{also}", quiet=quiet)


# ------------------------------------------------------------------------ copy


@contextlib.contextmanager
def _closing_after_error(repo: Any) -> Iterator[Any]:
    """``repo``, closed on the way out; after an error, a close that fails too is
    dropped so the first error is the one reported. On a full disk the close fails as
    well ("no space left to close ... cleanly; the next open recovers them"), which
    would hide the write that failed - and talk of a store the command then removes."""
    try:
        yield repo
    except BaseException:
        with contextlib.suppress(errors.StorageError):
            repo.close()
        raise
    repo.close()


@cli.command()
@click.argument("source")
@click.argument("target")
@click.option("--tenant", "-t", default=None, help="Only this tenant (default: all).")
@click.option(
    "--resume", is_flag=True, help="Continue an interrupted copy into a non-empty target."
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Compare the target with the source afterwards (exit 5 on a difference).",
)
@_quiet_option
def copy(
    source: str, target: str, tenant: str | None, resume: bool, verify: bool, quiet: bool
) -> None:
    """Copy every record (or one tenant's) from SOURCE to TARGET, any two URLs.

    Records go in key order, a chunk per atomic batch (at most what the target takes
    in one: NATS's max_batch), so an interrupted copy (even killed) continues where it
    stopped with --resume. A non-empty target is refused
    without --resume. Then the target is compared with the source.

    \b
    Examples:
      aurora-storage copy rocksdb:///var/data/events lmdb:///var/data/events-lmdb
      aurora-storage copy rocksdb:///var/data/events lmdb:///var/data/events-lmdb --resume
    """
    from ._transfer import compare, copy_store, records_of

    dest = parse_url(target)
    new_store = NewStore.at(dest)
    written = 0
    copied = False
    with open_read(source) as src:
        if new_store is not None and "codec" not in dest.options:
            # A new target holds what the source holds: the default codec (json) may
            # not (bytes, non-str map keys), and would fail part-way through.
            dest = dest.with_options(codec=src.codec.name)
        try:
            with _closing_after_error(open_write(dest, bulk=True)) as dst:
                if not resume:
                    # A projection-mode pair holds what its history holds (records_of).
                    held = records_of(dst)
                    scope = [tenant] if tenant is not None else None
                    busy = any(
                        True for t in (scope or held.tenants()) for _ in held.keys(t, limit=1)
                    )
                    if busy:
                        raise click.UsageError(
                            f"the target {target} already holds records; pass --resume to "
                            "continue an interrupted copy into it, or pick an empty target"
                        )
                say(f"copying {src.url} -> {dst.url}", quiet=quiet)
                total = _estimate(records_of(src), tenant)
                with progress("copy", total=total, quiet=quiet) as bar:

                    def advance(k: int) -> None:
                        nonlocal written
                        written += k
                        bar.advance(k)

                    n = copy_store(
                        src, dst, tenant=tenant, resume=resume, advance=advance, warn=warn
                    )
                dst.flush()
                copied = True
                say(f"copied {n} records", quiet=quiet)
                if verify:
                    with progress("verify", total=total, quiet=quiet) as bar:
                        m = compare(src, dst, tenant=tenant, advance=bar.advance)
                    say(f"verified: the target holds the source's {m} records", quiet=quiet)
        except BaseException as exc:
            if copied:
                raise
            if new_store is not None and written == 0:
                new_store.remove()  # the store this copy created holds nothing: gone
                if isinstance(exc, errors.StorageError):
                    exc.add_note(f"({target} was removed: this copy created it, empty)")
            elif written and isinstance(exc, errors.StorageError):
                # The failing chunk wrote nothing (its error may say so); the chunks
                # before it did, and stay.
                exc.add_note(
                    f"({written} record{'' if written == 1 else 's'} "
                    f"{'was' if written == 1 else 'were'} copied into {target} before "
                    "this error, a chunk per atomic batch; fix the cause and run the copy "
                    "again with --resume)"
                )
            raise


# ---------------------------------------------------------------------- verify


@cli.command()
@click.argument("url")
@_json_option
@_quiet_option
def verify(url: str, as_json: bool, quiet: bool) -> int:
    """Check a whole store: the engine's structure where it can be checked, every
    record's checksum, keys canonical, values decodable. Exit 0 healthy, 5 damaged.

    \b
    Example:
      aurora-storage verify lmdb:///var/data/proj --json
    """
    target = parse_url(url)
    if target.scheme == "lmdb" and "verify" not in target.options:
        # The command's full check names every problem; a structural check at open
        # (verify=auto, for a file not known clean) would only raise the first.
        target = target.with_options(verify="false")
    with open_read(target.render(hide_secrets=False)) as repo:
        report = _verify(repo, quiet=quiet)
        recovery = _recovery_of(repo)
    problems = [
        {
            "message": p["message"],
            "tenant": p.get("tenant"),
            "key": p.get("key"),
            "path": p.get("path"),
            "after": p.get("after"),
            "resume": p.get("resume"),
            "resume_tenant": p.get("resume_tenant"),
        }
        for p in report["problems"]
    ]
    doc = {
        "ok": report["ok"],
        "records": report["records"],
        "problem_count": report["problem_count"],
        "structure_checked": report["structure_checked"],
        "unchecked": report.get("unchecked", 0),
        "problems": problems,
        "recovery": recovery,
    }
    if as_json:
        write_json(doc)
    else:
        for p in problems:
            write_line(f"problem:{_where(p)} {p['message']}")
        state = "healthy" if doc["ok"] else f"DAMAGED ({plural(doc['problem_count'], 'problem')})"
        if recovery:
            # Not damage that can be proven (a killed writer leaves it), nor plain health
            # (a cut of the log at that spot looks the same): said, exit status as is.
            state += f" apart from {_recovery_text(recovery)}"
        write_line(f"{state}: {plural(doc['records'], 'record')} checked")
        unchecked = doc["unchecked"]
        if unchecked is None and doc["structure_checked"] and not doc["records"]:
            # The file structure is damaged where the records lie (LMDB's trees): the
            # engine was not let read them, since it might crash on the damage.
            write_line(
                "the records were not read: the damage above lies in the pages that hold "
                "them, which the engine cannot read past safely (export --salvage refuses "
                "it too); restore the store from a backup"
            )
        elif unchecked != 0:
            # Damaged regions were skipped: say so, so that "N records checked" is
            # not read as "the store holds N records".
            many = "an unknown number of" if unchecked is None else f"about {unchecked}"
            write_line(
                f"{many} records in the damaged regions above could not be read; "
                "export --salvage copies every record that still reads"
            )
    return 0 if doc["ok"] else int(ExitCode.DAMAGED)


def _recovery_of(repo: Any) -> dict[str, Any] | None:
    """What the open of ``repo`` recovered from (RocksDB's ``stats()["recovery"]``: a
    torn write-ahead log tail left out or dropped, or what point-in-time recovery
    dropped), or ``None``."""
    try:
        stats = repo.stats()
    except errors.StorageError:
        return None
    recovery = stats.get("recovery") if isinstance(stats, dict) else None
    return recovery if isinstance(recovery, dict) else None


def _recovery_text(recovery: dict[str, Any]) -> str:
    """``verify``'s words for a recovery report (see :func:`_recovery_of`)."""
    torn = recovery.get("torn_tail")
    if isinstance(torn, dict) and torn.get("live_writer"):
        return (
            f"a torn write-ahead log tail not read ({torn.get('file')}, "
            f"{torn.get('bytes_dropped')} bytes) while another process held the store's "
            "LOCK: "
            + (
                "a record being written looks like this, and so does a cut of the log there"
                if torn.get("write_shaped")
                else "it ends where no write in progress stops, most likely damage"
            )
        )
    if isinstance(torn, dict):
        return (
            f"a torn write-ahead log tail not read ({torn.get('file')}, "
            f"{torn.get('bytes_dropped')} bytes: what a killed writer leaves; a cut of the "
            "log there looks the same)"
        )
    return (
        f"write-ahead log data not read ({recovery.get('bytes_dropped')} bytes, "
        f"wal_recovery={recovery.get('mode')})"
    )


def _where(p: dict[str, Any]) -> str:
    """Where a verify problem lies, as text (`` tenant=... key=... file=...``; for a
    damaged region, the keys read just before and after it)."""

    def text(key: Any) -> str:
        return _key_text(key).decode("utf-8", "surrogateescape")

    where = ""
    if p["tenant"] is not None:
        where += f" tenant={p['tenant']!r}"
    if p["key"] is not None:
        where += f" key={text(p['key'])}"
    if p["path"] is not None:
        where += f" file={p['path']}"
    if p["key"] is None and (p.get("after") is not None or p.get("resume") is not None):
        # A damaged region: the records between these two keys could not be read.
        after = "the start" if p.get("after") is None else f"key {text(p['after'])}"
        resume = "the end" if p.get("resume") is None else f"key {text(p['resume'])}"
        if p.get("resume_tenant") not in (None, p["tenant"]):
            resume += f" of tenant {p['resume_tenant']!r}"
        where += f" (records after {after} up to {resume} could not be read)"
    return where


def _verify(repo: Any, *, quiet: bool) -> dict[str, Any]:
    """The store's own full check (``Repository.verify()``) where there is one, else a
    read of every record through the public API."""
    check = getattr(repo, "verify", None)
    if callable(check):
        report = check()
        return {
            "ok": report.ok,
            "records": report.records,
            "problem_count": report.problem_count or len(report.problems),
            "structure_checked": report.structure_checked,
            "unchecked": report.unchecked,
            "problems": [
                {
                    "message": p.message,
                    "tenant": p.tenant,
                    "key": p.key,
                    "path": p.path,
                    "after": p.after,
                    "resume": p.resume,
                    "resume_tenant": p.resume_tenant,
                }
                for p in report.problems
            ],
        }
    problems: list[dict[str, Any]] = []
    n = 0
    with progress("verify", total=_estimate(repo, None), quiet=quiet) as bar:
        for tenant in repo.tenants():
            last: Any = None
            try:
                for key, _ in repo.items(tenant):
                    last = key
                    n += 1
                    if n % 2000 == 0:
                        bar.advance(2000)
            except errors.CorruptionError as exc:
                # The repository names the record by its tenant and key; the stored
                # bytes when they do not decode.
                key = exc.key if exc.key is not None else exc.stored_key
                problems.append(
                    {
                        "message": f"{exc} (after key {last!r})" if key is None else str(exc),
                        "tenant": exc.tenant or tenant,
                        "key": key,
                        "path": exc.path,
                    }
                )
    return {
        "ok": not problems,
        "records": n,
        "problem_count": len(problems),
        "structure_checked": False,
        "problems": problems,
    }


@cli.command()
@click.argument("url")
@_quiet_option
def compact(url: str, quiet: bool) -> None:
    """Compact a store (RocksDB: the whole key range; reclaims the space of deleted and
    overwritten records). Needs the store's write access: stop the writer first."""
    with open_write(url, create=False) as repo:
        fn = getattr(repo, "compact", None)
        if fn is None:
            raise errors.NotSupportedError(
                f"{repo.url} has no compaction (LMDB reuses freed pages itself; "
                "`backup` writes a compacted copy)"
            )
        fn()
    say(f"compacted {url}", quiet=quiet)


# ---------------------------------------------------------------------- tiered


@cli.group()
def tiered() -> None:
    """Maintain a tiered pair (history -> projection): status, catch-up, rebuild."""


def _open_tiered(url: str) -> Any:
    repo = open_write(url, create=False)
    if not hasattr(repo, "rebuild"):
        repo.close()
        raise click.UsageError(f"{url} is not a tiered:// store")
    return repo


@tiered.command("status")
@click.argument("url")
@_json_option
def tiered_status(url: str, as_json: bool) -> None:
    """Positions of both tiers, lag and parked records."""
    with _open_tiered(url) as repo:
        doc = dict(repo.stats())
        parked = getattr(repo, "parked", None)
        if callable(parked):
            doc["parked"] = len(parked())
    if as_json:
        write_json(doc)
        return
    for name, value in _flat("", doc):
        write_line(f"{name}\t{value}")


@tiered.command("catch-up")
@click.argument("url")
@_quiet_option
def tiered_catch_up(url: str, quiet: bool) -> None:
    """Apply history records the projection has not seen yet."""
    with _open_tiered(url) as repo:
        n = repo.catch_up()
    say(f"applied {n} records", quiet=quiet)


@tiered.command("rebuild")
@click.argument("url")
@click.option("--tenant", "-t", default=None, help="Only this tenant (default: all).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_quiet_option
def tiered_rebuild(url: str, tenant: str | None, yes: bool, quiet: bool) -> None:
    """Recompute the projection from history (built aside, then swapped in)."""
    _confirm(f"rebuild the projection of {url}?", yes)
    with _open_tiered(url) as repo, progress("rebuild", total=None, quiet=quiet) as bar:
        seen = [0]

        def step(p: Any) -> None:
            # A RebuildProgress after each committed chunk: done of total records.
            bar.total(p.total)
            bar.advance(max(0, p.done - seen[0]))
            seen[0] = max(seen[0], p.done)

        n = repo.rebuild(tenant, progress=step)
    say(f"rebuilt: {n} records applied", quiet=quiet)
