"""The backend contract: what every policy backend provides to the workflows that drive it.

A backend (the PyTorch model here; the NIR reference simulator, ONNX Runtime, the event-driven
runtime, Lava and its Loihi fixed-point emulation in `spikingmind.export`) subclasses `Policy`
and implements `outputs`; the rest has defaults that every workflow may call unconditionally:

    outputs(windows (B, L, F)) -> (B, n_out)   decision-token outputs, float64 (required)
    act(windows) -> actions                    decode_actions(outputs, decode): the one decoder
    spike_stats() -> dict                      spikes per decision and rates; {} when not counted
    decision_stats() -> dict                   backend timing (Lava, the Loihi emulation); {} otherwise
    float_counterpart() -> Policy | None       the float network a fixed-point backend quantises; None otherwise
    verification                               how it was checked against PyTorch when built, or None
    close()                                    release processes and files (a context manager too)

`rollout.run_episodes` drives any of them closed loop through the same token windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from spikingmind.envs import EnvSpec
from spikingmind.metadata import DecodeRule
from spikingmind.tokens import Normalization, TokenLayout


def decode_actions(outputs: np.ndarray, rule: DecodeRule) -> np.ndarray:
    """Decision-token outputs (B, n_out) -> env actions, per docs/SEMANTICS.md and the metadata's
    decode rule: argmax for discrete actions, low + (tanh(y) + 1) / 2 * (high - low) for
    continuous ones (float32, as gymnasium's Box wants)."""
    if rule.discrete:
        return outputs.argmax(axis=-1)
    low, high = np.asarray(rule.action_low, dtype=np.float64), np.asarray(rule.action_high, dtype=np.float64)
    return (low + (np.tanh(outputs) + 1.0) / 2.0 * (high - low)).astype(np.float32)


class Policy:
    """A policy backend driven closed loop (see the module docstring for the contract).

    Subclasses set `spec`, `layout`, `norm` (None only for graphs whose metadata names no env),
    `decode`, `meta` (the policy metadata as stored: dataset, model config ...), `backend`
    (its name in results) and `model_kind`.
    """

    backend: str = "policy"
    model_kind: str = "snn"
    streaming: bool = False  # decides with begin() / step() on new tokens, not act() on windows
    spec: EnvSpec | None = None
    layout: TokenLayout | None = None
    norm: Normalization | None = None
    decode: DecodeRule
    meta: Mapping[str, Any] = MappingProxyType({})
    verification: dict | None = None

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        """windows (B, L, F) -> decision-token outputs (B, n_out), float64."""
        raise NotImplementedError(f"{type(self).__name__} computes no outputs")

    def act(self, windows: np.ndarray) -> np.ndarray:
        """windows (B, L, F) -> actions (B,) ints or (B, act_dim) float32."""
        return decode_actions(self.outputs(windows), self.decode)

    def begin(self, batch: int) -> None:
        """A streaming policy: `batch` new episodes start (their carried state is reset)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def step_outputs(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A streaming policy: the tokens (B', n, F) that arrived for episodes `rows` (B',) of the
        batch since their last decision -> the outputs of the last token (B', n_out), float64."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def step(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A streaming policy's decision: `step_outputs` decoded into actions."""
        return decode_actions(self.step_outputs(tokens, rows), self.decode)

    @property
    def dataset(self) -> Mapping[str, Any]:
        """The training data's description (id, hash, episode seeds) from the metadata; {} if none."""
        return self.meta.get("dataset", {})

    def spike_stats(self) -> dict:
        """Spikes per decision and spike rates over the decisions so far; {} where not counted."""
        return {}

    def decision_stats(self) -> dict:
        """Backend timing per decision (Lava); {} where the backend reports none."""
        return {}

    def float_counterpart(self) -> "Policy | None":
        """A backend that runs a quantised network (Loihi fixed point) returns a policy of the
        float network it quantises, so that workflows can report the two side by side; None
        for every other backend. The caller closes it."""
        return None

    def close(self) -> None:
        """Release what the backend holds (processes, temporary files)."""

    def __enter__(self) -> "Policy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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

    def add_counts(self, layers: dict[str, tuple[int, int]], decisions: int) -> None:
        """`layers`: layer name -> (spikes, neurons x T x decisions) of `decisions` decisions."""
        for name, (spikes, slots) in layers.items():
            self.spikes[name] = self.spikes.get(name, 0.0) + float(spikes)
            self.slots[name] = self.slots.get(name, 0) + int(slots)
        self.decisions += decisions

    def stats(self) -> dict:
        """Spikes per decision (all layers) and per-layer spike rate; {} before any decision."""
        if not self.decisions:
            return {}
        return {"spikes_per_decision": sum(self.spikes.values()) / self.decisions,
                "spike_rate": {name: self.spikes[name] / self.slots[name] for name in self.spikes},
                "mean_spike_rate": sum(self.spikes.values()) / sum(self.slots.values())}


class TorchPolicy(Policy):
    """A checkpoint's PyTorch model as a policy; optionally records spikes per decision."""

    backend = "pytorch"

    def __init__(self, ckpt, record_spikes: bool = False):
        import torch

        self.torch = torch
        self.model, self.spec, self.layout, self.norm = ckpt.model, ckpt.spec, ckpt.layout, ckpt.norm
        self.meta, self.model_kind = ckpt.meta, ckpt.model.cfg.kind
        time_steps = ckpt.model.cfg.time_steps if ckpt.model.spiking else None
        self.decode = DecodeRule.for_env(ckpt.spec, ckpt.layout, time_steps)
        self.dtype = next(self.model.parameters()).dtype
        self.record_spikes = record_spikes and self.model.spiking
        self.tally = SpikeTally()
        self.streaming = ckpt.model.cfg.streaming
        self.state: list | None = None

    def begin(self, batch: int) -> None:
        self.state = self.model.initial_state(batch)

    def step_outputs(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        tokens = self.torch.as_tensor(tokens, dtype=self.dtype)
        rows = self.torch.as_tensor(rows)
        record = {} if self.record_spikes else None
        with self.torch.inference_mode():
            selected = [s[:, rows] if self.model.spiking else s.select(rows) for s in self.state]
            out, after = self.model.step(tokens, selected, record)
            for held, new in zip(self.state, after):
                if self.model.spiking:
                    held[:, rows] = new
                else:
                    held.keys[rows], held.values[rows], held.valid[rows] = new.keys, new.values, new.valid
        if record is not None:
            self.tally.add(record, len(tokens))
        return out.double().numpy()

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        tokens = self.torch.as_tensor(windows, dtype=self.dtype)
        with self.torch.inference_mode():
            if not self.record_spikes:  # the decision token's outputs alone (model.decide: same values)
                return self.model.decide(tokens).double().numpy()
            record = {}
            out = self.model(tokens, record)
        self.tally.add(record, len(windows))
        return out[:, self.decode.token_index].double().numpy()

    def spike_stats(self) -> dict:
        return self.tally.stats()


def load_policy(path: Path, fixed_point: bool = False) -> TorchPolicy:
    """Registry loader (`spikingmind.export.BACKENDS["pytorch"]`): a checkpoint folder in
    PyTorch, recording spikes. `fixed_point` is Lava's and does not apply."""
    from spikingmind.checkpoint import load_checkpoint

    return TorchPolicy(load_checkpoint(path), record_spikes=True)
