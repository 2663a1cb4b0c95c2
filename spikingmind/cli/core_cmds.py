"""collect, train, evaluate, envs: the offline-RL half of the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()


def progress_bar() -> Progress:
    """The commands' progress bar: description, bar, n/total, a live info field, times."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def envs_cmd() -> None:
    """List the registered environments."""
    from spikingmind.envs import get_env_spec, supported_envs

    table = Table(title="environments")
    for column in ("env id", "obs", "actions", "target return", "expert", "default mix"):
        table.add_column(column)
    for env_id in supported_envs():
        spec = get_env_spec(env_id)
        table.add_row(env_id, str(spec.obs_dim), f"{spec.action_kind} ({spec.act_dim})",
                      f"{spec.target_return:g}", "yes" if spec.expert else "no",
                      ",".join(f"{k}={v:g}" for k, v in spec.dataset_mix().items()))
    console.print(table)


def collect_cmd(
    env: str = typer.Option("CartPole-v1", "--env", help="environment id (see `spikingmind envs`)"),
    episodes: int = typer.Option(100, "--episodes", "-n", help="number of episodes"),
    mix: Optional[str] = typer.Option(None, "--mix", help="policy mix over expert, capped, noisy, late, idle "
                                      "(the env's idle action, then the expert), random, heuristic, "
                                      "e.g. expert=0.5,noisy=0.3,random=0.2 "
                                      "(default: the env's default_mix, see `spikingmind envs`)"),
    seed: int = typer.Option(0, "--seed", help="dataset seed (episode seeds and policy assignment derive from it)"),
    dataset_id: Optional[str] = typer.Option(None, "--dataset-id", help="Minari id ending in -vN (default: derived)"),
    root: Optional[Path] = typer.Option(None, "--root", help="datasets folder (default $MINARI_DATASETS_PATH or runs/datasets)"),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="reuse an existing dataset collected with the same settings"),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", "-w",
                                help="worker processes playing episodes (1: in this process); the data do not depend on it"),
    expert: Optional[str] = typer.Option(None, "--expert", help="builtin (the env's own planner, the default) or "
                                         "sb3:PATH, a Stable-Baselines3 .zip you trained (needs --trust-pickle)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow --expert sb3:PATH: SB3 loads a model by "
                                      "unpickling it, which runs code from the file; pass it only for files you trust"),
) -> None:
    """Collect demonstrations into an offline Minari dataset."""
    from spikingmind.data import (check_collect_options, collect, default_dataset_id, existing_dataset_matches,
                                  new_dataset_dir, parse_mix)
    from spikingmind.envs import get_env_spec
    from spikingmind.errors import ConfigError
    from spikingmind.experts.sb3 import SB3Expert, parse_expert_source
    from spikingmind.parallel import check_workers

    spec = get_env_spec(env)
    check_workers(workers)
    check_collect_options(episodes, seed)
    weights = parse_mix(mix) if mix is not None else spec.dataset_mix()
    sb3_file = parse_expert_source(expert)
    if sb3_file is None and trust_pickle:
        raise ConfigError("--trust-pickle: only --expert sb3:PATH loads a pickle; leave it out")
    policy = SB3Expert(sb3_file, spec, trust_pickle) if sb3_file is not None else None
    dataset_id = dataset_id or default_dataset_id(env, weights, episodes, seed, policy)
    if exist_ok and existing_dataset_matches(dataset_id, root, env, weights, episodes, seed, policy):
        console.print(f"dataset [bold]{dataset_id}[/] already collected with these settings; reusing it")
        return
    new_dataset_dir(dataset_id, root)  # refuse before any work is done
    try:
        with progress_bar() as progress:
            task = progress.add_task(f"collect {env}", total=episodes, info=f"{workers} worker{'s' * (workers > 1)}")
            dataset, meta = collect(env, episodes, weights, seed=seed, dataset_id=dataset_id, root=root,
                                    progress=lambda done, total: progress.update(task, completed=done), workers=workers,
                                    expert=policy)
    except KeyboardInterrupt:
        console.print("interrupted: workers stopped, no dataset written")
        raise typer.Exit(130) from None
    by_policy: dict[str, list[float]] = {}
    for record in meta["episodes"]:
        by_policy.setdefault(record["policy"], []).append(record["return"])
    summary = ", ".join(f"{k}: {len(v)} ep, mean return {sum(v) / len(v):.1f}" for k, v in by_policy.items())
    console.print(f"dataset [bold]{dataset}[/] ({meta['n_steps']} steps; {summary})")
    console.print(f"content sha256 {meta['content_hash']}")


def train_cmd(
    env: str = typer.Option("CartPole-v1", "--env"),
    model: str = typer.Option("snn", "--model", help="snn (spiking DT) or ann (its softmax twin)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset id or folder"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with [train] and [model] tables"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default runs/<env>-<model>-s<seed>)"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    stop_at_return: Optional[float] = typer.Option(None, "--stop-at-return", help="stop once validation reaches it"),
    force: bool = typer.Option(False, "--force", help="discard an existing run in --out"),
) -> None:
    """Train a spiking DT (or its ANN twin) offline with the Decision Transformer loss."""
    from spikingmind.envs import env_slug, get_env_spec
    from spikingmind.train import TrainConfig, load_config_file, train

    get_env_spec(env)
    values = load_config_file(config) if config else {}
    values.setdefault("model", {})
    if isinstance(values["model"], dict):
        values["model"] = {**values["model"], "kind": model}
    overrides = {"env_id": env, "dataset": dataset, "steps": steps, "seed": seed, "stop_at_return": stop_at_return}
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig.from_dict(values, source=str(config or "options"))
    run_dir = out or Path("runs") / f"{env_slug(env)}-{model}-s{cfg.seed}"
    with progress_bar() as progress:
        task = progress.add_task(f"train {model}", total=cfg.steps, info="")

        def show(entry: dict) -> None:
            rate = entry["step"] / max(entry["elapsed_s"], 1e-9)
            info = f"loss {entry['loss']:.3f}  {rate:.1f} steps/s"
            if "spike_rate" in entry:
                info += f"  spikes {entry['spike_rate']:.1%}  {entry['energy_uj']:.3g} uJ/window"
            if "val_return" in entry:
                info += f"  val return {entry['val_return']:.1f}"
            progress.update(task, completed=entry["step"], info=info)

        checkpoint, metrics = train(run_dir, cfg, force=force, on_progress=show)
    if metrics.get("status") == "already finished":
        console.print(f"{run_dir} already finished with this config; nothing to do (use --force to retrain)")
    console.print(f"checkpoint [bold]{checkpoint}[/]  best validation return {metrics['best_val_return']:.1f} "
                  f"at step {metrics['best_step']}, {metrics['train_seconds']:.0f} s")


def _backend_help() -> str:
    from spikingmind.export import BACKENDS, SOURCES

    defaults = ", ".join(f"{kind} -> {name}" for kind, name in SOURCES.items())
    listed = "; ".join(f"{name}: {backend.description}" for name, backend in BACKENDS.items())
    return f"{listed} (default: from the source, {defaults})"


def evaluate_cmd(
    source: Path = typer.Argument(..., help="checkpoint folder, model.nir, ann.onnx or a Lava bundle folder"),
    episodes: int = typer.Option(20, "--episodes", "-n"),
    seed: int = typer.Option(0, "--seed", help="evaluation seed offset (seeds are disjoint from training data)"),
    target_return: Optional[float] = typer.Option(None, "--target-return", help="return-to-go asked of the policy"),
    backend: Optional[str] = typer.Option(None, "--backend", help=_backend_help()),
    fixed_point: bool = typer.Option(False, "--fixed-point", help="Lava: run Loihi fixed-point arithmetic "
                                     "(--backend loihi-emulation always does, without Lava)"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="truncate episodes after N steps (slow backends)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write results JSON here"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --json file"),
) -> None:
    """Run closed-loop episodes on unseen seeds and report returns (and spikes for SNNs)."""
    from spikingmind.io import atomic_write_json, check_outputs
    from spikingmind.workflows.evaluate import evaluate, load_policy

    check_outputs({"--json": json_out}, {"the source": source}, force)  # before any work
    policy = load_policy(source, backend, fixed_point)  # fails before the progress bar shows
    with progress_bar() as progress:
        task = progress.add_task("evaluate", total=episodes, info="")
        result = evaluate(source, episodes=episodes, seed=seed, target_return=target_return, backend=backend,
                          fixed_point=fixed_point, progress=lambda n: progress.advance(task, n), policy=policy,
                          max_steps=max_steps)
    table = Table(title=f"{result['env_id']} · {result['model']} · {result['backend']}")
    for column in ("episodes", "target return", "mean return", "std", "min", "max", "ms/decision"):
        table.add_column(column, justify="right")
    table.add_row(str(result["episodes"]), f"{result['target_return']:g}", f"{result['mean_return']:.1f}",
                  f"{result['std_return']:.1f}", f"{result['min_return']:.1f}", f"{result['max_return']:.1f}",
                  f"{result['ms_per_decision_batch']:.2f}")
    console.print(table)
    if result.get("max_steps"):
        console.print(f"episodes truncated after {result['max_steps']} steps (--max-steps)")
    if result.get("lava_ms_per_decision") is not None:
        console.print(f"Lava: {result['lava_ms_per_decision']:.0f} ms per decision")
    if result.get("fixed_point") is not None:
        side = result["fixed_point"]
        agreement = side["action_agreement"]
        console.print(f"float ({side['float_backend']}) on the same seeds: mean return {side['float_mean_return']:.1f} "
                      f"(fixed point {side['fixed_mean_return']:.1f}, gap {side['return_gap']:+.1f}); same action on "
                      f"{100 * agreement['on_fixed_decisions']:.1f}% of the fixed run's decisions, "
                      f"{100 * agreement['on_float_decisions']:.1f}% of the float run's")
    if result.get("spikes_per_decision") is not None:
        console.print(f"spikes per decision {result['spikes_per_decision']:.0f}, "
                      f"mean spike rate {100 * result['mean_spike_rate']:.1f}%")
    if json_out is not None:
        atomic_write_json(json_out, result)
        console.print(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    app.command("envs")(envs_cmd)
    app.command("collect")(collect_cmd)
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
