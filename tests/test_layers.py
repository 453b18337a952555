"""The house's layers, checked from the code: no import cycle, no import that points up.

Layers, bottom to top (CONTRIBUTING.md's layout table): foundations, data, the vector kernel, embedding,
indexes and services, search/eval (bench, hybrid) with the feature store apart, tracking, runners,
report and series, the CLI. A module may import its own layer or a lower one. Every import counts:
module level, inside functions and under ``TYPE_CHECKING``, since each is a dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "workbench"

LAYERS: list[set[str]] = [
    {"workbench", "workbench.errors", "workbench.config", "workbench.io", "workbench.plotting"},
    {"workbench.data"},
    {"workbench.vectors"},
    {"workbench.embed"},
    {"workbench.index", "workbench.services"},
    {"workbench.bench", "workbench.hybrid", "workbench.features"},
    {"workbench.tracking"},
    {"workbench.runners"},
    {"workbench.report", "workbench.series"},
    {"workbench.cli", "workbench.__main__"},
]
# The feature store stands apart: it may use only the foundations.
APART = {"workbench.features": LAYERS[0]}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group(module: str) -> str:
    """The layer group of a module: ``workbench.index.faiss`` -> ``workbench.index``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def rank(module: str) -> int:
    g = group(module)
    for i, layer in enumerate(LAYERS):
        if g in layer:
            return i
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS and CONTRIBUTING.md")


def imports(path: Path, name: str) -> set[str]:
    """Every workbench module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("workbench"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("workbench"):
                continue
            for a in node.names:  # `from workbench.index import faiss` names a module
                sub = f"{mod}.{a.name}"
                found.add(sub if _exists(sub) else mod)
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    p = ROOT.parent / Path(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


GRAPH = {module_name(p): imports(p, module_name(p)) for p in sorted(ROOT.rglob("*.py"))}


def test_every_module_has_a_layer():
    for module in GRAPH:
        rank(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_upward_import(module):
    up = [m for m in GRAPH[module] if rank(m) > rank(module)]
    assert not up, f"{module} imports from a higher layer: {', '.join(sorted(up))}"
    allowed = APART.get(group(module))
    if allowed is not None:
        out = [m for m in GRAPH[module] if group(m) != group(module) and group(m) not in allowed]
        assert not out, f"{module} (kept apart) imports {', '.join(sorted(out))}"
    into = [m for m in GRAPH[module] if group(m) in APART and group(module) not in APART
            and rank(module) <= rank(m)]
    assert not into, f"{module} imports the feature store, which stands apart: {', '.join(into)}"


def test_no_import_cycle():
    """Depth-first search for a back edge; a package's ``__init__`` importing its own submodules is fine
    only while no submodule imports that ``__init__`` back."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH.get(m, ())):
            if n == m:
                continue
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_modules_are_small():
    big = {module_name(p): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not big, f"modules over 400 lines: {big}"
