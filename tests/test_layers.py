"""The package layers are enforced (import-linter's contracts in pyproject.toml, imports inside
functions included) and no module imports itself through others."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("search_spaces", "latency_models", "nas", "dashboard")


def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: `pip install -e '.[dev]'` installs import-linter")
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other (size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in nodes:
        if node not in index:
            visit(node)
    return groups


def test_no_module_imports_itself_through_others() -> None:
    import grimp

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    graph = grimp.build_graph(*PACKAGES)
    nodes = sorted(graph.modules)

    def related(a: str, b: str) -> bool:  # a package and its own submodules (re-exports)
        return a.startswith(b + ".") or b.startswith(a + ".")

    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if not related(m, i)}
             for m in nodes}
    assert _strongly_connected(nodes, edges) == []


def test_every_relative_import_resolves() -> None:
    # the layer contracts and the cycle check see only imports of modules that exist; an
    # import inside a function that a move left pointing nowhere would escape both (and fail
    # only when that function runs)
    import ast
    import importlib.util

    broken = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts[:-1])  # the package a relative import starts from
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level:
                    base = parts[:len(parts) - (node.level - 1)]
                    name = ".".join(base + ([node.module] if node.module else []))
                    if importlib.util.find_spec(name) is None:
                        broken.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert broken == []
