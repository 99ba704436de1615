"""Who may import what (docs/architecture.md), checked on the source so a move cannot undo it:
no import circle at module level, the API facade light to import, the bench below the API, the
recipe below the run folder, and one reader of RANK."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "distill_cli"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(path: Path) -> set[str]:
    """distill_cli modules imported when `path` is imported (not inside functions, nor under
    `if TYPE_CHECKING:`); `from pkg import mod` counts `pkg.mod` when that is a module (a
    package's own modules import their siblings that way without a circle)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from pkg import mod` needs mod, not pkg's face
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in MODULES else node.module)

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in MODULES}


GRAPH = {name: _top_level_imports(path) for name, path in MODULES.items()}


def _imports_reached(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_circle_at_module_level() -> None:
    circles = sorted(name for name in GRAPH if name in _imports_reached(name))
    assert circles == [], f"modules that import themselves through others: {circles}"


def _imports_anywhere(path: Path) -> set[str]:
    """Every module named by an import in `path`, in functions too (lazy imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_the_bench_and_the_wings_do_not_import_the_api() -> None:
    """The API is the facade over the wings (the CLI its only caller inside distill); a wing
    that calls it back, even lazily, makes an api <-> wing circle."""
    offenders = [
        name
        for name, path in MODULES.items()
        if "distill_cli.api" in _imports_anywhere(path)
        and not name.startswith("distill_cli.cli")
        and name != "distill_cli.api"
        and not name.startswith("distill_cli.api.")
    ]
    assert offenders == []


def test_the_recipe_sections_do_not_import_the_run_folder() -> None:
    """The run-name rule is the recipe's (run_name.check_run_name); the run folder uses it."""
    sections = MODULES["distill_cli.recipe.sections"]
    assert not any(n.startswith("distill_cli.rundir") for n in _imports_anywhere(sections))
    assert not any(
        n.startswith("distill_cli.rundir") for n in _imports_reached("distill_cli.recipe.sections")
    )


def test_only_the_world_reads_rank() -> None:
    readers = [
        name
        for name, path in MODULES.items()
        if '"RANK"' in path.read_text() or "'RANK'" in path.read_text()
    ]
    assert readers == ["distill_cli.train.world"]


def test_importing_the_api_and_the_cli_does_not_import_torch() -> None:
    """Every command goes through the API, so the API must be as cheap to import as the CLI's
    help: each function imports the wing it drives when called."""
    code = (
        "import sys, distill_cli.api, distill_cli.cli.app; "
        "print(sorted(m for m in ('torch', 'timm', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
