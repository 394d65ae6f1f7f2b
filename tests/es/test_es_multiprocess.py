"""Four processes append events through aurora_storage.eventsourcing to one LMDB store,
racing for the same aggregates, while this process follows them with a subscription.

Issue 13's reproduction: behind a check-then-write adapter, four writers on one LMDB
store lost up to 1,950 of 3,000 notifications, and two writers were both told they had
written the same aggregate version. Here every guarantee is one LMDB write transaction:
0 lost notifications, 0 gaps, 0 duplicate aggregate versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from es_cases import require_primitives
from eventsourcing.persistence import InfrastructureFactory, Notification
from eventsourcing.utils import Environment

import aurora_storage

CHILD = Path(__file__).with_name("es_mp_child.py")
WRITERS = 4
ROUNDS = 250
AGGREGATES = 6


@pytest.mark.parametrize("options", ["", "&change_log=true"], ids=["polled", "change_log"])
def test_four_writer_processes_lose_nothing(tmp_path: Path, options: str) -> None:
    """Without ``change_log`` the follower learns of other processes' commits by its
    0.2 s re-reads; with it, only from the cross-process change feed."""
    url = f"lmdb://{tmp_path / 'store'}?codec=msgpack&sync=false{options}"
    if options:
        try:
            with aurora_storage.open(url) as repo:
                cross_process = repo.capabilities.multi_process_change_feed
        except aurora_storage.InvalidURLError:
            cross_process = False
        if not cross_process:
            pytest.skip("lmdb:// here has no cross-process change feed (change_log)")
    require_primitives(url)
    ids_file = tmp_path / "ids"
    ids_file.write_text("\n".join(uuid4().hex for _ in range(AGGREGATES)))
    go = tmp_path / "go"
    env = Environment(
        "Writers", {"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": url}
    )
    factory = InfrastructureFactory.construct(env)
    recorder = factory.application_recorder()

    # Follow the writers from this process through the cross-process change feed.
    followed: list[Notification] = []
    subscription = recorder.subscribe(gt=0)

    def follow() -> None:
        # Follows until subscription.stop() below, once every acknowledged notification
        # arrived. (It used to break at the first notification after the writers were
        # done: when they finished before its first poll, it ended holding only id 1.)
        with subscription:
            for notification in subscription:
                followed.append(notification)

    follower = threading.Thread(target=follow)
    follower.start()
    outs = [tmp_path / f"out{w}" for w in range(WRITERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD), url, str(w), str(ROUNDS), str(ids_file), str(go), str(out)]
        )
        for w, out in enumerate(outs)
    ]
    try:
        for out in outs:
            while not Path(str(out) + ".ready").exists():
                assert all(p.poll() is None for p in procs), "a writer died while starting"
                threading.Event().wait(0.01)
        go.touch()
        for p in procs:
            assert p.wait(timeout=300) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    acks = []
    conflicts = 0
    for out in outs:
        for line in out.read_text().splitlines():
            record = json.loads(line)
            if "ack" in record:
                acks.append(tuple(record["ack"]))
            else:
                conflicts += 1
    total = len(acks)
    assert total > 0

    # Notification ids told to the writers: exactly 1..total (none lost, none twice).
    assert sorted(a[2] for a in acks) == list(range(1, total + 1))
    # Aggregate versions told to the writers: no version acknowledged twice ...
    assert len({(a[0], a[1]) for a in acks}) == total
    # ... and each aggregate's versions are 1..k without a hole.
    by_aggregate: dict[str, list[int]] = {}
    for oid, version, _, _ in acks:
        by_aggregate.setdefault(oid, []).append(version)
    for versions in by_aggregate.values():
        assert sorted(versions) == list(range(1, len(versions) + 1))

    # The store's notification log holds exactly what was acknowledged, under the ids told.
    log = recorder.select_notifications(None, total + 10)
    assert [n.id for n in log] == list(range(1, total + 1))
    told = {a[2]: a for a in acks}
    for n in log:
        oid, version, _, state = told[n.id]
        assert isinstance(n.originator_id, UUID)  # the default: UUID ids
        assert (n.originator_id.hex, n.originator_version, n.state.decode()) == (
            oid,
            version,
            state,
        )
    assert recorder.max_notification_id() == total

    # The follower in this process saw every notification, in order, once.
    deadline = threading.Event()
    watchdog = threading.Timer(60, subscription.stop)  # a hang guard, not a timed assertion
    watchdog.start()
    while len(followed) < total and follower.is_alive():
        deadline.wait(0.05)
    subscription.stop()
    watchdog.cancel()
    follower.join()
    assert [n.id for n in followed[:total]] == list(range(1, total + 1))
    factory.close()
    print(f"{WRITERS} writers: {total} events acknowledged, {conflicts} version conflicts refused")
