"""Plugin hooks: how backends and codecs join aurora-storage.

A plugin is a module (or object) with pluggy hook implementations, announced through
the entry-point group ``aurora_storage`` where the entry-point *name* is the URL scheme
it serves, so that nothing is imported until a URL of that scheme is opened::

    # pyproject.toml of a plugin
    [project.entry-points.aurora_storage]
    mykv = "aurora_storage_mykv._plugin"

    # aurora_storage_mykv/_plugin.py  (light: imports no engine)
    from aurora_storage.plugins import BackendSpec, hookimpl

    def _open(url, options):
        from ._backend import MyKVBackend   # the engine is imported only here
        return MyKVBackend.from_url(url, options)

    @hookimpl
    def aurora_storage_backends():
        return [BackendSpec(scheme="mykv", open=_open, package="aurora-storage-mykv")]

A plugin serving several schemes declares each as an entry point (they may name the
same module): loading an entry point registers its own scheme only, so who serves a
scheme is known from the entry points, not from which plugin was imported first.

Tests and frozen applications can skip entry points: :func:`register_backend` and
:func:`register_plugin` do the same at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The hook specifications live in their own module, which the registry imports too:
# this facade imports the registry, never the other way round. BackendSpec needs no
# pluggy; hookimpl and hookspec (pluggy's markers) are imported on first use (module
# __getattr__ below), so `import aurora_storage` does not load pluggy.
from ._backendspec import PROJECT, BackendSpec

if TYPE_CHECKING:
    from ._hookspecs import hookimpl, hookspec

__all__ = [
    "PROJECT",
    "BackendSpec",
    "hookimpl",
    "hookspec",
    "installed_schemes",
    "plugin_failures",
    "prefer_plugin",
    "refresh_plugins",
    "register_backend",
    "register_plugin",
    "unregister_backend",
]


def register_backend(spec: BackendSpec, *, replace: bool = False) -> None:
    """Register a backend at run time (tests, frozen apps).

    A registration serves its scheme before any entry point; ``replace=True`` is needed
    to take a scheme that is registered already, and a built-in scheme or one an
    installed distribution declares counts as registered whether or not its plugin was
    loaded yet (the answer does not depend on what the process opened before).

    Raises:
        ConfigurationError: the scheme is already registered (at run time, built in,
            or declared by an installed distribution) and ``replace`` is false;
            ``spec`` is not a :class:`BackendSpec`, its scheme is not a lower-case URL
            scheme, or its ``open`` is not callable or is an ``async def``.
    """
    from ._registry import registry

    registry.register_spec(spec, replace=replace)


def unregister_backend(scheme: str) -> None:
    """Remove a runtime-registered scheme (no error if absent); a built-in or installed
    plugin it replaced serves the scheme again. Schemes served by entry points are not
    affected."""
    from ._registry import registry

    registry.unregister_spec(scheme)


def register_plugin(plugin: object, *, name: str | None = None) -> None:
    """Register a module or object holding hook implementations, as an entry point would.

    Its ``aurora_storage_backends()`` is called now, and every spec checked before
    anything is registered: on an error nothing of the plugin is registered. Its
    ``aurora_storage_codecs()`` is called at the next codec lookup; a failure there is
    recorded (:func:`plugin_failures`), not raised.

    Args:
        plugin: a module or object with ``@hookimpl`` functions; a class only if its
            hooks are staticmethods or classmethods (pluggy calls them on the class).
        name: the name pluggy registers it under (default: a module's name); also the
            key of its codec failures in :func:`plugin_failures`.

    Raises:
        ConfigurationError: ``plugin`` implements no aurora_storage hook (``None``, a
            number); it is a class whose hooks take ``self`` (register an instance);
            its ``aurora_storage_backends()`` raised (chained), returned no list of
            :class:`BackendSpec` or a bad spec; one of its schemes is already
            registered (as for :func:`register_backend`: built-in and installed
            schemes count before they are loaded; replace one with
            ``register_backend(spec, replace=True)``); or its name (``name``, else a
            module's ``__name__``) is taken by another plugin (pluggy's error
            chained). The message names the plugin.
    """
    from ._registry import registry

    registry.register_plugin(plugin, name=name)


def installed_schemes() -> list[str]:
    """Every scheme known: registered ones plus those announced by entry points."""
    from ._registry import registry

    return registry.schemes()


def plugin_failures() -> dict[str, str]:
    """Plugins found broken so far: entry-point name (the scheme; for a plugin
    registered with :func:`register_plugin`, its name) -> what is wrong, naming the
    distribution. A plugin is broken when its module fails to import, it implements no
    hook, it serves another scheme than its entry point's name or a scheme its
    distribution declares no entry point for, two distributions claim its scheme
    (:func:`prefer_plugin`), its engine failed to import when a URL was opened, or its
    ``aurora_storage_codecs()`` raised, returned no list of codecs or offered a codec
    whose name is taken (a built-in's: the offered one is ignored).
    Plugins are loaded lazily: this lists only what was tried (``aurora-storage
    backends`` tries every plugin)."""
    from ._registry import registry

    with registry._lock:
        return {k: str(v) for k, v in registry.failures.items()}


def prefer_plugin(scheme: str, distribution: str | None) -> None:
    """Choose which installed distribution serves ``scheme`` when several claim it
    (otherwise opening the scheme raises
    :class:`~aurora_storage.errors.PluginConflictError` naming them all).

    The same choice can be made without code through the environment variable
    ``AURORA_STORAGE_PLUGINS`` (``scheme=distribution[,scheme=distribution...]``); a
    choice made here takes precedence. Distribution names compare as pip compares them
    (case, ``-``, ``_`` and ``.`` do not matter). Pass ``None`` to forget the choice.
    The registry is refreshed (:func:`refresh_plugins`), so the choice applies to the
    next open.
    """
    from ._registry import registry

    registry.prefer(scheme, distribution)


def refresh_plugins() -> None:
    """Scan the installed entry points again, after installing or removing a plugin
    while the process runs (``pip install`` in a notebook, a test that puts a temporary
    site directory on ``sys.path``).

    Plugins loaded from entry points are forgotten and loaded again on the next lookup,
    and plugins that failed are tried again; backends registered at run time
    (:func:`register_backend`, :func:`register_plugin`) stay. Repositories already open
    are not affected.
    """
    from ._registry import registry

    registry.refresh()


def __getattr__(name: str) -> Any:
    if name in ("hookimpl", "hookspec"):
        from . import _hookspecs

        return getattr(_hookspecs, name)
    raise AttributeError(f"module 'aurora_storage.plugins' has no attribute {name!r}")
