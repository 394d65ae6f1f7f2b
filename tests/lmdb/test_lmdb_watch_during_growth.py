"""LMDB: a watch (and stats()) while another thread's writes grow the map. Reading the
environment's info races set_mapsize() like a read transaction does; it goes through
the same growth gate and retries (finding: watch() with change_log=true leaked a raw
lmdb.InvalidParameterError "mdb_env_info: Invalid argument")."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import aurora_storage


@pytest.mark.parametrize("options", ["change_log=true", "change_log=false"])
@pytest.mark.parametrize("round_", range(3))
def test_watch_and_stats_while_writes_grow_the_map(
    tmp_path: Path, options: str, round_: int
) -> None:
    repo = aurora_storage.open(f"lmdb://{tmp_path / 'l'}?sync=false&map_size=65536&{options}")
    done = threading.Event()
    failures: list[BaseException] = []
    writes = 1000

    def writer() -> None:
        try:
            for i in range(writes):
                repo.put_many("t", {(i, j): "x" * 500 for j in range(20)})
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            done.set()

    def stats() -> None:
        try:
            while not done.is_set():
                repo.stats()
                repo.last_position()
        except BaseException as exc:  # reported below
            failures.append(exc)

    seen = 0
    threads = [threading.Thread(target=writer), threading.Thread(target=stats)]
    with repo.watch("t") as watch:
        for t in threads:
            t.start()
        try:
            for _ in watch:
                seen += 1
                if seen == writes * 20:
                    break
        finally:
            watch.close()
            for t in threads:
                t.join()
    assert not failures, failures
    assert seen == writes * 20
    assert repo.stats()["map_size"] > 65536
    repo.close()
