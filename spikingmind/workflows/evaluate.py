"""Evaluate any trained or exported policy closed loop, on any backend of the registry
(`spikingmind.export.BACKENDS`); the backend follows from the source when none is named."""

from __future__ import annotations

from pathlib import Path

from spikingmind.errors import ConfigError, SpikingmindError
from spikingmind.export import BACKENDS, SOURCES, load_backend, source_kind
from spikingmind.policy import Policy
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds
from spikingmind.workflows.fixed_point import compare_closed_loop


def load_policy(source: str | Path, backend: str | None = None, fixed_point: bool = False) -> Policy:
    """The policy of `source` (checkpoint folder, .nir, .onnx or Lava bundle) on `backend`
    (a name in BACKENDS; None: the source's default). ConfigError naming what does not fit."""
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}")
    kind = source_kind(path)
    if kind is None:
        raise ConfigError(f"{path}: not a checkpoint folder, .nir, .onnx or Lava bundle")
    name = backend or SOURCES[kind]
    if kind not in BACKENDS[name].sources:
        raise ConfigError(f"--backend {name} runs {BACKENDS[name].takes}, not {path}")
    return load_backend(name)(path, fixed_point=fixed_point)


def evaluate(source, episodes: int = 20, seed: int = 0, target_return: float | None = None,
             backend: str | None = None, fixed_point: bool = False, progress=None, policy: Policy | None = None,
             max_steps: int | None = None) -> dict:
    """Closed-loop returns of a policy on evaluation seeds (disjoint from its training data).

    `policy` is an already loaded policy of `source` (`load_policy`); it is closed at the end.
    A fixed-point backend (`loihi-emulation`) also runs the float network it quantises on the
    same seeds: the result's "fixed_point" section (`workflows.fixed_point.compare_closed_loop`)
    holds both returns and the action agreement; the top level stays the fixed point's own.
    """
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    policy = policy or load_policy(source, backend, fixed_point)
    try:
        seeds = evaluation_seeds(episodes, seed)
        check_unseen(policy, seeds)
        float_policy = policy.float_counterpart()
        if float_policy is None:
            results = run_episodes(policy, seeds, target_return, progress=progress, max_steps=max_steps)
            stats = {**policy.spike_stats(), **policy.decision_stats()}  # spikes (PyTorch, NIR), timing (Lava)
        else:  # a fixed-point backend: its float network on the same seeds, side by side
            with float_policy:
                comparison = compare_closed_loop(policy, float_policy, seeds, target_return, max_steps, progress)
            results, stats = comparison.fixed_run, comparison.fixed_stats
        target = policy.spec.target_return if target_return is None else float(target_return)
        out = {"env_id": policy.spec.env_id, "model": policy.model_kind, "backend": policy.backend,
               "source": str(source), "target_return": target, "seed": seed, "max_steps": max_steps,
               **results.summary()}
        if policy.verification is not None:  # a backend checked against PyTorch when it was built (event)
            out["verification"] = policy.verification
        out.update(stats)
        if float_policy is not None:
            out["fixed_point"] = comparison.to_json()
    finally:
        policy.close()
    return out


def check_unseen(policy: Policy, seeds: list[int]) -> None:
    """SpikingmindError when evaluation `seeds` overlap the policy's training episodes."""
    if set(policy.dataset.get("episode_seeds", [])) & set(seeds):
        raise SpikingmindError("evaluation seeds overlap the training data's episode seeds")
