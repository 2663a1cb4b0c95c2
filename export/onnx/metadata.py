"""Names, metadata and validity of the ONNX graphs spikingmind writes (ANN twin and spiking DT alike).

Everything a stranger needs to run the policy (env, token layout, normalisation, decoding)
is stored as JSON in the model's `metadata_props["spikingmind"]`; `spikingmind.metadata`
reads it back.
"""

from __future__ import annotations

import json

import torch

import spikingmind
from spikingmind.errors import ExportError, GraphError
from spikingmind.metadata import parse_metadata

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "tokens", "action_outputs"
#: A streaming ANN twin's step graph: the new tokens and the carried cache in, the decision and the next cache out.
STREAM_INPUTS = (INPUT_NAME, "keys", "values", "valid")
STREAM_OUTPUTS = (OUTPUT_NAME, "next_keys", "next_values", "next_valid")
METADATA_KEY = "spikingmind"
EXPORTER = "torch.onnx.export(dynamo=True)"
SNN_EXPORTER = "spikingmind.export.onnx.SnnGraphBuilder (onnx.helper)"
NIR_ONLY_KEYS = ("nir_version", "dt", "time_steps", "neuron")


def export_metadata(ckpt, decision_only: bool = False) -> dict:
    """The NIR export's metadata (`spikingmind.export.nir.export_metadata`) adapted to ONNX:
    decoding reads `action_outputs` at the last state token. The ANN twin has no SNN time axis
    and no neuron semantics; the spiking DT keeps `time_steps`, `dt` and the neuron rules and
    says that its graph is an inference-only unrolling whose spikes equal PyTorch's."""
    from spikingmind.export.nir import export_metadata as nir_metadata

    spiking = ckpt.config.kind == "snn"
    dropped = ("nir_version",) if spiking else NIR_ONLY_KEYS
    meta = {key: value for key, value in nir_metadata(ckpt).items() if key not in dropped}
    meta["decode"]["output_node"] = OUTPUT_NAME
    meta["decode"]["shape"] = ["batch", ckpt.layout.n_tokens, ckpt.model.n_out]
    if decision_only:
        meta["decode"]["shape"] = ["batch", ckpt.model.n_out]
        meta["decode"]["decision_only"] = ("the graph computes the decision token's output alone (the last block "
                                           "only where that token reads it: DecisionTransformer.decide)")
    if not spiking:
        meta["decode"].pop("reduce", None)
        meta["time_steps"] = None  # the ANN twin has no SNN time axis: one evaluation per decision
    else:
        meta["decode"]["reduce"] = "mean over the time_steps steps (inside the graph)"
        meta["graph"] = {
            "model": "snn", "time_steps": ckpt.config.time_steps, "inference_only": True,
            "unrolled": "T steps unrolled in the graph; LIF as Where/Mul/Add/Greater, AND as And, BatchNorm "
                        "folded, the causal mix as a MatMul with the (C, L, L) decay matrix",
            "spikes": "equal PyTorch's (torch.inference_mode, float32) up to float32 rounding; the measured "
                      "share of differing spikes is in 'verification'",
            "spikes_per_decision": "not available: spikes are internal to the graph",
        }
    inputs = {"name": INPUT_NAME, "shape": ["batch", ckpt.layout.n_tokens, ckpt.layout.n_features],
              "dtype": "float32", "layout": "token windows per docs/SEMANTICS.md (no SNN time axis)"}
    if ckpt.config.streaming:
        if spiking:
            raise ExportError("a streaming spiking DT exports to NIR (export --target nir), not ONNX")
        meta.update(_stream_step_metadata(ckpt))
        inputs = {"name": INPUT_NAME, "shape": ["batch", "new_tokens", ckpt.layout.n_features], "dtype": "float32",
                  "layout": "the tokens since the last decision (docs/SEMANTICS.md, 'Streaming')"}
    return {
        **meta,
        "format": "spikingmind-onnx",
        "format_version": 1,
        "spikingmind_version": spikingmind.__version__,
        "onnx": {"opset": OPSET, "exporter": SNN_EXPORTER if spiking else EXPORTER, "torch_version": torch.__version__},
        "input": inputs,
    }


def _stream_step_metadata(ckpt) -> dict:
    """The decode and `streaming` sections of a streaming ANN twin's step graph."""
    cfg = ckpt.config
    span = ckpt.layout.n_tokens
    head_width = cfg.width // cfg.n_heads
    cache = ["batch", cfg.n_blocks, cfg.n_heads, span - 1, head_width]
    spec = ckpt.spec
    return {
        "decode": {
            "output_node": OUTPUT_NAME, "shape": ["batch", ckpt.model.n_out], "token_index": 0,
            "action": "argmax" if spec.discrete else "action_low + (tanh(y) + 1) / 2 * (action_high - action_low)",
            "action_low": list(spec.action_low), "action_high": list(spec.action_high),
            "decision_only": "the step graph computes the decision (the last new token, a state token) and the "
                             "keys and values the next steps read; the last block runs its query, output "
                             "projection and MLP on that token alone",
        },
        "streaming": {
            "tokens": "per decision, the tokens since the last one in episode order: return_to_go_0, state_0 on "
                      "an episode's first step; action_{t-1}, return_to_go_t, state_t after it",
            "inputs": {"tokens": ["batch", "new_tokens", ckpt.layout.n_features], "keys": cache, "values": cache,
                       "valid": ["batch", span - 1]},
            "outputs": {OUTPUT_NAME: ["batch", ckpt.model.n_out], "next_keys": cache, "next_values": cache,
                        "next_valid": ["batch", span - 1]},
            "state": f"keys and values of the last {span - 1} tokens of the episode per block (oldest first) and "
                     "which of them exist (valid, bool); an episode starts with zeros and valid all false, and "
                     "every step feeds the next_* outputs of the step before it",
            "attention": f"each new token attends to itself and the valid cached tokens of its band of {span} "
                         "tokens; positions come from the timestep feature (sinusoids), not the cache slot",
            "decision_tokens": "state tokens",
        },
    }


def set_metadata(proto, metadata: dict) -> None:
    """Store `metadata` as the model's spikingmind JSON (replacing an earlier one)."""
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = json.dumps(metadata)
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)


def read_metadata(session, source: str) -> dict:
    """The spikingmind metadata of an ONNX Runtime session's model; GraphError naming the file otherwise."""
    meta = parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), source)
    if meta.get("format") != "spikingmind-onnx":
        raise GraphError(f"{source}: spikingmind metadata is not of format 'spikingmind-onnx'")
    return meta


def checked(proto):
    """`proto` once onnx.checker (full check) accepts it; ExportError with its first line otherwise."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"exported ONNX model fails onnx.checker: {str(error).splitlines()[0]}") from None
    return proto
