"""URLs and option parsing shared by every backend (the :class:`URL` class itself is
defined in ``aurora_storage._url`` and public here and as ``aurora_storage.URL``).

A backend's options live in one frozen dataclass. :func:`config_from_options` fills it
from a URL's query string and keyword overrides, coercing each option by the field's
type (``bool`` accepts ``true/false/1/0/yes/no/on/off``; fields marked with
:func:`size_field` accept ``64MiB``/``1GiB``; ``Literal[...]`` fields accept their
choices) and rejecting anything unknown or malformed with
:class:`~aurora_storage.errors.InvalidURLError` listing the valid options.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

from ._url import URL
from .errors import ConfigurationError, InvalidURLError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "URL",
    "config_from_options",
    "describe_options",
    "expand_store_path",
    "local_path",
    "parse_bool",
    "parse_size",
    "size_field",
]


def local_path(url: URL, *, backend: str) -> str:
    """The filesystem path of a URL naming a local store (``scheme:///abs/path``,
    ``scheme:relative/path``, ``scheme://./relative/path`` or ``scheme://~/in/home``), for
    file-based backends, checked and ``~``-expanded by :func:`expand_store_path`.

    Raises:
        InvalidURLError: the URL has a host, port or user, names no path, or its path
            cannot name a file (see :func:`expand_store_path`).
    """
    forms = f"'{backend}:///abs/path' or '{backend}:relative/path'"
    if (
        url.host
        and url.host.startswith("~")
        and url.port is None
        and url.username is None
        and url.password is None
    ):
        # scheme://~user/x: the URL parser reads ``~user`` as a host; it is the leading
        # ``~user`` component of the path (``scheme://~/x`` parses as a path already).
        return expand_store_path(url.host + url.path, backend=backend)
    if url.host or url.port is not None or url.username is not None:
        raise InvalidURLError(
            f"{backend} URLs name a local store and take no host: use {forms}, not {url}",
            backend=backend,
        )
    if url.path in ("", "/"):
        raise InvalidURLError(f"{url} names no path: use {forms}", backend=backend)
    return expand_store_path(url.path, backend=backend)


#: Longest path this module lets through (Linux PATH_MAX, counting the final NUL).
_PATH_MAX = 4095


def expand_store_path(path: str | os.PathLike[str], *, backend: str) -> str:
    """The one rule every file-based backend applies to a store path (from a URL or a
    constructor argument):

    * a leading ``~`` or ``~user`` component means that user's home directory (as in a
      shell): ``rocksdb://~/data``, ``lmdb:~/data`` and ``path="~/data"`` all name
      ``$HOME/data``. A ``~`` anywhere else (``/srv/~/x``, ``data/~``) is an ordinary
      name. Other variables (``$HOME``) are not expanded;
    * the path must be UTF-8 text (a name in another encoding is refused) without NUL
      characters, each component at most the filesystem's name limit (255 bytes on
      common filesystems) and the whole at most 4095 bytes.

    Relative paths stay relative (to the current directory when opened).

    Raises:
        InvalidURLError: a NUL character, a name that is not UTF-8, an over-long
            component or path, or a ``~user`` whose home directory is unknown. The
            message says what to change.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise InvalidURLError(
            f"a {backend} store path must be a str or os.PathLike, got {type(path).__name__}",
            backend=backend,
        )
    if "\x00" in path:
        raise InvalidURLError(
            f"the {backend} store path {path!r} contains a NUL character, which no file "
            "name can hold; remove it",
            backend=backend,
        )
    if path.startswith("~"):
        expanded = os.path.expanduser(path)
        if expanded.startswith("~"):
            user = path[1:].split("/", 1)[0]
            who = f"user {user!r}" if user else "this user (HOME is not set)"
            raise InvalidURLError(
                f"the {backend} store path {path!r} starts with ~, but the home directory "
                f"of {who} is unknown; write the path out in full",
                backend=backend,
            )
        path = expanded
    try:
        encoded = os.fsencode(path)
    except UnicodeError as exc:
        raise InvalidURLError(
            f"the {backend} store path {path!r} cannot be encoded as a file name: {exc}",
            backend=backend,
        ) from exc
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A file name in another encoding, as os.fsdecode gives it (each byte that is
        # not UTF-8 as a lone surrogate): neither engine can open it (RocksDB failed
        # with a raw encoding error, LMDB with an internal one).
        raise InvalidURLError(
            f"the {backend} store path {encoded!r} is not valid UTF-8 (a name written in "
            "another encoding); the engines take UTF-8 paths only: rename it, or name it "
            "through a symbolic link whose path is UTF-8",
            backend=backend,
        ) from exc
    if len(encoded) > _PATH_MAX:
        raise InvalidURLError(
            f"the {backend} store path is {len(encoded)} bytes long; the limit is "
            f"{_PATH_MAX}: choose a shorter path",
            backend=backend,
        )
    limit = _name_max(path)
    for part in encoded.split(b"/"):
        if len(part) > limit:
            raise InvalidURLError(
                f"the component {os.fsdecode(part)[:40]!r}... of the {backend} store path "
                f"is {len(part)} bytes long; file names are limited to {limit} bytes here: "
                "choose a shorter name",
                backend=backend,
            )
    return path


def _name_max(path: str) -> int:
    """The longest file name the filesystem holding ``path`` (or its nearest existing
    ancestor) accepts; 255 if it cannot be asked."""
    cur = os.path.abspath(path)
    while True:
        try:
            return int(os.pathconf(cur, "PC_NAME_MAX"))
        except (OSError, ValueError):
            parent = os.path.dirname(cur)
            if parent == cur:
                return 255
            cur = parent


# ------------------------------------------------------------------ option coercion

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
    "ti": 1024**4,
    "p": 1024**5,
    "pb": 1000**5,
    "pib": 1024**5,
    "pi": 1024**5,
}


def parse_bool(text: str) -> bool:
    """``true/false/1/0/yes/no/on/off`` (any case) to a bool.

    Raises:
        ValueError: anything else.
    """
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false/1/0), got {text!r}")


def parse_size(text: str | int) -> int:
    """A byte size: an int, or text like ``4096``, ``64MiB``, ``1GiB``, ``10MB``, ``1.5GiB``.

    Binary units (KiB, MiB, GiB, TiB; also K, M, G, T) are powers of 1024; decimal units
    (KB, MB, GB, TB) are powers of 1000.

    Raises:
        ValueError: malformed text, a negative number, or a fraction of a byte
            (``1.5`` bytes; ``1.5KiB`` is fine).
    """
    if isinstance(text, bool):
        raise ValueError("expected a size, got a bool")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative, got {text}")
        return text
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"expected a size like 4096, 64MiB or 1GiB, got {text!r}")
    number, unit = m.group(1), (m.group(2) or "").lower()
    # Exact arithmetic: 0.1KB is 100 bytes, not 100.00000000000001 truncated.
    value = Fraction(number) * _UNITS[unit]
    if value.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(value)


def size_field(default: int | None, *, help: str = "") -> Any:
    """A dataclass field holding a byte size, accepting ``64MiB``-style text."""
    return field(default=default, metadata={"parser": parse_size, "help": help})


def _describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def _coerce(name: str, tp: Any, parser: Callable[[Any], Any] | None, value: Any) -> Any:
    """Coerce one option value (text from a URL, or a typed keyword) to the field's type."""
    if parser is not None:
        if value is None and _allows_none(tp):
            return None
        return parser(value)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        is_none = value is None or (
            isinstance(value, str) and value.lower() in ("", "none", "null")
        )
        if is_none and len(args) < len(typing.get_args(tp)):
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(name, arg, None, value)
            except (ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str):
            low = value.strip().lower()
            for c in choices:
                if str(c).lower() == low:
                    return c
        elif value in choices:
            return value
        raise ValueError(f"expected one of {', '.join(map(str, choices))}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return parse_bool(value)
        raise TypeError(f"expected a bool, got {type(value).__name__}")
    if tp is int:
        if isinstance(value, bool):
            raise TypeError("expected an int, got a bool")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        raise TypeError(f"expected an int, got {type(value).__name__}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"expected a str, got {type(value).__name__}")
    return value


def _allows_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


#: A config class: a dataclass (the option parser reads its fields).
C = TypeVar("C", bound="DataclassInstance")


def describe_options(config_cls: type[Any], *, exclude: tuple[str, ...] = ()) -> str:
    """A one-line list of a config class's options and their types, for error messages."""
    hints = _hints(config_cls)
    return ", ".join(
        f"{f.name} ({_field_kind(f, hints)})"
        for f in dataclasses.fields(config_cls)
        if f.name not in exclude and f.init
    )


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(config_cls: type[Any]) -> dict[str, Any]:
    # get_type_hints evaluates the annotations each call; a config class never changes.
    hints = _HINTS.get(config_cls)
    if hints is None:
        hints = _HINTS[config_cls] = typing.get_type_hints(config_cls)
    return hints


def _field_kind(f: dataclasses.Field[Any], hints: Mapping[str, Any]) -> str:
    return "size" if f.metadata.get("parser") is parse_size else _describe_type(hints[f.name])


def _with_core_options(valid: str) -> str:
    # `codec` is taken by the core before a backend sees its options, but it is valid on
    # every URL, so every list of valid options names it.
    core = "codec (json|msgpack|raw|...)"
    return f"{valid}, {core}" if valid else core


def config_from_options(
    config_cls: type[C],
    options: Mapping[str, Any],
    *,
    backend: str,
    fixed: Mapping[str, Any] | None = None,
) -> C:
    """Build a frozen config dataclass from URL options and keyword overrides.

    Args:
        config_cls: the backend's frozen dataclass.
        options: option name -> text (from the URL) or typed value (from keywords).
        backend: the scheme, for messages.
        fixed: values set by other parts of the URL (e.g. ``path``), not options.

    Raises:
        InvalidURLError: an unknown option (listing the valid ones), a malformed value,
            or one the config's own validation refuses (out of range, conflicting).
        ConfigurationError: another failure the config's validation raises (its own
            subclass of ConfigurationError).
    """
    fixed = dict(fixed or {})
    hints = _hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    kwargs: dict[str, Any] = {}
    for name, value in options.items():
        f = fields.get(name)
        if f is None or name in fixed:
            valid = _with_core_options(describe_options(config_cls, exclude=tuple(fixed)))
            raise InvalidURLError(
                f"unknown option {name!r} for the {backend} backend; valid options: {valid}",
                backend=backend,
            )
        try:
            kwargs[name] = _coerce(name, hints[name], f.metadata.get("parser"), value)
        except (ValueError, TypeError) as exc:
            valid = _with_core_options(describe_options(config_cls, exclude=tuple(fixed)))
            raise InvalidURLError(
                f"bad value for option {name!r} ({_field_kind(f, hints)}) of the {backend} "
                f"backend: {exc}; valid options: {valid}",
                backend=backend,
            ) from exc
    kwargs.update(fixed)
    try:
        return config_cls(**kwargs)
    except InvalidURLError:
        raise
    except ConfigurationError as exc:
        if type(exc) is not ConfigurationError:
            raise
        # An option value the backend's config refuses (out of range, conflicting with
        # another option) is a bad option, as a malformed one is: InvalidURLError (a
        # ConfigurationError; the command line's "bad URL or option", exit 2).
        raise InvalidURLError(str(exc), backend=backend, path=exc.path) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"invalid {backend} configuration: {exc}", backend=backend
        ) from exc
