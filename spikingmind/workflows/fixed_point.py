"""Loihi fixed point beside the float network it quantises: closed-loop returns on the same
seeds, and how often the two pick the same action on each one's recorded decisions.

`compare_fixed_point(source, ...)` is the entry point for scripts (`make results`): it runs a
.nir graph, a Lava bundle or a checkpoint on the `loihi-emulation` backend and the float
reference simulator on the same evaluation seeds. `evaluate --backend loihi-emulation` uses
`compare_closed_loop` for the `fixed_point` section of its JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikingmind.policy import Policy
from spikingmind.rollout import EpisodeResults, run_episodes
from spikingmind.seeds import evaluation_seeds


class _Recording(Policy):
    """Delegates to `policy` and keeps every window it was shown and the actions it took."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.spec, self.layout, self.norm, self.decode = policy.spec, policy.layout, policy.norm, policy.decode
        self.meta, self.backend, self.model_kind = policy.meta, policy.backend, policy.model_kind
        self.windows: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def act(self, windows: np.ndarray) -> np.ndarray:
        actions = self.policy.act(windows)
        self.windows.append(np.array(windows))
        self.actions.append(np.asarray(actions))
        return actions

    def recorded(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.windows), np.concatenate(self.actions)


def _agreement(policy: Policy, windows: np.ndarray, actions: np.ndarray, batch: int = 256) -> tuple[float, float]:
    """(share of decisions where `policy` takes the recorded action (continuous: every component
    within 1e-6), mean |action difference|) of `policy` on recorded windows."""
    mine = np.concatenate([np.asarray(policy.act(windows[i:i + batch])) for i in range(0, len(windows), batch)])
    diff = np.abs(mine.astype(np.float64) - actions.astype(np.float64)).reshape(len(actions), -1)
    return float(np.mean(np.all(diff <= 1e-6, axis=1))), float(diff.mean())


def _stats(policy: Policy) -> dict:
    return {**policy.spike_stats(), **policy.decision_stats()}


@dataclass
class FixedPointComparison:
    """Closed-loop runs of a fixed-point policy and its float counterpart on the same seeds.

    agreement_on_fixed: share of the fixed run's decisions on which the float policy takes the
    fixed policy's action; agreement_on_float: the converse on the float run's decisions
    (continuous actions: every component within 1e-6; `*_action_difference`: mean |a - b|).
    fixed_stats / float_stats: each policy's spike and timing stats right after its own run.
    """

    fixed_run: EpisodeResults
    float_run: EpisodeResults
    fixed_backend: str
    float_backend: str
    agreement_on_fixed: float
    agreement_on_float: float
    fixed_action_difference: float
    float_action_difference: float
    fixed_stats: dict = field(default_factory=dict)
    float_stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        fixed, flt = self.fixed_run.summary(), self.float_run.summary()
        return {
            "fixed_backend": self.fixed_backend, "float_backend": self.float_backend, "seeds": fixed["seeds"],
            "fixed_returns": fixed["returns"], "float_returns": flt["returns"],
            "fixed_mean_return": fixed["mean_return"], "float_mean_return": flt["mean_return"],
            "fixed_std_return": fixed["std_return"], "float_std_return": flt["std_return"],
            "return_gap": fixed["mean_return"] - flt["mean_return"],
            "action_agreement": {"on_fixed_decisions": self.agreement_on_fixed,
                                 "on_float_decisions": self.agreement_on_float,
                                 "fixed_decisions": fixed["decisions"], "float_decisions": flt["decisions"],
                                 "mean_abs_difference_on_fixed_decisions": self.fixed_action_difference,
                                 "mean_abs_difference_on_float_decisions": self.float_action_difference},
            "ms_per_decision": {"fixed": fixed["ms_per_decision_batch"], "float": flt["ms_per_decision_batch"]},
            "mean_spike_rate": {"fixed": self.fixed_stats.get("mean_spike_rate"),
                                "float": self.float_stats.get("mean_spike_rate")},
        }


def compare_closed_loop(fixed: Policy, reference: Policy, seeds: list[int], target_return: float | None = None,
                        max_steps: int | None = None,
                        progress: Callable[[int], None] | None = None) -> FixedPointComparison:
    """Run `fixed` and `reference` closed loop on `seeds` (same target return, same truncation),
    then each on the other's recorded decisions. `progress(n)` sees the fixed run's episodes."""
    fixed_run, reference_run = _Recording(fixed), _Recording(reference)
    fixed_results = run_episodes(fixed_run, seeds, target_return, progress=progress, max_steps=max_steps)
    fixed_stats = _stats(fixed)
    float_results = run_episodes(reference_run, seeds, target_return, max_steps=max_steps)
    float_stats = _stats(reference)
    on_fixed, fixed_difference = _agreement(reference, *fixed_run.recorded())
    on_float, float_difference = _agreement(fixed, *reference_run.recorded())
    return FixedPointComparison(fixed_results, float_results, fixed.backend, reference.backend, on_fixed, on_float,
                                fixed_difference, float_difference, fixed_stats, float_stats)


def compare_fixed_point(source: str | Path, episodes: int = 20, seed: int = 0, target_return: float | None = None,
                        max_steps: int | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Returns in Loihi fixed point and in float, side by side, on `episodes` evaluation seeds.

    `source`: a .nir graph, a Lava bundle folder or a checkpoint folder (exported in memory).
    Fixed point: the `loihi-emulation` backend (bit-exact against Lava's fixed_pt); float: the
    NumPy reference simulator on the same graph. Returns `FixedPointComparison.to_json()` plus
    env, source, target return and the fixed policy's run stats (spike rates, emulation time,
    fixed-point limits hit) under "fixed_stats" and the reference's under "float_stats".
    """
    from spikingmind.workflows.evaluate import check_unseen, load_policy

    seeds = evaluation_seeds(episodes, seed)
    with load_policy(source, "loihi-emulation") as fixed:
        check_unseen(fixed, seeds)
        reference = fixed.float_counterpart()
        with reference:
            comparison = compare_closed_loop(fixed, reference, seeds, target_return, max_steps, progress)
        target = fixed.spec.target_return if target_return is None else float(target_return)
        return {"env_id": fixed.spec.env_id, "source": str(source), "target_return": target, "seed": seed,
                "max_steps": max_steps, **comparison.to_json(), "fixed_stats": comparison.fixed_stats,
                "float_stats": comparison.float_stats}
