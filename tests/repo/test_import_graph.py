"""No import cycle anywhere in ``controller``, type-checking-only imports included.

import-linter's layers contract (``pyproject.toml``) keeps packages in order; a cycle between
modules of one package, or one hidden behind ``if TYPE_CHECKING:``, is invisible to it.  This
builds the same import graph (grimp, import-linter's engine) and fails on any strongly
connected set of modules, naming the modules in it.
"""

from __future__ import annotations

import grimp


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every set of two or more modules that import in a ring."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                    found.append(sorted(component))
    return found


def module_graph() -> dict[str, set[str]]:
    """Module -> modules it imports, within ``controller`` (package ``__init__`` re-exports
    excluded: importing a package's public name is not a dependency on all its modules)."""
    graph = grimp.build_graph("controller", exclude_type_checking_imports=False)
    packages = {m for m in graph.modules if graph.find_children(m)}
    out: dict[str, set[str]] = {}
    for module in graph.modules:
        if module in packages:
            continue
        out[module] = {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported not in packages
        }
    return out


def test_the_checker_finds_a_ring() -> None:
    """A three-module ring and a self-contained pair are reported; a chain is not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": set(), "x": {"y"}, "y": {"x"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["x", "y"]]


def test_the_graph_covers_the_package() -> None:
    """The graph holds the executor and the client, and sees the edges between modules."""
    graph = module_graph()
    assert "controller.flyapi.client" in graph
    assert "controller.core.errors" in graph["controller.execution.leasing"]


def test_no_import_cycles() -> None:
    """No module imports itself through others (TYPE_CHECKING imports included)."""
    assert strongly_connected(module_graph()) == []
