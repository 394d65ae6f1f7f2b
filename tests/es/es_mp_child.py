"""One writer process of the multi-process test (test_es_multiprocess.py).

    python es_mp_child.py URL WORKER ROUNDS IDS_FILE GO_FILE OUT_FILE

Opens the store through eventsourcing's factory (PERSISTENCE_MODULE and AURORA_URL, as
an application would), waits until GO_FILE exists so every writer starts together, then
for ROUNDS rounds appends the next version(s) of one of the shared aggregates (IDS_FILE:
one UUID per line) - reading the newest version first and racing the other writers for
the next one. Writes what it was told to OUT_FILE as JSON lines: for each acknowledged
insert, the (originator id, version, notification id, state) of every event; for each
refused one, a conflict.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, IntegrityError, StoredEvent
from eventsourcing.utils import Environment


def main(argv: list[str]) -> int:
    url, worker, rounds = argv[0], int(argv[1]), int(argv[2])
    ids = [UUID(line) for line in Path(argv[3]).read_text().split()]
    go, out = Path(argv[4]), Path(argv[5])
    env = Environment(
        "Writers", {"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": url}
    )
    factory = InfrastructureFactory.construct(env)
    recorder = factory.application_recorder()
    Path(str(out) + ".ready").touch()
    while not go.exists():
        time.sleep(0.005)
    lines: list[dict[str, object]] = []
    for r in range(rounds):
        oid = ids[(worker * 7 + r) % len(ids)]
        last = recorder.select_events(oid, desc=True, limit=1)
        first = last[0].originator_version + 1 if last else 1
        count = 1 + r % 3  # 1, 2 or 3 events per insert
        events = [
            StoredEvent(
                originator_id=oid,
                originator_version=first + i,
                topic="mp:Event",
                state=f"{worker}:{r}:{i}".encode(),
            )
            for i in range(count)
        ]
        try:
            nids = recorder.insert_events(events)
        except IntegrityError:
            lines.append({"conflict": [oid.hex, first]})
            continue
        assert nids is not None
        for e, n in zip(events, nids, strict=True):
            lines.append(
                {"ack": [oid.hex, e.originator_version, n, e.state.decode()], "pid": os.getpid()}
            )
    factory.close()
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
