"""export: checkpoints out to NIR, ONNX and Lava through the target registry."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def _target_help() -> str:
    from spikingmind.export import TARGETS

    return "; ".join(f"{name}: {description}" for name, (_, description) in TARGETS.items())


def export_cmd(
    source: Path = typer.Argument(..., help="checkpoint folder (or model.nir for --target lava)"),
    target: str = typer.Option(..., "--target", "-t", help=_target_help()),
    out: Path = typer.Option(..., "--out", "-o", help="output file (nir, onnx) or folder (lava)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output"),
) -> None:
    """Export a trained policy: --target nir | onnx | lava."""
    from spikingmind.export import export

    path = export(target, source, out, force=force)
    console.print(f"exported [bold]{target}[/] -> {path}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
