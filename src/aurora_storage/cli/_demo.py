"""The demo behind ``aurora-storage demo``: event -> history (RocksDB) -> projection (LMDB).

A few tenants' order events are appended to a RocksDB history and projected into an
LMDB store of each order's current state by a :class:`~aurora_storage.TieredRepository`;
then the projection is queried, the projection store is lost in the middle of a stream
of events and the pair is restarted (catch-up), and the projection is rebuilt from
history with a progress bar. Every step prints what it did and how long it took.
"""

from __future__ import annotations

import inspect
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["order_projection", "run_demo"]

TENANTS = ("acme", "globex", "initech")
#: The order lifecycle: each event moves an order to the next status.
LIFECYCLE = ("OrderCreated", "OrderPaid", "OrderShipped", "OrderDelivered")
STATUS = {
    "OrderCreated": "created",
    "OrderPaid": "paid",
    "OrderShipped": "shipped",
    "OrderDelivered": "delivered",
    "OrderCancelled": "cancelled",
}


def order_projection(record: Any, state: Any) -> None:
    """History record (an order event) -> the order's current state in the projection."""
    event = record.value
    order = state.get(event["order"]) or {"order": event["order"], "events": 0}
    order["status"] = STATUS[event["type"]]
    order["events"] += 1
    order["updated"] = record.key[0]
    if event["type"] == "OrderCreated":
        order["customer"] = event["customer"]
        order["total"] = event["total"]
    state.put(event["order"], order)


class _Orders:
    """The generator's state: each tenant's open orders (id, lifecycle stage) and how
    many orders it has had. Rebuilt from the projection when a data directory is used
    again, so a second run continues the same orders."""

    def __init__(self) -> None:
        self.open: dict[str, list[tuple[str, int]]] = {t: [] for t in TENANTS}
        self.count = Counter[str]()

    @classmethod
    def from_projection(cls, repo: Any) -> _Orders:
        state = cls()
        for tenant in TENANTS:
            for order in repo.values(tenant):
                state.count[tenant] += 1
                status = order["status"]
                if status not in ("delivered", "cancelled"):
                    stage = [STATUS[e] for e in LIFECYCLE].index(status)
                    state.open[tenant].append((order["order"], stage))
        return state


def _events(
    n: int, start: int, rnd: random.Random, orders: _Orders
) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """``n`` order events across the tenants, keyed ``(timestamp, event id)``, event ids
    from ``start``."""
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    open_orders = orders.open
    next_order = orders.count
    for i in range(start, start + n):
        tenant = TENANTS[rnd.randrange(len(TENANTS))]
        # Fixed-width timestamps: key order must be time order (a rebuild replays
        # history in key order), and isoformat() drops ".000" on whole seconds.
        ts = (t0 + timedelta(milliseconds=250 * i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        pending = open_orders[tenant]
        if not pending or rnd.random() < 0.3:
            next_order[tenant] += 1
            order = f"{tenant[:2].upper()}-{next_order[tenant]:05d}"
            pending.append((order, 0))
            ev = {
                "type": "OrderCreated",
                "order": order,
                "customer": f"c-{rnd.randrange(500)}",
                "total": round(rnd.uniform(5, 500), 2),
            }
        else:
            idx = rnd.randrange(len(pending))
            order, stage = pending[idx]
            kind = "OrderCancelled" if rnd.random() < 0.05 else LIFECYCLE[stage + 1]
            ev = {"type": kind, "order": order}
            if kind in ("OrderCancelled", "OrderDelivered"):
                pending.pop(idx)
            else:
                pending[idx] = (order, stage + 1)
        yield tenant, (ts, i), ev


class _DictState:
    """A plain-dict stand-in for the projection state (for the independent check)."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.data.get(key, default)
        return dict(value) if isinstance(value, dict) else value

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value


def _fold(records: Iterator[tuple[Any, Any]], tenant: str) -> dict[Any, Any]:
    """The projection computed from scratch over ``records``, in plain memory."""
    from aurora_storage.tiered import HistoryRecord

    state = _DictState()
    for key, value in records:
        order_projection(HistoryRecord(tenant, key, value), state)
    return state.data


def _console() -> Console:
    """The terminal; when stdout is not one (a pipe, a file), a console wide enough that
    no table is cut (rich would assume 80 columns), unless COLUMNS says otherwise."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=_PIPED_WIDTH)


#: Columns of the output when it is not a terminal: the widest table fits.
_PIPED_WIDTH = 140


def _where(fn: Callable[..., Any]) -> str:
    """Where a function's code lives: ``module.name (file:line)``."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    try:
        file = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return name
    return f"{name} ({file}:{line}; registered as the named projection 'demo-orders')"


class _Steps:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: list[tuple[str, float]] = []

    @contextmanager
    def step(self, title: str) -> Iterator[Callable[[str], None]]:
        self.console.rule(f"[bold cyan]{title}")
        notes: list[str] = []
        start = time.perf_counter()
        yield notes.append
        elapsed = time.perf_counter() - start
        self.rows.append((title, elapsed))
        for note in notes:
            self.console.print(f"  {note}")
        self.console.print(f"  [dim]took {elapsed * 1000:.1f} ms[/]")


def run_demo(data_dir: Path, *, events: int = 2000, console: Console | None = None) -> None:
    """Run the whole demo in ``data_dir`` (stores are created under it) and print it.

    Args:
        data_dir: an existing directory; ``history/`` (RocksDB) and ``projection/``
            (LMDB) are created inside.
        events: how many order events to write in the first step.
        console: where to print (default: the terminal).
    """
    import aurora_storage
    from aurora_storage.tiered import HotTierError, RebuildProgress, TieredRepository

    console = console or _console()
    rnd = random.Random(2026)
    history_url = f"rocksdb://{data_dir.resolve()}/history?compression=zstd"
    # The projection is derived data: it need not fsync each commit. A kill -9 loses
    # nothing (LMDB writes through the page cache); after an OS crash, catch-up replays
    # what the history holds, and a damaged projection can be deleted and is rebuilt.
    projection_url = f"lmdb://{data_dir.resolve()}/projection?sync=false"
    steps = _Steps(console)

    def open_pair() -> TieredRepository[Any, Any]:
        return TieredRepository(
            hot=aurora_storage.open(projection_url),
            cold=aurora_storage.open(history_url),
            projection=order_projection,
        )

    console.print(
        "[bold]aurora-storage demo[/]: order events -> durable history (RocksDB) -> "
        "projection of current order state (LMDB)"
    )
    console.print(f"  history:    {history_url}\n  projection: {projection_url}")
    console.print(f"  projection: {_where(order_projection)}", soft_wrap=True)

    with steps.step("1. open the tiered pair") as note:
        repo = open_pair()
        note(f"mode={repo.mode}, hot={repo.hot.backend.scheme}, cold={repo.cold.backend.scheme}")
        # A data directory used before holds that run's history: the demo continues it
        # (event ids after the last one, the same open orders) instead of refusing it.
        start = sum(repo.history.count(tn) for tn in TENANTS)
        orders = _Orders.from_projection(repo) if start else _Orders()
        if start:
            note(
                f"{data_dir} holds {start} history records from an earlier run: appending "
                "after them (delete the directory to start fresh)"
            )

    with steps.step(f"2. append {events} order events for {len(TENANTS)} tenants") as note:
        t = time.perf_counter()
        for tenant, key, ev in _events(events, start, rnd, orders):
            repo.put(tenant, key, ev)
        dt = max(time.perf_counter() - t, 1e-9)
        note(
            f"{events} events: each one stored in history and projected in one call "
            f"({events / dt:,.0f} events/s, {dt / max(events, 1) * 1e6:.0f} us per event)"
        )
        note(
            "history records per tenant: "
            + ", ".join(f"{tn}={repo.history.count(tn)}" for tn in TENANTS)
        )

    with steps.step("3. query the projection") as note:
        table = Table("tenant", "orders", *STATUS.values(), "revenue (delivered)")
        for tn in TENANTS:
            by_status = Counter[str]()
            revenue = 0.0
            for order in repo.values(tn):
                by_status[order["status"]] += 1
                if order["status"] == "delivered":
                    revenue += order.get("total", 0.0)
            table.add_row(
                tn,
                str(sum(by_status.values())),
                *(str(by_status[s]) for s in STATUS.values()),
                f"{revenue:,.2f}",
            )
        console.print(table)
        for sample_key in repo.keys("acme", reverse=True, limit=1):
            note(f"acme's order {sample_key!r}: {repo.get('acme', sample_key)}")
        latest = list(repo.history.items("acme", reverse=True, limit=3))
        note(
            "acme's 3 latest history records: "
            + ("; ".join(f"{k[0]} {v['type']} {v['order']}" for k, v in latest) or "none yet")
        )

    lost = max(events // 10, 10) if events else 0
    with steps.step(f"4. lose the projection store, write {lost} more events, restart") as note:
        # The LMDB store goes away under the writer (disk, crash ...): its engine handle
        # closes (the pair's tier repositories refuse close() while the pair is open).
        repo.hot.backend.close()
        refused = 0
        for tenant, key, ev in _events(lost, start + events, rnd, orders):
            try:
                repo.put(tenant, key, ev)
            except HotTierError:
                refused += 1  # durable in history; the projection will catch up
        note(
            f"{refused} writes reported HotTierError: stored in history, projection behind "
            f"by {repo.lag} change-log entries"
        )
        repo.close()
        t = time.perf_counter()
        repo = open_pair()  # the restart: opening catches up
        note(
            f"restart: opening the pair applied {repo.recovered_on_open} change-log entries "
            f"to the projection in {(time.perf_counter() - t) * 1000:.1f} ms; lag now {repo.lag}"
        )

    with steps.step("5. check the projection against history") as note:
        before = {tn: dict(repo.items(tn)) for tn in TENANTS}
        folded = {tn: _fold(repo.history.items(tn), tn) for tn in TENANTS}
        if folded != before:
            raise AssertionError("the projection differs from its history folded from scratch")
        note(
            f"{sum(len(v) for v in before.values())} orders in the projection, equal to the "
            "history folded from scratch in memory: every event applied exactly once"
        )

    total = sum(repo.history.count(tn) for tn in TENANTS)
    with steps.step(f"6. rebuild the projection from {total} history records") as note:
        with Progress(
            TextColumn("  rebuilding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("rebuild", total=total)

            def progress(p: RebuildProgress) -> None:
                bar.update(task, completed=p.done, total=p.total)

            applied = repo.rebuild(progress=progress)
        after = {tn: dict(repo.items(tn)) for tn in TENANTS}
        if after != before:
            raise AssertionError("the rebuilt projection differs from the incremental one")
        note(
            f"{applied} records replayed in history order; the rebuilt projection is "
            "identical to the incrementally maintained one"
        )

    stats = repo.stats()
    repo.close()
    summary = Table("step", "time", title="summary")
    for title, elapsed in steps.rows:
        summary.add_row(title, f"{elapsed * 1000:,.1f} ms")
    console.print(summary)
    console.print(
        f"change log: {stats['cold_seq']} entries written, hot applied up to "
        f"{stats['hot_applied']} (lag {stats['lag']})."
    )
