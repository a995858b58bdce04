"""The platform's import graph: no circles between its modules, and the function-level imports justified."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

import sua_portal

PORTAL = Path(sua_portal.__file__).parent


def _circles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        circles.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return circles


def test_no_module_of_the_portal_imports_itself_through_others() -> None:
    graph = grimp.build_graph("sua_portal", "analysis", cache_dir=None)
    portal = {m for m in graph.modules if m.startswith("sua_portal")}
    assert _circles(graph, portal) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c", "d"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert _circles(graph, {"a", "b", "c", "d"}) == [["a", "b", "c"]]


def test_function_level_imports_say_why() -> None:
    """Imports inside functions are for torch only (a Celery parent must not import it before forking)."""
    unexplained = []
    for path in sorted(PORTAL.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        source = path.read_text()
        lines = source.splitlines()
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    above = lines[node.lineno - 2] if node.lineno > 1 else ""
                    before = "\n".join(lines[max(0, node.lineno - 4):node.lineno - 1])
                    if "torch" not in above and "torch" not in before:
                        unexplained.append(f"{path.relative_to(PORTAL)}:{node.lineno}")
    assert unexplained == []
