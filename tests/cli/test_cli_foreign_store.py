"""A RocksDB directory aurora-storage did not write (the TypeScript package's store at the
same ``./data/events`` path both READMEs use) is refused before anything is written to
it, through every entry point; what is legitimately ours without a marker is adopted."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rocksdict

import aurora_storage
from aurora_storage._stores import MARKER_NAME
from aurora_storage.errors import ConfigurationError, ForeignStoreError
from aurora_storage_rocksdb import RocksDBRepository, create_rocksdb_repository

from .conftest import run_cli


def build_ts_store(path: Path, records: dict[bytes, bytes]) -> None:
    """A store as the TypeScript package leaves it: raw records, no side file."""
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for key, value in records.items():
        db[key] = value
    db.close()
    os.remove(path / "rocksdict-config.json")


def fingerprint(path: Path) -> dict[str, tuple[int, str]]:
    return {
        name: ((path / name).stat().st_size, hashlib.sha256((path / name).read_bytes()).hexdigest())
        for name in sorted(os.listdir(path))
    }


TS_RECORDS = {
    b'acme:"event:123"': b'{"type":"OrderCreated","orderId":"123"}',
    b'acme:"event:124"': b'{"type":"OrderPaid"}',
}


def test_a_typescript_store_is_refused_by_every_open_and_left_untouched(tmp_path: Path) -> None:
    store = tmp_path / "data" / "events"
    store.parent.mkdir()
    build_ts_store(store, TS_RECORDS)
    before = fingerprint(store)
    opens: list[Callable[[], object]] = [
        lambda: aurora_storage.open(f"rocksdb://{store}?compression=zstd"),
        lambda: aurora_storage.open(f"rocksdb://{store}?mode=read_only"),
        lambda: aurora_storage.open(f"rocksdb://{store}?mode=secondary"),
        lambda: aurora_storage.open(f"rocksdb://{store}?codec=msgpack"),
        lambda: RocksDBRepository(str(store)),
        lambda: create_rocksdb_repository(path=str(store), compression=True),
    ]
    for opener in opens:
        with pytest.raises(ForeignStoreError) as info:
            opener()
        message = str(info.value)
        assert str(store) in message
        assert "not write" in message
        assert f"aurora-storage import-seed {store}" in message
        assert isinstance(info.value, ConfigurationError)
        assert fingerprint(store) == before  # not a file added, changed or removed


def test_the_command_line_refuses_a_typescript_store_with_status_4(tmp_path: Path) -> None:
    store = tmp_path / "events"
    build_ts_store(store, TS_RECORDS)
    before = fingerprint(store)
    url = f"rocksdb:{store}"
    for args in (
        ("info", url),
        ("tenants", url),
        ("keys", url, "acme"),
        ("count", url, "acme"),
        ("get", url, "acme", "event:123"),
        ("export", url),
        ("verify", url),
        ("put", url, "acme", "k", "v"),
        ("copy", url, "memory://"),
    ):
        done = run_cli(*args)
        err = done.stderr.decode()
        assert done.returncode == 4, (args, done.stdout, err)
        assert err.startswith("error: ForeignStoreError: "), err
        assert "import-seed" in err
        assert err.count("\n") == 1  # one line
        assert fingerprint(store) == before, args
    # import-seed still reads it as what it is.
    done = run_cli("import-seed", str(store), f"lmdb:{tmp_path}/imported")
    assert done.returncode == 0, done.stderr
    with aurora_storage.open(f"lmdb://{tmp_path}/imported") as repo:
        assert repo.get("acme", "event:123") == {"type": "OrderCreated", "orderId": "123"}


def test_an_empty_engine_store_and_one_killed_before_its_marker_are_adopted(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    build_ts_store(empty, {})  # what a creator killed before its metadata record leaves
    with aurora_storage.open(f"rocksdb://{empty}") as repo:
        repo.put("t", 1, 1)
    assert (empty / MARKER_NAME).exists()
    # An aurora-storage run SIGKILLed between RocksDB's files and the marker: the
    # metadata record is there (it is flushed before the marker is written).
    ours = tmp_path / "ours"
    script = textwrap.dedent(
        f"""
        import os, signal
        import aurora_storage, aurora_storage._metadata as m
        m.write_marker = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        aurora_storage.open("rocksdb://{ours}")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (ours / "CURRENT").exists()
    assert not (ours / MARKER_NAME).exists()
    with aurora_storage.open(f"rocksdb://{ours}?mode=read_only") as ro:
        assert list(ro.tenants()) == []
    with aurora_storage.open(f"rocksdb://{ours}") as repo:
        repo.put("t", 1, 1)
    assert (ours / MARKER_NAME).exists()


def test_a_typescript_store_being_written_is_refused_by_every_read_only_open(
    tmp_path: Path,
) -> None:
    # Breaker finding: beside a live TypeScript-layout writer that flushes often, the
    # look through a directory of links raced the flushes (files deleted between the
    # listing and the open), "unknown" let the open through and `count` printed 0.
    store = tmp_path / "live"
    writer = textwrap.dedent(
        f"""
        import sys, rocksdict
        opts = rocksdict.Options(raw_mode=True)
        opts.set_write_buffer_size(65536)
        db = rocksdict.Rdict({str(store)!r}, options=opts)
        db[b'acme:"e0"'] = b'{{}}'
        db.flush()
        print("W", flush=True)
        i = 0
        while True:  # until killed
            for j in range(50):
                db[b'acme:"e%d"' % (i * 50 + j)] = b'{{"x":"' + b"y" * 200 + b'"}}'
            i += 1
            if i % 5 == 0:
                db.flush()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"W\n"
        for attempt in range(40):
            mode = ("read_only", "secondary")[attempt % 2]
            with pytest.raises(ForeignStoreError):
                aurora_storage.open(f"rocksdb://{store}?mode={mode}").close()
            assert not (store / MARKER_NAME).exists()
        assert proc.poll() is None  # the writer was live throughout
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def small_mount(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs mounted with the options ``request.param`` names."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", request.param, "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"a tmpfs mounted with {request.param} needs mount (root): {done.stderr}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


_OPEN_IN_CHILD = textwrap.dedent(
    """
    import sys, aurora_storage
    try:
        aurora_storage.open(sys.argv[1]).close()
    except Exception as exc:
        print(type(exc).__name__, exc)
    else:
        print("OPENED")
    """
)


def _open_with_tmpdir(url: str, tmpdir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_IN_CHILD, url],
        capture_output=True,
        text=True,
        env=dict(os.environ, TMPDIR=str(tmpdir)),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("small_mount", ["size=1m,nr_inodes=4"], indirect=True)
def test_a_temporary_directory_without_room_for_links_still_refuses(
    tmp_path: Path, small_mount: Path
) -> None:
    # Breaker finding: TMPDIR with inodes for the probe's directory but not its links:
    # the probe failed, the TypeScript store was opened read-write and written into.
    store = tmp_path / "events"
    build_ts_store(store, TS_RECORDS)
    before = fingerprint(store)
    for mode in ("read_write", "read_only", "secondary"):
        out = _open_with_tmpdir(f"rocksdb://{store}?mode={mode}", small_mount)
        assert out.startswith("ForeignStoreError"), (mode, out)
        assert fingerprint(store) == before, mode


@pytest.mark.parametrize("small_mount", ["size=4m,nosymfollow"], indirect=True)
def test_a_store_no_probe_can_look_into_is_not_written(small_mount: Path) -> None:
    # The store and TMPDIR both on a filesystem whose symbolic links are not followed:
    # no directory of links can be used. A read-write open is refused (it would write
    # before anything could tell); read-only and secondary opens check after opening.
    store = small_mount / "events"
    build_ts_store(store, TS_RECORDS)
    before = fingerprint(store)
    out = _open_with_tmpdir(f"rocksdb://{store}", small_mount)
    assert out.startswith("ConfigurationError"), out
    assert "TMPDIR" in out
    assert "nothing was written" in out
    assert fingerprint(store) == before
    for mode in ("read_only", "secondary"):
        out = _open_with_tmpdir(f"rocksdb://{store}?mode={mode}", small_mount)
        assert out.startswith("ForeignStoreError"), (mode, out)
        assert fingerprint(store) == before, mode
    # An aurora-storage store there (its marker removed) is still opened.
    ours = small_mount / "ours"
    with aurora_storage.open(f"rocksdb://{ours}") as repo:
        repo.put("t", 1, 1)
    os.remove(ours / MARKER_NAME)
    assert _open_with_tmpdir(f"rocksdb://{ours}?mode=read_only", small_mount) == "OPENED"


@pytest.mark.parametrize("small_mount", ["size=4m,nosymfollow"], indirect=True)
def test_a_column_family_store_no_probe_can_look_into_is_refused(small_mount: Path) -> None:
    # Records only in a column family "events" looked like an empty store (breaker
    # finding). Without a directory of links, read-only and secondary opens check the
    # opened engine, and that check reads the column families too; restore, which would
    # delete the store, refuses what it cannot look into.
    store = small_mount / "events"
    db = rocksdict.Rdict(str(store), options=rocksdict.Options(raw_mode=True))
    family = db.create_column_family("events", rocksdict.Options(raw_mode=True))
    family[b'acme:"event:123"'] = b"{}"
    del family
    db.close()
    os.remove(store / "rocksdict-config.json")
    before = fingerprint(store)
    for mode in ("read_only", "secondary"):
        out = _open_with_tmpdir(f"rocksdb://{store}?mode={mode}", small_mount)
        assert out.startswith("ForeignStoreError"), (mode, out)
        assert "'events'" in out
        assert fingerprint(store) == before, mode
    ours = small_mount / "ours"
    with aurora_storage.open(f"rocksdb://{ours}") as repo:
        repo.put("t", 1, 1)
    backup = small_mount / "backup"
    assert run_cli("backup", "-q", f"rocksdb:{ours}", str(backup)).returncode == 0
    done = run_cli(
        "restore", str(backup), f"rocksdb:{store}", "--yes", env={"TMPDIR": str(small_mount)}
    )
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert err.startswith("error: ConfigurationError: "), err
    assert "nothing was changed" in err
    assert fingerprint(store) == before
    assert not Path(f"{store}.replaced").exists()
