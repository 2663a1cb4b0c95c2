"""NIR graph -> Lava plan: populations, sparse synapses, host terms, delay-balancing relays.

Every spiking NIR node (LIF, Threshold) becomes a LIFReset population, every edge into one a
Sparse synapse (a Conv1d flattened to its sparse matrix, the graph's own weights copied), the
real-valued Conv1d terms of the Input are computed on the host (`HostTerm`), and branches of
unequal depth are delay-balanced with relay populations (`lava_sidecar/plan.py` states the
timing). `build_plan` also quantises the plan for Loihi's fixed point (`quantize.py`).

A streaming graph (its causal mix carried by Delay + Scale feedback) gets a streaming plan:
its trace in graded S4d lanes, its populations merged into a few Lava processes, one token
every T + 1 steps; `streaming.py` says which Lava processes express the carried trace and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind import units
from spikingmind.errors import ExportError, UnsupportedModuleError
from spikingmind.export.lava import streaming as stream_plan
from spikingmind.export.lava.quantize import quantize_plan
from spikingmind.export.lava_sidecar.plan import Plan, Population, Readout, Synapse
from spikingmind.graph import conv_geometry, validate_graph

SPIKING = (nir.LIF, nir.Threshold)


@dataclass
class HostTerm:
    """A real-valued Conv1d of the Input whose output the host injects into `population`."""

    population: str
    conv: str               # Conv1d node reading the Input


def _conv_sparse(node: nir.Conv1d, in_shape) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """A Conv1d as a sparse matrix on C-order flattened grids: (index (2, nnz), values,
    flat bias, output shape); matrix[(o, i), (c, j)] = W[o, c, k] for j = i*stride + k*dilation - pad.

    The values are the graph's own weights, copied, never recomputed, so Lava multiplies by
    exactly the reference's numbers (a kernel-1 conv is kron(W, I_L): C_out*C_in*L entries;
    the causal mix keeps only its C*L(L+1)/2 non-zero taps).
    """
    c_in, n_in = (int(x) for x in in_shape)
    c_out, _, kernel, stride, dilation, groups, pad, n_out = conv_geometry(node, n_in)
    weight = np.asarray(node.weight, dtype=np.float64)                  # (C_out, C_in/groups, K)
    cg_in, cg_out = c_in // groups, c_out // groups
    o, c_local, k = np.nonzero(weight)
    c = c_local + (o // cg_out) * cg_in                                  # grouped -> dense channel
    i = np.arange(n_out)
    j = i[None, :] * stride + k[:, None] * dilation - pad[0]            # (taps, N_out)
    inside = (j >= 0) & (j < n_in)
    tap = np.broadcast_to(np.arange(o.size)[:, None], j.shape)[inside]
    pos = np.broadcast_to(i[None, :], j.shape)[inside]
    rows = o[tap] * n_out + pos
    cols = c[tap] * n_in + j[inside]
    values = weight[o[tap], c_local[tap], k[tap]]
    order = np.lexsort((cols, rows))                                    # row-major, like csr
    index = np.stack([rows[order], cols[order]]).astype(np.int32)
    bias = np.broadcast_to(np.asarray(node.bias if node.bias is not None else 0.0, dtype=np.float64),
                           (c_out,))
    return index, values[order], np.repeat(bias, n_out), (c_out, n_out)


def _identity(size: int) -> tuple[np.ndarray, np.ndarray]:
    diagonal = np.arange(size, dtype=np.int32)
    return np.stack([diagonal, diagonal]), np.ones(size)


def _uniform(values, what: str, name: str) -> float:
    values = np.unique(np.asarray(values, dtype=np.float64))
    if values.size != 1:
        raise UnsupportedModuleError(
            f"node '{name}': Lava's LIF has one {what} per population, got {values.size} distinct values")
    return float(values[0])


def _exact_dv(beta: float) -> tuple[float, bool]:
    """Float dv with 1 - dv == beta exactly when one exists (Lava computes v * (1 - dv))."""
    dv = 1.0 - beta
    for candidate in (dv, np.nextafter(dv, 0.0), np.nextafter(dv, 1.0)):
        if 1.0 - float(candidate) == beta:
            return float(candidate), True
    return dv, False


def build_plan(graph: nir.NIRGraph) -> tuple[Plan, list[HostTerm], dict[str, Any]]:
    """Plan (float + fixed parameters), host terms, and export notes with the quant report."""
    shapes = validate_graph(graph)
    metadata = graph.metadata if isinstance(graph.metadata, Mapping) else {}
    if "time_steps" not in metadata or "dt" not in metadata:
        raise ExportError("the graph metadata needs 'time_steps' and 'dt' for a Lava export")
    time_steps = int(np.asarray(metadata["time_steps"]).reshape(-1)[0])
    dt = float(np.asarray(metadata["dt"]).reshape(-1)[0])
    nodes, edges = graph.nodes, list(graph.edges)
    incoming: dict[str, list[str]] = {name: [] for name in nodes}
    for src, dst in edges:
        incoming[dst].append(src)
    in_shape = {name: shapes[incoming[name][0]] for name in nodes if incoming[name]}

    def kind(name):
        return type(nodes[name]).__name__

    streaming = stream_plan.is_streaming(graph)
    carried = (nir.Delay, nir.Scale) if streaming else ()
    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, nir.Conv1d, *SPIKING, *carried)):
            raise UnsupportedModuleError(
                f"node '{name}' ({kind(name)}) has no Lava mapping; supported: Input, Conv1d, LIF, "
                "Threshold, Output (and a streaming mix's Delay + Scale)")
    mixes = stream_plan.find_mixes(graph, shapes, time_steps, dt) if streaming else {}

    populations: dict[str, Population] = {}
    synapses: list[Synapse] = []
    arrays: dict[str, np.ndarray] = {}
    host_terms: list[HostTerm] = []
    float_bias: dict[str, np.ndarray] = {}
    gain_of: dict[str, float] = {}
    beta_of: dict[str, float] = {}
    theta_of: dict[str, float] = {}
    notes: dict[str, Any] = {"inexact_decays": []}

    spiking = [n for n in nodes if isinstance(nodes[n], SPIKING)]
    for name in spiking:
        node = nodes[name]
        size = int(np.prod(shapes[name]))
        if isinstance(node, nir.LIF):
            beta = _uniform(units.beta_from_tau(node.tau, dt), "decay (tau)", name)
            gain = _uniform(units.input_gain(node.tau, node.r, dt), "input gain (r/tau)", name)
            drive = np.broadcast_to(units.leak_drive(node.tau, node.v_leak, dt), tuple(shapes[name])).reshape(-1).astype(np.float64)
            theta = _uniform(node.v_threshold, "threshold", name)
            if node.v_reset is not None and np.any(np.asarray(node.v_reset) != 0):
                raise UnsupportedModuleError(f"node '{name}': Lava's LIF resets to 0, got v_reset != 0")
            dv, exact = _exact_dv(beta)
            if not exact:
                notes["inexact_decays"].append(name)
            pop = Population(name, "lif", list(shapes[name]), dv=dv, vth=theta)
        else:
            beta, gain, drive = 0.0, 1.0, np.zeros(size)
            theta = _uniform(node.threshold, "threshold", name)
            pop = Population(name, "threshold", list(shapes[name]), stateless=True, dv=1.0, vth=theta)
        populations[name] = pop
        float_bias[name] = drive.copy()
        gain_of[name], beta_of[name], theta_of[name] = gain, beta, theta

    readout = None
    readout_w = readout_b = None
    for name in nodes:
        node = nodes[name]
        if isinstance(node, SPIKING):
            for src in incoming[name]:
                if isinstance(nodes[src], nir.Conv1d):
                    (pre,) = incoming[src] if len(incoming[src]) == 1 else _fail_fan_in(src)
                    if isinstance(nodes[pre], nir.Input):
                        # host current = the reference's own Conv1d output, bias included
                        if gain_of[name] != 1.0:
                            raise UnsupportedModuleError(
                                f"node '{name}': a host-fed LIF needs input gain 1 (r = tau/dt)")
                        populations[name].host_input = True
                        populations[name].inputs.append("host")
                        host_terms.append(HostTerm(name, src))
                        continue
                    if pre in mixes:  # the mix reads the carried trace: one graded synapse per lane
                        if len(incoming[name]) != 1:
                            raise UnsupportedModuleError(
                                f"node '{name}' reads the streaming trace '{pre}' and other inputs; on Lava it "
                                "may read only the trace")
                        index, values, bias, _ = _conv_sparse(nodes[src], in_shape[src])
                        float_bias[name] = float_bias[name] + gain_of[name] * bias
                        populations[name].host_bias = True
                        for position in range(stream_plan.POSITIONS):
                            syn = Synapse(f"{stream_plan.lane(pre, position)}->{name}", stream_plan.lane(pre, position),
                                          name)
                            synapses.append(syn)
                            arrays[f"w_idx/{syn.name}"], arrays[f"w/{syn.name}"] = index, gain_of[name] * values
                            populations[name].inputs.append(syn.name)
                        continue
                    if not isinstance(nodes[pre], SPIKING):
                        raise UnsupportedModuleError(
                            f"Conv1d '{src}' reads '{pre}' ({kind(pre)}); on Lava a Conv1d must read spikes or the Input")
                    index, values, bias, _ = _conv_sparse(nodes[src], in_shape[src])
                    float_bias[name] = float_bias[name] + gain_of[name] * bias
                    weight = gain_of[name] * values
                elif isinstance(nodes[src], SPIKING):
                    index, values = _identity(populations[name].size)
                    pre, weight = src, gain_of[name] * values
                else:
                    raise UnsupportedModuleError(
                        f"edge '{src}' ({kind(src)}) -> '{name}' ({kind(name)}) has no Lava mapping")
                syn = Synapse(f"{pre}->{name}" if src == pre else src + f"->{name}", pre, name)
                synapses.append(syn)
                arrays[f"w_idx/{syn.name}"], arrays[f"w/{syn.name}"] = index, weight
                populations[name].inputs.append(syn.name)
        elif isinstance(node, nir.Output):
            if readout is not None or len(incoming[name]) != 1:
                raise UnsupportedModuleError("a Lava export needs exactly one Output with one incoming edge")
            (src,) = incoming[name]
            if isinstance(nodes[src], nir.Conv1d):
                (pre,) = incoming[src] if len(incoming[src]) == 1 else _fail_fan_in(src)
                if not isinstance(nodes[pre], SPIKING):
                    raise UnsupportedModuleError(f"readout Conv1d '{src}' must read a spiking node, reads '{pre}'")
                readout_idx, readout_w, readout_b, _ = _conv_sparse(nodes[src], in_shape[src])
            elif isinstance(nodes[src], SPIKING):
                pre = src
                readout_idx, readout_w = _identity(populations[pre].size)
                readout_b = np.zeros(populations[pre].size)
            else:
                raise UnsupportedModuleError(f"Output '{name}' reads '{src}' ({kind(src)}): no Lava mapping")
            readout = Readout(name, pre, list(shapes[name]))
        elif isinstance(node, nir.Conv1d) and name not in mixes:
            for dst in (d for s, d in edges if s == name):
                if not isinstance(nodes[dst], (*SPIKING, nir.Output)):
                    raise UnsupportedModuleError(
                        f"Conv1d '{name}' feeds '{dst}' ({kind(dst)}); on Lava a Conv1d must feed neurons or the Output")

    for mix in mixes.values():
        stream_plan.add_lanes(mix, populations, synapses, arrays)
    _balance_delays(populations, synapses, arrays)
    for name, pop in populations.items():
        arrays[f"bias/{name}"] = np.asarray(float_bias.get(name, np.zeros(pop.size)), dtype=np.float64)
    schedule = None
    if streaming:
        if readout is None:
            raise UnsupportedModuleError("a streaming Lava export needs an Output")
        schedule = stream_plan.schedule(time_steps, populations[readout.src].offset + 1)
        for mix in mixes.values():
            stream_plan.add_feedback(mix, schedule, time_steps + 1, populations, synapses, arrays)
        stream_plan.assign_processes(populations, arrays)
    plan = Plan(time_steps, dt, list(populations.values()), synapses, readout, arrays, schedule)
    if readout is not None:
        arrays["readout_idx"], arrays["readout_w"], arrays["readout_bias"] = readout_idx, readout_w, readout_b
    # a streaming plan is floating_pt only (streaming.py): no fixed-point parameters
    notes["quantization_report"] = fxp.QuantizationReport() if streaming else quantize_plan(plan, beta_of, theta_of)
    return plan, host_terms, notes


def _fail_fan_in(name):
    raise UnsupportedModuleError(f"Conv1d '{name}' must have exactly one incoming edge")


def _balance_delays(populations: dict[str, Population], synapses: list[Synapse],
                    arrays: dict[str, np.ndarray]) -> None:
    """Offsets in topological order; relay chains where a branch arrives early."""
    preds: dict[str, list[str]] = {name: [] for name in populations}
    for syn in synapses:
        preds[syn.dst].append(syn.src)
    offset: dict[str, int] = {}
    visiting: set[str] = set()

    def resolve(name: str) -> int:
        if name in offset:
            return offset[name]
        if name in visiting:
            raise UnsupportedModuleError(f"recurrent spike path through '{name}': Lava export supports DAGs only")
        visiting.add(name)
        offset[name] = max((resolve(p) + 1 for p in preds[name]), default=0)
        return offset[name]

    for name in list(populations):
        resolve(name)
    for name, pop in populations.items():
        pop.offset = offset[name]
    relays: dict[tuple[str, int], str] = {}
    for syn in list(synapses):
        gap = offset[syn.dst] - offset[syn.src] - 1
        if gap > 0 and populations[syn.src].graded:
            raise UnsupportedModuleError(f"the graded synapse '{syn.name}' arrives {gap} steps early: Lava's "
                                         "streaming plan delay-balances spikes only")
        previous = syn.src
        for depth in range(1, gap + 1):
            key = (syn.src, depth)
            if key not in relays:
                src_pop = populations[syn.src]
                relay = Population(f"{syn.src}.delay{depth}", "relay", list(src_pop.shape),
                                   offset=src_pop.offset + depth, stateless=True, record=False,
                                   dv=1.0, vth=0.5)
                link = Synapse(f"{previous}->{relay.name}", previous, relay.name)
                relay.inputs.append(link.name)
                arrays[f"w_idx/{link.name}"], arrays[f"w/{link.name}"] = _identity(src_pop.size)
                populations[relay.name] = relay
                synapses.append(link)
                relays[key] = relay.name
            previous = relays[key]
        syn.src = previous


#: Candidate per-population scales: A = (4096 / theta) * 2**(-k / SCALE_STEPS_PER_OCTAVE),
