"""What "equals PyTorch" means for a backend of the spiking DT, and the windows it is checked on.

A backend that computes in another order than PyTorch (ONNX Runtime's GEMMs, the event-driven
runtime's sums, BatchNorm folded in float64 then cast) can flip a spike wherever a membrane
lands within float32 rounding of its threshold. So the criteria are statistical, measured on
the same 70 token windows for every backend (`snn_verification_windows`): outputs within
SNN_OUTPUT_TOLERANCE on at least SNN_MIN_WINDOWS_WITHIN of the windows, spike slots that
differ at most SNN_MAX_SPIKE_FLIPS (where the backend exposes its spikes), and for discrete
actions the same argmax action on every window. A backend that exposes its spikes (ONNX)
is held to more: every window in which no spike differs must have its outputs within
SNN_OUTPUT_TOLERANCE (only a flip may move an output), and at least SNN_MIN_FLIP_FREE_WINDOWS
of the windows must be flip-free, so that check is not empty. (A large model flips a spike
in more windows: CartPole's trained K = 20 DT, 22.6 M spike slots, flipped 584 of them in
7 of 70 windows in float32, and its other 63 windows agreed to 7e-7.) The ANN twin has no
thresholds: its ONNX graph must stay within ANN_OUTPUT_TOLERANCE everywhere.
"""

from __future__ import annotations

import numpy as np

ANN_OUTPUT_TOLERANCE = 1e-5  # max |backend - PyTorch|, relative to the output scale where that exceeds 1
SNN_OUTPUT_TOLERANCE = 1e-4  # |backend - PyTorch| per window, relative to the output scale where that exceeds 1
# share of verification windows (70) whose outputs must be within SNN_OUTPUT_TOLERANCE: one flipped
# readout spike moves an output by |w| / T (~0.03), so 0.99 would forbid a single float32 flip
SNN_MIN_WINDOWS_WITHIN = 0.95
SNN_MAX_SPIKE_FLIPS = 1e-3  # largest share of spike slots allowed to differ from PyTorch's
SNN_MIN_FLIP_FREE_WINDOWS = 0.5  # backends exposing spikes: share of windows with no spike flip at all


def sample_windows(layout, norm, spec, n_windows: int, seed: int = 0) -> np.ndarray:
    """Realistic token windows (n, L, F) float32 without running the env: observations drawn
    around the normalisation statistics, valid actions, falling returns-to-go, left padding."""
    from spikingmind.tokens import step_tokens, window_indices, windows

    rng = np.random.default_rng(seed)
    k = layout.context_length
    steps = n_windows * k
    observations = rng.normal(np.asarray(norm.obs_mean), np.asarray(norm.obs_std), (steps, layout.obs_dim))
    if layout.discrete:
        actions = rng.integers(0, layout.act_dim, steps)
    else:
        low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
        actions = rng.uniform(low, high, (steps, layout.act_dim))
    timesteps = np.tile(np.arange(k), n_windows)
    returns_to_go = spec.target_return * (1.0 - timesteps / norm.max_episode_steps)
    rows = step_tokens(layout, norm, observations.astype(np.float32), actions, returns_to_go, timesteps)
    starts = np.arange(n_windows) * k
    ends = starts + rng.integers(0, k, n_windows)  # window i holds 1..K steps of its episode
    index, valid = window_indices(ends, starts, k)
    return windows(rows, index, valid).astype(np.float32)


def snn_verification_windows(ckpt) -> dict[str, list[np.ndarray]]:
    """The 70 token windows a spiking DT backend is checked on against PyTorch: random ones
    (batch 1 and 4) and realistic ones (`sample_windows`, batch 1 and 64)."""
    rng = np.random.default_rng(0)
    layout = ckpt.layout
    return {
        "random": [rng.normal(size=(1, layout.n_tokens, layout.n_features)).astype(np.float32),
                   rng.normal(size=(4, layout.n_tokens, layout.n_features)).astype(np.float32)],
        "realistic": [sample_windows(layout, ckpt.norm, ckpt.spec, 1, seed=1),
                      sample_windows(layout, ckpt.norm, ckpt.spec, 64, seed=2)],
    }


def snn_outputs_within(actual: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window (axis 0): the largest |actual - expected|, and whether it is within
    SNN_OUTPUT_TOLERANCE relative to the output scale where that exceeds 1."""
    axes = tuple(range(1, expected.ndim))
    error = np.abs(actual - expected).max(axis=axes)
    return error, error <= SNN_OUTPUT_TOLERANCE * np.maximum(1.0, np.abs(expected).max(axis=axes))
