"""import-seed from a TypeScript store in the states a migration meets it in: its writer
killed (records only in the write-ahead log, the log's tail torn or the log damaged in
the middle), its application still running (the RocksDB ``LOCK`` held), its table files
damaged. Real stores, real processes killed with SIGKILL.

Before: a log damaged in the middle imported only the records before the damage (exit
0, nothing said), a torn tail was silent too, a live source imported with exit 0 and no
word (everything the application wrote afterwards was missing at cut-over), and a
damaged table file was named by a temporary directory's path with no word of the
records already written to the target."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rocksdict

import aurora_storage
from aurora_storage import errors
from aurora_storage.migrate import import_seed

from .conftest import run_cli

N = 3000

#: The TypeScript application: writes N records (tenantId:JSON(key), JSON values) in
#: batches, all of them only in the write-ahead log, and is SIGKILLed.
_KILLED_WRITER = f"""
import json, os, signal, sys
import rocksdict
db = rocksdict.Rdict(sys.argv[1], options=rocksdict.Options(raw_mode=True))
for start in range(0, {N}, 100):
    wb = rocksdict.WriteBatch(raw_mode=True)
    for i in range(start, start + 100):
        value = json.dumps({{"n": i, "pad": "p" * 40}})
        wb.put(f'live:{{json.dumps({{"n": i}})}}'.encode(), value.encode())
    db.write(wb)
print("acked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

#: The application still running: holds the store open (and its LOCK) until killed.
_RUNNING_APP = """
import sys, time
import rocksdict
db = rocksdict.Rdict(sys.argv[1], options=rocksdict.Options(raw_mode=True))
db[b'acme:"k"'] = b'1'
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TypeScript store whose writer was SIGKILLed: every record only in its log."""
    path = tmp_path_factory.mktemp("seedwal") / "ts"
    out = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "acked", out.stderr
    assert out.returncode == -signal.SIGKILL
    # The TypeScript package's binding writes no rocksdict side file.
    os.remove(path / "rocksdict-config.json")
    assert not list(path.glob("*.sst"))
    return path


def _copy(killed: Path, dest: Path) -> tuple[Path, str]:
    shutil.copytree(killed, dest)
    (wal,) = [str(p) for p in dest.glob("*.log") if p.stat().st_size > 0]
    return dest, wal


def test_an_intact_log_after_a_kill_imports_every_record(killed: Path, tmp_path: Path) -> None:
    src, _ = _copy(killed, tmp_path / "ts")
    done = run_cli("import-seed", str(src), f"rocksdb:{tmp_path}/out", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["imported"] == N
    assert report["recovery"] is None
    assert b"warning:" not in done.stderr


def test_a_log_damaged_in_the_middle_is_refused_and_nothing_written(
    killed: Path, tmp_path: Path
) -> None:
    src, wal = _copy(killed, tmp_path / "ts")
    size = os.path.getsize(wal)
    with open(wal, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef" * 4)
    target = tmp_path / "out"
    done = run_cli("import-seed", str(src), f"rocksdb:{target}")
    assert done.returncode == 5, (done.stdout, done.stderr)
    err = done.stderr.decode()
    assert err.startswith("error: CorruptionError:"), err
    assert wal in err, err  # the user's file, not a temporary view's
    assert "aurora-seed-view" not in err
    assert "nothing was written" in err.lower(), err
    assert "backup" in err, err  # what to do
    assert not target.exists()
    with pytest.raises(errors.CorruptionError) as info:
        import_seed(src, f"lmdb://{target}")
    assert info.value.path == wal
    assert not target.exists()


def test_a_log_cut_inside_a_record_is_refused(killed: Path, tmp_path: Path) -> None:
    src, wal = _copy(killed, tmp_path / "ts")
    os.truncate(wal, os.path.getsize(wal) // 3 + 5)
    done = run_cli("import-seed", str(src), f"rocksdb:{tmp_path}/out")
    assert done.returncode == 5, done.stderr
    assert wal in done.stderr.decode()
    assert not (tmp_path / "out").exists()


def test_a_torn_tail_is_imported_with_a_warning(killed: Path, tmp_path: Path) -> None:
    src, wal = _copy(killed, tmp_path / "ts")
    size = os.path.getsize(wal)
    # A killed write() stops at a page boundary: what a crash leaves.
    cut = (size - 1) // 4096 * 4096
    os.truncate(wal, cut)
    done = run_cli("import-seed", str(src), f"rocksdb:{tmp_path}/out", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 0 < report["imported"] < N
    torn = report["recovery"]["torn_tail"]
    assert torn["file"] == wal
    assert torn["bytes_dropped"] > 0
    err = done.stderr.decode()
    assert "warning:" in err, err
    assert wal in err, err
    assert "torn tail" in err, err
    assert "aurora-seed-view" not in err
    # Without --json the summary says it too.
    plain = run_cli("import-seed", str(src), f"rocksdb:{tmp_path}/out2")
    assert plain.returncode == 0, plain.stderr
    assert b"warning:" in plain.stderr
    assert b"torn tail" in plain.stderr


# ------------------------------------------------------------------ a live source


@pytest.fixture
def running_app(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "live"
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUNNING_APP, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield path
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def test_a_source_the_application_still_has_open_is_refused(
    running_app: Path, tmp_path: Path
) -> None:
    os.remove(running_app / "rocksdict-config.json")
    target = tmp_path / "out"
    done = run_cli("import-seed", str(running_app), f"rocksdb:{target}")
    assert done.returncode == 3, (done.stdout, done.stderr)
    err = done.stderr.decode()
    assert err.startswith("error: StoreLockedError:"), err
    assert str(running_app) in err
    assert "stop the application" in err.lower(), err
    assert not target.exists()
    with pytest.raises(errors.StoreLockedError):
        import_seed(running_app, f"lmdb://{target}")
    assert not target.exists()
    # A dry run writes nothing: it reads the live store as of now, and says so.
    dry = run_cli("import-seed", str(running_app), f"rocksdb:{target}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert b"warning:" in dry.stderr
    assert b"would import 1 of 1" in dry.stderr
    assert not target.exists()


#: The application (re)started while an import runs: opens the store read-write and
#: writes a record, or prints why its open failed.
_STARTING_APP = """
import sys
import rocksdict
try:
    db = rocksdict.Rdict(sys.argv[1], options=rocksdict.Options(raw_mode=True))
except Exception as exc:
    print("refused:", exc, flush=True)
    sys.exit(0)
db[b'acme:"written-during-import"'] = b'{"late":true}'
db.close()
print("opened", flush=True)
"""


def _start_app(path: Path) -> str:
    """Start the application on ``path`` in another process: ``opened`` (it wrote its
    record) or ``refused: <the engine's error>``."""
    out = subprocess.run(
        [sys.executable, "-c", _STARTING_APP, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_application_started_during_the_import_is_refused_until_it_ends(
    tmp_path: Path,
) -> None:
    # The import checked the source's LOCK at its start only: an application started
    # meanwhile opened the store and wrote a record the import never read (exit 0, the
    # record missing at cut-over). The import now holds the LOCK until it ends.
    src = tmp_path / "ts"
    _sst_store(src, 5000)  # three chunks: the application starts after each
    seen: list[str] = []
    report = import_seed(
        src, f"lmdb://{tmp_path}/out", progress=lambda n: seen.append(_start_app(src))
    )
    assert len(seen) == 3
    for result in seen:
        assert result.startswith("refused:"), seen
        # RocksDB's own words for a LOCK another process holds.
        assert "LOCK" in result, result
        assert "Resource temporarily unavailable" in result, result
    assert report.imported == 5000
    # Once the import has ended the application starts.
    assert _start_app(src) == "opened"
    # A dry run writes nothing and keeps no application out (it reads the store as of
    # its open, as it may read a live one).
    started: list[str] = []
    dry = import_seed(src, None, dry_run=True, progress=lambda n: started.append(_start_app(src)))
    assert started[0] == "opened"
    assert dry.records == 5001


# --------------------------------------------------------- damaged table files


def _sst_store(path: Path, n: int) -> Path:
    """A TypeScript store of ``n`` records, all in one table file."""
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for i in range(n):
        db[f'acme:["k",{i}]'.encode()] = json.dumps({"n": i, "pad": "q" * 60}).encode()
    db.flush()
    db.close()
    os.remove(path / "rocksdict-config.json")
    (sst,) = path.glob("*.sst")
    return sst


def test_a_damaged_table_file_names_the_users_file_and_what_was_written(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    n = 20000
    sst = _sst_store(src, n)
    with open(sst, "r+b") as f:
        f.seek(sst.stat().st_size // 2)
        f.write(b"\x00" * 64)
    target = f"rocksdb:{tmp_path}/out"
    done = run_cli("import-seed", str(src), target)
    assert done.returncode == 5, (done.stdout, done.stderr)
    err = done.stderr.decode()
    assert err.startswith("error: CorruptionError:"), err
    assert str(sst) in err, err
    assert "aurora-seed-view" not in err
    with aurora_storage.open(f"rocksdb://{tmp_path}/out", mode="read_only") as repo:
        written = repo.count("acme")
    assert 0 < written < n
    assert f"{written} records were written to" in err, err
    assert "run import-seed again" in err, err
    # The batch size the import wrote (an LMDB target bounds none: 2,000 records each).
    assert "atomic batches of up to 2000 records" in err, err
    assert "the source or the target" in err, err
    # Through the API, the same error.
    with pytest.raises(errors.CorruptionError) as info:
        import_seed(src, f"lmdb://{tmp_path}/out2")
    assert str(sst) in str(info.value)
    assert "records were written to" in str(info.value)
    # A dry run says nothing was written.
    dry = run_cli("import-seed", str(src), f"lmdb:{tmp_path}/out3", "--dry-run")
    assert dry.returncode == 5
    assert "nothing was written" in dry.stderr.decode().lower()


def test_a_table_file_cut_short_names_the_users_file(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    sst = _sst_store(src, 2000)
    os.truncate(sst, sst.stat().st_size // 2)
    done = run_cli("import-seed", str(src), f"rocksdb:{tmp_path}/out")
    assert done.returncode == 5, done.stderr
    err = done.stderr.decode()
    assert str(sst) in err, err
    assert "aurora-seed-view" not in err
    assert "nothing was written" in err.lower(), err
    assert not (tmp_path / "out").exists()
