"""The dependency rules of docs/ARCHITECTURE.md, checked by walking every import of pipeline/.

Imports inside functions count too (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` count for the rules but not for cycles (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
#: the shared top level: every stage may import these (the config's keys table and the API token's
#: checks are the config's, split out of it)
SHARED_NAMES = ("config", "config_keys", "api_token", "errors", "formats")
SHARED = {"pipeline", *(f"pipeline.{name}" for name in SHARED_NAMES)}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[str, bool, bool]]:
    """(imported module, at module level, only for type checking) for each pipeline import."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool, bool]] = []

    def visit(node: ast.AST, top: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.body:
                    visit_one(sub, top, True)
                for sub in child.orelse:
                    visit_one(sub, top, typing_only)
                continue
            visit_one(child, top, typing_only)

    def visit_one(child: ast.AST, top: bool, typing_only: bool) -> None:
        if isinstance(child, ast.Import):
            found.extend((a.name, top, typing_only) for a in child.names if a.name.startswith("pipeline"))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = package.split(".")[: len(package.split(".")) - child.level + 1]
                name = ".".join([*base, child.module] if child.module else base)
            else:
                name = child.module or ""
            if name.startswith("pipeline"):
                found.append((name, top, typing_only))
                found.extend((f"{name}.{a.name}", top, typing_only) for a in child.names)  # a submodule?
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            visit(child, False, typing_only)
        elif isinstance(child, ast.ClassDef):
            visit(child, top, typing_only)
        else:
            visit(child, top, typing_only)

    visit(ast.parse(path.read_text()), True, False)
    modules = set(MODULES)
    return [(name, top, t) for name, top, t in found if name in modules]


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] not in SHARED_NAMES) else ""


def _violations(allowed: dict[str, set[str] | None], forbidden: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, path in sorted(MODULES.items()):
        stage = _stage(module)
        for name, _, _ in _imports(path):
            target = _stage(name)
            if target == stage or name in SHARED:
                continue
            ok = allowed.get(stage)
            if ok is not None and target not in ok:
                problems.append(f"{module} imports {name} ({stage} may import only {sorted(ok) or 'shared'})")
            if any(
                name == f or name.startswith(f + ".")
                for f in forbidden.get(module, set()) | forbidden.get(stage, set())
            ):
                problems.append(f"{module} imports {name} (forbidden)")
    return problems


def test_the_stages_import_only_what_the_architecture_allows():
    allowed = {
        "reading": set(),  # files to batch plans: nothing of HTTP, runs or reports
        "client": set(),  # the HTTP client: knows nothing of runs, journals or reports
        "emulator": set(),  # the fake API: only the shared formats
        "engine": {"reading", "client", "reporting", "emulator"},  # the embedded emulator, when asked for
        "reporting": {"engine", "client", "reading"},  # the run state; the token redactor; the platform profile
        # runs of synthetic documents, measured: above the engine and the reports, below the CLI;
        # the emulator's options and faults (it starts emulator processes with them)
        "bench": {"reading", "client", "engine", "reporting", "emulator"},
        "cli": {"reading", "client", "engine", "reporting", "emulator", "bench"},
        "__main__": {"cli"},
    }
    forbidden = {
        "reporting": {"pipeline.engine.runner", "pipeline.engine.stages", "pipeline.engine.start"},
        "emulator": {"pipeline.config", "pipeline.config_keys", "pipeline.api_token", "pipeline.errors"},
    }
    assert _violations(allowed, forbidden) == []


def test_no_import_cycle_between_modules():
    graph = {
        module: {name for name, top, typing_only in _imports(path) if top and not typing_only and name != module}
        for module, path in MODULES.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodule is how packages work, not a cycle
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    assert cycles == []
