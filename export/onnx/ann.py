"""The ANN twin as ONNX: PyTorch's torch.export-based exporter, checked in ONNX Runtime.

`torch.onnx.export(dynamo=True)`, opset 18, gives a clean graph of MatMul / Add /
LayerNormalization / Softmax / Erf nodes, where the legacy TorchScript exporter leaves
Shape/Gather/Concat chains for the dynamic batch axis. Input `tokens` (batch, L, F) float32,
output `action_outputs` (batch, L, n_out); the batch axis is dynamic. `decision_only` exports
`DecisionTransformer.decide` instead: output (batch, n_out), the decision token's alone.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from spikingmind.errors import ExportError
from spikingmind.export.onnx.metadata import INPUT_NAME, OPSET, OUTPUT_NAME, checked, set_metadata
from spikingmind.export.onnx.policy import open_session
from spikingmind.verification import ANN_OUTPUT_TOLERANCE, sample_windows


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs optional-dependency notes (torchvision) and deprecation warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class _Decide(torch.nn.Module):
    """`model.decide` as a module's forward, for the exporter."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.decide(tokens)


def model_to_onnx(model, metadata: dict, decision_only: bool = False):
    """The ANN twin (float32, eval mode) as a checked onnx.ModelProto with `metadata` attached;
    with `decision_only` the graph of `model.decide` (output (batch, n_out))."""
    example = torch.zeros(2, model.cfg.n_tokens, model.n_features)  # batch 2: keeps the axis symbolic
    was_training = model.training
    model.eval()
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                _Decide(model) if decision_only else model, (example,), dynamo=True, opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes={"tokens": {0: torch.export.Dim("batch")}},
                verbose=False, optimize=True,
            )
    except Exception as error:  # the exporter raises many types; name it and stop
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.onnx.export failed: {first}") from error
    finally:
        model.train(was_training)
    proto = program.model_proto
    set_metadata(proto, metadata)
    return checked(proto)


def verify_against_torch(path: Path, ckpt, n_random: int = 4, n_realistic: int = 16,
                         decision_only: bool = False) -> float:
    """Max |ORT - PyTorch| over random and realistic windows (batch 1 and batched);
    ExportError if above ANN_OUTPUT_TOLERANCE."""
    rng = np.random.default_rng(0)
    layout = ckpt.layout
    batches = [
        rng.normal(size=(1, layout.n_tokens, layout.n_features)).astype(np.float32),
        rng.normal(size=(n_random, layout.n_tokens, layout.n_features)).astype(np.float32),
        sample_windows(layout, ckpt.norm, ckpt.spec, 1, seed=1),
        sample_windows(layout, ckpt.norm, ckpt.spec, n_realistic, seed=2),
    ]
    session = open_session(path, intra_op_threads=1)
    worst = 0.0
    for windows in batches:
        with torch.inference_mode():
            tokens = torch.from_numpy(windows)
            expected = (ckpt.model.decide(tokens) if decision_only else ckpt.model(tokens)).numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]
        if actual.shape != expected.shape:
            raise ExportError(f"{path}: ONNX Runtime output shape {actual.shape}, PyTorch {expected.shape}")
        error = float(np.abs(actual - expected).max())
        worst = max(worst, error)
        if not error <= ANN_OUTPUT_TOLERANCE * max(1.0, float(np.abs(expected).max())):
            raise ExportError(f"{path}: ONNX Runtime differs from PyTorch by {error:.3g} "
                              f"(tolerance {ANN_OUTPUT_TOLERANCE:g}) on windows of batch {len(windows)}")
    return worst
