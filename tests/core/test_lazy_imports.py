"""What ``import aurora_storage`` and a first open of a built-in scheme load: no asyncio
until async is used, and no entry-point scan for the schemes aurora-storage ships."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from aurora_storage._registry import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> object:
    """Run ``code`` in a fresh interpreter; its last printed line, as a literal."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    ).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_import_loads_no_asyncio() -> None:
    assert (
        _run("""
        import sys
        import aurora_storage
        print("asyncio" in sys.modules)
        """)
        is False
    )


def test_import_loads_no_plugin_machinery_until_a_plugin_is_needed() -> None:
    loaded = _run("""
        import sys
        import aurora_storage
        from aurora_storage.plugins import BackendSpec
        before = [m for m in ("pluggy", "importlib.metadata") if m in sys.modules]
        from aurora_storage.plugins import hookimpl
        print([before, "pluggy" in sys.modules, type(hookimpl).__name__])
        """)
    assert loaded == [[], True, "HookimplMarker"]


def test_sync_use_loads_no_asyncio_and_async_names_still_resolve() -> None:
    loaded = _run("""
        import sys
        import aurora_storage
        with aurora_storage.open("memory://") as repo:
            repo.put("t", "k", 1)
            assert repo.get("t", "k") == 1
        before = "asyncio" in sys.modules
        from aurora_storage import AsyncRepository, AsyncWatch
        async_repo = aurora_storage.open_async("memory://")
        assert isinstance(async_repo, AsyncRepository)
        print([before, "asyncio" in sys.modules, AsyncWatch.__name__])
        """)
    assert loaded == [False, True, "AsyncWatch"]


def test_opening_built_in_schemes_scans_no_entry_points(tmp_path: Path) -> None:
    scanned = _run(f"""
        import aurora_storage
        from aurora_storage._registry import registry
        for url in ("memory://", "rocksdb://{tmp_path}/r", "lmdb://{tmp_path}/l"):
            aurora_storage.open(url).close()
        print([registry._entry_points is not None, registry.distribution("rocksdb")])
        """)
    assert scanned == [False, "aurora-storage"]


def test_an_unknown_scheme_still_scans() -> None:
    scanned = _run("""
        import aurora_storage
        from aurora_storage._registry import registry
        try:
            aurora_storage.open("nosuchscheme://")
        except aurora_storage.BackendNotFoundError:
            pass
        print(registry._entry_points is not None)
        """)
    assert scanned is True


def test_built_in_plugins_are_the_declared_entry_points() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["aurora_storage"] == BUILTIN_PLUGINS
