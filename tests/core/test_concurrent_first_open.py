"""Opening a brand-new store from several threads, or several processes, at once.

The first open of a store initialises it: the metadata record (format, codec), the
engine's plugin record and the marker file beside the engine's files. Several openers
racing on a new path must all end with one store: every thread of one process shares a
working repository on it (or, for a tiered pair, gets the documented
:class:`~aurora_storage.errors.StoreLockedError`), openers asking for another codec than
the one the first recorded get the codec-mismatch
:class:`~aurora_storage.errors.ConfigurationError`, and another process either shares the
store (LMDB) or gets RocksDB's :class:`~aurora_storage.errors.StoreLockedError` - never a
raw :class:`~aurora_storage.errors.StorageError` about the marker, a store reported as
damaged, or two codecs on one store.

Real RocksDB and LMDB stores in tmp dirs and real processes; each round is a new path, and
enough rounds run that the race shows on every run without the fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

import aurora_storage
from aurora_storage._stores import MARKER_NAME, read_marker, write_marker
from aurora_storage.errors import ConfigurationError, StoreLockedError
from aurora_storage.tiered import TieredRepository

#: Rounds of the thread races (each on a new store); without the fix nearly every round
#: failed, so this many fail every run while the whole file stays a few seconds.
ROUNDS = 25
THREADS = 4
ENGINES = ("rocksdb", "lmdb")


def open_at_once(url: str, codecs: list[str]) -> list[Any]:
    """Open ``url`` from one thread per entry of ``codecs`` (that codec each), released
    together by a barrier; each thread's repository or exception, in order."""
    barrier = threading.Barrier(len(codecs))
    out: list[Any] = [None] * len(codecs)

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = aurora_storage.open(url, codec=codecs[i])
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(codecs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def close_all(results: list[Any]) -> None:
    for r in results:
        if not isinstance(r, BaseException):
            r.close()


def recorded_marker(store: Path) -> dict[str, Any]:
    """The marker of the store directory ``store`` (it must exist and read back)."""
    info = read_marker(str(store / MARKER_NAME))
    assert info is not None, f"{store} has no marker"
    return info


@pytest.mark.parametrize("scheme", ENGINES)
def test_threads_creating_one_store_all_share_it(tmp_path: Path, scheme: str) -> None:
    for r in range(ROUNDS):
        store = tmp_path / f"s{r}"
        results = open_at_once(f"{scheme}://{store}", ["json"] * THREADS)
        try:
            errors = [x for x in results if isinstance(x, BaseException)]
            assert not errors, f"round {r}: {errors!r}"
            for i, repo in enumerate(results):
                repo.put("t", f"k{i}", {"by": i})
            for repo in results:
                assert repo.codec.name == "json"
                assert dict(repo.items("t")) == {f"k{i}": {"by": i} for i in range(THREADS)}
        finally:
            close_all(results)
        info = recorded_marker(store)
        assert (info["backend"], info["codec"]) == (scheme, "json")
        with aurora_storage.open(f"{scheme}://{store}") as repo:
            assert repo.codec.name == "json"
            assert repo.count("t") == THREADS


@pytest.mark.parametrize("scheme", ENGINES)
def test_threads_creating_one_store_with_other_codecs_one_codec_wins(
    tmp_path: Path, scheme: str
) -> None:
    for r in range(ROUNDS):
        store = tmp_path / f"s{r}"
        codecs = ["json", "msgpack"] * (THREADS // 2)
        results = open_at_once(f"{scheme}://{store}", codecs)
        try:
            opened = [x for x in results if not isinstance(x, BaseException)]
            assert opened, f"round {r}: no thread opened the store: {results!r}"
            won = opened[0].codec.name
            for want, x in zip(codecs, results, strict=True):
                if want == won:
                    assert not isinstance(x, BaseException), f"round {r}: {x!r}"
                    assert x.codec.name == won
                else:
                    # The store was created with the other codec: the usual mismatch.
                    assert isinstance(x, ConfigurationError), f"round {r}: {x!r}"
                    assert f"was created with codec {won!r}" in str(x)
            opened[0].put("t", "k", {"v": [1, 2]})
        finally:
            close_all(results)
        assert recorded_marker(store)["codec"] == won
        with aurora_storage.open(f"{scheme}://{store}") as repo:
            assert repo.codec.name == won
            assert repo.get("t", "k") == {"v": [1, 2]}


def test_threads_creating_one_tiered_pair_one_owns_it(tmp_path: Path) -> None:
    for r in range(ROUNDS // 2):
        hot, cold = tmp_path / f"hot{r}", tmp_path / f"cold{r}"
        url = (
            f"tiered://?hot={quote(f'lmdb://{hot}', safe='')}"
            f"&cold={quote(f'rocksdb://{cold}', safe='')}"
        )
        results = open_at_once(url, ["json"] * THREADS)
        try:
            pairs = [x for x in results if isinstance(x, TieredRepository)]
            others = [x for x in results if not isinstance(x, TieredRepository)]
            # A store belongs to one open pair in a process (documented): the others
            # are told so, with nothing written.
            assert len(pairs) == 1, f"round {r}: {results!r}"
            assert all(isinstance(x, StoreLockedError) for x in others), f"round {r}: {others!r}"
            pairs[0].put("t", "k", 1)
        finally:
            close_all(results)
        assert recorded_marker(hot)["codec"] == recorded_marker(cold)["codec"] == "json"
        with aurora_storage.open(url) as repo:
            assert repo.get("t", "k") == 1


# ---------------------------------------------------------------------- processes

#: A child process: for each ``open <url> <codec>`` line it opens the store and answers
#: one JSON line (what it got); ``close`` closes what it holds; end of input ends it.
CHILD = r"""
import json, sys
import aurora_storage
print(json.dumps({"ready": True}), flush=True)
repo = None
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "open":
        try:
            repo = aurora_storage.open(cmd[1], codec=cmd[2])
            repo.put("t", "k", cmd[2])
            out = {"ok": repo.codec.name}
        except Exception as exc:
            out = {"error": type(exc).__name__, "message": str(exc)}
    else:
        if repo is not None:
            repo.close()
            repo = None
        out = {"closed": True}
    print(json.dumps(out), flush=True)
"""
PROCESSES = 3
PROCESS_ROUNDS = 12


def children(n: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        assert json.loads(p.stdout.readline()) == {"ready": True}
    return procs


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """End the children (end of input) and wait for them."""
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    for p in procs:
        p.wait()
        assert p.stdout is not None
        p.stdout.close()


def tell_all(procs: list[subprocess.Popen[str]], lines: list[str]) -> list[dict[str, Any]]:
    """Send each child its line (all sent before any answer is read, so the children
    act at once), then read each one's answer."""
    for p, line in zip(procs, lines, strict=True):
        assert p.stdin is not None
        p.stdin.write(line + "\n")
        p.stdin.flush()
    answers = []
    for p in procs:
        assert p.stdout is not None
        answers.append(json.loads(p.stdout.readline()))
    return answers


@pytest.mark.parametrize(
    ("scheme", "query"),
    [
        pytest.param("rocksdb", "", id="rocksdb"),
        pytest.param("lmdb", "", id="lmdb"),
        pytest.param("lmdb", "?change_log=true", id="lmdb-change-log"),
    ],
)
def test_processes_creating_one_store_share_it_or_get_the_typed_error(
    tmp_path: Path, scheme: str, query: str
) -> None:
    procs = children(PROCESSES)
    try:
        for r in range(PROCESS_ROUNDS):
            store = tmp_path / f"s{r}"
            url = f"{scheme}://{store}{query}"
            codecs = [("json", "msgpack")[i % 2] for i in range(PROCESSES)]
            got = tell_all(procs, [f"open {url} {c}" for c in codecs])
            tell_all(procs, ["close"] * PROCESSES)
            winners = [a["ok"] for a in got if "ok" in a]
            assert winners, f"round {r}: {got}"
            won = winners[0]
            for want, a in zip(codecs, got, strict=True):
                if "ok" in a:
                    assert a["ok"] == won, f"round {r}: two codecs on one store: {got}"
                elif scheme == "rocksdb" and a["error"] == "StoreLockedError":
                    pass  # RocksDB has one writer process per store (documented)
                else:
                    assert a["error"] == "ConfigurationError", f"round {r}: {got}"
                    assert want != won
                    assert f"was created with codec {won!r}" in a["message"]
            if scheme == "rocksdb":
                assert len(winners) == 1, f"round {r}: {got}"
            assert recorded_marker(store)["codec"] == won
            with aurora_storage.open(url) as repo:
                assert repo.codec.name == won
                assert repo.get("t", "k") == won
    finally:
        stop(procs)


def test_the_marker_is_whole_whatever_writes_it_at_once(tmp_path: Path) -> None:
    """Several threads writing one marker at once (openers of a store created a moment
    ago, or of one that predates markers, all write it): each write lands whole, none
    raises, no temporary file is left."""
    for r in range(ROUNDS * 4):
        path = str(tmp_path / f"m{r}.json")
        barrier = threading.Barrier(THREADS)
        failures: list[BaseException] = []

        def one(i: int, path: str, barrier: threading.Barrier, failures: list[Any]) -> None:
            barrier.wait()
            try:
                write_marker(path, {"backend": "x", "by": i})
            except BaseException as exc:
                failures.append(exc)

        threads = [
            threading.Thread(target=one, args=(i, path, barrier, failures)) for i in range(THREADS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, f"round {r}: {failures!r}"
        assert orjson.loads(Path(path).read_bytes())["by"] in range(THREADS)
        left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f"m{r}."))
        assert left == [f"m{r}.json"], "a temporary file was left behind"
