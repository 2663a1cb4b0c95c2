"""CLI: `condition`, the return-conditioning sweep (spikingmind.workflows.conditioning)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app) -> None:
    """Add this module's commands to the app."""
    app.command("condition")(condition_cmd)


def condition_cmd(
    checkpoints: List[Path] = typer.Argument(..., help="checkpoint folders: SNN and/or ANN, one per training seed, "
                                             "all trained on one dataset"),
    targets: int = typer.Option(8, "--targets", help="requested returns from the dataset's lowest to its highest "
                                "episode return (one more above the best is added)"),
    episodes: int = typer.Option(20, "--episodes", "-n", help="evaluation episodes per checkpoint and target "
                                 "(seeds: those of `evaluate --seed <training seed>`)"),
    above_best: float = typer.Option(0.1, "--above-best", help="the extra target: this share of the dataset's "
                                     "return range above its best return"),
    backend: Optional[str] = typer.Option(None, "--backend", help="backend of every checkpoint (default pytorch; "
                                          "event: the SNN on the event-driven runtime)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset id or folder (default: the one the "
                                          "checkpoints name, under $MINARI_DATASETS_PATH)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the sweep (every target, seed, episode) here"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write achieved vs requested return as a PNG here"),
    force: bool = typer.Option(False, "--force", help="overwrite existing --json/--plot files"),
) -> None:
    """Sweep the requested return over the dataset's range and measure the return achieved."""
    from rich.console import Console
    from rich.table import Table

    from spikingmind.cli.core_cmds import progress_bar
    from spikingmind.io import refuse_overwrite
    from spikingmind.errors import ConfigError
    from spikingmind.workflows.conditioning import MODEL_LABELS, plan_sweep, plot_conditioning, run_sweep, write_json

    for out in (json_out, plot):
        if out is not None:
            refuse_overwrite(out, force)
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    plan = plan_sweep(checkpoints, targets=targets, above_best=above_best, dataset=dataset)  # fails before the bar
    console = Console()
    with progress_bar() as progress:
        task = progress.add_task("condition", total=plan.episodes(episodes),
                                 info=f"{len(plan.sources)} checkpoints x {len(plan.targets)} targets")
        record = run_sweep(plan, episodes=episodes, backend=backend, progress=lambda n: progress.advance(task, n))
    data = record["dataset"]
    table = Table(title=f"{record['env_id']} · dataset {data['id']} (returns {data['min_return']:g} .. "
                        f"{data['max_return']:g}) · achieved return, mean ± std over seeds")
    table.add_column("requested", justify="right")
    for model in record["models"]:
        table.add_column(MODEL_LABELS.get(model, model), justify="right")
    for i, (target, inside) in enumerate(zip(record["targets"], record["in_range"])):
        table.add_row(f"{target:.1f}" + ("" if inside else " (above best)"),
                      *(f"{m['mean'][i]:.1f} ± {m['std_over_seeds'][i]:.1f}" for m in record["models"].values()))
    console.print(table)
    for model, m in record["models"].items():
        r = "undefined" if m["correlation"] is None else f"{m['correlation']:.3f}"
        console.print(f"{MODEL_LABELS.get(model, model)} ({len(m['seeds'])} seeds): r {r}, slope {m['slope']:.3f} "
                      f"over the dataset's range -> {'conditions' if m['conditions'] else 'does NOT condition'}")
    if record["snn_as_clearly_as_ann"] is not None:
        console.print(f"SNN conditions as clearly as the ANN twin: {'yes' if record['snn_as_clearly_as_ann'] else 'NO'}")
    console.print(f"rule: {record['rule']['text']}", highlight=False)
    if json_out is not None:
        write_json(json_out, record)
        console.print(f"wrote {json_out}")
    if plot is not None:
        plot_conditioning(record, plot)
        console.print(f"wrote {plot}")
