"""CLI: `ablate`, the T x K ablation sweep (spikingmind.workflows.sweep), locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app) -> None:
    """Add this module's commands to the app."""
    app.command("ablate")(ablate_cmd)


def ablate_cmd(
    env: str = typer.Option("CartPole-v1", "--env", help="environment id (see `spikingmind envs`)"),
    time_steps: str = typer.Option("1,2,4,8", "--time-steps", help="T values (SNN steps per decision)"),
    context: str = typer.Option("1,5,10,20", "--context", help="K values (context, env steps)"),
    widths: Optional[str] = typer.Option(None, "--widths", help="SNN widths (default: the config's)"),
    energy_weights: Optional[str] = typer.Option(None, "--energy-weights",
                                                 help="SNN train.energy_weight values (default: the config's)"),
    ann_widths: Optional[str] = typer.Option(None, "--ann-widths", help="ANN family widths (default: the SNN's)"),
    ann_context: Optional[str] = typer.Option(None, "--ann-context", help="ANN family K values (default: the SNN's)"),
    target_return: Optional[float] = typer.Option(None, "--target-return",
                                                  help="return the front's cheapest configs must reach (default: the env's)"),
    seeds: int = typer.Option(3, "--seeds", help="training seeds per config (0..N-1)"),
    grid: str = typer.Option("axes", "--grid", help="axes: vary each SNN axis (T, K, width, energy weight) at the "
                             "others' defaults (the first value listed, or the config's); full: every combination"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config (train and model tables) shared by every run "
                                          "(default configs/<env>.toml when it exists); its T and K are the defaults"),
    default_time_steps: Optional[int] = typer.Option(None, "--default-time-steps", help="T where the K axis runs"),
    default_context: Optional[int] = typer.Option(None, "--default-context", help="K where the T axis runs"),
    steps: Optional[int] = typer.Option(None, "--steps", help="override train.steps of every run"),
    ann: bool = typer.Option(True, "--ann/--no-ann", help="also train the ANN twin at each K (latency/energy ratios)"),
    episodes: int = typer.Option(20, "--episodes", help="unseen evaluation episodes per run"),
    dataset_episodes: int = typer.Option(100, "--dataset-episodes", help="episodes of the shared dataset"),
    mix: Optional[str] = typer.Option(None, "--mix", help="dataset policy mix (default: the env's)"),
    executor: str = typer.Option("local", "--executor", help="local (process pool) or ray"),
    workers: int = typer.Option(2, "--workers", help="local executor: parallel runs (one thread each)"),
    address: Optional[str] = typer.Option(None, "--address", help="ray executor: cluster address (e.g. auto); "
                                          "default starts a local instance"),
    retry_failed: bool = typer.Option(True, "--retry-failed/--skip-failed", help="re-run runs that failed before"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="sweep folder (default runs/ablate/<env>)"),
    whole_folder: bool = typer.Option(False, "--whole-folder/--this-grid",
                                      help="tables and front over every run of the folder trained and evaluated like "
                                      "this grid's (grids of earlier invocations added), not only this grid's"),
) -> None:
    """Ablation over T and K: manifest of runs (config x seed), resumable, CSV + plots."""
    from spikingmind.data import parse_mix
    from spikingmind.envs import env_slug, get_env_spec
    from spikingmind.train import TrainConfig, load_config_file
    from spikingmind.workflows.sweep import SweepConfig, check_runs, parse_float_list, parse_int_list, run_sweep

    get_env_spec(env)
    if config is None and Path(f"configs/{env_slug(env)}.toml").exists():
        config = Path(f"configs/{env_slug(env)}.toml")
    train_values = load_config_file(config) if config else {}
    if steps is not None:
        train_values["steps"] = steps
    # the shared settings as the file gives them (errors name the file), before anything runs
    TrainConfig.from_dict({**train_values, "env_id": env, "dataset": "the-sweep-dataset-v0"},
                          source=str(config or "options"))
    cfg = SweepConfig(
        env_id=env, time_steps=parse_int_list(time_steps, "--time-steps"), context=parse_int_list(context, "--context"),
        widths=parse_int_list(widths, "--widths") if widths else (),
        energy_weights=parse_float_list(energy_weights, "--energy-weights") if energy_weights else (),
        ann_widths=parse_int_list(ann_widths, "--ann-widths") if ann_widths else (),
        ann_context=parse_int_list(ann_context, "--ann-context") if ann_context else (),
        target_return=target_return,
        seeds=seeds, grid=grid, default_time_steps=default_time_steps, default_context=default_context, ann=ann,
        train=train_values, dataset_episodes=dataset_episodes, dataset_mix=parse_mix(mix) if mix else None,
        eval_episodes=episodes,
    )
    check_runs(cfg)  # every run at its own T and K, before the dataset is collected
    sweep_dir = out or Path("runs") / "ablate" / env_slug(env)
    t0, k0 = cfg.defaults()
    console.print(f"sweep [bold]{sweep_dir}[/]: {env}, grid {grid} (defaults T={t0}, K={k0}), {seeds} seed(s), "
                  f"config {config or 'built-in defaults'}, executor {executor}"
                  + (f" x{workers}" if executor == "local" else ""))

    def show(kind: str, entry: dict) -> None:
        label = (f"{entry['model']} T={entry['time_steps']} K={entry['context']} w={entry.get('width')} "
                 f"e={entry.get('energy_weight')} seed={entry['seed']} ({entry['run_id']})")
        if kind == "skip":
            console.print(f"  skip   {label}: already {entry['status']}")
        elif kind == "start":
            console.print(f"  queued {label}")
        elif kind == "done":
            result = entry["result"]
            console.print(f"  [green]done[/]   {label}: return {result['mean_return']:.1f} +- {result['std_return']:.1f}, "
                          f"{result['wall_seconds']:.0f} s")
        else:
            console.print(f"  [red]failed[/] {label}: {entry['error']}")

    summary = run_sweep(sweep_dir, cfg, executor=executor, workers=workers, address=address,
                        retry_failed=retry_failed, on_event=show, whole_folder=whole_folder)
    _print_summary(summary.summary_csv)
    if whole_folder:
        console.print(f"tables and front: {summary.tabled} runs of the folder"
                      + (f" ({summary.left_out} trained or evaluated otherwise left out)" if summary.left_out else ""))
    elif summary.outside_grid:
        console.print(f"[yellow]note:[/] the tables and the front cover this grid only; {summary.outside_grid} "
                      "runs of this folder from other grids, trained and evaluated alike, are not in them "
                      "(--whole-folder adds them)")
    console.print(f"{summary.done}/{summary.planned} runs done ({summary.skipped} skipped as finished), "
                  f"{summary.failed} failed, {summary.seconds:.0f} s")
    console.print(f"wrote {summary.runs_csv}, {summary.summary_csv}, {summary.plots[0].parent}/*.png, "
                  f"{sweep_dir / 'front.json'}, {sweep_dir / 'manifest.json'}")
    _print_front(sweep_dir / "front.json")
    if summary.failed:
        raise typer.Exit(1)


def _print_summary(path: Path) -> None:
    import csv

    rows = list(csv.DictReader(path.open()))
    table = Table(title="ablation summary (mean +- std over finished seeds)")
    columns = (("return", "mean_return"), ("spikes/decision", "spikes_per_decision"),
               ("latency ms", "latency_ms"), ("loihi pJ", "energy_pj_loihi"),
               ("int8 pJ", "energy_pj_cmos45nm-int8"))
    for name in ("model", "T", "K", "width", "e", "done", "failed", *(c for c, _ in columns)):
        table.add_column(name, justify="left" if name == "model" else "right")

    def cell(row: dict, key: str) -> str:
        mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
        return "-" if not mean else f"{float(mean):.4g} +- {float(std):.2g}"

    for row in rows:
        snn = row["model"] == "snn"
        table.add_row(row["model"], row["time_steps"] if snn else "-", row["context"], row["width"],
                      row["energy_weight"] if snn else "-", row["done"], row["failed"],
                      *(cell(row, key) for _, key in columns))
    console.print(table)


def _print_front(path: Path) -> None:
    """The cheapest config of each family that reaches the target, and the SNN / int8 ratios."""
    import json

    from spikingmind.workflows.sweep_results import front_lines

    data = json.loads(path.read_text())
    console.print(f"energy front (decision-only accounting; target return {data['target_return']:g}):",
                  markup=False, highlight=False)
    for line in front_lines(data):
        console.print(f"  {line}", markup=False, highlight=False)
