"""The commands `backup` and `restore` print in their advice run as printed when pasted
into a shell, whatever the paths hold: a space, ``#``, ``&``, ``%``, a quote. Before,
backup's read-back error advised ``aurora-storage export --salvage rocksdb:/x/dir
a/bk#2 -o FILE``: pasted, it failed (``Got unexpected extra argument``), and an ``&``
would have sent part of it to the background. A store's URL is now written as a URL
(percent-encoded: ``dir%20a/bk%232``) and every argument quoted for the shell, as
restore's advice already was.

Real RocksDB stores (one record made undecodable through the engine, or a table's
first block flipped), the real command line, the advice run by bash."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.cli._common import parse_url, store_path
from aurora_storage.config import URL

from .conftest import command, flip, run_cli, tables

_DAMAGED = 5  # docs/cli.md, "Exit codes"
_USAGE = 2

#: Names a shell splits, expands or runs in the background, or a URL reads otherwise.
HOSTILE = ("dir a", "bk#1&x", "it's", "100%25", "a;b", "$HOME")


def _advice(text: str) -> list[str]:
    """The commands between backquotes in a message."""
    return re.findall(r"`(aurora-storage [^`]*)`", text)


def _paste(cmd: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` as a user pasting it into bash would (``aurora-storage`` the one
    under test)."""
    bin_dir = os.path.dirname(command()[0]) if len(command()) == 1 else None
    env = dict(os.environ)
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    else:  # (no console script: the module)
        cmd = cmd.replace("aurora-storage", f"{shlex.quote(sys.executable)} -m aurora_storage", 1)
    return subprocess.run(
        ["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, timeout=120, check=False
    )


def _url(path: Path) -> str:
    """The URL of the RocksDB store at ``path`` as a user would write it: the path as
    it is (spaces, quotes, ``&``, ``$`` and all), percent-encoded only where a URL
    needs it (``#``, ``%``, ``?``)."""
    if any(c in str(path) for c in "#%?"):
        return URL("rocksdb", str(path)).render(hide_secrets=False)
    return f"rocksdb:{path}"


def _undecodable(store: Path) -> None:
    """A RocksDB store of 10 JSON records, one of which no longer decodes (written
    through the engine: its checksums are intact, its value is not JSON)."""
    import rocksdict

    with aurora_storage.open(_url(store)) as repo:
        repo.put_many("acme", {("k", i): i for i in range(10)})
    db = rocksdict.Rdict(str(store), options=rocksdict.Options(raw_mode=True))
    try:
        key = next(k for k in db.keys() if isinstance(k, bytes) and b"acme" in k)  # noqa: SIM118  # Rdict iterates no keys
        db[key] = b"\x00not json"
    finally:
        db.close()


def _flushed(store: Path) -> None:
    """A RocksDB store whose records are in one table file."""
    with aurora_storage.open(_url(store)) as repo:
        repo.put_many("acme", {f"k{i:04d}": {"i": i} for i in range(500)})
        repo.backend.flush(memtables=True)  # type: ignore[call-arg]  # RocksDB's flush takes memtables


@pytest.mark.parametrize("name", HOSTILE)
def test_backups_damage_advice_runs_as_pasted(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    store, target = folder / "src", folder / f"bk-{name}"
    _undecodable(store)
    out = run_cli("backup", _url(store), str(target))
    assert out.returncode == _DAMAGED, out.stderr
    last = out.stderr.decode().strip().splitlines()[-1]
    commands = _advice(last)
    verify = next(c for c in commands if c.startswith("aurora-storage verify "))
    salvage = next(c for c in commands if c.startswith("aurora-storage export --salvage "))
    # Each names the store the message means: the store, then the backup.
    assert store_path(parse_url(shlex.split(verify)[2])) == str(store)
    assert store_path(parse_url(shlex.split(salvage)[3])) == str(target)
    checked = _paste(verify, tmp_path)
    assert checked.returncode == _DAMAGED, checked.stderr  # ran, and found the damage
    saved = _paste(
        salvage.replace("-o FILE", f"-o {shlex.quote(str(tmp_path / 'saved'))}"), tmp_path
    )
    assert saved.returncode in (0, _DAMAGED), saved.stderr
    lines = (tmp_path / "saved").read_text().splitlines()
    assert sum('"tenant":"acme"' in line for line in lines) == 9  # all but the damaged one
    # Nothing else ran, nothing was made beside: only the store, its backup, the file.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "saved"])
    assert sorted(p.name for p in folder.iterdir()) == ["bk-" + name, "src"]


@pytest.mark.parametrize("name", ["dir a", "bk#1&x", "a;b"])
def test_the_store_named_when_the_backup_does_not_open_runs_as_pasted(
    tmp_path: Path, name: str
) -> None:
    # A backup damaged where its metadata record lies cannot be opened: the advice
    # salvages from the store (as the user wrote its URL), quoted for the shell.
    folder = tmp_path / name
    folder.mkdir()
    store = folder / "src"
    _flushed(store)
    flip(tables(store)[0], 5, 0xFF)
    out = run_cli("backup", _url(store), str(folder / "bk"))
    assert out.returncode == _DAMAGED, out.stderr
    last = out.stderr.decode().strip().splitlines()[-1]
    salvage = next(c for c in _advice(last) if c.startswith("aurora-storage export --salvage "))
    assert store_path(parse_url(shlex.split(salvage)[3])) == str(store)
    pasted = _paste(salvage.replace("-o FILE", "-o saved"), tmp_path)
    assert b"UsageError" not in pasted.stderr, pasted.stderr
    assert pasted.returncode in (0, _DAMAGED), pasted.stderr


def test_the_mkdir_advice_for_a_missing_folder_runs_as_pasted(tmp_path: Path) -> None:
    store = tmp_path / "src"
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        repo.put("acme", "k", 1)
    target = tmp_path / "no such" / "dir a&b" / "bk"
    out = run_cli("backup", f"rocksdb:{store}", str(target))
    assert out.returncode == _USAGE, out.stderr
    (mkdir,) = re.findall(r"\((mkdir -p [^)]*)\)", out.stderr.decode())
    assert _paste(mkdir, tmp_path).returncode == 0
    assert target.parent.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no such", "src"]
    assert run_cli("backup", "-q", f"rocksdb:{store}", str(target)).returncode == 0


_HOLD = """
import sys, time, aurora_storage
repo = aurora_storage.open(sys.argv[1])
print("open", flush=True)
time.sleep(600)
"""


def test_restores_advice_for_a_live_store_names_it_for_the_shell(tmp_path: Path) -> None:
    # A live store given as the backup: the advice's `aurora-storage backup URL DIR`
    # names that store, its URL quoted as a URL and for the shell.
    live = tmp_path / "dir a" / "it's&live"
    live.parent.mkdir()
    with aurora_storage.open(f"rocksdb://{live}") as repo:
        repo.put("acme", "k", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, f"rocksdb://{live}"], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"open"
        out = run_cli("restore", str(live), f"rocksdb:{tmp_path / 'target'}", "--yes")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert out.returncode != 0, out.stderr
    (backup,) = (c for c in _advice(out.stderr.decode()) if c.startswith("aurora-storage backup "))
    words = shlex.split(backup)
    assert words[3:] == ["DIR"], backup
    assert store_path(parse_url(words[2])) == str(live)


def test_the_import_seed_advice_for_a_foreign_store_names_it_for_the_shell(
    tmp_path: Path,
) -> None:
    # A RocksDB store another program wrote (the TypeScript package's) is refused, by
    # `info` and by `restore` over it, advising `aurora-storage import-seed DIR ...`.
    import rocksdict

    store = tmp_path / "dir a" / "it's&events"
    store.parent.mkdir()
    db = rocksdict.Rdict(str(store), options=rocksdict.Options(raw_mode=True))
    db[b'acme:"event:1"'] = b'{"type":"OrderCreated"}'
    db.close()
    backup = tmp_path / "bk"
    with aurora_storage.open(f"rocksdb://{tmp_path / 'src'}") as repo:
        repo.put("acme", "k", 1)
    assert run_cli("backup", "-q", f"rocksdb:{tmp_path / 'src'}", str(backup)).returncode == 0
    for argv in (("info", f"rocksdb:{store}"), ("restore", str(backup), f"rocksdb:{store}", "-y")):
        out = run_cli(*argv)
        assert out.returncode == 4, out.stderr
        (seed,) = (
            c for c in _advice(out.stderr.decode()) if c.startswith("aurora-storage import-seed ")
        )
        assert shlex.split(seed)[2:] == [str(store), "rocksdb:NEW_PATH"], seed


def test_the_copy_advice_of_import_seed_for_an_aurora_store_runs_as_pasted(
    tmp_path: Path,
) -> None:
    # import-seed of an aurora-storage store (not a TypeScript one) advises
    # `aurora-storage copy SCHEME:PATH URL`; the path was printed raw.
    store = tmp_path / "dir a" / "it's&events"
    with aurora_storage.open(URL("rocksdb", str(store)).render(hide_secrets=False)) as repo:
        repo.put("acme", "k", 1)
    out = run_cli("import-seed", str(store), f"rocksdb:{tmp_path / 'target'}")
    assert out.returncode != 0, out.stderr
    (copy,) = (c for c in _advice(out.stderr.decode()) if c.startswith("aurora-storage copy "))
    target = tmp_path / "copied"
    pasted = _paste(copy.replace(" URL", " " + shlex.quote(f"rocksdb:{target}")), tmp_path)
    assert pasted.returncode == 0, pasted.stderr
    with aurora_storage.open(f"rocksdb:{target}") as repo:
        assert dict(repo.items("acme")) == {"k": 1}
