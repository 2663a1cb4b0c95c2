"""Can an env's expert be cloned at all? Behaviour cloning and DAgger with a plain MLP; writes
benchmarks/out/clonability-<env>.json.

    python benchmarks/clonability.py --env Acrobot-v1 [--episodes 200] [--dagger-iterations 3] [--heuristic]
        [--width 128] [--steps 6000] [--batch 128]

The spiking DT imitates the expert's demonstrations; when it trails the expert, is it the
model, or the expert's actions? This fits the simplest imitator there is, an MLP from the
observation to the action (2 x `--width` GELU, default 128; cross-entropy for discrete actions, squared error on
the action scaled to [-1, 1] for continuous ones), on `--episodes` expert episodes, and reports:

1. how well it fits them: the share of the demonstrations' actions it reproduces (discrete) or
   its mean squared error on the scaled action (continuous);
2. its closed-loop return on `--eval-episodes` evaluation seeds of `--seed` (the seeds
   `spikingmind evaluate --seed` uses), beside the expert's own on the same seeds;
3. DAgger (Ross et al., 2011): each iteration the current MLP plays `--dagger-episodes` new
   episodes, the expert labels every state it visits (a planner replans from states off its
   plan), the labelled states join the data, and the MLP is refit from scratch on all of them.

A close fit that still loses return closed loop is compounding error; if DAgger, which trains
on the imitator's own states, does not recover it either, the expert's actions are not a
function of the observation that such a model learns closely enough. `--heuristic` clones the
env's heuristic instead (`spikingmind.experts.HEURISTIC_EXPERTS`, a function of the observation
by construction): what that clone loses closed loop is how hard the env punishes a clone's
few wrong actions, whatever the expert. Everything is seeded: a rerun on the same machine prints the
same numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from spikingmind.envs import get_env_spec
from spikingmind.errors import ConfigError, DivergedError, exit_on_error
from spikingmind.experts.registry import HEURISTIC_EXPERTS
from spikingmind.experts.wrappers import play_episode, policy_name, reset_policy
from spikingmind.io import atomic_write_json
from spikingmind.seeds import EPISODES_PER_DATASET_SEED, episode_seed, evaluation_seeds

#: episode indices of DAgger iteration i start at i * this (within one dataset seed's range)
_DAGGER_INDEX_STRIDE = 10_000


class Imitator:
    """The MLP, its fit and its action; a continuous action box maps to [-1, 1] (`low`, `half`)."""

    def __init__(self, spec, seed: int, width: int = 128):
        import torch

        self.torch, self.spec, self.seed, self.width = torch, spec, seed, width
        if spec.discrete:
            self.low = self.half = None
        else:
            low, high = np.asarray(spec.action_low, np.float64), np.asarray(spec.action_high, np.float64)
            self.low, self.half = low, (high - low) / 2.0
        self.net = None

    def fit(self, observations: np.ndarray, actions: np.ndarray, steps: int, batch: int = 128) -> float:
        """Refit from scratch (seeded); returns the fit on all the data: action accuracy or scaled MSE."""
        torch = self.torch
        torch.manual_seed(self.seed)
        n_out = self.spec.act_dim
        self.net = torch.nn.Sequential(torch.nn.Linear(self.spec.obs_dim, self.width), torch.nn.GELU(),
                                       torch.nn.Linear(self.width, self.width), torch.nn.GELU(),
                                       torch.nn.Linear(self.width, n_out))
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=1e-3)
        x = torch.as_tensor(observations, dtype=torch.float32)
        y = torch.as_tensor(actions if self.spec.discrete else self._scaled(actions), dtype=torch.float32)
        if self.spec.discrete:
            y = y.long()
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(steps):
            rows = torch.randint(0, len(x), (batch,), generator=generator)
            out = self.net(x[rows])
            loss = (torch.nn.functional.cross_entropy(out, y[rows]) if self.spec.discrete
                    else ((torch.tanh(out) - y[rows]) ** 2).mean())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            out = self.net(x)
            if not torch.isfinite(out).all():
                raise DivergedError(f"the imitator's fit diverged (non-finite outputs after {steps} steps)")
            if self.spec.discrete:
                return float((out.argmax(1) == y).float().mean())
            return float(((torch.tanh(out) - y) ** 2).mean())

    def _scaled(self, actions: np.ndarray) -> np.ndarray:
        return (np.asarray(actions, np.float64).reshape(-1, self.spec.act_dim) - self.low) / self.half - 1.0

    def __call__(self, obs: np.ndarray):
        with self.torch.no_grad():
            out = self.net(self.torch.as_tensor(np.asarray(obs, np.float32)[None]))[0]
        if self.spec.discrete:
            return int(out.argmax())
        return (self.low + (np.tanh(out.double().numpy()) + 1.0) * self.half).astype(np.float32)


def play(env, actor, expert, seed: int, observations: list, labels: list) -> float:
    """One episode of `actor` from `seed`; appends every visited observation and `expert`'s action
    there (the expert is called on every state, so a planner sees the states it must label)."""
    reset_policy(expert)
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        label = expert(obs)
        observations.append(np.asarray(obs, np.float32))
        labels.append(label)
        action = label if actor is expert else actor(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


def closed_loop(env, actor, seeds: list[int]) -> list[float]:
    """The return of `actor` (reset first, if it keeps a plan) from each seed."""
    return [play_episode(env, actor, seed)[0] for seed in seeds]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Acrobot-v1")
    parser.add_argument("--episodes", type=int, default=200, help="expert demonstrations")
    parser.add_argument("--steps", type=int, default=6000, help="gradient steps per fit")
    parser.add_argument("--batch", type=int, default=128, help="observations per gradient step")
    parser.add_argument("--width", type=int, default=128, help="units in each of the MLP's 2 hidden layers")
    parser.add_argument("--dagger-iterations", type=int, default=3)
    parser.add_argument("--dagger-episodes", type=int, default=100, help="episodes the MLP plays per iteration")
    parser.add_argument("--eval-episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="data, fit and evaluation seeds")
    parser.add_argument("--heuristic", action="store_true", help="clone the env's heuristic, not its expert")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/out/clonability-<env>.json")
    args = parser.parse_args(argv)
    for name in ("episodes", "steps", "batch", "width", "dagger_episodes", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.dagger_iterations < EPISODES_PER_DATASET_SEED // _DAGGER_INDEX_STRIDE:
        parser.error(f"--dagger-iterations must be in 0..{EPISODES_PER_DATASET_SEED // _DAGGER_INDEX_STRIDE - 1}")
    if max(args.episodes, args.dagger_episodes) > _DAGGER_INDEX_STRIDE:
        parser.error(f"--episodes and --dagger-episodes must be <= {_DAGGER_INDEX_STRIDE}")
    spec = get_env_spec(args.env)
    expert = HEURISTIC_EXPERTS.get(spec.env_id) if args.heuristic else spec.expert
    if expert is None:
        what = "heuristic (spikingmind.experts.HEURISTIC_EXPERTS)" if args.heuristic else "expert (EnvSpec.expert)"
        raise ConfigError(f"{spec.env_id} has no {what}: nothing to clone")
    env, imitator = spec.make_env(), Imitator(spec, args.seed, args.width)
    eval_seeds = evaluation_seeds(args.eval_episodes, args.seed)
    observations: list = []
    labels: list = []
    start = time.perf_counter()
    demo_returns = [play(env, expert, expert, episode_seed(args.seed, i), observations, labels)
                    for i in range(args.episodes)]
    expert_eval = closed_loop(env, expert, eval_seeds)
    print(f"{spec.env_id}: {args.episodes} episodes of {policy_name(expert)} ({len(observations)} steps, "
          f"mean return {np.mean(demo_returns):.1f}); it gets on the {len(eval_seeds)} evaluation seeds: "
          f"{np.mean(expert_eval):.1f} ± {np.std(expert_eval):.1f}", flush=True)
    fit_name = "action accuracy" if spec.discrete else "scaled-action MSE"
    rounds = []
    for iteration in range(args.dagger_iterations + 1):
        played = None
        if iteration:
            first = iteration * _DAGGER_INDEX_STRIDE
            played = [play(env, imitator, expert, episode_seed(args.seed, first + i), observations, labels)
                      for i in range(args.dagger_episodes)]
        fit = imitator.fit(np.asarray(observations), np.asarray(labels), args.steps, args.batch)
        returns = closed_loop(env, imitator, eval_seeds)
        rounds.append({"iteration": iteration, "steps_of_data": len(observations), "fit": fit,
                       "returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
                       "mlp_return_while_labelled": None if played is None else float(np.mean(played))})
        what = "behaviour cloning" if iteration == 0 else f"DAgger iteration {iteration}"
        print(f"{what}: {len(observations)} labelled steps, {fit_name} {fit:.3f}, closed loop "
              f"{np.mean(returns):.1f} ± {np.std(returns):.1f}", flush=True)
    report = {"env_id": spec.env_id, "expert": {"policy": policy_name(expert),
                                                "demonstration_returns": demo_returns,
                                                "eval_returns": expert_eval, "eval_mean": float(np.mean(expert_eval))},
              "fit_metric": fit_name, "rounds": rounds, "eval_seeds": eval_seeds, "args": vars(args) | {"out": None},
              "seconds": time.perf_counter() - start,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    suffix = "-heuristic" if args.heuristic else ""
    out = args.out or Path("benchmarks/out") / f"clonability-{spec.env_id}{suffix}.json"
    atomic_write_json(out, report)
    print(f"wrote {out}")
    env.close()
    return report


if __name__ == "__main__":
    exit_on_error(main)
