"""How much of a policy's shortfall a better target return could recover; writes
benchmarks/out/target_ceiling.json.

    python benchmarks/target_ceiling.py runs/results/pendulum/finetune/snn/seed*/checkpoint [--episodes 20]

A Decision Transformer is asked for one return at the start of every episode (the env's
`target_return`). Where the best achievable return depends on the start state (Pendulum-v1:
0 from upright, about -250 from hanging still), one number asks too much of some starts and
too little of others. This measures each checkpoint on the evaluation seeds of its training
seed (what `make results` evaluates it on; `--seed` picks other ones), as `spikingmind
evaluate` runs it:

1. at the env's default target;
2. with each episode's target set to the return the env's expert gets from that same start
   (the oracle: it plays the expert first; no deployed policy knows this number).

The gap between 1 and the expert's own returns is the shortfall. What 2 recovers of it
indicates what a rule that picks the target from the start state could gain: measured on
these seeds, not a bound. The last line is the mean over the checkpoints given, e.g. one
model's training seeds.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np

from spikingmind.errors import ConfigError, exit_on_error
from spikingmind.experts.wrappers import play_episode
from spikingmind.io import atomic_write_json
from spikingmind.policy import load_policy
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds


def expert_returns(spec, seeds: list[int]) -> list[float]:
    """The return of `spec`'s expert from each seed's start."""
    if spec.expert is None:
        raise ConfigError(f"{spec.env_id} has no expert (EnvSpec.expert): nothing to take the oracle targets from")
    env = spec.make_env()
    try:
        return [play_episode(env, spec.expert, seed)[0] for seed in seeds]
    finally:
        env.close()


def _stats(returns: list[float]) -> dict:
    return {"returns": [float(r) for r in returns], "mean": float(np.mean(returns)), "std": float(np.std(returns))}


def measure(checkpoint: Path, episodes: int, seed: int | None = None, experts: dict | None = None) -> dict:
    """One checkpoint: the expert's, the default target's and the oracle targets' returns on the
    same seeds (those of `seed`, default the checkpoint's training seed). `experts` caches the
    expert's returns per (env, seed) across checkpoints."""
    policy = load_policy(checkpoint)  # as `spikingmind evaluate` runs it: its default-target returns are evaluate's
    spec = policy.spec
    seed = int(policy.meta.get("train", {}).get("seed", 0)) if seed is None else seed
    seeds = evaluation_seeds(episodes, seed)
    experts = {} if experts is None else experts
    key = (spec.env_id, seed, episodes)
    if key not in experts:
        experts[key] = expert_returns(spec, seeds)
    expert = experts[key]
    default = run_episodes(policy, seeds).returns
    oracle = run_episodes(policy, seeds, target_return=expert).returns
    shortfall = float(np.mean(expert) - np.mean(default))
    return {"checkpoint": str(checkpoint), "env_id": spec.env_id, "model": policy.model_kind,
            "seed": seed, "seeds": seeds, "expert": _stats(expert),
            "default_target": {"target": float(spec.target_return), **_stats(default)},
            "oracle_targets": _stats(oracle),
            "shortfall": shortfall,
            "recovered_by_oracle": float(np.mean(oracle) - np.mean(default))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint folders")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None,
                        help="evaluation seeds of this training seed (default: each checkpoint's own)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/target_ceiling.json"))
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    experts: dict = {}
    rows = []
    for checkpoint in args.checkpoints:
        row = measure(checkpoint, args.episodes, args.seed, experts)
        rows.append(row)
        print(f"{checkpoint} ({row['env_id']}, {row['model']}): expert {row['expert']['mean']:.1f}; "
              f"default target {row['default_target']['target']:g}: {row['default_target']['mean']:.1f} ± "
              f"{row['default_target']['std']:.1f}; the expert's own return as each episode's target: "
              f"{row['oracle_targets']['mean']:.1f} ± {row['oracle_targets']['std']:.1f} "
              f"(recovers {row['recovered_by_oracle']:+.1f} of a {row['shortfall']:.1f} shortfall)")
    mean = {name: float(np.mean([row[name]["mean"] for row in rows]))
            for name in ("expert", "default_target", "oracle_targets")}
    print(f"mean over the {len(rows)} checkpoint(s): expert {mean['expert']:.1f}, default target "
          f"{mean['default_target']:.1f}, the expert's return as target {mean['oracle_targets']:.1f}")
    report = {"episodes": args.episodes, "seed": args.seed, "results": rows, "mean_over_checkpoints": mean,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    exit_on_error(main)
