"""The core's one fork guard, as both engine plugins use it: a repository inherited by
a fork() child refuses every call there with InheritedHandleError naming the store, and
the parent's handle goes on working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import InheritedHandleError, RepositoryClosedError


def test_inherited_handle_error_is_in_the_error_tree() -> None:
    assert issubclass(InheritedHandleError, RepositoryClosedError)
    assert aurora_storage.InheritedHandleError is InheritedHandleError
    # The old import path (the RocksDB plugin defined it first) names the same class.
    import aurora_storage_rocksdb

    assert aurora_storage_rocksdb.InheritedHandleError is InheritedHandleError


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() exists on POSIX only")
@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
def test_a_forked_child_gets_inherited_handle_error(tmp_path: Path, scheme: str) -> None:
    path = str(tmp_path / "s")
    with aurora_storage.open(f"{scheme}://{path}") as repo:
        repo.put("t", "parent", 1)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            report = "no error"
            try:
                repo.get("t", "parent")
            except InheritedHandleError as exc:
                report = f"{exc.backend}|{exc.path}|{'fork()' in str(exc)}"
            except BaseException as exc:
                report = f"other: {type(exc).__name__}: {exc}"
            os.write(write, report.encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as pipe:
            report = pipe.read().decode()
        assert os.waitstatus_to_exitcode(status) == 0
        assert report.split("|")[0] == scheme, report
        assert os.path.samefile(report.split("|")[1], path), report
        assert report.split("|")[2] == "True", report
        repo.put("t", "after", 2)  # the parent's handle still works
        assert repo.get("t", "parent") == 1


@pytest.mark.parametrize("plugin", ["aurora_storage_rocksdb", "aurora_storage_lmdb"])
def test_an_engine_backend_does_not_import_its_repository(plugin: str) -> None:
    # The plugin's modules import in one direction (config -> backend -> repository ->
    # plugin): the backend never reaches back to the repository module.
    code = (
        f"import sys, {plugin}._backend;"
        f"print('{plugin}._repository' in sys.modules, '{plugin}._plugin' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
