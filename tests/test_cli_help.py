"""`mer --version` and help texts without placeholder noise."""

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
COMMANDS = sorted(c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands)


def test_version_is_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    version = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert result.exit_code == 0 and result.output == f"mer-pipeline {version}\n"


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=lambda c: " ".join(c) or "mer")
def test_help_has_no_placeholder_beside_flags(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "-h, --help  " in result.output


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=lambda c: " ".join(c) or "mer")
def test_h_is_short_for_help(command):
    short, long = (CliRunner().invoke(app, [*command, flag]) for flag in ("-h", "--help"))
    assert short.exit_code == 0 and short.output == long.output, short.output
