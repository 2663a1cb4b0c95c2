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

Synapses: each synapse group (one Lava Sparse: 8-bit mantissas, one exponent) is an exact
integer product on binary spikes, computed in float64 (every product is an integer and every
sum stays far below 2**53, so it is exact in any summation order), shaped by what the matrix
is on the populations' (C, L) grids (`FixedSynapse.kind`):

    diagonal  a direct spike edge or a relay (an identity): elementwise
    channel   a kernel-1 Conv1d, kron(W, I_L): one (C_out, C_in) matmul over all tokens
    token     the causal mix (channel-diagonal): one (L_out, L_in) matrix per channel
    sparse    anything else: the COO entries summed with bincount
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind.errors import ExportError
from spikingmind.export.lava.bundle import bundle_host_terms, load_plan
from spikingmind.export.lava.host import HostEncoder, fixed_host_currents, input_shape, readout_values
from spikingmind.export.lava.plan import HostTerm, build_plan
from spikingmind.export.lava_sidecar.plan import Plan, Population
from spikingmind.metadata import read_policy_metadata
from spikingmind.policy import Policy, SpikeTally

#: The `token` form stores C * L_out * L_in values; beyond this many it uses the COO entries.
MAX_TOKEN_ENTRIES = 1 << 24


def _grid(shape) -> tuple[int, int]:
    """A population's (channels, tokens): the last axis is the token axis (C-order flattening)."""
    shape = [int(n) for n in shape]
    return (int(np.prod(shape[:-1])), shape[-1]) if len(shape) >= 2 else (shape[0], 1)


class FixedSynapse:
    """One fixed-point synapse group (a Lava Sparse) as an exact integer product on binary spikes.

    `index` (2, nnz) rows/cols of the stored values, `mant` their mantissas (Lava's clip and
    mixed-sign LSB applied here, as its bit-accurate model does), `weight_exp` the group's shift;
    `dst_shape` / `src_shape` the populations' shapes. Calling it on spikes (B, n_src) gives
    `shift_accumulated(sum_j w_ij s_j, weight_exp)`, (B, n_dst) int64.
    """

    def __init__(self, index: np.ndarray, mant: np.ndarray, weight_exp: int, dst_shape, src_shape):
        self.n_dst, self.n_src = int(np.prod(dst_shape)), int(np.prod(src_shape))
        self.weight_exp = int(weight_exp)
        rows, cols = np.asarray(index[0], np.int64), np.asarray(index[1], np.int64)
        weights = fxp.lava_weights(mant, implicit_zero=rows.size < self.n_dst * self.n_src).astype(np.float64)
        (c_dst, l_dst), (c_src, l_src) = _grid(dst_shape), _grid(src_shape)
        self.grid_dst, self.grid_src = (c_dst, l_dst), (c_src, l_src)
        o, i = np.divmod(rows, l_dst)
        c, j = np.divmod(cols, l_src)
        if self.n_dst == self.n_src and np.array_equal(rows, cols):
            self.kind = "diagonal"
            self.matrix = np.zeros(self.n_dst)
            self.matrix[rows] = weights
        elif l_dst == l_src and np.array_equal(i, j) and self._channel(o, c, weights, c_dst, c_src, l_dst):
            self.kind = "channel"
        elif c_dst == c_src and np.array_equal(o, c) and c_dst * l_dst * l_src <= MAX_TOKEN_ENTRIES:
            self.kind = "token"
            self.matrix = np.zeros((c_dst, l_dst, l_src))
            self.matrix[o, i, j] = weights
        else:
            self.kind = "sparse"
            self.rows, self.cols, self.values = rows, cols, weights

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

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        """spikes (B, n_src), float64 0/1 -> shifted integer sums (B, n_dst), int64."""
        batch = spikes.shape[0]
        if self.kind == "diagonal":
            total = spikes * self.matrix
        elif self.kind == "channel":
            total = np.matmul(self.matrix, spikes.reshape(batch, *self.grid_src)).reshape(batch, self.n_dst)
        elif self.kind == "token":
            grid = spikes.reshape(batch, self.grid_src[0], self.grid_src[1], 1)
            total = np.matmul(self.matrix, grid).reshape(batch, self.n_dst)
        else:
            slots = (np.arange(batch)[:, None] * self.n_dst + self.rows[None, :]).reshape(-1)
            total = np.bincount(slots, weights=(spikes[:, self.cols] * self.values).reshape(-1),
                                minlength=batch * self.n_dst).reshape(batch, self.n_dst)
        return fxp.shift_accumulated(np.rint(total).astype(np.int64), self.weight_exp)


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
        self.sizes = {pop.name: pop.size for pop in plan.populations}
        self.synapses = {syn.name: self._groups(syn.name, syn.weight_exps, syn.dst, syn.src) for syn in plan.synapses}
        self.sources = {syn.name: syn.src for syn in plan.synapses}
        self.biases = {pop.name: fxp.effective_bias(plan.arrays[f"bias_mant/{pop.name}"], pop.bias_exp)
                       for pop in plan.populations}
        readout = plan.readout
        self.readout = self._groups("readout", readout.weight_exps, None, readout.src)
        self.readout_size = int(np.prod(readout.shape))
        self.logic = {pop.name: table for pop in plan.populations if (table := self._truth_table(pop)) is not None}
        self.columns = {size: np.arange(size) for size in set(self.sizes.values())}

    def _groups(self, key: str, weight_exps: list[int], dst: str | None, src: str) -> list[FixedSynapse]:
        dst_shape = self.plan.population(dst).shape if dst is not None else self.plan.readout.shape
        src_shape = self.plan.population(src).shape
        return [FixedSynapse(index, mant, exp, dst_shape, src_shape)
                for index, mant, exp in self.plan.fixed_groups(key, weight_exps)]

    def _truth_table(self, pop: Population) -> np.ndarray | None:
        """A stateless population whose every input is a `diagonal` synapse (a relay, an AND of
        two spike trains) computes each neuron's spike from its m input bits alone, from fresh
        state at every step: its (2**m, size) table of spikes, computed once by the same
        arithmetic (`lif_fixed_step` on every combination of bits). None where that does not
        hold, or where a combination wraps or saturates the state (so counts stay exact)."""
        if not pop.stateless or not pop.inputs or "host" in pop.inputs or len(pop.inputs) > 4:
            return None
        if any(group.kind != "diagonal" for item in pop.inputs for group in self.synapses[item]):
            return None
        m = len(pop.inputs)
        bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1  # (2**m, m): combination c, input k
        act = np.zeros((2 ** m, pop.size), np.int64)
        for k, item in enumerate(pop.inputs):
            spikes = np.repeat(bits[:, k:k + 1].astype(np.float64), self.sizes[self.sources[item]], axis=1)
            for group in self.synapses[item]:
                act = act + group(spikes)
        state = fxp.FixedLifState(np.zeros(act.shape, np.int32), np.zeros(act.shape, np.int32))
        table = fxp.lif_fixed_step(state, act, du=fxp.DU_FULL, dv=pop.dv_int, bias=self.biases[pop.name],
                                   vth=pop.vth_int)
        return table if state.wrapped == 0 and state.saturated == 0 else None

    def _logic_step(self, pop: Population, fired: dict[str, np.ndarray]) -> np.ndarray:
        """A truth-table population's spikes (B, size) bool from its inputs' spikes of this step."""
        table = self.logic[pop.name]
        inputs = [fired[self.sources[item]] for item in pop.inputs]
        if len(inputs) == 1:
            if not table[0].any() and table[1].all():  # a relay that passes every spike on
                return inputs[0]
            return np.where(inputs[0], table[1], table[0])
        index = np.zeros(inputs[0].shape, np.intp)
        for k, spikes in enumerate(inputs):
            index |= spikes.astype(np.intp) << k
        return table[index, self.columns[pop.size]]

    def run(self, host: dict[str, np.ndarray], batch: int, record: bool = False) -> NetworkRun:
        """B = `batch` decisions from zero state. host: {host-fed population: (B, size) int32
        activation units} (`host.fixed_host_currents`). Returns a `NetworkRun`."""
        states = {pop.name: fxp.FixedLifState(np.zeros((batch, pop.size), np.int32),
                                              np.zeros((batch, pop.size), np.int32))
                  for pop in self.order if pop.name not in self.logic}
        readout = np.zeros((self.time_steps, batch, self.readout_size), np.int64)
        recorded = [pop for pop in self.order if pop.record]
        spikes = {pop.name: np.zeros((self.time_steps, batch, pop.size), bool) for pop in recorded} if record else {}
        counts = {pop.name: 0 for pop in recorded}
        for t in range(self.time_steps):
            fired: dict[str, np.ndarray] = {}  # population -> its spikes of step t, (B, size) bool
            as_float: dict[str, np.ndarray] = {}  # the same as float64 0/1, made once for the synapses

            def spikes_of(name: str) -> np.ndarray:
                if name not in as_float:
                    as_float[name] = fired[name].astype(np.float64)
                return as_float[name]

            for pop in self.order:
                if pop.name in self.logic:
                    spiked = self._logic_step(pop, fired)
                else:
                    act = np.zeros((batch, pop.size), np.int64)
                    for item in pop.inputs:
                        if item == "host":
                            act = act + host[pop.name]
                        else:
                            source = spikes_of(self.sources[item])
                            for group in self.synapses[item]:
                                act = act + group(source)
                    state = states[pop.name]
                    if pop.stateless and t > 0:  # Lava resets these at every step (t = 0: fresh state)
                        state.u[:] = 0
                        state.v[:] = 0
                    spiked = fxp.lif_fixed_step(state, act, du=fxp.DU_FULL, dv=pop.dv_int,
                                                bias=self.biases[pop.name], vth=pop.vth_int)
                fired[pop.name] = spiked
                if pop.record:
                    counts[pop.name] += int(np.count_nonzero(spiked))
                    if record:
                        spikes[pop.name][t] = spiked
            source = spikes_of(self.plan.readout.src)
            for group in self.readout:
                readout[t] += group(source)
        shaped = {pop.name: spikes[pop.name].reshape(self.time_steps, batch, *pop.shape) for pop in recorded} \
            if record else {}
        return NetworkRun(readout, shaped, counts, {name: s.wrapped for name, s in states.items()},
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
        self.graph, self.plan, self.source = graph, plan, source
        self.token_features, self.context_tokens = input_shape(graph)
        metadata = read_policy_metadata((graph.metadata or {}).get("spikingmind"), source, require_env=False,
                                        n_tokens=self.context_tokens)
        self.meta, self.decode = metadata.raw, metadata.decode
        self.spec, self.layout, self.norm = metadata.spec, metadata.layout, metadata.norm
        self.encoder = HostEncoder(graph, list(host_terms or []))
        self.network = FixedPointNetwork(plan)
        self.time_steps = plan.time_steps
        self.record = record
        self.last_run: NetworkRun | None = None
        self.quantization = list(quantization or [])  # the plan's clips when it was quantised
        self.run_report = fxp.QuantizationReport()    # graded host inputs clipped while running
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
        tokens = np.asarray(tokens, dtype=np.float64)
        single = tokens.ndim == 2
        batch = tokens[None] if single else tokens
        expected = (self.context_tokens, self.token_features)
        if batch.ndim != 3 or batch.shape[1:] != expected:
            raise ValueError(f"tokens have shape {tokens.shape}; expected (B, {expected[0]}, {expected[1]})")
        start = time.perf_counter()
        n = len(batch)
        inputs = np.ascontiguousarray(batch.transpose(0, 2, 1))  # (B, D_in, L)
        host = fixed_host_currents(self.plan, self.encoder.currents(inputs), self.run_report)
        run = self.network.run(host, n, record=self.record)
        readout = self.plan.readout
        values = readout_values(self.plan, run.readout.transpose(2, 0, 1), fixed=True)  # (n_readout, T, B)
        out = values.transpose(1, 2, 0).reshape(self.time_steps, n, *readout.shape)  # (T, B, n_out, L)
        outputs = self.decode.decision_outputs(out)
        self.last_run = run
        self.tally.add_counts({name: (count, self.time_steps * self.plan.population(name).size * n)
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
        fixed-point limit: the plan's quantisation clips, graded host inputs clipped while
        running, u wraps and v saturations (Lava would do the same; all 0 in a healthy run)."""
        if not self.decisions:
            return {}
        return {"emulation_decisions": self.decisions,
                "emulation_ms_per_decision": 1000.0 * self.seconds / self.decisions,
                "fixed_point_limits": {"quantization": self.quantization, "graded_input": self.run_report.to_json(),
                                       **self.state_limits}}

    def float_counterpart(self) -> Policy:
        from spikingmind.export.nir import NIRPolicy

        return NIRPolicy(self.graph, source=self.source, record=True)


def load_policy(path: Path, fixed_point: bool = False) -> LoihiEmulationPolicy:
    """Registry loader (`spikingmind.export.BACKENDS["loihi-emulation"]`): a .nir graph, a Lava
    bundle folder or a checkpoint folder in Loihi fixed point. Always fixed point: `fixed_point`
    is Lava's switch and changes nothing here."""
    return LoihiEmulationPolicy.from_source(path)
