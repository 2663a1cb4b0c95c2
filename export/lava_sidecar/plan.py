"""The Lava network plan: what the sidecar instantiates, and a NumPy emulation of it.

NumPy only. Imported by the main process (`spikingmind.export.lava`, which builds the plan
from a NIR graph and quantizes it) and by the sidecar (`run.py`, which turns it into Lava
processes). The plan is plain JSON + one npz of arrays: nothing is pickled.

Network (Lava core processes only):

- every spiking NIR node (LIF, Threshold) is one `LIFReset` population (flattened C-order);
  Threshold nodes and delay relays are stateless (du = dv = 1, reset every step);
- every NIR edge that ends in a spiking node is one `Sparse` synapse (the Conv1d flattened
  to a sparse matrix: `kron(W, I_L)` for a kernel-1 conv, the causal Toeplitz band for the
  mix; an identity for a direct spike edge), which delays by one step. Matrices are stored
  as COO triplets (`w_idx/<syn>` = (2, nnz) rows/cols, `w/<syn>` float values,
  `w_mant/<syn>` fixed mantissas) so that the main process needs no scipy;
- fixed point only: a synapse's stored values are partitioned into synapse groups
  (`w_group/<syn>` = group id per stored value), each its own `Sparse` with its own
  `weight_exp` (`Synapse.weight_exps[g]`), all from the same source to the same
  population, so they arrive in the same step and the neuron sums them (e.g. excitatory
  and inhibitory weights with a full 8-bit mantissa each, or large and small taps with
  different exponents). floating_pt keeps one Sparse per synapse (the reference's sum);
- real-valued currents computed on the host (the `embed` Conv1d of the Input) enter through a
  `NpySource` (lava_sidecar/npy_sink) wired straight into the neuron (no delay), pre-shifted in time;
- the readout Conv1d is a `Sparse` into an `NpySink`; its bias is added on the host.

Timing: `offset[n]` is the Lava step (0-based) at which population n performs SNN step t=0
of the first decision. Host-fed populations without synaptic inputs have offset 0;
otherwise offset = max over incoming synapses of (offset[src] + 1). A synapse whose natural
arrival is early goes through a chain of relay populations (identity Sparse + stateless
threshold 0.5), one step each, so all branches into a node are aligned. Decision k's step t
happens at Lava step k*period + offset[n] + t: decisions are pipelined, one every `period`
(= T) steps, and a population resets u = v = 0 (LIFReset) at its own first step of every
decision, which also wipes whatever the bias integrated before the inputs arrived.

Streaming plans (`Plan.streaming`, plan version 4; `spikingmind.export.lava.streaming` builds
them and says why this design): one token per slot of `period` = T + 1 steps, the same
offsets and relays as above. A decision is `Streaming.decision_steps` Lava steps; its token
position j (action, return-to-go, state) has the slot from step j*period, so SNN step t of
position j of decision k runs on population n at Lava step
k*decision_steps + j*period + offset[n] + t, and the decision's steps last until the state
token's Output is out, before the next decision's first token goes in: every sidecar call
runs one whole decision. The step before each slot is a *reset step*: the host sends every
LIF population a large current there (`Population.pulse_reset`), it fires and Lava's LIF
resets it to 0, so each token's run starts from zero membranes without LIFReset, whose reset
phase is one per process. That lets every spiking population share one Lava `LIF` process
(`Population.process`, per-neuron dv/vth/bias) and every graded population one `S4d` process
(a = 0: out = in), joined by one Sparse per pair of processes: a handful of processes however
deep the graph, which is what a Lava step costs. Whatever a population does outside its
tokens' steps (reset spikes, bias-driven spikes while idle) reaches each downstream
population outside its tokens' steps too (every hop is one step), so it touches nothing real.
The carried trace is `kind == "trace"` lanes, one per token position, each gated by a host
current on its copy of kv_and (`Population.gate`) and fed back through graded relays; see
the streaming module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PLAN_VERSION = 3
#: A streaming plan (its `streaming` section) is version 4: older readers must refuse it.
STREAMING_PLAN_VERSION = 4
PLAN_VERSIONS = (PLAN_VERSION, STREAMING_PLAN_VERSION)
#: Host current of a streaming reset step (float units): far above any threshold plus input.
RESET_PULSE = 2.0 ** 40
#: Kinds of graded (real-valued, no dynamics) populations of a streaming plan.
GRADED_KINDS = ("trace", "trace-relay")


@dataclass
class Population:
    name: str
    kind: str                      # "lif" | "threshold" | "relay"; streaming also "trace" | "trace-relay"
    shape: list[int]
    offset: int = 0
    stateless: bool = False
    record: bool = True
    host_input: bool = False       # takes a host-computed real current
    inputs: list[str] = field(default_factory=list)   # "host" or synapse names, edge order
    # streaming plans only
    process: str = ""              # the merged Lava process it belongs to ("" = one of its own)
    pulse_reset: bool = False      # reset by the host's pulse at each slot's reset step
    gate: int = -1                 # token position whose host gate current it needs to fire
    gate_current: float = 0.0      # that current, over the T steps of the position's token
    host_bias: bool = False        # its bias arrives as a host current (summed into u like the input)
    # floating point parameters (Lava float LIF: du=1, dv, vth, bias in float units)
    dv: float = 1.0
    vth: float = 0.5
    # fixed point parameters (Lava bit-accurate LIF)
    scale: float = 1.0             # activation units per float unit
    dv_int: int = 4095
    vth_int: int = 0
    bias_exp: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def graded(self) -> bool:
        return self.kind in GRADED_KINDS


@dataclass
class Streaming:
    """The schedule of a streaming plan: `positions` token positions per decision (action,
    return-to-go, state; an episode's first decision fills the last two), one slot of
    `Plan.period` steps each from the decision's first step, `decision_steps` Lava steps per
    decision (its slots, then until the decision token's Output has left the network)."""

    positions: int
    decision_steps: int
    decision_position: int         # the position whose Output run is the decision (the state token)


@dataclass
class Synapse:
    name: str
    src: str
    dst: str
    weight_exps: list[int] = field(default_factory=lambda: [0])   # fixed point: one per synapse group


@dataclass
class Readout:
    name: str                      # NIR Output node
    src: str
    shape: list[int]
    scale: float = 1.0             # fixed point: activation units per float unit
    weight_exps: list[int] = field(default_factory=lambda: [0])

    def offset(self, plan: "Plan") -> int:
        return plan.population(self.src).offset + 1


@dataclass
class Plan:
    time_steps: int
    dt: float
    populations: list[Population]
    synapses: list[Synapse]
    readout: Readout | None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    streaming: Streaming | None = None
    # arrays: "bias/<pop>" float, "bias_mant/<pop>" int; per synapse "w_idx/<syn>" (2, nnz)
    #         rows/cols, "w/<syn>" float values, "w_mant/<syn>" int values, "w_group/<syn>"
    #         fixed-point synapse group of each value; "readout_idx", "readout_w",
    #         "readout_w_mant", "readout_w_group", "readout_bias"

    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(name)

    def synapse(self, name: str) -> Synapse:
        for syn in self.synapses:
            if syn.name == name:
                return syn
        raise KeyError(name)

    def matrix_shape(self, syn: Synapse) -> tuple[int, int]:
        return self.population(syn.dst).size, self.population(syn.src).size

    def readout_shape(self) -> tuple[int, int]:
        return int(np.prod(self.readout.shape)), self.population(self.readout.src).size

    def fixed_groups(self, key: str, weight_exps: list[int]) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """The fixed-point synapse groups of a matrix (`key`: a synapse name, or "readout"):
        [(index (2, n_g), int32 mantissas, weight_exp)], one Sparse each."""
        idx_key, mant_key, group_key = ((f"w_idx/{key}", f"w_mant/{key}", f"w_group/{key}") if key != "readout"
                                        else ("readout_idx", "readout_w_mant", "readout_w_group"))
        index, mant = self.arrays[idx_key], self.arrays[mant_key].astype(np.int32)
        group = self.arrays.get(group_key, np.zeros(mant.shape, np.int8))
        out = []
        for g, exp in enumerate(weight_exps):
            select = group == g
            out.append((index[:, select], mant[select], int(exp)))
        return out

    @property
    def period(self) -> int:
        """Lava steps between two tokens (windowed: decisions): T, or T + 1 with a streaming
        plan's reset step."""
        return self.time_steps + 1 if self.streaming else self.time_steps

    @property
    def decision_steps(self) -> int:
        """A streaming plan: Lava steps per decision (one sidecar call per decision)."""
        return self.streaming.decision_steps

    @property
    def latency(self) -> int:
        """Lava steps from the first input to the first step of the last recorded node."""
        offsets = [p.offset for p in self.populations if p.record]
        if self.readout is not None:
            offsets.append(self.readout.offset(self))
        return max(offsets, default=0)

    def total_steps(self, n_decisions: int, period: int | None = None) -> int:
        period = period or self.time_steps
        return (n_decisions - 1) * period + self.time_steps + self.latency

    # ---- persistence: JSON + npz, no pickle ------------------------------------------

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        meta = {
            "plan_version": STREAMING_PLAN_VERSION if self.streaming else PLAN_VERSION,
            "time_steps": self.time_steps,
            "dt": self.dt,
            "latency": self.latency,
            "populations": [asdict(p) for p in self.populations],
            "synapses": [asdict(s) for s in self.synapses],
            "readout": asdict(self.readout) if self.readout else None,
        }
        if self.streaming:
            meta["streaming"] = asdict(self.streaming)
        (folder / "lava_plan.json").write_text(json.dumps(meta, indent=2) + "\n")
        np.savez(folder / "lava_plan.npz", **self.arrays)

    @classmethod
    def load(cls, folder: str | Path) -> "Plan":
        folder = Path(folder)
        meta = json.loads((folder / "lava_plan.json").read_text())
        if meta.get("plan_version") not in PLAN_VERSIONS:
            raise ValueError(f"{folder}: plan version {meta.get('plan_version')} not in {PLAN_VERSIONS}")
        with np.load(folder / "lava_plan.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        return cls.from_json(meta, arrays)

    @classmethod
    def from_json(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "Plan":
        """A plan from its `lava_plan.json` contents and its arrays."""
        return cls(
            time_steps=int(meta["time_steps"]),
            dt=float(meta["dt"]),
            populations=[Population(**p) for p in meta["populations"]],
            synapses=[Synapse(**s) for s in meta["synapses"]],
            readout=Readout(**meta["readout"]) if meta["readout"] else None,
            arrays=arrays,
            streaming=Streaming(**meta["streaming"]) if meta.get("streaming") else None,
        )


# ---- host-side scheduling of inputs and records ----------------------------------------


def schedule_host_currents(plan: Plan, currents: dict[str, np.ndarray], n_steps: int,
                           period: int | None = None) -> dict[str, np.ndarray]:
    """Per host-fed population: (size, n_steps) source data.

    currents[pop]: (N, size) current of each decision (constant over its T steps).
    Decision k's current is placed at Lava steps k*period + offset + t, t < T.
    """
    period = period or plan.time_steps
    out = {}
    for pop in plan.populations:
        if not pop.host_input:
            continue
        per_decision = np.asarray(currents[pop.name])
        data = np.zeros((pop.size, n_steps), dtype=per_decision.dtype)
        for k in range(per_decision.shape[0]):
            start = k * period + pop.offset
            data[:, start:start + plan.time_steps] = per_decision[k][:, None]
        out[pop.name] = data
    return out


def align_records(raw: np.ndarray, offset: int, n_decisions: int, time_steps: int,
                  shape, period: int | None = None) -> np.ndarray:
    """(size, n_steps) Lava trace -> (T, N, *shape) on the reference's time axis."""
    period = period or time_steps
    index = offset + np.arange(n_decisions)[None, :] * period + np.arange(time_steps)[:, None]  # (T, N)
    return raw[:, index].transpose(1, 2, 0).reshape(time_steps, n_decisions, *shape)


# ---- streaming plans: schedule, layout, records ---------------------------------------------


def stream_host_data(plan: Plan, currents: dict[str, np.ndarray], present: np.ndarray) -> dict[str, np.ndarray]:
    """One episode's host data for a streaming plan, decisions one after another:
    {population: (size, n_steps)}, n_steps = n_decisions * plan.decision_steps.

    currents[pop]: (n_decisions, positions, size) the host current of each token of a host-fed
    population (zeros where no token); present: (n_decisions, positions) bool, the positions
    that hold a token. Besides the tokens' currents (constant over their T steps, at the
    population's offset) the data holds every LIF's reset pulse, the
    gate current of a kv_and lane copy (over the T steps of its position's token) and a
    host-fed bias (every step). The LIFs' pulse is at the step before every position's slot.
    """
    steps = plan.time_steps
    present = np.asarray(present, bool)
    n_decisions = present.shape[0]
    n_steps = n_decisions * plan.decision_steps
    slot_start = stream_slot_starts(plan, n_decisions)  # (n_decisions, positions), at offset 0
    out = {}
    for pop in plan.populations:
        if "host" not in pop.inputs:
            continue
        data = np.zeros((pop.size, n_steps))
        if pop.host_input:
            values = np.asarray(currents[pop.name], np.float64)[present]   # (tokens, size)
            for start, value in zip(slot_start[present] + pop.offset, values):
                data[:, start:start + steps] = value[:, None]
        if pop.gate >= 0:
            for start in slot_start[:, pop.gate][present[:, pop.gate]] + pop.offset:
                data[:, start:start + steps] += pop.gate_current
        if pop.host_bias:
            data += plan.arrays[f"host_bias/{pop.name}"][:, None]
        if pop.pulse_reset:  # the step before each position's slot, in every decision
            before = (slot_start[0] + pop.offset - 1) % plan.decision_steps
            data[:, np.isin(np.arange(n_steps) % plan.decision_steps, before)] += RESET_PULSE
        out[pop.name] = data
    return out


def expand_stream_inputs(plan: Plan, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A streaming job's compact inputs -> host data {population: (B, size, n_steps)}.

    inputs: "present" (B, n_decisions, positions) bool and, per host-fed population,
    "current/<pop>" (B, n_decisions, positions, size); what the host sends (the schedule of
    pulses, gates and biases is the plan's, expanded here by `stream_host_data`)."""
    present = np.asarray(inputs["present"], bool)
    rows = [stream_host_data(plan, {name[len("current/"):]: value[row] for name, value in inputs.items()
                                    if name.startswith("current/")}, present[row])
            for row in range(present.shape[0])]
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def stream_slot_starts(plan: Plan, n_decisions: int) -> np.ndarray:
    """(n_decisions, positions): the Lava step at which each token position's slot starts
    (population offset 0): decision k's position j at k * decision_steps + j * period."""
    return (np.arange(n_decisions)[:, None] * plan.decision_steps
            + np.arange(plan.streaming.positions)[None, :] * plan.period)


def align_stream(raw: np.ndarray, offset: int, plan: Plan, shape) -> np.ndarray:
    """(size, n_steps) Lava trace of a streaming run -> (n_decisions, positions, T, *shape):
    the T steps of every token position of every decision."""
    n_decisions = raw.shape[1] // plan.decision_steps
    index = stream_slot_starts(plan, n_decisions)[:, :, None] + offset + np.arange(plan.time_steps)[None, None, :]
    return np.moveaxis(raw[:, index], 0, -1).reshape(n_decisions, plan.streaming.positions, plan.time_steps, *shape)


def process_layout(plan: Plan) -> dict[str, list[tuple[str, int, int]]]:
    """A streaming plan's merged processes: {process: [(population, start, size)]} in plan
    order, each process's neurons of one episode (row) side by side."""
    layout: dict[str, list[tuple[str, int, int]]] = {}
    for pop in plan.populations:
        members = layout.setdefault(pop.process, [])
        start = members[-1][1] + members[-1][2] if members else 0
        members.append((pop.name, start, pop.size))
    return layout


class SparseWeights:
    """A COO weight matrix (rows, cols, values) applied to binary spikes, NumPy only."""

    def __init__(self, index: np.ndarray, values: np.ndarray, shape: tuple[int, int]):
        self.rows, self.cols = np.asarray(index[0], np.int64), np.asarray(index[1], np.int64)
        self.values, self.shape = np.asarray(values), tuple(shape)

    def accumulate(self, spikes: np.ndarray) -> np.ndarray:
        """sum_j w_ij s_j, (n_rows,): int64 for integer weights (exact), else float64."""
        hit = np.asarray(spikes, bool)[self.cols]
        total = np.bincount(self.rows[hit], weights=self.values[hit], minlength=self.shape[0])
        return np.rint(total).astype(np.int64) if np.issubdtype(self.values.dtype, np.integer) else total

    def apply(self, values: np.ndarray) -> np.ndarray:
        """sum_j w_ij x_j for real-valued x (float64), (n_rows,)."""
        return np.bincount(self.rows, weights=self.values * np.asarray(values, np.float64)[self.cols],
                           minlength=self.shape[0])

    def to_dense(self) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        dense[self.rows, self.cols] = self.values
        return dense


# ---- NumPy emulation of the Lava network (timing of Lava, arithmetic of each mode) -----


def emulate(plan: Plan, host_data: dict[str, np.ndarray], n_steps: int, *, fixed: bool,
            period: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Step the plan as Lava does; returns raw traces {pop: (size, n_steps)} (+ "readout").

    fixed=True follows PySparseModelBitAcc / PyLifResetModelBitAcc bit for bit; the second
    return value counts u wraps and v saturations per population.
    """
    from spikingmind import fixed_point as fxp

    if fixed and plan.streaming:
        raise ValueError("a streaming plan has no fixed-point emulation (its graded trace is floating_pt only)")
    period = period or plan.period
    pops = plan.populations
    dtype = np.int32 if fixed else np.float64
    u = {p.name: np.zeros(p.size, dtype) for p in pops}
    v = {p.name: np.zeros(p.size, dtype) for p in pops}
    spikes = {p.name: np.zeros(p.size, np.float64 if p.graded else bool) for p in pops}
    graded = {p.name: p.graded for p in pops}
    weights, biases = {}, {}

    def matrices(key, weight_exps, shape):
        """[(SparseWeights, weight_exp)]: the fixed-point groups, or the one float matrix."""
        if not fixed:
            idx_key, w_key = (f"w_idx/{key}", f"w/{key}") if key != "readout" else ("readout_idx", "readout_w")
            return [(SparseWeights(plan.arrays[idx_key], plan.arrays[w_key], shape), 0)]
        return [(SparseWeights(index, fxp.lava_weights(mant, implicit_zero=index.shape[1] < shape[0] * shape[1]),
                               shape), exp) for index, mant, exp in plan.fixed_groups(key, weight_exps)]

    for syn in plan.synapses:
        weights[syn.name] = matrices(syn.name, syn.weight_exps, plan.matrix_shape(syn))
    for p in pops:
        biases[p.name] = (fxp.effective_bias(plan.arrays[f"bias_mant/{p.name}"], p.bias_exp) if fixed
                          else plan.arrays[f"bias/{p.name}"])
    readout = plan.readout
    if readout is not None:
        readout_w = matrices("readout", readout.weight_exps, plan.readout_shape())
    traces = {p.name: np.zeros((p.size, n_steps), dtype) for p in pops}
    if readout is not None:
        traces["readout"] = np.zeros((plan.readout_shape()[0], n_steps), np.int64 if fixed else dtype)
    states = {p.name: fxp.FixedLifState(u[p.name], v[p.name]) for p in pops} if fixed else None

    def dense(groups, s, graded=False):
        """Every group's Sparse output (its own shift), summed as the receiving InPort does."""
        if not fixed:
            return groups[0][0].apply(s) if graded else groups[0][0].accumulate(s)
        total = 0
        for w, exp in groups:
            total = total + fxp.shift_accumulated(w.accumulate(s), exp)
        return total

    for g in range(n_steps):
        time_step = g + 1  # Lava counts from 1
        # a synapse delivers at step g the weighted spikes its source sent at step g-1
        prev = spikes
        delivered = {syn.name: dense(weights[syn.name], prev[syn.src], graded[syn.src]) for syn in plan.synapses}
        if readout is not None:
            traces["readout"][:, g] = dense(readout_w, prev[readout.src])
        new_spikes = {}
        for p in pops:
            act = np.zeros(p.size, dtype)
            for item in p.inputs:
                act = act + (host_data[p.name][:, g] if item == "host" else delivered[item])
            if p.graded:  # Lava's S4d with a = 0, b = 1, c = 1/2: it sends its input on
                new_spikes[p.name] = act
                traces[p.name][:, g] = act
                continue
            interval, reset_offset = (1, 0) if p.stateless else (period, (p.offset + 1) % period)
            if not p.pulse_reset and time_step % interval == reset_offset:
                u[p.name][:] = 0
                v[p.name][:] = 0
            if fixed:
                s = fxp.lif_fixed_step(states[p.name], act, du=fxp.DU_FULL, dv=p.dv_int,
                                       bias=biases[p.name], vth=p.vth_int)
            else:
                u[p.name][:] = u[p.name] * (1 - 1.0)
                u[p.name][:] += act
                v[p.name][:] = v[p.name] * (1 - p.dv) + u[p.name] + biases[p.name]
                s = v[p.name] > p.vth
                v[p.name][s] = 0
            new_spikes[p.name] = s
            traces[p.name][:, g] = s
        spikes = new_spikes
    counts = {}
    if fixed:
        for name, state in states.items():
            counts[name] = {"u_wrapped": state.wrapped, "v_saturated": state.saturated}
    return traces, counts
