"""Decision Transformer token layout: the one place that turns episodes into model inputs.

A window of K environment steps becomes L = 3K tokens (return-to-go, state, action per
step), each a vector of `n_features` channels (see docs/SEMANTICS.md for the table).
Training and closed-loop control both go through `step_tokens` + `windows`, so the model
sees exactly the same features in both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TOKENS_PER_STEP = 3
RTG, STATE, ACTION = 0, 1, 2


def window_length(context_length: int) -> int:
    """L, the tokens of a window of `context_length` environment steps (three per step)."""
    return TOKENS_PER_STEP * context_length


def decision_token_index(n_tokens: int) -> int:
    """The last state token of a window of `n_tokens` tokens: its output decodes the next action."""
    return n_tokens - TOKENS_PER_STEP + STATE


@dataclass(frozen=True)
class TokenLayout:
    """Channel layout of one token. Shapes: window (L, n_features), L = 3 * context_length."""

    obs_dim: int
    act_dim: int
    discrete: bool
    context_length: int

    @property
    def n_tokens(self) -> int:
        return window_length(self.context_length)

    @property
    def obs_slice(self) -> slice:
        return slice(1, 1 + self.obs_dim)

    @property
    def act_slice(self) -> slice:
        return slice(self.obs_slice.stop, self.obs_slice.stop + self.act_dim)

    @property
    def type_slice(self) -> slice:
        return slice(self.act_slice.stop, self.act_slice.stop + TOKENS_PER_STEP)

    @property
    def time_channel(self) -> int:
        return self.type_slice.stop

    @property
    def n_features(self) -> int:
        return self.time_channel + 1

    @property
    def decision_token(self) -> int:
        """Index of the last state token, whose output decodes the next action."""
        return decision_token_index(self.n_tokens)

    def describe(self) -> dict:
        """JSON-able description written into checkpoints and exports."""
        return {
            **asdict(self),
            "order": ["return_to_go", "state", "action"],
            "return_to_go_encoding": "return_gain * sign(R) * log1p(|R|) / log1p(return_scale)",
            "return_to_go_on_tokens": ["return_to_go", "state"],
            "n_tokens": self.n_tokens,
            "n_features": self.n_features,
            "channels": {
                "return_to_go": 0,
                "observation": [self.obs_slice.start, self.obs_slice.stop],
                "action": [self.act_slice.start, self.act_slice.stop],
                "token_type": [self.type_slice.start, self.type_slice.stop],
                "timestep": self.time_channel,
            },
            "decision_token": self.decision_token,
        }


@dataclass(frozen=True)
class Normalization:
    """Input scaling constants, stored with every checkpoint and export.

    `return_gain` multiplies the return-to-go feature; checkpoints and exports written
    before it existed used 1.0, which is its default when they are read back.
    """

    obs_mean: tuple[float, ...]
    obs_std: tuple[float, ...]
    return_scale: float
    max_episode_steps: int
    return_gain: float = 1.0

    @classmethod
    def from_observations(cls, observations: np.ndarray, return_scale: float, max_episode_steps: int,
                          return_gain: float = 1.0) -> "Normalization":
        mean = observations.mean(axis=0)
        std = observations.std(axis=0) + 1e-6
        return cls(tuple(map(float, mean)), tuple(map(float, std)), float(return_scale), int(max_episode_steps),
                   float(return_gain))


def encode_return(returns_to_go, return_scale: float, gain: float = 1.0) -> np.ndarray:
    """Return-to-go feature: gain * sign(R) log1p(|R|) / log1p(scale).

    Logarithmic so that the small returns-to-go near the end of a requested return (where
    behaviour must change) stay distinguishable; `gain` at R = return_scale. The gain sets
    how strongly the feature drives the first spiking layer: the standardised observations
    span a few units, and a return-to-go confined to [-1, 1] barely moved the spiking DT's
    behaviour (EnvSpec.return_gain says what was measured; train.return_gain overrides it).
    """
    rtg = np.asarray(returns_to_go, dtype=np.float64)
    return float(gain) * np.sign(rtg) * np.log1p(np.abs(rtg)) / np.log1p(return_scale)


def step_tokens(
    layout: TokenLayout,
    norm: Normalization,
    observations: np.ndarray,
    actions: np.ndarray | None,
    returns_to_go: np.ndarray,
    timesteps: np.ndarray,
) -> np.ndarray:
    """Feature rows of the three tokens of each step: (n, 3, n_features) float32.

    observations (n, obs_dim); actions (n,) ints or (n, act_dim) floats, or None (unknown);
    returns_to_go (n,) in return units; timesteps (n,) step index within the episode.
    """
    n = len(observations)
    rows = np.zeros((n, TOKENS_PER_STEP, layout.n_features), dtype=np.float32)
    # The return-to-go sits on its own token and is repeated on the state token, whose output
    # decodes the action: a spiking readout then needs no attention hop to condition on it.
    rows[:, RTG, 0] = rows[:, STATE, 0] = encode_return(returns_to_go, norm.return_scale, norm.return_gain)
    rows[:, STATE, layout.obs_slice] = (observations - np.asarray(norm.obs_mean)) / np.asarray(norm.obs_std)
    if actions is not None:
        if layout.discrete:
            rows[np.arange(n), ACTION, layout.act_slice.start + np.asarray(actions, dtype=np.int64)] = 1.0
        else:
            rows[:, ACTION, layout.act_slice] = np.asarray(actions, dtype=np.float32).reshape(n, layout.act_dim)
    for kind in (RTG, STATE, ACTION):
        rows[:, kind, layout.type_slice.start + kind] = 1.0
    rows[:, :, layout.time_channel] = (np.asarray(timesteps, dtype=np.float32) / norm.max_episode_steps)[:, None]
    return rows


def window_indices(ends: np.ndarray, episode_starts: np.ndarray, context_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Step indices (B, K) of windows ending at `ends` (inclusive) and their validity mask.

    Steps before the start of the window's episode are padding (mask False).
    """
    offsets = np.arange(-context_length + 1, 1)
    index = ends[:, None] + offsets[None, :]
    valid = index >= episode_starts[:, None]
    return np.where(valid, index, 0), valid


def windows(rows: np.ndarray, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Gather token windows: rows (n, 3, F), index/valid (B, K) -> (B, 3K, F), padding zeroed."""
    batch = rows[index] * valid[:, :, None, None]
    return batch.reshape(len(index), -1, rows.shape[-1])
