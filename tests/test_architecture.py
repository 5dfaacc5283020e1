"""The shape of the code, held by tests: no import circles, no giant modules, no giant rooms.

import-linter checks the contracts between packages; these tests check what it cannot express:
any cycle between modules anywhere in ``flotilla``, and the size limits from CONTRIBUTING.md.
"""

from __future__ import annotations

from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[1] / "src" / "flotilla"
MAX_MODULE_LINES = 600
MAX_ROOM_SHARE = 0.15


def find_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(graph.find_modules_directly_imported_by(node) & graph.modules):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def _graph_without_package_inits() -> grimp.ImportGraph:
    """Module graph where ``pkg/__init__`` re-exports are not edges back into the package.

    A package's ``__init__`` that re-exports its children is not a design circle, so imports of a
    package by its own children are left out; every other edge counts.
    """
    graph = grimp.build_graph("flotilla", cache_dir=None)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if importer.startswith(imported + ".") or imported.startswith(importer + "."):
                graph.remove_import(importer=importer, imported=imported)
    return graph


def test_no_import_cycles() -> None:
    cycles = find_cycles(_graph_without_package_inits())
    assert cycles == [], "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_sees_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert find_cycles(graph) == [["p.a", "p.b", "p.c"]]


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_over_the_limit() -> None:
    sizes = {str(p.relative_to(SRC)): _lines(p) for p in SRC.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_room_holds_too_much() -> None:
    """A room is one package's own modules (not its sub-packages)."""
    total = sum(_lines(p) for p in SRC.rglob("*.py"))
    rooms: dict[str, int] = {}
    for path in SRC.rglob("*.py"):
        room = str(path.parent.relative_to(SRC.parent))
        rooms[room] = rooms.get(room, 0) + _lines(path)
    crowded = {room: round(n / total, 3) for room, n in rooms.items() if n / total > MAX_ROOM_SHARE}
    assert crowded == {}
