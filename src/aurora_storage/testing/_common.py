"""Helpers shared by the conformance test mixins and the state machine."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aurora_storage import Repository

#: Tenant ids that break naive ``tenant + ":" + key`` layouts: prefixes of each other,
#: separators, NUL and 0xFF-looking characters, non-ASCII, whitespace, a long one.
HOSTILE_TENANTS: tuple[str, ...] = (
    "a",
    "a:b",
    "a:",
    "acme",
    "acme-corp",
    "a\x00b",
    "a\xff",
    "\u00fc",
    " ",
    "/",
    "\x00",
    "long-" * 40,
)

#: Keys of every supported type, nested ones included.
SAMPLE_KEYS: tuple[Any, ...] = (
    None,
    False,
    True,
    -math.inf,
    -(10**30),
    -2.5,
    -1,
    0,
    0.5,
    1,
    2.5,
    10,
    10**30,
    math.inf,
    "",
    "a",
    "a\x00b",
    "\u00fc",
    "\U0001f600",
    b"",
    b"\x00\xff",
    (),
    (1, "a"),
    (1, ("nested", (None, b"x"))),
    {},
    {"a": 1, "b": (2, 3)},
    {"outer": {"inner": [1, 2]}},
)


def typed(key: Any) -> Any:
    """A comparable form of a key that keeps bool apart from int (``True == 1`` in
    Python but not as a key) and treats int/float as one number type, lists as tuples."""
    if key is None or isinstance(key, bool):
        return ("const", repr(key))
    if isinstance(key, int | float):
        return ("num", key)
    if isinstance(key, str):
        return ("str", key)
    if isinstance(key, bytes):
        return ("bytes", key)
    if isinstance(key, tuple | list):
        return ("seq", tuple(typed(e) for e in key))
    if isinstance(key, dict):
        return ("dict", sorted((repr(typed(k)), typed(v)) for k, v in key.items()))
    return ("other", repr(key))


def typed_list(keys: Any) -> list[Any]:
    """:func:`typed` of each key."""
    return [typed(k) for k in keys]


def has_list(key: Any) -> bool:
    """Whether a decoded key still contains a list (keys must decode as tuples)."""
    if isinstance(key, list):
        return True
    if isinstance(key, tuple):
        return any(has_list(e) for e in key)
    if isinstance(key, dict):
        return any(has_list(k) or has_list(v) for k, v in key.items())
    return False


def require(repo: Repository[Any, Any], capability: str, why: str) -> None:
    """Skip the calling test, with the reason, unless the backend declares ``capability``."""
    if not getattr(repo.capabilities, capability):
        # Reported at the test's own location (not this helper's) in the skip summary.
        raise pytest.skip.Exception(
            f"backend {repo.backend.scheme!r} does not declare capabilities.{capability}; {why}",
            _use_item_location=True,
        )


def with_option(url: str, name: str, value: str) -> str:
    """``url`` with one more query option."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{name}={value}"
