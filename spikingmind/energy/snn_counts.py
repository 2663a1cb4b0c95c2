"""Operation and memory counts of a spiking NIR graph, from its recorded spikes.

Input: a `nir.NIRGraph` and the reference simulator's records, `{node: (T, B, *shape)}`
of every node's output at every step (docs/SEMANTICS.md, "Spike records"); B indexes the
recorded decisions. Every count is a per-decision average over those B decisions and a
sum over the T steps of a decision. Names follow NeuroBench (Yik et al. 2025):
`effective_acs`, `effective_macs`, `dense_ops`, `activation_sparsity`.

The graph must be valid under `spikingmind.graph` (the rule the reference simulator applies:
GraphError otherwise); layers are counted in its evaluation order, and Conv1d positions follow
its one Conv1d geometry.

Conventions (the "why" of each number):
- A weighted node (Conv1d, Affine, Linear, Scale) is *binary-driven* when every recorded
  value of every source is 0 or 1 (checked on the records, not guessed from node types).
  Then each incoming spike costs one accumulate (AC) per nonzero weight it drives
  (its nonzero fan-out: the diagonal causal Conv1d counts only its nonzero taps, and
  only the taps that land on a real output position). Otherwise the node does one
  multiply-accumulate (MAC) per nonzero weight for each *nonzero* input value.
- `dense_ops`: what a dense implementation does: every weight (zeros included) times
  every input position, every step.
- Each weighted op reads its weight from memory (no on-chip weight reuse); a nonzero
  bias adds one add (and one weight read) per output value per step.
- Unweighted edges into a neuron node (e.g. the two spike inputs of the `Threshold` AND
  gates) are identity synapses: each incoming spike (or nonzero real value) counts one AC.
- Neuron nodes (LIF, IF, LI, I, CubaLIF, Threshold): one update per neuron per step. A
  neuron-step is *active* when any source is nonzero at it. Each update reads and writes
  every state variable (membrane; CubaLIF also its synaptic current; Threshold none).
- Spikes = sum of binary neuron outputs; spike_rate = spikes / (neurons x T).
- A real-valued weighted node whose input is the same at every step (the encoder reads the
  decision's tokens, shown at every one of the T steps) is counted once per decision: a host
  computes the currents once and holds them (NeuroBench counts it so too).

Accountings. `count_snn(..., needed=...)` counts only the output elements a deployment
computes: `decision_cone(graph, token)` marks, backwards from the `Output` column of the
decision token, every element of every node that column depends on through a nonzero
weight. That is what `DecisionTransformer.decide` and the event runtime compute: every
block but the last on the tokens up to the decision token, the last block's k and v there
and everything after the causal mix at the decision token alone. Without `needed` every
element of every node is counted (the whole window, as the graph is written).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from spikingmind.errors import GraphError
from spikingmind.graph import conv_geometry, plan_graph

WEIGHTED_NODES = ("Conv1d", "Affine", "Linear", "Scale")
#: Neuron node type -> number of state variables read and written per update.
NEURON_STATE_VARIABLES = {"LIF": 1, "IF": 1, "LI": 1, "I": 1, "CubaLIF": 2, "Threshold": 0}
#: Per-decision quantities (sums over T, means over decisions).
_SUMMED = ("effective_acs", "effective_macs", "dense_ops", "bias_adds", "weight_reads", "input_reads",
           "incoming_events", "nonzero_input_ops", "nonzero_inputs", "dense_ops_all_steps", "bias_adds_all_steps",
           "neuron_updates", "neuron_updates_active", "state_reads", "state_writes", "spikes")


@dataclass
class LayerCounts:
    """Counts of one NIR node, per decision (sum over T steps, mean over decisions)."""

    name: str
    node_type: str
    kind: str  # "synaptic" (weighted node) or "neuron"
    input_binary: bool
    effective_acs: float = 0.0
    effective_macs: float = 0.0
    dense_ops: float = 0.0
    bias_adds: float = 0.0
    weight_reads: float = 0.0
    input_reads: float = 0.0  # nonzero real-valued inputs a MAC layer reads
    # raw tallies over every step, that let chunks be merged before deciding binary vs
    # real-valued and whether the input repeats at every step (see `_classify`):
    incoming_events: float = 0.0  # sum over sources of nonzero inputs x fan-out
    nonzero_input_ops: float = 0.0  # nonzero summed inputs x fan-out
    nonzero_inputs: float = 0.0
    dense_ops_all_steps: float = 0.0
    bias_adds_all_steps: float = 0.0
    input_step_invariant: bool = False  # every source shows the same values at every step
    weights: int = 0
    nonzero_weights: int = 0
    neurons: float = 0  # neurons computed per decision (an integer but for means over streaming decisions)
    neuron_updates: float = 0.0
    neuron_updates_active: float = 0.0
    state_reads: float = 0.0
    state_writes: float = 0.0
    spikes: float = 0.0
    spike_rate: float | None = None
    activation_sparsity: float | None = None
    once_per_decision: bool = False  # a real-valued node with a step-invariant input: counted for one step


@dataclass
class SNNCounts:
    """Per-layer and total counts of one graph over the recorded decisions."""

    time_steps: int
    decisions: int
    layers: list[LayerCounts] = field(default_factory=list)

    def total(self, name: str) -> float:
        return float(sum(getattr(layer, name) for layer in self.layers))

    @property
    def spiking_neuron_steps(self) -> float:
        return float(sum(l.neurons * self.time_steps for l in self.layers if l.spike_rate is not None))

    @property
    def spike_rate(self) -> float:
        """Mean spike rate over all spiking neurons and steps (spikes per neuron per step)."""
        steps = self.spiking_neuron_steps
        return self.total("spikes") / steps if steps else 0.0

    @property
    def activation_sparsity(self) -> float:
        return 1.0 - self.spike_rate if self.spiking_neuron_steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        names = ("effective_acs", "effective_macs", "dense_ops", "bias_adds", "weight_reads", "input_reads",
                 "neuron_updates", "neuron_updates_active", "state_reads", "state_writes", "spikes")
        return {
            "time_steps": self.time_steps,
            "decisions": self.decisions,
            "per": "decision",
            "spike_rate": self.spike_rate,
            "activation_sparsity": self.activation_sparsity,
            "totals": {name: self.total(name) for name in names},
            "layers": [asdict(layer) for layer in self.layers],
        }


def count_snn(graph, records: Mapping[str, np.ndarray], needed: Mapping[str, np.ndarray] | None = None) -> SNNCounts:
    """Count ops, memory accesses and spikes per node of `graph` from `records`.

    `records[node]`: array (T, B, *output_shape) for every node that feeds a counted node.
    `needed[node]`: bool mask of the node's output shape, the elements a deployment computes
    (`decision_cone`); None counts every element.
    Raises GraphError on an invalid graph, a missing record, inconsistent T/B, or an
    unsupported weighted node.
    """
    order = plan_graph(graph).order
    sources: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        sources.setdefault(dst, []).append(src)
    if not records:
        raise GraphError("no spike records to count")
    shapes = {np.asarray(r).shape[:2] for r in records.values()}
    if len(shapes) != 1:
        raise GraphError(f"records disagree on (T, B): {sorted(shapes)}")
    (time_steps, decisions), = shapes
    if time_steps == 0 or decisions == 0:
        raise GraphError("records hold no steps or no decisions")

    def record(name: str, consumer: str) -> np.ndarray:
        if name not in records:
            raise GraphError(f"no record of node {name!r} (feeds {consumer!r}); record every node")
        return np.asarray(records[name])

    counts = SNNCounts(time_steps=int(time_steps), decisions=int(decisions))
    for name in order:
        node = graph.nodes[name]
        node_type = type(node).__name__
        if node_type not in WEIGHTED_NODES and node_type not in NEURON_STATE_VARIABLES:
            continue  # Input, Output, Flatten, Delay: no arithmetic
        inputs = [record(src, name) for src in sources.get(name, [])]
        if not inputs:
            raise GraphError(f"node {name!r} has no incoming edge")
        binary = all(_is_binary(x) for x in inputs)
        mask = None if needed is None else np.asarray(needed[name], dtype=bool)
        if node_type in WEIGHTED_NODES:
            layer = _count_weighted(name, node, node_type, inputs, binary, mask)
        else:
            own = records.get(name)
            weighted_sources = [type(graph.nodes[s]).__name__ in WEIGHTED_NODES for s in sources[name]]
            layer = _count_neuron(name, node_type, inputs, weighted_sources, own, binary, mask)
        for attr in _SUMMED:
            setattr(layer, attr, float(getattr(layer, attr)) / decisions)
        counts.layers.append(layer)
    return counts


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def _count_weighted(name, node, node_type, inputs, binary, mask=None) -> LayerCounts:
    in_shape = inputs[0].shape[2:]
    for x in inputs[1:]:
        if x.shape[2:] != in_shape:
            raise GraphError(f"node {name!r}: incoming records have shapes {[i.shape[2:] for i in inputs]}")
    T = inputs[0].shape[0]
    weight, bias = _weight_and_bias(node, node_type)
    fanout, dense_per_output, n_outputs = _fanout(name, node, node_type, in_shape, mask)
    if mask is None:
        mask = np.ones(n_outputs, dtype=bool)
    elif mask.shape != tuple(n_outputs):
        raise GraphError(f"node {name!r}: mask of shape {mask.shape} for outputs {tuple(n_outputs)}")
    layer = LayerCounts(name=name, node_type=node_type, kind="synaptic", input_binary=binary,
                        weights=int(weight.size), nonzero_weights=int(np.count_nonzero(weight)))
    # each spike of each source drives its nonzero fan-out to computed outputs (sources may coincide)
    layer.incoming_events = sum(float(np.sum((x != 0).sum(axis=(0, 1)) * fanout)) for x in inputs)
    summed = inputs[0].astype(np.float64)
    for x in inputs[1:]:
        summed = summed + x
    nonzero = (summed != 0).sum(axis=(0, 1))
    layer.nonzero_input_ops = float(np.sum(nonzero * fanout))
    layer.nonzero_inputs = float(np.sum(nonzero * (fanout > 0)))  # inputs a computed output reads
    batch_size = inputs[0].shape[1]
    layer.dense_ops_all_steps = float(dense_per_output) * float(mask.sum()) * T * batch_size
    if bias is not None and node_type == "Conv1d" and bias.ndim == 1:
        bias = bias[:, None]  # one bias per output channel, at every position
    nonzero_bias = 0 if bias is None else int(np.count_nonzero(np.broadcast_to(bias, n_outputs) * mask))
    layer.bias_adds_all_steps = float(nonzero_bias) * T * batch_size
    layer.input_step_invariant = all(np.array_equal(x[0], x[t]) for x in inputs for t in range(1, T))
    _classify(layer, T)
    return layer


def _classify(layer: LayerCounts, time_steps: int) -> None:
    """Turn the raw tallies of a weighted node into ACs (binary input) or MACs (real-valued);
    a real-valued input that repeats at every step is counted for one step (once per decision)."""
    layer.once_per_decision = not layer.input_binary and layer.input_step_invariant
    share = 1.0 / time_steps if layer.once_per_decision else 1.0
    layer.dense_ops, layer.bias_adds = layer.dense_ops_all_steps * share, layer.bias_adds_all_steps * share
    if layer.input_binary:
        layer.effective_acs, layer.effective_macs, layer.input_reads = layer.incoming_events, 0.0, 0.0
    else:
        layer.effective_acs, layer.effective_macs = 0.0, layer.nonzero_input_ops * share
        layer.input_reads = layer.nonzero_inputs * share
    layer.weight_reads = layer.effective_acs + layer.effective_macs + layer.bias_adds


def _weight_and_bias(node, node_type) -> tuple[np.ndarray, np.ndarray | None]:
    if node_type == "Scale":
        return np.asarray(node.scale, dtype=np.float64), None
    weight = np.asarray(node.weight, dtype=np.float64)
    bias = getattr(node, "bias", None)
    return weight, (None if bias is None else np.asarray(bias, dtype=np.float64))


def _fanout(name, node, node_type, in_shape, mask=None) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """Nonzero weights that connect each input element to a computed output (all outputs when
    `mask` is None), the dense ops of one output element per step, and the output shape."""
    if node_type in ("Affine", "Linear"):
        weight = np.asarray(node.weight)
        if weight.ndim != 2 or in_shape[-1:] != (weight.shape[1],):
            raise GraphError(f"node {name!r}: weight {weight.shape} does not match input {in_shape}")
        out_shape = tuple(in_shape[:-1]) + (weight.shape[0],)
        nonzero = (weight != 0).astype(np.int64)  # (out, in)
        if mask is None:
            fanout = np.broadcast_to(nonzero.sum(axis=0), in_shape)
        else:
            fanout = _checked_mask(name, mask, out_shape).astype(np.int64) @ nonzero  # (..., in)
        return fanout, weight.shape[1], out_shape
    if node_type == "Scale":
        scale = np.asarray(node.scale)
        fanout = np.broadcast_to((scale != 0).astype(np.int64), in_shape)
        if mask is not None:
            fanout = fanout * _checked_mask(name, mask, tuple(in_shape))
        return fanout, 1, tuple(in_shape)
    if node_type == "Conv1d":
        return _conv1d_fanout(name, node, in_shape, mask)
    raise GraphError(f"node {name!r}: unsupported weighted node {node_type}")


def _checked_mask(name, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if mask.shape != shape:
        raise GraphError(f"node {name!r}: mask of shape {mask.shape} for outputs {shape}")
    return mask


def _conv1d_fanout(name, node, in_shape, mask=None) -> tuple[np.ndarray, int, tuple[int, ...]]:
    weight = np.asarray(node.weight)  # (C_out, C_in / groups, K)
    if len(in_shape) != 2:
        raise GraphError(f"node {name!r}: Conv1d input must be (C_in, N), got {in_shape}")
    c_in, n_in = in_shape
    c_out, _, kernel, stride, dilation, groups, pad, n_out = conv_geometry(node, n_in)  # the graph's geometry
    c_group = weight.shape[1]
    pad_left = pad[0]
    wanted = np.ones((c_out, n_out), dtype=np.int64) if mask is None else \
        _checked_mask(name, mask, (c_out, n_out)).astype(np.int64)
    # input n feeds output p through tap k iff n = p*stride - pad_left + k*dilation, 0 <= p < n_out
    nonzero = (weight != 0).astype(np.int64)  # (C_out, C_group, K)
    per_out = c_out // groups
    fanout = np.zeros((c_in, n_in), dtype=np.int64)
    positions = np.arange(n_in)
    for k in range(kernel):
        offset = positions + pad_left - k * dilation
        valid = (offset >= 0) & (offset % stride == 0) & (offset // stride < n_out)
        if not valid.any():
            continue
        reached = wanted[:, (offset // stride)[valid]]  # (C_out, n_valid): is the output it reaches computed?
        for g in range(groups):
            rows = slice(g * per_out, (g + 1) * per_out)
            fanout[g * c_group:(g + 1) * c_group, valid] += nonzero[rows, :, k].T @ reached[rows]
    return fanout, c_group * kernel, (c_out, n_out)


def _count_neuron(name, node_type, inputs, weighted_sources, own, binary, mask=None) -> LayerCounts:
    shape = inputs[0].shape[2:]
    T, B = inputs[0].shape[:2]
    mask = np.ones(shape, dtype=bool) if mask is None else _checked_mask(name, mask, tuple(shape))
    neurons = int(mask.sum())
    layer = LayerCounts(name=name, node_type=node_type, kind="neuron", input_binary=binary, neurons=neurons)
    active = np.zeros(inputs[0].shape, dtype=bool)
    for x, weighted in zip(inputs, weighted_sources):
        active |= x != 0
        if not weighted:
            # identity synapse: one accumulate per incoming spike / nonzero value into a computed neuron
            layer.effective_acs += float(np.count_nonzero((x != 0) & mask))
    layer.neuron_updates = float(neurons) * T * B
    layer.neuron_updates_active = float((active & mask).sum())
    state = NEURON_STATE_VARIABLES[node_type]
    layer.state_reads = layer.neuron_updates * state
    layer.state_writes = layer.neuron_updates * state
    if own is None:
        if node_type in ("LIF", "IF", "CubaLIF", "Threshold"):
            raise GraphError(f"no record of spiking node {name!r}: its spikes cannot be counted")
    else:
        own = np.asarray(own)
        if _is_binary(own) and node_type != "LI" and node_type != "I" and neurons:
            layer.spikes = float((own * mask).sum())
            layer.spike_rate = layer.spikes / (neurons * T * B)
            layer.activation_sparsity = 1.0 - layer.spike_rate
    return layer


def decision_cone(graph, token: int, shapes: Mapping[str, tuple[int, ...]],
                  output: str | None = None) -> dict[str, np.ndarray]:
    """Which output elements of every node the `Output` column `token` depends on.

    Walks the graph backwards from `output[:, token]` (the one Output node when not named):
    a neuron, Delay or Output needs its inputs where it is needed; a weighted node needs an
    input element when a nonzero weight connects it to a needed output. `shapes`: every
    node's output shape (e.g. the record shapes without (T, B)). Returns node name -> bool
    mask of the node's output shape. Nodes of unknown kind need all of their inputs.
    """
    outputs = [n for n, node in graph.nodes.items() if type(node).__name__ == "Output"]
    output = output or (outputs[0] if len(outputs) == 1 else None)
    if output is None:
        raise GraphError(f"name the Output node to count from; the graph has {outputs}")
    if not 0 <= token < tuple(shapes[output])[-1]:
        raise GraphError(f"decision token {token} is outside the Output's {tuple(shapes[output])[-1]} positions")
    seed = np.zeros(tuple(shapes[output]), dtype=bool)
    seed[..., token] = True
    return cone(graph, shapes, {output: seed})


def carried_cone(graph, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """What a streaming graph's run must compute for the runs after it: everything its Delay
    nodes (the carried state) depend on. A return-to-go or action token's run needs only this;
    a state token's run also the decision (`decision_cone` joined with it)."""
    return cone(graph, shapes, {name: np.ones(tuple(shapes[name]), dtype=bool)
                                for name, node in graph.nodes.items() if type(node).__name__ == "Delay"})


def cone(graph, shapes: Mapping[str, tuple[int, ...]], seeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The elements of every node that the `seeds` (node -> bool mask of its output) depend on,
    the seeds included (see `decision_cone` for the rules)."""
    shapes = {name: tuple(shapes[name]) for name in graph.nodes}
    needed = {name: np.zeros(shape, dtype=bool) for name, shape in shapes.items()}
    for name, mask in seeds.items():
        needed[name] |= np.asarray(mask, dtype=bool)
    sources: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        sources.setdefault(dst, []).append(src)
    order = plan_graph(graph).order
    changed = True
    while changed:  # a single backward pass for a DAG; recurrent graphs repeat until nothing changes
        changed = False
        for name in reversed(order):
            if not needed[name].any() or name not in sources:
                continue
            node = graph.nodes[name]
            node_type = type(node).__name__
            for src in sources[name]:
                if node_type in WEIGHTED_NODES:
                    want = _fanout(name, node, node_type, shapes[src], needed[name])[0] > 0
                elif needed[name].shape == shapes[src]:
                    want = needed[name]
                else:
                    want = np.ones(shapes[src], dtype=bool)
                grown = needed[src] | want
                if not np.array_equal(grown, needed[src]):
                    needed[src], changed = grown, True
    return needed


def add_runs(parts: list[SNNCounts]) -> SNNCounts:
    """One decision's counts from the counts of its runs (a streaming graph runs once per new
    token): per-decision quantities and neurons add up, over the same decisions."""
    if not parts:
        raise GraphError("no runs to add")
    first = parts[0]
    for part in parts[1:]:
        if (part.time_steps, part.decisions) != (first.time_steps, first.decisions) or \
                [l.name for l in part.layers] != [l.name for l in first.layers]:
            raise GraphError("cannot add runs of different graphs, time steps or decisions")
    total = SNNCounts(time_steps=first.time_steps, decisions=first.decisions)
    for index, layer in enumerate(first.layers):
        out = LayerCounts(**asdict(layer))
        out.input_binary = all(p.layers[index].input_binary for p in parts)
        out.input_step_invariant = all(p.layers[index].input_step_invariant for p in parts)
        out.neurons = sum(p.layers[index].neurons for p in parts)
        for attr in _SUMMED:
            setattr(out, attr, sum(getattr(p.layers[index], attr) for p in parts))
        if out.kind == "synaptic":
            _classify(out, first.time_steps)
        if layer.spike_rate is not None or any(p.layers[index].spike_rate is not None for p in parts):
            out.spike_rate = out.spikes / (out.neurons * first.time_steps) if out.neurons else 0.0
            out.activation_sparsity = 1.0 - out.spike_rate
        total.layers.append(out)
    return total


def merge_counts(parts: list[SNNCounts]) -> SNNCounts:
    """Combine counts of several batches of decisions of the same graph (decision-weighted mean).

    Lets a caller simulate and count a long recording in chunks without holding every record.
    """
    if not parts:
        raise GraphError("no counts to merge")
    first = parts[0]
    for part in parts[1:]:
        if part.time_steps != first.time_steps or [l.name for l in part.layers] != [l.name for l in first.layers]:
            raise GraphError("cannot merge counts of different graphs or time steps")
    decisions = sum(p.decisions for p in parts)
    merged = SNNCounts(time_steps=first.time_steps, decisions=decisions)
    for index, layer in enumerate(first.layers):
        out = LayerCounts(**asdict(layer))
        out.input_binary = all(p.layers[index].input_binary for p in parts)
        out.input_step_invariant = all(p.layers[index].input_step_invariant for p in parts)
        for attr in _SUMMED:
            setattr(out, attr, sum(getattr(p.layers[index], attr) * p.decisions for p in parts) / decisions)
        neurons = [p.layers[index].neurons for p in parts]
        if len(set(neurons)) > 1:  # decisions of a streaming graph made of 2 or 3 runs: neurons computed per decision
            out.neurons = sum(n * p.decisions for n, p in zip(neurons, parts)) / decisions
        if out.kind == "synaptic":
            _classify(out, first.time_steps)  # binary (step-invariant) only if every chunk's inputs were
        if layer.spike_rate is not None:
            out.spike_rate = out.spikes / (out.neurons * first.time_steps)
            out.activation_sparsity = 1.0 - out.spike_rate
        merged.layers.append(out)
    return merged
