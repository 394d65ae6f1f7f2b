"""The checks of the recorders' bounds, limits and topics, one rule for every method.

A bound (a notification id or an aggregate version: ``select_notifications``'s
``start``/``stop``, ``subscribe``'s ``gt``, ``select_events``'s ``gt``/``lte``,
``has_tracking_id``'s and ``wait``'s ``notification_id``) is an ``int`` or ``None``:
ids and versions are key elements, and the key encoding keeps ``2.5``, ``True`` and
``"2"`` apart from the ints, so such a bound would silently select other rows.
Anything else is a ``DataError`` (cause ``InvalidKeyError``). A limit is an ``int``
from 0 up (``None`` too where it means "all"), and ``topics`` a collection of str
(``None`` or empty: every topic); anything else is a ``ProgrammingError`` (cause
``InvalidArgumentError``), as the repository's own ``limit`` check raises.
"""

from __future__ import annotations

from typing import Any

from aurora_storage.errors import InvalidArgumentError, InvalidKeyError

from ._errors import translate

__all__ = ["check_bound", "check_limit", "check_topics"]


def check_bound(doing: str, call: str, name: str, value: Any, what: str) -> None:
    """Refuse ``value`` unless it is an ``int`` or ``None``.

    Args:
        doing: what the recorder was doing, for the message (``"select notifications"``).
        call: the method, for the message (``"select_notifications"``).
        name: the argument's name.
        value: the argument.
        what: what the bound is (``"a notification id"``, ``"a version"``).

    Raises:
        DataError: ``value`` is neither (cause: InvalidKeyError).
    """
    if value is None or type(value) is int:
        return
    exc = InvalidKeyError(
        f"{call}({name}=...) must be an int ({what}) or None, got {type(value).__name__} "
        f"{value!r:.80}; notification ids and versions are ints, and a bool, float or str "
        "bound would select other rows"
    )
    raise translate(exc, doing) from exc


def check_limit(doing: str, call: str, value: Any, *, optional: bool) -> None:
    """Refuse ``value`` unless it is an ``int`` from 0 up (or ``None`` if ``optional``).

    Raises:
        ProgrammingError: it is not (cause: InvalidArgumentError).
    """
    if type(value) is int and value >= 0:
        return
    if optional and value is None:
        return
    exc = InvalidArgumentError(
        f"{call}(limit=...) must be {'None or ' if optional else ''}an int from 0 up (the "
        f"most rows to return{', None for all' if optional else ''}), got "
        f"{type(value).__name__} {value!r:.80}"
    )
    raise translate(exc, doing) from exc


def check_topics(doing: str, call: str, topics: Any) -> tuple[str, ...]:
    """The topic names of ``topics``: a collection (list, tuple, set, ...) of str, or
    ``None`` (every topic, as an empty collection).

    Raises:
        ProgrammingError: a str or bytes (one name is ``[name]``), something that is
            not a collection, or an item that is not a str (cause: InvalidArgumentError).
    """
    if topics is None:
        return ()
    if isinstance(topics, (str, bytes, bytearray)):
        hint = f"; for the one topic pass [{topics!r:.80}]"
    else:
        try:
            names = tuple(topics)
        except TypeError:
            hint = ""
        else:
            bad = [t for t in names if not isinstance(t, str)]
            if not bad:
                return names
            hint = f"; its item {bad[0]!r:.80} is a {type(bad[0]).__name__}"
    exc = InvalidArgumentError(
        f"{call}(topics=...) must be a collection of topic names (str), got "
        f"{type(topics).__name__} {topics!r:.80}{hint}"
    )
    raise translate(exc, doing) from exc
