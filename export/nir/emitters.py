"""The spiking DT as NIR nodes: one dict maps module types to emitters (docs/SEMANTICS.md, "Model shape").

An emitter adds the module's nodes and edges to the graph under construction and returns
the names of the nodes whose outputs, summed, are the module's output (the residual stream
is such a list: NIR adds up the edges into a node). A module type without an emitter stops
the export with its path in the model. BatchNorm is folded into the affine map before it
(`spikingmind.folding`); everything is written in float64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import nir
import numpy as np
import torch
from torch import nn

from spikingmind import units
from spikingmind.errors import GraphError, UnsupportedModuleError
from spikingmind.folding import as_float64, fold_batch_norm, fold_token_linears
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
    time_steps: int = 1  # SNN steps per token run (a streaming graph's trace waits that long)
    streaming: bool = False  # one token per run, the causal mix carried by Delay + Scale feedback
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


def token_conv(builder: GraphBuilder, name: str, weight: np.ndarray, bias: np.ndarray, sources: list[str]) -> list[str]:
    """A per-token affine map (C_out, C_in) as a kernel-1 Conv1d over the token axis."""
    node = nir.Conv1d(input_shape=builder.n_tokens, weight=weight[:, :, None], stride=1, padding=0,
                      dilation=1, groups=1, bias=bias)
    return builder.add(name, node, sources, (weight.shape[0], builder.n_tokens))


# ---------------------------------------------------------------------------- emitters


def emit_linear(module: nn.Linear, path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    bias = as_float64(module.bias) if module.bias is not None else np.zeros(module.out_features)
    return token_conv(b, path, as_float64(module.weight), bias, sources)


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
    """Decay-weighted causal sum as a Conv1d: kernel 2L-1, padding L-1, only past taps.
    A streaming graph carries it from token to token instead (`emit_streaming_mix`)."""
    if b.streaming:
        return emit_streaming_mix(module, path, sources, b)
    matrix = as_float64(module.mixing_matrix())  # (C, L, L), M[c, i, j] = g_c^(i-j)
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


def emit_streaming_mix(module: CausalDecayMix, path: str, sources: list[str], b: GraphBuilder) -> list[str]:
    """The mix of a streaming graph (one token per run of T steps; docs/SEMANTICS.md, "Streaming"):

        {path}.trace  Conv1d k=1, identity   <- kv_and, {path}.decay   trace = g * trace_prev + kv_and
        {path}.delay  Delay (T - 1) dt       <- {path}.trace           with the feedback edge: T steps
        {path}.decay  Scale g                <- {path}.delay           the trace of the last token's step t
        {path}        Conv1d k=1, diagonal   <- {path}.trace           the BatchNorm after the mix, folded

    The feedback edge out of the Delay reads its previous step, so the decay reads the trace
    T steps back: the same SNN step of the previous token (its state outlives the run).
    """
    channels = b.channels(sources)
    shape, identity = (channels, b.n_tokens), np.eye(channels)[:, :, None]
    decay = as_float64(torch.sigmoid(module.decay_logit.double()))  # as the model computes it
    scale, shift = fold_batch_norm(np.eye(channels)[:, :, None], np.zeros(channels), module.norm)
    trace = b.add(f"{path}.trace", nir.Conv1d(input_shape=b.n_tokens, weight=identity, stride=1, padding=0,
                                              dilation=1, groups=1, bias=np.zeros(channels)), sources, shape)
    delayed = b.add(f"{path}.delay", nir.Delay(delay=np.full(shape, (b.time_steps - 1) * units.DT)), trace, shape)
    b.add(f"{path}.decay", nir.Scale(scale=np.broadcast_to(decay[:, None], shape).copy()), delayed, shape)
    b.edges.append((f"{path}.decay", f"{path}.trace"))
    return b.add(path, nir.Conv1d(input_shape=b.n_tokens, weight=scale, stride=1, padding=0, dilation=1, groups=1,
                                  bias=shift), trace, shape)


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


# ---------------------------------------------------------------------------- graph


def model_to_graph(model: DecisionTransformer, metadata: dict | None = None) -> nir.NIRGraph:
    """The NIR graph of a spiking DT (standard nodes only), parameters in float64."""
    if isinstance(model, DecisionTransformer) and not model.spiking:
        emit_model(model, "", [], GraphBuilder(0))  # raises the ANN-twin error
    _check_children_covered(model)
    streaming = model.cfg.streaming
    n_tokens = 1 if streaming else model.cfg.n_tokens  # a streaming graph runs one token at a time
    builder = GraphBuilder(n_tokens, model.cfg.time_steps, streaming)
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

