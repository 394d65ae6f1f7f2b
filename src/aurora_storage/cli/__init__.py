"""The ``aurora-storage`` command line.

::

    aurora-storage demo                       # event -> history -> projection demo
    aurora-storage backends                   # installed URL schemes
    aurora-storage info URL                   # capabilities and engine stats
    aurora-storage tenants URL
    aurora-storage keys URL TENANT [--prefix P] [--limit N] [--reverse]
    aurora-storage get URL TENANT KEY
    aurora-storage put URL TENANT KEY VALUE
    aurora-storage delete URL TENANT KEY
    aurora-storage drop-tenant URL TENANT --yes

``KEY`` and ``VALUE`` are read as JSON when they parse (``42``, ``["order", 7]``,
``{"a": 1}``) and as plain strings otherwise. Errors print their message and exit 1.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.table import Table

from ..errors import StorageError

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


def _json_or_text(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _show(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return repr(value)


def _errors(fn: F) -> F:
    """Turn aurora-storage errors into a one-line message and exit status 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StorageError as exc:
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aurora-storage")
def cli() -> None:
    """aurora-storage: one repository API over embedded key-value engines."""


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the stores (default: a temporary directory, removed afterwards).",
)
@click.option("--events", default=2000, show_default=True, help="Order events to write.")
@_errors
def demo(data_dir: Path | None, events: int) -> None:
    """Run the event -> history (RocksDB) -> projection (LMDB) demo."""
    from ._demo import run_demo

    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        run_demo(data_dir, events=events)
        return
    with tempfile.TemporaryDirectory(prefix="aurora-demo-") as tmp:
        run_demo(Path(tmp), events=events)


@cli.command()
@_errors
def backends() -> None:
    """List the installed backends (URL schemes) and plugin load failures."""
    from .._registry import registry

    table = Table("scheme", "description", "package")
    for scheme, spec in sorted(registry.specs().items()):
        table.add_row(scheme, spec.description, spec.package or "")
    console.print(table)
    for name, exc in registry.failures.items():
        err_console.print(f"[yellow]plugin {name!r} failed to load:[/] {type(exc).__name__}: {exc}")


@cli.command()
@click.argument("url")
@_errors
def info(url: str) -> None:
    """Show a store's capabilities and engine statistics."""
    import dataclasses

    from .. import open as open_repo

    with open_repo(url) as repo:
        table = Table("property", "value", title=str(repo.url))
        for name, value in dataclasses.asdict(repo.capabilities).items():
            table.add_row(f"capability.{name}", str(value))
        for name, value in repo.stats().items():
            table.add_row(name, str(value))
        console.print(table)


@cli.command()
@click.argument("url")
@_errors
def tenants(url: str) -> None:
    """List the tenants that hold data."""
    from .. import open as open_repo

    with open_repo(url) as repo:
        for tenant in repo.tenants():
            click.echo(tenant)


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.option("--prefix", default=None, help="Only keys starting with this (JSON or text).")
@click.option("--limit", type=int, default=None, help="At most this many keys.")
@click.option("--reverse", is_flag=True, help="Descending key order.")
@_errors
def keys(url: str, tenant: str, prefix: str | None, limit: int | None, reverse: bool) -> None:
    """List a tenant's keys in key order."""
    from .. import open as open_repo

    pfx = None if prefix is None else _json_or_text(prefix)
    with open_repo(url) as repo:
        for key in repo.keys(tenant, prefix=pfx, limit=limit, reverse=reverse):
            click.echo(orjson.dumps(key, default=repr).decode())


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.argument("key")
@_errors
def get(url: str, tenant: str, key: str) -> None:
    """Print one value (exit 1 if absent)."""
    from .. import open as open_repo

    missing = object()
    with open_repo(url) as repo:
        value = repo.get(tenant, _json_or_text(key), missing)
    if value is missing:
        err_console.print(f"no value for key {key!r} of tenant {tenant!r}")
        sys.exit(1)
    click.echo(_show(value))


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.argument("key")
@click.argument("value")
@_errors
def put(url: str, tenant: str, key: str, value: str) -> None:
    """Store one value."""
    from .. import open as open_repo

    with open_repo(url) as repo:
        repo.put(tenant, _json_or_text(key), _json_or_text(value))


@cli.command()
@click.argument("url")
@click.argument("tenant")
@click.argument("key")
@_errors
def delete(url: str, tenant: str, key: str) -> None:
    """Delete one key (exit 1 if it was absent)."""
    from .. import open as open_repo

    with open_repo(url) as repo:
        existed = repo.delete(tenant, _json_or_text(key))
    if not existed:
        sys.exit(1)


@cli.command("drop-tenant")
@click.argument("url")
@click.argument("tenant")
@click.option("--yes", is_flag=True, help="Confirm: delete all of the tenant's records.")
@_errors
def drop_tenant(url: str, tenant: str, yes: bool) -> None:
    """Delete every record of one tenant."""
    from .. import open as open_repo

    if not yes:
        raise click.UsageError("drop-tenant deletes data; pass --yes to confirm")
    with open_repo(url) as repo:
        count = repo.drop_tenant(tenant)
    click.echo(f"deleted {count} records of tenant {tenant!r}")


def main() -> None:
    """Console-script entry point."""
    cli()
