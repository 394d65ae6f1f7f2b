"""An application opened on a RocksDB store beside its live writer (another process):
with ``mode=secondary`` (what ``StoreLockedError`` advises) a subscription follows the
writer's new events (it catches up with the primary at each poll); with
``mode=read_only``, which sees the store only as of open, ``subscribe()`` is refused
with an error saying so, instead of a subscription that never delivers."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import NotSupportedError

CHILD = Path(__file__).with_name("es_rocks_writer_child.py")
#: A bound for what does happen (a failing test, not a timed assertion).
LONG = 60.0


class Writer:
    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def save(self) -> int:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("save\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(LONG)
        self.proc.stdout.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[str, Writer]]:
    url = f"rocksdb://{tmp_path}/events?codec=msgpack"
    writer = Writer(url)
    try:
        assert writer.save() == 1
        yield url, writer
    finally:
        writer.close()


def _app(url: str) -> Application[Any]:
    return Application(
        env={"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": url}
    )


def test_a_secondary_subscription_follows_the_writer(store: tuple[str, Writer]) -> None:
    url, writer = store
    app = _app(url + "&mode=secondary")
    got: queue.Queue[object] = queue.Queue()
    try:
        sub = app.recorder.subscribe(gt=0)

        def follow() -> None:
            try:
                with sub:
                    for n in sub:
                        got.put(n.id)
            except BaseException as exc:
                got.put(exc)

        thread = threading.Thread(target=follow)
        thread.start()
        try:
            assert got.get(timeout=LONG) == 1
            assert writer.save() == 2
            assert got.get(timeout=LONG) == 2
            assert [writer.save(), writer.save()] == [3, 4]
            assert [got.get(timeout=LONG), got.get(timeout=LONG)] == [3, 4]
        finally:
            sub.stop()
            thread.join(LONG)
        assert got.empty()
    finally:
        app.close()


def test_a_read_only_store_refuses_subscribe(store: tuple[str, Writer]) -> None:
    url, _writer = store
    app = _app(url + "&mode=read_only")
    try:
        assert app.recorder.max_notification_id() == 1  # reads work
        with pytest.raises(NotSupportedError, match="mode=secondary"):
            app.recorder.subscribe(gt=0)
    finally:
        app.close()
