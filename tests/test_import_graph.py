"""The package's import graph has no cycles (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import labintake

PACKAGE_DIR = Path(labintake.__file__).parent
# Icd10Release.excludes1_conflict reads CodeSet from policies, which reads normalize_icd10
# from icd10 (a lazy import keeps it working); CodeSet wants a module of its own.
KNOWN = {
    frozenset({"labintake.codes.icd10", "labintake.codes.policies", "labintake.codes.screening"})
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = ["labintake", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if "versions" in parts:
            continue  # migrations are loaded by Alembic, not imported
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere (a package's own submodules named in
    `from package import submodule` count as that submodule)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.append(full if full in modules else node.module)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> Iterator[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    yield frozenset(component)


def test_the_graph_sees_the_cli_package_and_its_command_modules() -> None:
    graph = import_graph()
    assert {"labintake.cli.codes", "labintake.cli.settings"} <= graph["labintake.cli"]
    assert "labintake.cli.settings" in graph["labintake.cli.codes"]


def test_a_cycle_is_found_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert list(cycles(graph)) == [frozenset({"a", "b", "c"})]


def test_no_import_cycles_but_the_known_one() -> None:
    found = set(cycles(import_graph()))
    assert found <= KNOWN, sorted(sorted(c) for c in found - KNOWN)
    assert not any(name.startswith("labintake.cli") for c in found for name in c)
