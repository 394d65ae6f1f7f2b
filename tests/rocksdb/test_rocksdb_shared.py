"""One live handle per RocksDB store per process, whatever the path's spelling; close()
under concurrency; the store marker (real RocksDB directories, real threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage._stores import MARKER_NAME, open_stores
from aurora_storage.errors import ConfigurationError, RepositoryClosedError, StorageError
from aurora_storage_rocksdb import RocksDBBackend, RocksDBRepository

CHILD = str(Path(__file__).with_name("child_rocksdb.py"))


def _spellings(tmp_path: Path) -> list[str]:
    """Other names of tmp_path/events: a symlink, `..`, trailing slashes, `.`."""
    (tmp_path / "link").symlink_to(tmp_path / "events")
    (tmp_path / "other").mkdir()
    return [
        f"rocksdb://{tmp_path}/link",
        f"rocksdb://{tmp_path}/other/../events",
        f"rocksdb://{tmp_path}/events/",
        f"rocksdb://{tmp_path}/events//.",
        f"rocksdb://{tmp_path}/link/",
    ]


def test_symlinked_second_open_shares_the_handle_and_loses_nothing(tmp_path: Path) -> None:
    # Finding 3: both opens used to succeed with two engines, and the store was then
    # unreadable (a missing SST).
    a = aurora_storage.open(f"rocksdb://{tmp_path}/events")
    (tmp_path / "link").symlink_to(tmp_path / "events")
    b = aurora_storage.open(f"rocksdb://{tmp_path}/link")
    assert b.backend is a.backend
    for start in range(0, 4000, 500):
        a.put_many("t", [(i, {"by": "a", "i": i}) for i in range(start, start + 500)])
        b.put_many("t", [(i, {"by": "b", "i": i}) for i in range(10_000 + start, 10_500 + start)])
    backend = a.backend
    assert isinstance(backend, RocksDBBackend)
    backend.flush(memtables=True)
    a.close()
    b.put("t", "last", 1)
    b.close()
    with aurora_storage.open(f"rocksdb://{tmp_path}/events") as again:
        assert again.count("t") == 8001
        assert again.get("t", 10_123) == {"by": "b", "i": 10_123}


def test_every_spelling_shares_one_handle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = aurora_storage.open(f"rocksdb://{tmp_path}/events")
    others = [aurora_storage.open(u) for u in _spellings(tmp_path)]
    monkeypatch.chdir(tmp_path)
    others.append(aurora_storage.open("rocksdb:events"))
    others.append(aurora_storage.open("rocksdb://./link"))
    others.append(RocksDBRepository(path="events"))  # direct construction: same rule
    others.append(RocksDBRepository(path=tmp_path / "link"))
    assert all(o.backend is first.backend for o in others)
    assert open_stores.users(str(tmp_path / "events")) == 1 + len(others)
    for i, o in enumerate(others):
        o.put("t", i, i)
    for o in others:
        o.close()
        with pytest.raises(RepositoryClosedError):
            o.get("t", 0)
    # The first user still has a live engine with everything written.
    assert first.list("t") == list(range(len(others)))
    first.close()
    assert open_stores.users(str(tmp_path / "events")) == 0


def test_a_bind_mount_is_the_same_store(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "mnt").mkdir()
    done = subprocess.run(
        ["mount", "--bind", str(tmp_path / "events"), str(tmp_path / "mnt")],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"bind mounts need root here: {done.stderr.strip()}")
    try:
        with (
            aurora_storage.open(f"rocksdb://{tmp_path}/events") as a,
            aurora_storage.open(f"rocksdb://{tmp_path}/mnt") as b,
        ):
            assert b.backend is a.backend
    finally:
        subprocess.run(["umount", str(tmp_path / "mnt")], check=True)


def test_other_options_on_an_open_store_are_refused_naming_them(tmp_path: Path) -> None:
    with aurora_storage.open(f"rocksdb://{tmp_path}/events?compression=zstd") as a:
        a.put("t", 1, 1)
        with pytest.raises(ConfigurationError) as info:
            aurora_storage.open(f"rocksdb://{tmp_path}/events/?compression=lz4&sync=true")
        msg = str(info.value)
        assert "compression='lz4' (open: 'zstd')" in msg
        assert "sync=True (open: False)" in msg
        # Options that only matter when opening may differ.
        with aurora_storage.open(
            f"rocksdb://{tmp_path}/events?compression=zstd&create_if_missing=false"
        ) as b:
            assert b.get("t", 1) == 1
        assert a.get("t", 1) == 1


def test_the_engine_closes_with_its_last_user(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/events"
    a = aurora_storage.open(url)
    b = aurora_storage.open(url)
    a.put("t", 1, 1)
    a.close()

    def other_process() -> str:
        out = subprocess.run(
            [sys.executable, CHILD, "try-open", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    assert other_process().startswith("StoreLockedError")  # b still holds it
    b.close()
    assert other_process().strip() == "opened"


def test_read_only_handles_are_separate_readers(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/events"
    with aurora_storage.open(url) as w:
        w.put("t", 1, 1)
        with aurora_storage.open(url + "?mode=read_only") as r:
            assert r.backend is not w.backend
            assert r.get("t", 1) == 1
        w.put("t", 2, 2)


# ---------------------------------------------------------------- close() under threads


def _reader(
    repo: aurora_storage.Repository[Any, Any], kind: int, start: threading.Barrier, out: list[str]
) -> None:
    start.wait()
    try:
        while True:
            if kind == 0:
                repo.get_many("t", range(0, 3000, 3))
            elif kind == 1:
                for _ in repo.items("t", limit=1500):
                    pass
            elif kind == 2:
                for i in range(300):
                    repo.get("t", i)
                    repo.has("t", i)
            elif kind == 3:
                repo.count("t")
            else:
                repo.put_many("t", [(i, "y") for i in range(100)])
    except RepositoryClosedError:
        out.append("closed")
    except BaseException as exc:  # anything else is the bug
        out.append(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_close_while_threads_are_inside_the_engine(tmp_path: Path) -> None:
    # Finding 4: close() raised "Already borrowed" in 8-10 of 10 tries.
    for trial in range(25):
        repo = aurora_storage.open(f"rocksdb://{tmp_path}/s{trial}")
        repo.put_many("t", [(i, "x" * 100) for i in range(3000)])
        start = threading.Barrier(6)
        results: list[str] = []
        threads = [
            threading.Thread(target=_reader, args=(repo, k, start, results)) for k in range(5)
        ]
        for t in threads:
            t.start()
        start.wait()
        for _ in range(trial % 5):
            repo.get("t", 1)  # vary the moment of the close
        repo.close()
        for t in threads:
            t.join(timeout=60)
        assert results == ["closed"] * 5, results
        with pytest.raises(RepositoryClosedError):
            repo.get_many("t", [1])
        # Every write a thread saw acknowledged is there, and the store opens.
        with aurora_storage.open(f"rocksdb://{tmp_path}/s{trial}") as again:
            assert again.count("t") == 3000


def test_close_of_a_shared_handle_under_threads_leaves_the_other_user_working(
    tmp_path: Path,
) -> None:
    url = f"rocksdb://{tmp_path}/s"
    a = aurora_storage.open(url)
    b = aurora_storage.open(url)
    a.put_many("t", [(i, "x") for i in range(1000)])
    start = threading.Barrier(3)
    results: list[str] = []
    threads = [threading.Thread(target=_reader, args=(a, k, start, results)) for k in (0, 1)]
    for t in threads:
        t.start()
    start.wait()
    a.close()
    for t in threads:
        t.join(timeout=60)
    assert results == ["closed", "closed"]
    assert b.count("t") == 1000
    b.close()


# ---------------------------------------------------------------- marker


def test_a_new_store_gets_a_marker_and_an_old_one_gets_it_on_open(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/s"
    with aurora_storage.open(url) as repo:
        repo.put("t", 1, 1)
    marker = tmp_path / "s" / MARKER_NAME
    assert marker.exists()
    marker.unlink()  # a store created before markers existed
    with aurora_storage.open(url + "?mode=read_only") as ro:
        assert ro.get("t", 1) == 1
    assert not marker.exists()  # a reader writes nothing
    with aurora_storage.open(url) as repo:
        assert repo.get("t", 1) == 1
    assert marker.exists()


def test_an_initialised_store_without_metadata_is_reported_not_reinitialised(
    tmp_path: Path,
) -> None:
    url = f"rocksdb://{tmp_path}/s"
    with aurora_storage.open(url) as repo:
        repo.put("t", 1, 1)
    # The engine's files are replaced by an empty store (what a truncated MANIFEST
    # made of it); the marker remains.
    keep = (tmp_path / "s" / MARKER_NAME).read_bytes()
    import shutil

    shutil.rmtree(tmp_path / "s")
    aurora_storage.open(url).close()  # a fresh, empty engine (and marker)
    (tmp_path / "s" / MARKER_NAME).write_bytes(keep)
    import rocksdict

    from aurora_storage._repository import META_KEY

    db = rocksdict.Rdict(str(tmp_path / "s"), rocksdict.Options(raw_mode=True))
    db.delete(META_KEY)
    db.close()
    for mode in ("", "?mode=read_only"):
        with pytest.raises(StorageError, match="was initialised") as info:
            aurora_storage.open(url + mode)
        assert type(info.value).__name__ == "CorruptionError"
    db = rocksdict.Rdict(str(tmp_path / "s"), rocksdict.Options(raw_mode=True))
    assert db.get(META_KEY) is None  # nothing was re-initialised
    db.close()


def test_missing_current_of_an_initialised_store_names_the_file(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/s"
    with aurora_storage.open(url) as repo:
        repo.put("t", 1, 1)
    os.unlink(tmp_path / "s" / "CURRENT")
    before = sorted(os.listdir(tmp_path / "s"))
    with pytest.raises(StorageError, match="CURRENT") as info:
        aurora_storage.open(url)
    assert type(info.value).__name__ == "CorruptionError"
    assert sorted(os.listdir(tmp_path / "s")) == before  # nothing created or deleted


def test_a_damaged_marker_of_a_whole_store_is_rewritten(tmp_path: Path) -> None:
    url = f"rocksdb://{tmp_path}/s"
    with aurora_storage.open(url) as repo:
        repo.put("t", 1, 1)
    marker = tmp_path / "s" / MARKER_NAME
    marker.write_bytes(b"\x00garbage")
    with aurora_storage.open(url) as repo:  # the metadata record vouches for the store
        assert repo.get("t", 1) == 1
    assert marker.read_bytes().startswith(b"{")
