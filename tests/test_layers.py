"""The layers of DESIGN.md hold by construction: starters -> workflows -> activities -> tern, nothing in
``tern/`` imports Temporal or a folder above it, and no two modules (or packages) import each other.

Imports are read with ``ast`` from the source files (module-level and function-level alike, ``TYPE_CHECKING``
blocks excluded: they are not imports at run time).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tern", "workflows", "activities", "worker", "starters")
# What each top-level package may import (besides itself and third-party libraries).
MAY_IMPORT = {
    "tern": set(),
    "activities": {"tern"},
    "workflows": {"tern", "activities"},
    "worker": {"tern", "activities", "workflows"},
    "starters": {"tern", "workflows", "activities", "worker"},
}
TEMPORAL_FREE = ("tern",)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports at run time."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # "from pkg import module"
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def test_no_upward_import_and_a_temporal_free_core() -> None:
    bad = []
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    for path in files:
        me = _module_name(path)
        top = me.split(".")[0]
        for imported in _imports(path):
            other = imported.split(".")[0]
            if other in PACKAGES and other != top and other not in MAY_IMPORT[top]:
                bad.append(f"{me} imports {imported}")
            if top in TEMPORAL_FREE and other == "temporalio":
                bad.append(f"{me} imports {imported} (the core is Temporal-free)")
    assert not bad, "\n".join(sorted(set(bad)))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle_between_modules() -> None:
    # a package's __init__ re-exporting its submodules is not a cycle of its own
    graph = _graph()
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycle_between_subpackages() -> None:
    graph = _graph()
    pkgs: dict[str, set[str]] = defaultdict(set)
    for name, deps in graph.items():
        mine = ".".join(name.split(".")[:2])
        for dep in deps:
            theirs = ".".join(dep.split(".")[:2])
            if theirs != mine and not mine.startswith(theirs + ".") and mine != theirs.split(".")[0]:
                pkgs[mine].add(theirs)
    cycles = _cycles(dict(pkgs))
    assert not cycles, "package cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
