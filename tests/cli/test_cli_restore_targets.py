"""What `restore` may replace, and what it leaves when it fails or is killed (real
processes, real stores): a target that is not a store of the URL's engine is refused
before anything changes (it deleted a folder of stores, a folder of user files, the
current directory, an LMDB store under a RocksDB URL); a symbolic link is followed (the
link was replaced and the real store kept its old data); a backup directory that a live
process uses is refused (a raw shutil.Error, or a torn copy "restored"); no
``.restoring`` is left by a failure; a restore killed between its two renames is
reported by every command that meets the path, and never silently finished or lost;
a closed stdin is "not a terminal" (exit 70 before)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import aurora_storage

from .conftest import command, listing, run_cli

_USAGE = 2
_STORE_ERROR = 3
_NO_STORE = 4


def _store(url: str, value: str, n: int = 1) -> None:
    with aurora_storage.open(url) as r:
        r.put_many("t", {f"k{i}": value for i in range(n)})


def _get(url: str) -> str:
    out = run_cli("get", url, "t", "k0")
    assert out.returncode == 0, out.stderr
    return str(out.stdout.decode().strip().strip('"'))


def _backup_of(tmp_path: Path, scheme: str, value: str = "backup", n: int = 1) -> Path:
    src, bk = tmp_path / f"src-{scheme}", tmp_path / f"bk-{scheme}"
    _store(f"{scheme}://{src}", value, n)
    assert run_cli("backup", "-q", f"{scheme}:{src}", str(bk)).returncode == 0
    return bk


def _tree(path: Path) -> dict[str, object]:
    return {str(p.relative_to(path)): p.is_dir() or p.read_bytes() for p in path.rglob("*")}


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_folder_that_is_not_a_store_is_never_replaced(tmp_path: Path, scheme: str) -> None:
    bk = _backup_of(tmp_path, scheme)
    # The parent of several stores (a mistyped target), and a folder of user files.
    parent = tmp_path / "data"
    _store(f"rocksdb://{parent}/events", "e")
    _store(f"lmdb://{parent}/proj", "p")
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "thesis.txt").write_text("important")
    for target in (parent, home):
        before = _tree(target)
        out = run_cli("restore", str(bk), f"{scheme}:{target}", "--yes")
        assert out.returncode == _NO_STORE, out.stderr
        err = out.stderr.decode()
        assert err.startswith("error: NoStoreError:")
        assert f"holds no {scheme} store" in err
        assert "nothing was changed" in err
        assert _tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"src-{scheme}", f"bk-{scheme}", "data", "home"]
    )


def test_the_current_directory_is_never_replaced(tmp_path: Path) -> None:
    bk = _backup_of(tmp_path, "rocksdb")
    cwd = tmp_path / "cwd"
    (cwd / "docs").mkdir(parents=True)
    (cwd / "docs" / "a.txt").write_text("important")
    out = subprocess.run(
        [*command(), "restore", str(bk), "rocksdb:.", "--yes"],
        cwd=cwd,
        capture_output=True,
        check=False,
        # (PYTHONPATH may be relative to the test's directory.)
        env={**os.environ, "PYTHONPATH": str(Path(aurora_storage.__file__).resolve().parents[1])},
    )
    assert out.returncode == _NO_STORE, out.stderr
    assert _tree(cwd) == {"docs": True, "docs/a.txt": b"important"}


@pytest.mark.parametrize(("real", "asked"), [("lmdb", "rocksdb"), ("rocksdb", "lmdb")])
def test_another_engines_store_is_not_replaced(tmp_path: Path, real: str, asked: str) -> None:
    bk = _backup_of(tmp_path, asked)
    store = tmp_path / "store"
    _store(f"{real}://{store}", "mine")
    before = listing(store)
    out = run_cli("restore", str(bk), f"{asked}:{store}", "--yes")
    assert out.returncode == _NO_STORE, out.stderr
    assert f"holds a {real} store, not a {asked} one" in out.stderr.decode()
    assert listing(store) == before
    assert _get(f"{real}:{store}") == "mine"


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_an_empty_directory_and_a_new_path_are_restored_into(tmp_path: Path, scheme: str) -> None:
    bk = _backup_of(tmp_path, scheme)
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "new"):
        out = run_cli("restore", "-q", str(bk), f"{scheme}:{target}")  # no question asked
        assert out.returncode == 0, out.stderr
        assert _get(f"{scheme}:{target}") == "backup"


def test_a_file_under_a_rocksdb_url_is_refused_naming_rocksdb(tmp_path: Path) -> None:
    bk = _backup_of(tmp_path, "rocksdb")
    f = tmp_path / "f"
    f.write_text("hi")
    out = run_cli("restore", str(bk), f"rocksdb:{f}", "--yes")
    assert out.returncode == _NO_STORE, out.stderr
    err = out.stderr.decode()
    assert "not a rocksdb store directory" in err
    assert "LMDB" not in err
    assert "subdir" not in err
    assert f.read_text() == "hi"


def test_a_symbolic_link_loop_is_named_as_one(tmp_path: Path) -> None:
    # It was "a file, not a rocksdb store directory".
    bk = _backup_of(tmp_path, "rocksdb")
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    out = run_cli("restore", str(bk), f"rocksdb:{tmp_path / 'loopA'}", "--yes")
    err = out.stderr.decode()
    assert out.returncode == _NO_STORE, err
    assert "symbolic link loop" in err, err
    assert "it is a file" not in err


def test_the_question_names_what_is_replaced(tmp_path: Path) -> None:
    bk = _backup_of(tmp_path, "lmdb")
    store = tmp_path / "store"
    _store(f"lmdb://{store}", "old")
    out = run_cli("restore", str(bk), f"lmdb:{store}")
    assert out.returncode == _USAGE, out.stderr
    assert f"replace the lmdb store at {store} with the backup (1 records)?" in (
        out.stderr.decode()
    )


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_link_to_a_store_is_followed_and_kept(tmp_path: Path, scheme: str) -> None:
    real = tmp_path / "disk2" / "events"
    _store(f"{scheme}://{real}", "old")
    link = tmp_path / "events"
    link.symlink_to(real)
    bk = _backup_of(tmp_path, scheme, "new")
    for _ in range(2):  # a second restore through the link works the same
        out = run_cli("restore", "-q", str(bk), f"{scheme}:{link}", "--yes")
        assert out.returncode == 0, out.stderr
        assert link.is_symlink()
        assert link.resolve() == real
        assert _get(f"{scheme}:{real}") == _get(f"{scheme}:{link}") == "new"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["disk2", "events", f"src-{scheme}", f"bk-{scheme}"]
        )
        assert os.listdir(tmp_path / "disk2") == ["events"]


# Writes into its store until killed; prints "ready" once it holds the store open.
_LIVE_WRITER = """
import os, sys, aurora_storage
with aurora_storage.open(sys.argv[1]) as r:
    r.put("t", "k0", "live")
    print("ready", flush=True)
    i = 0
    while True:
        r.put_many("t", {(i, j): os.urandom(40).hex() for j in range(200)})
        i += 1
"""


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_backup_directory_a_live_process_writes_is_refused(tmp_path: Path, scheme: str) -> None:
    live = tmp_path / "live"
    target = tmp_path / "target"
    _store(f"{scheme}://{target}", "mine")
    before = listing(target)
    w = subprocess.Popen(
        [sys.executable, "-c", _LIVE_WRITER, f"{scheme}://{live}"], stdout=subprocess.PIPE
    )
    try:
        assert w.stdout is not None
        assert w.stdout.readline().strip() == b"ready"
        out = run_cli("restore", str(live), f"{scheme}:{target}", "--yes")
    finally:
        w.kill()
        w.wait()
        if w.stdout is not None:
            w.stdout.close()
    assert out.returncode == _STORE_ERROR, out.stderr
    err = out.stderr.decode()
    assert err.startswith("error: StoreLockedError: cannot restore from")
    assert "aurora-storage backup" in err
    assert listing(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live", "target"]


def test_a_failed_copy_leaves_no_restoring_behind(tmp_path: Path) -> None:
    bk = _backup_of(tmp_path, "rocksdb")
    # A link to nothing in the backup: the copy fails after copying the rest.
    (bk / "dangling").symlink_to(tmp_path / "nowhere")
    store = tmp_path / "store"
    _store(f"rocksdb://{store}", "old")
    out = run_cli("restore", str(bk), f"rocksdb:{store}", "--yes")
    assert out.returncode == _STORE_ERROR, out.stderr
    assert not (tmp_path / "store.restoring").exists()
    assert _get(f"rocksdb:{store}") == "old"


@pytest.mark.parametrize("argv", [["drop-tenant", "{url}", "t"], ["restore", "{bk}", "{url}"]])
def test_a_closed_stdin_is_not_a_terminal(tmp_path: Path, argv: list[str]) -> None:
    bk = _backup_of(tmp_path, "rocksdb")
    store = tmp_path / "s"
    _store(f"rocksdb://{store}", "old")
    args = [a.format(url=f"rocksdb:{store}", bk=bk) for a in argv]
    out = subprocess.run(
        [*command(), *args],
        stdin=None,
        capture_output=True,
        check=False,
        # Close the child's stdin (as `<&-` does): fd 0 is not open in it at all.
        preexec_fn=lambda: os.close(0),
    )
    assert out.returncode == _USAGE, out.stderr
    assert b"pass --yes to confirm" in out.stderr
    assert _get(f"rocksdb:{store}") == "old"


# Runs restore in this process, SIGKILLed right after its first rename (the store moved
# aside, the backup not yet in its place): what a power cut there leaves.
_KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from aurora_storage.cli import run
renamed = os.rename
def rename(a, b):
    renamed(a, b)
    if str(b).endswith(".replaced"):
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
run(sys.argv[1:])
"""


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_restore_killed_between_its_renames_is_reported_never_lost(
    tmp_path: Path, scheme: str
) -> None:
    bk = _backup_of(tmp_path, scheme, "new")
    store = tmp_path / "store"
    _store(f"{scheme}://{store}", "old")
    url = f"{scheme}:{store}"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BETWEEN_RENAMES, "restore", "-q", str(bk), url, "--yes"],
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not store.exists()
    left = sorted(os.listdir(tmp_path))
    assert left == sorted([f"src-{scheme}", f"bk-{scheme}", "store.replaced", "store.restoring"])
    # Every command that meets the path says what happened and how to go on; none
    # creates an empty store there.
    for argv in (["get", url, "t", "k0"], ["put", url, "t", "k", "app"], ["restore", str(bk), url]):
        out = run_cli(*argv, "--yes") if argv[0] == "restore" else run_cli(*argv)
        assert out.returncode == _NO_STORE, out.stderr
        err = out.stderr.decode()
        assert err.startswith("error: InterruptedRestoreError:"), err
        assert "interrupted between its two renames" in err
        assert f"mv {store}.restoring {store}" in err  # how to finish it
        assert f"mv {store}.replaced {store}" in err  # how to undo it
        assert sorted(os.listdir(tmp_path)) == left
    # Finishing it as the message says gives the restored store.
    os.rename(f"{store}.restoring", store)
    assert _get(url) == "new"
    # A leftover .replaced is never deleted without a word: restore refuses.
    out = run_cli("restore", str(bk), url, "--yes")
    assert out.returncode == _STORE_ERROR, out.stderr
    err = out.stderr.decode()
    assert err.startswith("error: RestoreLeftoverError:")
    assert f"{store}.replaced is left from an earlier restore" in err
    assert _get(f"{scheme}:{store}.replaced") == "old"


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("tier", ["hot", "cold"])
def test_tiered_commands_refuse_a_tier_whose_restore_was_interrupted(
    tmp_path: Path, scheme: str, tier: str
) -> None:
    # `tiered status` with a tier at such a path created an empty store there (count
    # then printed 0), and the printed advice, run literally, moved the backup into it.
    from urllib.parse import quote

    bk = _backup_of(tmp_path, scheme, "new")
    store = tmp_path / "store"
    _store(f"{scheme}://{store}", "old")
    tail = [f"{scheme}:{store}", "--yes"]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BETWEEN_RENAMES, "restore", "-q", str(bk), *tail],
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(os.listdir(tmp_path))
    other = f"{'rocksdb' if tier == 'hot' else 'lmdb'}://{tmp_path / 'other'}"
    tiers = {tier: f"{scheme}://{store}", ("cold" if tier == "hot" else "hot"): other}
    url = f"tiered://?hot={quote(tiers['hot'], safe='')}&cold={quote(tiers['cold'], safe='')}"
    for argv in (
        ["tiered", "status", url],
        ["tiered", "catch-up", url],
        ["tiered", "rebuild", url, "--yes"],
        ["put", url, "t", "k", "v"],
        ["count", url, "t"],
    ):
        out = run_cli(*argv)
        err = out.stderr.decode()
        assert out.returncode == _NO_STORE, (argv, err)
        assert err.startswith("error: InterruptedRestoreError:"), (argv, err)
        assert f"{store}.restoring" in err
        assert sorted(os.listdir(tmp_path)) == left, argv
    # The advice, run literally, finishes the restore.
    err = run_cli("count", f"{scheme}:{store}", "t").stderr.decode()
    finish = err.split("To finish the restore: ", 1)[1].split(";", 1)[0]
    assert finish.startswith(f"test ! -e {store} && mv {store}.restoring {store}")
    assert os.system(finish) == 0
    assert _get(f"{scheme}:{store}") == "new"


def test_a_leftover_replaced_is_named_with_a_leftover_restoring(tmp_path: Path) -> None:
    bk = _backup_of(tmp_path, "rocksdb", "new")
    store = tmp_path / "store"
    for path in (store, Path(f"{store}.replaced"), Path(f"{store}.restoring")):
        _store(f"rocksdb://{path}", "old")
    out = run_cli("restore", str(bk), f"rocksdb:{store}", "--yes")
    err = out.stderr.decode()
    assert out.returncode == _STORE_ERROR, err
    assert err.startswith("error: RestoreLeftoverError:"), err
    assert f"{store}.replaced is left from an earlier restore" in err
    assert f"{store}.restoring is there too" in err


def test_a_partial_copy_left_by_a_killed_restore_is_removed_by_the_next(tmp_path: Path) -> None:
    bk = _backup_of(tmp_path, "rocksdb", "new")
    store = tmp_path / "store"
    (tmp_path / "store.restoring").mkdir()
    (tmp_path / "store.restoring" / "CURRENT").write_text("half a copy")
    out = run_cli("get", f"rocksdb:{store}", "t", "k0")
    assert out.returncode == _NO_STORE
    assert b"interrupted while it copied the backup" in out.stderr
    out = run_cli("restore", str(bk), f"rocksdb:{store}")
    assert out.returncode == 0, out.stderr
    assert b"left by an interrupted restore" in out.stderr
    assert _get(f"rocksdb:{store}") == "new"
    assert not (tmp_path / "store.restoring").exists()


@pytest.mark.parametrize("name", ["bk%41", "bk#1", "bk?x", "bk 2"])
def test_a_backup_directory_with_url_characters_in_its_name_is_the_one_checked(
    tmp_path: Path, name: str
) -> None:
    # The backup's path was pasted into a URL: 'bk%41' was decoded to 'bkA' (another
    # store checked and counted), '#' and '?' refused as a URL the user never wrote.
    bk = _backup_of(tmp_path, "lmdb", n=1).rename(tmp_path / name)
    decoy = tmp_path / "bkA"
    _store(f"lmdb://{decoy}", "decoy", n=5)
    store = tmp_path / "store"
    _store(f"lmdb://{store}", "old")
    asked = run_cli("restore", str(bk), f"lmdb:{store}")
    assert asked.returncode == _USAGE, asked.stderr
    assert "with the backup (1 records)?" in asked.stderr.decode()
    out = run_cli("restore", "--yes", str(bk), f"lmdb:{store}")
    assert out.returncode == 0, out.stderr
    assert _get(f"lmdb:{store}") == "backup"


@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_target_inside_the_backup_or_holding_it_is_refused(tmp_path: Path, scheme: str) -> None:
    # Restoring into bk/inner wrote into the backup (and copied its own partial copy
    # into the store); restoring into the folder holding the backup would replace it.
    bk = _backup_of(tmp_path, scheme)
    before = _tree(bk)
    for target in (bk / "inner", tmp_path):
        out = run_cli("restore", "--yes", str(bk), f"{scheme}:{target}")
        assert out.returncode == _USAGE, out.stderr
        assert "inside the backup" in out.stderr.decode()
    assert _tree(bk) == before
    assert not (bk / "inner").exists()
