"""A streaming NIR graph on Lava: the carried causal-mix trace lives in Lava, in floating_pt.

The graph (export/nir/emitters.py `emit_streaming_mix`, docs/SEMANTICS.md "Streaming") runs one
token per run of T steps; per block the only state that outlives a run is

    {mix}.trace = kv_and + g * {mix}.trace (T steps back)   (Conv1d identity <- Scale g <- Delay (T-1) dt)

and `{mix}` (the folded BatchNorm, a diagonal Conv1d) reads the trace into kv_lif. What Lava 0.10's
core processes offer for it, and what was chosen (`find_mixes`, `add_lanes`, `schedule`,
`add_feedback`, `assign_processes`, called by `build_plan`):

- **A graded value with no dynamics.** `lava.proc.graded.GradedVec` (v = a_in, sent when
  |v| > vth) is the natural one, but it has a fixed_pt model only (int32 ports: floats are
  truncated). The floating_pt processes that send a real value are Sigma / SigmaDelta (an
  integrator plus delta coding: a running sum, not bit-exact) and `lava.proc.s4d.S4d`
  (state = state * a + in * b, out = Re(c * state * 2)). With a = 0, b = 1, c = 1/2 an S4d
  neuron sends exactly its input (x * 0 = 0, 0 + x = x, (x / 2) * 2 = x for every normal
  float): that is the trace neuron (`kind == "trace"`), and its graded relays ("trace-relay").
- **T steps back.** `DelaySparse` delays per connection, but its floating_pt model rebuilds a
  stacked matrix of every delay at every step (slow for the long delays below); CUBA decay
  (du) and LIFReset's reset_interval act every step or on a fixed phase, not "the same SNN step
  of the previous token". So the trace is fed back through a chain of S4d relays, one Lava
  step each (identity Sparse hops, the last one weighted g): trace_j = kv_and_j + g * trace_i,
  the same two float operations as the reference's Scale and sum, so the trace is bit-exact.
- **Closed loop.** Tokens are pipelined, one slot every T + 1 steps, but the next decision's
  tokens exist only after this decision's action: each decision is a fixed number of steps, a
  slot for each of its 3 tokens (action, return-to-go, state), then steps until the state
  token's Output is out. A trace fed back one slot earlier would run through those idle steps,
  so it has one lane per token position (`Population.gate` j): lane j reads its own copy of
  kv_and, which fires only with the host's gate current on position j's token, and the
  previous position's lane (for j = 0 the state lane of the decision before). Outside its
  position a lane is exactly 0, so kv_lif reads scale * (lane_0 + lane_1 + lane_2) = scale *
  trace exactly, with the mix's shift sent by the host (`host_bias`) so that kv_lif's current
  is summed in the reference's order. An episode starts from a freshly built network (Lava's
  graded processes cannot zero a value held in flight; `Var.set` writes one value per message).
- **Few processes.** A Lava 0.10 step costs a fixed handshake per process (the runtime service
  hands each process each phase): on these 2 cores a chain of 60 processes took ~20 ms a step,
  and one process per population and per synapse would make a 2-block streaming plan over 200
  (it has ~110 populations, ~140 synapses with relays and lanes). LIFReset resets on one phase
  per process,
  so instead every spiking population is one Lava `LIF` process (per-neuron dv, vth, bias),
  reset by a host pulse before each token, and every graded one one `S4d`, with one Sparse per
  pair of processes (`Population.process`): 9 processes whatever the depth.
  lava_sidecar/plan.py states the timing (reset steps included).
- **Loihi fixed_pt: not built.** The integer path exists in core processes (GradedVec and
  Sparse with graded messages), but the plan, its quantisation and the integer emulation of
  the graded trace are not written: a streaming bundle refuses fixed_pt with a LavaError.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from spikingmind.errors import UnsupportedModuleError
from spikingmind.export.lava_sidecar.plan import Population, Streaming, Synapse
from spikingmind.tokens import TOKENS_PER_STEP

#: Token positions of a decision in episode order: the previous action, then the new step's
#: return-to-go and state; the state token (the last) decides.
POSITIONS = TOKENS_PER_STEP
DECISION_POSITION = POSITIONS - 1


@dataclass
class Mix:
    """One carried trace of a streaming graph: `trace` <- `source` (spikes) and <- `decay` (Scale g)
    <- `delay` (Delay) <- `trace`; `readers` are the Conv1d nodes reading it."""

    trace: str
    delay: str
    decay: str
    source: str
    readers: list[str]
    decay_values: np.ndarray   # (size,) g per neuron, C-order


def is_streaming(graph: nir.NIRGraph) -> bool:
    return any(isinstance(node, nir.Delay) for node in graph.nodes.values())


def find_mixes(graph: nir.NIRGraph, shapes, time_steps: int, dt: float) -> dict[str, Mix]:
    """Every Delay + Scale feedback loop of a streaming graph, checked against the form
    `emit_streaming_mix` writes; anything else is an UnsupportedModuleError naming the node."""
    nodes, edges = graph.nodes, list(graph.edges)
    incoming = {name: [a for a, b in edges if b == name] for name in nodes}
    outgoing = {name: [b for a, b in edges if a == name] for name in nodes}
    mixes: dict[str, Mix] = {}

    def fail(name, why):
        raise UnsupportedModuleError(f"node '{name}' ({type(nodes[name]).__name__}): {why}; on Lava a Delay "
                                     "must carry a streaming causal mix (Conv1d identity <- Scale <- Delay <- it)")

    for name, node in nodes.items():
        if not isinstance(node, nir.Delay):
            continue
        (trace,) = incoming[name] if len(incoming[name]) == 1 else fail(name, "needs exactly one input")
        (decay,) = outgoing[name] if len(outgoing[name]) == 1 else fail(name, "needs exactly one output")
        if not isinstance(nodes[decay], nir.Scale) or outgoing[decay] != [trace]:
            fail(name, f"its output '{decay}' must be a Scale feeding back into '{trace}'")
        steps = np.rint(np.asarray(node.delay, np.float64) / dt)
        if steps.size == 0 or np.any(steps != time_steps - 1):
            fail(name, f"delay must be (time_steps - 1) dt = {time_steps - 1} steps, got {np.unique(steps)}")
        conv = nodes[trace]
        if not isinstance(conv, nir.Conv1d):
            fail(trace, "the trace must be a Conv1d")
        weight = np.asarray(conv.weight, np.float64)
        channels = weight.shape[0]
        if (weight.shape != (channels, channels, 1) or not np.array_equal(weight[:, :, 0], np.eye(channels))
                or (conv.bias is not None and np.any(np.asarray(conv.bias) != 0))):
            fail(trace, "the trace Conv1d must be the identity (kernel 1, no bias)")
        sources = [s for s in incoming[trace] if s != decay]
        if len(sources) != 1 or len(incoming[trace]) != 2 or not isinstance(nodes[sources[0]], (nir.LIF, nir.Threshold)):
            fail(trace, "the trace must read exactly one spiking node besides its Scale")
        readers = [r for r in outgoing[trace] if r != name]
        for reader in readers:
            if not isinstance(nodes[reader], nir.Conv1d):
                fail(reader, f"reads the trace '{trace}': only a Conv1d may")
        g = np.broadcast_to(np.asarray(nodes[decay].scale, np.float64), tuple(shapes[trace])).reshape(-1)
        mixes[trace] = Mix(trace, name, decay, sources[0], readers, g.copy())
    for name, node in nodes.items():
        if isinstance(node, nir.Scale) and not any(m.decay == name for m in mixes.values()):
            fail(name, "a Scale is only supported as a streaming mix's decay")
    return mixes


def lane(trace: str, position: int) -> str:
    return f"{trace}#{position}"


def add_lanes(mix: Mix, populations: dict[str, Population], synapses: list[Synapse],
              arrays: dict[str, np.ndarray]) -> None:
    """Per token position j: `{source}#{j}`, the source's copy that fires only under the host's
    gate current G (the same incoming spikes, threshold + G, G above any sum of its inputs), and
    the trace lane `{trace}#{j}` it feeds through an identity synapse (the lanes' feedback is
    `add_feedback`'s)."""
    source = populations[mix.source]
    if source.kind != "threshold":
        raise UnsupportedModuleError(f"node '{mix.source}': a streaming trace must read a Threshold (kv_and)")
    size = source.size
    reach = np.zeros(size)  # the largest input a neuron can get: its positive weights, all spiking
    for syn_name in source.inputs:
        index, weight = arrays[f"w_idx/{syn_name}"], arrays[f"w/{syn_name}"]
        reach += np.bincount(index[0], weights=np.maximum(weight, 0.0), minlength=size)
    gate = float(np.ceil(max(reach.max(), 0.0) - source.vth)) + 1.0  # an integer: exact sums
    for position in range(POSITIONS):
        copy = Population(f"{mix.source}#{position}", "threshold", list(source.shape), stateless=True,
                          record=False, dv=1.0, vth=source.vth + gate, gate=position, gate_current=gate,
                          inputs=["host"])
        for syn_name in source.inputs:
            syn = next(s for s in synapses if s.name == syn_name)
            twin = Synapse(f"{syn.src}->{copy.name}", syn.src, copy.name)
            arrays[f"w_idx/{twin.name}"], arrays[f"w/{twin.name}"] = arrays[f"w_idx/{syn.name}"], arrays[f"w/{syn.name}"]
            synapses.append(twin)
            copy.inputs.append(twin.name)
        populations[copy.name] = copy
        trace = Population(lane(mix.trace, position), "trace", list(source.shape), record=True)
        link = Synapse(f"{copy.name}->{trace.name}", copy.name, trace.name)
        arrays[f"w_idx/{link.name}"] = np.stack([np.arange(size), np.arange(size)]).astype(np.int32)
        arrays[f"w/{link.name}"] = np.ones(size)
        trace.inputs.append(link.name)
        synapses.append(link)
        populations[trace.name] = trace


def schedule(time_steps: int, readout_offset: int) -> Streaming:
    """Lava steps per decision: its slots up to the state token's, then until the state token's
    Output (at `readout_offset`) has left the network, so that one sidecar call runs one whole
    decision (and no fewer than its slots, reset steps included)."""
    period = time_steps + 1
    steps = DECISION_POSITION * period + readout_offset + time_steps
    return Streaming(positions=POSITIONS, decision_steps=max(steps, POSITIONS * period),
                     decision_position=DECISION_POSITION)


def add_feedback(mix: Mix, stream: Streaming, period: int, populations: dict[str, Population],
                 synapses: list[Synapse], arrays: dict[str, np.ndarray]) -> None:
    """Lane j reads g * lane j-1 one slot back (lane 0: the last position's lane of the decision
    before, `decision_steps - (positions - 1) * period` steps back) through a chain of graded
    relays, one Lava step each, the last hop weighted g."""
    size = populations[lane(mix.trace, 0)].size
    diagonal = np.stack([np.arange(size), np.arange(size)]).astype(np.int32)
    for position in range(stream.positions):
        before = (position - 1) % stream.positions
        steps = period if position > 0 else stream.decision_steps - (stream.positions - 1) * period
        src, dst = populations[lane(mix.trace, before)], populations[lane(mix.trace, position)]
        previous = src.name
        for hop in range(1, steps + 1):
            if hop < steps:
                relay = Population(f"{src.name}.to{position}.relay{hop}", "trace-relay", list(src.shape),
                                   offset=src.offset + hop, record=False)
                populations[relay.name] = relay
                target, weight = relay, np.ones(size)
            else:
                target, weight = dst, mix.decay_values
            syn = Synapse(f"{previous}->{target.name}", previous, target.name)
            arrays[f"w_idx/{syn.name}"], arrays[f"w/{syn.name}"] = diagonal, weight.astype(np.float64)
            target.inputs.append(syn.name)
            synapses.append(syn)
            previous = target.name


def assign_processes(populations: dict[str, Population], arrays: dict[str, np.ndarray]) -> None:
    """Spiking populations share one LIF process, graded ones one S4d; LIFs are reset by the
    host's pulse; a population fed by a graded synapse takes its bias from the host."""
    for pop in populations.values():
        pop.process = "trace" if pop.graded else "spiking"
        if pop.graded:
            arrays[f"bias/{pop.name}"] = np.zeros(pop.size)
            continue
        if pop.kind == "lif":
            pop.pulse_reset = True
        if pop.host_bias:
            arrays[f"host_bias/{pop.name}"] = arrays[f"bias/{pop.name}"]
            arrays[f"bias/{pop.name}"] = np.zeros(pop.size)
        if (pop.pulse_reset or pop.host_bias or pop.gate >= 0) and "host" not in pop.inputs:
            pop.inputs.insert(0, "host")
