"""CLI: `profiles` (bundled hardware profiles and their citations) and `energy-report`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

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


#: Every cited parameterisation of Loihi: a verdict of "cheaper" must hold under all of them.
LOIHI_PROFILES = "loihi,loihi-sanafe,loihi-kerasspiking"


def energy_report(
    source: Path = typer.Argument(..., help="Checkpoint directory or exported .nir graph."),
    profile: str = typer.Option(LOIHI_PROFILES, "--profile",
                                help="Comma-separated hardware profiles (names or .toml) pricing the SNN; the first "
                                     "fills the per-layer table, the verdict holds under all of them."),
    baseline: Optional[List[Path]] = typer.Option(
        None, "--baseline", help="The ANN twin: its checkpoint folder (both graphs are exported), or ONNX files (the "
                                 "full graph and/or its --decision-only graph); repeat the option for two files."),
    baseline_profile: str = typer.Option(
        "cmos45nm-fp32,cmos45nm-int8", "--baseline-profile", help="Comma-separated profiles pricing the ANN."
    ),
    episodes: int = typer.Option(5, "--episodes", min=1, help="Closed-loop episodes whose decisions are recorded."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the evaluation episodes."),
    max_decisions: Optional[int] = typer.Option(
        None, "--max-decisions", min=1, help="Count only the first N recorded decisions (all by default)."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG bar chart here."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing --json/--plot files."),
) -> None:
    """Estimate energy per decision from the spikes the policy fires on real episodes.

    Both sides are counted as deployed (decision-only: what one decision needs) and over the
    whole window; the verdict uses decision-only and is given under every SNN profile."""
    from rich.console import Console

    from spikingmind.energy.measure import estimate_energy
    from spikingmind.energy.report import plot_energy, render_report
    from spikingmind.io import atomic_write_json, refuse_overwrite

    for out in (json_out, plot):
        if out is not None:
            refuse_overwrite(out, force)
    split = lambda text: [name.strip() for name in text.split(",") if name.strip()]  # noqa: E731
    report = estimate_energy(source, split(profile), list(baseline or []), split(baseline_profile), episodes, seed,
                             max_decisions)
    render_report(report, Console())
    if json_out is not None:
        atomic_write_json(json_out, report.to_dict())
    if plot is not None:
        plot_energy(report, plot)
