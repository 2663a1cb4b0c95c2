"""`export --target onnx`: the ANN twin, or the spiking DT's inference graph, as an ONNX model
that ONNX Runtime runs; and the `onnxruntime` backend that runs such a model closed loop.

    metadata.py   names, opset and the spikingmind metadata of the graphs
    ann.py        the ANN twin through torch.onnx.export(dynamo=True), checked within ANN_OUTPUT_TOLERANCE
    snn.py        the spiking DT's inference graph (`SnnGraphBuilder`), checked by the shared SNN criteria
    policy.py     `OnnxPolicy`: a .onnx file in ONNX Runtime

Spiking DT: T steps unrolled, LIF as Where/Mul/Add/Greater, BatchNorm folded, the causal mix
as one MatMul with the (C, L, L) decay matrix; same input/output names and metadata format as
the ANN's, plus `time_steps`, the neuron rules, `graph.inference_only` and the spike-agreement
numbers measured at export. `--decision-only` exports `DecisionTransformer.decide` instead
(either model): output (batch, n_out), the decision token's alone. Before the file appears,
ONNX Runtime's outputs are checked against PyTorch's on random and realistic token windows.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spikingmind.export.onnx.ann import model_to_onnx, verify_against_torch
from spikingmind.export.onnx.metadata import (
    INPUT_NAME,
    METADATA_KEY,
    OPSET,
    OUTPUT_NAME,
    export_metadata,
    read_metadata,
    set_metadata,
)
from spikingmind.export.onnx.policy import OnnxPolicy, load_policy, open_session
from spikingmind.export.onnx.snn import SnnGraphBuilder, snn_to_onnx, verify_snn_against_torch, with_spike_outputs
from spikingmind.io import atomic_path, refuse_overwrite

__all__ = ["INPUT_NAME", "METADATA_KEY", "OPSET", "OUTPUT_NAME", "OnnxPolicy", "SnnGraphBuilder", "export",
           "export_metadata", "load_policy", "model_to_onnx", "open_session", "read_metadata", "set_metadata",
           "snn_to_onnx", "verify_against_torch", "verify_snn_against_torch", "with_spike_outputs"]


def export(checkpoint, out, force: bool = False, decision_only: bool = False) -> Path:
    """Registry entry point: checkpoint folder -> .onnx, verified in ONNX Runtime before it appears.

    ANN twin: torch.onnx's graph, outputs within ANN_OUTPUT_TOLERANCE. Spiking DT: its inference
    graph (`SnnGraphBuilder`), checked by `verify_snn_against_torch`; the numbers go into the
    metadata. `decision_only`: the graph of `DecisionTransformer.decide`, output (batch, n_out),
    the decision token's alone (faster; the full graph is what the energy report counts)."""
    from spikingmind.checkpoint import load_checkpoint

    import onnx

    refuse_overwrite(out, force)
    ckpt = load_checkpoint(checkpoint, dtype=torch.float32)
    metadata = export_metadata(ckpt, decision_only)
    if ckpt.model.spiking:
        proto = snn_to_onnx(ckpt.model, metadata, decision_only)
        metadata["verification"] = verify_snn_against_torch(proto, ckpt.model, ckpt, str(checkpoint), decision_only)
        set_metadata(proto, metadata)
        with atomic_path(out, suffix=".onnx") as tmp:
            onnx.save_model(proto, str(tmp))
        return Path(out)
    proto = model_to_onnx(ckpt.model, metadata, decision_only)
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save_model(proto, str(tmp))
        verify_against_torch(tmp, ckpt, decision_only=decision_only)  # the file only appears if it passes
    return Path(out)
