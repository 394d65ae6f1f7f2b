"""A ``fork()`` while this process holds one of the store's short exclusive locks (the
coordination gate an open or close takes, the growth lock) must not leave the lock held
by the child's copy of the descriptor: every later open of the store, in every process
and in this one, waited for as long as the child lived (found by forking while another
thread opened and closed the store)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

import aurora_storage

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@contextmanager
def _child_forked_while(hold: Callable[[], AbstractContextManager[Any]]) -> Iterator[None]:
    """Another thread enters ``hold()`` and stays inside while this thread forks a child
    that lives on (idle, like a pre-fork worker); the thread then leaves the block. The
    body runs with the child alive."""
    inside, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with hold():
            inside.set()
            leave.wait()

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(30)
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads: forking there is
        # exactly the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(w)
        os.read(r, 1)  # lives on until the test is done
        os._exit(0)
    os.close(r)
    try:
        leave.set()
        t.join(30)
        assert not t.is_alive()
        yield
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)


def _free(path: Path) -> bool:
    """Whether nobody holds ``path``'s flock (probed without waiting)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _opens_in_another_process(url: str) -> None:
    code = f"import aurora_storage; r = aurora_storage.open({url!r}); r.put('t', 'k', 1); r.close()"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_child_forked_inside_the_open_gate_never_keeps_it(tmp_path: Path) -> None:
    from aurora_storage_lmdb._disk import OpenRecord

    url = f"lmdb://{tmp_path}/s"
    aurora_storage.open(url).close()
    store = tmp_path / "s"
    gate = store / "aurora-grow.lock"
    record = OpenRecord(str(store / "aurora-open.lock"), str(gate), str(store / "data.mdb"))
    with _child_forked_while(record._gate):
        assert _free(gate), "the child's copy of the descriptor kept the gate locked"
        _opens_in_another_process(url)
        with aurora_storage.open(url) as repo:  # and this process opens it too
            assert repo.get("t", "k") == 1


def test_a_child_forked_while_the_store_is_open_does_not_hold_its_record(tmp_path: Path) -> None:
    """The open record's shared lock: after this process closes the store, a child that
    inherited the descriptor must not make the store look in use."""
    url = f"lmdb://{tmp_path}/s"
    store = tmp_path / "s"
    repo = aurora_storage.open(url)
    repo.put("t", "k", 1)
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        repo.close()
        assert _free(store / "aurora-open.lock"), "a forked child's copy kept the record"
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)


def test_a_child_forked_during_growth_never_keeps_the_growth_lock(tmp_path: Path) -> None:
    from aurora_storage_lmdb._disk import exclusive

    url = f"lmdb://{tmp_path}/s"
    aurora_storage.open(url).close()
    lock = tmp_path / "s" / "aurora-grow.lock"

    @contextmanager
    def growing() -> Iterator[None]:
        # What Environment._grow holds while it grows the map.
        fd = os.open(lock, os.O_RDWR)
        try:
            with exclusive(fd):
                yield
        finally:
            os.close(fd)

    with _child_forked_while(growing):
        assert _free(lock)
        _opens_in_another_process(url)


@pytest.mark.parametrize("subdir", [True, False], ids=["subdir", "single-file"])
def test_a_read_only_open_of_an_empty_data_file_is_refused_cleanly(
    tmp_path: Path, subdir: bool
) -> None:
    """An empty data file (a creator killed inside liblmdb's open leaves one) opened
    read-only: a typed ConfigurationError saying so, no file left behind (it raised a
    bare StorageError "Bad file descriptor" and left the lock file), and a writable
    open then finishes the store."""
    from aurora_storage.errors import ConfigurationError

    if subdir:
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "data.mdb").touch()
        url = f"lmdb://{tmp_path}/s"
    else:
        (tmp_path / "s").touch()
        url = f"lmdb://{tmp_path}/s?subdir=false"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    sep = "&" if "?" in url else "?"
    with pytest.raises(ConfigurationError, match="empty"):
        aurora_storage.open(f"{url}{sep}read_only=true")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 1)
    with aurora_storage.open(f"{url}{sep}read_only=true") as ro:
        assert ro.get("t", "k") == 1
