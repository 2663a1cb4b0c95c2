"""`export --target nir`: the spiking DT as a standard NIR graph (docs/SEMANTICS.md).

One dict maps module types to emitters. An emitter adds the module's nodes and edges to
the graph under construction and returns the names of the nodes whose outputs, summed,
are the module's output (the residual stream is such a list: NIR adds up the edges into
a node). A module type without an emitter stops the export with its path in the model.
BatchNorm is folded into the affine map before it; everything is written in float64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gymnasium
import nir
import numpy as np
import torch
from torch import nn

import spikingmind
from spikingmind import units
from spikingmind.errors import GraphError, UnsupportedModuleError
from spikingmind.export.reference import NIRPolicy
from spikingmind.io import atomic_path, refuse_overwrite
from spikingmind.model import (
    LIF,
    CausalDecayMix,
    DecisionTransformer,
    SpikingBlock,
    SpikingMLP,
    SpikingSelfAttention,
    TokenLinear,
)

INPUT, OUTPUT = "input", "output"
AND_THRESHOLD = 1.5  # two binary spikes in, fires only when both arrived


@dataclass
class GraphBuilder:
    """Nodes, edges and output shapes of the graph under construction."""

    n_tokens: int
    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # node -> output shape (C, L)

    def add(self, name: str, node: nir.NIRNode, sources: list[str], shape: tuple[int, ...]) -> list[str]:
        if name in self.nodes:
            raise GraphError(f"duplicate node name {name!r}")
        self.nodes[name] = node
        self.edges.extend((source, name) for source in sources)
        self.shapes[name] = shape
        return [name]

    def channels(self, sources: list[str]) -> int:
        shapes = {self.shapes[s] for s in sources}
        if len(shapes) != 1:
            raise GraphError(f"inputs {sources} have different shapes {sorted(shapes)}")
        return next(iter(shapes))[0]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float64).cpu().numpy().copy()


def batch_norm_affine(norm: nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as y = scale * x + shift per channel, float64."""
    scale = _numpy(norm.weight) / np.sqrt(_numpy(norm.running_var) + norm.eps)
    return scale, _numpy(norm.bias) - _numpy(norm.running_mean) * scale


def fold_batch_norm(weight: np.ndarray, bias: np.ndarray, norm: nn.BatchNorm1d | None):
    """Affine y = W x + b followed by eval-mode BatchNorm -> one affine map (W', b')."""
    if norm is None:
        return weight, bias
    scale, shift = batch_norm_affine(norm)
    return weight * scale.reshape(-1, *([1] * (weight.ndim - 1))), bias * scale + shift


def fold_token_linears(*modules: TokenLinear) -> tuple[np.ndarray, np.ndarray]:
    """Per-token linear maps of one input with their BatchNorm folded, stacked along the output
    axis: W (sum of C_out, C_in), b (sum of C_out,), float64 (q, k, v as one map, say)."""
    folded = [fold_batch_norm(_numpy(m.linear.weight), _numpy(m.linear.bias), m.norm) for m in modules]
    return np.concatenate([w for w, _ in folded]), np.concatenate([b for _, b in folded])


def fold_causal_mix(module: CausalDecayMix) -> tuple[np.ndarray, np.ndarray]:
    """The mix at inference: its (C, L, L) matrix with the BatchNorm after it folded in, and the shift (C,)."""
    return fold_batch_norm(_numpy(module.mixing_matrix()), np.zeros(module.norm.num_features), module.norm)


def token_conv(builder: GraphBuilder, name: str, weight: np.ndarray, bias: np.ndarray, sources: list[str]) -> list[str]:
    """A per-token affine map (C_out, C_in) as a kernel-1 Conv1d over the token axis."""
    node = nir.Conv1d(input_shape=builder.n_tokens, weight=weight[:, :, None], stride=1, padding=0,
                      dilation=1, groups=1, bias=bias)
    return builder.add(name, node, sources, (weight.shape[0], builder.n_tokens))


# ---------------------------------------------------------------------------- emitters


def emit_linear(module: nn.Linear, path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    bias = _numpy(module.bias) if module.bias is not None else np.zeros(module.out_features)
    return token_conv(b, path, _numpy(module.weight), bias, sources)


def emit_token_linear(module: TokenLinear, path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    return token_conv(b, path, *fold_token_linears(module), sources)


def emit_lif(module: LIF, path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    shape = (b.channels(sources), b.n_tokens)
    params = units.lif_parameters(np.full(shape, module.beta))
    node = nir.LIF(tau=params["tau"], r=params["r"], v_leak=params["v_leak"],
                   v_threshold=np.full(shape, float(module.threshold)), v_reset=np.zeros(shape))
    return b.add(path, node, sources, shape)


def emit_and(path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    """AND of two binary spike trains: a stateless threshold neuron fed by both edges."""
    shape = (b.channels(sources), b.n_tokens)
    return b.add(path, nir.Threshold(threshold=np.full(shape, AND_THRESHOLD)), sources, shape)


def emit_causal_mix(module: CausalDecayMix, path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    """Decay-weighted causal sum as a Conv1d: kernel 2L-1, padding L-1, only past taps."""
    matrix = _numpy(module.mixing_matrix())  # (C, L, L), M[c, i, j] = g_c^(i-j)
    channels, n_tokens = matrix.shape[0], matrix.shape[1]
    kernel = np.zeros((channels, channels, 2 * n_tokens - 1))
    lags = np.arange(n_tokens)
    diag = np.arange(channels)
    # tap k reads input j = i + k - (L-1): lag d = i - j sits at k = L-1-d. Read g^d off the matrix.
    kernel[diag[:, None], diag[:, None], (n_tokens - 1 - lags)[None, :]] = matrix[:, n_tokens - 1, n_tokens - 1 - lags]
    weight, bias = fold_batch_norm(kernel, np.zeros(channels), module.norm)
    node = nir.Conv1d(input_shape=n_tokens, weight=weight, stride=1, padding=n_tokens - 1, dilation=1,
                      groups=1, bias=bias)
    return b.add(path, node, sources, (channels, n_tokens))


def emit_attention(module: SpikingSelfAttention, path: str, residual: list[str], b: GraphBuilder) -> list[str]:
    s_in = emit(module.lif_in, f"{path}.lif_in", residual, b)
    q = emit(module.q_lif, f"{path}.q_lif", emit(module.q, f"{path}.q", s_in, b), b)
    k = emit(module.k_lif, f"{path}.k_lif", emit(module.k, f"{path}.k", s_in, b), b)
    v = emit(module.v_lif, f"{path}.v_lif", emit(module.v, f"{path}.v", s_in, b), b)
    kv_and = emit_and(f"{path}.kv_and", k + v, b)
    kv = emit(module.kv_lif, f"{path}.kv_lif", emit(module.mix, f"{path}.mix", kv_and, b), b)
    qkv_and = emit_and(f"{path}.qkv_and", q + kv, b)
    return emit(module.out_proj, f"{path}.out_proj", qkv_and, b)


def emit_mlp(module: SpikingMLP, path: str, residual: list[str], b: GraphBuilder) -> list[str]:
    s_in = emit(module.lif_in, f"{path}.lif_in", residual, b)
    hidden = emit(module.hidden_lif, f"{path}.hidden_lif", emit(module.fc1, f"{path}.fc1", s_in, b), b)
    return emit(module.fc2, f"{path}.fc2", hidden, b)


def emit_block(module: SpikingBlock, path: str, residual: list[str], b: GraphBuilder) -> list[str]:
    residual = residual + emit(module.attn, f"{path}.attn", residual, b)
    return residual + emit(module.mlp, f"{path}.mlp", residual, b)


def emit_model(module: DecisionTransformer, path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    if not module.spiking:
        raise UnsupportedModuleError(
            f"{type(module).__name__} at '{path or '<model>'}' is the ANN twin (kind='ann'); "
            "NIR export is for the spiking DT, export the ANN with --target onnx"
        )
    residual = emit(module.embed, "embed", sources, b)
    for index, block in enumerate(module.blocks):
        residual = emit(block, f"blocks.{index}", residual, b)
    spikes = emit(module.head_lif, "head.lif", residual, b)
    return emit(module.head, "head.readout", spikes, b)


Emitter = Callable[[nn.Module, str, list[str], GraphBuilder], list[str]]
EMITTERS: dict[type, Emitter] = {
    DecisionTransformer: emit_model,
    SpikingBlock: emit_block,
    SpikingSelfAttention: emit_attention,
    SpikingMLP: emit_mlp,
    TokenLinear: emit_token_linear,
    CausalDecayMix: emit_causal_mix,
    LIF: emit_lif,
    nn.Linear: emit_linear,
}


def emit(module: nn.Module, path: str, sources: list[str], builder: GraphBuilder) -> list[str]:
    """Dispatch on the exact module type; unknown types stop the export, naming the module."""
    emitter = EMITTERS.get(type(module))
    if emitter is None:
        raise UnsupportedModuleError(
            f"cannot export module {type(module).__name__} at '{path}': no NIR emitter for it "
            f"(supported: {', '.join(sorted(t.__name__ for t in EMITTERS))})"
        )
    return emitter(module, path, sources, builder)


def _check_children_covered(model: nn.Module) -> None:
    """Fail on any submodule the emitters would silently skip (e.g. one added to a block)."""
    handled_inside = (nn.BatchNorm1d,)  # folded by the TokenLinear / CausalDecayMix emitters
    for path, module in model.named_modules():
        if type(module) in EMITTERS or isinstance(module, (nn.ModuleList, *handled_inside)):
            continue
        raise UnsupportedModuleError(
            f"cannot export module {type(module).__name__} at '{path or '<model>'}': no NIR emitter for it"
        )


# ---------------------------------------------------------------------------- graph + metadata


def token_table(layout, norm, spec) -> dict:
    """The token layout as a table a runner can follow from the file alone (docs/SEMANTICS.md):
    channel ranges half-open [start, stop), read off `spikingmind.tokens.TokenLayout`."""
    def span(part: slice) -> list[int]:
        return [part.start, part.stop]

    action_value = ("one-hot of the action index sent to the env" if layout.discrete else
                    "the action sent to the env (after the host's squashing into [action_low, action_high])")
    return {
        "channel_ranges": "half-open [start, stop): channels start, start + 1, ..., stop - 1",
        "n_features": layout.n_features,
        "window": f"L = 3 K = {layout.n_tokens} tokens, oldest step first: (return_to_go_1, state_1, action_1, ..., "
                  "return_to_go_K, state_K, action_K); the last step is the current one",
        "padding": "fewer than K steps so far: the window is left-padded with all-zero tokens (every channel 0, "
                   "token type included)",
        "rows": [
            {"feature": "return_to_go", "channels": [0, 1], "tokens": ["return_to_go", "state"],
             "value": "return_gain * sign(R) * log1p(|R|) / log1p(return_scale), R this step's return-to-go "
                      "(see return_to_go); return_gain and return_scale in normalization"},
            {"feature": "observation", "channels": span(layout.obs_slice), "tokens": ["state"],
             "value": "(obs - obs_mean) / obs_std per observation dimension, in the env's order"},
            {"feature": "action", "channels": span(layout.act_slice), "tokens": ["action"],
             "value": f"{action_value}; all 0 on the current step's action token (not chosen yet)"},
            {"feature": "token_type", "channels": span(layout.type_slice), "tokens": ["return_to_go", "state", "action"],
             "value": "one-hot: channel start + 0 on return-to-go tokens, start + 1 on state tokens, start + 2 on "
                      "action tokens"},
            {"feature": "timestep", "channels": [layout.time_channel, layout.time_channel + 1],
             "tokens": ["return_to_go", "state", "action"],
             "value": "t / max_episode_steps for all three tokens of step t (see timestep)"},
        ],
        "other_channels": "none: every channel of a token belongs to exactly one row; channels a row does not "
                          "set for a token type are 0",
        "decision_token": layout.decision_token,
        "max_episode_steps": norm.max_episode_steps,
        "target_return": spec.target_return,
    }


def export_metadata(ckpt) -> dict:
    """Everything a stranger needs to run the policy from the .nir file alone."""
    meta = ckpt.meta
    spec, layout = ckpt.spec, ckpt.layout
    return {
        "format": "spikingmind-nir",
        "format_version": 1,
        "spikingmind_version": spikingmind.__version__,
        "nir_version": nir.__version__,
        "dt": units.DT,
        "time_steps": ckpt.config.time_steps,
        "neuron": {
            "discretization": "forward Euler of NIR LIF with step dt: v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak "
                              "+ (dt/tau) r I[t]; exported so that this is v[t] = beta v[t-1] + I[t]",
            "reset": "to v_reset (0) at the step of the spike",
            "threshold_compare": ">",
            "state_init": "all membranes 0 at the start of every decision",
            "edge_summation": "inputs of a node are summed in edge-list order",
            "time": "zero delay: every node is evaluated once per step in topological order",
        },
        # flat keys: what a generic reader (reference.NIRPolicy, Lava) needs to decode actions
        "action_kind": spec.action_kind,
        "action_low": list(spec.action_low),
        "action_high": list(spec.action_high),
        "context_length": layout.context_length,
        "token_features": layout.n_features,
        "env": meta["env"],
        "token_layout": meta["token_layout"],
        "normalization": meta["normalization"],
        "model": meta["model"],
        "decode": {
            "output_node": OUTPUT,
            "reduce": "mean over the time_steps steps",
            "token_index": layout.decision_token,
            "action": "argmax" if spec.discrete else "action_low + (tanh(y) + 1) / 2 * (action_high - action_low)",
            "action_low": list(spec.action_low),
            "action_high": list(spec.action_high),
        },
        "dataset": meta.get("dataset", {}),
        "source_checkpoint_versions": meta.get("versions", {}),
        # the rules a runner written from this file alone needs (docs/SEMANTICS.md, "Running a policy")
        "token_table": token_table(layout, ckpt.norm, spec),
        "return_to_go": {
            "initial": f"the target return at reset (this env's default: {spec.target_return}; a runner may ask "
                       "for another)",
            "update": "R[t+1] = R[t] - reward[t] after every env.step, unclipped: it may go below 0",
            "on_tokens": "step t's return-to-go and state tokens carry R[t]",
        },
        "timestep": {
            "origin": "t = 0 for the observation env.reset() returns, t + 1 after each env.step",
            "feature": "t / max_episode_steps (normalization.max_episode_steps), the same on all three tokens of a step",
        },
        "gymnasium_version": gymnasium.__version__,
    }


def model_to_graph(model: DecisionTransformer, metadata: dict | None = None) -> nir.NIRGraph:
    """The NIR graph of a spiking DT (standard nodes only), parameters in float64."""
    if isinstance(model, DecisionTransformer) and not model.spiking:
        emit_model(model, "", [], GraphBuilder(0))  # raises the ANN-twin error
    _check_children_covered(model)
    n_tokens = 3 * model.cfg.context_length
    builder = GraphBuilder(n_tokens)
    builder.add(INPUT, nir.Input(input_type={"input": np.array([model.n_features, n_tokens])}), [],
                (model.n_features, n_tokens))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            readout = emit(model, "", [INPUT], builder)
    finally:
        model.train(was_training)
    builder.add(OUTPUT, nir.Output(output_type={"output": np.array([model.n_out, n_tokens])}), readout,
                (model.n_out, n_tokens))
    graph_metadata = {"dt": units.DT, "time_steps": model.cfg.time_steps}
    if metadata is not None:
        graph_metadata["spikingmind"] = json.dumps(metadata)
    return nir.NIRGraph(nodes=builder.nodes, edges=builder.edges, metadata=graph_metadata)


def checkpoint_to_graph(path) -> nir.NIRGraph:
    from spikingmind.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, dtype=torch.float64)
    return model_to_graph(ckpt.model, export_metadata(ckpt))


def graph_metadata(graph: nir.NIRGraph, source: str = "graph") -> dict:
    """The spikingmind metadata of an exported graph (JSON string, bytes after nir.read)."""
    raw = graph.metadata.get("spikingmind")
    if raw is None:
        raise GraphError(f"{source}: no spikingmind metadata; not exported by spikingmind")
    if isinstance(raw, np.ndarray):
        raw = raw.item()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise GraphError(f"{source}: corrupt spikingmind metadata ({error})") from None


def load_or_export_graph(source) -> nir.NIRGraph:
    """A .nir file (validated) or a checkpoint folder (exported in memory)."""
    from spikingmind.export.reference import load_graph

    path = Path(source)
    if path.is_dir():
        return checkpoint_to_graph(path)
    return load_graph(path)


def write_graph(graph: nir.NIRGraph, out: str | Path, force: bool = False) -> Path:
    refuse_overwrite(out, force)
    with atomic_path(out, suffix=".nir") as tmp:
        nir.write(str(tmp), graph)
    return Path(out)


def export(checkpoint, out, force: bool = False, portable: bool = False) -> Path:
    """Registry entry point: checkpoint folder -> model.nir. With `portable`, the standard graph
    rewritten for the nirtorch / snnTorch / norse readers and verified against it
    (`export.nir_portable`; the source may then also be a standard .nir)."""
    if portable:
        from spikingmind.export import nir_portable

        return nir_portable.export(checkpoint, out, force)
    return write_graph(checkpoint_to_graph(checkpoint), out, force)


# ---------------------------------------------------------------------------- closed-loop policy


class NIRReferencePolicy(NIRPolicy):
    """An exported graph run by the NumPy reference simulator as a closed-loop policy:
    `reference.NIRPolicy` plus the env/token context and spike statistics."""

    def __init__(self, graph: nir.NIRGraph, source: str = "graph", record: bool = False):
        from spikingmind.rollout import SpikeTally, policy_context

        super().__init__(graph, record=record)
        self.meta = graph_metadata(graph, source)
        self.spec, self.layout, self.norm = policy_context(self.meta, source)
        self.tally = SpikeTally()

    @classmethod
    def from_file(cls, path, record: bool = True) -> "NIRReferencePolicy":
        from spikingmind.export.reference import load_graph

        return cls(load_graph(path), str(path), record=record)

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        logits = super().logits(tokens)
        if self.record and self.last_records:
            spiking = {name: values for name, values in self.last_records.items()
                       if isinstance(self.graph.nodes[name], (nir.LIF, nir.Threshold))}
            self.tally.add(spiking, len(tokens))
        return logits

    def spike_stats(self) -> dict:
        return self.tally.stats()
