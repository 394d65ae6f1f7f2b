"""The plugin registry: entry points loaded lazily into a pluggy PluginManager.

The plugins aurora-storage ships (:data:`BUILTIN_PLUGINS`) are loaded by module name,
without scanning the installed distributions' entry points: that scan (``importlib.
metadata``, about 200 ms on a first open) runs only when a scheme is needed that is not
built in, a choice of distribution names a built-in scheme, or every plugin is listed.

Who serves a scheme is decided from what is declared, never from what happened to be
imported first in the process: a runtime registration (:func:`~aurora_storage.plugins.
register_backend`, :func:`~aurora_storage.plugins.register_plugin`), else the built-in
plugin or the installed distribution whose entry point is named after the scheme (two
such distributions: a conflict, unless a choice names one for that scheme). A plugin
serves only schemes its distribution declares as entry points, and loading one entry
point registers that entry point's scheme only, so a plugin loaded for one scheme never
takes another (the same module may be named by several entry points). A runtime
registration of a scheme that a built-in or an installed distribution serves is
refused without ``replace=True`` whether or not that plugin was loaded yet: the entry
point is consulted (loaded) at registration time.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._backendspec import PROJECT, BackendSpec
from ._install import extra_hint
from ._url import SCHEME_RE
from .errors import (
    BackendNotFoundError,
    ConfigurationError,
    InvalidArgumentError,
    PluginConflictError,
    PluginError,
)

if TYPE_CHECKING:
    import importlib.metadata

    import pluggy

    from .codecs import Codec

# Schemes we know of whose engine is not in the base install: scheme -> the extra of
# this distribution that brings it. Only extras that exist are named (no guessed names).
KNOWN_PACKAGES: dict[str, str] = {
    "nats": "nats",
}

#: The client library each scheme of an extra needs: scheme -> (module imported, the
#: distribution that provides it). Without it the plugin loads but cannot open a store:
#: ``aurora-storage backends`` shows the scheme ``unavailable`` with the install hint.
OPTIONAL_CLIENTS: dict[str, tuple[str, str]] = {
    "nats": ("nats", "nats-py"),
}


def missing_client(scheme: str) -> str | None:
    """Why ``scheme``'s plugin cannot open a store in this environment (its extra's
    client library is not installed, with the command that installs it), or None."""
    import importlib.util

    needed = OPTIONAL_CLIENTS.get(scheme)
    if needed is None:
        return None
    module, dist = needed
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses the name (an import hook)
        found = False
    if found:
        return None
    return f"needs {dist} (not installed): {extra_hint(KNOWN_PACKAGES[scheme])}"


#: Chooses among distributions that claim one scheme: ``scheme=distribution[,...]``.
PREFER_ENV = "AURORA_STORAGE_PLUGINS"

#: The distribution that ships the built-in plugins.
BUILTIN_DISTRIBUTION = "aurora-storage"
#: The entry points aurora-storage declares (pyproject.toml's ``aurora_storage`` group,
#: kept equal by a test): scheme -> plugin module. A URL of one of these schemes loads
#: its module directly, without the entry-point scan, unless a choice of distribution
#: (:func:`~aurora_storage.plugins.prefer_plugin` or :data:`PREFER_ENV`) names the
#: scheme: another distribution claiming a built-in scheme serves it only when chosen.
BUILTIN_PLUGINS: dict[str, str] = {
    "memory": "aurora_storage.memory._plugin",
    "rocksdb": "aurora_storage_rocksdb._plugin",
    "lmdb": "aurora_storage_lmdb._plugin",
    "tiered": "aurora_storage.tiered._plugin",
    "nats": "aurora_storage_nats._plugin",
}


def _env_choices(text: str) -> dict[str, str]:
    """The choices of :data:`PREFER_ENV` (``scheme=distribution[,...]``) as a dict.

    Raises:
        ConfigurationError: an item is not ``scheme=distribution`` or names a scheme
            twice (a choice the user made must not be dropped or guessed).
    """
    choices: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, dist = (part.strip() for part in item.partition("="))
        if not sep or not SCHEME_RE.match(name) or not dist:
            raise ConfigurationError(
                f"{PREFER_ENV}={text!r} is malformed at {item.strip()!r}: write "
                "scheme=distribution, several separated by commas "
                "(e.g. mykv=aurora-mykv,otherkv=aurora-other)"
            )
        if name.lower() in choices:
            raise ConfigurationError(
                f"{PREFER_ENV}={text!r} chooses a distribution for scheme {name!r} twice; "
                "keep one choice per scheme"
            )
        choices[name.lower()] = dist
    return choices


def _dist_key(name: str) -> str:
    """A distribution name normalised as packaging does (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_of(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return str(name) if name else f"(the distribution of {ep.value})"


class Registry:
    """Scheme -> BackendSpec, filled from runtime registrations and entry points."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pm: pluggy.PluginManager | None = None
        #: Scheme -> spec registered at run time (register_backend, register_plugin):
        #: served before any entry point, kept by refresh.
        self._runtime: dict[str, BackendSpec] = {}
        #: Scheme -> spec of the plugin its entry point (or built-in) names, once loaded
        #: (forgotten on refresh).
        self._specs: dict[str, BackendSpec] = {}
        self._entry_points: dict[str, list[importlib.metadata.EntryPoint]] | None = None
        #: Entry-point names (schemes) whose plugin was tried, loaded or not.
        self._loaded: set[str] = set()
        #: Scheme -> the distribution whose entry point serves it (for messages).
        self._dist: dict[str, str] = {}
        #: Entry points whose plugin serves codecs only (not URL schemes).
        self._codec_only: set[str] = set()
        #: Scheme -> chosen distribution (prefer_plugin), over PREFER_ENV.
        self._prefer: dict[str, str] = {}
        #: Entry-point name -> the distribution its plugin came from (codec plugins).
        self._ep_dist: dict[str, str] = {}
        #: Keys of ``failures`` whose codec hook failed (raised, or returned no list of
        #: codecs): any codec name may have been theirs (see missing_codec).
        self._codec_broken: set[str] = set()
        #: Entry-point name (or scheme, or a runtime plugin's name) -> what is wrong
        #: with its plugin.
        self.failures: dict[str, PluginError] = {}

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy plugin manager, created with the first plugin (pluggy is not
        imported by `import aurora_storage`)."""
        pm = self._pm
        if pm is None:
            with self._lock:
                if self._pm is None:
                    import pluggy

                    from ._hookspecs import HookSpecs

                    made = pluggy.PluginManager(PROJECT)
                    made.add_hookspecs(HookSpecs)
                    self._pm = made
                pm = self._pm
        return pm

    # -------------------------------------------------------------- entry points

    def _eps(self) -> dict[str, list[importlib.metadata.EntryPoint]]:
        if self._entry_points is None:
            import importlib.metadata  # here: only a scan needs it (see module docstring)

            found: dict[str, list[importlib.metadata.EntryPoint]] = {}
            for ep in importlib.metadata.entry_points(group=PROJECT):
                claims = found.setdefault(ep.name.lower(), [])
                if not any(_dist_key(_dist_of(c)) == _dist_key(_dist_of(ep)) for c in claims):
                    claims.append(ep)
            self._entry_points = found
        return self._entry_points

    def refresh(self) -> None:
        """Forget the entry-point scan and what was loaded from it (plugins are loaded
        again on the next lookup, failed ones tried again); runtime registrations stay."""
        with self._lock:
            self._entry_points = None
            if self._pm is not None:
                for name in self._loaded:
                    plugin = self._pm.get_plugin(f"entrypoint:{name}")
                    if plugin is not None:
                        self._pm.unregister(plugin)
            self._specs.clear()
            self._dist.clear()
            self._loaded.clear()
            self._codec_only.clear()
            self._ep_dist.clear()
            self._codec_broken.clear()
            self.failures.clear()

    def prefer(self, scheme: str, distribution: str | None) -> None:
        """Choose ``distribution`` for ``scheme`` when several claim it (``None``:
        forget the choice)."""
        if not isinstance(scheme, str) or not SCHEME_RE.match(scheme):
            raise InvalidArgumentError(
                f"prefer_plugin() needs a URL scheme such as 'mykv' (a letter, then letters, "
                f"digits, '+', '-' or '.'), not {scheme!r}"
            )
        if distribution is not None and (
            not isinstance(distribution, str) or not distribution.strip()
        ):
            raise InvalidArgumentError(
                f"prefer_plugin() needs a distribution name (as pip shows it) or None, not "
                f"{distribution!r}"
            )
        scheme = scheme.lower()
        with self._lock:
            if distribution is None:
                self._prefer.pop(scheme, None)
            else:
                self._prefer[scheme] = distribution
            # The choice changes which plugin serves the scheme: load it again.
            self.refresh()

    def _preferred(self, scheme: str) -> tuple[str, str] | None:
        """The chosen distribution for ``scheme`` and where the choice comes from."""
        chosen = self._prefer.get(scheme)
        if chosen is not None:
            return chosen, f"prefer_plugin({scheme!r}, {chosen!r})"
        text = os.environ.get(PREFER_ENV, "")
        chosen = _env_choices(text).get(scheme)
        return None if chosen is None else (chosen, f"{PREFER_ENV}={text!r}")

    def _claim(self, name: str) -> importlib.metadata.EntryPoint | None:
        """The entry point that serves ``name``; a conflict is recorded as a failure."""
        claims = self._eps().get(name)
        if not claims:
            return None
        preferred = self._preferred(name)
        if preferred is not None:
            dist, source = preferred
            for ep in claims:
                if _dist_key(_dist_of(ep)) == _dist_key(dist):
                    return ep
            names = ", ".join(sorted(_dist_of(ep) for ep in claims))
            self.failures[name] = PluginError(
                f"{source} chooses distribution {dist!r} for scheme {name!r}, but it does "
                f"not provide that scheme; it is provided by: {names}",
                backend=name,
                distribution=dist,
            )
            return None
        if len(claims) == 1:
            return claims[0]
        dists = sorted(_dist_of(ep) for ep in claims)
        listed = ", ".join(f"{_dist_of(ep)} ({ep.value})" for ep in claims)
        self.failures[name] = PluginConflictError(
            f"URL scheme {name!r} is claimed by {len(claims)} installed distributions: "
            f"{listed}. Choose one with aurora_storage.plugins.prefer_plugin({name!r}, "
            f"{dists[0]!r}) or the environment variable {PREFER_ENV}='{name}={dists[0]}', "
            "or uninstall the others",
            backend=name,
            distributions=dists,
        )
        return None

    def _load_entry_point(self, name: str) -> None:
        """Load the plugin that the entry point named ``name`` (or the built-in of that
        scheme) designates, once, and register its spec for ``name`` only.

        Only ``name`` is registered even when the plugin serves more schemes: each of
        those is decided by its own entry point when it is looked up (a choice of
        distribution for one scheme must not hand that distribution another). A plugin
        that serves a scheme its distribution declares no entry point for is a
        recorded failure: otherwise who serves that scheme would depend on which plugin
        the process happened to import first.
        """
        if name in self._loaded:
            return
        # Before marking it tried: a malformed PREFER_ENV raises at every lookup.
        preferred = self._preferred(name)
        self._loaded.add(name)
        builtin = BUILTIN_PLUGINS.get(name)
        load: Callable[[], Any]
        if builtin is not None and preferred is None:
            dist, value = BUILTIN_DISTRIBUTION, builtin
            load = functools.partial(importlib.import_module, builtin)
        else:
            ep = self._claim(name)
            if ep is None:
                return
            dist, value, load = _dist_of(ep), ep.value, ep.load
        try:
            module = load()
        except Exception as exc:  # a broken plugin must not break the others
            self._fail(
                name, dist, f"is installed but failed to load: {type(exc).__name__}: {exc}", exc
            )
            return
        backends = getattr(module, "aurora_storage_backends", None)
        codecs = getattr(module, "aurora_storage_codecs", None)
        if not callable(backends) and not callable(codecs):
            self._fail(
                name,
                dist,
                "implements no aurora_storage hook: define "
                "aurora_storage_backends() (or aurora_storage_codecs()) with @hookimpl",
                module=value,
            )
            return
        try:
            offered = _backend_specs(module)
        except _HookFailure as failure:
            self._fail(name, dist, failure.what, failure.__cause__)
            return
        schemes = [spec.scheme for spec in offered]
        if not offered and not callable(codecs):
            # The backends hook is there and returned nothing: a forgotten spec (or a
            # forgotten ``return``), not a codecs-only plugin.
            self._fail(
                name,
                dist,
                "returned no backend from aurora_storage_backends(); return "
                f"[BackendSpec(scheme={name!r}, ...)] from it",
                module=value,
            )
            return
        if offered and name not in schemes:
            self._fail(
                name,
                dist,
                f"serves {', '.join(map(repr, schemes))} but not {name!r}: an "
                "entry point's name must be the URL scheme its plugin serves; rename the "
                "entry point or the scheme",
                module=value,
            )
            return
        undeclared = sorted({s for s in schemes if s != name and not self._declares(dist, s)})
        if undeclared:
            listed = ", ".join(map(repr, undeclared))
            self._fail(
                name,
                dist,
                f"also serves {listed}, for which its distribution declares no entry "
                "point: every scheme a plugin serves must be an entry point of its "
                "distribution, so that which distribution serves a scheme is known "
                f'before any plugin is imported; add {undeclared[0]} = "{value}" (and '
                "so on) to its [project.entry-points.aurora_storage] table",
                module=value,
            )
            return
        if not self.pm.is_registered(module):  # several entry points may name one module
            try:
                self.pm.register(module, name=f"entrypoint:{name}")
            except ValueError as exc:  # pluggy: the name is taken, or a hook is malformed
                self._fail(name, dist, f"could not be registered: {exc}", exc)
                return
        self._ep_dist[name] = dist
        spec = next((spec for spec in offered if spec.scheme == name), None)
        if spec is None:
            self._codec_only.add(name)
        else:
            self._specs[name] = spec
            self._dist[name] = dist

    def _declares(self, dist: str, scheme: str) -> bool:
        """Whether the distribution ``dist`` declares an entry point named ``scheme``."""
        if _dist_key(dist) == _dist_key(BUILTIN_DISTRIBUTION) and scheme in BUILTIN_PLUGINS:
            return True  # BUILTIN_PLUGINS is its entry-point table (no scan needed)
        return any(_dist_key(_dist_of(ep)) == _dist_key(dist) for ep in self._eps().get(scheme, []))

    def _fail(
        self,
        name: str,
        dist: str,
        what: str,
        cause: BaseException | None = None,
        *,
        module: str | None = None,
    ) -> None:
        where = f"distribution {dist}" + (f", module {module}" if module else "")
        err = PluginError(
            f"the plugin for scheme {name!r} ({where}) {what}",
            backend=name,
            distribution=dist,
        )
        err.__cause__ = cause
        self.failures[name] = err

    def engine_import_failed(self, scheme: str, spec: BackendSpec, exc: ImportError) -> PluginError:
        """Record (and return, to raise) a plugin failure for an engine import that
        failed inside the scheme's ``open``."""
        runtime = self.distribution(scheme) is None and not spec.package
        dist = self.distribution(scheme) or spec.package or "(registered at run time)"
        missing = f"module {exc.name!r}" if exc.name else "a module"
        own = (getattr(spec.open, "__module__", None) or "").partition(".")[0]
        hint = KNOWN_PACKAGES.get(scheme)
        if hint:
            fix = f"install it with: {extra_hint(hint)}"
        elif exc.name and own and exc.name.partition(".")[0] == own:
            # Not an engine: the plugin's own package lacks the module it imports.
            fix = (
                f"{exc.name!r} is part of the plugin's own package {own!r}: a bug in the "
                "plugin or an incomplete install of it"
            )
        elif runtime:
            fix = "install the package that provides it"
        else:
            fix = f"install {dist} again with its dependencies"
        err = PluginError(
            f"the {scheme} backend (distribution {dist}) could not import {missing} its "
            f"engine needs ({type(exc).__name__}: {exc}); {fix}",
            backend=scheme,
            distribution=dist,
        )
        err.__cause__ = exc
        with self._lock:
            self.failures[scheme] = err
        return err

    # -------------------------------------------------------------- registration

    def open_failed(self, scheme: str, spec: BackendSpec, exc: Exception) -> PluginError:
        """The error (to raise, chained to ``exc``) for a scheme's ``open`` that raised
        something other than an :class:`~aurora_storage.errors.StorageError`.

        Not recorded in :attr:`failures`: the plugin loaded, this one open failed (the
        next may not), but it broke the contract that a backend raises only
        ``aurora_storage.errors`` types, so the caller still gets one.
        """
        dist = self.distribution(scheme) or spec.package or "(registered at run time)"
        if _dist_key(dist) == _dist_key(BUILTIN_DISTRIBUTION):
            # A backend aurora-storage ships: no third party to send the user to.
            whose = "this is a bug in aurora-storage: please report it to aurora-storage"
        else:
            whose = "report this to the plugin's authors"
        err = PluginError(
            f"the {scheme} backend (distribution {dist}) raised {type(exc).__name__} from "
            f"its open(), not an aurora_storage error: {exc}. A backend translates its "
            f"engine's errors into aurora_storage.errors types; {whose} (the original "
            "error is chained)",
            backend=scheme,
            distribution=dist,
        )
        err.__cause__ = exc
        return err

    # -------------------------------------------------------------- registration

    def register_plugin(self, plugin: object, *, name: str | None = None) -> None:
        label = repr(name or getattr(plugin, "__name__", None) or type(plugin).__name__)
        if not any(callable(getattr(plugin, hook, None)) for hook in _HOOKS):
            raise ConfigurationError(
                f"register_plugin() takes a module or object holding aurora_storage hook "
                f"implementations; {plugin!r} implements no aurora_storage hook: define "
                "aurora_storage_backends() (or aurora_storage_codecs()) with @hookimpl"
            )
        if isinstance(plugin, type):
            needs_self = [
                hook
                for hook in _HOOKS
                if inspect.isfunction(inspect.getattr_static(plugin, hook, None))
            ]
            if needs_self:
                # pluggy takes the class and would call its hooks without an instance:
                # each call raised "missing 1 required positional argument: 'self'".
                hooks = " and ".join(needs_self)
                takes = "take" if len(needs_self) > 1 else "takes"
                raise ConfigurationError(
                    f"register_plugin() was given the class {plugin.__name__}, not an "
                    f"instance, and its {hooks} {takes} self: register an instance, "
                    f"register_plugin({plugin.__name__}()), or make the hooks staticmethods"
                )
        with self._lock:
            if self.pm.is_registered(plugin):
                return
            # Every spec is checked before anything is registered: a plugin with one bad
            # spec registers none of them (nothing half-registered).
            try:
                specs = _backend_specs(plugin)
            except _HookFailure as failure:
                raise ConfigurationError(
                    f"the plugin {label} {failure.what}"
                ) from failure.__cause__
            for spec in specs:
                holder = self._holder(spec)
                if holder is not None:
                    raise ConfigurationError(
                        f"scheme {spec.scheme!r} of the plugin {label} is already registered "
                        f"({holder}); refusing to replace it. To replace it on purpose, "
                        "register that BackendSpec with register_backend(spec, replace=True)"
                    )
            try:
                self.pm.register(plugin, name=name)
            except ValueError as exc:  # pluggy: the name is taken, or a hook is malformed
                taken = name or self.pm.get_canonical_name(plugin)
                if self.pm.has_plugin(taken):
                    # pluggy's text ends with its whole registry (every plugin with its
                    # file path): name the clash only; its error stays chained.
                    raise ConfigurationError(
                        f"the plugin {label} could not be registered: another plugin is "
                        f"already registered as {taken!r}; unregister that one first, or "
                        "give this one a distinct name: register_plugin(plugin, "
                        "name='...')"
                    ) from exc
                raise ConfigurationError(
                    f"the plugin {label} could not be registered: {exc}"
                ) from exc
            for spec in specs:
                self._runtime[spec.scheme] = spec

    def register_spec(self, spec: BackendSpec, *, replace: bool) -> None:
        spec = _normalized(spec)
        with self._lock:
            holder = None if replace else self._holder(spec)
            if holder is not None:
                raise ConfigurationError(
                    f"scheme {spec.scheme!r} is already registered ({holder}); pass "
                    "replace=True to replace it"
                )
            if self._runtime.get(spec.scheme) is None and self._specs.get(spec.scheme) == spec:
                return  # the spec its plugin registered, given again: nothing to replace
            self._runtime[spec.scheme] = spec

    def _holder(self, spec: BackendSpec) -> str | None:
        """Who already serves ``spec.scheme`` with another spec (for a message), or
        ``None`` when a runtime registration of ``spec`` replaces nothing.

        A built-in scheme, and a scheme an installed distribution declares, count
        whether or not their plugin was loaded: its entry point is loaded now, so that
        the answer does not depend on what the process opened before (a broken or
        conflicting claim counts too: the user installed it).
        """
        scheme = spec.scheme
        current = self._runtime.get(scheme)
        if current is not None:
            return (
                None
                if current == spec
                else f"at run time, by {current.package or 'another plugin'}"
            )
        self._load_entry_point(scheme)
        loaded = self._specs.get(scheme)
        if loaded is not None:
            return None if loaded == spec else f"by {self._dist.get(scheme, BUILTIN_DISTRIBUTION)}"
        if scheme in self._codec_only:
            return None  # an entry point of a codecs plugin serves no scheme
        claims = sorted(_dist_of(ep) for ep in self._eps().get(scheme, []))
        if scheme in BUILTIN_PLUGINS and self._preferred(scheme) is None:
            claims = [BUILTIN_DISTRIBUTION]
        if not claims:
            return None
        failure = self.failures.get(scheme)
        broken = f", whose plugin is broken: {failure.message}" if failure is not None else ""
        return f"by {', '.join(claims)}{broken}"

    def unregister_spec(self, scheme: str) -> None:
        """Forget a runtime registration; a built-in or installed plugin it replaced
        serves the scheme again."""
        with self._lock:
            self._runtime.pop(scheme.lower(), None)

    # -------------------------------------------------------------- lookup

    def lookup(self, scheme: str) -> BackendSpec:
        scheme = scheme.lower()
        with self._lock:
            # A runtime registration first; else the plugin the scheme's own entry point
            # names (a plugin serves only schemes declared as its entry points, so no
            # other plugin needs loading to answer).
            spec = self._runtime.get(scheme)
            if spec is None:
                self._load_entry_point(scheme)
                spec = self._specs.get(scheme)
        if spec is not None:
            return spec
        raise self._not_found(scheme)

    def _not_found(self, scheme: str) -> BackendNotFoundError:
        failure = self.failures.get(scheme)
        if failure is not None:
            # A fresh error each time (raising the recorded one would grow its traceback).
            err: BackendNotFoundError = type(failure)(failure.message, **_context(failure))
            err.__cause__ = failure.__cause__
            return err
        msg = f"no backend for URL scheme {scheme!r}. Installed schemes: "
        msg += ", ".join(self.schemes()) or "(none)"
        if scheme in KNOWN_PACKAGES:
            msg += f". Install it with: {extra_hint(KNOWN_PACKAGES[scheme])}"
        return BackendNotFoundError(msg, backend=scheme)

    def schemes(self) -> list[str]:
        with self._lock:
            declared = (set(self._specs) | set(self._eps())) - self._codec_only
            return sorted(declared | set(self._runtime))

    def distribution(self, scheme: str) -> str | None:
        """The distribution whose entry point serves ``scheme`` (``None`` for a
        runtime registration, which takes precedence)."""
        scheme = scheme.lower()
        with self._lock:
            return None if scheme in self._runtime else self._dist.get(scheme)

    def specs(self) -> dict[str, BackendSpec]:
        with self._lock:
            for name in list(self._eps()):
                self._load_entry_point(name)
            return {**self._specs, **self._runtime}

    def plugin_codecs(
        self,
        codec_type: type[Codec[Any]],
        name_problem: Callable[[object], str | None],
    ) -> list[tuple[str, Codec[Any]]]:
        """Every plugin's codecs as ``(plugin key, codec)``, in pluggy's call order.

        Each plugin's hook is called on its own: one that raises or returns no list of
        codecs is recorded in :attr:`failures` (see :meth:`missing_codec`) and the others
        still count, as a broken backend plugin does not break the others.

        ``codec_type`` (:class:`Codec`) and ``name_problem`` (why a name cannot name a
        codec, or ``None``) are handed in by :mod:`aurora_storage.codecs`, the only
        caller: importing them here would make the two modules import each other.
        """
        with self._lock:
            for name in list(self._eps()):
                self._load_entry_point(name)
            out: list[tuple[str, Codec[Any]]] = []
            # pluggy calls the last registered first: the same order as calling the hook.
            for impl in reversed(self.pm.hook.aurora_storage_codecs.get_hookimpls()):
                key = impl.plugin_name.removeprefix("entrypoint:")
                try:
                    offered = impl.function()
                except Exception as exc:
                    what = f"failed in aurora_storage_codecs(): {type(exc).__name__}: {exc}"
                    self._codec_failed(key, what, exc, broken=True)
                    continue
                codecs = _codec_list(offered, codec_type)
                if codecs is None:
                    shown = type(offered).__name__
                    if isinstance(offered, list):
                        shown = "a list holding " + ", ".join(
                            sorted({type(c).__name__ for c in offered if not _named(c, codec_type)})
                        )
                    self._codec_failed(
                        key,
                        f"returned {shown} from aurora_storage_codecs(), not a list of "
                        "Codec with non-empty names: return [Codec(name, encode, decode)]",
                        None,
                        broken=True,
                    )
                    continue
                # A name no store can record (not valid UTF-8 text) refuses the whole
                # list, as an empty name does: every open with it would fail.
                problem = next((p for p in map(name_problem, (c.name for c in codecs)) if p), None)
                if problem is not None:
                    self._codec_failed(
                        key,
                        "returned a Codec from aurora_storage_codecs() whose name no store "
                        f"can record, so none of its codecs is used: {problem}",
                        None,
                        broken=True,
                    )
                    continue
                if self.failures.get(key) is not None and key in self._codec_broken:
                    # A hook that failed before and answers now: no longer broken.
                    self._codec_broken.discard(key)
                    del self.failures[key]
                out.extend((key, codec) for codec in codecs)
            return out

    def _codec_failed(
        self, key: str, what: str, cause: BaseException | None, *, broken: bool
    ) -> None:
        """Record a failure of the codec hook of the plugin registered as ``key``."""
        dist = self._ep_dist.get(key)
        where = f"distribution {dist}" if dist else "registered at run time"
        err = PluginError(f"the plugin {key!r} ({where}) {what}", backend=key, distribution=dist)
        err.__cause__ = cause
        with self._lock:
            self.failures[key] = err
            if broken:
                self._codec_broken.add(key)

    def codec_clash(self, key: str, name: str, holder: str) -> None:
        """Record that the plugin ``key`` offers a codec ``name`` already held by
        ``holder`` (the offered one is ignored: a name is never silently replaced)."""
        self._codec_failed(
            key,
            f"offers a codec named {name!r} from aurora_storage_codecs(), but that name "
            f"is taken by {holder}; it is ignored (a registered codec is never replaced): "
            "rename the plugin's codec",
            None,
            broken=False,
        )

    def missing_codec(self, name: str, known: list[str]) -> PluginError | None:
        """The error for an unknown codec ``name`` when a codec plugin is broken (its
        hook raised or returned no list of codecs, so it may be the one providing
        ``name``); ``None`` when none is."""
        with self._lock:
            broken = [self.failures[k] for k in sorted(self._codec_broken) if k in self.failures]
        if not broken:
            return None
        plural = "s are" if len(broken) > 1 else " is"
        err = PluginError(
            f"unknown codec {name!r}; known codecs: {', '.join(known)}. {len(broken)} codec "
            f"plugin{plural} broken and may provide it: "
            + "; ".join(e.message for e in broken)
            + " (aurora_storage.plugins.plugin_failures() lists them)",
            backend=broken[0].backend,
            distribution=broken[0].distribution,
        )
        err.__cause__ = broken[0].__cause__
        return err


#: The hooks a plugin may implement (see :class:`~aurora_storage._hookspecs.HookSpecs`).
_HOOKS = ("aurora_storage_backends", "aurora_storage_codecs")


class _HookFailure(Exception):
    """What is wrong with a plugin's ``aurora_storage_backends()`` (the original error,
    if any, as ``__cause__``); turned into a recorded failure or a ConfigurationError."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _backend_specs(plugin: object) -> list[BackendSpec]:
    """The checked specs ``plugin.aurora_storage_backends()`` returns (none without it).

    Raises:
        _HookFailure: the hook raised, returned no iterable of specs (``None``, a dict,
            a str), or one item is not a valid spec.
    """
    caller = getattr(plugin, "aurora_storage_backends", None)
    if not callable(caller):
        return []
    try:
        offered = caller()
        if isinstance(offered, (str, bytes, Mapping)) or not isinstance(offered, Iterable):
            raise _HookFailure(
                f"returned {type(offered).__name__} from aurora_storage_backends(), not a "
                "list of BackendSpec: return [BackendSpec(scheme=..., open=...)]"
            )
        items = list(offered)  # a generator runs (and may raise) here
    except _HookFailure:
        raise
    except Exception as exc:
        raise _HookFailure(
            f"failed in aurora_storage_backends(): {type(exc).__name__}: {exc}"
        ) from exc
    specs: list[BackendSpec] = []
    for item in items:
        try:
            specs.append(_normalized(item))
        except ConfigurationError as exc:
            raise _HookFailure(
                f"returned a bad backend from aurora_storage_backends(): {exc.message}"
            ) from exc
    return specs


def _named(item: object, codec_type: type[Any]) -> bool:
    return isinstance(item, codec_type) and isinstance(item.name, str) and bool(item.name)


def _codec_list(offered: object, codec_type: type[Any]) -> list[Codec[Any]] | None:
    """``offered`` if it is a list or tuple of named codecs, else ``None``."""
    if not isinstance(offered, (list, tuple)):
        return None
    if not all(_named(item, codec_type) for item in offered):
        return None
    return list(offered)


def _normalized(spec: object) -> BackendSpec:
    """Check a spec.

    Raises:
        ConfigurationError: not a BackendSpec; its scheme is not a URL scheme or not in
            lower case (URLs lower-case their scheme, see ``URL.parse``, so a spec states
            it the way it is looked up rather than being folded without a word); its
            ``open`` is not callable or is an ``async def`` (``open`` is called
            synchronously and must return a Backend).
    """
    if not isinstance(spec, BackendSpec):
        raise ConfigurationError(f"expected a BackendSpec, got {type(spec).__name__}")
    if not isinstance(spec.scheme, str) or not SCHEME_RE.match(spec.scheme):
        raise ConfigurationError(
            f"invalid URL scheme {spec.scheme!r} in {spec!r}: letters, digits, '+', '-' "
            "and '.', starting with a letter"
        )
    if spec.scheme != spec.scheme.lower():
        raise ConfigurationError(
            f"URL scheme {spec.scheme!r} is not in lower case: write "
            f"BackendSpec(scheme={spec.scheme.lower()!r}, ...) (URLs are matched by their "
            "lower-cased scheme, so 'MyKV://' still opens it)"
        )
    if not callable(spec.open):
        raise ConfigurationError(f"the open of scheme {spec.scheme!r} is not callable")
    if inspect.iscoroutinefunction(spec.open):
        raise ConfigurationError(
            f"the open of scheme {spec.scheme!r} is an async def: BackendSpec.open is "
            "called synchronously and returns a Backend (aurora_storage.open_async wraps "
            "the opened repository); make it a plain def"
        )
    return spec


registry = Registry()


def _context(err: PluginError) -> dict[str, Any]:
    """The keyword arguments that rebuild ``err`` (see Registry._not_found)."""
    out: dict[str, Any] = {"backend": err.backend, "distribution": err.distribution}
    if isinstance(err, PluginConflictError):
        out["distributions"] = err.distributions
    return out
