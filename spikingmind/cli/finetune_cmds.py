"""finetune: online REINFORCE fine-tuning of an offline checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from spikingmind.cli.core_cmds import console, progress_bar


def finetune_cmd(
    ctx: typer.Context,
    checkpoint: Path = typer.Argument(..., help="offline checkpoint folder (from `spikingmind train`)"),
    algo: str = typer.Option("reinforce", "--algo", help="policy-gradient algorithm (reinforce)"),
    episodes: int = typer.Option(200, "--episodes", "-n", help="environment episodes to play in total"),
    batch_episodes: int = typer.Option(8, "--batch-episodes", help="episodes per update"),
    lr: float = typer.Option(1e-4, "--lr", help="AdamW learning rate (small: the policy is warm-started)"),
    temperature: float = typer.Option(1.0, "--temperature", help="discrete: sampling temperature (< 1: closer to greedy)"),
    action_std: float = typer.Option(0.2, "--action-std", help="continuous: initial std as a fraction of the half range"),
    fixed_std: bool = typer.Option(False, "--fixed-std", help="continuous: keep the std fixed instead of learning it"),
    entropy_weight: float = typer.Option(0.0, "--entropy-weight"),
    target_return: Optional[float] = typer.Option(None, "--target-return", help="return-to-go asked (default: the env's)"),
    eval_every: int = typer.Option(2, "--eval-every", help="updates between greedy evaluations"),
    eval_episodes: int = typer.Option(10, "--eval-episodes", help="validation episodes per greedy evaluation"),
    seed: int = typer.Option(0, "--seed"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with a [finetune] table (e.g. "
                                          "configs/pendulum-finetune.toml); options given here override it"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default <checkpoint run>-finetune)"),
    force: bool = typer.Option(False, "--force", help="discard an existing run in --out"),
) -> None:
    """Improve an offline checkpoint online with REINFORCE; writes a learning curve and a new checkpoint."""
    from spikingmind.finetune import FinetuneConfig, finetune, load_finetune_file

    values = options = dict(algo=algo, episodes=episodes, batch_episodes=batch_episodes, lr=lr, action_std=action_std,
                   temperature=temperature, learn_std=not fixed_std, entropy_weight=entropy_weight,
                   target_return=target_return, eval_every=eval_every, eval_episodes=eval_episodes, seed=seed)
    if config is not None:  # the file's values, then every option typed on the command line
        parameter = {"learn_std": "fixed_std"}
        typed = {key for key in options  # typer ships its own click: compare the source by name
                 if getattr(ctx.get_parameter_source(parameter.get(key, key)), "name", None) == "COMMANDLINE"}
        values = {**load_finetune_file(config), **{key: options[key] for key in typed}}
    cfg = FinetuneConfig.from_dict(values, source=str(config) if config is not None else "options")
    run_dir = out
    if run_dir is None:  # runs/x/checkpoint -> runs/x-finetune
        parent = checkpoint.resolve()
        base = parent.parent if parent.name == "checkpoint" else parent
        run_dir = base.with_name(base.name + "-finetune")
    with progress_bar() as progress:
        task = progress.add_task(f"finetune {algo}", total=cfg.updates, info="")

        def show(entry: dict) -> None:
            info = ""
            if entry.get("sample_return_mean") is not None:
                info += f"sampled {entry['sample_return_mean']:.1f}"
            if entry.get("greedy_return") is not None:
                info += f"  greedy {entry['greedy_return']:.1f}"
            progress.update(task, completed=entry["update"], info=info)

        new_checkpoint, metrics = finetune(checkpoint, run_dir, cfg, force=force, on_progress=show)
    if metrics.get("status") == "already finished":
        console.print(f"{run_dir} already finished with this config; nothing to do (use --force to redo)")
    console.print(f"checkpoint [bold]{new_checkpoint}[/]  greedy validation return "
                  f"{metrics['start_greedy_return']:.1f} -> best {metrics['best_greedy_return']:.1f} "
                  f"(update {metrics['best_update']}); curve {run_dir / 'learning_curve.csv'}")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
