"""RocksDB: close() from another thread while writes are in flight, with the in-process
change feed recording. A write that raises RepositoryClosedError wrote nothing; one
that reached the engine returns normally (finding: a put_many fully stored raised
"the RocksDB store ... is closed", because close() dropped the engine between the
batch's write and the feed's read of its sequence number)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import RepositoryClosedError

_ROUNDS = 12
_N = 400  # records per write: long enough for close() to land inside one


def _put_many(repo: Any, n: int) -> None:
    repo.put_many("w", {("k", n, j): j for j in range(_N)})


def _batch(repo: Any, n: int) -> None:
    with repo.batch() as b:
        for j in range(_N):
            b.put("w", ("k", n, j), j)


def _conditional_batch(repo: Any, n: int) -> None:
    with repo.batch() as b:  # an insert makes it a conditional commit
        b.insert("w", ("k", n, 0), 0)
        for j in range(1, _N):
            b.put("w", ("k", n, j), j)


def _put(repo: Any, n: int) -> None:
    repo.put("w", ("k", n, 0), 0)


def _insert(repo: Any, n: int) -> None:
    repo.insert("w", ("k", n, 0), 0)


def _delete(repo: Any, n: int) -> None:
    repo.delete("d", ("k", n, 0))


def _drop_tenant(repo: Any, n: int) -> None:
    repo.drop_tenant(f"d{n}")


# Per write: how it runs, how its effect shows after a reopen, and what the store holds
# before (the deletes need something to delete).
_WRITES: dict[str, tuple[Callable[[Any, int], None], Callable[[Any, int], bool]]] = {
    "put_many": (_put_many, lambda r, n: r.count("w", prefix=("k", n)) > 0),
    "batch": (_batch, lambda r, n: r.count("w", prefix=("k", n)) > 0),
    "conditional_batch": (_conditional_batch, lambda r, n: r.count("w", prefix=("k", n)) > 0),
    "put": (_put, lambda r, n: r.count("w", prefix=("k", n)) > 0),
    "insert": (_insert, lambda r, n: r.count("w", prefix=("k", n)) > 0),
    "delete": (_delete, lambda r, n: not r.has("d", ("k", n, 0))),
    "drop_tenant": (_drop_tenant, lambda r, n: r.count(f"d{n}") < _N),
}


@pytest.mark.parametrize("kind", list(_WRITES))
def test_a_write_that_raises_closed_wrote_nothing(tmp_path: Path, kind: str) -> None:
    write, written = _WRITES[kind]
    for round_ in range(_ROUNDS):
        url = f"rocksdb://{tmp_path / str(round_)}"
        repo = aurora_storage.open(url)
        if kind == "delete":
            repo.put_many("d", {("k", n, 0): n for n in range(5000)})
        if kind == "drop_tenant":
            for n in range(200):
                repo.put_many(f"d{n}", {("k", j): j for j in range(_N)})
        repo.watch("w", timeout=0).close()  # starts the in-process change feed
        started = threading.Event()
        outcome: dict[str, Any] = {}

        def writer() -> None:
            n = 0
            while True:
                try:
                    write(repo, n)  # noqa: B023  # the round's write, run in this round
                except RepositoryClosedError as exc:
                    outcome["n"], outcome["error"] = n, exc  # noqa: B023
                    return
                except BaseException as exc:  # reported below
                    outcome["n"], outcome["error"] = n, exc  # noqa: B023
                    return
                started.set()  # noqa: B023
                n += 1

        t = threading.Thread(target=writer)
        t.start()
        started.wait()
        repo.close()
        t.join()
        n, error = outcome["n"], outcome["error"]
        assert isinstance(error, RepositoryClosedError), repr(error)
        with aurora_storage.open(url) as again:
            assert not written(again, n), (
                f"round {round_}: {kind} #{n} raised {error!r} (cause "
                f"{error.__cause__!r}) yet was stored"
            )
