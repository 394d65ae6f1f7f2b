"""The plugin registry: entry points loaded lazily into a pluggy PluginManager."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import threading
from typing import TYPE_CHECKING, Any

import pluggy

from .config import _SCHEME_RE
from .errors import BackendNotFoundError, ConfigurationError
from .plugins import PROJECT, BackendSpec, HookSpecs

if TYPE_CHECKING:
    from .codecs import Codec

# Schemes we know of but do not ship: the hint names the package to install.
KNOWN_PACKAGES: dict[str, str] = {
    "nats": "'aurora-storage[nats]'",
    "redis": "aurora-storage-redis",
    "sqlite": "aurora-storage-sqlite",
}


class Registry:
    """Scheme -> BackendSpec, filled from runtime registrations and entry points."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(HookSpecs)
        self._specs: dict[str, BackendSpec] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None
        self._loaded: set[str] = set()
        self.failures: dict[str, BaseException] = {}

    # -------------------------------------------------------------- entry points

    def _eps(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            found: dict[str, importlib.metadata.EntryPoint] = {}
            for ep in importlib.metadata.entry_points(group=PROJECT):
                # First wins: a duplicate name from a second distribution is ignored
                # rather than silently replacing the first.
                found.setdefault(ep.name.lower(), ep)
            self._entry_points = found
        return self._entry_points

    def refresh(self) -> None:
        """Forget the entry-point scan (after installing a plugin at run time)."""
        with self._lock:
            self._entry_points = None
            # A plugin that failed (say, a missing dependency since installed) is tried
            # again; plugins that loaded stay registered.
            self._loaded -= set(self.failures)
            self.failures.clear()

    def _load_entry_point(self, name: str) -> None:
        ep = self._eps().get(name)
        if ep is None or name in self._loaded:
            return
        self._loaded.add(name)
        try:
            module = ep.load()
            self.register_plugin(module, name=f"entrypoint:{name}")
        except Exception as exc:  # a broken plugin must not break the others
            self.failures[name] = exc

    # -------------------------------------------------------------- registration

    def register_plugin(self, plugin: object, *, name: str | None = None) -> None:
        with self._lock:
            if self.pm.is_registered(plugin):
                return
            caller = getattr(plugin, "aurora_storage_backends", None)
            specs = [_normalized(s) for s in (caller() if callable(caller) else [])]
            for spec in specs:
                existing = self._specs.get(spec.scheme)
                if existing is not None and existing != spec:
                    raise ConfigurationError(
                        f"scheme {spec.scheme!r} is already registered "
                        f"(by {existing.package or 'another plugin'}); refusing to replace it"
                    )
            self.pm.register(plugin, name=name)
            for spec in specs:
                self._specs[spec.scheme] = spec

    def register_spec(self, spec: BackendSpec, *, replace: bool) -> None:
        spec = _normalized(spec)
        with self._lock:
            existing = self._specs.get(spec.scheme)
            if existing is not None and existing != spec and not replace:
                raise ConfigurationError(
                    f"scheme {spec.scheme!r} is already registered; pass replace=True to replace it"
                )
            self._specs[spec.scheme] = spec

    def unregister_spec(self, scheme: str) -> None:
        with self._lock:
            self._specs.pop(scheme.lower(), None)

    # -------------------------------------------------------------- lookup

    def lookup(self, scheme: str) -> BackendSpec:
        scheme = scheme.lower()
        with self._lock:
            spec = self._specs.get(scheme)
            if spec is None:
                self._load_entry_point(scheme)
                spec = self._specs.get(scheme)
            if spec is None:
                # A plugin may serve a scheme other than its entry-point name.
                for name in list(self._eps()):
                    self._load_entry_point(name)
                spec = self._specs.get(scheme)
        if spec is not None:
            return spec
        raise self._not_found(scheme)

    def _not_found(self, scheme: str) -> BackendNotFoundError:
        msg = f"no backend for URL scheme {scheme!r}. Installed schemes: "
        msg += ", ".join(self.schemes()) or "(none)"
        failure = self.failures.get(scheme)
        if failure is not None:
            msg += (
                f". The plugin for {scheme!r} is installed but failed to load: "
                f"{type(failure).__name__}: {failure}"
            )
        elif scheme in KNOWN_PACKAGES:
            msg += f". Install it with: pip install {KNOWN_PACKAGES[scheme]}"
        err = BackendNotFoundError(msg, backend=scheme)
        if failure is not None:
            err.__cause__ = failure
        return err

    def schemes(self) -> list[str]:
        with self._lock:
            return sorted(set(self._specs) | set(self._eps()))

    def specs(self) -> dict[str, BackendSpec]:
        with self._lock:
            for name in list(self._eps()):
                self._load_entry_point(name)
            return dict(self._specs)

    def plugin_codecs(self) -> list[Codec]:
        with self._lock:
            for name in list(self._eps()):
                self._load_entry_point(name)
            out: list[Any] = []
            for result in self.pm.hook.aurora_storage_codecs():
                out.extend(result)
            return out


def _normalized(spec: object) -> BackendSpec:
    """Check a spec and lower-case its scheme (URL schemes are case-insensitive)."""
    if not isinstance(spec, BackendSpec):
        raise ConfigurationError(f"expected a BackendSpec, got {type(spec).__name__}")
    if not isinstance(spec.scheme, str) or not _SCHEME_RE.match(spec.scheme):
        raise ConfigurationError(
            f"invalid URL scheme {spec.scheme!r} in {spec!r}: letters, digits, '+', '-' "
            "and '.', starting with a letter"
        )
    if not callable(spec.open):
        raise ConfigurationError(f"the open of scheme {spec.scheme!r} is not callable")
    if spec.scheme != spec.scheme.lower():
        spec = dataclasses.replace(spec, scheme=spec.scheme.lower())
    return spec


registry = Registry()
