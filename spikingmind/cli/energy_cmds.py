"""CLI: `profiles` (bundled hardware profiles and their citations) and `energy-report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

#: Decisions simulated per chunk: bounds the memory that full per-node records need.
RECORD_CHUNK = 64


def register(app) -> None:
    """Add this module's commands to the app."""
    app.command("profiles")(profiles)
    app.command("energy-report")(energy_report)


def profiles(
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the profiles as JSON here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --json file."),
) -> None:
    """List the bundled hardware profiles, each constant with its unit and source."""
    from rich.console import Console
    from rich.table import Table

    from spikingmind.energy.profiles import list_profiles, load_profile
    from spikingmind.io import atomic_write_json, refuse_overwrite

    loaded = [load_profile(name) for name in list_profiles()]
    if json_out is not None:
        refuse_overwrite(json_out, force)
    console = Console()
    for profile in loaded:
        table = Table(title=f"{profile.name}: {profile.description}")
        for col in ("constant", "value", "source", "where", "note"):
            table.add_column(col, overflow="fold")
        for key, const in profile.constants.items():
            table.add_row(key, f"{const.value:g} {const.unit}", const.source, const.where, const.note)
        console.print(table)
    if json_out is not None:
        atomic_write_json(json_out, {p.name: p.to_dict() for p in loaded})


def energy_report(
    source: Path = typer.Argument(..., help="Checkpoint directory or exported .nir graph."),
    profile: str = typer.Option("loihi", "--profile", help="Hardware profile (name or .toml) pricing the SNN."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="ONNX file of the ANN twin."),
    baseline_profile: str = typer.Option(
        "cmos45nm-fp32,cmos45nm-int8", "--baseline-profile", help="Comma-separated profiles pricing the ANN."
    ),
    episodes: int = typer.Option(5, "--episodes", min=1, help="Closed-loop episodes whose decisions are recorded."),
    seed: int = typer.Option(0, "--seed", help="Seed of the evaluation episodes."),
    max_decisions: Optional[int] = typer.Option(
        None, "--max-decisions", min=1, help="Count only the first N recorded decisions (all by default)."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG bar chart here."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing --json/--plot files."),
) -> None:
    """Estimate energy per decision from the spikes the policy fires on real episodes."""
    import numpy as np
    from rich.console import Console

    from spikingmind.energy.onnx_counts import count_onnx
    from spikingmind.energy.profiles import load_profile
    from spikingmind.energy.report import build_report, plot_energy, render_report
    from spikingmind.energy.snn_counts import count_snn, merge_counts
    from spikingmind.io import atomic_write_json, refuse_overwrite

    for out in (json_out, plot):
        if out is not None:
            refuse_overwrite(out, force)
    snn_profile = load_profile(profile)
    ann_profiles = [load_profile(name.strip()) for name in baseline_profile.split(",") if name.strip()]
    ann_counts = count_onnx(baseline) if baseline is not None else None

    from spikingmind.export.nir import load_or_export_graph
    from spikingmind.export.reference import ReferenceSimulator
    from spikingmind.rollout import record_decision_inputs

    graph = load_or_export_graph(source)
    inputs = np.asarray(record_decision_inputs(graph, episodes, seed))  # (N, D_in, L)
    if max_decisions is not None:
        inputs = inputs[:max_decisions]
    simulator = ReferenceSimulator(graph)
    input_names = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    parts = []
    for start in range(0, len(inputs), RECORD_CHUNK):
        chunk = inputs[start:start + RECORD_CHUNK]
        records = dict(simulator.run(chunk, record=True).records)
        for name in input_names:  # the Input's record is the decision input at every step
            if name not in records:
                steps = next(iter(records.values())).shape[0]
                records[name] = np.broadcast_to(chunk, (steps, *chunk.shape))
        parts.append(count_snn(graph, records))
    snn_counts = merge_counts(parts)
    report = build_report(
        snn_counts, snn_profile, ann_counts, ann_profiles if baseline is not None else [],
        provenance={"source": str(source), "baseline": str(baseline) if baseline else None,
                    "episodes": episodes, "seed": seed, "decisions": int(len(inputs)),
                    "env": (graph.metadata or {}).get("env")},
    )
    render_report(report, Console())
    if json_out is not None:
        atomic_write_json(json_out, report.to_dict())
    if plot is not None:
        plot_energy(report, plot)
