"""The host side of a Lava run: the real-valued encoder's currents in, aligned records out."""

from __future__ import annotations

import nir
import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind import units
from spikingmind.errors import ExportError
from spikingmind.export.lava.plan import HostTerm
from spikingmind.export.lava_sidecar.plan import (Plan, align_records, align_stream, expand_stream_inputs,
                                                  schedule_host_currents)
from spikingmind.export.reference import ReferenceSimulator
from spikingmind.graph import conv_geometry


class HostEncoder:
    """The real-valued Conv1d terms that read the Input, computed on the host.

    Each is run by the reference simulator itself on a two-node probe graph (Input -> Conv1d;
    the Input is constant over the T steps of a decision), so the graded currents are exactly
    the reference's numbers, at the cost of the encoder alone.
    """

    def __init__(self, graph: nir.NIRGraph, host_terms: list[HostTerm]):
        self.host_terms = host_terms
        features, tokens = input_shape(graph)
        self.simulators = {}
        for conv in sorted({h.conv for h in host_terms}):
            node = graph.nodes[conv]
            c_out, *_, n_out = conv_geometry(node, tokens)
            probe = nir.NIRGraph(
                nodes={"input": nir.Input(np.array([features, tokens])), "conv": node,
                       "output": nir.Output(np.array([c_out, n_out]))},
                edges=[("input", "conv"), ("conv", "output")], metadata={"dt": units.DT, "time_steps": 1},
                type_check=False)
            self.simulators[conv] = ReferenceSimulator(probe)

    def currents(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """inputs (B, D_in, L) -> per host-fed population (B, size), summed in edge order."""
        values = {conv: sim.run(inputs, time_steps=1).outputs["output"][0].reshape(inputs.shape[0], -1)
                  for conv, sim in self.simulators.items()}
        currents: dict[str, np.ndarray] = {}
        for term in self.host_terms:
            value = values[term.conv]
            currents[term.population] = value if term.population not in currents else currents[term.population] + value
        return currents


def graph_inputs(tokens: np.ndarray, context_tokens: int, token_features: int) -> tuple[np.ndarray, bool]:
    """Token windows (B, L, D_in), or one (L, D_in), as the graph's input (B, D_in, L) float64,
    and whether a single window came in; ValueError naming the expected shape otherwise."""
    tokens = np.asarray(tokens, dtype=np.float64)
    single = tokens.ndim == 2
    batch = tokens[None] if single else tokens
    if batch.ndim != 3 or batch.shape[1:] != (context_tokens, token_features):
        raise ValueError(f"tokens have shape {tokens.shape}; expected (B, {context_tokens}, {token_features})")
    return np.ascontiguousarray(batch.transpose(0, 2, 1)), single


def host_currents(graph: nir.NIRGraph, host_terms: list[HostTerm], inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Per host-fed population: (B, size) float current = sum of its Input Conv1d outputs."""
    return HostEncoder(graph, host_terms).currents(np.asarray(inputs, dtype=np.float64))


def fixed_host_currents(plan: Plan, currents: dict[str, np.ndarray],
                        report: fxp.QuantizationReport | None = None) -> dict[str, np.ndarray]:
    """Per host-fed population: its float current (B, size) as Loihi's graded input, int32
    activation units at the population's scale (16-bit saturated, clips counted in `report`)."""
    return {pop.name: fxp.quantize_activation(currents[pop.name], pop.scale, layer=pop.name, report=report)
            for pop in plan.populations if pop.host_input}


def host_data(plan: Plan, currents: dict[str, np.ndarray], n_steps: int, fixed: bool,
               report: fxp.QuantizationReport | None = None) -> dict[str, np.ndarray]:
    """The host sources of a Lava run: per host-fed population (size, n_steps), each decision's
    current (fixed: quantised, `fixed_host_currents`) at that population's steps."""
    if fixed:
        scaled = fixed_host_currents(plan, currents, report)
    else:
        scaled = {pop.name: currents[pop.name] for pop in plan.populations if pop.host_input}
    return schedule_host_currents(plan, scaled, n_steps)


def lava_records(plan: Plan, traces: dict[str, np.ndarray], n: int, fixed: bool) -> dict[str, np.ndarray]:
    """Lava traces -> {node: (T, N, *shape)} on the reference time axis (Output included)."""
    out = {}
    for pop in plan.populations:
        if pop.record and (f"pop/{pop.name}" in traces or pop.name in traces):
            raw = traces.get(f"pop/{pop.name}", traces.get(pop.name))
            out[pop.name] = align_records(raw, pop.offset, n, plan.time_steps, pop.shape).astype(np.float64)
    if plan.readout is not None and "readout" in traces:
        ro = plan.readout
        raw = readout_values(plan, traces["readout"], fixed)
        out[ro.name] = align_records(raw, ro.offset(plan), n, plan.time_steps, ro.shape)
    return out


def readout_values(plan: Plan, raw: np.ndarray, fixed: bool) -> np.ndarray:
    """The readout Sparse's sums (first axis: the Output's flat index) as the Output's float
    values: fixed point's integers divided by the readout scale, then the host adds the bias."""
    raw = raw.astype(np.float64)
    if fixed:
        raw = raw / plan.readout.scale
    return raw + plan.arrays["readout_bias"].reshape(-1, *([1] * (raw.ndim - 1)))


def stream_inputs(plan: Plan, encoder: HostEncoder, tokens: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    """A streaming job's compact inputs for B episodes side by side: "present" and, per host-fed
    population, "current/<pop>" (B, n_decisions, positions, size), the encoder's current of each
    token (`expand_stream_inputs` turns them into the host data of every step).

    tokens: (B, n_decisions, positions, F), read where `present` (B, n_decisions, positions)
    holds; the encoder runs once over every present token."""
    tokens = np.asarray(tokens, dtype=np.float64)
    present = np.asarray(present, bool)
    values = encoder.currents(np.ascontiguousarray(tokens[present][:, :, None])) if present.any() else {}
    out = {"present": present}
    for pop in plan.populations:
        if pop.host_input:
            current = np.zeros((*present.shape, pop.size))
            if pop.name in values:
                current[present] = values[pop.name]
            out[f"current/{pop.name}"] = current
    return out


def stream_data(plan: Plan, encoder: HostEncoder, tokens: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    """The host data {pop: (B, size, n_steps)} of `stream_inputs` (what the sidecar feeds Lava)."""
    return expand_stream_inputs(plan, stream_inputs(plan, encoder, tokens, present))


def decision_slots(tokens_per_decision: list[int], positions: int) -> np.ndarray:
    """(n_decisions, positions) bool: the positions the tokens of each decision take (its last
    n; an episode's first decision has fewer tokens than positions)."""
    present = np.zeros((len(tokens_per_decision), positions), bool)
    for d, n in enumerate(tokens_per_decision):
        present[d, positions - n:] = True
    return present


def stream_records(plan: Plan, traces: dict[str, np.ndarray], row: int) -> dict[str, np.ndarray]:
    """One episode's (row's) streaming records -> {population: (n_decisions, positions, T, *shape)}
    ("readout": the Output, its bias added)."""
    out = {}
    for pop in plan.populations:
        key = f"pop/{pop.name}"
        if pop.record and key in traces:
            out[pop.name] = align_stream(traces[key][row], pop.offset, plan, pop.shape)
    ro = plan.readout
    out[ro.name] = align_stream(readout_values(plan, traces["readout"][row], fixed=False), ro.offset(plan), plan,
                                ro.shape)
    return out


def input_shape(graph: nir.NIRGraph) -> tuple[int, int]:
    for node in graph.nodes.values():
        if isinstance(node, nir.Input):
            return tuple(int(x) for x in np.asarray(next(iter(node.input_type.values()))).reshape(-1))
    raise ExportError("the graph has no Input node")
