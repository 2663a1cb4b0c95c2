"""The event-driven runtime against PyTorch, with the criteria every spiking backend is held to."""

from __future__ import annotations

import numpy as np

from spikingmind.errors import ExportError
from spikingmind.export.event.weights import EventWeights, decide, initial_traces, step
from spikingmind.verification import (
    SNN_MIN_WINDOWS_WITHIN,
    SNN_OUTPUT_TOLERANCE,
    snn_outputs_within,
    snn_verification_windows,
)


def verify_against_torch(weights: EventWeights, ckpt, source: str = "checkpoint") -> dict:
    """The runtime against `model.decide` (PyTorch) on random and realistic windows.

    The shared criteria of `spikingmind.verification` (those of the ONNX export too): outputs
    within SNN_OUTPUT_TOLERANCE on >= SNN_MIN_WINDOWS_WITHIN of the windows and, for discrete
    actions, the same argmax action on every window. ExportError naming `source` otherwise;
    returns the measured numbers.
    """
    import torch

    windows = np.concatenate([w for group in snn_verification_windows(ckpt).values() for w in group])
    model = ckpt.model
    if model.cfg.streaming:
        actual, expected = _streamed(weights, model, windows)
    else:
        with torch.inference_mode():
            expected = model.decide(torch.as_tensor(windows, dtype=next(model.parameters()).dtype)).float().numpy()
        actual = decide(weights, windows)
    error, within = snn_outputs_within(actual, expected)
    mismatches = int((actual.argmax(1) != expected.argmax(1)).sum()) if ckpt.layout.discrete else 0
    report = {"windows": len(windows), "windows_within_tolerance": float(within.mean()),
              "max_abs_output_error": float(error.max()), "action_mismatches": mismatches,
              "criteria": {"output_tolerance": SNN_OUTPUT_TOLERANCE,
                           "windows_within_tolerance_at_least": SNN_MIN_WINDOWS_WITHIN, "action_mismatches": 0},
              "reference": ("PyTorch model.step, each window streamed as an episode from its start"
                            if model.cfg.streaming else "PyTorch model.decide")
                           + " in the checkpoint's dtype, torch.inference_mode()"}
    if report["windows_within_tolerance"] < SNN_MIN_WINDOWS_WITHIN or mismatches:
        raise ExportError(f"{source}: the event-driven runtime differs from PyTorch: outputs within "
                          f"{SNN_OUTPUT_TOLERANCE:g} on {int(within.sum())} of {len(windows)} windows "
                          f"(max error {report['max_abs_output_error']:.3g}), {mismatches} different actions")
    return report


def _streamed(weights: EventWeights, model, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A streaming model: each window's tokens as an episode from its start, fed as deployed
    ((rtg, state) first, then (action, rtg, state) per step) to the runtime and to PyTorch;
    the outputs (B * steps, n_out) of every decision of both."""
    import torch

    dtype = next(model.parameters()).dtype
    rows = np.arange(len(windows))
    traces, state = initial_traces(weights, len(windows)), model.initial_state(len(windows))
    actual, expected = [], []
    chunks = [slice(0, 2)] + [slice(i, i + 3) for i in range(2, windows.shape[1] - 1, 3)]
    for chunk in chunks:
        actual.append(step(weights, windows[:, chunk], rows, traces))
        with torch.inference_mode():
            out, state = model.step(torch.as_tensor(windows[:, chunk], dtype=dtype), state)
        expected.append(out.float().numpy())
    return np.concatenate(actual), np.concatenate(expected)
