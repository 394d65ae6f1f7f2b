"""Plugin loading through real entry points: conflicts, plugins that register nothing or
another scheme, engines that fail to import inside open, install hints, refresh, and the
``backends`` command's table.

Each case is a small distribution written into a temporary site directory (a
``.dist-info`` with an ``aurora_storage`` entry point next to its module, as pip lays it
out) and found by ``importlib.metadata`` - in this process after
:func:`~aurora_storage.plugins.refresh_plugins`, or in a subprocess given the directory
in ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from plugin_dists import install_dist, on_path

import aurora_storage
from aurora_storage._registry import KNOWN_PACKAGES
from aurora_storage.errors import (
    BackendNotFoundError,
    ConfigurationError,
    InvalidArgumentError,
    PluginConflictError,
    PluginError,
)
from aurora_storage.plugins import (
    BackendSpec,
    installed_schemes,
    plugin_failures,
    prefer_plugin,
    refresh_plugins,
    register_backend,
    unregister_backend,
)

# A plugin module serving ``scheme`` with the memory backend, tagged with ``who`` so a
# test can tell which distribution served an open.
_SERVES = """
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url, options):
    from aurora_storage.memory import MemoryBackend

    backend = MemoryBackend()
    backend.served_by = {who!r}
    return backend


@hookimpl
def aurora_storage_backends():
    return [BackendSpec(scheme={scheme!r}, open=_open, package={who!r})]
"""

_NO_HOOK = '''
"""A plugin module that forgot its @hookimpl function."""


def backends():
    return []
'''

# The plugin's module imports fine; its engine is imported inside open (as the docs
# advise) and is not installed.
_ENGINE_MISSING = """
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url, options):
    import aurora_no_such_engine_xyz  # noqa: F401

    raise AssertionError("unreachable")


@hookimpl
def aurora_storage_backends():
    return [BackendSpec(scheme="needsengine", open=_open, package="aurora-needsengine")]
"""

# The hook is there but returns no backend: a forgotten spec, not a codecs-only plugin.
_EMPTY_HOOK = """
from aurora_storage.plugins import hookimpl


@hookimpl
def aurora_storage_backends():
    return []
"""

_CODECS_ONLY = """
from aurora_storage.codecs import Codec
from aurora_storage.plugins import hookimpl


@hookimpl
def aurora_storage_codecs():
    return [Codec(name="reversed-utf8", encode=lambda v: v[::-1].encode(),
                  decode=lambda b: b.decode()[::-1])]
"""

_MODULES = ("plug_",)


def _plugin(site: Path, dist: str, entry: str, module: str, source: str, **fmt: str) -> None:
    install_dist(site, dist, {entry: module}, {f"{module}.py": source.format(**fmt)})


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A site directory with one distribution of each kind, on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    _plugin(site, "aurora_kv_a", "dupkv", "plug_a", _SERVES, scheme="dupkv", who="aurora-kv-a")
    _plugin(site, "aurora_kv_b", "dupkv", "plug_b", _SERVES, scheme="dupkv", who="aurora-kv-b")
    _plugin(site, "aurora_nohook", "nohook", "plug_nohook", _NO_HOOK)
    _plugin(site, "aurora_named", "named", "plug_named", _SERVES, scheme="other", who="x")
    _plugin(site, "aurora_needsengine", "needsengine", "plug_engine", _ENGINE_MISSING)
    _plugin(site, "aurora_revcodec", "revcodec", "plug_codec", _CODECS_ONLY)
    _plugin(site, "aurora_emptyhook", "emptyhook", "plug_empty", _EMPTY_HOOK)
    with on_path(site, *_MODULES):
        yield site
    prefer_plugin("dupkv", None)


def test_two_distributions_claiming_a_scheme_are_named(site: Path) -> None:
    with pytest.raises(PluginConflictError) as info:
        aurora_storage.open("dupkv://")
    err = info.value
    assert isinstance(err, BackendNotFoundError)  # existing handlers still catch it
    assert err.distributions == ["aurora-kv-a", "aurora-kv-b"]
    assert "aurora-kv-a (plug_a)" in str(err)
    assert "aurora-kv-b (plug_b)" in str(err)
    assert "prefer_plugin('dupkv', 'aurora-kv-a')" in str(err)
    assert "AURORA_STORAGE_PLUGINS='dupkv=aurora-kv-a'" in str(err)
    assert "aurora-kv-a" in plugin_failures()["dupkv"]


def test_prefer_plugin_chooses_one(site: Path) -> None:
    prefer_plugin("dupkv", "Aurora_KV.B")  # compared as pip compares names
    with aurora_storage.open("dupkv://") as repo:
        assert repo.backend.served_by == "aurora-kv-b"  # type: ignore[attr-defined]  # the test plugin's backend
    prefer_plugin("dupkv", "aurora-kv-a")
    with aurora_storage.open("dupkv://") as repo:
        assert repo.backend.served_by == "aurora-kv-a"  # type: ignore[attr-defined]  # the test plugin's backend
    prefer_plugin("dupkv", None)
    with pytest.raises(PluginConflictError):
        aurora_storage.open("dupkv://")


def test_environment_variable_chooses_one(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AURORA_STORAGE_PLUGINS", "memory=aurora-storage, dupkv=aurora-kv-b")
    refresh_plugins()
    with aurora_storage.open("dupkv://") as repo:
        assert repo.backend.served_by == "aurora-kv-b"  # type: ignore[attr-defined]  # the test plugin's backend


def test_a_choice_of_a_distribution_that_does_not_serve_the_scheme(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AURORA_STORAGE_PLUGINS", "dupkv=aurora-kv-c")
    refresh_plugins()
    with pytest.raises(PluginError, match="aurora-kv-a, aurora-kv-b") as info:
        aurora_storage.open("dupkv://")
    assert "'aurora-kv-c'" in str(info.value)


def test_an_entry_point_without_a_hook_is_reported(site: Path) -> None:
    with pytest.raises(PluginError, match="implements no aurora_storage hook") as info:
        aurora_storage.open("nohook://")
    assert info.value.distribution == "aurora-nohook"
    assert "distribution aurora-nohook" in plugin_failures()["nohook"]


def test_an_entry_point_whose_hook_returns_no_backend_is_reported(site: Path) -> None:
    # It was taken for a codecs-only plugin: open said "no backend for URL scheme" with
    # no word of the installed distribution, and plugin_failures() was empty.
    with pytest.raises(PluginError, match="returned no backend") as info:
        aurora_storage.open("emptyhook://")
    assert info.value.distribution == "aurora-emptyhook"
    assert "aurora-emptyhook" in plugin_failures()["emptyhook"]


def test_messages_name_distribution_and_module_once(site: Path) -> None:
    with pytest.raises(PluginError) as info:
        aurora_storage.open("named://")
    assert "(distribution aurora-named, module plug_named)" in str(info.value)
    assert ") (" not in str(info.value)


@pytest.mark.parametrize("scheme", [None, "", "1bad", "has space", 42])
def test_prefer_plugin_refuses_a_bad_scheme(scheme: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="scheme"):
        prefer_plugin(scheme, "aurora-kv-a")


@pytest.mark.parametrize("dist", ["", "  ", 42])
def test_prefer_plugin_refuses_a_bad_distribution(dist: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="distribution"):
        prefer_plugin("dupkv", dist)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("garbage", "scheme=distribution"),
        ("dupkv=", "scheme=distribution"),
        ("=aurora-kv-a", "scheme=distribution"),
        ("dupkv=aurora-kv-a,dupkv=aurora-kv-b", "twice"),
    ],
)
def test_a_malformed_environment_variable_is_an_error(
    site: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    # It was ignored (or its first choice silently taken): the user's choice lost.
    monkeypatch.setenv("AURORA_STORAGE_PLUGINS", value)
    refresh_plugins()
    with pytest.raises(ConfigurationError, match=message) as info:
        aurora_storage.open("dupkv://")
    assert "AURORA_STORAGE_PLUGINS" in str(info.value)


def test_an_entry_point_serving_another_scheme_is_reported(site: Path) -> None:
    with pytest.raises(PluginError, match="serves 'other' but not 'named'") as info:
        aurora_storage.open("named://")
    assert info.value.distribution == "aurora-named"
    assert "aurora-named" in plugin_failures()["named"]
    # Its other scheme is not registered behind the user's back either.
    with pytest.raises(BackendNotFoundError):
        aurora_storage.open("other://")


def test_an_engine_import_failing_inside_open_is_a_plugin_failure(site: Path) -> None:
    with pytest.raises(PluginError) as info:
        aurora_storage.open("needsengine://")
    err = info.value
    assert not isinstance(err, ModuleNotFoundError)
    assert isinstance(err.__cause__, ModuleNotFoundError)
    assert err.distribution == "aurora-needsengine"
    assert "'aurora_no_such_engine_xyz'" in str(err)
    assert "install aurora-needsengine again with its dependencies" in str(err)
    assert "aurora_no_such_engine_xyz" in plugin_failures()["needsengine"]


def test_an_engine_missing_for_a_runtime_registration_names_no_distribution() -> None:
    def _open(url: Any, options: Any) -> Any:
        import aurora_no_such_engine_xyz  # type: ignore[import-not-found]  # noqa: F401  # the missing engine this test is about

        raise AssertionError("unreachable")

    register_backend(BackendSpec("rtengine", _open, "runtime test backend"))
    try:
        with pytest.raises(PluginError) as info:
            aurora_storage.open("rtengine://")
        assert "install the package that provides it" in str(info.value)
        assert "(registered at run time) again" not in str(info.value)
    finally:
        unregister_backend("rtengine")


def test_a_codecs_only_plugin_is_not_a_scheme_nor_a_failure(site: Path) -> None:
    with aurora_storage.open("memory://", codec="reversed-utf8") as repo:
        repo.put("t", "k", "abc")
        assert repo.get("t", "k") == "abc"
        assert b"cba" in [v for _, v in repo.backend.scan(b"\x01", b"\xff")]
    assert "revcodec" not in installed_schemes()
    assert "revcodec" not in plugin_failures()


_CODECS_RAISE = """
from aurora_storage.plugins import hookimpl


@hookimpl
def aurora_storage_codecs():
    raise RuntimeError("codec table missing")
"""


def test_a_codecs_entry_point_that_raises_is_reported_and_isolated(tmp_path: Path) -> None:
    # Its error came out of every codec lookup, and plugin_failures() stayed empty.
    site = tmp_path / "codecsite"
    site.mkdir()
    _plugin(site, "aurora_badcodecs", "badcodecs", "plug_badcodecs", _CODECS_RAISE)
    _plugin(site, "aurora_revcodec", "revcodec", "plug_codec", _CODECS_ONLY)
    with on_path(site, *_MODULES):
        assert "reversed-utf8" in aurora_storage.available_codecs()
        failure = plugin_failures()["badcodecs"]
        assert "distribution aurora-badcodecs" in failure
        assert "RuntimeError: codec table missing" in failure
        with pytest.raises(PluginError, match="badcodecs") as info:
            aurora_storage.open("memory://", codec="nosuchcodec")
        assert isinstance(info.value.__cause__, RuntimeError)
        with aurora_storage.open("memory://", codec="reversed-utf8") as repo:
            repo.put("t", "k", "abc")
            assert repo.get("t", "k") == "abc"
    assert "badcodecs" not in plugin_failures()


def test_other_plugins_still_open(site: Path, tmp_path: Path) -> None:
    for scheme in ["dupkv", "nohook", "named", "needsengine"]:
        with pytest.raises(BackendNotFoundError):
            aurora_storage.open(f"{scheme}://")
    with aurora_storage.open(f"lmdb://{tmp_path}/x") as repo:
        repo.put("t", "k", 1)


def test_refresh_plugins_finds_a_plugin_installed_while_running(tmp_path: Path) -> None:
    site = tmp_path / "late"
    site.mkdir()
    with on_path(site, "plug_late"):
        with pytest.raises(BackendNotFoundError):
            aurora_storage.open("latekv://")
        _plugin(site, "aurora_late", "latekv", "plug_late", _SERVES, scheme="latekv", who="l")
        refresh_plugins()
        with aurora_storage.open("latekv://") as repo:
            assert repo.backend.served_by == "l"  # type: ignore[attr-defined]  # the test plugin's backend
    # Uninstalled (off the path) and refreshed: forgotten, not served from a stale load.
    assert "latekv" not in installed_schemes()
    with pytest.raises(BackendNotFoundError):
        aurora_storage.open("latekv://")


def test_install_hints_name_only_packages_that_exist() -> None:
    for scheme in ["sqlite", "redis", "nosuchscheme"]:
        with pytest.raises(BackendNotFoundError) as info:
            aurora_storage.open(f"{scheme}://x")
        assert "pip install" not in str(info.value), scheme
    ours = importlib.metadata.metadata("aurora-storage").get_all("Provides-Extra") or []
    for scheme, extra in KNOWN_PACKAGES.items():
        # Every hint is an extra of this distribution (a package that exists).
        assert extra in ours, scheme


def _backends(site: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    full = {k: v for k, v in os.environ.items() if k != "AURORA_STORAGE_PLUGINS"}
    full.update(env, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-m", "aurora_storage", "backends", "--json"],
        capture_output=True,
        env=full,
        timeout=120,
        check=False,
    )


def test_backends_command_lists_every_broken_plugin(site: Path) -> None:
    result = _backends(site)
    assert result.returncode == 6, result.stderr  # ExitCode.BROKEN_PLUGIN
    rows: dict[str, Any] = {r["scheme"]: r for r in orjson.loads(result.stdout)}
    assert rows["memory"]["status"] == "ok"
    assert rows["dupkv"]["status"] == "broken"
    assert "aurora-kv-a" in rows["dupkv"]["error"]
    assert "aurora-kv-b" in rows["dupkv"]["error"]
    assert rows["nohook"]["package"] == "aurora-nohook"
    assert "no aurora_storage hook" in rows["nohook"]["error"]
    assert "but not 'named'" in rows["named"]["error"]
    assert "revcodec" not in rows


def test_backends_command_exits_0_when_every_plugin_loads(tmp_path: Path) -> None:
    site = tmp_path / "fine"
    site.mkdir()
    _plugin(site, "aurora_kv_a", "dupkv", "plug_a", _SERVES, scheme="dupkv", who="aurora-kv-a")
    _plugin(site, "aurora_kv_b", "dupkv", "plug_b", _SERVES, scheme="dupkv", who="aurora-kv-b")
    result = _backends(site, AURORA_STORAGE_PLUGINS="dupkv=aurora-kv-b")
    assert result.returncode == 0, result.stdout
    rows = {r["scheme"]: r for r in orjson.loads(result.stdout)}
    assert rows["dupkv"] == {
        "scheme": "dupkv",
        "status": "ok",
        "description": "",
        "package": "aurora-kv-b",
    }
