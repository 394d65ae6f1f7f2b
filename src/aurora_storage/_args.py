"""Checks of the bulk and scan arguments, shared by every public method (I/O-free).

Tenants and keys are checked where they are encoded (:mod:`aurora_storage._keys`); this
module checks the arguments around them: iterables of keys, iterables of ``(key, value)``
pairs, and scan options. Each refusal is an
:class:`~aurora_storage.errors.InvalidArgumentError` (a ``TypeError`` and a
``ValueError``) saying what was expected, raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

from .errors import InvalidArgumentError

__all__ = ["check_scan", "key_list", "pair", "pairs", "split_pairs"]

# A str or bytes is an iterable of characters, never meant as an iterable of keys:
# delete_many("t", "ab") must not delete "a" and "b".
_SCALARS = (str, bytes, bytearray, memoryview)
_PAIR_TYPES = {tuple, list}
_first = itemgetter(0)
_second = itemgetter(1)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def key_list(keys: Any, method: str) -> list[Any]:
    """``keys`` as a list, refusing a str/bytes (one key) and non-iterables.

    Raises:
        InvalidArgumentError: ``keys`` is a str, bytes-like or not iterable.
    """
    if type(keys) is list:
        return keys
    if isinstance(keys, _SCALARS):
        raise InvalidArgumentError(
            f"{method}() takes an iterable of keys, got a {type(keys).__name__} "
            f"({_short(keys)}); pass one key in a list: [{_short(keys)}]"
        )
    try:
        it = iter(keys)
    except TypeError:
        raise InvalidArgumentError(
            f"{method}() takes an iterable of keys (a list, tuple, set, generator ...), "
            f"got {type(keys).__name__}"
        ) from None
    return list(it)


def pairs(items: Any, method: str) -> Iterable[Any]:
    """The ``(key, value)`` pairs of a mapping or an iterable of pairs (checked one by one
    with :func:`pair` as they are consumed).

    Raises:
        InvalidArgumentError: ``items`` is a str, bytes-like or not iterable.
    """
    if isinstance(items, Mapping):
        return items.items()
    if isinstance(items, _SCALARS):
        raise InvalidArgumentError(
            f"{method}() takes a mapping or an iterable of (key, value) pairs, got a "
            f"{type(items).__name__} ({_short(items)})"
        )
    try:
        return iter(items)  # type: ignore[no-any-return]  # an iterator of Any
    except TypeError:
        raise InvalidArgumentError(
            f"{method}() takes a mapping or an iterable of (key, value) pairs, got "
            f"{type(items).__name__}"
        ) from None


def pair(item: Any, index: int, method: str) -> tuple[Any, Any]:
    """One ``(key, value)`` pair: a 2-tuple or a 2-list (a str of two characters is not).

    Raises:
        InvalidArgumentError: ``item`` is anything else.
    """
    if isinstance(item, tuple | list) and len(item) == 2:
        return item[0], item[1]
    raise InvalidArgumentError(
        f"{method}() takes (key, value) pairs; item {index} is {_short(item)} "
        f"({type(item).__name__}); nothing was written"
    )


def split_pairs(items: Any, method: str) -> tuple[list[Any], list[Any]]:
    """The keys and the values of a mapping or an iterable of ``(key, value)`` pairs, as
    two lists in item order (the bulk form of :func:`pairs` and :func:`pair`: a list of
    2-tuples is checked and split with a few C-level passes, not a call per item).

    Raises:
        InvalidArgumentError: ``items`` is a str, bytes-like or not iterable, or an item
            is not a 2-tuple or 2-list (named by its index).
    """
    if type(items) is dict:
        return list(items), list(items.values())
    seq = items if type(items) is list else list(pairs(items, method))
    if set(map(type, seq)) <= _PAIR_TYPES:
        try:
            # Unpacking an exact tuple or list checks its length: one pass takes the
            # keys and proves every item a pair (cheaper than a pass of len() first).
            keys = [k for k, _ in seq]
        except ValueError:
            pass  # an item of another length: named by pair() below
        else:
            return keys, list(map(_second, seq))
    seq = [pair(item, i, method) for i, item in enumerate(seq)]
    return list(map(_first, seq)), list(map(_second, seq))


def check_scan(reverse: Any, limit: Any) -> None:
    """Check the ``reverse`` and ``limit`` scan options (``prefix``, ``start`` and
    ``stop`` are checked when they are encoded as keys).

    Raises:
        InvalidArgumentError: ``reverse`` is not a bool, or ``limit`` is not ``None`` or
            a non-negative int.
    """
    if reverse is not False and reverse is not True:
        raise InvalidArgumentError(f"reverse must be True or False, got {_short(reverse)}")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidArgumentError(f"limit must be None or a non-negative int, got {_short(limit)}")
