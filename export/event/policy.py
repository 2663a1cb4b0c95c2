"""A spiking DT checkpoint on the event-driven runtime, as a closed-loop policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikingmind.export.event.verification import verify_against_torch
from spikingmind.export.event.weights import EventWeights, decide, initial_traces, step
from spikingmind.metadata import DecodeRule
from spikingmind.policy import Policy


class EventPolicy(Policy):
    """A spiking DT checkpoint run by the event-driven runtime, as a closed-loop policy.

    Built from the loaded checkpoint (BatchNorm folded, float32) and checked against PyTorch
    first (`verify_against_torch`, stored in `.verification`). Spikes stay inside the kernels:
    count them with the PyTorch policy or the NIR reference.
    """

    backend = "event"

    def __init__(self, ckpt, source: str = "checkpoint"):
        self.spec, self.layout, self.norm = ckpt.spec, ckpt.layout, ckpt.norm
        self.meta, self.model_kind = ckpt.meta, ckpt.model.cfg.kind
        self.decode = DecodeRule.for_env(ckpt.spec, ckpt.layout, ckpt.model.cfg.time_steps)
        self.weights = EventWeights.from_model(ckpt.model)
        self.verification = verify_against_torch(self.weights, ckpt, source)
        self.streaming = ckpt.model.cfg.streaming
        self.traces: np.ndarray | None = None

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        """windows (B, L, F) -> decision-token outputs (B, n_out), float64."""
        return decide(self.weights, windows).astype(np.float64)

    def begin(self, batch: int) -> None:
        self.traces = initial_traces(self.weights, batch)

    def step_outputs(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The new tokens (B', n, F) of episodes `rows`: the runtime's work is theirs alone."""
        return step(self.weights, tokens, rows, self.traces).astype(np.float64)

    def spike_stats(self) -> dict:
        return {"spikes_per_decision": None,
                "spikes_per_decision_note": "not available from the event-driven runtime: spikes stay inside its "
                                            "kernels; evaluate with the PyTorch backend or the .nir file to count them"}


def load_policy(path: Path, fixed_point: bool = False) -> EventPolicy:
    """Registry loader (`spikingmind.export.BACKENDS["event"]`): a spiking DT checkpoint folder on
    the event-driven runtime, checked against PyTorch first. `fixed_point` is Lava's and does not apply."""
    from spikingmind.checkpoint import load_checkpoint

    return EventPolicy(load_checkpoint(path), source=str(path))
