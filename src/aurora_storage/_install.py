"""How to install an optional extra, worded once for every message that asks for one.

aurora-storage is not published on a public package index yet (README.md, "Install"): it
is installed from a clone (or a wheel built from one), so an extra is installed from
the clone too - ``pip install '.[nats]'``, not ``pip install 'aurora-storage[nats]'``.
"""

from __future__ import annotations

__all__ = ["extra_hint"]


def extra_hint(extra: str) -> str:
    """The install command of the extra ``extra``, for an error message or a doc line.

    Args:
        extra: the extra's name in pyproject.toml (``nats``, ``otel``, ...).

    Returns:
        ``pip install '.[extra]' from a clone of aurora-storage``.
    """
    return f"pip install '.[{extra}]' from a clone of aurora-storage"
