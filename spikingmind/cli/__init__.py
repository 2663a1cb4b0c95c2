"""The `spikingmind` command line. Each command lives in a module of this package and
registers itself; library errors become one readable line and a non-zero exit code."""

from __future__ import annotations

import functools

import typer
from rich.console import Console

from spikingmind.errors import SpikingmindError

app = typer.Typer(
    name="spikingmind",
    help="Spiking Decision Transformers for control: collect, train, evaluate, export, energy-report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _one_line_errors(callback):
    """Wrap a command so domain errors print one line and exit non-zero (also under CliRunner)."""

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except SpikingmindError as error:
            err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper


def _register_commands() -> None:
    from spikingmind.cli import conditioning_cmds, core_cmds, energy_cmds, export_cmds, finetune_cmds, sweep_cmds

    for module in (core_cmds, export_cmds, energy_cmds, finetune_cmds, sweep_cmds, conditioning_cmds):
        module.register(app)
    for command in app.registered_commands:
        command.callback = _one_line_errors(command.callback)


_register_commands()


def main() -> None:
    """Console entry point. Domain errors become one line + exit code inside each command;
    typer handles usage errors (exit 2) and Ctrl-C."""
    app()
