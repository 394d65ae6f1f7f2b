"""No import circles in src/: the module import graph, built with ``ast``, has no cycle.

Every import counts (module level and inside functions: a lazy import that closes a
circle is still a circle, just one that fails later), except those under
``if TYPE_CHECKING:``, which never run. An import of ``pkg.mod`` or ``from pkg import
mod`` is an edge to that module; ``from pkg.mod import name`` is an edge to ``pkg.mod``
(to ``pkg.mod.name`` instead when that is a module). The implicit import of parent packages
is not an edge (every module would otherwise depend on its package's ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import aurora_storage

SRC = Path(aurora_storage.__file__).resolve().parent.parent
PACKAGES = (
    "aurora_storage",
    "aurora_storage_rocksdb",
    "aurora_storage_lmdb",
    "aurora_storage_nats",
)

#: Circles being removed by other work, each with who removes it. An entry that no
#: longer exists fails the test too, so the list never outlives the circle.
KNOWN_CIRCLES: set[frozenset[str]] = set()


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in packages:
        for path in (root / pkg).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (those under ``if TYPE_CHECKING:`` cannot)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (see the module docstring)."""
    modules = _modules(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                # ``from pkg import mod`` imports the module; ``from pkg import name``
                # reads a name of the package.
                targets = [
                    f"{mod}.{alias.name}" if f"{mod}.{alias.name}" in modules else mod
                    for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_src_has_no_import_circles() -> None:
    found = set(circles(import_graph(SRC, PACKAGES)))
    new = [sorted(c) for c in found - KNOWN_CIRCLES]
    assert new == [], "import circles (break them; see this test's docstring)"
    gone = [sorted(c) for c in KNOWN_CIRCLES - found]
    assert gone == [], "these circles are gone: remove them from KNOWN_CIRCLES"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_deliberate_circle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from ._a import A\n",
            "pkg/_a.py": "from . import _b\nA = 1\n",
            # The circle's closing edge is a lazy import inside a function.
            "pkg/_b.py": "def f() -> int:\n    from ._a import A\n    return A\n",
            "pkg/_c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._a import A\n"
            ),
            "pkg/sub/__init__.py": "from .. import _c\nfrom pkg._a import A\nfrom pkg import A\n",
        },
    )
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg._a"] == {"pkg._b"}
    assert graph["pkg._c"] == set()  # TYPE_CHECKING imports never run
    assert graph["pkg.sub"] == {"pkg._c", "pkg._a", "pkg"}
    assert circles(graph) == [frozenset({"pkg._a", "pkg._b"})]


def test_checker_finds_a_circle_through_three_modules(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/x.py": "import pkg.y\n",
            "pkg/y.py": "from pkg import z\n",
            "pkg/z.py": "from .x import something\n",
            "pkg/w.py": "import pkg.x\n",
        },
    )
    assert circles(import_graph(tmp_path, ("pkg",))) == [frozenset({"pkg.x", "pkg.y", "pkg.z"})]
