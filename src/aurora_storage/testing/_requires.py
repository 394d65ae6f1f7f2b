"""The conformance suite is built on pytest and hypothesis, which aurora-storage does not
depend on: importing :mod:`aurora_storage.testing` without them raises an ImportError
naming the extra that brings them, instead of a bare "No module named 'hypothesis'"."""

from __future__ import annotations

import importlib.util

from .._install import extra_hint

__all__: list[str] = []

#: The modules the suite imports, and the extra that installs them.
_NEEDS = ("pytest", "hypothesis")


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ImportError:  # a finder that refuses the name (an import hook, a blocker)
        return True


for _name in _NEEDS:
    if _missing(_name):
        raise ImportError(
            f"aurora_storage.testing needs pytest and hypothesis ({_name!r} is not "
            f"installed): install the 'test' extra, {extra_hint('test')}",
            name=_name,
        )
