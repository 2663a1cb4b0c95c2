"""The `spikingmind` command line. Each command lives in a module of this package and
registers itself; library errors become one readable line and a non-zero exit code.

Around every command (`_one_line_errors`): float options are refused when not finite (typer
reads "nan" and "inf" as floats), a domain error or a failed file operation is printed as one
line (without rich markup, so "[...]" in a message survives) with exit code 2, and an
interrupt (Ctrl-C, or SIGTERM, which `main` turns into one) with exit code 130 after the
command's clean-up (sidecar processes, temporary files) has run.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import signal
from typing import Optional

import typer
from rich.console import Console

from spikingmind.errors import ConfigError, SpikingmindError

app = typer.Typer(
    name="spikingmind",
    help="Spiking Decision Transformers for control: collect, train, evaluate, export, energy-report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


@app.callback()
def _global_options(
    max_memory_gib: Optional[float] = typer.Option(
        None, "--max-memory-gib", help="memory budget in GiB that sizes from configs and files are checked against "
                                       "before anything is allocated (default 4, or $SPIKINGMIND_MAX_MEMORY_GIB)"),
) -> None:
    """Spiking Decision Transformers for control: collect, train, evaluate, export, energy-report."""
    from spikingmind.limits import ENV_VAR

    if max_memory_gib is not None:
        if not (math.isfinite(max_memory_gib) and max_memory_gib > 0):
            err_console.print(f"error: --max-memory-gib must be a positive number of GiB, got {max_memory_gib}",
                              markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(ConfigError.exit_code)
        os.environ[ENV_VAR] = repr(max_memory_gib)  # this process and the workers and sidecars it starts


def _option_names(callback) -> dict[str, str]:
    """Parameter name -> the option as typed ("--target-return") for a typer command."""
    names = {}
    for name, parameter in inspect.signature(callback).parameters.items():
        decls = getattr(parameter.default, "param_decls", None) or ()
        long = [d for d in decls if d.startswith("--")]
        names[name] = long[0] if long else f"--{name.replace('_', '-')}"
    return names


def _check_finite_options(kwargs: dict, names: dict[str, str]) -> None:
    for name, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{names.get(name, name)} must be a finite number, got {value}")


def _print_error(message: str) -> None:
    err_console.print(f"error: {' '.join(str(message).split())}", markup=False, highlight=False, soft_wrap=True)


def _one_line_errors(callback):
    """Wrap a command so domain errors print one line and exit non-zero (also under CliRunner)."""
    names = _option_names(callback)

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            _check_finite_options(kwargs, names)
            return callback(*args, **kwargs)
        except SpikingmindError as error:
            _print_error(str(error))
            raise typer.Exit(error.exit_code) from None
        except OSError as error:  # a file operation the library did not expect to fail (disk full ...)
            where = f"{error.filename}: " if error.filename else ""
            _print_error(f"{where}{error.strerror or error}")
            raise typer.Exit(SpikingmindError.exit_code) from None
        except KeyboardInterrupt:
            _print_error("interrupted; nothing half-written was left (re-run to resume where that applies)")
            raise typer.Exit(130) from None

    return wrapper


def _register_commands() -> None:
    from spikingmind.cli import conditioning_cmds, core_cmds, energy_cmds, export_cmds, finetune_cmds, sweep_cmds

    for module in (core_cmds, export_cmds, energy_cmds, finetune_cmds, sweep_cmds, conditioning_cmds):
        module.register(app)
    for command in app.registered_commands:
        command.callback = _one_line_errors(command.callback)


_register_commands()


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console entry point. Domain errors become one line + exit code inside each command;
    typer handles usage errors (exit 2). SIGTERM is handled like Ctrl-C, so that a killed
    command still stops its Lava sidecar and removes its temporary files."""
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    app()
