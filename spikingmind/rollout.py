"""Closed-loop control: any policy backend (PyTorch, NIR reference, ONNX Runtime, Lava)
driving gymnasium episodes through the same token windows.

A backend only implements `act(windows (B, L, F)) -> actions`; this module owns the
return-to-go bookkeeping, the history of tokens and the lockstep batching of episodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from spikingmind.data import EVAL_SEED_BASE
from spikingmind.envs import EnvSpec
from spikingmind.errors import ConfigError
from spikingmind.tokens import ACTION, Normalization, TokenLayout, step_tokens


class Policy(Protocol):
    """What a backend must provide to be driven closed loop."""

    spec: EnvSpec
    layout: TokenLayout
    norm: Normalization

    def act(self, windows: np.ndarray) -> np.ndarray:
        """windows (B, L, F) float -> actions (B,) ints or (B, act_dim) floats."""


def decode_actions(outputs: np.ndarray, discrete: bool, low=None, high=None) -> np.ndarray:
    """Decision-token outputs (B, n_out) -> env actions, per docs/SEMANTICS.md:
    argmax for discrete actions, low + (tanh(y) + 1) / 2 * (high - low) for continuous ones."""
    if discrete:
        return outputs.argmax(axis=-1)
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return (low + (np.tanh(outputs) + 1.0) / 2.0 * (high - low)).astype(np.float32)


def decode_for_env(outputs: np.ndarray, spec: EnvSpec) -> np.ndarray:
    return decode_actions(outputs, spec.discrete, spec.action_low, spec.action_high)


def policy_context(meta: dict, source: str = "metadata"):
    """(env spec, token layout, normalisation) from checkpoint/export metadata."""
    from spikingmind.envs import get_env_spec
    from spikingmind.errors import CheckpointError

    try:
        spec = get_env_spec(meta["env"]["env_id"])
        layout = TokenLayout(**{k: meta["token_layout"][k] for k in ("obs_dim", "act_dim", "discrete", "context_length")})
        norm = Normalization(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["normalization"].items()})
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{source}: incomplete spikingmind metadata ({error})") from None
    if layout.obs_dim != spec.obs_dim:
        raise CheckpointError(f"{source}: obs_dim {layout.obs_dim} does not match {spec.env_id} ({spec.obs_dim})")
    return spec, layout, norm


class SpikeTally:
    """Spike counts per layer over the decisions a policy took (for evaluate's JSON)."""

    def __init__(self) -> None:
        self.spikes: dict[str, float] = {}  # layer -> total spikes
        self.slots: dict[str, int] = {}  # layer -> neurons x T x decisions
        self.decisions = 0

    def add(self, layers: dict, decisions: int) -> None:
        """`layers`: layer name -> spike array (T, B, ...) of `decisions` decisions."""
        for name, values in layers.items():
            self.spikes[name] = self.spikes.get(name, 0.0) + float(values.sum())
            self.slots[name] = self.slots.get(name, 0) + int(np.prod(values.shape))
        self.decisions += decisions

    def stats(self) -> dict:
        """Spikes per decision (all layers) and per-layer spike rate; {} before any decision."""
        if not self.decisions:
            return {}
        return {"spikes_per_decision": sum(self.spikes.values()) / self.decisions,
                "spike_rate": {name: self.spikes[name] / self.slots[name] for name in self.spikes},
                "mean_spike_rate": sum(self.spikes.values()) / sum(self.slots.values())}


class TorchPolicy:
    """A checkpoint's PyTorch model as a policy; optionally records spikes per decision."""

    def __init__(self, ckpt, record_spikes: bool = False):
        import torch

        self.torch = torch
        self.model, self.spec, self.layout, self.norm = ckpt.model, ckpt.spec, ckpt.layout, ckpt.norm
        self.dtype = next(self.model.parameters()).dtype
        self.record_spikes = record_spikes and self.model.spiking
        self.tally = SpikeTally()

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        tokens = self.torch.as_tensor(windows, dtype=self.dtype)
        with self.torch.inference_mode():
            if not self.record_spikes:  # the decision token's outputs alone (model.decide: same values)
                return self.model.decide(tokens).double().numpy()
            record = {}
            out = self.model(tokens, record)
        self.tally.add(record, len(windows))
        return out[:, self.layout.decision_token].double().numpy()

    def act(self, windows: np.ndarray) -> np.ndarray:
        return decode_for_env(self.outputs(windows), self.spec)

    def spike_stats(self) -> dict:
        return self.tally.stats()


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


def evaluation_seeds(n_episodes: int, seed: int) -> list[int]:
    """Env seeds for evaluation: disjoint from every training seed (data.episode_seed)."""
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    return [EVAL_SEED_BASE + seed * 10_000 + i for i in range(n_episodes)]


def run_episodes(
    policy: Policy,
    seeds: list[int],
    target_return: float | None = None,
    batch: int = 32,
    on_decision: Callable[[np.ndarray], None] | None = None,
    progress: Callable[[int], None] | None = None,
    max_steps: int | None = None,
) -> EpisodeResults:
    """Run one episode per seed, `batch` envs in lockstep so the policy sees batched windows.

    Return-to-go starts at `target_return` (default: the env's) and drops by each reward,
    as in the Decision Transformer. `on_decision(windows)` sees every batch of windows.
    `max_steps` truncates every episode early (for slow backends; the env's own limit otherwise).
    """
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
    spec, layout, norm = policy.spec, policy.layout, policy.norm
    target = spec.target_return if target_return is None else float(target_return)
    k = layout.context_length
    results = EpisodeResults(seeds=list(seeds), returns=[0.0] * len(seeds), lengths=[0] * len(seeds),
                             decisions=0, policy_seconds=0.0)
    for first in range(0, len(seeds), batch):
        chunk = list(range(first, min(first + batch, len(seeds))))
        envs = [spec.make_env() for _ in chunk]
        obs = [env.reset(seed=seeds[i])[0] for env, i in zip(envs, chunk)]
        histories = [np.zeros((k, 3, layout.n_features), dtype=np.float32) for _ in chunk]  # last K steps
        returns = [0.0] * len(chunk)
        active = list(range(len(chunk)))
        t = 0
        while active:
            windows = np.empty((len(active), layout.n_tokens, layout.n_features), dtype=np.float32)
            for row, j in enumerate(active):
                current = step_tokens(layout, norm, np.asarray(obs[j], dtype=np.float32)[None], None,
                                      np.asarray([target - returns[j]]), np.asarray([t]))[0]
                history = histories[j]
                history[:-1] = history[1:]
                history[-1] = current
                windows[row] = history.reshape(-1, layout.n_features)
            if on_decision is not None:
                on_decision(windows)
            start = time.perf_counter()
            actions = policy.act(windows)
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


def record_decision_inputs(graph, episodes: int, seed: int = 0, target_return: float | None = None) -> np.ndarray:
    """Closed-loop episodes of an exported graph (reference simulator) on evaluation seeds;
    returns every decision's graph input, (N, F, L) channels first as the NIR Input node."""
    from spikingmind.export.nir import NIRReferencePolicy

    policy = NIRReferencePolicy(graph)
    windows: list[np.ndarray] = []
    run_episodes(policy, evaluation_seeds(episodes, seed), target_return, on_decision=windows.append)
    return np.concatenate(windows).transpose(0, 2, 1)
