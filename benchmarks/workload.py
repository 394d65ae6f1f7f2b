"""The benchmark's data: realistic ~200-byte event records under string keys."""

from __future__ import annotations

import random
from typing import Any

#: The tenant every timed operation works on.
TENANT = "acme"
#: Records of the scanned tenant (the issue's "scan of one tenant's 100k records").
SCAN_TENANT_RECORDS = 100_000

_KINDS = ("order.created", "order.paid", "order.shipped", "invoice.sent", "user.login")


def key_of(i: int) -> str:
    """Key ``i`` of the preloaded data: 12 characters, sorts like ``i``."""
    return f"evt-{i:08d}"


def event(i: int, rnd: random.Random) -> dict[str, Any]:
    """One event dict; its orjson encoding is about 200 bytes."""
    return {
        "id": f"evt-{i:08d}",
        "type": _KINDS[i % len(_KINDS)],
        "ts": 1_700_000_000_000 + i * 137,
        "tenant": TENANT,
        "actor": {"id": f"user-{rnd.randrange(100_000):06d}", "role": "customer"},
        "amount": round(rnd.uniform(1, 5000), 2),
        "currency": "EUR",
        "items": rnd.randrange(1, 20),
        "note": "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(24)),
    }


def dataset(n: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """``n`` (key, event) pairs in key order."""
    rnd = random.Random(seed)
    return [(key_of(i), event(i, rnd)) for i in range(n)]
