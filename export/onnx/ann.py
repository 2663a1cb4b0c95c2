"""The ANN twin as ONNX: PyTorch's torch.export-based exporter, checked in ONNX Runtime.

`torch.onnx.export(dynamo=True)`, opset 18, gives a clean graph of MatMul / Add /
LayerNormalization / Softmax / Erf nodes, where the legacy TorchScript exporter leaves
Shape/Gather/Concat chains for the dynamic batch axis. Input `tokens` (batch, L, F) float32,
output `action_outputs` (batch, L, n_out); the batch axis is dynamic. `decision_only` exports
`DecisionTransformer.decide` instead: output (batch, n_out), the decision token's alone.

A streaming ANN twin (model.history = "stream") exports its `step` instead (`_Step`): the
tokens that arrived since the last decision (batch, n, F) with n = 2 on an episode's first
step and 3 after it, and each block's key/value cache as inputs; the decision's outputs and
the next cache as outputs (names in STREAM_INPUTS / STREAM_OUTPUTS; docs/SEMANTICS.md, "Streaming").
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
from spikingmind.export.onnx.metadata import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    STREAM_INPUTS,
    STREAM_OUTPUTS,
    checked,
    set_metadata,
)
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


class _Step(torch.nn.Module):
    """A streaming ANN twin's `step` over flat tensors, for the exporter: tokens (B, n, F), keys
    and values (B, blocks, H, S, C/H), valid (B, S) bool -> outputs (B, n_out), next keys,
    values and valid of the same shapes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, keys, values, valid):
        from spikingmind.model import KVCache

        span = self.model.cfg.n_tokens
        state = [KVCache(keys[:, i], values[:, i], valid, span) for i in range(len(self.model.blocks))]
        outputs, state = self.model.step(tokens, state)
        return (outputs, torch.stack([c.keys for c in state], dim=1), torch.stack([c.values for c in state], dim=1),
                state[-1].valid)


def stream_inputs(model, batch: int, n: int = 3, dtype=torch.float32):
    """Example inputs of the step graph: n new tokens and an empty cache for `batch` episodes."""
    from spikingmind.model import KVCache

    empty = KVCache.empty(batch, model.cfg, dtype)
    blocks = len(model.blocks)
    stacked = lambda t: t.unsqueeze(1).expand(-1, blocks, *t.shape[1:]).contiguous()  # noqa: E731
    return (torch.zeros(batch, n, model.n_features, dtype=dtype), stacked(empty.keys), stacked(empty.values),
            empty.valid)


def model_to_onnx(model, metadata: dict, decision_only: bool = False):
    """The ANN twin (float32, eval mode) as a checked onnx.ModelProto with `metadata` attached;
    with `decision_only` the graph of `model.decide` (output (batch, n_out)); a streaming twin's
    graph is its `step` (decision-only by nature)."""
    streaming = model.cfg.streaming
    was_training = model.training
    model.eval()
    batch = torch.export.Dim("batch")
    if streaming:
        module, example = _Step(model), stream_inputs(model, 2)  # batch 2: keeps the axis symbolic
        names_in, names_out = list(STREAM_INPUTS), list(STREAM_OUTPUTS)
        dynamic = {"tokens": {0: batch, 1: torch.export.Dim("new_tokens", min=1, max=3)}, "keys": {0: batch},
                   "values": {0: batch}, "valid": {0: batch}}
    else:
        module = _Decide(model) if decision_only else model
        example = (torch.zeros(2, model.cfg.n_tokens, model.n_features),)  # batch 2: keeps the axis symbolic
        names_in, names_out, dynamic = [INPUT_NAME], [OUTPUT_NAME], {"tokens": {0: batch}}
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                module, example, dynamo=True, opset_version=OPSET, input_names=names_in,
                output_names=names_out, dynamic_shapes=dynamic, verbose=False, optimize=True,
            )
    except Exception as error:  # the exporter raises many types; name it and stop
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.onnx.export failed: {first}") from error
    finally:
        model.train(was_training)
    proto = program.model_proto
    set_metadata(proto, metadata)
    return checked(proto)


def stream_chunks(tokens: np.ndarray) -> list[np.ndarray]:
    """An episode's tokens (B, L, F) as a deployment feeds them: (rtg, state), then (action, rtg, state)."""
    return [tokens[:, :2]] + [tokens[:, i:i + 3] for i in range(2, tokens.shape[1], 3)]


def verify_against_torch(path: Path, ckpt, n_random: int = 4, n_realistic: int = 16,
                         decision_only: bool = False) -> float:
    """Max |ORT - PyTorch| over random and realistic windows (batch 1 and batched); a streaming
    twin's step graph streams them as episodes against `model.step`. ExportError if above
    ANN_OUTPUT_TOLERANCE."""
    rng = np.random.default_rng(0)
    layout = ckpt.layout
    batches = [
        rng.normal(size=(1, layout.n_tokens, layout.n_features)).astype(np.float32),
        rng.normal(size=(n_random, layout.n_tokens, layout.n_features)).astype(np.float32),
        sample_windows(layout, ckpt.norm, ckpt.spec, 1, seed=1),
        sample_windows(layout, ckpt.norm, ckpt.spec, n_realistic, seed=2),
    ]
    if ckpt.config.streaming:
        return _verify_stream(path, ckpt, batches)
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


def _verify_stream(path: Path, ckpt, batches: list[np.ndarray]) -> float:
    """The step graph in ONNX Runtime against `model.step`, each window streamed as an episode."""
    from spikingmind.export.onnx.policy import OnnxPolicy

    policy, worst = OnnxPolicy(path), 0.0
    for windows in batches:
        policy.begin(len(windows))
        state, rows = ckpt.model.initial_state(len(windows)), np.arange(len(windows))
        for chunk in stream_chunks(windows):
            with torch.inference_mode():
                expected, state = ckpt.model.step(torch.from_numpy(chunk), state)
            actual = policy.step_outputs(chunk, rows)
            error = float(np.abs(actual - expected.numpy()).max())
            worst = max(worst, error)
            if not error <= ANN_OUTPUT_TOLERANCE * max(1.0, float(np.abs(expected.numpy()).max())):
                raise ExportError(f"{path}: ONNX Runtime's streaming step differs from PyTorch's by {error:.3g} "
                                  f"(tolerance {ANN_OUTPUT_TOLERANCE:g}) on episodes of batch {len(windows)}")
    return worst
