"""The ``aurora-storage`` command line (the operator's guide is docs/cli.md).

::

    aurora-storage backends                      # installed schemes, broken plugins
    aurora-storage info URL [--tenants] [--json] # capabilities and engine stats (= stats)
    aurora-storage tenants URL [--counts]
    aurora-storage keys|items URL TENANT [--prefix/--start/--stop/--reverse/--limit]
    aurora-storage get|put|delete|count URL TENANT ...
    aurora-storage export URL [-o FILE]  /  import URL [FILE]
    aurora-storage import-seed SOURCE_DIR URL [--tenant-id T] [--dry-run] [--json]
    aurora-storage copy SOURCE TARGET [--resume]
    aurora-storage verify URL
    aurora-storage backup URL DIR  /  restore DIR URL
    aurora-storage compact URL
    aurora-storage tiered status|catch-up|rebuild URL

:func:`main` is the one error boundary: aurora-storage errors become one unwrapped line
on stderr and a documented exit status (:class:`ExitCode`); a closed pipe ends quietly
(with the status the command decided before its report, 0 if none); an
``OSError`` (a full disk, an unreadable file) exits 3 and any other exception, a bug,
exits 70, each with one line (``-vv`` logs the traceback).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import click

from ..errors import StorageError
from . import _backup, _restore, _seed  # noqa: F401 - register backup, restore and import-seed on cli
from ._app import cli
from ._common import ExitCode, decide_status, decided_status, exit_code_for

__all__ = ["ExitCode", "cli", "main", "run"]


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit
    status instead of exiting. Never raises for a failure a user can cause."""
    decide_status(None)  # nothing decided by an earlier run in this process
    try:
        try:
            rv = cli.main(args=argv, prog_name="aurora-storage", standalone_mode=False)
            code = rv if isinstance(rv, int) else 0
            sys.stdout.flush()
            return code
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.UsageError as exc:
            # One line like every other error (click's own report is a usage block and
            # "Error: ..."): the message, and where the usage is.
            where = exc.ctx.command_path if exc.ctx is not None else "aurora-storage"
            message = _one_line_text(exc.format_message())
            click.echo(
                f"error: UsageError: {message} (see `{where} --help`)",
                err=True,
            )
            return int(ExitCode.USAGE)
        except click.ClickException as exc:
            click.echo(
                f"error: {type(exc).__name__}: {_one_line_text(exc.format_message())}", err=True
            )
            # Exit status 1 means "not found"; click's own 1 (a file it could not open)
            # is a usage error.
            return int(ExitCode.USAGE) if exc.exit_code == 1 else exc.exit_code
        except click.Abort:
            click.echo("aborted", err=True)
            return int(ExitCode.INTERRUPTED)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            return int(ExitCode.INTERRUPTED)
        except StorageError as exc:
            # One line, never wrapped: scripts and logs read it whole.
            # A command's notes (what it did before the error) go on the same line.
            # Engine messages may hold line breaks: collapsed, as for other errors.
            notes = "".join(f" {note}" for note in getattr(exc, "__notes__", ()))
            click.echo(f"error: {type(exc).__name__}: {_one_line(exc)}{notes}", err=True)
            return int(exit_code_for(exc))
        except BrokenPipeError:
            raise
        except OSError as exc:
            # Not the store's: a file the command reads or writes (a full disk, stdout
            # on a full device, an I/O error).
            _failed(exc, f"error: {type(exc).__name__}: {_one_line(exc)}")
            return int(ExitCode.STORE_ERROR)
        except Exception as exc:
            _failed(
                exc,
                f"error: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in "
                "aurora-storage: please report it; `aurora-storage -vv ...` logs the traceback)",
            )
            return int(ExitCode.INTERNAL)
    except BrokenPipeError:
        # The reader went away (`| head`): that is not our failure. Point stdout at
        # devnull so the interpreter's final flush does not complain. A status the
        # command decided before its report (import-seed's 5: records left out) stands.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return decided_status()


def _one_line(exc: BaseException) -> str:
    return _one_line_text(str(exc))


def _one_line_text(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def _failed(exc: BaseException, message: str) -> None:
    """Report an unexpected failure: the traceback to the log (``-vv``), one line on
    stderr; output still buffered for stdout is written, or dropped when stdout itself
    fails (so the interpreter's final flush does not fail again)."""
    logging.getLogger("aurora_storage.cli").debug("the command failed", exc_info=exc)
    try:
        sys.stdout.flush()
    except Exception:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    click.echo(message, err=True)


def main() -> None:
    """Console-script entry point: :func:`run`, then exit with its status."""
    sys.exit(run())
