"""The layout is the pipeline: imports point only to earlier stages, with no cycles, and nothing
below the command line imports it. Read from the source (every import, including those inside
functions), so a new upward import fails here before a reader trips over it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

# Earlier stages first. `dissect` holds pure parsers and the per-packet kind rules the scan
# applies, so the scan may use it; nothing in dissect reads scan results.
STAGES = (
    "errors", "common", "data", "capture", "decode", "dissect", "scan", "engines", "classify", "geo",
    "session", "report", "api", "batch", "campaign", "cli", "__main__",
)  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in (REPO / "analyzer").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never imported)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("analyzer.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "analyzer":
                found |= {f"analyzer.{a.name}" for a in node.names if not a.name.startswith("__")}
            elif node.module.startswith("analyzer."):
                found.add(node.module)
    return found


def _stage(module: str) -> str:
    return module.split(".")[1]


MODULES = _modules()
GRAPH = {m: _imports(p) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.count(".") >= 1))
def test_imports_point_to_earlier_stages(module: str) -> None:
    here = STAGES.index(_stage(module))
    upward = sorted(t for t in GRAPH[module] if STAGES.index(_stage(t)) > here)
    assert not upward, f"{module} imports later stages: {upward}"


def test_every_module_is_in_a_stage() -> None:
    loose = sorted(m for m in MODULES if m.count(".") == 1 and _stage(m) not in STAGES)
    assert not loose, f"modules outside the pipeline's stages: {loose}"


def test_no_import_cycles() -> None:
    def resolve(name: str) -> str | None:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name or None

    edges = defaultdict(set)
    for m, targets in GRAPH.items():
        # A submodule naming its own package (`from analyzer.report import x` inside report/) is
        # no cycle: the package is imported before any of its submodules anyway.
        edges[m] = {r for t in targets if (r := resolve(t)) and r != m and not m.startswith(r + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycle = [*stack[stack.index(t) :], t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)
