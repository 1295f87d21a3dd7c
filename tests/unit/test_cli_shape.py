"""The four service CLIs have one shape: the same --help sections (environment variables
generated from the options, the signal policy, the exit codes) and the same shared
options, which behave alike on bad input."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner
from stamen.common.cli import EXIT_BAD_INPUT, EXIT_CODES, ServiceCommand
from stamen.runner.cli import main as serverapp
from stamen.simulation.cli import simulation
from stamen.superlink.cli import main as superlink
from stamen.supernode.cli import supernode

COMMANDS = {
    "stamen-superlink": superlink,
    "stamen-supernode": supernode,
    "stamen-serverapp": serverapp,
    "stamen-simulation": simulation,
}


def help_of(command: click.Command) -> str:
    result = CliRunner().invoke(command, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def section(text: str, title: str) -> list[str]:
    """The lines of the --help section `title` (up to the next blank line)."""
    lines = text.splitlines()
    start = lines.index(f"{title}:") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return [line.strip() for line in lines[start:end]]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_lists_every_environment_variable_of_the_options(name: str) -> None:
    command = COMMANDS[name]
    assert isinstance(command, ServiceCommand)
    listed = " ".join(" ".join(section(help_of(command), "Environment variables")).split())
    with click.Context(command) as ctx:
        params = [p for p in command.get_params(ctx) if p.envvar is not None]
    assert set(re.findall(r"STAMEN_\w+", listed)) == {p.envvar for p in params}
    for param in params:
        name = (
            max(param.opts, key=len)
            if isinstance(param, click.Option)
            else param.human_readable_name
        )
        assert f"{param.envvar} {name}" in listed, (param.envvar, listed)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_states_the_signal_policy_and_the_one_table_of_exit_codes(name: str) -> None:
    text = help_of(COMMANDS[name])
    assert "The first SIGINT or SIGTERM stops gracefully; a second one cancels" in text
    codes = [line.split()[0] for line in section(text, "Exit codes") if line[0].isdigit()]
    assert codes == [code for code, _meaning in EXIT_CODES]


def test_the_shared_options_are_one_definition() -> None:
    def option(command: click.Command, name: str) -> click.Option:
        with click.Context(command) as ctx:
            (found,) = [p for p in command.get_params(ctx) if name in getattr(p, "opts", ())]
        assert isinstance(found, click.Option)
        return found

    for name in ("--log-level", "--log-format"):
        options = [option(command, name) for command in COMMANDS.values()]
        assert len({(o.help, repr(o.type), o.default, o.envvar) for o in options}) == 1
    for name in ("--dir", "--root-certificates", "--insecure"):
        users = [serverapp, supernode] + ([simulation] if name == "--dir" else [])
        options = [option(command, name) for command in users]
        assert len({(o.help, repr(o.type), o.envvar) for o in options}) == 1


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_log_level_is_bad_input_on_every_cli(name: str) -> None:
    result = CliRunner().invoke(COMMANDS[name], ["--log-level", "LOUD"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "--log-level" in result.output
