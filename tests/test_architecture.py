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


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_every_stage_command_runs_a_stage_module(stage):
    command = stage_body(dvc_stages()[stage])["cmd"].split()[1]
    modules = {m for m in command_imports()[command] if m.startswith("stages.")}
    assert len(modules) == 1, f"`mer {command}` (dvc.yaml stage {stage!r}) should run one stages/ module, runs {modules}"


def test_no_stage_module_imports_another():
    for path in sorted((REPO / "stages").glob("*.py")):
        others = {m for m in imported_modules(ast.parse(path.read_text()), "stages") if m.startswith("stages")}
        assert not others - {f"stages.{path.stem}"}, f"{path.name} imports {sorted(others)}"


def test_extraction_params_in_dvc_yaml_are_the_declared_output_keys():
    """Every stage that extracts (and train, whose checkpoint records how its clips were extracted) lists
    exactly ExtractConfig's output keys, plus extract.max_failure_rate where it decides whether the stage fails
    (corrupt has its own, in the corrupt section it lists whole)."""
    from pipeline.config import ExtractConfig

    keys = [f"extract.{k}" for k in ExtractConfig.OUTPUT_KEYS]
    listed = {name: [p for p in stage_body(body)["params"] if isinstance(p, str) and p.startswith("extract.")]
              for name, body in dvc_stages().items()}
    assert listed["extract"] == [*keys, "extract.max_failure_rate"]
    assert listed["corrupt"] == listed["train"] == keys
    assert "corrupt" in stage_body(dvc_stages()["corrupt"])["params"]


def test_a_stage_fails_by_its_own_failure_rate_and_names_that_key():
    """The rate a stage checks comes from its own section, the one its message names (`<stage>.max_failure_rate`)."""
    import re

    checked = {}
    for path in sorted((REPO / "stages").glob("*.py")):
        text = path.read_text()
        for var, stage in re.findall(r"(\w+)\.max_failure_rate, \"(\w+)\"", text):
            checked[stage] = re.search(rf"{var} = load_section\(\"(\w+)\"", text).group(1)
    assert checked == {"extract": "extract", "corrupt": "corrupt", "encode": "encode"}


def all_registries() -> list:
    """Every Registry object defined anywhere in pipeline/, found by importing each module."""
    import importlib
    import pkgutil

    import pipeline
    from pipeline.registry import Registry

    found = {}
    for module in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, Registry):
                found[id(value)] = value
    return list(found.values())


def test_every_registry_entry_follows_the_one_idiom():
    import dataclasses

    from pipeline.config import ConfigError

    for registry in all_registries():
        for name, cls in registry.items():
            assert cls.name == name and dataclasses.is_dataclass(cls.Config), name
            assert cls.Config.__dataclass_params__.frozen, f"{name}: its Config is not frozen"
            assert (cls.__doc__ or "").strip(), f"{name}: no docstring for `mer doctor` to show"
        with pytest.raises(ConfigError, match=f"^{registry.key}: unknown {registry.kind} 'nope'; known: "
                                              f"{', '.join(sorted(registry))}$"):
            registry.lookup("nope")


def test_mer_doctor_lists_every_entry_of_every_registry(tmp_path):
    import subprocess
    import sys

    registries = all_registries()
    assert len(registries) >= 6
    mer = Path(sys.executable).parent / "mer"
    done = subprocess.run([str(mer), "doctor", "--params", str(REPO / "params.yaml")], capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "160", "PATH": str(Path(sys.executable).parent)})
    assert done.returncode == 0, done.stderr
    rows = [line.split("│")[1].strip() for line in done.stdout.splitlines() if line.count("│") >= 3]
    for registry in registries:
        for name in registry:
            assert any(row.startswith(f"{registry.kind} {name}") for row in rows), f"{registry.kind} {name} not in mer doctor"


def params_leaves(raw: dict, cls: type, prefix: str) -> list[tuple[str, str]]:
    """(params key, config field name) for each key of a params.yaml section: nested dataclasses are
    followed; a mapping of user-chosen names (features, rounds, label_map, options) is one leaf, or, when
    its values are dataclasses (encode.features), each of their keys."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    leaves = []
    for key, value in raw.items():
        tp = hints[key]
        args = typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            leaves += params_leaves(value, tp, f"{prefix}.{key}")
        elif typing.get_origin(tp) is dict and dataclasses.is_dataclass(args[1]):
            leaves += [leaf for name, item in value.items() for leaf in params_leaves(item, args[1], f"{prefix}.{key}.{name}")]
        leaves.append((f"{prefix}.{key}", key))
    return leaves


def attributes_read() -> set[str]:
    """Names read as an attribute (`x.name`) anywhere in pipeline/ and stages/, outside config.py, where
    the fields are declared (but for its properties, which read them for their users), and the options
    fields each registry reads when params load."""
    from pipeline.doctor import registries

    names = {registry.options_key.rpartition(".")[2] for registry in registries()}
    for path in [*(REPO / "pipeline").rglob("*.py"), *(REPO / "stages").glob("*.py")]:
        tree = ast.parse(path.read_text())
        if path == REPO / "pipeline" / "config.py":
            tree = ast.Module([f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                               and any(getattr(d, "id", "") == "property" for d in f.decorator_list)], [])
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return names


def test_every_params_key_is_read_by_the_code():
    """A key in params.yaml that no code reads would be a knob that does nothing."""
    from pipeline.config import SECTIONS

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    read = attributes_read()
    unread = [key for section, raw in params.items() for key, field in params_leaves(raw or {}, SECTIONS[section], section)
              if field not in read]
    assert not unread, f"params.yaml keys no code reads: {unread}"


def test_every_encoder_reads_a_modality_of_the_one_table():
    from pipeline.encoders import ENCODERS
    from pipeline.modalities import MODALITIES

    wrong = {name: cls.modality for name, cls in ENCODERS.items() if cls.modality not in MODALITIES}
    assert not wrong, f"encoders with a modality pipeline/modalities.py does not declare: {wrong}"


def private_names_taken(source: str, module: str, package: str) -> list[str]:
    """`from <project module> import _name` and `<project module>._name`, where that module is not `module`."""
    tree = ast.parse(source)
    aliases = {}   # local name -> the project module imported under it
    taken = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if module_file(name):
                    aliases[alias.asname or alias.name] = name
                elif alias.name.startswith("_") and module_file(base) and base != module:
                    taken.append(name)
        elif isinstance(node, ast.Import):
            aliases |= {a.asname: a.name for a in node.names if a.asname and module_file(a.name)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != module):
            taken.append(f"{aliases[node.value.id]}.{node.attr}")
    return taken


def test_no_module_takes_another_modules_private_names():
    """A name another module uses is public: a leading underscore promises that none does."""
    found = {}
    for top in PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            module = ".".join(parts[:-1] if path.name == "__init__.py" else parts)
            package = module if path.name == "__init__.py" else ".".join(parts[:-1])
            if taken := private_names_taken(path.read_text(), module, package):
                found[str(path.relative_to(REPO))] = taken
    assert not found, f"private names used across modules (make them public): {found}"


def test_the_private_name_check_sees_imports_and_attributes():
    source = ("from pipeline.media.decode import _interval\nfrom pipeline import evaluation as ev\n"
              "from . import decode\nx = ev._hidden, decode._demux\nfrom .faces import _own\n")
    assert private_names_taken(source, "pipeline.media.faces", "pipeline.media") == [
        "pipeline.media.decode._interval", "pipeline.evaluation._hidden", "pipeline.media.decode._demux"]
