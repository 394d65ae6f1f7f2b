"""eventsourcing on an LMDB store with ``change_log=true`` in the states that broke its
feed: restored from a compacting copy (new notifications must reach a subscription at
once), and followed by a read-only process (and RocksDB's read-only modes reading the
event-store records)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

import aurora_storage
from aurora_storage.errors import ReadOnlyError
from aurora_storage_lmdb import LMDBRepository

SRC = str(Path(__file__).resolve().parents[2] / "src")


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name


class School(Application[UUID]):
    pass


def _school(url: str) -> School:
    return School(env={"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": url})


def test_subscription_after_restoring_a_compacting_copy(tmp_path: Path) -> None:
    src = f"lmdb://{tmp_path}/src?codec=msgpack&sync=false&change_log=true"
    with _school(src) as app:
        for i in range(30):
            app.save(Dog(f"d{i}"))
    repo: LMDBRepository[Any, Any]
    with LMDBRepository(tmp_path / "src", codec="msgpack", sync=False) as repo:
        repo.copy(tmp_path / "restored")  # compact=True: LMDB's txn ids restart
    app = _school(f"lmdb://{tmp_path}/restored?codec=msgpack&sync=false&change_log=true")
    try:
        start = app.recorder.max_notification_id()
        assert start == 30
        got: list[int] = []
        subscription = app.recorder.subscribe(gt=start)

        def follow() -> None:
            with subscription:
                for n in subscription:
                    got.append(n.id)
                    if len(got) == 3:
                        return

        follower = threading.Thread(target=follow)
        follower.start()
        for i in range(3):
            app.save(Dog(f"new{i}"))
        follower.join(30)
        if follower.is_alive():
            subscription.stop()
            follower.join()
        assert got == [31, 32, 33]
    finally:
        app.close()


def test_read_only_process_follows_notifications(tmp_path: Path) -> None:
    """A read-only follower process subscribes to a writer's notifications."""
    url = f"lmdb://{tmp_path}/s?codec=msgpack&sync=false&change_log=true"
    app = _school(url)
    try:
        app.save(Dog("first"))
        follower = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import json, sys
                    from eventsourcing.persistence import InfrastructureFactory
                    from eventsourcing.utils import Environment
                    env = Environment("School", {
                        "PERSISTENCE_MODULE": "aurora_storage.eventsourcing",
                        "AURORA_URL": sys.argv[1] + "&read_only=true",
                    })
                    recorder = InfrastructureFactory.construct(env).application_recorder()
                    print(json.dumps(recorder.max_notification_id()), flush=True)
                    with recorder.subscribe(gt=1) as sub:
                        for n in sub:
                            print(json.dumps(n.id), flush=True)
                            if n.id == 3:
                                break
                    """
                ),
                url,
            ],
            env=dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        assert follower.stderr is not None
        first = follower.stdout.readline()
        assert first, follower.stderr.read()
        assert json.loads(first) == 1
        app.save(Dog("second"))
        app.save(Dog("third"))
        try:
            out, err = follower.communicate(timeout=60)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
    finally:
        app.close()
    assert follower.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [2, 3]


@pytest.mark.parametrize(
    "mode",
    ["lmdb", "rocksdb-read_only", "rocksdb-secondary"],
)
def test_read_only_stores_read_event_store_records(tmp_path: Path, mode: str) -> None:
    """Versions and sequence numbers are reads: a read-only store serves them (writes
    still raise ReadOnlyError)."""
    if mode == "lmdb":
        url = f"lmdb://{tmp_path}/s?sync=false"
        ro_url = url + "&read_only=true"
    else:
        pytest.importorskip("rocksdict")
        url = f"rocksdb://{tmp_path}/s"
        ro_url = url + "?mode=" + mode.split("-")[1]
    writer = aurora_storage.open(url)
    try:
        with writer.batch() as b:
            b.append("t", "n", 1)
            b.insert("t", "k", "v")
        writer.close()
        ro: Any = aurora_storage.open(ro_url)
        try:
            assert ro.capabilities.read_only
            assert ro.last_sequence("t", "n") == 1
            value, version = ro.get_versioned("t", "k")
            assert value == "v"
            assert version is not None
            with pytest.raises(ReadOnlyError), ro.batch() as b:
                b.append("t", "n", 2)
            with pytest.raises(ReadOnlyError):
                ro.compare_and_set("t", "k", "w", version=version)
        finally:
            ro.close()
    finally:
        writer.close()
