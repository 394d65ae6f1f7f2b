"""Command-line read commands on a plugin scheme's URL never create a store, and no
command opens (or writes into) another engine's store through a plugin's scheme.

The plugin is an outside distribution written the way docs/extending/writing-a-backend.md
says (``local_path``, ``create_store_dir``, ``marker_path``), installed as pip would (a
``.dist-info`` with its entry point in a directory on ``PYTHONPATH``), so the command
line in a subprocess finds it like any installed plugin."""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import ConfigurationError
from aurora_storage.plugins import refresh_plugins

from .conftest import run_cli

_BACKEND = textwrap.dedent(
    '''
    """A directory store over one sqlite3 file, as the backend guide's skeleton has it."""

    import os
    import sqlite3
    import threading
    from dataclasses import dataclass

    from aurora_storage.backend import (
        Backend, Capabilities, create_store_dir, marker_path, remove_created,
    )
    from aurora_storage.config import config_from_options, local_path
    from aurora_storage.errors import RepositoryClosedError, StorageError


    @dataclass(frozen=True, slots=True)
    class DirKVConfig:
        path: str


    class DirKVBackend(Backend):
        scheme = "dirkv"
        capabilities = Capabilities(persistent=True, thread_safe=True, atomic_batches=True)

        @classmethod
        def from_url(cls, url, options):
            path = local_path(url, backend=url.scheme)
            return cls(config_from_options(DirKVConfig, options, backend=url.scheme,
                                           fixed={"path": path}), url.scheme)

        def __init__(self, config, scheme):
            super().__init__()
            self.scheme = scheme
            self.config = config
            self._lock = threading.RLock()
            created = create_store_dir(config.path, backend=scheme)
            try:
                self._db = sqlite3.connect(os.path.join(config.path, "store.db"),
                                           isolation_level=None, check_same_thread=False)
                self._db.execute("CREATE TABLE IF NOT EXISTS kv "
                                 "(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
            except sqlite3.Error as exc:
                remove_created(created)
                raise StorageError(f"sqlite3: {exc}", backend=scheme) from exc
            self.marker_path = marker_path(config.path)
            self._closed = False

        def _run(self, sql, args=()):
            with self._lock:
                if self._closed:
                    raise RepositoryClosedError("closed", backend=self.scheme)
                try:
                    return self._db.execute(sql, args).fetchall()
                except sqlite3.Error as exc:
                    raise StorageError(f"sqlite3: {exc}", backend=self.scheme) from exc

        def get(self, key):
            rows = self._run("SELECT v FROM kv WHERE k = ?", (key,))
            return bytes(rows[0][0]) if rows else None

        def put(self, key, value):
            self._run("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

        def delete(self, key):
            there = self.get(key) is not None
            self._run("DELETE FROM kv WHERE k = ?", (key,))
            return there

        def write(self, ops):
            with self._lock:
                self._run("BEGIN")
                for key, value in ops:
                    if value is None:
                        self._run("DELETE FROM kv WHERE k = ?", (key,))
                    else:
                        self._run("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
                self._run("COMMIT")

        def scan(self, start, stop, *, reverse=False):
            order = "DESC" if reverse else "ASC"
            rows = self._run(
                f"SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k {order}", (start, stop)
            )
            return iter([(bytes(k), bytes(v)) for k, v in rows])

        def close(self):
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._db.close()


    class BareKVBackend(DirKVBackend):
        """The same store without the marker (a plugin written before markers)."""

        def __init__(self, config, scheme):
            super().__init__(config, scheme)
            self.marker_path = None
    '''
)

_PLUGIN = textwrap.dedent(
    """
    from aurora_storage.plugins import BackendSpec, hookimpl


    def _open(url, options):
        from aurora_dirkv._backend import DirKVBackend

        return DirKVBackend.from_url(url, options)


    def _open_bare(url, options):
        from aurora_dirkv._backend import BareKVBackend

        return BareKVBackend.from_url(url, options)


    @hookimpl
    def aurora_storage_backends():
        return [
            BackendSpec(scheme="dirkv", open=_open, package="aurora-dirkv"),
            # The same engine declaring that its URLs name no local store: the command
            # line then opens them as they are (what a network engine's plugin says).
            BackendSpec(scheme="dirkvnet", open=_open, package="aurora-dirkv",
                        local_store=False),
            BackendSpec(scheme="barekv", open=_open_bare, package="aurora-dirkv"),
        ]
    """
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aurora-dirkv installed into a site directory put on ``PYTHONPATH``."""
    site = tmp_path_factory.mktemp("site")
    (site / "aurora_dirkv").mkdir()
    (site / "aurora_dirkv" / "__init__.py").write_text("")
    (site / "aurora_dirkv" / "_backend.py").write_text(_BACKEND)
    (site / "aurora_dirkv" / "_plugin.py").write_text(_PLUGIN)
    info = site / "aurora_dirkv-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aurora-dirkv\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[aurora_storage]\ndirkv = aurora_dirkv._plugin\ndirkvnet = aurora_dirkv._plugin\n"
        "barekv = aurora_dirkv._plugin\n"
    )
    return site


def cli(site: Path, *args: str) -> tuple[int, str, str]:
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    done = run_cli(*args, env={"PYTHONPATH": os.pathsep.join(paths)})
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def fingerprint(path: Path) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = Path(root, name)
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


READS = [
    ("info",),
    ("verify",),
    ("tenants",),
    ("get", "t", "k"),
    ("export",),
    ("delete", "t", "k"),  # writes, but only to a store that exists
]


@pytest.mark.parametrize("command", READS, ids=lambda c: c[0])
def test_a_read_command_on_a_missing_plugin_store_exits_4_and_creates_nothing(
    site: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    name, *rest = command
    missing = tmp_path / "none" / "store"
    code, out, err = cli(site, name, f"dirkv://{missing}", *rest)
    assert code == 4, (out, err)
    assert "no dirkv store at" in err, err
    assert "never create" in err, err
    assert not (tmp_path / "none").exists()
    # An empty directory holds no store either: it stays empty.
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli(site, name, f"dirkv://{empty}", *rest)
    assert code == 4, (out, err)
    assert "holds no store" in err, err
    assert list(empty.iterdir()) == []


def test_a_relative_url_is_checked_too(site: Path, tmp_path: Path) -> None:
    code, _, err = cli(site, "info", f"dirkv:{os.path.relpath(tmp_path / 'rel', os.getcwd())}")
    assert code == 4, err
    assert not (tmp_path / "rel").exists()


def test_read_commands_open_a_plugin_store_once_written(site: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, _, err = cli(site, "put", f"dirkv://{store}", "t", "k", "v")
    assert code == 0, err
    assert (store / "aurora-store.json").exists()
    code, out, err = cli(site, "get", f"dirkv://{store}", "t", "k")
    assert (code, out.strip()) == (0, '"v"'), err
    code, out, err = cli(site, "verify", f"dirkv://{store}")
    assert code == 0, (out, err)


@pytest.mark.parametrize("engine", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("command", [*READS, ("put", "t", "k", "v"), ("import",)], ids=str)
def test_another_engines_store_is_refused_before_anything_is_written(
    site: Path, tmp_path: Path, engine: str, command: tuple[str, ...]
) -> None:
    store = tmp_path / engine
    with aurora_storage.open(f"{engine}://{store}") as repo:
        repo.put("t", "k", "kept")
    name, *rest = command
    if name == "import":  # the store's own export, into the same directory
        dump = tmp_path / "dump.jsonl"
        assert cli(site, "export", f"{engine}://{store}", "-o", str(dump))[0] == 0
        rest = [str(dump)]
    before = fingerprint(store)
    code, out, err = cli(site, name, f"dirkv://{store}", *rest)
    assert code == 4, (out, err)
    assert f"holds a {engine} store, not a dirkv one; use {engine}://{store}" in err, err
    assert "delete the whole store" not in err
    assert fingerprint(store) == before
    with aurora_storage.open(f"{engine}://{store}") as repo:
        assert repo.get("t", "k") == "kept"


def test_another_plugins_store_is_refused_by_its_marker(site: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert cli(site, "put", f"dirkvnet://{store}", "t", "k", "v")[0] == 0
    # dirkvnet wrote the marker naming itself: dirkv is another engine to the CLI.
    before = fingerprint(store)
    code, _, err = cli(site, "info", f"dirkv://{store}")
    assert code == 4, err
    assert "holds a dirkvnet store, not a dirkv one" in err, err
    assert fingerprint(store) == before


def test_a_plugin_declaring_no_local_store_is_opened_as_before(site: Path, tmp_path: Path) -> None:
    """``BackendSpec(local_store=False)``: the command line does not read the URL's path
    (a network engine's ``scheme:///name`` names no file), so it opens it as given."""
    code, out, err = cli(site, "info", f"dirkvnet://{tmp_path}/fresh")
    assert code == 0, (out, err)


def test_the_library_names_the_engine_a_marker_records(site: Path, tmp_path: Path) -> None:
    """``aurora_storage.open`` of another engine's store through a plugin scheme says
    whose store it is (ConfigurationError, exit 3 on the command line) instead of calling
    it damaged and advising to delete it."""
    store = tmp_path / "rocks"
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        repo.put("t", "k", "kept")
    import sys

    sys.path.insert(0, str(site))
    refresh_plugins()
    try:
        with pytest.raises(ConfigurationError, match="holds a rocksdb store") as info:
            aurora_storage.open(f"dirkv://{store}")
        assert "delete" not in str(info.value)
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("aurora_dirkv")]:
            del sys.modules[name]
        refresh_plugins()
    with aurora_storage.open(f"rocksdb://{store}") as repo:
        assert repo.get("t", "k") == "kept"


def test_a_store_of_a_backend_that_writes_no_marker_still_opens_for_reads(
    site: Path, tmp_path: Path
) -> None:
    # A plugin written before markers (no marker_path): its store holds only its own
    # files. Read commands open it (its backend judges the files); a missing path or an
    # empty directory still holds no store.
    store = tmp_path / "bare"
    code, _, err = cli(site, "put", f"barekv://{store}", "t", "k", "v")
    assert code == 0, err
    assert not (store / "aurora-store.json").exists()
    code, out, err = cli(site, "get", f"barekv://{store}", "t", "k")
    assert (code, out.strip()) == (0, '"v"'), err
    code, out, err = cli(site, "info", f"barekv://{tmp_path / 'missing'}")
    assert code == 4, (out, err)
    assert not (tmp_path / "missing").exists()
