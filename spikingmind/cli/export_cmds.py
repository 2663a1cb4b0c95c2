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
    source: Path = typer.Argument(..., help="checkpoint folder (or model.nir for --target lava and --portable)"),
    target: str = typer.Option(..., "--target", "-t", help=_target_help()),
    out: Path = typer.Option(..., "--out", "-o", help="output file (nir, onnx) or folder (lava)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output"),
    verify_decisions: int = typer.Option(
        20, "--verify-decisions", help="lava: real decisions (reference episodes) run through Lava to verify"),
    portable: bool = typer.Option(
        False, "--portable", help="nir: write the graph rewritten so that nirtorch 2.6, snnTorch 1.0.0 and norse 1.1.0 "
                                  "run it spike for spike (dt 1e-4, r = 1, Conv2d, AND as LIF; "
                                  "docs/THIRD_PARTY_READERS.md), verified against the standard graph; the source may "
                                  "be a checkpoint or a standard .nir"),
    decision_only: bool = typer.Option(
        False, "--decision-only", help="onnx: compute only the decision token's output (faster policy graph; "
                                       "the default full graph is what energy-report counts)"),
) -> None:
    """Export a trained policy: --target nir | onnx | lava (lava: verified in Lava, agreement table)."""
    from spikingmind.errors import ConfigError
    from spikingmind.export import export

    # the Lava target verifies the bundle in Lava and prints its agreement table here
    options = {"console": console, "verify_decisions": verify_decisions} if target == "lava" else {}
    if portable:
        if target != "nir":
            raise ConfigError(f"--portable applies to --target nir, not {target}")
        options["portable"] = True
    if decision_only:
        if target != "onnx":
            raise ConfigError(f"--decision-only applies to --target onnx, not {target}")
        options["decision_only"] = True
    path = export(target, source, out, force=force, **options)
    console.print(f"exported [bold]{target}[/] -> {path}")
    if portable:
        from spikingmind.export.nir import graph_metadata
        from spikingmind.export.reference import load_graph

        note = graph_metadata(load_graph(path), str(path))["portable"]
        check = note["verification"]
        console.print(f"verified against the standard graph on {check['decisions']} closed-loop decisions: "
                      f"{check['spike_mismatches']} of {check['spike_values']:,} spike values differ, "
                      f"{check['action_mismatches']} actions; weights {note['weights']['ratio']}x the standard's")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
