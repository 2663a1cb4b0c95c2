"""The expert report (`python -m spikingmind.experts`): every expert and heuristic measured on
the expert-evaluation seeds, in worker processes, with the Zoo's results for reference."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from spikingmind.experts.registry import EXPERTS, HEURISTIC_EXPERTS, ZOO_RESULTS
from spikingmind.experts.wrappers import play_episode, policy_name

_REPORT_POLICIES = {"expert": EXPERTS, "heuristic": HEURISTIC_EXPERTS}
_worker_envs: dict[str, Any] = {}  # per process: env id -> env, reused across episodes


def _evaluate_episode(env_id: str, kind: str, seed: int) -> tuple[float, int, float]:
    """One evaluation episode of EXPERTS or HEURISTIC_EXPERTS (kind) in this process:
    (return, steps, seconds)."""
    import gymnasium as gym

    env = _worker_envs.get(env_id)
    if env is None:
        env = _worker_envs[env_id] = gym.make(env_id)
    policy = _REPORT_POLICIES[kind][env_id]
    start = time.perf_counter()
    episode_return, actions = play_episode(env, policy, seed)
    return episode_return, len(actions), time.perf_counter() - start


def evaluate_experts(env_ids: list[str] | None = None, episodes: int = 100, workers: int = 1,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, dict]:
    """Measure every expert and heuristic of `env_ids` (default all) on the first `episodes`
    expert-evaluation seeds, in `workers` processes. Returns the report: {env_id: {"expert":
    {mean, std, min, max, returns, seeds, steps, seconds, seconds_per_step, policy}, "heuristic":
    {...}, "zoo": ZOO_RESULTS[env_id]}}; seconds are summed over episodes (policy + env)."""
    from spikingmind.seeds import expert_evaluation_seeds
    from spikingmind.errors import ConfigError
    from spikingmind.parallel import check_workers, map_in_workers

    check_workers(workers)
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    env_ids = list(EXPERTS) if env_ids is None else list(env_ids)
    unknown = [env_id for env_id in env_ids if env_id not in EXPERTS]
    if unknown:
        raise ConfigError(f"no built-in expert for {', '.join(unknown)}; choose from {', '.join(EXPERTS)}")
    seeds = expert_evaluation_seeds(episodes)
    tasks = [(env_id, kind, seed) for env_id in env_ids for kind in _REPORT_POLICIES for seed in seeds]
    outcomes = np.array(map_in_workers(_evaluate_episode, tasks, workers, progress=progress))  # (tasks, 3)
    report: dict[str, dict] = {}
    for first in range(0, len(tasks), len(seeds)):  # one block of seeds per (env, kind)
        env_id, kind, _ = tasks[first]
        block = outcomes[first:first + len(seeds)]
        returns, steps, seconds = block[:, 0], block[:, 1].astype(int), block[:, 2]
        policy = _REPORT_POLICIES[kind][env_id]
        report.setdefault(env_id, {})[kind] = {
            "policy": policy_name(policy),
            "mean": float(returns.mean()), "std": float(returns.std()),
            "min": float(returns.min()), "max": float(returns.max()),
            "returns": returns.tolist(), "seeds": seeds,
            "steps": int(steps.sum()), "seconds": float(seconds.sum()),
            "seconds_per_step": float(seconds.sum() / max(int(steps.sum()), 1)),
        }
    for env_id in env_ids:
        report[env_id]["zoo"] = dict(ZOO_RESULTS[env_id])
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m spikingmind.experts`: print (and optionally write) the expert report."""
    import argparse
    import os
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from spikingmind.errors import SpikingmindError
    from spikingmind.io import atomic_write_json

    parser = argparse.ArgumentParser(prog="python -m spikingmind.experts", description=main.__doc__)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per expert (default 20)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--envs", default=",".join(EXPERTS), help="comma-separated env ids (default all)")
    parser.add_argument("--json", type=str, default=None, help="write the report here (atomically)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        env_ids = [env_id.strip() for env_id in args.envs.split(",") if env_id.strip()]
        with Progress(TextColumn("[bold]experts"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task("experts", total=2 * len(env_ids) * args.episodes)
            report = evaluate_experts(env_ids, args.episodes, args.workers,
                                      progress=lambda done, total: bar.update(task, completed=done))
    except SpikingmindError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        console.print("interrupted: workers stopped, no report written")
        return 130
    for env_id, entry in report.items():
        zoo = entry["zoo"]
        for kind in _REPORT_POLICIES:
            result = entry[kind]
            print(f"{env_id:15s} {kind:9s} {result['policy']:22s} mean {result['mean']:8.2f} ± {result['std']:6.2f}  "
                  f"min {result['min']:8.2f}  {1000 * result['seconds_per_step']:7.2f} ms/step")
        print(f"{env_id:15s} {'zoo':9s} {zoo['algo']:22s} mean {zoo['return']:8.2f} ± {zoo['std']:6.2f}")
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
