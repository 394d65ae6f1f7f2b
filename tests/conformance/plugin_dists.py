"""Installing small test distributions the way pip would, for plugin tests.

A distribution is a ``<name>-0.1.dist-info`` folder (``METADATA`` and an
``entry_points.txt`` naming its ``aurora_storage`` entry points) next to its modules, in
a temporary site directory put on ``sys.path``: ``importlib.metadata`` then finds its entry
points exactly as it finds an installed package's, and a subprocess given the directory
in ``PYTHONPATH`` sees the same.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aurora_storage.plugins import refresh_plugins

_METADATA = "Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n"


def install_dist(
    site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None
) -> None:
    """Write the distribution ``dist`` into ``site``: its ``.dist-info`` with these
    ``aurora_storage`` entry points (name -> ``module:attr`` or ``module``), and its
    modules (file name relative to ``site`` -> source text)."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(_METADATA.format(name=dist.replace("_", "-")))
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[aurora_storage]\n{lines}")
    for name, text in (modules or {}).items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@contextmanager
def on_path(site: Path, *module_prefixes: str) -> Iterator[Path]:
    """Put ``site`` first on ``sys.path`` and refresh the plugin registry; afterwards
    take it away, forget the modules imported from it, and refresh again."""
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    refresh_plugins()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        if module_prefixes:
            for name in [m for m in sys.modules if m.startswith(module_prefixes)]:
                del sys.modules[name]
        importlib.invalidate_caches()
        refresh_plugins()
