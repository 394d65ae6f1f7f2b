"""The cross-process change feed of an LMDB store with ``change_log=true``, in the states
that broke it: a copy whose LMDB transaction ids restarted (compacting copy, ours or
py-lmdb's), a writer SIGKILLed between writing the meta page and publishing its
transaction id, a brand-new store watched from position 0, and read-only followers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import lmdb
import pytest
from hypothesis import HealthCheck, given, settings

import aurora_storage
from aurora_storage.errors import PositionExpiredError
from aurora_storage_lmdb import LMDBRepository

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _keys(changes: Any) -> list[Any]:
    return [c.key for c in changes]


# ------------------------------------------------------------------ 1: compacting copies


def _copy_ours(src: str, dst: str) -> None:
    repo: LMDBRepository[Any, Any]
    with LMDBRepository(src, sync=False) as repo:
        repo.copy(dst)  # compact=True is the default


def _copy_py_lmdb(src: str, dst: str) -> None:
    # A copy made with tools outside aurora-storage (what mdb_copy -c does).
    os.makedirs(dst)
    env = lmdb.open(src, readonly=True, max_dbs=0, lock=False)
    try:
        env.copy(dst, compact=True)
    finally:
        env.close()


@pytest.mark.parametrize("copy", [_copy_ours, _copy_py_lmdb], ids=["repo.copy", "py-lmdb"])
def test_positions_keep_increasing_after_a_compacting_copy(tmp_path: Path, copy: Any) -> None:
    """A compacting copy restarts LMDB's transaction ids near zero while the log records
    keep their positions: the copy's new changes must still come after every old one."""
    src, dst = str(tmp_path / "src"), str(tmp_path / "copy")
    with aurora_storage.open(f"lmdb://{src}?sync=false&change_log=true") as repo:
        for i in range(300):
            repo.put("t", f"old{i}", i)
        old_last = repo.last_position()
    copy(src, dst)
    url = f"lmdb://{dst}?sync=false"
    with aurora_storage.open(url) as repo:
        assert repo.capabilities.multi_process_change_feed
        p = repo.last_position()
        assert p == old_last
        live = repo.watch("t", timeout=10)  # after=None: from now on
        seen: list[Any] = []

        def follow() -> None:
            for c in live:
                seen.append(c.key)
                if len(seen) == 3:
                    return

        follower = threading.Thread(target=follow)
        follower.start()
        repo.put("t", "new1", 1)
        assert repo.last_position() > p
        # Another process writes to the copy: its positions follow ours.
        done = _run(
            """
            import sys, aurora_storage
            with aurora_storage.open(sys.argv[1]) as repo:
                repo.put("t", "child", 2)
            """,
            url,
        )
        assert done.returncode == 0, done.stderr
        with repo.batch() as b:
            b.append("t", "n", "x")
        follower.join(30)
        assert seen == ["new1", "child", ("n", 1)]
        changes = list(repo.watch("t", after=p, timeout=0.2))
        assert _keys(changes) == ["new1", "child", ("n", 1)]
        positions = [c.position for c in changes]
        assert positions == sorted(positions)
        assert positions[0] > old_last
        assert repo.last_position() == positions[-1]
        # Nothing of the source is delivered again, and resuming in the middle works.
        assert _keys(repo.watch("t", after=positions[0], timeout=0.1)) == ["child", ("n", 1)]


def test_copy_of_a_copy_keeps_increasing(tmp_path: Path) -> None:
    """Twice compacted (the second copy's ids restart below the first's positions too)."""
    a, b, c = (str(tmp_path / n) for n in "abc")
    with aurora_storage.open(f"lmdb://{a}?sync=false&change_log=true") as repo:
        for i in range(50):
            repo.put("t", i, i)
    _copy_ours(a, b)
    with aurora_storage.open(f"lmdb://{b}?sync=false") as repo:
        p = repo.last_position()
        repo.put("t", "b", 1)
        assert _keys(repo.watch("t", after=p, timeout=0.1)) == ["b"]
        pb = repo.last_position()
    _copy_ours(b, c)
    with aurora_storage.open(f"lmdb://{c}?sync=false") as repo:
        assert repo.last_position() == pb
        repo.put("t", "c", 1)
        assert _keys(repo.watch("t", after=pb, timeout=0.1)) == ["c"]


# ------------------------------------------------------------------ 2: killed mid-commit

# The state a writer SIGKILLed inside mdb_txn_commit leaves when it dies after writing the
# meta page and before publishing the new transaction id in the lock file (mti_txnid),
# made exactly: the child commits transaction N, then takes the write mutex (begins a
# write transaction), puts the lock file's published id back to N - 1 - what it read
# before that commit - and SIGKILLs itself while holding the mutex. The lock file's
# layout (MDB_txninfo on x86-64 Linux: magic, format, the robust reader mutex, then the
# txn id at byte 48) is checked before it is touched.
_KILLED_MID_COMMIT = """
import os, signal, struct, sys, aurora_storage
path = sys.argv[1]
repo = aurora_storage.open(f"lmdb://{path}?sync=false")
env = repo._backend._env
with repo.batch() as b:
    b.append("t", "n", "lost?")
n = env.info()["last_txnid"]
lock = os.open(os.path.join(path, "lock.mdb"), os.O_RDWR)
if struct.unpack("<Q", os.pread(lock, 8, 48))[0] != n:
    sys.exit(3)
txn = env.begin(write=True)  # the write mutex, held until the process dies
os.pwrite(lock, struct.pack("<Q", n - 1), 48)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _stale(repo: Any) -> bool:
    """The snapshot readers get is older than the newest meta page."""
    env = repo._backend._env
    with env.begin() as txn:
        return bool(env.info()["last_txnid"] > txn.id())


def _kill_mid_commit(path: str) -> None:
    done = _run(_KILLED_MID_COMMIT, path)
    if done.returncode == 3:
        pytest.skip("the LMDB lock file's layout is not the x86-64 Linux one this test pokes")
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.fixture
def log_store(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}?sync=false&change_log=true") as repo:
        repo.put("t", "first", 1)
        yield path, repo


def test_killed_writer_state_is_what_the_test_means(log_store: tuple[str, Any]) -> None:
    """The constructed state hides the killed writer's batch from a plain read (until
    something repairs it) and is repaired by taking the write mutex."""
    path, repo = log_store
    backend = repo._backend
    _kill_mid_commit(path)
    assert _stale(repo)
    env = backend._env
    assert repo.last_sequence("t", "n") == 0  # readable, just old
    with backend._wlock:
        env.begin(write=True).abort()  # EOWNERDEAD: LMDB publishes the newest meta
    assert not _stale(repo)
    assert repo.last_sequence("t", "n") == 1


def test_watcher_delivers_a_killed_writers_last_batch(log_store: tuple[str, Any]) -> None:
    """A watcher waiting in another process than the killed writer delivers its last
    committed batch without any further write (it repairs the published txn id)."""
    path, repo = log_store
    p = repo.last_position()
    w = repo.watch("t", after=p, timeout=30)
    _kill_mid_commit(path)
    assert _stale(repo)
    got = next(iter(w), None)
    assert got is not None
    assert got.key == ("n", 1)
    assert got.value == "lost?"
    w.close()
    assert not _stale(repo)
    assert repo.last_position() == got.position


def test_last_position_sees_a_killed_writers_last_batch(log_store: tuple[str, Any]) -> None:
    path, repo = log_store
    p = repo.last_position()
    _kill_mid_commit(path)
    assert _stale(repo)
    assert repo.last_position() > p
    assert _keys(repo.watch("t", after=p, timeout=0)) == [("n", 1)]


def test_subscriber_is_called_after_a_killed_writers_last_batch(
    log_store: tuple[str, Any],
) -> None:
    """The subscription poller (what the eventsourcing subscriptions use) repairs the
    state too and calls its subscribers once the batch is readable."""
    path, repo = log_store
    feed = repo._backend.change_feed()
    p = feed.last_position()
    called = threading.Event()
    unsubscribe = feed.subscribe(called.set)
    try:
        _kill_mid_commit(path)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            called.wait(max(0.0, deadline - time.monotonic()))
            called.clear()
            got = feed.read(p, 10)
        assert [k for _, k, _ in got] != []
        assert len(got) == 1
    finally:
        unsubscribe()


# ------------------------------------------------------------------ 3: read-only followers


def test_read_only_process_follows_a_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    url = f"lmdb://{path}?sync=false&change_log=true"
    with aurora_storage.open(url) as repo:
        with repo.batch() as b:
            b.append("t", "n", 1)
        p = repo.last_position()
        follower = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import json, sys, aurora_storage
                    with aurora_storage.open(sys.argv[1] + "&read_only=true") as ro:
                        caps = ro.capabilities
                        value, version = ro.get_versioned("t", ("n", 1))
                        print(json.dumps([caps.read_only, ro.last_sequence("t", "n"),
                                          value, version is not None]), flush=True)
                        w = ro.watch("t", after=int(sys.argv[2]), timeout=30)
                        for c in w:
                            print(json.dumps([c.key, c.value]), flush=True)
                            if c.key == "stop":
                                break
                        print(json.dumps(ro.last_sequence("t", "n")), flush=True)
                    """
                ),
                url,
                str(p),
            ],
            env=dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert follower.stderr is not None
        assert first, follower.stderr.read()
        assert json.loads(first) == [True, 1, 1, True]
        with repo.batch() as b:
            b.append("t", "n", 2)
        repo.put("t", "stop", 0)
        try:
            out, err = follower.communicate(timeout=60)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
    assert follower.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [[["n", 2], 2], ["stop", 0], 2]


# ------------------------------------------------------------------ 4: after=0


def test_fresh_store_delivers_from_position_zero(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/s?sync=false&change_log=true") as repo:
        repo.put("t", "first", 1)
        assert _keys(repo.watch("t", after=0, timeout=0)) == ["first"]
        repo.put("t", "second", 2)
        assert _keys(repo.watch("t", after=0, timeout=0)) == ["first", "second"]


@pytest.fixture(scope="module")
def fresh_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    path = tmp_path_factory.mktemp("fresh")
    with aurora_storage.open(f"lmdb://{path}/s?sync=false&change_log=true") as repo:
        floor = repo.last_position()
        repo.put("t", "a", 1)
        repo.put("t", "b", 2)
        yield repo, floor


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(after=st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_any_position_below_a_fresh_logs_start_delivers_everything(
    fresh_log: tuple[Any, int], after: int
) -> None:
    """Nothing was ever dropped from a fresh log: every position up to its start means
    "from the beginning"; later ones resume."""
    repo, floor = fresh_log
    last = repo.last_position()
    if after > last:  # never given by this feed: refused, not skipped to
        with pytest.raises(PositionExpiredError, match="not given by this feed"):
            next(iter(repo.watch("t", after=after, timeout=0)))
        return
    got = _keys(repo.watch("t", after=after, timeout=0))
    first = repo._backend.change_feed().read(0, 1)[0][0]
    if after < first:
        assert got == ["a", "b"]
    elif after < last:
        assert got == ["b"]
    else:
        assert got == []
    assert floor < first


def test_trimmed_log_raises_only_for_positions_before_what_it_dropped(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path}/s?sync=false&change_log=true&change_log_retention=10"
    with aurora_storage.open(url) as repo:
        repo.put("t", "first", 0)
        for i in range(300):  # crosses a trim point (every 256 transactions)
            repo.put("t", i, i)
        for after in (0, 1):
            with pytest.raises(PositionExpiredError, match="dropped") as info:
                next(iter(repo.watch("t", after=after, timeout=0)))
            assert info.value.oldest > after
            got = _keys(repo.watch("t", after=info.value.oldest, timeout=0))
            assert got[-1] == 299
            assert len(got) >= 10


def test_log_record_without_dropped_position_still_raises_truthfully(tmp_path: Path) -> None:
    """A log record written before the dropped position was recorded (only its floor):
    whether changes were dropped is unknown, so a position before the floor raises, and
    says so."""
    import orjson

    from aurora_storage_lmdb._eventstore import CHANGELOG_KEY

    with aurora_storage.open(f"lmdb://{tmp_path}/s?sync=false&change_log=true") as repo:
        backend: Any = repo._backend
        floor = repo.last_position()
        old = backend._wrap(CHANGELOG_KEY, orjson.dumps({"floor": floor}))
        backend._write_txn(lambda txn: txn.put(CHANGELOG_KEY, old))
        repo.put("t", "a", 1)
        with pytest.raises(PositionExpiredError, match="did not record whether") as info:
            next(iter(repo.watch("t", after=0, timeout=0)))
        assert info.value.oldest == floor
        assert _keys(repo.watch("t", after=floor, timeout=0)) == ["a"]


def test_another_process_with_a_smaller_retention_trims_and_the_error_says_so(
    tmp_path: Path,
) -> None:
    """change_log_retention is a setting of each process, not of the store: another
    process writing with retention 1 trims the shared log, and the error of a process
    with the default setting must not claim its own setting as the reason (it said "it
    keeps the last 100000 write transactions" after ~600)."""
    url = f"lmdb://{tmp_path}/s?sync=false&change_log=true"
    with aurora_storage.open(url) as repo:
        start = repo.last_position()
        for i in range(10):
            repo.put("t", ("a", i), i)
        done = _run(
            "import sys, aurora_storage\n"
            "with aurora_storage.open(sys.argv[1] + '&change_log_retention=1') as r:\n"
            "    for i in range(600):\n"
            "        r.put('t', ('b', i), i)\n",
            url,
        )
        assert done.returncode == 0, done.stderr
        with pytest.raises(PositionExpiredError) as info:
            next(iter(repo.watch("t", after=start, timeout=0)))
        message = str(info.value)
        assert "the smallest setting of any writer decides" in message
        assert "change_log_retention" in message
