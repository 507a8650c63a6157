"""The project's shape, checked: stage modules stay independent, and each DVC stage's deps cover every
project module its command imports (its import closure), so no code change can leave a committed
figure stale without DVC noticing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "pipeline" / "cli.py"
PACKAGES = ("pipeline", "stages")


def module_file(name: str) -> Path | None:
    """The source file of a project module, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(node: ast.AST, package: str) -> set[str]:
    """Every module named by an import anywhere under `node` (function-level imports too);
    `from a import b` counts as module a.b when that is a module, else as a."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            found |= {alias.name for alias in child.names}
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:  # relative: resolved against the importing package
                parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in child.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if module_file(sub) else base)
    return found


def closure(roots: set[str]) -> set[Path]:
    """Source files of the project modules reachable from `roots`, with the packages they sit in."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_file(".".join(parts[:depth]))
            if path is None or path in seen:
                continue
            seen.add(path)
            package = ".".join(parts[:depth]) if path.name == "__init__.py" else ".".join(parts[: depth - 1])
            todo += imported_modules(ast.parse(path.read_text()), package)
    return seen


def command_imports() -> dict[str, set[str]]:
    """`mer` subcommand -> the modules its function imports (the CLI module itself is glue, not a dep)."""
    tree = ast.parse(CLI.read_text())
    commands = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for deco in fn.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "command":
                name = deco.args[0].value if deco.args else fn.name.replace("_", "-")
                commands[name] = imported_modules(fn, "pipeline")
    return commands


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_body(stage: dict) -> dict:
    return stage.get("do", stage)


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps if "${" not in dep)


def inert(path: Path) -> bool:
    """A package __init__ with no code (a docstring, a version string): nothing in it shapes an output."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(isinstance(n, (ast.Expr, ast.Assign)) for n in body)


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_stage_deps_cover_the_code_its_command_imports(stage):
    body = stage_body(dvc_stages()[stage])
    command = body["cmd"].split()[1]
    files = closure(command_imports()[command])
    missing = sorted(str(f.relative_to(REPO)) for f in files if not inert(f) and not covered(f, body["deps"]))
    assert not missing, f"dvc.yaml stage {stage!r} imports code missing from its deps: {missing}"


def test_import_closure_follows_imports_inside_functions():
    files = closure(command_imports()["evaluate"])
    assert REPO / "stages" / "evaluate.py" in files
    assert REPO / "pipeline" / "training" / "metrics.py" in files  # via pipeline.evaluation


def test_no_stage_module_imports_another():
    for path in sorted((REPO / "stages").glob("*.py")):
        others = {m for m in imported_modules(ast.parse(path.read_text()), "stages") if m.startswith("stages")}
        assert not others - {f"stages.{path.stem}"}, f"{path.name} imports {sorted(others)}"
