"""The `loihi-emulation` backend: a Lava plan's Loihi fixed point, closed loop, in NumPy (no Lava).

What Lava's fixed_pt runs (PySparseModelBitAcc, PyLifResetModelBitAcc), bit for bit, but one
decision per batch row instead of Lava's pipelined timeline. Why a decision can be computed on
its own, from zero state (the timing of `lava_sidecar/plan.py`): population n runs SNN step t
of decision k at Lava step k*T + offset[n] + t and resets u = v = 0 at its t = 0 (stateless
ones at every step); after delay balancing every synapse joins offset[dst] = offset[src] + 1,
so what it delivers at dst's step t is src's spikes of the same step t of the same decision,
the readout's step t reads its source's step t, and a host current is scheduled at its
population's own steps. Lava's run of N pipelined decisions is therefore N independent
decisions, each stepping the populations in offset order for t = 0 .. T-1 through zero-delay
synapses. That is what `FixedPointNetwork` does, the B decisions of a call as the rows of
every array. The integer arithmetic is `spikingmind.fixed_point`'s (`lava_weights`,
`shift_accumulated`, `lif_fixed_step`: the functions `lava_sidecar.plan.emulate` uses), and the
tests compare every population's spikes and the readout with `emulate` and the actions with
Lava's fixed_pt (`LavaPolicy(bundle, fixed_point=True)`).

Synapses: a synapse's groups (each one Lava Sparse: 8-bit mantissas, one exponent) become
exact integer products on binary spikes (`synapse_terms`: groups with left shifts merged, right
shifts apart), computed in floats where they are exact in any summation order: every product is
an integer and no partial sum exceeds the largest sum of |weights| into a neuron, so float32
where that bound is below 2**24, float64 otherwise (`exact_float`). Spikes are held (C, B, L)
and each product is shaped by what its matrix is on the populations' (C, L) grids
(`FixedSynapse.kind`):

    diagonal  a direct spike edge or a relay (an identity): elementwise
    channel   a kernel-1 Conv1d, kron(W, I_L): one (C_out, C_in) @ (C_in, B * L) GEMM; all the
              channel terms into one population are stacked into a single GEMM
    token     the causal mix (channel-diagonal): one (L_in, L_out) matrix per channel
    sparse    anything else: the COO entries summed with bincount

Stateless populations fed only by diagonal synapses (delay relays, the AND neurons) are truth
tables of their input bits, computed once by the same `lif_fixed_step` (a relay that passes
every spike on costs nothing). Timing: `benchmarks/fixed_point.py`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind.errors import ExportError, UnsupportedModuleError
from spikingmind.export.lava.bundle import bundle_host_terms, load_plan
from spikingmind.export.lava.host import HostEncoder, fixed_host_currents, graph_inputs, input_shape, readout_values
from spikingmind.export.lava.plan import HostTerm, build_plan
from spikingmind.export.lava_sidecar.plan import Plan, Population
from spikingmind.metadata import read_policy_metadata
from spikingmind.policy import Policy, SpikeTally

#: The `token` form stores C * L_out * L_in values; beyond this many it uses the COO entries.
MAX_TOKEN_ENTRIES = 1 << 24


def exact_float(bound: float) -> type:
    """The float type in which sums of integers with |partial sum| <= `bound` are exact in any
    order: float32 below 2**24 (its 24-bit significand), else float64 (exact below 2**53)."""
    if bound >= 2.0 ** 53:
        raise ExportError(f"fixed-point sums up to {bound:g} cannot be emulated exactly in float64")
    return np.float32 if bound < 2.0 ** 24 else np.float64


def _grid(shape) -> tuple[int, int]:
    """A population's (channels, tokens): the last axis is the token axis (C-order flattening)."""
    shape = [int(n) for n in shape]
    return (int(np.prod(shape[:-1])), shape[-1]) if len(shape) >= 2 else (shape[0], 1)


class FixedSynapse:
    """Integer weights (as Lava's bit-accurate Sparse uses them) and one shift, applied to the
    binary spikes of a source population: `shift_accumulated(sum_j w_ij s_j, weight_exp)`.

    `index` (2, nnz) rows/cols of the stored values on the populations' flat (C-order) grids,
    `weights` their integer values; `dst_shape` / `src_shape` the populations' shapes. Spikes
    and sums are laid out (C, B, L): channels first, then the batch, then tokens, so that a
    kernel-1 Conv1d is one (C_out, C_in) @ (C_in, B * L) product. `kind`: see the module docstring.
    """

    def __init__(self, index: np.ndarray, weights: np.ndarray, weight_exp: int, dst_shape, src_shape):
        self.weight_exp = int(weight_exp)
        self.n_dst, self.n_src = int(np.prod(dst_shape)), int(np.prod(src_shape))
        (c_dst, l_dst), (c_src, l_src) = self.grid_dst, self.grid_src = _grid(dst_shape), _grid(src_shape)
        rows, cols = np.asarray(index[0], np.int64), np.asarray(index[1], np.int64)
        weights = np.asarray(weights, np.float64)
        o, i = np.divmod(rows, l_dst)
        c, j = np.divmod(cols, l_src)
        if (c_dst, l_dst) == (c_src, l_src) and np.array_equal(rows, cols):
            self.kind = "diagonal"
            self.matrix = np.zeros(self.n_dst)
            self.matrix[rows] = weights
            self.matrix = self.matrix.reshape(c_dst, 1, l_dst)
        elif l_dst == l_src and np.array_equal(i, j) and self._channel(o, c, weights, c_dst, c_src, l_dst):
            self.kind = "channel"
        elif c_dst == c_src and np.array_equal(o, c) and c_dst * l_dst * l_src <= MAX_TOKEN_ENTRIES:
            self.kind = "token"
            matrix = np.zeros((c_dst, l_src, l_dst))  # transposed: (C, B, L_in) @ (C, L_in, L_out)
            matrix[o, j, i] = weights
            self.matrix = matrix
        else:
            self.kind = "sparse"
            self.rows, self.cols, self.values = rows, cols, weights
        #: the largest sum of |weights| into one neuron: no partial sum of its product exceeds it
        self.bound = float(np.bincount(rows, np.abs(weights), minlength=self.n_dst).max()) if rows.size else 0.0
        self.dtype = exact_float(self.bound)
        if self.kind == "sparse":
            self.values = self.values.astype(self.dtype)
        else:
            self.matrix = self.matrix.astype(self.dtype)

    def _channel(self, o, c, weights, c_dst, c_src, tokens) -> bool:
        """kron(W, I_L)? Every stored value depends on (o, c) alone and every nonzero (o, c)
        is stored at every token; then keep W."""
        matrix = np.zeros((c_dst, c_src))
        matrix[o, c] = weights
        if not (np.array_equal(matrix[o, c], weights)
                and np.count_nonzero(matrix) * tokens == np.count_nonzero(weights)):
            return False
        self.matrix = matrix
        return True

    def accumulate(self, spikes: np.ndarray) -> np.ndarray:
        """spikes (C_src, B, L_src), 0/1 in `dtype` -> sum_j w_ij s_j (C_dst, B, L_dst), exact integers."""
        batch = spikes.shape[1]
        if self.kind == "diagonal":
            return spikes * self.matrix
        if self.kind == "channel":
            return (self.matrix @ spikes.reshape(self.grid_src[0], -1)).reshape(self.grid_dst[0], batch, -1)
        if self.kind == "token":
            return np.matmul(spikes, self.matrix)
        flat = spikes.transpose(1, 0, 2).reshape(batch, self.n_src)
        slots = (np.arange(batch)[:, None] * self.n_dst + self.rows[None, :]).reshape(-1)
        total = np.bincount(slots, weights=(flat[:, self.cols] * self.values).reshape(-1), minlength=batch * self.n_dst)
        return total.reshape(batch, *self.grid_dst).transpose(1, 0, 2)

    @property
    def shifted_bound(self) -> float:
        """The largest |shifted sum| into one neuron."""
        if self.weight_exp >= 0:
            return self.bound * 2.0 ** self.weight_exp
        return math.ceil(self.bound / 2.0 ** -self.weight_exp)

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        """spikes (C_src, B, L_src), 0/1 -> shifted integer sums (C_dst, B, L_dst), int64."""
        return fxp.shift_accumulated(self.accumulate(spikes).astype(np.int64), self.weight_exp)


def synapse_terms(groups: list[tuple[np.ndarray, np.ndarray, int]], dst_shape, src_shape) -> list[FixedSynapse]:
    """A synapse's fixed-point groups (`Plan.fixed_groups`: index, mantissas, weight_exp; one Lava
    Sparse each) as the fewest exact terms: Lava's clip and mixed-sign LSB applied per group, as
    its bit-accurate model does; the groups with weight_exp >= 0 merged into one term (a left
    shift distributes over the sum: sum_g (a_g << e_g) == sum_j (w_j << e_j) s_j); each group
    with weight_exp < 0 on its own (an arithmetic right shift of a sum is not the sum of shifts)."""
    n_matrix = int(np.prod(dst_shape)) * int(np.prod(src_shape))
    merged_index, merged_weights, terms = [], [], []
    for index, mant, exp in groups:
        weights = fxp.lava_weights(mant, implicit_zero=index.shape[1] < n_matrix).astype(np.float64)
        if exp >= 0:
            merged_index.append(index)
            merged_weights.append(weights * 2.0 ** exp)
        else:
            terms.append(FixedSynapse(index, weights, exp, dst_shape, src_shape))
    if merged_index:
        terms.insert(0, FixedSynapse(np.concatenate(merged_index, axis=1), np.concatenate(merged_weights), 0,
                                     dst_shape, src_shape))
    return terms


@dataclass
class NetworkRun:
    """One call of `FixedPointNetwork.run` on B decisions.

    readout: (T, B, n_readout) int64, the readout Sparse's sums per SNN step;
    spikes: {population: (T, B, *shape) bool} of the recorded populations (with `record`);
    spike_counts: {population: spikes over the T steps and B decisions} (recorded ones);
    u_wrapped / v_saturated: {population: count} where Lava's 24-bit state wrapped / clipped.
    """

    readout: np.ndarray
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    spike_counts: dict[str, int] = field(default_factory=dict)
    u_wrapped: dict[str, int] = field(default_factory=dict)
    v_saturated: dict[str, int] = field(default_factory=dict)


@dataclass
class _Inputs:
    """What a population sums at each step: its `channel` terms with no shift stacked into one
    (C_dst, sum C_src) product over their sources' spikes, the other terms one by one."""

    stacked: np.ndarray | None
    stacked_sources: list[str]
    terms: list[tuple[str, FixedSynapse]]
    host: bool
    act_dtype: type  # int32 where no sum can leave its range (as Lava's int32 input), else int64


class FixedPointNetwork:
    """A plan's fixed-point populations and synapse groups, stepped one decision per batch row
    (see the module docstring for why that equals Lava's pipelined run)."""

    def __init__(self, plan: Plan):
        if plan.readout is None:
            raise ExportError("the Lava plan has no readout (Output): nothing to decode actions from")
        self.plan = plan
        self.time_steps = plan.time_steps
        for syn in plan.synapses:
            src, dst = plan.population(syn.src), plan.population(syn.dst)
            if dst.offset != src.offset + 1:
                raise ExportError(f"Lava plan synapse {syn.name}: offsets {src.offset} -> {dst.offset} are not "
                                  "delay-balanced (each synapse must add exactly one step)")
        self.order: list[Population] = sorted(plan.populations, key=lambda pop: pop.offset)  # stable: plan order
        self.grids = {pop.name: _grid(pop.shape) for pop in plan.populations}
        self.sources = {syn.name: syn.src for syn in plan.synapses}
        self.synapses = {syn.name: synapse_terms(plan.fixed_groups(syn.name, syn.weight_exps),
                                                 plan.population(syn.dst).shape, plan.population(syn.src).shape)
                         for syn in plan.synapses}
        self.biases = {pop.name: fxp.effective_bias(plan.arrays[f"bias_mant/{pop.name}"], pop.bias_exp).reshape(
            self.grids[pop.name][0], 1, self.grids[pop.name][1]) for pop in plan.populations}
        readout = plan.readout
        self.readout = synapse_terms(plan.fixed_groups("readout", readout.weight_exps), readout.shape,
                                     plan.population(readout.src).shape)
        self.readout_grid = _grid(readout.shape)
        self.logic = {pop.name: table for pop in plan.populations if (table := self._truth_table(pop)) is not None}
        self.logic_modes = {name: self._logic_mode(table) for name, table in self.logic.items()}
        self.inputs = {pop.name: self._inputs(pop) for pop in plan.populations if pop.name not in self.logic}

    def _inputs(self, pop: Population) -> _Inputs:
        stacked, sources, terms = [], [], []
        for item in pop.inputs:
            if item == "host":
                continue
            for term in self.synapses[item]:
                if term.kind == "channel" and term.weight_exp == 0:
                    stacked.append(term.matrix)
                    sources.append(self.sources[item])
                else:
                    terms.append((self.sources[item], term))
        matrix = np.concatenate(stacked, axis=1) if stacked else None
        bound = 0.0
        if matrix is not None:
            stacked_bound = float(np.abs(matrix).sum(axis=1).max())
            matrix = matrix.astype(exact_float(stacked_bound))
            bound += stacked_bound
        bound += sum(term.shifted_bound for _, term in terms) + ("host" in pop.inputs) * (fxp.ACT_MAX + 1)
        act_dtype = np.int32 if bound < 2 ** 31 - 1 else np.int64
        return _Inputs(matrix, sources, terms, "host" in pop.inputs, act_dtype)

    def _truth_table(self, pop: Population) -> np.ndarray | None:
        """A stateless population whose every input is a `diagonal` synapse (a relay, an AND of
        two spike trains) computes each neuron's spike from its m input bits alone, from fresh
        state at every step: its (2**m, C, 1, L) table of spikes, computed once by the same
        arithmetic (`lif_fixed_step` on every combination of bits). None where that does not
        hold, or where a combination wraps or saturates the state (so counts stay exact)."""
        if not pop.stateless or not pop.inputs or "host" in pop.inputs or len(pop.inputs) > 4:
            return None
        if any(term.kind != "diagonal" for item in pop.inputs for term in self.synapses[item]):
            return None
        m = len(pop.inputs)
        channels, tokens = self.grids[pop.name]
        bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1  # (2**m, m): combination, input
        act = np.zeros((channels, 2 ** m, tokens), np.int64)
        for k, item in enumerate(pop.inputs):
            spikes = np.broadcast_to(bits[None, :, k:k + 1].astype(np.float64), act.shape)  # promotes to float64
            for term in self.synapses[item]:
                act = act + term(spikes)
        state = fxp.FixedLifState(np.zeros(act.shape, np.int32), np.zeros(act.shape, np.int32))
        table = fxp.lif_fixed_step(state, act, du=fxp.DU_FULL, dv=pop.dv_int, bias=self.biases[pop.name],
                                   vth=pop.vth_int)
        return table.transpose(1, 0, 2)[:, :, None, :] if state.wrapped == 0 and state.saturated == 0 else None

    @staticmethod
    def _logic_mode(table: np.ndarray) -> tuple[str, object]:
        """How `_logic_step` evaluates a truth table: "relay" (one input, out = in), "where"
        (one input, any table), "combinations" ([(combination, (C, 1, L) mask)] that fire)."""
        if len(table) == 2:
            return ("relay", None) if not table[0].any() and table[1].all() else ("where", table)
        return "combinations", [(c, table[c]) for c in range(len(table)) if table[c].any()]

    def _logic_step(self, pop: Population, fired: dict[str, np.ndarray]) -> np.ndarray:
        """A truth-table population's spikes (C, B, L) bool from its inputs' spikes of this step."""
        inputs = [fired[self.sources[item]] for item in pop.inputs]
        mode, table = self.logic_modes[pop.name]
        if mode == "relay":  # passes every spike on
            return inputs[0]
        if mode == "where":
            return np.where(inputs[0], table[1], table[0])
        out = np.zeros(inputs[0].shape, bool)
        for combination, fires in table:  # the input combinations that make some neuron fire
            hit = fires
            for k, spikes in enumerate(inputs):
                hit = hit & (spikes if combination >> k & 1 else ~spikes)
            out |= hit
        return out

    def run(self, host: dict[str, np.ndarray], batch: int, record: bool = False) -> NetworkRun:
        """B = `batch` decisions from zero state. host: {host-fed population: (B, size) int32
        activation units} (`host.fixed_host_currents`). Returns a `NetworkRun`."""
        T = self.time_steps
        grids = self.grids
        host_act = {name: np.ascontiguousarray(values.reshape(batch, *grids[name]).transpose(1, 0, 2))
                    for name, values in host.items()}
        states = {pop.name: fxp.FixedLifState(np.zeros((grids[pop.name][0], batch, grids[pop.name][1]), np.int32),
                                              np.zeros((grids[pop.name][0], batch, grids[pop.name][1]), np.int32))
                  for pop in self.order if pop.name not in self.logic}
        readout = np.zeros((T, self.readout_grid[0], batch, self.readout_grid[1]), np.int64)
        recorded = [pop for pop in self.order if pop.record]
        spikes = {pop.name: np.zeros((T, *grids[pop.name][:1], batch, grids[pop.name][1]), bool)
                  for pop in recorded} if record else {}
        counts = {pop.name: 0 for pop in recorded}
        for t in range(T):
            fired: dict[str, np.ndarray] = {}  # population -> its spikes of step t, (C, B, L) bool
            as_float: dict[tuple[str, type], np.ndarray] = {}  # the same as 0/1 floats, made once per type

            def spikes_of(name: str, dtype: type) -> np.ndarray:
                if (name, dtype) not in as_float:
                    as_float[name, dtype] = fired[name].astype(dtype)
                return as_float[name, dtype]

            for pop in self.order:
                if pop.name in self.logic:
                    spiked = self._logic_step(pop, fired)
                else:
                    inputs = self.inputs[pop.name]
                    channels, tokens = grids[pop.name]
                    if inputs.stacked is not None:
                        dtype = inputs.stacked.dtype.type
                        stack = [spikes_of(name, dtype).reshape(grids[name][0], -1) for name in inputs.stacked_sources]
                        stack = stack[0] if len(stack) == 1 else np.concatenate(stack)
                        act = (inputs.stacked @ stack).astype(inputs.act_dtype).reshape(channels, batch, tokens)
                    else:
                        act = np.zeros((channels, batch, tokens), inputs.act_dtype)
                    for name, term in inputs.terms:
                        act += term(spikes_of(name, term.dtype)).astype(inputs.act_dtype, copy=False)
                    if inputs.host:
                        act += host_act[pop.name]
                    state = states[pop.name]
                    if pop.stateless and t > 0:  # Lava resets these at every step (t = 0: fresh state)
                        state.u[...] = 0
                        state.v[...] = 0
                    spiked = fxp.lif_fixed_step(state, act, du=fxp.DU_FULL, dv=pop.dv_int,
                                                bias=self.biases[pop.name], vth=pop.vth_int)
                fired[pop.name] = spiked
                if pop.record:
                    counts[pop.name] += int(np.count_nonzero(spiked))
                    if record:
                        spikes[pop.name][t] = spiked
            for term in self.readout:
                readout[t] += term(spikes_of(self.plan.readout.src, term.dtype))
        shaped = {pop.name: spikes[pop.name].transpose(0, 2, 1, 3).reshape(T, batch, *pop.shape)
                  for pop in recorded} if record else {}
        return NetworkRun(readout.transpose(0, 2, 1, 3).reshape(T, batch, -1), shaped, counts,
                          {name: s.wrapped for name, s in states.items()},
                          {name: s.saturated for name, s in states.items()})


class LoihiEmulationPolicy(Policy):
    """A spiking DT graph in Loihi fixed point, closed loop, without Lava: the encoder Conv1d on
    the host (the Lava policy's `HostEncoder`), its graded currents quantised as Lava's host
    source sends them, the network in `FixedPointNetwork`, the readout decoded exactly as
    `LavaPolicy(bundle, fixed_point=True)` decodes it (same numbers, same operations).

    act(windows (B, L, D_in)) / outputs(...) as `export.nir.NIRPolicy`. Built from a NIR graph
    (the plan and its quantisation made here, as `export --target lava` makes them) or from a
    Lava bundle's own plan (`from_source`). `float_counterpart()` is the NIR reference simulator
    on the same graph: the float network this fixed point quantises.
    """

    backend = "loihi-emulation"
    model_kind = "snn"

    def __init__(self, graph: nir.NIRGraph, plan: Plan | None = None, host_terms: list[HostTerm] | None = None, *,
                 source: str = "<graph>", quantization: list[dict] | None = None, record: bool = False):
        if plan is None:
            plan, host_terms, notes = build_plan(graph)
            quantization = notes["quantization_report"].to_json()
        if plan.streaming:  # export/lava/streaming.py: its carried trace has no fixed-point plan
            raise UnsupportedModuleError(f"{source}: a streaming graph has no Loihi fixed-point plan (Lava runs it "
                                         "in floating_pt only)")
        self.graph, self.plan, self.source = graph, plan, source
        self.token_features, self.context_tokens = input_shape(graph)
        metadata = read_policy_metadata((graph.metadata or {}).get("spikingmind"), source, require_env=False,
                                        n_tokens=self.context_tokens)
        self.meta, self.decode = metadata.raw, metadata.decode
        self.spec, self.layout, self.norm = metadata.spec, metadata.layout, metadata.norm
        self.encoder = HostEncoder(graph, list(host_terms or []))
        self.network = FixedPointNetwork(plan)
        self.time_steps = plan.time_steps
        self.sizes = {pop.name: pop.size for pop in plan.populations}
        self.record = record  # keep every recorded population's spikes of the last call in `last_run`
        self.last_run: NetworkRun | None = None
        self.quantization = list(quantization or [])  # the plan's clips when it was quantised
        self.graded_input: dict[str, dict[str, int]] = {}  # host inputs clipped to 16 bits while running
        self.tally = SpikeTally()
        self.state_limits = {"u_wrapped": 0, "v_saturated": 0}
        self.seconds, self.decisions = 0.0, 0

    @classmethod
    def from_source(cls, path: str | Path, record: bool = False) -> "LoihiEmulationPolicy":
        """A Lava bundle folder (its own plan), a .nir graph or a checkpoint folder (exported in memory)."""
        from spikingmind.export.nir import load_or_export_graph
        from spikingmind.export.reference import load_graph

        path = Path(path)
        if path.is_dir() and (path / "manifest.json").exists():
            manifest = json.loads((path / "manifest.json").read_text())
            return cls(load_graph(path / "model.nir"), load_plan(path), bundle_host_terms(path), source=str(path),
                       quantization=manifest.get("quantization_report", []), record=record)
        return cls(load_or_export_graph(path), source=str(path), record=record)

    def outputs(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (B, L, D_in) or (L, D_in) -> decision-token outputs (B, n_out) or (n_out,), float64."""
        inputs, single = graph_inputs(tokens, self.context_tokens, self.token_features)  # (B, D_in, L)
        start = time.perf_counter()
        n = len(inputs)
        report = fxp.QuantizationReport()
        host = fixed_host_currents(self.plan, self.encoder.currents(inputs), report)
        for name, values in host.items():
            entry = self.graded_input.setdefault(name, {"clipped": 0, "total": 0})
            entry["total"] += int(values.size)
        for clip in report.records:
            self.graded_input[clip.layer]["clipped"] += clip.clipped
        run = self.network.run(host, n, record=self.record)
        readout = self.plan.readout
        values = readout_values(self.plan, run.readout.transpose(2, 0, 1), fixed=True)  # (n_readout, T, B)
        out = values.transpose(1, 2, 0).reshape(self.time_steps, n, *readout.shape)  # (T, B, n_out, L)
        outputs = self.decode.decision_outputs(out)
        self.last_run = run
        self.tally.add_counts({name: (count, self.time_steps * self.sizes[name] * n)
                               for name, count in run.spike_counts.items()}, n)
        self.state_limits["u_wrapped"] += sum(run.u_wrapped.values())
        self.state_limits["v_saturated"] += sum(run.v_saturated.values())
        self.seconds += time.perf_counter() - start
        self.decisions += n
        return outputs[0] if single else outputs

    def spike_stats(self) -> dict:
        return self.tally.stats()

    def decision_stats(self) -> dict:
        """Emulation time per decision (host encoder, network, decoding) and what hit a
        fixed-point limit: the plan's quantisation clips, per host-fed population the graded
        inputs clipped to 16 bits while running (of all it was sent), u wraps and v
        saturations (Lava does the same: none of these is silent)."""
        if not self.decisions:
            return {}
        limits = {"quantization": self.quantization, "graded_input": copy.deepcopy(self.graded_input),
                  **self.state_limits}
        return {"emulation_decisions": self.decisions,
                "emulation_ms_per_decision": 1000.0 * self.seconds / self.decisions, "fixed_point_limits": limits}

    def float_counterpart(self) -> Policy:
        """The NIR reference simulator on the same graph (float64, counting spikes)."""
        from spikingmind.export.nir import NIRPolicy

        return NIRPolicy(self.graph, source=self.source, record=True)


def load_policy(path: Path, fixed_point: bool = False) -> LoihiEmulationPolicy:
    """Registry loader (`spikingmind.export.BACKENDS["loihi-emulation"]`): a .nir graph, a Lava
    bundle folder or a checkpoint folder in Loihi fixed point. Always fixed point: `fixed_point`
    is Lava's switch and changes nothing here."""
    return LoihiEmulationPolicy.from_source(path)
