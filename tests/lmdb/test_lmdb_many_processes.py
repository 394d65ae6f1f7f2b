"""One LMDB store used by many processes: what an operator or a killed process can do to
the files the processes share (a removed lock file, reader slots of killed processes),
with real processes killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import StoreLockedError

CHILD = str(Path(__file__).with_name("lmdb_child.py"))


def child(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _ready(p: subprocess.Popen[str]) -> subprocess.Popen[str]:
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise AssertionError(f"child not ready: {line!r} {p.communicate()[1]}")
    return p


def _release(p: subprocess.Popen[str]) -> None:
    out, err = p.communicate("\n", timeout=30)
    assert p.returncode == 0, err
    assert out.strip() == "closed"


def _kill(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL


def _store(tmp_path: Path, subdir: bool) -> tuple[str, str, str]:
    """A store with one record: (path, url, its lock file)."""
    path = str(tmp_path / ("s" if subdir else "s.mdb"))
    url = f"lmdb://{path}" + ("" if subdir else "?subdir=false")
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 1)
    lock = os.path.join(path, "lock.mdb") if subdir else path + "-lock"
    assert os.path.exists(lock)
    return path, url, lock


# ------------------------------------------------- lock file removed while the store is used


@pytest.mark.timeout(60)
@pytest.mark.parametrize("subdir", [True, False], ids=["subdir", "file"])
@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_an_open_refuses_a_store_whose_lock_file_was_removed_while_in_use(
    tmp_path: Path, subdir: bool, read_only: bool
) -> None:
    # Finding: an operator deleted lock.mdb while a writer ran; a second writer then
    # opened without error, made a new lock.mdb, and the two wrote at once under two
    # different write locks (MDB_CORRUPTED, the store destroyed).
    path, url, lock = _store(tmp_path, subdir)
    holder = _ready(child("hold-url", path, url))
    try:
        os.remove(lock)
        with pytest.raises(StoreLockedError, match="removed") as info:
            aurora_storage.open(url, read_only=read_only)
        assert lock in str(info.value)
        assert "Stop every process" in str(info.value)
        assert not os.path.exists(lock)  # nothing created
    finally:
        _release(holder)
    # Once every process has closed it, the store opens (LMDB makes a new lock file).
    with aurora_storage.open(url) as repo:
        assert repo.get("t", "k") == 1
        assert repo.verify().ok


@pytest.mark.timeout(60)
def test_an_open_refuses_a_lock_file_made_anew_while_others_hold_the_removed_one(
    tmp_path: Path,
) -> None:
    path, url, lock = _store(tmp_path, True)
    holder = _ready(child("hold-url", path, url))
    try:
        os.remove(lock)
        # Something made a fresh lock file meanwhile (a tool, an older library version).
        with open(lock, "wb"):
            pass
        with pytest.raises(StoreLockedError, match="removed"):
            aurora_storage.open(url)
        assert os.path.getsize(lock) == 0  # untouched
    finally:
        _release(holder)


@pytest.mark.timeout(60)
def test_processes_opening_one_after_another_share_the_lock_file(tmp_path: Path) -> None:
    # The check never refuses the ordinary case: others hold the store's lock file.
    path, url, _ = _store(tmp_path, True)
    holders = [_ready(child("hold-url", path, url)) for _ in range(2)]
    try:
        with aurora_storage.open(url) as repo:
            repo.put("t", "k", 2)
        with aurora_storage.open(url, read_only=True) as repo:
            assert repo.get("t", "k") == 2
    finally:
        for h in holders:
            _release(h)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("subdir", [True, False], ids=["subdir", "file"])
@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_an_open_refuses_a_store_whose_lock_file_and_open_record_were_removed_in_use(
    tmp_path: Path, subdir: bool, read_only: bool
) -> None:
    # Finding: with writer A running, an operator deleted lock.mdb AND aurora-open.lock;
    # writer B found no open record, took itself for the store's first user, made a new
    # lock.mdb and wrote beside A under another write lock (verify: "freeDB: record
    # txnid 67 outside [1, 63]"). Every user holds a shared flock on the data file,
    # which cannot be removed without removing the store.
    path, url, lock = _store(tmp_path, subdir)
    record = os.path.join(path, "aurora-open.lock") if subdir else path + "-open"
    holder = _ready(child("hold-url", path, url))
    try:
        os.remove(lock)
        os.remove(record)
        with pytest.raises(StoreLockedError, match="removed") as info:
            aurora_storage.open(url, read_only=read_only)
        assert "Stop every process" in str(info.value)
        assert not os.path.exists(lock)  # nothing created
        assert not os.path.exists(record)
    finally:
        _release(holder)
    with aurora_storage.open(url) as repo:
        assert repo.get("t", "k") == 1
        assert repo.verify().ok


@pytest.mark.timeout(60)
def test_a_process_that_created_the_store_holds_its_data_file(tmp_path: Path) -> None:
    # The creator's data file is made by liblmdb after the open record was taken: it
    # is held from the engine's open on, like every other user's.
    path = str(tmp_path / "s")
    url = f"lmdb://{path}"
    holder = _ready(child("hold-url", path, url))
    try:
        os.remove(os.path.join(path, "lock.mdb"))
        os.remove(os.path.join(path, "aurora-open.lock"))
        with pytest.raises(StoreLockedError, match="removed"):
            aurora_storage.open(url)
        assert not os.path.exists(os.path.join(path, "lock.mdb"))
    finally:
        _release(holder)


@pytest.mark.timeout(60)
def test_a_killed_user_leaves_no_hold_on_the_data_file(tmp_path: Path) -> None:
    # The data file's flock goes with the process: a SIGKILLed user never keeps the
    # next one out, even with the lock files removed after it died.
    path, url, lock = _store(tmp_path, True)
    _kill([_ready(child("hold-url", path, url))])
    os.remove(lock)
    os.remove(os.path.join(path, "aurora-open.lock"))
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 2)
    with aurora_storage.open(url, read_only=True) as repo:
        assert repo.get("t", "k") == 2


def _retire(lock: str, tmp_path: Path) -> None:
    """Remove the lock file while nothing runs, keeping its inode alive (elsewhere) so
    the next lock file is another file, as after time passed."""
    os.rename(lock, tmp_path / f"retired-{len(os.listdir(tmp_path))}")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["cold-copy", "lock-removed-idle", "writer-killed"])
def test_a_reader_opening_first_leaves_no_stale_lock_record_for_a_writer(
    tmp_path: Path, how: str
) -> None:
    # Finding: the record of the lock file in use, written by a first writer, was left
    # behind by a read-only last closer or a SIGKILL; a reader opening first later
    # never rewrote it, and writers were refused ("made anew ... removed while they
    # use the store") for as long as any reader ran.
    path, url, lock = _store(tmp_path, True)
    if how == "writer-killed":
        _kill([_ready(child("hold-url", path, url))])
        _retire(lock, tmp_path)
    else:
        writer = _ready(child("hold-url", path, url))
        reader = _ready(child("hold-url", path, url + "?read_only=true"))
        _release(writer)
        _release(reader)  # the last closer is read-only: the record stays "in use"
        if how == "cold-copy":
            copy = str(tmp_path / "copy")
            subprocess.run(["cp", "-a", path, copy], check=True)
            path, url, lock = copy, f"lmdb://{copy}", os.path.join(copy, "lock.mdb")
        else:
            _retire(lock, tmp_path)
    reader = _ready(child("hold-url", path, url + "?read_only=true"))
    try:
        with aurora_storage.open(url) as repo:
            repo.put("t", "k", 3)
    finally:
        _release(reader)
    with aurora_storage.open(url, read_only=True) as repo:
        assert repo.get("t", "k") == 3
        assert repo.verify().ok


# ------------------------------------------- a killed reader pins a snapshot of the writer


def _churn(repo: Any, rounds: int) -> None:
    """Overwrite the same 20 keys of 8 KB: the live data stays ~160 KB, but every
    round frees the pages of the last, reusable only once no reader still sees them."""
    for i in range(rounds):
        repo.put_many("hot", {k: {"i": i, "v": "x" * 8000} for k in range(20)})


@pytest.mark.timeout(120)
def test_a_killed_readers_snapshot_does_not_fill_a_long_lived_writers_map(
    tmp_path: Path,
) -> None:
    # Finding: an `aurora-storage verify` killed by a cron timeout left its reader slot
    # behind; the long-lived writer's file grew to max_map_size and writes were refused
    # ("raise max_map_size") until some other process opened the store.
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}?map_size=1MiB&max_map_size=4MiB&sync=false") as repo:
        _churn(repo, 2)
        (reader,) = [_ready(child("hold-reader", path))]
        _kill([reader])
        assert str(reader.pid) in repo.lmdb_backend._env.readers()  # type: ignore[attr-defined]  # the test looks at the engine's table
        _churn(repo, 200)  # ~32 MB written through a 4 MiB map
        assert repo.stats()["map_size"] <= 4 << 20
        assert str(reader.pid) not in repo.lmdb_backend._env.readers()  # type: ignore[attr-defined]  # as above
        assert (repo.get("hot", 3) or {}).get("i") == 199


@pytest.mark.timeout(120)
def test_a_map_full_with_a_live_reader_pinning_pages_says_so(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"lmdb://{path}?map_size=1MiB&max_map_size=4MiB&sync=false") as repo:
        _churn(repo, 2)
        reader = _ready(child("hold-reader", path))
        try:
            with pytest.raises(aurora_storage.errors.StorageFullError) as info:
                _churn(repo, 200)
            message = str(info.value)
            assert "max_map_size" in message
            assert "read transaction" in message
            assert f"pid {reader.pid}" in message
        finally:
            _kill([reader])
        # The reader is gone (killed): the next write reclaims its slot and goes on.
        _churn(repo, 5)
        assert (repo.get("hot", 0) or {}).get("i") == 4


# ------------------------------------------------ a reader table full of killed processes


@pytest.mark.timeout(120)
def test_a_live_writer_clears_the_slots_of_killed_readers_so_new_processes_open(
    tmp_path: Path,
) -> None:
    # Finding: max_readers=4, a live writer (one cached slot) and three readers killed
    # together (a worker pool killed by its supervisor): every new process (the restarted
    # pool, `aurora-storage count`) got "all of its reader slots are taken", for as long
    # as the writer lived; its reads reuse its own slot and never find the table full.
    # A new process cannot clear the slots itself: py-lmdb's open needs a free slot.
    path = str(tmp_path / "s")
    url = f"lmdb://{path}?max_readers=4"
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 0)
        pool = [_ready(child("hold-url", path, url)) for _ in range(3)]
        pids = [str(p.pid) for p in pool]
        _kill(pool)
        table = repo.lmdb_backend._env.readers  # type: ignore[attr-defined]  # the engine's table
        assert all(pid in table() for pid in pids)
        i = 0
        # The writer goes on writing; its writes clear the slots of dead processes
        # (at most once a second): a generous bound on the writes until they are gone.
        while any(pid in table() for pid in pids) and i < 3000:
            i += 1
            repo.put("t", "k", i)
            time.sleep(0.01)
        assert not any(pid in table() for pid in pids)
        restarted = _ready(child("hold-url", path, url))
        _release(restarted)
        assert repo.get("t", "k") == i


# --------------------------------- reads racing map growth while reader slots run short


@pytest.mark.timeout(300)
def test_reads_racing_growth_under_reader_slot_pressure_see_no_engine_error(
    tmp_path: Path,
) -> None:
    # Finding: a read that raced a growth of the map by another thread was retried
    # only while its attempt counter (shared with the retries of a full reader table)
    # was below 3, so with 16 reading threads and 4 slots py-lmdb's "Attempt to operate
    # on closed/deleted/dropped object." leaked as a StorageError with the engine text.
    with aurora_storage.open(f"lmdb://{tmp_path}/s?max_readers=4&map_size=64KiB") as repo:
        repo.put_many("t", dict.fromkeys(range(200), "v" * 20000))
        done = threading.Event()
        errors: list[BaseException] = []

        def read(n: int) -> None:
            while not done.is_set():
                try:
                    if n % 2:
                        repo.get_many("t", range(200))
                    else:
                        sum(1 for _ in repo.items("t"))
                except aurora_storage.errors.StorageFullError as exc:
                    # More threads reading at once than slots: the documented answer.
                    if "reader slots are in use" not in str(exc):
                        errors.append(exc)
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=read, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        try:
            for i in range(60):  # the map grows from 64 KiB to ~10 MiB meanwhile
                repo.put_many("w", {(i, j): "x" * 3000 for j in range(50)})
        finally:
            done.set()
            for t in threads:
                t.join()
        assert errors == []
