"""Child process: one tiered pair that writes on command, for tests where two processes
write one pair (tests/tiered/test_tiered_trimmed_log_reuse.py and the NATS variant
tests/nats/test_nats_tiered_trimmed_log.py).

Usage: python tiered_writer_child.py HOT_URL COLD_URL MODE TRIM_EVERY
(MODE: projection | cache). Prints ``ready`` once open, then reads one command a line:

- ``put KEY [VALUE]``: writes record KEY of tenant ``t`` (projection: an empty event,
  counted by the projection below; cache: the value VALUE, or KEY);
- ``drop TENANT``: ``drop_tenant(TENANT)``;
- ``catchup``: ``catch_up()``;
- ``pause write``: the next write this pair makes to the hot tier (the engine's
  ``put``, ``write`` or ``commit``, wrapped here: the engine itself runs as it is) first
  prints ``paused`` and waits for a line ``go`` on stdin; ``pause pos``: the same right
  after the pair's next read of hot's position record (``get`` / ``get_versioned`` of
  POS). Answers ``armed``. This is how the tests hold one process between what it read
  and its hot batch while another process writes
  (tests/tiered/test_tiered_shared_hot_writers.py), with no timing;
- ``burst N SEED``: N steps at random (seeded): a ``put`` of a new key (written again when
  refused as stale, see tiered_writers.conflicted) or a ``catch_up()``; answers ``ok`` and
  the keys written, space-separated;

and answers ``ok``, or the error's type name and message on one line. The pair is closed
when stdin ends (a test may SIGKILL it instead).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from typing import Any

import aurora_storage
from aurora_storage.errors import VersionConflictError
from aurora_storage.tiered import HistoryRecord, ProjectionState, TieredRepository
from aurora_storage.tiered._log import POS


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
    armed = _pausing(r.hot.backend)
    print("ready", flush=True)
    while line := sys.stdin.readline():
        command, *args = line.split()
        try:
            if command == "put":
                r.put("t", args[0], {} if mode == "projection" else (args[1:] or args)[0])
            elif command == "drop":
                r.drop_tenant(args[0])
            elif command == "catchup":
                r.catch_up()
            elif command == "pause":
                armed[0] = args[0]
                print("armed", flush=True)
                continue
            elif command == "burst":
                written = _burst(r, mode, int(args[0]), int(args[1]))
                print("ok", *written, flush=True)
                continue
            print("ok", flush=True)
        except Exception as exc:
            print(type(exc).__name__, str(exc).replace("\n", " "), flush=True)
    r.close()


def _pausing(hot: Any) -> list[str]:
    """Wrap the hot engine's writes and position reads so that, once armed, the next one
    waits for ``go`` (see the ``pause`` command); returns the flag (``""``: not armed)."""
    armed = [""]

    def hold() -> None:
        armed[0] = ""
        print("paused", flush=True)
        assert sys.stdin.readline().strip() == "go"

    def wrap_write(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            if armed[0] == "write":
                hold()
            return fn(*args, **kwargs)

        return run

    def wrap_read(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(key: bytes) -> Any:
            got = fn(key)
            if armed[0] == "pos" and key == POS:
                hold()
            return got

        return run

    for name in ("put", "write", "commit"):
        setattr(hot, name, wrap_write(getattr(hot, name)))
    for name in ("get", "get_versioned"):
        setattr(hot, name, wrap_read(getattr(hot, name)))
    return armed


def _burst(r: TieredRepository[Any, Any], mode: str, n: int, seed: int) -> list[str]:
    """``n`` random steps (see the ``burst`` command); returns the keys written."""
    rnd = random.Random(seed)
    written: list[str] = []
    for i in range(n):
        if rnd.random() < 0.3:
            r.catch_up()
            continue
        key = f"p{os.getpid()}-{seed}-{i}"
        while True:
            try:
                r.put("t", key, {} if mode == "projection" else key)
                break
            except VersionConflictError:
                continue  # stale: the pair re-read the log; nothing was written
        written.append(key)
    return written


if __name__ == "__main__":
    main()
