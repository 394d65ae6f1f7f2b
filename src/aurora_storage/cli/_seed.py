"""``aurora-storage import-seed``: a store written by the TypeScript package, imported
(see docs/migrating-from-typescript.md and :mod:`aurora_storage.migrate`)."""

from __future__ import annotations

import contextlib
from typing import IO, TYPE_CHECKING

import click

from ._app import cli
from ._common import (
    ExitCode,
    NoStoreError,
    check_engine,
    decide_status,
    json_bytes,
    parse_url,
    progress,
    say,
    store_path,
    write_json,
)

if TYPE_CHECKING:
    from ..migrate import SeedProblem

__all__ = ["import_seed_command"]

#: Problems printed on stderr without --json (the --json report lists up to 1,000, and
#: --problems-file all).
_SHOWN = 20


def _read_tenants(file: IO[str] | None, given: tuple[str, ...]) -> frozenset[str] | None:
    """The known tenants from ``--tenant-id`` and ``--tenants-file`` (one per line, blank
    lines and lines starting with ``#`` skipped; a tenant id is the whole line)."""
    if "" in given:
        raise click.BadParameter("a tenant id is never empty", param_hint="--tenant-id")
    tenants = set(given)
    if file is not None:
        for line in file.read().splitlines():
            if line.strip() and not line.startswith("#"):
                tenants.add(line)
    if not tenants and file is None and not given:
        return None
    return frozenset(tenants)


@cli.command("import-seed")
@click.argument("source", type=click.Path(file_okay=False))
@click.argument("target")
@click.option(
    "--tenant-id",
    "tenant_ids",
    multiple=True,
    metavar="TENANT",
    help="A tenant id the application uses (repeat it); keys must then split into one.",
)
@click.option(
    "--tenants-file",
    # utf-8-sig: a byte order mark some editors write is not part of the first tenant id.
    type=click.File("r", encoding="utf-8-sig"),
    default=None,
    help="Known tenant ids, one per line (blank lines and # comments skipped).",
)
@click.option(
    "--problems-file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    metavar="PATH",
    help="Write every record not imported to PATH as JSON Lines (one problem a line).",
)
@click.option("--dry-run", is_flag=True, help="Read and check everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or status lines on stderr.")
def import_seed_command(
    source: str,
    target: str,
    tenant_ids: tuple[str, ...],
    tenants_file: IO[str] | None,
    problems_file: str | None,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """Import a RocksDB store written by the TypeScript package into TARGET (any URL).

    SOURCE is the store's directory (RocksDBConfig.path); it is only read. Keys are
    tenantId:JSON(key), split at the one ':' followed by a JSON text; keys that cannot
    be split without guessing, values that are not JSON and keys the target refuses are
    reported and not imported (exit 5); everything else is imported in atomic batches
    of up to 2000 records (fewer into a target that bounds its batches, such as a NATS
    bucket's max_batch), overwriting existing keys, so the command can be run again.
    Stop the application first: a SOURCE another process has open is refused (exit 3;
    --dry-run reads it), and an application started during the import fails to open
    SOURCE until it ends (RocksDB: "Resource temporarily unavailable"). A damaged SOURCE
    is refused (exit 5, the file named); the torn write-ahead log tail a killed
    application leaves is read past, with a warning. --dry-run checks values with the
    codec the import would write with (the URL's, or the existing target's).

    \b
    Examples:
      aurora-storage import-seed ./data/events rocksdb:///var/data/events --dry-run
      aurora-storage import-seed ./data/events rocksdb:///var/data/events \\
          --tenant-id acme --tenant-id globex --json
    """
    from ..migrate import SeedSourceError, import_seed
    from ..migrate._seed import foreign_target_message

    known = _read_tenants(tenants_file, tenant_ids)
    # The same refusal as put/import/copy for another engine's store, and never into a
    # folder holding something else (such as another TypeScript store).
    check_engine(parse_url(target), must_exist=False)
    foreign = foreign_target_message(target)
    if foreign is not None:
        raise NoStoreError(foreign, path=store_path(parse_url(target)))
    try:
        with contextlib.ExitStack() as stack:
            on_problem = None
            if problems_file is not None:
                try:
                    sink = stack.enter_context(open(problems_file, "wb"))
                except OSError as exc:
                    raise click.BadParameter(
                        f"cannot write {problems_file}: {exc.strerror}",
                        param_hint="--problems-file",
                    ) from exc

                def on_problem(problem: SeedProblem) -> None:
                    # Streamed: one line per problem, however many there are.
                    sink.write(json_bytes(problem.to_json()) + b"\n")

            bar = stack.enter_context(progress("import-seed", total=None, quiet=quiet or as_json))
            report = import_seed(
                source,
                target,
                known_tenants=known,
                dry_run=dry_run,
                progress=bar.advance,
                total=bar.total,
                on_problem=on_problem,
            )
    except SeedSourceError as exc:
        raise NoStoreError(str(exc), path=exc.path) from exc
    # Decided before the report is written: a reader that stops early (`| head`) must
    # not turn "records left out" into success.
    decide_status(ExitCode.OK if report.ok else ExitCode.DAMAGED)
    if as_json:
        write_json(report.to_json())
    else:
        verb = "would import" if dry_run else "imported"
        where = (
            f"(dry run, {report.target} untouched; values checked with the {report.codec} codec)"
            if dry_run
            else f"into {report.target}"
        )
        say(
            f"{verb} {report.imported} of {report.records} records {where}: "
            + (", ".join(f"{t}={n}" for t, n in report.tenants.items()) or "no tenants"),
            quiet=quiet,
        )
        if report.text_keys:
            say(f"{report.text_keys} keys were not JSON and were imported as text", quiet=quiet)
        for problem in report.problems[:_SHOWN]:
            # Problems are printed even with --quiet: they are the result, not chatter.
            click.echo(f"not imported ({problem.reason}): {problem.message}", err=True)
        more = sum(report.problem_count.values()) - _SHOWN
        if more > 0:
            where = (
                f"all are in {problems_file}"
                if problems_file is not None
                else "use --problems-file F to get all"
            )
            click.echo(f"... and {more} more ({where})", err=True)
    if not report.ok:
        missing = sum(report.problem_count.values())
        counts = ", ".join(f"{r}={n}" for r, n in report.problem_count.items())
        click.echo(
            f"{missing} records not imported ({counts})"
            + "; --tenant-id/--tenants-file resolve keys that name known tenants",
            err=True,
        )
        return int(ExitCode.DAMAGED)
    return int(ExitCode.OK)
