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
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph.modules:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _graph_without_package_inits() -> grimp.ImportGraph:
    """Module graph where ``pkg/__init__`` re-exports are not edges back into the package.

    A package's ``__init__`` that re-exports its children is not a design circle, so imports of a
    package by its own children are left out; every other edge counts.
    """
    graph = grimp.build_graph("flotilla", cache_dir=None)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if importer.startswith(imported + "."):
                graph.remove_import(importer=importer, imported=imported)
            elif imported.startswith(importer + "."):
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
    big = {str(p.relative_to(SRC)): _lines(p) for p in SRC.rglob("*.py") if _lines(p) > MAX_MODULE_LINES}
    assert big == {}


def test_no_room_holds_too_much() -> None:
    """A room is one package's own modules (not its sub-packages)."""
    total = sum(_lines(p) for p in SRC.rglob("*.py"))
    rooms: dict[str, int] = {}
    for path in SRC.rglob("*.py"):
        room = str(path.parent.relative_to(SRC.parent))
        rooms[room] = rooms.get(room, 0) + _lines(path)
    crowded = {room: round(n / total, 3) for room, n in rooms.items() if n / total > MAX_ROOM_SHARE}
    assert crowded == {}
