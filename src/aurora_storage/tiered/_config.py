"""The frozen configuration of a tiered pair, its URL, and the named projections.

A URL is configuration that often comes from the environment, so it may only *name* a
projection: one registered at run time with :func:`register_projection`, or published by
an installed distribution in the entry point group ``aurora_storage.projections``. It can
never import a module (``projection=os:system`` is refused). Python callers pass the
function itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

from .._url import hide_text
from ..config import URL, local_path
from ..errors import ConfigurationError, InvalidURLError
from ._types import Projection

__all__ = [
    "ENTRY_POINT_GROUP",
    "MODE_OPTIONS",
    "PROJECTION_FIX",
    "Policy",
    "TieredConfig",
    "TieredURL",
    "check_projection",
    "close_unrun",
    "register_projection",
    "resolve_projection",
    "returned_unrun",
    "same_store",
    "store_path",
    "takes_args",
    "unregister_projection",
    "unrunnable",
]

#: The entry point group a distribution publishes named projections in.
ENTRY_POINT_GROUP = "aurora_storage.projections"
#: What happens to a history record that cannot be decoded or projected.
Policy = Literal["stop", "park"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_registry: dict[str, Projection] = {}
_registry_lock = threading.Lock()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        hint = (
            " (import paths such as 'package.module:function' are not accepted: a URL "
            "must not be able to import code; register the function with "
            "aurora_storage.tiered.register_projection(name, function) or publish it in "
            f"the entry point group {ENTRY_POINT_GROUP!r})"
            if isinstance(name, str) and ":" in name
            else ""
        )
        raise ConfigurationError(
            f"projection name {name!r} is not valid: use letters, digits, '_', '.', '-', "
            f"starting with a letter or '_'{hint}",
            backend="tiered",
        )
    return name


def takes_args(fn: Any, n: int) -> bool:
    """Whether ``fn`` can be called with ``n`` positional arguments (true when its
    signature cannot be read, e.g. some builtins: the call itself will tell)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(*([None] * n))
    except TypeError:
        return False
    return True


def _target(fn: Any) -> Any:
    """The function a call of ``fn`` runs: through ``functools.partial``, bound methods
    and a callable object's ``__call__`` (not through ``__wrapped__``: a plain wrapper
    may well run what it wraps to completion itself)."""
    for _ in range(16):  # a partial of an object whose __call__ is a partial ...
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif inspect.ismethod(fn):
            fn = fn.__func__
        elif inspect.isroutine(fn) or isinstance(fn, type):
            return fn
        else:
            try:  # a callable object: what its call runs is its type's __call__
                fn = type(fn).__call__
            except AttributeError:
                return fn
    return fn


#: what calling a function of each kind makes instead of running its body
_MAKES = {
    "a coroutine function (async def)": "a coroutine",
    "an async generator function": "an async generator",
    "a generator function": "a generator",
}


def unrunnable(fn: Any) -> tuple[str, str] | None:
    """``(what fn is, what calling it makes)`` when calling ``fn`` does not run its body
    (a coroutine function, an async generator function or a generator function, also as
    a bound method, a ``functools.partial`` or a callable object's ``__call__``), else
    ``None``."""
    target = _target(fn)
    if inspect.isasyncgenfunction(target):
        kind = "an async generator function"
    elif inspect.iscoroutinefunction(target):
        kind = "a coroutine function (async def)"
    elif inspect.isgeneratorfunction(target):
        kind = "a generator function"
    else:
        return None
    return kind, _MAKES[kind]


def returned_unrun(result: Any) -> str | None:
    """What ``result`` is, when a call returned something that still has to be run (a
    coroutine, a generator, an async generator or any other awaitable: the body of what
    was called has not run, or not all of it), else ``None``. ``result`` is not None."""
    if inspect.iscoroutine(result):
        return "a coroutine"
    if inspect.isgenerator(result):
        return "a generator"
    if inspect.isasyncgen(result):
        return "an async generator"
    if inspect.isawaitable(result):
        return f"an awaitable ({type(result).__name__})"
    return None


def close_unrun(result: Any) -> None:
    """Close what :func:`returned_unrun` named, so that it never runs (and a coroutine
    does not warn that it was never awaited). Best effort: never raises."""
    try:
        if inspect.isasyncgen(result):
            closer = result.aclose()
            try:
                closer.send(None)  # an async generator not yet started closes at once
            except StopIteration:
                pass
            finally:
                closer.close()
        elif isinstance(result, asyncio.Future):  # a Task, maybe running: on its loop
            result.get_loop().call_soon_threadsafe(result.cancel)
        else:
            close = getattr(result, "close", None)  # coroutines, generators
            if callable(close):
                close()
    except Exception:  # the error the caller raises says what went wrong
        pass


def _name(fn: Any) -> str:
    return repr(getattr(fn, "__qualname__", None) or fn)


#: How to write a projection, for the messages that refuse one.
PROJECTION_FIX = (
    "a projection must be a plain synchronous function that applies its updates "
    "through `state` (state.put(), state.delete()) before it returns: define it with "
    "`def`, without `async` or `yield` (it must be deterministic and free of I/O "
    "anyway: recovery and rebuild() run it again)"
)


def check_projection(projection: Any, what: str = "projection") -> None:
    """Refuse a projection that is not a function of ``(record, state)``, or whose call
    would not run its body (:func:`unrunnable`).

    Raises:
        ConfigurationError: not callable, not callable with two positional arguments
            (it would fail on every record, as poison), or a coroutine, async generator
            or generator function (calling it would only create a coroutine or a
            generator: no record would ever be projected, and each would count as
            applied).
    """
    if not callable(projection):
        raise ConfigurationError(
            f"{what} must be callable, got {type(projection).__name__}", backend="tiered"
        )
    kind = unrunnable(projection)
    if kind is not None:
        named = (
            f"{what} {_name(projection)}"
            if what == "projection"
            else f"{what} ({_name(projection)})"
        )
        raise ConfigurationError(
            f"{named} is {kind[0]}: calling it only creates "
            f"{kind[1]}, so its body would never run, and every record would count as "
            f"applied with nothing projected. Refused: {PROJECTION_FIX}",
            backend="tiered",
        )
    if not takes_args(projection, 2):
        raise ConfigurationError(
            f"{what} must take two positional arguments, projection(record, state), but "
            f"{getattr(projection, '__qualname__', projection)!r} has the signature "
            f"{inspect.signature(projection)}",
            backend="tiered",
        )


def register_projection(name: str, projection: Projection, *, replace: bool = False) -> None:
    """Make ``projection`` available to URLs as ``projection=<name>``.

    Args:
        name: letters, digits, ``_``, ``.``, ``-`` (no ``:``: it is a name, not a path).
        projection: the function ``projection(record, state)``.
        replace: allow replacing a function registered under the same name.

    Raises:
        ConfigurationError: a bad name, a non-callable (or one that does not take
            ``(record, state)``), or the name is taken (and ``replace`` is false).
    """
    _check_name(name)
    check_projection(projection, f"projection {name!r}")
    with _registry_lock:
        old = _registry.get(name)
        if old is not None and old is not projection and not replace:
            raise ConfigurationError(
                f"a projection is already registered as {name!r}; pass replace=True to replace it",
                backend="tiered",
            )
        _registry[name] = projection


def unregister_projection(name: str) -> None:
    """Forget the projection registered as ``name`` (no error if there is none)."""
    with _registry_lock:
        _registry.pop(name, None)


def resolve_projection(name: str) -> Projection:
    """The projection named ``name``: registered at run time, else found in the entry
    point group ``aurora_storage.projections``.

    Raises:
        ConfigurationError: the name is malformed (an import path is refused), unknown,
            or its entry point fails to load or is not callable.
    """
    _check_name(name)
    with _registry_lock:
        found = _registry.get(name)
    if found is not None:
        return found
    eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not eps:
        known = sorted(set(_registry) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise ConfigurationError(
            f"no projection named {name!r}: register it with "
            f"aurora_storage.tiered.register_projection({name!r}, function) or publish it "
            f"in the entry point group {ENTRY_POINT_GROUP!r} (known: "
            f"{', '.join(known) or 'none'})",
            backend="tiered",
        )
    try:
        obj: Any = eps[0].load()
    except Exception as exc:
        raise ConfigurationError(
            f"the projection entry point {name!r} failed to load: {type(exc).__name__}: {exc}",
            backend="tiered",
        ) from exc
    if not callable(obj):
        raise ConfigurationError(
            f"the projection entry point {name!r} is not callable", backend="tiered"
        )
    return obj  # type: ignore[no-any-return]  # checked callable: a Projection by contract


def _hide_tier(text: str) -> str:
    try:
        return URL.parse(text).render()
    except Exception:  # not a URL we can parse: hide what looks secret anyway
        return hide_text(text)


@dataclass(frozen=True, slots=True)
class TieredURL(URL):
    """A ``tiered://`` URL whose printed forms also hide the secrets *inside* its
    ``hot=`` and ``cold=`` options (each is a whole URL, with its own password)."""

    @classmethod
    def of(cls, url: URL) -> TieredURL:
        """The same URL, printed with nested secrets hidden."""
        if isinstance(url, TieredURL):
            return url
        return cls(**{f.name: getattr(url, f.name) for f in dataclasses.fields(URL)})

    def render(self, *, hide_secrets: bool = True) -> str:
        """The URL as text; with ``hide_secrets`` the tiers' passwords and secret options
        are ``***`` too."""
        plain = URL(**{f.name: getattr(self, f.name) for f in dataclasses.fields(URL)})
        if not hide_secrets:
            return plain.render(hide_secrets=False)
        query = tuple((k, _hide_tier(v) if k in ("hot", "cold") else v) for k, v in self.query)
        return dataclasses.replace(plain, query=query).render()

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"URL({self.render()!r})"


#: The options that apply to one mode only: option -> (its mode, what it does).
MODE_OPTIONS: dict[str, tuple[Literal["cache", "projection"], str]] = {
    "fill": ("cache", "what a cache pair's reads copy from cold into hot"),
    "on_poison": ("projection", "what a history record the projection cannot apply does"),
}


@dataclass(frozen=True, slots=True)
class TieredConfig:
    """The options of a tiered pair, checked once (frozen).

    An option of the other mode is refused (``ConfigurationError``), not ignored: left
    out, it is ``None``.

    Attributes:
        projection: the projection function, or ``None`` for cache mode.
        fill: cache mode only: ``"read"`` (default) copies a record found only in cold
            into hot on reads; ``"none"`` never does. ``None`` in projection mode.
        on_poison: projection mode only: what a history record that cannot be decoded
            or projected does: ``"stop"`` (default) stops that tenant's projection at it
            (later records of the tenant wait, parked), ``"park"`` parks it and goes
            on. Other tenants are never affected. ``None`` in cache mode.
        trim_every: trim the applied change log every this many writes.
        rebuild_chunk: history records per hot transaction during a rebuild.
    """

    projection: Projection | None = None
    fill: Literal["read", "none"] | None = None
    on_poison: Policy | None = None
    trim_every: int = 1024
    rebuild_chunk: int = 2000

    def __post_init__(self) -> None:
        if self.projection is not None:
            check_projection(self.projection)
        mode = self.mode
        for name, (applies, does) in MODE_OPTIONS.items():
            value = getattr(self, name)
            if value is not None and applies != mode:
                fix = (
                    "give the pair its projection (projection=<function>, or "
                    "projection=<registered name> in the URL) if it is meant to be a "
                    "projection-mode pair"
                    if mode == "cache"
                    else "leave out projection= if it is meant to be a cache pair"
                )
                raise ConfigurationError(
                    f"option {name}={value!r} applies to {applies} mode only ({does}), "
                    f"but this pair is in {mode} mode (it has "
                    f"{'a projection' if mode == 'projection' else 'no projection'}), "
                    f"where it would have no effect: remove {name} from the URL or the "
                    f"call, or {fix}",
                    backend="tiered",
                )
        if mode == "cache" and self.fill is None:
            object.__setattr__(self, "fill", "read")
        if mode == "projection" and self.on_poison is None:
            object.__setattr__(self, "on_poison", "stop")
        if self.fill not in ("read", "none", None):
            raise ConfigurationError(
                f"fill must be 'read' or 'none', got {self.fill!r}", backend="tiered"
            )
        if self.on_poison not in ("stop", "park", None):
            raise ConfigurationError(
                f"on_poison must be 'stop' or 'park', got {self.on_poison!r}", backend="tiered"
            )
        for name in ("trim_every", "rebuild_chunk"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigurationError(
                    f"{name} must be a positive int, got {value!r}", backend="tiered"
                )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TieredConfig:
        """The config of a ``tiered://`` URL's options (merged with ``open()``'s keyword
        overrides): ``projection`` (a registered name, or a function from a keyword),
        ``fill``, ``on_poison``, ``trim_every``, ``rebuild_chunk``. Other keys are
        ignored (the caller checks for unknown options).

        Raises:
            InvalidURLError: a number option that is not an integer.
            ConfigurationError: an unknown or empty projection name, a bad value, or an
                option of the other mode (``fill`` with a projection, ``on_poison``
                without one).
        """
        projection = options.get("projection")
        if isinstance(projection, str):
            if not projection:
                # An unset environment variable must not silently make a cache pair.
                raise ConfigurationError(
                    "projection= is empty: name a registered projection "
                    "(projection=<name>), or leave the option out for a cache-mode pair",
                    backend="tiered",
                )
            projection = resolve_projection(projection)
        kwargs: dict[str, Any] = {"projection": projection}
        for name in ("fill", "on_poison"):
            if name in options:
                kwargs[name] = options[name]
        for name in ("trim_every", "rebuild_chunk"):
            if name in options:
                try:
                    kwargs[name] = int(options[name])
                except (TypeError, ValueError) as exc:
                    raise InvalidURLError(
                        f"bad value for option {name!r} of the tiered backend: "
                        f"{options[name]!r} is not an integer",
                        backend="tiered",
                    ) from exc
        return cls(**kwargs)

    @property
    def mode(self) -> Literal["cache", "projection"]:
        """``"cache"`` without a projection, else ``"projection"``."""
        return "cache" if self.projection is None else "projection"


def _identity(path: str) -> tuple[int, int] | str:
    """A directory's identity (device, inode) after resolving symlinks; the resolved path
    when it does not exist yet."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return real
    return (st.st_dev, st.st_ino)


def same_store(a: str | None, b: str | None) -> bool:
    """Whether two local store paths name the same store (same directory identity)."""
    if not a or not b:
        return False
    return _identity(a) == _identity(b)


def store_path(tier: Any) -> str | None:
    """The local directory a tier names (a URL or an opened repository), or ``None``
    (an in-memory or remote store)."""
    backend = getattr(tier, "backend", None)
    if backend is not None:
        path = getattr(backend, "path", None)
        return str(path) if path else None
    if not isinstance(tier, str | URL):
        return None
    try:
        url = URL.parse(tier)
    except Exception:
        return None
    if url.scheme in ("memory", "tiered") or url.host or url.path in ("", "/"):
        return None
    try:  # the engines' own path rule (``~`` expansion, ...)
        return local_path(url, backend=url.scheme)
    except Exception:  # the engine will report a bad path itself
        return None
