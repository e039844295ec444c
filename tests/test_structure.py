"""The package's import graph: dependencies point down only, so it has no cycles (DESIGN.md, "Layout").

The graph is read from the source with ``ast``, not by importing anything: every ``import`` and
``from ... import`` of diffbench's own modules, at module level and inside functions alike (a
function-level import that closes a cycle is still a cycle, only a later one). Imports under
``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import diffbench

PACKAGE = Path(diffbench.__file__).resolve().parent

#: edges that close a cycle but can only be removed inside a module being changed elsewhere;
#: each names the edge and why it is still there. Empty the list, do not grow it.
ALLOWED_EDGES: set[tuple[str, str]] = set()


def _module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not ``.__init__``)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("diffbench", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of import nodes that sit under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return skipped


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if node.module:
                targets.add(origin)
            # ``from . import reference`` and ``from .engines import finite`` import those submodules;
            # ``from .engines import Skip`` imports only diffbench.engines
            targets |= {f"{origin}.{alias.name}" for alias in node.names if f"{origin}.{alias.name}" in modules}
            if not node.module and not any(f"{origin}.{alias.name}" in modules for alias in node.names):
                targets.add(origin)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = _module_names()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path whose first and last module are the same, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_graph_reads_the_imports_it_should():
    # hand-checked facts about today's source, so the parser below is known to see imports at all
    # levels: a module-level ``from .x import y``, a ``from . import x`` and a ``from ..x import y``
    graph = import_graph()
    assert "diffbench.case" in graph["diffbench.engines"]
    assert "diffbench.metrics" in graph["diffbench.diagnose"]
    assert {"diffbench.engines", "diffbench.case"} <= graph["diffbench.engines.finite"]
    assert "diffbench.cli" in graph["diffbench.__main__"]


def test_find_cycle_on_a_hand_made_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"b"}}) == ["b", "b"]


def test_import_graph_has_no_cycles():
    graph = import_graph()
    for source, target in ALLOWED_EDGES:
        assert target in graph[source], f"allowed edge {source} -> {target} no longer exists; remove it from the list"
        graph[source].discard(target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_library_module_imports_the_cli():
    graph = import_graph()
    importers = sorted(name for name, targets in graph.items()
                       if any(t == "diffbench.cli" or t.startswith("diffbench.cli.") for t in targets)
                       and not name.startswith("diffbench.cli") and name != "diffbench.__main__")
    assert importers == []


def test_list_does_not_import_tensorflow():
    code = ("import sys\nfrom diffbench.cli import main\nmain(['list'])\n"
            "print('TF' if 'tensorflow' in sys.modules else 'NO-TF', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "NO-TF"
