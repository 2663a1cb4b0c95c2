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

    # the Lava target verifies the bundle in Lava; its agreement table is shown here
    options = {"on_agreement": show_agreement, "verify_decisions": verify_decisions} if target == "lava" else {}
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


def _percent(value) -> str:
    return "-" if value is None or value != value else f"{value:.1%}"


def agreement_table(agreement, title: str = "Lava agreement"):
    """A rich Table of a Lava agreement (a LavaAgreement or its JSON): mismatches per layer, actions."""
    from rich.table import Table

    data = agreement if isinstance(agreement, dict) else agreement.to_json()
    table = Table(title=title, caption=(
        f"{data.get('decisions', '?')} decisions, latency {data['latency_steps']} Lava steps; actions: "
        f"float == reference {_percent(data['action_float_vs_reference'])}, "
        f"fixed == float {_percent(data.get('action_fixed_vs_float'))}, "
        f"fixed == reference {_percent(data['action_fixed_vs_reference'])}"))
    for column in ("node", "kind", "values", "float≠ref", "fixed≠emu", "fixed≠float", "rate ref", "rate fixed"):
        table.add_column(column, justify="left" if column in ("node", "kind") else "right",
                         no_wrap=column == "node", min_width=22 if column == "node" else None)

    def count(value):
        return "-" if value < 0 else (f"[red]{value}[/]" if value else "0")

    for row in data["layers"]:
        # NaN in memory, null once written as JSON (io.json_text): no rate (an output row)
        rates = [("" if rate is None or rate != rate else f"{rate:.3f}") for rate in (row["rate_reference"], row["rate_fixed"])]
        table.add_row(row["node"], row["kind"], str(row["total"]), count(row["float_vs_reference"]),
                      count(row["fixed_vs_emulation"]),
                      "-" if row["fixed_vs_float"] < 0 else str(row["fixed_vs_float"]), *rates)  # -: not run
    return table


def show_agreement(agreement, out: Path) -> None:
    """The Lava export's agreement table and its timing per mode, on the console."""
    console.print(agreement_table(agreement, title=f"Lava agreement · {out}"))
    for mode, label in (("float", "floating_pt"), ("fixed", "fixed_pt")):
        t = agreement.timing.get(mode) or {}
        if t:
            console.print(f"{label}: {1000 * t['run_s'] / t['decisions']:.1f} ms per decision pipelined "
                          f"({t['n_steps'] / t['run_s']:.0f} Lava steps/s), network build {t['build_s']:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
