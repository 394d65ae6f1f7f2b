"""Splitting a key of the TypeScript package's RocksDB layout into tenant and key.

The TypeScript package (``@aurora/runtime-storage-rocksdb``) stores a record under the
UTF-8 bytes of ``tenantId + ":" + JSON.stringify(key)``. A tenant may contain ``:`` and so
may a JSON key, so neither the first nor the last ``:`` is the separator in general
(``a:b:"c:d"`` is tenant ``a:b``, key ``"c:d"``).

**The rule.** The separator is the ``:`` whose remainder is one JSON text, read as
``JSON.parse`` reads it (whitespace around the value allowed: space, tab, line feed,
carriage return; the package's ``JSON.stringify`` writes none, but the application's
``list()`` reads a key stored with some, and its values are read the same way). At most
one ``:`` of a key has that property, whatever the tenant: let ``S[p+1:]`` be a JSON text
and ``q > p`` another ``:``. That ``:`` is no whitespace, so it lies inside the JSON
value, and it is either

* an object's name separator: the text after it closes at least one bracket it did not
  open, so it is not a JSON text; or
* inside a string: the text after it holds an odd number of unescaped quotes (the one
  closing that string, then pairs; a quote's escaping depends only on the backslashes
  just before it, and those lie after the ``:``), and a JSON text holds an even number.

So every key the package wrote splits in exactly one way (``tests/cli`` checks this over
random tenants and JSON keys with hypothesis). A key with no such ``:`` was not written
as ``tenant:JSON(key)`` (``tenant:undefined`` from ``JSON.stringify(undefined)``, or a
record another program put in the same database): it is reported, never guessed.

**Known tenants.** Given the list of tenant ids the application uses, the split must name
one of them: a key whose JSON reading names another tenant is reported
(``unknown-tenant``, or ``ambiguous`` when a known tenant is also a prefix of it). A key
with no JSON reading and exactly one known tenant as its prefix is *resolved*: that
tenant, and the rest of the key as a text key (the report counts these). More than one
known tenant as prefix of such a key is ``ambiguous``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Set
from typing import Any

from ..errors import SeedKeyError

__all__ = ["SeedSplit", "parse_json", "split_seed_key"]

#: The separator between tenant id and JSON key in the TypeScript package's layout.
SEPARATOR = ":"


@dataclasses.dataclass(frozen=True)
class SeedSplit:
    """One stored key of the TypeScript layout, split.

    Attributes:
        tenant: the tenant id (text before the separator).
        key: the key as a Python value (JSON strings, numbers, booleans, null, arrays as
            lists and objects as dicts), or the text after the separator when
            ``text_key`` is true.
        text_key: the part after the separator is not JSON; the key is that text, and
            the tenant came from the list of known tenants.
    """

    tenant: str
    key: Any
    text_key: bool = False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: JavaScript's safe integers: every integer of at most this magnitude is a double.
JS_SAFE_INTEGER = 2**53
#: Integers that every shipped codec stores exactly (json through orjson, msgpack): a
#: JavaScript number beyond the safe integers within this range is kept as the exact
#: integer its double holds, one beyond it as that double (a ``float``).
_INT_RANGE = (-(2**63), 2**64 - 1)


def js_integer(text: str) -> int | float:
    """The number ``JSON.parse`` makes of the JSON integer ``text``: JavaScript reads
    every number as a double, so an integer beyond +-2**53 becomes the nearest double
    (``1152921504606847000``, which ``JSON.stringify(2**60)`` writes, is 2**60).

    Returns:
        the integer itself when it is safe (at most 2**53 in magnitude); else the exact
        integer value of its double while that fits 64 bits (-2**63 .. 2**64-1, what the
        codecs store exactly), or the double itself (a ``float``) beyond.

    Raises:
        ValueError: beyond the largest double (JavaScript reads ``Infinity``, which
            ``JSON.stringify`` never writes back as a number).
    """
    n = int(text)
    if -JS_SAFE_INTEGER <= n <= JS_SAFE_INTEGER:
        return n
    try:
        double = float(n)  # correctly rounded, as JavaScript rounds the decimal text
    except OverflowError as exc:
        raise ValueError(
            f"the integer {text[:20]}... is beyond the largest JavaScript number "
            "(JSON.parse reads Infinity)"
        ) from exc
    exact = int(double)
    if _INT_RANGE[0] <= exact <= _INT_RANGE[1]:
        return exact
    return double


def parse_json(text: str) -> Any:
    """``text`` parsed as one strict JSON text (RFC 8259), as ``JSON.parse`` reads it.

    Numbers are what JavaScript held (see :func:`js_integer`): an integer beyond
    +-2**53 is the double ``JSON.parse`` made of it, kept as that double's exact integer
    value within 64 bits and as a ``float`` beyond. ``NaN`` and ``Infinity`` are refused.
    The rule is documented in docs/migrating-from-typescript.md ("Numbers").

    Raises:
        ValueError: ``text`` is not one JSON text.
    """
    return json.loads(text, parse_constant=_no_constant, parse_int=js_integer)


def _json_reading(text: str) -> SeedSplit | None:
    """The split at the one ``:`` whose remainder is a JSON text (see the module
    docstring for why there is at most one), or ``None``."""
    at = text.find(SEPARATOR)
    while at >= 0:
        # A JSON text as JSON.parse reads it - values too (parse_json): whitespace
        # around it is allowed (JSON's four: space, tab, line feed, carriage return).
        # JSON.stringify writes none, but the application's list() reads such a key
        # with JSON.parse; a stored key with some is not in canonical form, so it
        # never silently shares an aurora key with another (see _seed._collision).
        try:
            key = parse_json(text[at + 1 :])
        except (ValueError, RecursionError):
            pass
        else:
            return SeedSplit(text[:at], key)
        at = text.find(SEPARATOR, at + 1)
    return None


def _known_prefixes(text: str, known_tenants: Set[str]) -> set[str]:
    """Every known tenant ``t`` such that ``text`` starts with ``t + ':'``."""
    found: set[str] = set()
    at = text.find(SEPARATOR)
    while at >= 0:
        if text[:at] in known_tenants:
            found.add(text[:at])
        at = text.find(SEPARATOR, at + 1)
    return found


def split_seed_key(text: str, *, known_tenants: Set[str] | None = None) -> SeedSplit:
    """Split one stored key of the TypeScript package's layout into tenant and key.

    Args:
        text: the stored key, decoded from UTF-8.
        known_tenants: the application's tenant ids, if known; the split must name one
            of them (see the module docstring).

    Returns:
        The tenant and the key.

    Raises:
        SeedKeyError: the key cannot be split without guessing; ``reason`` says why.
    """
    reading = _json_reading(text)
    if known_tenants is None:
        if reading is None:
            raise SeedKeyError(
                f"cannot split {text!r}: no ':' in it is followed by a JSON text, so it was "
                "not written as tenant:JSON(key); pass the tenant ids (--tenant-id) to "
                "import it with the rest as a text key",
                reason="unsplittable",
            )
        return reading
    if reading is not None and reading.tenant in known_tenants:
        return reading
    # The known tenants t with text.startswith(t + ':'): each is text[:at] for one of
    # the key's own ':' positions, so looking those up costs O(len(text)) whatever the
    # number of known tenants (a scan of 20,000 tenant ids cost ~7 ms per key).
    prefixes = tuple(sorted(_known_prefixes(text, known_tenants)))
    if reading is not None:
        if not prefixes:
            raise SeedKeyError(
                f"{text!r} reads as tenant {reading.tenant!r}, key {reading.key!r}, and "
                f"{reading.tenant!r} is not a known tenant; add it to the known tenants to "
                "import it",
                reason="unknown-tenant",
                candidates=(reading.tenant,),
            )
        raise SeedKeyError(
            f"{text!r} reads as tenant {reading.tenant!r} (not a known tenant) with a JSON "
            f"key, or as known tenant(s) {', '.join(map(repr, prefixes))} with a text key; "
            "add the right tenant to the known tenants (or remove the wrong one)",
            reason="ambiguous",
            candidates=(reading.tenant, *prefixes),
        )
    if len(prefixes) == 1:
        tenant = prefixes[0]
        return SeedSplit(tenant, text[len(tenant) + 1 :], text_key=True)
    if prefixes:
        raise SeedKeyError(
            f"{text!r} starts with more than one known tenant ({', '.join(map(repr, prefixes))}) "
            "and what follows is not JSON, so nothing tells them apart",
            reason="ambiguous",
            candidates=prefixes,
        )
    raise SeedKeyError(
        f"cannot split {text!r}: no ':' in it is followed by a JSON text, and it starts with "
        "no known tenant",
        reason="unsplittable",
    )
