"""`export --target nir --portable`: the standard graph rewritten so that the NIR readers of
nirtorch 2.6, snnTorch 1.0.0 and norse 1.1.0 run it spike for spike
(docs/THIRD_PARTY_READERS.md has the table and the upstream traps each rewrite avoids).

A rewrite of the standard graph (`nir.NIRGraph` in, `nir.NIRGraph` out), independent of the
model that produced it. Every rewrite keeps our reference semantics (docs/SEMANTICS.md):

- dt = 1e-4 s (snnTorch hard-codes it), each LIF's tau rescaled so that its decay
  beta = 1 - dt/tau is bit for bit the standard one;
- LIF r = 1 (norse ignores r): the input gain is then 1 - beta instead of 1, and the
  factor 1 / (1 - beta) (a power of two: exact in binary) is folded into the weights and
  bias of every Conv that feeds the LIF;
- Threshold (our AND of two spike trains) -> LIF with tau = dt (beta = 0, gain 1):
  v = x, spike when x > threshold, which is the Threshold's rule (snnTorch and norse map no
  Threshold);
- Conv1d on (C, L) -> Conv2d on (C, 1, L) (norse has no Conv1d). nir 1.0.8 infers a Conv2d's
  kernel size from one axis for both, so kernels are square: k x k with only the centre row
  nonzero, padding 1 row above and below;
- the causal decay mix (a diagonal Conv1d with kernel 2L-1, taps s_c g_c^d on the past) ->
  n = ceil(log2 L) dilated kernel-3 stages: prod_i (1 + g^(2^i) z^(2^i)) = sum_{d<2^n} g^d z^d,
  the scale s_c (the folded BatchNorm) and the shift applied once, on the last stage;
- zero-weight Conv2d "schedule" nodes (q_lif -> k, k_lif -> v per block) that make the
  depth-first pre-order in which `nirtorch.load` (norse, sinabs) runs a graph a topological
  order; each adds an exact 0 to its target's input.

Export verifies the rewrite in our reference simulator on real closed-loop decisions of the
standard graph: every spiking node of the standard graph, by name, must spike identically in
the portable one, and every action must agree, or the export fails with one ExportError line.

Why one file over 500 lines: the rewrite passes and the verification that they keep
every spike belong together; each pass is a short function in the order it runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np

from spikingmind import units
from spikingmind.errors import ExportError, GraphError

PORTABLE_DT = 1e-4  # s: snnTorch 1.0.0's import_nir hard-codes this dt for every LIF
READERS = {"nirtorch": "2.6", "snntorch": "1.0.0", "norse": "1.1.0"}
MIX_TAP_TOLERANCE = 1e-6  # |product of stage taps - standard tap| / max |tap| of the channel (float32 taps pass)
OUTPUT_TOLERANCE = 1e-12  # |portable - standard| output, relative to the output scale where that exceeds 1
CURRENT_TOLERANCE = 1e-12  # |portable / factor - standard| Conv output, relative to the node's largest |value|
SPIKING = (nir.LIF, nir.Threshold)
VERIFY_EPISODES, VERIFY_MAX_STEPS = 8, 40  # closed-loop decisions checked at export (<= 320)


# ---------------------------------------------------------------------------- rewrite


@dataclass
class _Rewrite:
    """The portable graph under construction and the note of what was rewritten."""

    dt: float
    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    renamed: dict[str, tuple[str, str]] = field(default_factory=dict)  # standard -> (first, last) portable node
    and_as_lif: list[str] = field(default_factory=list)
    gain_folded: dict[str, float] = field(default_factory=dict)
    mix_stages: dict[str, list[str]] = field(default_factory=dict)
    mix_tap_error: float = 0.0
    square_kernels: list[str] = field(default_factory=list)
    schedule_nodes: dict[str, list[str]] = field(default_factory=dict)


def _fail(name: str, node, why: str):
    raise ExportError(f"portable export: node '{name}' ({type(node).__name__}) {why}")


def _grid(shape) -> tuple[int, ...]:
    """(C, L) -> (C, 1, L): the token axis becomes the Conv2d's width, a unit height axis added."""
    return (shape[0], 1, *shape[1:])


def _conv_weight(name: str, node: nir.Conv1d) -> np.ndarray:
    """The Conv1d's weight as a dense (C_out, C_in, K) float64 array (grouped kernels expanded)."""
    weight = np.asarray(node.weight, dtype=np.float64)
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    if groups == 1:
        return weight
    c_out, c_group, kernel = weight.shape
    dense = np.zeros((c_out, c_group * groups, kernel))
    step = c_out // groups
    for g in range(groups):
        dense[g * step:(g + 1) * step, g * c_group:(g + 1) * c_group] = weight[g * step:(g + 1) * step]
    return dense


def _conv_int(node, field_name: str) -> int:
    value = getattr(node, field_name)
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        return -1
    return int(np.asarray(value).reshape(-1)[0])


def _causal_mix_stages(name: str, weight: np.ndarray, n_tokens: int) -> tuple[list[np.ndarray], float] | None:
    """Stage taps (a_0 .. a_{n-1}, each (C,)) and the scale s (C,) of a diagonal causal decay
    kernel w[c, c, L-1-d] = s_c g_c^d (d >= 0, zero on the future), or None if `weight` is not one.
    a_i = w_{2^i} / w_0 is read off the kernel itself; the product of the stages' taps must
    reproduce every tap within MIX_TAP_TOLERANCE (relative to the channel's largest tap)."""
    channels, c_in, kernel = weight.shape
    if c_in != channels or kernel != 2 * n_tokens - 1:
        return None
    off = weight.copy()
    off[np.arange(channels), np.arange(channels)] = 0.0
    if off.any():
        return None
    taps = weight[np.arange(channels), np.arange(channels)]  # (C, K)
    if taps[:, n_tokens:].any():  # a future tap: not causal
        return None
    past = taps[:, n_tokens - 1::-1]  # (C, L): past[c, d] = w_d, lag d
    scale = past[:, 0]
    n_stages = max(1, math.ceil(math.log2(n_tokens)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = [np.where(scale != 0, past[:, 2 ** i] / scale, 0.0) for i in range(n_stages)]
    lags = np.arange(n_tokens)
    product = scale[:, None] * np.ones((channels, n_tokens))
    for i, ratio in enumerate(ratios):
        product = np.where((lags >> i) & 1, product * ratio[:, None], product)
    size = np.maximum(np.abs(past).max(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    error = float((np.abs(product - past) / size).max())
    if not error <= MIX_TAP_TOLERANCE:
        return None
    return [*ratios, scale], error


def _conv2d(weight4: np.ndarray, bias: np.ndarray, n_tokens: int, padding, dilation) -> nir.Conv2d:
    return nir.Conv2d(input_shape=(1, n_tokens), weight=weight4, stride=(1, 1), padding=padding,
                      dilation=dilation, groups=1, bias=bias)


def _rewrite_conv(rw: _Rewrite, name: str, node: nir.Conv1d, n_tokens: int, factor: np.ndarray) -> None:
    """Conv1d -> Conv2d node(s), the LIF gain factor (C_out,) folded into the output channels."""
    weight = _conv_weight(name, node)
    bias = np.broadcast_to(np.asarray(node.bias, dtype=np.float64), weight.shape[:1]) * factor
    stride, dilation, padding = _conv_int(node, "stride"), _conv_int(node, "dilation"), _conv_int(node, "padding")
    kernel = weight.shape[2]
    if stride != 1:
        _fail(name, node, f"has stride {stride}; the portable export writes stride-1 convolutions only")
    if kernel == 1 and padding == 0:
        rw.nodes[name] = _conv2d(weight[:, :, None, :] * factor[:, None, None, None], bias, n_tokens, (0, 0), (1, 1))
        rw.renamed[name] = (name, name)
        return
    mix = _causal_mix_stages(name, weight, n_tokens) if (dilation, padding) == (1, n_tokens - 1) else None
    if mix is not None:
        (*ratios, scale), error = mix
        rw.mix_tap_error = max(rw.mix_tap_error, error)
        channels = weight.shape[0]
        diag = np.arange(channels)
        stages = []
        for i, ratio in enumerate(ratios):
            last = i == len(ratios) - 1
            gain = scale * factor if last else np.ones(channels)  # BatchNorm scale and LIF gain: once
            stage = np.zeros((channels, channels, 3, 3))
            stage[diag, diag, 1, 1] = gain  # this token
            stage[diag, diag, 1, 0] = ratio * gain  # the token 2^i back; [1, 2] (the future) stays 0
            stage_name = f"{name}.stage{i}"
            lag = 2 ** i
            rw.nodes[stage_name] = _conv2d(stage, bias if last else np.zeros(channels), n_tokens, (1, lag), (1, lag))
            stages.append(stage_name)
        rw.mix_stages[name] = stages
        rw.renamed[name] = (stages[0], stages[-1])
        return
    if kernel % 2 == 0:
        _fail(name, node, f"has an even kernel ({kernel}): a k x k Conv2d on a 1-row grid needs an odd k")
    square = np.zeros((*weight.shape[:2], kernel, kernel))
    square[:, :, kernel // 2, :] = weight * factor[:, None, None]  # only the centre row reads the one real row
    pad_rows = kernel // 2  # keeps the height 1 (nir 1.0.8 reads one kernel size for both axes)
    rw.nodes[name] = _conv2d(square, bias, n_tokens, (pad_rows, padding), (1, dilation))
    rw.renamed[name] = (name, name)
    rw.square_kernels.append(name)


def _portable_lif(name: str, node: nir.LIF, shape, dt_standard: float, dt: float) -> tuple[nir.LIF, np.ndarray]:
    """The LIF at step `dt` with r = 1, and the factor (per neuron) by which its input must grow
    to keep the standard step `v = beta v + gain x`."""
    grid = _grid(shape)
    arrays = {key: np.broadcast_to(np.asarray(getattr(node, key), dtype=np.float64), shape)
              for key in ("tau", "r", "v_leak", "v_threshold", "v_reset")}
    if np.any(units.leak_drive(arrays["tau"], arrays["v_leak"], dt_standard)):
        _fail(name, node, "has v_leak != 0; snnTorch's LIF import rejects a leak")
    if np.any(arrays["v_reset"]):
        _fail(name, node, "has v_reset != 0; snnTorch's LIF import always resets to 0")
    if np.unique(arrays["v_threshold"]).size != 1:
        _fail(name, node, "has several thresholds; snnTorch's LIF import needs one per layer")
    beta = units.beta_from_tau(arrays["tau"], dt_standard)
    tau = units.tau_from_beta(beta, dt)
    if not np.array_equal(units.beta_from_tau(tau, dt), beta) or not np.all((beta > 0) & (beta < 1)):
        _fail(name, node, f"has a decay {np.unique(beta)} that does not survive dt = {dt} exactly in float64")
    factor = units.input_gain(arrays["tau"], arrays["r"], dt_standard) / units.input_gain(tau, 1.0, dt)
    mantissa, _ = np.frexp(factor)
    if not np.all(mantissa == 0.5):
        _fail(name, node, f"needs an input gain factor {np.unique(factor)} that is not a power of two (inexact)")
    lif = nir.LIF(tau=tau.reshape(grid), r=np.ones(grid), v_leak=np.zeros(grid),
                  v_threshold=arrays["v_threshold"].reshape(grid).copy(), v_reset=np.zeros(grid))
    return lif, factor


def _and_lif(node: nir.Threshold, shape, dt: float) -> nir.LIF:
    """Threshold -> LIF with tau = dt: beta = 0 and gain 1, so v = x and it spikes when x > threshold."""
    grid = _grid(shape)
    threshold = np.broadcast_to(np.asarray(node.threshold, dtype=np.float64), shape).reshape(grid).copy()
    return nir.LIF(tau=np.full(grid, dt), r=np.ones(grid), v_leak=np.zeros(grid), v_threshold=threshold,
                   v_reset=np.zeros(grid))


def _conv_factors(graph: nir.NIRGraph, lif_factors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per Conv node, the factor (C_out,) its output must carry: that of the LIFs it feeds (1 for
    any other consumer). A Conv feeding consumers that need different factors cannot be folded."""
    needs: dict[str, dict[str, np.ndarray]] = {}
    for src, dst in graph.edges:
        node = graph.nodes[src]
        factor = lif_factors.get(dst)
        if factor is not None and not isinstance(node, nir.Conv1d):
            _fail(dst, graph.nodes[dst], f"reads '{src}' ({type(node).__name__}); its input gain can be folded "
                                         "only into a Conv1d")
        if isinstance(node, nir.Conv1d):
            if factor is None:
                factor = np.ones((np.shape(node.weight)[0], 1))
            if not np.all(factor == factor[:, :1]):
                _fail(dst, graph.nodes[dst], "needs an input gain factor that varies along the tokens")
            needs.setdefault(src, {})[dst] = factor[:, 0]
    folded = {}
    for conv, by_consumer in needs.items():
        first = next(iter(by_consumer.values()))
        if any(not np.array_equal(f, first) for f in by_consumer.values()):
            _fail(conv, graph.nodes[conv], f"feeds {sorted(by_consumer)}, which need different input gain factors")
        folded[conv] = first
    return folded


def _depth_first(nodes, edges, start: str) -> tuple[list[str], dict[str, str]]:
    """nirtorch.load's schedule (nirtorch/graph_utils.py `trace_execution`): pre-order depth
    first from the Input, children in edge-list order. Also the node each one was reached from."""
    children: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in edges:
        children[a].append(b)
    order, reached_from, seen = [], {}, set()
    stack = [(start, None)]
    while stack:
        node, parent = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        order.append(node)
        if parent is not None:
            reached_from[node] = parent
        stack.extend((child, node) for child in reversed(children[node]) if child not in seen)
    return order, reached_from


def _schedule_depth_first(rw: _Rewrite, shapes: dict[str, tuple[int, ...]], input_name: str, output_name: str) -> None:
    """Add zero-weight Conv2d nodes until the depth-first pre-order is a topological order.

    Where node m is reached (from d) before its parent p has run, walk up from p through parents
    not yet run to a node u all of whose parents have; a zero Conv2d d -> Z -> u, its edge listed
    before d -> m, makes the search run u's branch (and so p) before m. Z adds exactly 0 to u."""
    parents: dict[str, list[str]] = {}
    for a, b in rw.edges:
        parents.setdefault(b, []).append(a)
    for _ in range(len(rw.nodes) + 1):
        order, reached_from = _depth_first(rw.nodes, rw.edges, input_name)
        position = {name: i for i, name in enumerate(order)}
        late = next(((m, p) for m in order for p in parents.get(m, []) if position[p] > position[m]), None)
        if late is None:
            if order[-1] != output_name:
                raise ExportError(f"portable export: nirtorch.load would end on '{order[-1]}', not the Output")
            return
        m, p = late
        d, u = reached_from[m], p
        while True:
            pending = [q for q in parents.get(u, []) if position[q] > position[m]]
            if not pending:
                break
            u = pending[0]
        source_shape, target_shape = shapes[d], shapes[parents[u][0]]  # d's output, u's input
        if source_shape[1:] != target_shape[1:]:
            raise ExportError(f"portable export: cannot order '{u}' after '{d}' with a zero Conv2d "
                              f"(grids {source_shape} and {target_shape} differ)")
        zero = f"{u}.schedule"
        if zero in rw.nodes:
            raise ExportError(f"portable export: '{u}' needs a second schedule node; graph not supported")
        rw.nodes[zero] = _conv2d(np.zeros((target_shape[0], source_shape[0], 1, 1)), np.zeros(target_shape[0]),
                                 source_shape[-1], (0, 0), (1, 1))
        shapes[zero] = target_shape
        first = next(i for i, edge in enumerate(rw.edges) if edge == (d, m))
        rw.edges.insert(first, (d, zero))
        last_into_u = max(i for i, (_, b) in enumerate(rw.edges) if b == u)
        rw.edges.insert(last_into_u + 1, (zero, u))  # summed last: u's own inputs + 0.0
        parents.setdefault(u, []).append(zero)
        parents[zero] = [d]
        rw.schedule_nodes[zero] = [d, u]
    raise ExportError("portable export: could not make nirtorch.load's depth-first order topological")


def to_portable(standard: nir.NIRGraph, source: str = "graph") -> tuple[nir.NIRGraph, dict]:
    """The portable rewrite of a standard export (Input, Conv1d, LIF, Threshold, Output nodes):
    returns the graph (metadata "dt" = PORTABLE_DT, spikingmind metadata not yet attached) and
    the note of what was rewritten. ExportError names any node it cannot rewrite."""
    from spikingmind.graph import validate_graph

    try:
        shapes = validate_graph(standard, source)
    except GraphError as error:
        raise ExportError(f"portable export: {error}") from None
    allowed = (nir.Input, nir.Output, nir.Conv1d, nir.LIF, nir.Threshold)
    for name, node in standard.nodes.items():
        if type(node) not in allowed:
            _fail(name, node, "has no portable rewrite (supported: Input, Output, Conv1d, LIF, Threshold)")
    inputs = [n for n, node in standard.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in standard.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1 or len(shapes[inputs[0]]) != 2:
        raise ExportError(f"portable export: {source} needs one Input (D_in, L) and one Output, "
                          f"got {inputs} / {outputs}")
    n_tokens = shapes[inputs[0]][1]
    dt_standard = float(np.asarray(standard.metadata["dt"]).reshape(-1)[0])
    rw = _Rewrite(dt=PORTABLE_DT)
    counterparts: dict[str, dict] = {}

    lif_factors: dict[str, np.ndarray] = {}
    portable_lifs: dict[str, nir.LIF] = {}
    for name, node in standard.nodes.items():
        if isinstance(node, nir.LIF):
            portable_lifs[name], factor = _portable_lif(name, node, shapes[name], dt_standard, rw.dt)
            if not np.all(factor == 1.0):
                lif_factors[name] = factor
                rw.gain_folded[name] = float(np.unique(factor)[0]) if np.unique(factor).size == 1 else "per neuron"
    conv_factors = _conv_factors(standard, lif_factors)

    for name, node in standard.nodes.items():
        if isinstance(node, nir.Input):
            rw.nodes[name] = nir.Input(input_type={"input": np.array(_grid(shapes[name]))})
            rw.renamed[name] = (name, name)
        elif isinstance(node, nir.Output):
            rw.nodes[name] = nir.Output(output_type={"output": np.array(_grid(shapes[name]))})
            rw.renamed[name] = (name, name)
        elif isinstance(node, nir.LIF):
            rw.nodes[name] = portable_lifs[name]
            rw.renamed[name] = (name, name)
        elif isinstance(node, nir.Threshold):
            rw.nodes[name] = _and_lif(node, shapes[name], rw.dt)
            rw.renamed[name] = (name, name)
            rw.and_as_lif.append(name)
        else:
            factor = conv_factors.get(name, np.ones(shapes[name][0]))
            _rewrite_conv(rw, name, node, n_tokens, factor)
            counterparts[name] = {"node": rw.renamed[name][1],
                                  "factor": float(factor[0]) if np.all(factor == factor[0]) else factor.tolist()}

    chained = set()
    for a, b in standard.edges:  # edge-list order kept: it is the order of summation
        rw.edges.append((rw.renamed[a][1], rw.renamed[b][0]))
        if b in rw.mix_stages and b not in chained:  # stage i -> stage i+1 right after the mix's input
            rw.edges.extend(zip(rw.mix_stages[b], rw.mix_stages[b][1:]))
            chained.add(b)

    grid_shapes = {}
    for name, (first, last) in rw.renamed.items():
        grid_shapes[last] = _grid(shapes[name])
        if first != last:
            for stage in rw.mix_stages[name]:
                grid_shapes[stage] = _grid(shapes[name])
    _schedule_depth_first(rw, grid_shapes, inputs[0], outputs[0])

    metadata = {key: value for key, value in standard.metadata.items() if key != "spikingmind"}
    metadata["dt"] = rw.dt
    graph = nir.NIRGraph(nodes=rw.nodes, edges=rw.edges, metadata=metadata, type_check=False)
    try:
        validate_graph(graph, f"{source} (portable)")
    except GraphError as error:
        raise ExportError(f"portable export: the rewrite is not a valid graph: {error}") from None
    standard_weights, portable_weights = weight_count(standard), weight_count(graph)
    note = {
        "of": "the standard export of the same policy (export --target nir); the same token windows and decoding",
        "readers": dict(READERS),
        "dt": rw.dt,
        "standard_dt": dt_standard,
        "grid": "Input (D_in, 1, L), Output (n_out, 1, L) and every node's (C, 1, L): the standard (C, L) with a "
                "unit axis before the token axis; decode the Output at [:, 0, L-2]",
        "rewrites": [
            f"dt {dt_standard:g} s -> {rw.dt:g} s, each LIF's tau rescaled so that beta = 1 - dt/tau is unchanged",
            "LIF r = 1: input gain 1 - beta; the factor 1/(1 - beta) (a power of two) folded into the weights and "
            "bias of every Conv feeding a LIF",
            "Threshold -> LIF(tau = dt, r = 1, v_leak = 0, v_reset = 0, same threshold): v = x, spike when x > threshold",
            "Conv1d on (C, L) -> Conv2d on (C, 1, L), square k x k kernels with only the centre row nonzero",
            "causal decay mix -> ceil(log2 L) dilated kernel-3 Conv2d stages (taps 1 and g^(2^i)), the mix's scale "
            "(folded BatchNorm) and shift on the last stage",
            "zero-weight Conv2d schedule nodes: nirtorch.load's depth-first order becomes topological",
        ],
        "and_as_lif": rw.and_as_lif,
        "gain_folded": rw.gain_folded,
        "mix_stages": rw.mix_stages,
        "mix_max_relative_tap_error": rw.mix_tap_error,
        "square_kernels": rw.square_kernels,
        "schedule_nodes": {name: {"from": d, "to": u} for name, (d, u) in rw.schedule_nodes.items()},
        "conv_counterparts": counterparts,  # standard Conv1d -> the portable node with its output x factor
        "weights": {"standard": standard_weights, "portable": portable_weights,
                    "ratio": round(portable_weights / standard_weights, 4)},
    }
    return graph, note


def weight_count(graph: nir.NIRGraph) -> int:
    """Stored weight entries (Conv/Affine/Linear weights, zeros included), biases excluded."""
    return int(sum(np.size(node.weight) for node in graph.nodes.values() if hasattr(node, "weight")))


# ---------------------------------------------------------------------------- verification


def spiking_nodes(standard: nir.NIRGraph) -> list[str]:
    """Standard graph nodes whose outputs are spikes (LIF, Threshold); the portable graph keeps their names."""
    return [name for name, node in standard.nodes.items() if isinstance(node, SPIKING)]


def portable_inputs(decisions: np.ndarray) -> np.ndarray:
    """Standard inputs (N, D_in, L) -> the portable graph's (N, D_in, 1, L)."""
    return np.ascontiguousarray(decisions[:, :, None, :])


def verify_portable(standard: nir.NIRGraph, portable: nir.NIRGraph, decisions: np.ndarray,
                    counterparts: dict | None = None, batch: int = 64) -> dict:
    """Run both graphs in the reference simulator on `decisions` (N, D_in, L) and compare the
    spikes of every spiking node of the standard graph, every Conv's currents (the portable
    counterpart's output divided by its folded factor; `counterparts` as in the note, default:
    the portable graph's metadata), the outputs and the actions. ExportError (one line) unless
    spikes and actions are identical and currents and outputs within CURRENT_TOLERANCE / OUTPUT_TOLERANCE."""
    from spikingmind.export.nir.metadata import graph_metadata
    from spikingmind.export.reference import ReferenceSimulator

    names = spiking_nodes(standard)
    missing = [name for name in names if not isinstance(portable.nodes.get(name), nir.LIF)]
    if missing:
        raise ExportError(f"portable export: spiking nodes {missing} have no LIF counterpart in the rewrite")
    if counterparts is None:
        counterparts = graph_metadata(portable, "portable graph")["portable"]["conv_counterparts"]
    sim_standard, sim_portable = ReferenceSimulator(standard), ReferenceSimulator(portable)
    time_steps = sim_standard.time_steps
    out_standard, out_portable = sim_standard.output_names[0], sim_portable.output_names[0]
    n_tokens = decisions.shape[-1]
    mismatches = {name: 0 for name in names}
    values = spikes = action_mismatches = 0
    worst = worst_current = 0.0
    worst_current_node = None
    convs = list(counterparts)
    for start in range(0, len(decisions), batch):
        chunk = decisions[start:start + batch]
        a = sim_standard.run(chunk, time_steps, record=names + convs)
        b = sim_portable.run(portable_inputs(chunk), time_steps,
                             record=names + sorted({c["node"] for c in counterparts.values()}))
        for name in names:
            ours = b.records[name].reshape(a.records[name].shape)
            mismatches[name] += int((ours != a.records[name]).sum())
            values += ours.size
            spikes += int(a.records[name].sum())
        for name, counterpart in counterparts.items():
            theirs = a.records[name]
            factor = np.asarray(counterpart["factor"], dtype=np.float64).reshape(-1, 1)
            ours = b.records[counterpart["node"]].reshape(theirs.shape) / factor
            error = float(np.abs(ours - theirs).max()) / max(float(np.abs(theirs).max()), np.finfo(np.float64).tiny)
            if error > worst_current:
                worst_current, worst_current_node = error, name
        y_a = a.outputs[out_standard]
        y_b = b.outputs[out_portable].reshape(y_a.shape)
        error = float(np.abs(y_b - y_a).max())
        scale = max(1.0, float(np.abs(y_a).max()))
        worst = max(worst, error / scale)
        logits_a, logits_b = y_a[..., n_tokens - 2].mean(axis=0), y_b[..., n_tokens - 2].mean(axis=0)
        action_mismatches += int((logits_a.argmax(-1) != logits_b.argmax(-1)).sum())
    total = sum(mismatches.values())
    result = {"decisions": int(len(decisions)), "spiking_nodes": len(names), "spike_values": values,
              "spikes": spikes, "spike_mismatches": total, "action_mismatches": action_mismatches,
              "max_relative_output_difference": worst, "output_tolerance": OUTPUT_TOLERANCE,
              "conv_nodes": len(counterparts), "max_relative_current_difference": worst_current,
              "current_tolerance": CURRENT_TOLERANCE}
    if total or action_mismatches or not worst <= OUTPUT_TOLERANCE or not worst_current <= CURRENT_TOLERANCE:
        first = next((name for name, count in mismatches.items() if count), None)
        where = f"{total} of {values} spike values differ (first in '{first}')" if total else "spikes agree"
        raise ExportError(f"portable export does not reproduce the standard graph on {len(decisions)} real "
                          f"decisions: {where}, {action_mismatches} actions differ, outputs differ by "
                          f"{worst:.3g} (tolerance {OUTPUT_TOLERANCE:g}), currents by {worst_current:.3g} "
                          f"(in '{worst_current_node}', tolerance {CURRENT_TOLERANCE:g})")
    return result


def closed_loop_decisions(standard: nir.NIRGraph, episodes: int = VERIFY_EPISODES, max_steps: int = VERIFY_MAX_STEPS,
                          seed: int = 0) -> np.ndarray:
    """The decision inputs (N, D_in, L) of closed-loop episodes of the standard graph in the reference
    simulator (evaluation seeds, the env and target return of its metadata), each cut at `max_steps`."""
    from spikingmind.export.nir.policy import NIRPolicy
    from spikingmind.rollout import run_episodes
    from spikingmind.seeds import evaluation_seeds

    windows: list[np.ndarray] = []
    run_episodes(NIRPolicy(standard), evaluation_seeds(episodes, seed), on_decision=windows.append,
                 max_steps=max_steps)
    return np.concatenate(windows).transpose(0, 2, 1).astype(np.float64)


# ---------------------------------------------------------------------------- export


def portable_metadata(meta: dict, note: dict) -> dict:
    """The standard export's spikingmind metadata for the portable graph: the same keys, dt and the
    neuron discretization restated for r = 1, plus the "portable" note."""
    meta = json.loads(json.dumps(meta))
    meta["dt"] = note["dt"]
    meta["neuron"]["discretization"] = (
        "forward Euler of NIR LIF with step dt: v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak + (dt/tau) r I[t]; "
        "portable export: r = 1, v_leak = 0, so v[t] = beta v[t-1] + (1 - beta) I[t], and every Conv feeding a LIF "
        "carries the factor 1/(1 - beta) in its weights and bias: the standard step v[t] = beta v[t-1] + I[t]")
    meta["neuron"]["and"] = "AND of two spike trains as a LIF with tau = dt (beta = 0): v = x, spike when x > 1.5"
    meta["portable"] = note
    return meta


def portable_export_graph(standard: nir.NIRGraph, source: str = "graph", decisions: np.ndarray | None = None) -> nir.NIRGraph:
    """Rewrite and verify: the portable graph with the spikingmind metadata and the measured agreement."""
    from spikingmind.export.nir.metadata import graph_metadata

    meta = graph_metadata(standard, source)
    graph, note = to_portable(standard, source)
    if decisions is None:
        decisions = closed_loop_decisions(standard)
    note["verification"] = {
        "against": "the standard graph in the reference simulator (float64)",
        "inputs": f"closed-loop decisions of the standard graph: {VERIFY_EPISODES} evaluation episodes of "
                  f"{meta['env']['env_id']}, each cut at {VERIFY_MAX_STEPS} steps",
        **verify_portable(standard, graph, decisions, note["conv_counterparts"]),
    }
    graph.metadata["spikingmind"] = json.dumps(portable_metadata(meta, note))
    return graph


def export(source, out, force: bool = False) -> Path:
    """Checkpoint folder or standard .nir -> model-portable.nir, verified against the standard graph."""
    from spikingmind.export.nir import load_or_export_graph, write_graph
    from spikingmind.io import refuse_overwrite

    refuse_overwrite(out, force)  # before the verification's episodes, not after
    standard = load_or_export_graph(source)
    return write_graph(portable_export_graph(standard, str(source)), out, force)
