"""Child process: one tiered pair that writes on command, for tests where two processes
write one pair (tests/tiered/test_tiered_trimmed_log_reuse.py and the NATS variant
tests/nats/test_nats_tiered_trimmed_log.py).

Usage: python tiered_writer_child.py HOT_URL COLD_URL MODE TRIM_EVERY
(MODE: projection | cache). Prints ``ready`` once open, then reads one command a line:

- ``put KEY [VALUE]``: writes record KEY of tenant ``t`` (projection: an empty event,
  counted by the projection below; cache: the value VALUE, or KEY);
- ``drop TENANT``: ``drop_tenant(TENANT)``;

and answers ``ok``, or the error's type name and message on one line. The pair is closed
when stdin ends (a test may SIGKILL it instead).
"""

from __future__ import annotations

import sys
from typing import Any

import aurora_storage
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository


def count(record: HistoryRecord, state: ProjectionState) -> None:
    """Counts every application: ``n`` in total, ``seen:<key>`` per record."""
    state.put("n", state.get("n", 0) + 1)
    k = f"seen:{record.key}"
    state.put(k, state.get(k, 0) + 1)


def main() -> None:
    hot, cold, mode, trim_every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    r: TieredRepository[Any, Any] = TieredRepository(
        hot=aurora_storage.open(hot),
        cold=aurora_storage.open(cold),
        projection=count if mode == "projection" else None,
        trim_every=trim_every,
    )
    print("ready", flush=True)
    for line in sys.stdin:
        command, arg, *rest = line.split()
        try:
            if command == "put":
                r.put("t", arg, {} if mode == "projection" else (rest or [arg])[0])
            else:
                r.drop_tenant(arg)
            print("ok", flush=True)
        except Exception as exc:
            print(type(exc).__name__, str(exc).replace("\n", " "), flush=True)
    r.close()


if __name__ == "__main__":
    main()
