"""The stage boundary: dvc.yaml is the one place that names a stage's paths. Every stage command requires
each input and output path as an option (no default that could overwrite another stage's outputs), and
every stage's `cmd` in dvc.yaml passes all of them."""

from __future__ import annotations

import shlex
import typing
from pathlib import Path

import pytest
import typer
import yaml
from typer.core import TyperOption
from typer.testing import CliRunner

from pipeline.cli import app

REPO = Path(__file__).resolve().parents[1]
CLI = typer.main.get_command(app)


def dvc_commands() -> dict[str, list[str]]:
    """dvc.yaml stage -> its cmd as arguments of `mer` (foreach stages keep their ${key} placeholders)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    commands = {name: shlex.split(stage.get("do", stage)["cmd"]) for name, stage in stages.items()}
    assert all(cmd[0] == "mer" for cmd in commands.values()), commands
    return {name: cmd[1:] for name, cmd in commands.items()}


STAGE_COMMANDS = sorted({cmd[0] for cmd in dvc_commands().values()})


def required_options(command: str) -> list[TyperOption]:
    return [p for p in CLI.commands[command].params if isinstance(p, TyperOption) and p.required]


def path_args(command: str, folder: Path, **given: Path) -> list[str]:
    """Every required option of `mer <command>`, each naming `folder / <option name>` unless `given`."""
    return [arg for opt in required_options(command) for arg in (opt.opts[0], str(given.get(opt.name, folder / opt.name)))]


def test_the_stage_commands_are_the_pipelines():
    assert STAGE_COMMANDS == sorted(["demo-corpus", "prepare", "extract", "corrupt", "encode", "train", "pseudolabel",
                                     "evaluate", "report"])


@pytest.mark.parametrize("command", STAGE_COMMANDS)
def test_every_path_option_of_a_stage_command_is_required(command):
    types = typing.get_type_hints(CLI.commands[command].callback)
    paths = [p for p in CLI.commands[command].params
             if isinstance(p, TyperOption) and types[p.name] is Path and p.name != "params"]
    assert paths, f"mer {command} takes no path option"
    assert [p.opts[0] for p in paths if not p.required] == [], f"mer {command}: path options with a default"


@pytest.mark.parametrize("stage", sorted(dvc_commands()))
def test_dvc_yaml_passes_every_required_option(stage):
    args = dvc_commands()[stage]
    command = CLI.commands[args[0]]
    missing = [opt.opts[0] for opt in required_options(args[0]) if not set(opt.opts) & set(args)]
    assert not missing, f"dvc.yaml stage {stage!r}: `mer {args[0]}` is not given {missing}"
    command.make_context(args[0], args[1:])  # and click parses the whole cmd: no unknown option, no missing argument


@pytest.mark.parametrize("args", [["pseudolabel", "r2"], ["encode", "egemaps"], ["train"], ["demo-corpus"]],
                         ids=" ".join)
def test_stage_command_without_its_paths_is_a_usage_error_that_writes_nothing(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    done = CliRunner().invoke(app, args, prog_name="mer")
    first = required_options(args[0])[0].opts[0]
    assert done.exit_code == 2, done.output
    assert f"Usage: mer {args[0]}" in done.output and f"Missing option '{first}'" in done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_usage_error_names_the_option_still_missing(tmp_path):
    given = path_args("pseudolabel", tmp_path)
    out = given.index("--out")
    done = CliRunner().invoke(app, ["pseudolabel", "r2", *given[:out], *given[out + 2:]])
    assert done.exit_code == 2 and "Missing option '--out'" in done.output, done.output
