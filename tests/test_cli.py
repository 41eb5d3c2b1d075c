"""Every command has help with an example, and domain errors exit with code 2 and one line."""

import pytest
from click.testing import CliRunner

from scent_search.cli import cli


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_group_help_and_unknown_command():
    runner = CliRunner()
    assert "Example" in runner.invoke(cli, ["--help"]).output
    assert runner.invoke(cli, ["no-such-command"]).exit_code == 2


def test_cli_has_the_design_commands():
    assert {"run", "profile", "seed-check", "studies", "best", "report", "dashboard"} <= set(cli.commands)
