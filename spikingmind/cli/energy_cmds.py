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
    from spikingmind.io import atomic_write_json, check_outputs

    check_outputs({"--json": json_out}, {}, force)
    loaded = [load_profile(name) for name in list_profiles()]
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

    from spikingmind.energy.report import plot_energy
    from spikingmind.io import atomic_write_json, check_outputs
    from spikingmind.workflows.energy_report import estimate_energy

    split = lambda text: [name.strip() for name in text.split(",") if name.strip()]  # noqa: E731
    profile_files = [name for name in split(profile) + split(baseline_profile) if name.endswith(".toml") or "/" in name]
    inputs = [("the source", source), *(("--baseline", b) for b in baseline or []),
              *(("a profile", Path(name)) for name in profile_files)]
    check_outputs({"--json": json_out, "--plot": plot}, inputs, force)  # before any work
    report = estimate_energy(source, split(profile), list(baseline or []), split(baseline_profile), episodes, seed,
                             max_decisions)
    render_report(report, Console())
    if json_out is not None:
        atomic_write_json(json_out, report.to_dict())
    if plot is not None:
        plot_energy(report, plot)


def render_report(report, console=None) -> None:
    """Print an EnergyReport as rich tables (every constant with its citation)."""
    from rich.console import Console
    from rich.table import Table

    from spikingmind.energy.report import format_pj

    console = console or Console()
    console.print(f"[bold]Energy estimate[/] per decision ({report.accounting.replace('_', '-')} accounting) — SNN on "
                  f"[bold]{report.snn_profile}[/] ({report.technology}), "
                  f"T={report.time_steps} steps, {report.decisions} recorded decisions, "
                  f"mean spike rate {report.spike_rate:.2%} (activation sparsity {report.activation_sparsity:.2%})",
                  highlight=False)
    snn = Table(title=f"SNN per layer (estimate, {report.snn_profile})")
    for col in ("layer", "type", "ACs", "MACs", "neuron upd.", "spike rate", "compute", "memory", "total", "share"):
        snn.add_column(col, justify="left" if col in ("layer", "type") else "right")
    layers = {l["name"]: l for l in report.counts["snn"]["layers"]}
    for line in report.snn_layers:
        c = layers[line.name]
        rate = "" if c["spike_rate"] is None else f"{c['spike_rate']:.2%}"
        snn.add_row(line.name, line.op_type, f"{c['effective_acs']:.4g}", f"{c['effective_macs']:.4g}",
                    f"{c['neuron_updates']:.4g}", rate, format_pj(line.compute_pj), format_pj(line.memory_pj),
                    format_pj(line.total_pj), f"{line.share:.1%}")
    snn.add_row("total", "", "", "", "", f"{report.spike_rate:.2%}", format_pj(report.snn_compute_pj),
                format_pj(report.snn_memory_pj), format_pj(report.snn_total_pj), "100%", style="bold")
    console.print(snn)
    if report.baselines:
        cmp_table = Table(title="SNN vs ANN twin (estimate, per decision)")
        for col in ("baseline", "ANN compute", "ANN memory", "ANN total", "SNN/ANN", "ANN/SNN", "break-even spike rate"):
            cmp_table.add_column(col, justify="left" if col == "baseline" else "right")
        for b in report.baselines:
            rate = "none" if b.break_even_spike_rate is None else f"{b.break_even_spike_rate:.2%}"
            cmp_table.add_row(b.profile, format_pj(b.ann_compute_pj), format_pj(b.ann_memory_pj), format_pj(b.ann_total_pj),
                              f"{b.snn_over_ann:.3g}", f"{b.ann_over_snn:.3g}", rate)
        console.print(cmp_table)
        for b in report.baselines:
            console.print(f"- {b.verdict}; break-even: {b.break_even_note}.", highlight=False, markup=False)
    else:
        console.print("No ANN baseline given (--baseline): no comparison.")
    if len(report.profiles) > 1 or report.other_accountings:
        console.print(_profiles_table(report))
    for verdict in report.verdicts:
        console.print(f"[bold]verdict[/] vs {verdict['ann_profile']}: ", end="")
        console.print(verdict["statement"], highlight=False, markup=False)
    consts = Table(title="Constants used (every figure cited)")
    for col in ("profile", "constant", "value", "source", "where", "note"):
        consts.add_column(col, overflow="fold")
    for c in report.constants:
        consts.add_row(c["profile"], c["key"], f"{c['value']:g} {c['unit']}", c["source"], c["where"], c["note"])
    console.print(consts)
    console.print("[bold]Assumptions[/]")
    for line in report.assumptions + report.notes:
        console.print(f"- {line}", highlight=False)


def _profiles_table(report):
    """Every SNN profile under every accounting: the SNN's total and its ratio to each baseline."""
    from rich.table import Table

    from spikingmind.energy.report import format_pj

    table = Table(title="Every SNN profile (SNN / ANN per baseline)")
    for column in ("accounting", "SNN profile", "technology"):
        table.add_column(column)
    table.add_column("SNN total", justify="right")
    names = [b.profile for b in report.baselines]
    for name in names:
        table.add_column(f"/ {name}", justify="right")
    sections = [(report.accounting, report.profiles)] + [(k, v["profiles"]) for k, v in report.other_accountings.items()]
    for accounting, summaries in sections:
        for summary in summaries:
            ratios = {b["profile"]: b["snn_over_ann"] for b in summary["baselines"]}
            table.add_row(accounting.replace("_", "-"), summary["profile"], summary["technology"],
                          format_pj(summary["snn_total_pj"]), *(f"{ratios[n]:.3g}" if n in ratios else "" for n in names))
    return table
