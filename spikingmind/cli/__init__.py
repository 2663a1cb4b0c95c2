"""The `spikingmind` command line. Each command lives in a module of this package and
registers itself; library errors become one readable line and a non-zero exit code."""

from __future__ import annotations

import sys

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


def _register_commands() -> None:
    from spikingmind.cli import core_cmds, energy_cmds, export_cmds

    for module in (core_cmds, export_cmds, energy_cmds):
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning domain errors into one line + exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except SpikingmindError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; partial results were not written (re-run to resume)")
        sys.exit(130)
    except (typer.Exit, SystemExit) as stop:
        code = getattr(stop, "exit_code", getattr(stop, "code", 0))
        sys.exit(code)
    except Exception as error:
        # usage errors (bad option, missing argument) arrive here in non-standalone mode
        if hasattr(error, "show") and hasattr(error, "exit_code"):
            error.show()
            sys.exit(error.exit_code)
        raise
