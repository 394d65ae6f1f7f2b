"""The plugin registry: lazy entry points, broken plugins, install hints, runtime rules.

Entry-point plugins are installed for real: a package and a ``.dist-info`` written into
a temporary directory put on ``sys.path``, exactly what pip leaves in site-packages.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage import (
    BackendNotFoundError,
    BackendSpec,
    Codec,
    ConfigurationError,
    InvalidURLError,
    PluginError,
)
from aurora_storage._registry import registry
from aurora_storage.memory._backend import MemoryBackend
from aurora_storage.plugins import (
    hookimpl,
    installed_schemes,
    plugin_failures,
    register_backend,
    register_plugin,
    unregister_backend,
)

_PLUGIN = '''
"""Light entry-point module of a third-party plugin: imports no engine."""
from aurora_storage.plugins import BackendSpec, hookimpl


def _open(url, options):
    from ._engine import LazyBackend  # the "engine" is imported only when opening

    return LazyBackend()


@hookimpl
def aurora_storage_backends():
    return [BackendSpec(scheme="lazykv", open=_open, package="aurora-lazykv")]
'''

_ENGINE = """
from aurora_storage.memory._backend import MemoryBackend


class LazyBackend(MemoryBackend):
    scheme = "lazykv"
"""

_BROKEN = "raise ImportError('needs libmissing.so')\n"


def _dist_info(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[aurora_storage]\n{lines}")


def _forget_modules() -> None:
    for name in [m for m in sys.modules if m.startswith(("aurora_lazykv", "aurora_brokenkv"))]:
        del sys.modules[name]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A temporary site-packages with a lazy plugin and a plugin that fails to import."""
    site = tmp_path / "site-packages"
    pkg = site / "aurora_lazykv"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_plugin.py").write_text(_PLUGIN)
    (pkg / "_engine.py").write_text(_ENGINE)
    _dist_info(site, "aurora_lazykv", {"lazykv": "aurora_lazykv._plugin"})
    (site / "aurora_brokenkv.py").write_text(_BROKEN)
    _dist_info(site, "aurora_brokenkv", {"brokenkv2": "aurora_brokenkv"})
    _forget_modules()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    registry.refresh()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in ("entrypoint:lazykv", "entrypoint:brokenkv2"):
            plugin = registry.pm.get_plugin(name)
            if plugin is not None:
                registry.pm.unregister(plugin)
        unregister_backend("lazykv")
        registry._loaded -= {"lazykv", "brokenkv2"}
        _forget_modules()
        importlib.invalidate_caches()
        registry.refresh()


def test_entry_point_scheme_is_listed_without_importing_it(site: Path) -> None:
    assert "lazykv" in installed_schemes()
    assert "aurora_lazykv._plugin" not in sys.modules
    assert "aurora_brokenkv" not in sys.modules


def test_opening_imports_the_plugin_then_its_engine(site: Path) -> None:
    spec = registry.lookup("lazykv")
    assert "aurora_lazykv._plugin" in sys.modules
    assert "aurora_lazykv._engine" not in sys.modules
    assert spec.package == "aurora-lazykv"
    with aurora_storage.open("lazykv://") as repo:
        assert "aurora_lazykv._engine" in sys.modules
        assert type(repo.backend).__name__ == "LazyBackend"
        repo.put("t", "k", 1)
        assert repo.get("t", "k") == 1
    # Opening an entry-point scheme loads only that plugin, not the broken one.
    assert "aurora_brokenkv" not in sys.modules
    assert "brokenkv2" not in plugin_failures()


def test_broken_plugin_is_reported_and_does_not_break_others(site: Path) -> None:
    with pytest.raises(BackendNotFoundError) as info:
        aurora_storage.open("brokenkv2://")
    message = str(info.value)
    assert "installed but failed to load" in message
    assert "needs libmissing.so" in message
    assert isinstance(info.value.__cause__, ImportError)
    assert plugin_failures()["brokenkv2"] == (
        "the plugin for scheme 'brokenkv2' (distribution aurora_brokenkv) is installed but "
        "failed to load: ImportError: needs libmissing.so"
    )
    # Every other plugin still works, the entry-point one and the built-in one.
    with aurora_storage.open("lazykv://") as repo:
        repo.put("t", "k", 1)
    with aurora_storage.open("memory://") as repo:
        repo.put("t", "k", 1)
    # A scan over every plugin (an unknown scheme) still lists the good ones.
    with pytest.raises(BackendNotFoundError, match="lazykv"):
        aurora_storage.open("nosuchscheme://")


def test_fixed_plugin_loads_after_refresh(site: Path) -> None:
    with pytest.raises(BackendNotFoundError, match="failed to load"):
        registry.lookup("brokenkv2")
    # The missing dependency gets installed: the module now imports.
    (site / "aurora_brokenkv.py").write_text(_PLUGIN.replace('"lazykv"', '"brokenkv2"'))
    sys.modules.pop("aurora_brokenkv", None)
    importlib.invalidate_caches()
    registry.refresh()
    assert registry.lookup("brokenkv2").scheme == "brokenkv2"
    assert "brokenkv2" not in plugin_failures()
    unregister_backend("brokenkv2")


def test_not_found_names_installed_schemes_and_install_hint() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        aurora_storage.open("redis://localhost:6379/0")
    message = str(info.value)
    assert "no backend for URL scheme 'redis'" in message
    # No package of that name is known to exist: no guessed install hint.
    assert "pip install" not in message
    for scheme in ("memory", "rocksdb", "lmdb", "tiered"):
        assert scheme in message
    assert info.value.backend == "redis"
    assert isinstance(info.value, LookupError)
    with pytest.raises(BackendNotFoundError) as info2:
        aurora_storage.open("unheardof://")
    assert "pip install" not in str(info2.value)
    assert "memory" in str(info2.value)
    # A scheme we ship as an extra names it (nats is installed here, so ask directly).
    # (aurora-storage is installed from a clone: the hint says so.)
    assert "pip install '.[nats]' from a clone" in str(registry._not_found("nats"))


def test_memory_registers_exactly_like_an_outside_plugin() -> None:
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="aurora_storage")}
    assert eps["memory"] == "aurora_storage.memory._plugin"
    registry.lookup("memory")
    plugin = registry.pm.get_plugin("entrypoint:memory")
    assert plugin is sys.modules["aurora_storage.memory._plugin"]
    assert registry.specs()["memory"].package == "aurora-storage"


def _spec(scheme: str) -> BackendSpec:
    return BackendSpec(scheme, lambda url, options: MemoryBackend(), "runtime test backend")


def test_runtime_register_replace_and_unregister() -> None:
    first, second = _spec("rtkv"), _spec("rtkv")
    register_backend(first)
    try:
        assert "rtkv" in installed_schemes()
        register_backend(first)  # the same spec again is harmless
        with pytest.raises(ConfigurationError, match="already registered"):
            register_backend(second)
        assert registry.lookup("rtkv") is first
        register_backend(second, replace=True)
        assert registry.lookup("rtkv") is second
        with aurora_storage.open("RTKV://") as repo:  # schemes are case-insensitive
            repo.put("t", "k", 1)
    finally:
        unregister_backend("rtkv")
    assert "rtkv" not in installed_schemes()
    unregister_backend("rtkv")  # absent: no error
    with pytest.raises(BackendNotFoundError):
        registry.lookup("rtkv")


def test_runtime_cannot_silently_take_over_a_plugin_scheme() -> None:
    registry.lookup("memory")
    with pytest.raises(ConfigurationError, match="already registered"):
        register_backend(_spec("memory"))

    class Usurper:
        @hookimpl
        def aurora_storage_backends(self) -> list[BackendSpec]:
            return [_spec("memory")]

    with pytest.raises(ConfigurationError, match="refusing to replace"):
        register_plugin(Usurper())
    assert registry.lookup("memory").package == "aurora-storage"


def test_register_plugin_object() -> None:
    class Plugin:
        @hookimpl
        def aurora_storage_backends(self) -> list[BackendSpec]:
            return [_spec("objkv")]

    plugin = Plugin()
    register_plugin(plugin, name="test-objkv")
    try:
        register_plugin(plugin, name="test-objkv")  # idempotent
        with aurora_storage.open("objkv://") as repo:
            repo.put("t", "k", 1)
    finally:
        registry.pm.unregister(plugin)
        unregister_backend("objkv")


def test_plugin_returning_a_non_backend_is_a_typed_error() -> None:
    register_backend(BackendSpec("weirdkv", lambda url, options: object()))
    try:
        with pytest.raises(BackendNotFoundError, match="not a Backend"):
            aurora_storage.open("weirdkv://")
    finally:
        unregister_backend("weirdkv")


_HEAVY = "rocksdict", "lmdb", "aurora_storage_rocksdb._backend", "aurora_storage_lmdb._backend"


def _engines_loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return which engine modules it imported."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(sorted(m for m in {_HEAVY!r} if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = ast.literal_eval(out)
    return loaded


def test_import_does_not_import_engines() -> None:
    assert _engines_loaded_after("import aurora_storage") == []


def test_using_memory_does_not_import_engines() -> None:
    code = """
    import aurora_storage
    with aurora_storage.open("memory://") as repo:
        repo.put("t", "k", 1)
    """
    assert _engines_loaded_after(code) == []


def test_loading_every_plugin_imports_no_engine() -> None:
    # A listing (what `aurora-storage backends` does) loads every entry-point module,
    # which must be light: engines are imported only when a store of that scheme opens.
    code = """
    from aurora_storage._registry import registry
    registry.specs()
    """
    assert _engines_loaded_after(code) == []


def test_lazy_top_level_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aurora_storage.nope  # noqa: B018
    tiered_cls: Any = aurora_storage.TieredRepository
    assert tiered_cls.__name__ == "TieredRepository"


def test_upper_case_schemes_are_refused() -> None:
    # BackendSpec(scheme="MixedKV") was registered as "mixedkv" without a word. URLs
    # lower-case their scheme, so a spec states it in lower case (the stricter choice).
    with pytest.raises(ConfigurationError, match="lower case") as info:
        register_backend(_spec("MixedKV"))
    assert "'mixedkv'" in str(info.value)
    assert "mixedkv" not in installed_schemes()

    class Plugin:
        @hookimpl
        def aurora_storage_backends(self) -> list[BackendSpec]:
            return [_spec("UPPERKV")]

    with pytest.raises(ConfigurationError, match="lower case"):
        register_plugin(Plugin())
    assert "upperkv" not in installed_schemes()


def _hook_plugin(name: str, hook: Callable[[], Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.aurora_storage_backends = hookimpl(hook)  # type: ignore[attr-defined]  # a module built at run time
    return module


def _raise() -> Any:
    return 1 / 0


@pytest.mark.parametrize(
    ("hook", "cause"),
    [
        (_raise, ZeroDivisionError),
        (lambda: None, None),
        (lambda: {"scheme": "dictkv"}, None),
        (lambda: "strkv", None),
        (lambda: [_spec("halfkv"), "not a spec"], None),
    ],
    ids=["raises", "none", "dict", "str", "half-good"],
)
def test_register_plugin_with_a_failing_backends_hook_is_a_typed_error(
    hook: Callable[[], Any], cause: type[BaseException] | None
) -> None:
    # A raising hook gave a raw ZeroDivisionError, one returning None a raw TypeError.
    module = _hook_plugin("test_failing_backends", hook)
    with pytest.raises(ConfigurationError, match="test_failing_backends") as info:
        register_plugin(module)
    assert "aurora_storage_backends()" in str(info.value)
    if cause is not None:
        assert isinstance(info.value.__cause__, cause)
    # Nothing half-registered: neither the plugin nor any of its schemes.
    assert not registry.pm.is_registered(module)
    assert "halfkv" not in installed_schemes()


@pytest.mark.parametrize(
    "plugin", [None, 42, "memory", object()], ids=["none", "int", "str", "object"]
)
def test_register_plugin_refuses_what_is_not_a_plugin(plugin: object) -> None:
    # register_plugin(None) and register_plugin(42) were accepted without a word.
    with pytest.raises(ConfigurationError, match="implements no aurora_storage hook"):
        register_plugin(plugin)
    assert not registry.pm.is_registered(plugin)


def test_an_open_raising_a_foreign_error_is_a_plugin_error() -> None:
    # A PermissionError from a plugin's open reached the caller of aurora_storage.open raw.
    def _open(url: Any, options: Any) -> Any:
        raise PermissionError(13, "permission denied")

    register_backend(BackendSpec("permkv", _open, package="aurora-permkv"))
    try:
        with pytest.raises(PluginError, match="permkv") as info:
            aurora_storage.open("permkv://")
        assert isinstance(info.value.__cause__, PermissionError)
        assert info.value.backend == "permkv"
        assert "PermissionError" in str(info.value)
        assert "aurora-permkv" in str(info.value)
    finally:
        unregister_backend("permkv")


def test_an_open_raising_a_storage_error_is_not_rewrapped() -> None:
    refused = ConfigurationError("mykv needs a path", backend="typedkv")

    def _open(url: Any, options: Any) -> Any:
        raise refused

    register_backend(BackendSpec("typedkv", _open))
    try:
        with pytest.raises(ConfigurationError) as info:
            aurora_storage.open("typedkv://")
        assert info.value is refused
    finally:
        unregister_backend("typedkv")
    # A built-in backend's typed error comes out as it is too.
    with pytest.raises(InvalidURLError) as url_info:
        aurora_storage.open("memory://?nosuchoption=1")
    assert not isinstance(url_info.value, PluginError)


def test_an_async_open_is_refused_and_its_coroutine_closed() -> None:
    async def _aopen(url: Any, options: Any) -> Any:
        return MemoryBackend()

    # Declared async: refused when registered, not at the first open.
    with pytest.raises(ConfigurationError, match="async def"):
        register_backend(BackendSpec("asynckv", _aopen))
    assert "asynckv" not in installed_schemes()
    # A plain callable that hands back a coroutine: refused at open, the coroutine
    # closed (it was left for the garbage collector: "coroutine ... was never awaited").
    made: list[Any] = []

    def _open(url: Any, options: Any) -> Any:
        made.append(_aopen(url, options))
        return made[-1]

    register_backend(BackendSpec("corokv", _open))
    try:
        with pytest.raises(BackendNotFoundError, match="coroutine"):
            aurora_storage.open("corokv://")
        assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED
    finally:
        unregister_backend("corokv")


@pytest.mark.parametrize("scheme", ["", "1kv", "my kv", "kv/x", "kv:"])
def test_invalid_schemes_are_refused(scheme: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid URL scheme"):
        register_backend(_spec(scheme))
    assert scheme.lower() not in installed_schemes()


def test_malformed_specs_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="expected a BackendSpec"):
        register_backend("memory")  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(ConfigurationError, match="not callable"):
        register_backend(BackendSpec("nocallkv", "open"))  # type: ignore[arg-type]  # wrong on purpose


def test_a_second_plugin_under_a_taken_name_gets_a_short_message() -> None:
    # It said "Plugin name already registered: p=<module 'p'>" followed by pluggy's whole
    # registry (every plugin module with its file path), twice (message and cause).
    first = _hook_plugin("test_dupname", lambda: [_spec("dupkv")])
    second = _hook_plugin("test_dupname", lambda: [_spec("dupkv2")])
    register_plugin(first)
    try:
        with pytest.raises(ConfigurationError) as info:
            register_plugin(second)
        message = str(info.value)
        assert "'test_dupname'" in message
        assert "already registered" in message
        assert "name=" in message  # the way out: a distinct name
        assert "entrypoint:" not in message
        assert "{" not in message
        assert isinstance(info.value.__cause__, ValueError)  # pluggy's own, chained
        assert not registry.pm.is_registered(second)
        assert "dupkv2" not in installed_schemes()
        register_plugin(second, name="test_dupname_2")  # a distinct name works
        registry.pm.unregister(second)
    finally:
        registry.pm.unregister(first)
        unregister_backend("dupkv")
        unregister_backend("dupkv2")


def test_a_plugin_class_with_instance_method_hooks_is_refused() -> None:
    # Registering the class instead of an instance was accepted; its codec hook then
    # failed on every lookup ("missing 1 required positional argument: 'self'").
    codec = Codec("classcodec", lambda v: repr(v).encode(), lambda b: b)

    class Plugin:
        @hookimpl
        def aurora_storage_codecs(self) -> list[Codec[Any]]:
            return [codec]

    with pytest.raises(ConfigurationError, match=r"register_plugin\(Plugin\(\)\)"):
        register_plugin(Plugin)
    assert not registry.pm.is_registered(Plugin)
    assert "Plugin" not in plugin_failures()


def test_a_plugin_class_with_static_hooks_works() -> None:
    # A class is a namespace as a module is: hooks that need no instance work.
    class Plugin:
        @staticmethod
        @hookimpl
        def aurora_storage_backends() -> list[BackendSpec]:
            return [_spec("statickv")]

    register_plugin(Plugin, name="test-statickv")
    try:
        with aurora_storage.open("statickv://") as repo:
            repo.put("t", "k", 1)
    finally:
        registry.pm.unregister(Plugin)
        unregister_backend("statickv")


def test_a_builtin_backend_raising_a_foreign_error_is_called_a_bug_in_aurora_storage() -> None:
    # It said "report this to the plugin's authors" of lmdb, as if lmdb were a third
    # party's plugin.
    registry.lookup("memory")
    err = registry.open_failed("memory", registry.lookup("memory"), TypeError("boom"))
    assert "a bug in aurora-storage" in err.message
    assert "plugin's authors" not in err.message
    outside = registry.open_failed(
        "permkv", BackendSpec("permkv", lambda u, o: None, package="aurora-permkv"), OSError()
    )
    assert "plugin's authors" in outside.message
