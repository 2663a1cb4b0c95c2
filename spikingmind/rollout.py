"""Closed-loop control: any policy backend (`spikingmind.policy.Policy`: PyTorch, NIR reference,
ONNX Runtime, the event runtime, Lava) driving gymnasium episodes through the same token windows.

A backend only implements `act(windows (B, L, F)) -> actions`; this module owns the
return-to-go bookkeeping, the history of tokens and the lockstep batching of episodes. A
streaming backend (`policy.streaming`) gets no windows: `begin(batch)` at the start of a
batch of episodes, then at every step `step(tokens, rows)` with only the tokens that arrived
since its last decision (the previous action, the new return-to-go and state; the first step
has no action), for the rows of the batch still running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from spikingmind.errors import ConfigError
from spikingmind.policy import Policy
from spikingmind.seeds import evaluation_seeds
from spikingmind.tokens import ACTION, step_tokens
from spikingmind.validation import finite_number


@dataclass
class EpisodeResults:
    seeds: list[int]
    returns: list[float]
    lengths: list[int]
    decisions: int
    policy_seconds: float
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        returns = np.asarray(self.returns, dtype=np.float64)
        return {
            "episodes": len(self.returns),
            "mean_return": float(returns.mean()) if len(returns) else float("nan"),
            "std_return": float(returns.std()) if len(returns) else float("nan"),
            "min_return": float(returns.min()) if len(returns) else float("nan"),
            "max_return": float(returns.max()) if len(returns) else float("nan"),
            "returns": [float(r) for r in returns],
            "lengths": self.lengths,
            "seeds": self.seeds,
            "decisions": self.decisions,
            "ms_per_decision_batch": 1000.0 * self.policy_seconds / max(self.decisions, 1),
        }


def run_episodes(
    policy: Policy,
    seeds: list[int],
    target_return: float | Sequence[float] | None = None,
    batch: int = 32,
    on_decision: Callable[[np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
    max_steps: int | None = None,
) -> EpisodeResults:
    """Run one episode per seed, `batch` envs in lockstep so the policy sees batched windows.

    Return-to-go starts at `target_return` (default: the env's; a sequence: one per seed) and
    drops by each reward, as in the Decision Transformer. `on_decision(windows)` sees every batch of windows.
    `max_steps` truncates every episode early (for slow backends; the env's own limit otherwise).
    A streaming policy's `on_decision` sees the new tokens of each step, (B, n, F).
    """
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
    spec, layout, norm = policy.spec, policy.layout, policy.norm
    if spec is None:
        raise ConfigError(f"{type(policy).__name__}: its metadata names no environment ('env'), so it cannot "
                          "run closed loop; export the policy from a checkpoint")
    targets = _episode_targets(spec.target_return if target_return is None else target_return, len(seeds))
    streaming = getattr(policy, "streaming", False)  # a duck-typed policy with act() alone gets windows
    k = layout.context_length
    results = EpisodeResults(seeds=list(seeds), returns=[0.0] * len(seeds), lengths=[0] * len(seeds),
                             decisions=0, policy_seconds=0.0)
    for first in range(0, len(seeds), batch):
        chunk = list(range(first, min(first + batch, len(seeds))))
        envs = [spec.make_env() for _ in chunk]
        obs = [env.reset(seed=seeds[i])[0] for env, i in zip(envs, chunk)]
        # the last K steps (a streaming policy reads the last two: the previous action, the new step)
        histories = [np.zeros((max(k, 2), 3, layout.n_features), dtype=np.float32) for _ in chunk]
        returns = [0.0] * len(chunk)
        active = list(range(len(chunk)))
        t = 0
        if streaming:
            policy.begin(len(chunk))
        while active:
            for j in active:
                current = step_tokens(layout, norm, np.asarray(obs[j], dtype=np.float32)[None], None,
                                      np.asarray([targets[chunk[j]] - returns[j]]), np.asarray([t]))[0]
                history = histories[j]
                history[:-1] = history[1:]
                history[-1] = current
            if streaming:  # only what arrived since the last decision: the action of t - 1, rtg and state of t
                new = slice(-3, -1) if t == 0 else slice(-4, -1)
                windows = np.stack([histories[j][-2:].reshape(-1, layout.n_features)[new] for j in active])
            else:
                windows = np.stack([histories[j][-k:].reshape(-1, layout.n_features) for j in active])
            if on_decision is not None:
                on_decision(windows)
            start = time.perf_counter()
            actions = policy.step(windows, np.asarray(active)) if streaming else policy.act(windows)
            results.policy_seconds += time.perf_counter() - start
            results.decisions += len(active)
            still = []
            for row, j in enumerate(active):
                action = actions[row]
                action = int(action) if spec.discrete else np.asarray(action, dtype=np.float32).reshape(spec.act_dim)
                history = histories[j]
                if spec.discrete:
                    history[-1, ACTION, layout.act_slice.start + action] = 1.0
                else:
                    history[-1, ACTION, layout.act_slice] = action
                obs[j], reward, terminated, truncated, _ = envs[j].step(action)
                returns[j] += float(reward)
                if terminated or truncated or (max_steps is not None and t + 1 >= max_steps):
                    results.returns[chunk[j]] = returns[j]
                    results.lengths[chunk[j]] = t + 1
                    if progress is not None:
                        progress(1)
                else:
                    still.append(j)
            active = still
            t += 1
        for env in envs:
            env.close()
    return results


def _episode_targets(target_return: float | Sequence[float], n_episodes: int) -> list[float]:
    """The starting return-to-go of each of `n_episodes` episodes: one number for all, or one each."""
    if np.ndim(target_return) == 0:
        return [finite_number(target_return, "--target-return")] * n_episodes
    targets = [finite_number(value, f"--target-return[{i}]") for i, value in enumerate(target_return)]
    if len(targets) != n_episodes:
        raise ConfigError(f"--target-return: {len(targets)} targets for {n_episodes} episodes (one per seed)")
    return targets


def record_decision_inputs(policy: Policy, episodes: int, seed: int = 0,
                           target_return: float | None = None) -> np.ndarray:
    """Closed-loop episodes of `policy` on evaluation seeds; returns every decision's graph
    input, (N, F, L) channels first as the NIR Input node (what energy counts and the Lava
    checks run on)."""
    windows: list[np.ndarray] = []
    if getattr(policy, "streaming", False):
        raise ConfigError(f"{type(policy).__name__} streams: its decisions are not windows (record them with "
                          "run_episodes' on_decision)")
    run_episodes(policy, evaluation_seeds(episodes, seed), target_return, on_decision=windows.append)
    return np.concatenate(windows).transpose(0, 2, 1)
