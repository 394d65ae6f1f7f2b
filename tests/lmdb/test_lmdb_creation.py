"""Creating one new LMDB store from several processes at once: creation is serialised
(the creation lock), so a process never initialises, removes or shapes files another
process is creating.

The interleavings are made exact, not left to chance: a real child process pauses at a
named step of its open (it reports where, then waits for a word from the test), and
the test acts while it is there - or while it waits for the creation lock, which the
test sees in ``/proc/locks``. Real stores in tmp dirs, real processes, SIGKILL for the
killed creator.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage._stores import MARKER_NAME, read_marker
from aurora_storage.errors import ConfigurationError, StorageFullError

pytestmark = pytest.mark.skipif(
    not Path("/proc/locks").exists(), reason="reads waiting locks from Linux's /proc/locks"
)

#: A child process, one JSON answer per command line:
#: ``pause <module>:<qualname> [<path>]`` - the next call of that function first creates
#: the empty file <path> (if given), answers ``{"paused": ...}`` and waits for a line
#: ``go``; ``open <url> <codec> <key>`` - opens the store and puts ``(t, key)``;
#: ``close`` - closes it. End of input ends it.
CHILD = r"""
import importlib, json, sys
import aurora_storage

def say(**kw):
    print(json.dumps(kw), flush=True)

def pause(target, touch):
    module, qualname = target.split(":")
    owner = importlib.import_module(module)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def paused(*args, **kwargs):
        setattr(owner, name, original)  # once
        if touch:
            open(touch, "wb").close()
        say(paused=target)
        assert sys.stdin.readline().strip() == "go"
        return original(*args, **kwargs)

    setattr(owner, name, paused)

say(ready=True)
repo = None
while line := sys.stdin.readline():
    cmd = line.split()
    if cmd[0] == "pause":
        pause(cmd[1], cmd[2] if len(cmd) > 2 else None)
        say(pausing=cmd[1])
    elif cmd[0] == "open":
        try:
            repo = aurora_storage.open(cmd[1], codec=cmd[2])
            repo.put("t", cmd[3], cmd[2])
            say(ok=repo.codec.name, logs=repo.capabilities.multi_process_change_feed)
        except Exception as exc:
            say(error=type(exc).__name__, message=str(exc))
    else:
        if repo is not None:
            repo.close()
            repo = None
        say(closed=True)
"""

#: Where a child may be made to pause.
BEFORE_THE_ENGINE_OPENS = "aurora_storage_lmdb._env:Environment._open_env_once"
BEFORE_THE_STORE_RECORDS = "aurora_storage_lmdb._backend:LMDBBackend._check_plugin_meta"
BEFORE_THE_CORE_RECORD = "aurora_storage._repository:check_metadata"

#: How long a child may take to reach a step: a guard against a hung test, not a
#: measurement (a healthy child takes well under a second).
PATIENCE = 60.0


class Child:
    """A child running :data:`CHILD`, read line by line without blocking the test."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._buf = b""
        assert self.answer() == {"ready": True}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def has_answer(self) -> bool:
        """Whether a whole answer line can be read now."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            self._buf += chunk
        return b"\n" in self._buf

    def answer(self) -> dict[str, Any]:
        """The next answer line (waits for it)."""
        wait_until(self.has_answer, f"child {self.pid} to answer")
        line, self._buf = self._buf.split(b"\n", 1)
        out: dict[str, Any] = json.loads(line)
        return out

    def ask(self, line: str) -> dict[str, Any]:
        self.send(line)
        return self.answer()

    def waits_for_lock(self, lock_file: Path) -> bool:
        """Whether the child is blocked taking the ``flock`` of ``lock_file`` (a waiter
        shows in ``/proc/locks`` as ``N: -> FLOCK ADVISORY WRITE <pid> <dev>:<ino> ...``)."""
        try:
            ino = lock_file.stat().st_ino
        except FileNotFoundError:
            return False
        for line in Path("/proc/locks").read_text().splitlines():
            f = line.split()
            if (
                len(f) > 6
                and f[1:3] == ["->", "FLOCK"]
                and f[5] == str(self.pid)
                and f[6].rsplit(":", 1)[-1] == str(ino)
            ):
                return True
        return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None and not f.closed:
                f.close()


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def creation_lock(store: Path) -> Path:
    return store / "aurora-create.lock"


def test_a_creator_that_fails_removes_only_what_it_made_and_the_next_one_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A creator fails (here: the disk fills as it writes the store's first record) while
    another process is opening the same new store. Without serialised creation the other
    process made its files (the open record, the growth lock, ``lock.mdb``) after this
    open noted them as missing, and this open removed them as its own when it failed -
    while the other was about to use them. Now the other waits for the creation lock
    and creates the store afresh once the failed creator has cleaned up."""
    from aurora_storage_lmdb import _disk
    from aurora_storage_lmdb._backend import LMDBBackend

    store = tmp_path / "s"
    other = Child()
    noted = _disk.Created.note
    told = False

    def note_then_let_the_other_open(self: Any, *paths: str) -> list[str]:
        nonlocal told
        new = noted(self, *paths)
        if not told and any(p.endswith("data.mdb") for p in new):
            told = True
            # The other process opens now and pauses once its own files are made (just
            # before liblmdb opens them) - unless it waits for this open's creation lock.
            assert other.ask(f"pause {BEFORE_THE_ENGINE_OPENS}") == {
                "pausing": BEFORE_THE_ENGINE_OPENS
            }
            other.send(f"open lmdb://{store} json other")
            wait_until(
                lambda: other.has_answer() or other.waits_for_lock(creation_lock(store)),
                "the other process to pause or to wait for the creation lock",
            )
        return new

    def disk_full(self: Any) -> None:
        raise StorageFullError("the disk filled (simulated)", backend="lmdb")

    monkeypatch.setattr(_disk.Created, "note", note_then_let_the_other_open)
    monkeypatch.setattr(LMDBBackend, "_check_plugin_meta", disk_full)
    try:
        with pytest.raises(StorageFullError, match="simulated"):
            aurora_storage.open(f"lmdb://{store}", codec="json")
        monkeypatch.undo()
        assert told
        assert other.answer() == {"paused": BEFORE_THE_ENGINE_OPENS}
        assert other.ask("go") == {"ok": "json", "logs": False}
        # Every file the other process made and uses is there (removing its open record
        # would have let a third process take the store for unused and mark it cleanly
        # closed while the other still writes).
        names = {p.name for p in store.iterdir()}
        assert {"data.mdb", "lock.mdb", "aurora-open.lock", "aurora-grow.lock"} <= names
        assert other.ask("close") == {"closed": True}
        with aurora_storage.open(f"lmdb://{store}") as repo:
            assert repo.get("t", "other") == "json"
    finally:
        other.stop()


def test_an_opener_arriving_mid_creation_waits_and_gets_the_creators_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process creates a store with ``change_log=true``; right after it notes the
    store's files as missing, a real child process opens the same store (without a
    change log). The child waits for the creation lock, then opens the finished store:
    it logs too, and this open succeeds. (Before creation was serialised the child made
    the store itself, without a log, in the middle of this open, which was then refused
    - and, had it failed otherwise, could remove the child's files.)"""
    from aurora_storage_lmdb import _disk

    store = tmp_path / "s"
    child = Child()
    noted = _disk.Created.note
    waited: list[bool] = []

    def note_then_let_the_child_open(self: Any, *paths: str) -> list[str]:
        new = noted(self, *paths)
        if not waited and any(p.endswith("data.mdb") for p in new):
            child.send(f"open lmdb://{store} json child")
            wait_until(
                lambda: child.has_answer() or child.waits_for_lock(creation_lock(store)),
                "the child to open the store or to wait for the creation lock",
            )
            waited.append(not child.has_answer())
        return new

    monkeypatch.setattr(_disk.Created, "note", note_then_let_the_child_open)
    try:
        with aurora_storage.open(f"lmdb://{store}?change_log=true", codec="json") as repo:
            monkeypatch.undo()
            assert waited == [True]
            assert repo.capabilities.multi_process_change_feed
            assert child.answer() == {"ok": "json", "logs": True}
            assert repo.get("t", "child") == "json"
        assert child.ask("close") == {"closed": True}
    finally:
        child.stop()


@pytest.mark.parametrize(
    ("first", "second"),
    [(False, True), (True, False)],
    ids=["first-without-log", "first-with-log"],
)
def test_whether_a_store_logs_is_decided_once_for_every_process(
    tmp_path: Path, first: bool, second: bool
) -> None:
    """The first process creates the store with one ``change_log`` choice and pauses
    after its backend is built, before the core writes the store's metadata record; a
    second process opens it with the other choice. The store logs for every process or
    for none: a ``change_log=true`` opener that comes second is refused (the store was
    made without a log), a ``change_log=false`` one logs too. (Without the choice being
    made with the store's first record, a ``change_log=true`` opener arriving here added
    a log while the first process went on writing without one.)"""
    store = tmp_path / "s"
    url = f"lmdb://{store}"
    creator = Child()
    try:
        assert creator.ask(f"pause {BEFORE_THE_CORE_RECORD}") == {"pausing": BEFORE_THE_CORE_RECORD}
        assert creator.ask(f"open {url}?change_log={str(first).lower()} json first") == {
            "paused": BEFORE_THE_CORE_RECORD
        }
        if second and not first:
            with pytest.raises(ConfigurationError, match="created without a change log"):
                aurora_storage.open(f"{url}?change_log=true", codec="json")
            assert creator.ask("go") == {"ok": "json", "logs": False}
        else:
            with aurora_storage.open(f"{url}?change_log={str(second).lower()}") as repo:
                assert repo.capabilities.multi_process_change_feed is first
                assert creator.ask("go") == {"ok": "json", "logs": first}
                repo.put("t", "second", 2)
        assert creator.ask("close") == {"closed": True}
        # The choice is recorded for good.
        with aurora_storage.open(url) as repo:
            assert repo.capabilities.multi_process_change_feed is first
            assert repo.get("t", "first") == "json"
            if first:
                # Both processes' writes are in the log.
                feed = repo.backend.change_feed()
                # (Position 0 is before the log began: nothing was dropped, so the log
                # is read from its start.)
                keys = [key for _, key, _ in feed.read(0, 100)]
                assert sum(b"first" in k for k in keys) == sum(b"second" in k for k in keys) == 1
        if not first:
            with pytest.raises(ConfigurationError, match="created without a change log"):
                aurora_storage.open(f"{url}?change_log=true")
    finally:
        creator.stop()


@pytest.mark.parametrize(
    ("step", "empty_data_file"),
    [
        (BEFORE_THE_ENGINE_OPENS, False),
        # Killed inside liblmdb's open: it creates the data file, then writes its meta
        # pages - the file is left empty.
        (BEFORE_THE_ENGINE_OPENS, True),
        (BEFORE_THE_STORE_RECORDS, False),
    ],
    ids=["before-the-engine-opens", "empty-data-file", "before-the-store-records"],
)
def test_a_creator_killed_mid_creation_leaves_a_store_the_next_opener_finishes(
    tmp_path: Path, step: str, empty_data_file: bool
) -> None:
    """A creator is SIGKILLed while it holds the creation lock; another process is
    waiting for the lock meanwhile. The kernel drops a dead process's lock: the waiter
    goes on with the half-made files and finishes the store - with its own
    ``change_log`` choice, since the dead one died before making its choice."""
    store = tmp_path / "s"
    url = f"lmdb://{store}"
    doomed, waiter = Child(), Child()
    try:
        touch = f" {store / 'data.mdb'}" if empty_data_file else ""
        assert doomed.ask(f"pause {step}{touch}") == {"pausing": step}
        assert doomed.ask(f"open {url} json doomed") == {"paused": step}
        if empty_data_file:
            assert (store / "data.mdb").stat().st_size == 0
        waiter.send(f"open {url}?change_log=true json waiter")
        wait_until(
            lambda: waiter.has_answer() or waiter.waits_for_lock(creation_lock(store)),
            "the second process to wait for the creation lock",
        )
        assert not waiter.has_answer(), waiter.answer()
        doomed.kill()
        assert waiter.answer() == {"ok": "json", "logs": True}
        assert waiter.ask("close") == {"closed": True}
        with aurora_storage.open(url) as repo:
            assert repo.get("t", "waiter") == "json"
            assert repo.get("t", "doomed") is None
            assert repo.backend.capabilities.multi_process_change_feed
            assert repo.verify().ok
        info = read_marker(str(store / MARKER_NAME))
        assert info is not None
        assert (info["backend"], info["codec"]) == ("lmdb", "json")
    finally:
        doomed.stop()
        waiter.stop()


def test_opening_a_finished_store_takes_no_creation_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creation lock is for stores without a marker: an open of a finished store
    never takes it (the usual open pays nothing for it), whether it writes, reads only
    or may not create. A store without a marker (from before markers, or a copy of the
    data file) is opened under it, read-only too."""
    from aurora_storage_lmdb import _disk, _env

    url = f"lmdb://{tmp_path}/s"
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", 1)
    taken: list[str] = []

    class Counting(_disk.CreationLock):
        @classmethod
        def take(cls, path: str, **kwargs: Any) -> _disk.CreationLock | None:
            taken.append(path)
            return super().take(path, **kwargs)

    monkeypatch.setattr(_env, "CreationLock", Counting)
    for query in ("", "?read_only=true", "?create=false"):
        with aurora_storage.open(url + query) as repo:
            assert repo.get("t", "k") == 1
    assert taken == []
    (tmp_path / "s" / MARKER_NAME).unlink()
    with aurora_storage.open(url + "?read_only=true") as repo:
        assert repo.get("t", "k") == 1
    assert taken == [str(tmp_path / "s" / "aurora-create.lock")]


_REFUSED_MAP = """
import os, resource, sys, aurora_storage
from aurora_storage.errors import ConfigurationError
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
try:
    aurora_storage.open(f"lmdb://{sys.argv[1]}?subdir=false", map_size="1TiB")
except ConfigurationError as exc:
    print("refused" if "lower map_size" in str(exc) else exc)
"""


def test_the_creation_lock_of_a_single_file_store_lies_beside_it(tmp_path: Path) -> None:
    """With ``subdir=false`` the store is a file: its creation lock is a sibling like
    its other files (never inside the user's directory tree elsewhere), it stays once
    the store exists, and a refused creation removes it with everything else it made."""
    data = tmp_path / "events.lmdb"
    with aurora_storage.open(f"lmdb://{data}?subdir=false") as repo:
        repo.put("t", "k", 1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        f"events.lmdb{suffix}"
        for suffix in ("", "-lock", "-grow", "-open", "-create", f"-{MARKER_NAME}")
    )
    with aurora_storage.open(f"lmdb://{data}?subdir=false") as repo:
        assert repo.get("t", "k") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    # A creation refused after the lock was taken (the map cannot be had) leaves nothing.
    new = tmp_path / "new" / "events.lmdb"
    proc = subprocess.run(
        [sys.executable, "-c", _REFUSED_MAP, str(new)], capture_output=True, text=True
    )
    assert proc.stdout.strip() == "refused", proc
    assert not new.parent.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("ends", ["released", "creator-died"])
def test_a_child_forked_during_a_creation_never_keeps_the_lock(tmp_path: Path, ends: str) -> None:
    """A ``fork()`` (by another thread, say) while this process holds a creation lock:
    the child's copy of the lock's descriptor shares the lock, but the child closes its
    copy and the creator releases the lock explicitly, so a child that lives on never
    keeps other creators waiting - whether the creator releases the lock or dies
    holding it (the kernel then closes its descriptor, as simulated here)."""
    from aurora_storage_lmdb._disk import Created, CreationLock

    path = tmp_path / "aurora-create.lock"
    lock = CreationLock.take(str(path), created=Created(), directory=str(tmp_path))
    assert lock is not None
    r, w = os.pipe()
    started_r, started_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        # (The fork hooks have run by now: os.fork() returns after them.)
        os.write(started_w, b"s")
        os.close(w)
        os.read(r, 1)  # lives on until the test is done
        os._exit(0)
    os.close(r)
    os.close(started_w)
    try:
        assert os.read(started_r, 1) == b"s"
        os.close(started_r)
        if ends == "released":
            lock.release()
        else:
            fd = lock._fd
            assert fd is not None
            os.close(fd)
        probe = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if held
        finally:
            os.close(probe)
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)
