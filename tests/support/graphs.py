"""Small NIR graphs for the tests: node builders, chains, and graphs of SEMANTICS.md's "Model
shape" (the Lava, fixed-point and reference tests).

`dyadic=True` draws every weight, bias and input as a multiple of 2**-6 with few bits, so
all float64 sums are exact in any order: Lava's floating_pt run must then agree with the
reference bit for bit, whatever order Lava accumulates in.
"""

from __future__ import annotations

import json

import nir
import numpy as np

from spikingmind import units

DT = units.DT


def graph(nodes, edges, metadata=None) -> nir.NIRGraph:
    """A graph as given (NIR's own type inference off), metadata dt and T = 4 by default."""
    meta = {"dt": DT, "time_steps": 4} if metadata is None else metadata
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def lif(shape, beta=0.5, threshold=1.0) -> nir.LIF:
    """A LIF of our exports' form (v = beta v + I, zero reset) with the given decay and threshold."""
    p = units.lif_parameters(np.full(shape, beta))
    return nir.LIF(tau=p["tau"], r=p["r"], v_leak=p["v_leak"],
                   v_threshold=np.full(shape, threshold), v_reset=np.zeros(shape))


def conv(weight, bias=None, n_in=None, stride=1, padding=0, dilation=1, groups=1) -> nir.Conv1d:
    bias = np.zeros(weight.shape[0]) if bias is None else bias
    return nir.Conv1d(input_shape=n_in, weight=weight, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=bias)


def chain(*middle, shape=(3,), metadata=None, extra_edges=()) -> nir.NIRGraph:
    """Input -> the (name, node) pairs in order -> Output, plus `extra_edges`."""
    nodes = {"in": nir.Input(np.array(shape))}
    names = ["in"]
    for name, node in middle:
        nodes[name] = node
        names.append(name)
    nodes["out"] = nir.Output(np.array(shape))
    names.append("out")
    edges = list(zip(names[:-1], names[1:])) + list(extra_edges)
    return graph(nodes, edges, metadata)


def dt_graph(channels=8, tokens=6, features=5, n_out=2, blocks=1, time_steps=4, seed=0,
             dyadic=True, beta=0.75, action_kind="discrete") -> nir.NIRGraph:
    """Spiking Decision Transformer graph exactly as SEMANTICS.md's 'Model shape'."""
    rng = np.random.default_rng(seed)
    C, L = channels, tokens
    grid = (C, L)

    def draw(scale, size):
        values = rng.normal(0, scale, size)
        return np.round(values * 64) / 64 if dyadic else values

    def pointwise(c_out, c_in):
        return conv(draw(0.6, (c_out, c_in, 1)), draw(0.3, c_out), L)

    def causal_mix():
        weight = np.zeros((C, C, 2 * L - 1))
        decay = rng.choice([0.5, 0.75, 0.875], C) if dyadic else rng.uniform(0.5, 0.9, C)
        for d in range(L):
            weight[np.arange(C), np.arange(C), L - 1 - d] = decay ** d
        return conv(weight, draw(0.1, C), L, padding=L - 1)

    nodes = {"input": nir.Input(np.array([features, L])), "embed": pointwise(C, features)}
    edges = [("input", "embed")]
    residual = ["embed"]

    def add(name, node, *sources):
        nodes[name] = node
        edges.extend((s, name) for s in sources)

    for b in range(blocks):
        a = f"b{b}.attn"
        add(f"{a}.lif_in", lif(grid, beta), *residual)
        for proj in "qkv":
            add(f"{a}.{proj}", pointwise(C, C), f"{a}.lif_in")
            add(f"{a}.{proj}_lif", lif(grid, beta), f"{a}.{proj}")
        add(f"{a}.kv_and", nir.Threshold(np.full(grid, 1.5)), f"{a}.k_lif", f"{a}.v_lif")
        add(f"{a}.mix", causal_mix(), f"{a}.kv_and")
        add(f"{a}.kv_lif", lif(grid, beta), f"{a}.mix")
        add(f"{a}.qkv_and", nir.Threshold(np.full(grid, 1.5)), f"{a}.q_lif", f"{a}.kv_lif")
        add(f"{a}.out_proj", pointwise(C, C), f"{a}.qkv_and")
        residual.append(f"{a}.out_proj")
        m = f"b{b}.mlp"
        add(f"{m}.lif_in", lif(grid, beta), *residual)
        add(f"{m}.fc1", pointwise(2 * C, C), f"{m}.lif_in")
        add(f"{m}.hidden_lif", lif((2 * C, L), beta), f"{m}.fc1")
        add(f"{m}.fc2", pointwise(C, 2 * C), f"{m}.hidden_lif")
        residual.append(f"{m}.fc2")
    add("head.lif", lif(grid, beta), *residual)
    add("head.readout", pointwise(n_out, C), "head.lif")
    add("output", nir.Output(np.array([n_out, L])), "head.readout")
    extra = {"action_kind": action_kind, "context_length": L // 3, "token_features": features}
    if action_kind == "continuous":
        extra |= {"action_low": [-2.0] * n_out, "action_high": [1.0] * n_out}
    metadata = {"dt": DT, "time_steps": time_steps, "spikingmind": json.dumps(extra)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def decision_inputs(graph: nir.NIRGraph, n: int, seed: int = 1, dyadic: bool = True) -> np.ndarray:
    """(n, D_in, L) inputs; dyadic ones are multiples of 2**-4 in about [-2, 2]."""
    shape = tuple(int(x) for x in np.asarray(graph.nodes["input"].input_type["input"]).reshape(-1))
    values = np.random.default_rng(seed).normal(0, 1.0, (n, *shape))
    return np.round(values * 16) / 16 if dyadic else values


def dyadic_stream_graph(seed=0, width=8, blocks=2, time_steps=3, features=7) -> nir.NIRGraph:
    """A random streaming spiking DT (model.history "stream") exported to NIR, every Conv1d
    weight and bias then rounded to a multiple of 2**-6 and every mix decay drawn from
    {0.5, 0.75, 0.875}: with dyadic tokens every sum Lava orders otherwise is exact, and the
    carried trace (g * trace + kv, the same two operations on both sides) is bit for bit."""
    import torch

    from spikingmind.export.nir import model_to_graph
    from spikingmind.model import DecisionTransformer, ModelConfig
    from tests.support.checkpoints import randomise_batch_norms

    torch.manual_seed(seed)
    cfg = ModelConfig(kind="snn", width=width, n_blocks=blocks, context_length=4, time_steps=time_steps,
                      history="stream")
    model = DecisionTransformer(cfg, features, 2).double()
    randomise_batch_norms(model, torch.Generator().manual_seed(seed))
    exported = model_to_graph(model.eval(), {"action_kind": "discrete", "streaming": {"tokens": "one per run"},
                                             "decode": {"token_index": 0}, "time_steps": time_steps})
    rng = np.random.default_rng(seed)
    traces = {a for a, b in exported.edges if isinstance(exported.nodes[b], nir.Delay)}
    nodes = {}
    for name, node in exported.nodes.items():
        if isinstance(node, nir.Conv1d) and name not in traces:
            node = nir.Conv1d(input_shape=node.input_shape, weight=np.round(np.asarray(node.weight) * 64) / 64,
                              stride=node.stride, padding=node.padding, dilation=node.dilation, groups=node.groups,
                              bias=np.round(np.asarray(node.bias) * 64) / 64)
        elif isinstance(node, nir.Scale):
            decay = rng.choice([0.5, 0.75, 0.875], np.shape(node.scale)[0])[:, None]
            node = nir.Scale(scale=np.broadcast_to(decay, np.shape(node.scale)).copy())
        nodes[name] = node
    return nir.NIRGraph(nodes=nodes, edges=list(exported.edges), metadata=exported.metadata, type_check=False)


def stream_episode(steps: int, features: int = 7, seed: int = 1) -> list[np.ndarray]:
    """One episode's decisions as a streaming policy gets them: (return-to-go, state), then
    (action, return-to-go, state) per step; dyadic tokens (multiples of 2**-4), the last
    feature the timestep t / 512."""
    tokens = np.round(np.random.default_rng(seed).normal(0, 1.5, (3 * steps, features)) * 16) / 16
    tokens[:, -1] = np.arange(3 * steps) // 3 / 512
    tokens = tokens[:-1]
    return [tokens[:2]] + [tokens[i:i + 3] for i in range(2, len(tokens), 3)]
