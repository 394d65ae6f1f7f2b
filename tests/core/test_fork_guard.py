"""The core's one fork guard, as both engine plugins use it: a repository inherited by
a fork() child refuses every call there with InheritedHandleError naming the store, and
the parent's handle goes on working."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import aurora_storage
from aurora_storage.errors import InheritedHandleError, RepositoryClosedError, StoreLockedError


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

        def child() -> str:
            try:
                repo.get("t", "parent")
            except InheritedHandleError as exc:
                return f"{exc.backend}|{exc.path}|{'fork()' in str(exc)}"
            return "no error"

        report = _in_fork_child(child)
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


def _in_fork_child(report: Callable[[], str]) -> str:
    """Run ``report`` in a forked child; its result (or its exception) as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            out = report()
        except BaseException as exc:
            out = f"raised {type(exc).__name__}: {exc}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() exists on POSIX only")
@pytest.mark.parametrize(
    ("scheme", "options", "reopens", "instead"),
    [
        # The parent's RocksDB lock is copied into the child: only a read-only open works.
        ("rocksdb", "", False, "?mode=read_only"),
        # reader_cache=true (the default): the inherited copy stays open in the child.
        ("lmdb", "", False, None),
        # reader_cache=false: the copy is closed in the child, which may open it again.
        ("lmdb", "?reader_cache=false", True, None),
    ],
)
def test_the_inherited_handle_error_advises_what_works_in_the_child(
    tmp_path: Path, scheme: str, options: str, reopens: bool, instead: str | None
) -> None:
    """The InheritedHandleError's advice holds: where it says to open the store again in
    the child, that open works; where it says the child cannot, the open is refused
    (StoreLockedError) and the alternative it names works."""
    url = f"{scheme}://{tmp_path / 's'}{options}"
    with aurora_storage.open(url) as repo:
        repo.put("t", "k", "from the parent")
        repo.flush()

        def child() -> str:
            try:
                repo.get("t", "k")
            except InheritedHandleError as exc:
                advice = str(exc)
            says_reopen = "Open the store again in the child" in advice
            try:
                with aurora_storage.open(url) as mine:
                    got = f"reopened: {mine.get('t', 'k')}"
            except StoreLockedError as exc:
                got = f"refused: {exc}"
            if instead is not None:
                assert f"mode={instead.split('=')[1]}" in advice, advice
                with aurora_storage.open(f"{scheme}://{tmp_path / 's'}{instead}") as other:
                    got += f" | instead: {other.get('t', 'k')}"
            return f"{says_reopen}\n{got}\n{advice}"

        says_reopen, got, advice = _in_fork_child(child).split("\n", 2)
    assert says_reopen == str(reopens), advice
    if reopens:
        assert got == "reopened: from the parent", got
    else:
        assert got.startswith("refused: "), got
        assert "fork()" in got, got  # the refusal says why: the store was inherited
        assert "cannot open the store" in advice or "Nor can this process" in advice
    if instead is not None:
        assert got.endswith(" | instead: from the parent"), got


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() exists on POSIX only")
@pytest.mark.parametrize("options", ["", "?change_log=true"], ids=["feed", "change_log"])
@pytest.mark.parametrize("scheme", ["rocksdb", "lmdb"])
@pytest.mark.parametrize("timeout", [None, 0.2], ids=["no_timeout", "timeout"])
def test_a_watch_inherited_by_a_forked_child_raises_there(
    tmp_path: Path, scheme: str, options: str, timeout: float | None
) -> None:
    """A watch made in the parent and iterated in a fork() child raises
    InheritedHandleError there, as every other inherited call does (finding: RocksDB's
    and LMDB's in-process feeds waited for ever in the child - or, with a timeout, ended
    as if nothing had changed). A watch made in the child from the inherited repository
    is refused the same way."""
    if scheme == "rocksdb" and options:
        pytest.skip("change_log is an LMDB option")
    with aurora_storage.open(f"{scheme}://{tmp_path / 's'}{options}") as repo:
        watch = repo.watch("t", timeout=timeout)

        def iterate(w: object) -> str:
            # A child stuck in the wait would hang the test: SIGALRM ends it (the
            # parent then sees a non-zero exit status).
            signal.alarm(10)
            try:
                changes = list(w)  # type: ignore[call-overload]  # a Watch
            except InheritedHandleError as exc:
                return f"InheritedHandleError|{exc.backend}|{'fork()' in str(exc)}"
            return f"no error: {changes!r}"

        assert _in_fork_child(lambda: iterate(watch)) == f"InheritedHandleError|{scheme}|True"

        def new_watch() -> str:
            signal.alarm(10)
            try:
                w = repo.watch("t", timeout=timeout)
            except InheritedHandleError as exc:
                return f"InheritedHandleError|{exc.backend}|{'fork()' in str(exc)}"
            return iterate(w)

        assert _in_fork_child(new_watch) == f"InheritedHandleError|{scheme}|True"
        # The parent's watch goes on working.
        before = repo.last_position()
        repo.put("t", "k", 1)
        with repo.watch("t", after=before, timeout=0) as again:
            assert [c.key for c in again] == ["k"]
        watch.close()
