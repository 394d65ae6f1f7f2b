"""What every conformance mixin shares: the fixtures, the sample keys in their
documented order, and small assertions.

Every mixin needs one fixture from the subclass, ``store_url``: a URL string naming a
fresh, empty store, unique per test. The mixins open it with :func:`aurora_storage.open`
(the ``repo`` fixture) and, for persistence, reopen it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

import aurora_storage
from aurora_storage import (
    Repository,
)

__all__ = [
    "ORDERED_KEYS",
    "SAMPLE_VALUES",
    "Base",
    "Boom",
    "Repo",
    "assert_empty",
]

Repo = Repository[Any, Any]

#: Keys in the documented cross-type order: None < False < True < numbers (int and
#: float interleaved numerically) < str (code point order) < bytes < tuples/lists
#: (element by element, a prefix first) < dicts.
ORDERED_KEYS: tuple[Any, ...] = (
    None,
    False,
    True,
    -math.inf,
    -(10**30),
    -1000.5,
    -10,
    -2.5,
    -2,
    -1,
    -0.25,
    0,
    1e-300,
    0.25,
    1,
    2,
    2.5,
    3,
    10,
    1e15 + 0.5,
    10**30,
    math.inf,
    "",
    "\x00",
    "A",
    "Z",
    "a",
    "a\x00",
    "a\x00b",
    "a\x01",
    "ab",
    "b",
    "\u00e9",
    "\uffff",
    "\U0001f600",
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x01",
    b"a",
    b"\xff",
    (),
    (None,),
    (False,),
    (-1,),
    (0,),
    (1,),
    (1, None),
    (1, "a"),
    (1, ("a",)),
    (2,),
    ("a",),
    ("a", 1),
    ("b",),
    (b"a",),
    ((),),
    ((1,),),
    ({},),
    {},
    {"a": 1},
    {"a": 2},
    {"a": 2, "b": 0},
    {"b": 0},
)

SAMPLE_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -7,
    3.25,
    "text",
    "\u00fc\U0001f600",
    [],
    [1, "two", None],
    {},
    {"nested": {"list": [1, 2, {"x": None}], "flag": False}},
)


class Base:
    """Fixtures shared by every mixin."""

    @pytest.fixture
    def store_url(self) -> str:
        """Override in the subclass: a URL naming a fresh, empty store, unique per test."""
        pytest.fail(
            f"{type(self).__name__} must define a `store_url` fixture returning the URL "
            "of a fresh store, e.g. f'mykv://{tmp_path}/store'"
        )

    @pytest.fixture
    def repo(self, store_url: str) -> Iterator[Repo]:
        """The store at ``store_url``, opened with :func:`aurora_storage.open`."""
        r = aurora_storage.open(store_url)
        try:
            yield r
        finally:
            r.close()


def assert_empty(repo: Repo) -> None:
    assert list(repo.tenants()) == [], "a failed call left data behind"


class Boom(Exception):
    """Raised by tests inside a batch to check that nothing of it is written."""
