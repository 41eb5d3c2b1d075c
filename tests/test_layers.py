"""The package's import graph: layers point down (docs/design.md, "Layout"), search and report never import each
other, there is no cycle, and the record layer stays torch-free.

Every import counts, including those inside functions: the graph is read from the source with `ast`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scent_search"

# Top to bottom. A module imports only from its own row or the rows below; within a row, only itself
# (its own package's modules).
LAYERS = (
    ("__main__",),
    ("cli",),
    ("report",),
    ("search",),
    ("records",),
    ("compat",),
    ("memory", "train"),
    ("model", "data", "step"),
    ("config", "errors", "mapping", "units", "db", "__init__"),
)
# Same row, allowed across units (the ground: config uses mapping and errors; the package's __init__
# re-exports the configs). memory and train both sit on the probe row but do not import each other.
SAME_ROW = {("config", "mapping"), ("config", "errors"), ("mapping", "errors"), ("__init__", "config")}


def _unit(module: str) -> str:
    """scent_search.search.spec -> "search"; scent_search.cli -> "cli"; scent_search -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def _imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every scent_search module that `source` (the module `module`) imports, anywhere in it."""
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "scent_search"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "scent_search":
                continue
            for alias in node.names:  # `from scent_search import compat` imports the module scent_search.compat
                sub = f"{base}.{alias.name}"
                out.add(sub if _is_module(sub) else base)
    out.discard(module)
    return out


GRAPH = {_module_name(p): _imports(p.read_text(encoding="utf-8"), _module_name(p), p.name == "__init__.py")
         for p in sorted(PACKAGE.rglob("*.py"))}
ROW = {unit: i for i, row in enumerate(LAYERS) for unit in row}


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in GRAPH} <= set(ROW), {_unit(m) for m in GRAPH} - set(ROW)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    here = _unit(module)
    for target in sorted(GRAPH[module]):
        there = _unit(target)
        if there == here:
            continue
        assert ROW[there] > ROW[here] or (here, there) in SAME_ROW, \
            f"{module} imports {target}: {there!r} is not below {here!r}"


def test_search_and_report_do_not_import_each_other():
    """The CLI wires them together (e.g. `run_study(plan, reporter, after_trial=DashboardArtifactsCallback())`)."""
    other = {"search": "report", "report": "search"}
    for module, targets in GRAPH.items():
        if _unit(module) in other:
            across = sorted(t for t in targets if _unit(t) == other[_unit(module)])
            assert not across, f"{module} imports {across}"


def test_no_cycle():
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_every_form_of_import():
    """Imports inside functions, relative imports and `from package import module` are edges too."""
    source = ("import scent_search.errors\n"
              "from . import space\n"
              "from scent_search import compat\n"
              "def f():\n    from scent_search.report import summarize\n")
    assert _imports(source, "scent_search.search.objective") == {
        "scent_search.errors", "scent_search.search.space", "scent_search.compat", "scent_search.report"}


def test_records_import_no_torch():
    code = "import sys, scent_search.records; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
