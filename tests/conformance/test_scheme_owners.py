"""Who serves a URL scheme does not depend on what the process loaded before.

A built-in scheme and a scheme an installed distribution declares count as registered
before their plugin is imported: a runtime registration of one is refused (without
``replace=True``) whether or not it was opened earlier. Two distributions serving one
scheme are a :class:`~aurora_storage.errors.PluginConflictError` whichever was loaded
first, and a choice of distribution for one scheme never hands it another scheme.

Distributions are real: a ``.dist-info`` with ``aurora_storage`` entry points next to
their modules in a temporary site directory (see ``plugin_dists``), found by
``importlib.metadata`` in this process or, for the ``backends`` command and a fresh
interpreter, in a subprocess given the directory in ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from plugin_dists import install_dist, on_path

import aurora_storage
from aurora_storage._registry import registry
from aurora_storage.errors import ConfigurationError, PluginConflictError, PluginError
from aurora_storage.memory import MemoryBackend
from aurora_storage.plugins import (
    BackendSpec,
    hookimpl,
    plugin_failures,
    prefer_plugin,
    refresh_plugins,
    register_backend,
    register_plugin,
    unregister_backend,
)

# A plugin module serving every scheme of ``schemes`` with the memory backend, tagged
# with ``who`` so a test can tell which distribution served an open.
_SERVES = """
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url, options):
    from aurora_storage.memory import MemoryBackend

    backend = MemoryBackend()
    backend.served_by = {who!r}
    return backend


@hookimpl
def aurora_storage_backends():
    return [BackendSpec(scheme=s, open=_open, package={who!r}) for s in {schemes!r}]
"""

_MODULES = ("owners_",)


def _dist(site: Path, dist: str, entry_points: list[str], module: str, schemes: list[str]) -> None:
    """Install ``dist`` declaring ``entry_points`` (all naming ``module``), whose module
    serves ``schemes``."""
    source = _SERVES.format(who=dist.replace("_", "-"), schemes=schemes)
    install_dist(site, dist, dict.fromkeys(entry_points, module), {f"{module}.py": source})


def _served_by(url: str) -> str:
    with aurora_storage.open(url) as repo:
        who: str = repo.backend.served_by  # type: ignore[attr-defined]  # the test plugin's tag
        return who


def _impostor(url: Any, options: Any) -> MemoryBackend:
    backend = MemoryBackend()
    backend.served_by = "impostor"  # type: ignore[attr-defined]  # a tag the tests read
    return backend


def _register(how: str, scheme: str) -> None:
    """Register an impostor for ``scheme`` at run time, without ``replace``."""
    if how == "backend":
        register_backend(BackendSpec(scheme=scheme, open=_impostor))
    else:
        module = types.ModuleType(f"impostor_{scheme}")
        module.aurora_storage_backends = hookimpl(  # type: ignore[attr-defined]  # a module built at run time
            lambda: [BackendSpec(scheme=scheme, open=_impostor)]
        )
        register_plugin(module)


@pytest.fixture(autouse=True)
def _no_impostor_left() -> Iterator[None]:
    """An impostor a test registered (wrongly accepted) does not outlive the test."""
    yield
    for scheme in ["lmdb", "ownkv"]:
        unregister_backend(scheme)
        plugin = registry.pm.get_plugin(f"impostor_{scheme}")
        if plugin is not None:
            registry.pm.unregister(plugin)


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """The registry as a new process has it: no entry point loaded yet."""
    refresh_plugins()
    yield
    refresh_plugins()


@pytest.mark.parametrize("how", ["backend", "plugin"])
@pytest.mark.parametrize("preload", [False, True], ids=["fresh", "preloaded"])
def test_a_builtin_scheme_is_registered_before_it_is_loaded(
    fresh_registry: None, tmp_path: Path, how: str, preload: bool
) -> None:
    # Fresh, the impostor was accepted and lmdb:// opened a MemoryBackend: data written
    # through it was gone on reopen. Preloaded, the same call was refused.
    if preload:
        aurora_storage.open(f"lmdb://{tmp_path}/pre").close()
    with pytest.raises(ConfigurationError, match=r"'lmdb' .*is already registered") as info:
        _register(how, "lmdb")
    assert "aurora-storage" in str(info.value)
    assert "replace=True" in str(info.value)
    with aurora_storage.open(f"lmdb://{tmp_path}/store") as repo:
        repo.put("t", "k", "v")
    with aurora_storage.open(f"lmdb://{tmp_path}/store") as repo:
        assert type(repo.backend).__name__ == "LMDBBackend"
        assert repo.get("t", "k") == "v"


def test_a_builtin_scheme_is_registered_in_a_fresh_process(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import aurora_storage
        from aurora_storage.errors import ConfigurationError
        from aurora_storage.memory import MemoryBackend
        from aurora_storage.plugins import BackendSpec, register_backend
        try:
            register_backend(BackendSpec(scheme="lmdb", open=lambda u, o: MemoryBackend()))
            print("accepted")
        except ConfigurationError:
            print("refused")
        with aurora_storage.open("lmdb://{tmp_path}/s") as repo:
            print(type(repo.backend).__name__)
        """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["refused", "LMDBBackend"]


@pytest.fixture
def owner_site(tmp_path: Path) -> Iterator[Path]:
    """``aurora-owner`` declares and serves ``ownkv``."""
    site = tmp_path / "site"
    _dist(site, "aurora_owner", ["ownkv"], "owners_own", ["ownkv"])
    with on_path(site, *_MODULES):
        yield site


@pytest.mark.parametrize("how", ["backend", "plugin"])
@pytest.mark.parametrize("preload", [False, True], ids=["fresh", "preloaded"])
def test_an_installed_scheme_is_registered_before_it_is_loaded(
    owner_site: Path, how: str, preload: bool
) -> None:
    if preload:
        assert _served_by("ownkv://") == "aurora-owner"
    with pytest.raises(ConfigurationError, match=r"'ownkv' .*is already registered") as info:
        _register(how, "ownkv")
    assert "aurora-owner" in str(info.value)
    assert _served_by("ownkv://") == "aurora-owner"


def test_replace_then_unregister_gives_the_scheme_back(
    fresh_registry: None, owner_site: Path, tmp_path: Path
) -> None:
    # A replaced built-in stayed unreachable after unregister_backend when it had been
    # loaded before ("no backend for URL scheme 'lmdb'").
    aurora_storage.open(f"lmdb://{tmp_path}/pre").close()
    for scheme in ["lmdb", "ownkv"]:
        register_backend(BackendSpec(scheme=scheme, open=_impostor), replace=True)
        try:
            assert _served_by(f"{scheme}://") == "impostor"
        finally:
            unregister_backend(scheme)
    assert _served_by("ownkv://") == "aurora-owner"
    with aurora_storage.open(f"lmdb://{tmp_path}/after") as repo:
        assert type(repo.backend).__name__ == "LMDBBackend"


def test_unregister_backend_leaves_a_loaded_plugin_alone(owner_site: Path) -> None:
    assert _served_by("ownkv://") == "aurora-owner"
    unregister_backend("ownkv")  # not registered at run time: nothing to remove
    assert _served_by("ownkv://") == "aurora-owner"


_ORDERS = pytest.mark.parametrize("first", ["sharedkv", "multikv"])


@pytest.fixture
def undeclared_site(tmp_path: Path) -> Iterator[Path]:
    """``aurora-owner`` declares ``sharedkv``; ``aurora-multi`` declares only
    ``multikv`` but its module serves ``sharedkv`` too."""
    site = tmp_path / "site"
    _dist(site, "aurora_owner", ["sharedkv"], "owners_own", ["sharedkv"])
    _dist(site, "aurora_multi", ["multikv"], "owners_multi", ["multikv", "sharedkv"])
    with on_path(site, *_MODULES):
        yield site


@_ORDERS
def test_a_scheme_served_without_an_entry_point_is_a_failure(
    undeclared_site: Path, first: str
) -> None:
    # Opening multikv:// first made sharedkv:// open aurora-multi's backend; opening
    # sharedkv:// first made multikv:// fail, blaming aurora-owner.
    def multi() -> None:
        with pytest.raises(PluginError, match="aurora-multi") as info:
            aurora_storage.open("multikv://")
        assert "'sharedkv'" in str(info.value)
        assert "entry point" in str(info.value)
        assert "aurora-owner" not in str(info.value)

    if first == "multikv":
        multi()
        assert _served_by("sharedkv://") == "aurora-owner"
    else:
        assert _served_by("sharedkv://") == "aurora-owner"
        multi()
    assert "sharedkv" not in plugin_failures()
    assert "aurora-multi" in plugin_failures()["multikv"]


@pytest.fixture
def declared_site(tmp_path: Path) -> Iterator[Path]:
    """``aurora-owner`` and ``aurora-multi`` both declare ``sharedkv``; aurora-multi's
    module serves ``multikv`` as well."""
    site = tmp_path / "site"
    _dist(site, "aurora_owner", ["sharedkv"], "owners_own", ["sharedkv"])
    _dist(site, "aurora_multi", ["multikv", "sharedkv"], "owners_multi", ["multikv", "sharedkv"])
    with on_path(site, *_MODULES):
        yield site
    prefer_plugin("sharedkv", None)


@_ORDERS
def test_two_distributions_serving_one_scheme_conflict_in_any_order(
    declared_site: Path, first: str
) -> None:
    def shared() -> None:
        with pytest.raises(PluginConflictError) as info:
            aurora_storage.open("sharedkv://")
        assert info.value.distributions == ["aurora-multi", "aurora-owner"]

    if first == "multikv":
        assert _served_by("multikv://") == "aurora-multi"
        shared()
    else:
        shared()
        assert _served_by("multikv://") == "aurora-multi"
    prefer_plugin("sharedkv", "aurora-owner")
    assert _served_by("sharedkv://") == "aurora-owner"
    assert _served_by("multikv://") == "aurora-multi"


@_ORDERS
def test_a_choice_for_one_scheme_does_not_hand_over_another(
    declared_site: Path, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    # AURORA_STORAGE_PLUGINS=multikv=aurora-multi loaded aurora-multi's module for
    # multikv, which registered its sharedkv too: sharedkv:// went to it, no conflict.
    monkeypatch.setenv("AURORA_STORAGE_PLUGINS", "multikv=aurora-multi")
    refresh_plugins()
    order = ["multikv", "sharedkv"] if first == "multikv" else ["sharedkv", "multikv"]
    for scheme in order:
        if scheme == "multikv":
            assert _served_by("multikv://") == "aurora-multi"
        else:
            with pytest.raises(PluginConflictError):
                aurora_storage.open("sharedkv://")


def test_a_choice_of_a_builtin_scheme_does_not_hand_over_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The breaker's aurora-storage-evil declares memory and sqlkv: chosen for memory, it
    # took sqlkv too, though aurora-storage-sqlkv serves it.
    site = tmp_path / "site"
    _dist(site, "aurora_owner", ["sharedkv"], "owners_own", ["sharedkv"])
    _dist(site, "aurora_evil", ["memory", "sharedkv"], "owners_evil", ["memory", "sharedkv"])
    monkeypatch.setenv("AURORA_STORAGE_PLUGINS", "memory=aurora-evil")
    with on_path(site, *_MODULES):
        assert _served_by("memory://") == "aurora-evil"
        with pytest.raises(PluginConflictError) as info:
            aurora_storage.open("sharedkv://")
        assert info.value.distributions == ["aurora-evil", "aurora-owner"]
        monkeypatch.setenv("AURORA_STORAGE_PLUGINS", "sharedkv=aurora-owner")
        refresh_plugins()
        assert _served_by("sharedkv://") == "aurora-owner"
        with aurora_storage.open("memory://") as repo:
            assert not hasattr(repo.backend, "served_by")  # the built-in


def _backends(site: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "AURORA_STORAGE_PLUGINS"}
    # The site first, then whatever the tests run with (a checkout's src/).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "aurora_storage", "backends", "--json"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 6, result.stderr  # ExitCode.BROKEN_PLUGIN
    return {r["scheme"]: r for r in orjson.loads(result.stdout)}


def test_backends_command_blames_the_plugin_serving_an_undeclared_scheme(
    undeclared_site: Path,
) -> None:
    # It called sharedkv broken, "already registered (by aurora-multi)".
    rows = _backends(undeclared_site)
    assert rows["sharedkv"]["status"] == "ok"
    assert rows["sharedkv"]["package"] == "aurora-owner"
    assert rows["multikv"]["status"] == "broken"
    assert rows["multikv"]["package"] == "aurora-multi"
    assert "'sharedkv'" in rows["multikv"]["error"]
