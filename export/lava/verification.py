"""Verification of a bundle in Lava: every layer's spikes against the reference simulator
(floating_pt) and against the NumPy emulation of Loihi's integer arithmetic (fixed_pt)."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind.errors import LavaError
from spikingmind.export.lava.bundle import bundle_host_terms, load_plan
from spikingmind.export.lava.host import (HostEncoder, decision_slots, host_currents, host_data, lava_records,
                                          stream_inputs, stream_records)
from spikingmind.export.lava.sidecar import DEFAULT_TIMEOUT_S, run_sidecar
from spikingmind.export.lava_sidecar.plan import emulate
from spikingmind.export.reference import ReferenceSimulator, load_graph
from spikingmind.metadata import read_policy_metadata
from spikingmind.policy import decode_actions


@dataclass
class LayerAgreement:
    node: str
    kind: str
    total: int
    float_vs_reference: int        # mismatching spikes (Output: values differing by > 1e-9)
    fixed_vs_emulation: int        # Output: any difference (integers, bit-exact)
    fixed_vs_float: int
    rate_reference: float
    rate_fixed: float


@dataclass
class LavaAgreement:
    latency_steps: int
    layers: list[LayerAgreement]
    action_float_vs_reference: float
    action_fixed_vs_reference: float
    output_max_abs_float: float
    output_max_abs_fixed: float
    timing: dict[str, Any] = field(default_factory=dict)
    quantization: list[dict] = field(default_factory=list)
    action_fixed_vs_float: float = float("nan")
    decisions: int = 0

    @property
    def float_mismatches(self) -> int:
        return sum(max(row.float_vs_reference, 0) for row in self.layers)

    @property
    def fixed_emulation_mismatches(self) -> int:
        return sum(max(row.fixed_vs_emulation, 0) for row in self.layers)

    @property
    def passed(self) -> bool:
        """floating_pt identical to the reference and fixed_pt bit-exact against the emulation."""
        return self.float_mismatches == 0 and self.fixed_emulation_mismatches == 0

    def ms_per_decision(self, mode: str) -> float:
        """Lava run time (network built) per pipelined decision of the verification run."""
        timing = self.timing.get(mode) or {}
        return 1000.0 * timing.get("run_s", float("nan")) / max(timing.get("decisions", 1), 1)

    def to_json(self) -> dict:
        return {**self.__dict__, "layers": [row.__dict__ for row in self.layers], "passed": self.passed,
                "float_mismatches": self.float_mismatches,
                "fixed_emulation_mismatches": self.fixed_emulation_mismatches}

    def to_text(self) -> str:
        lines = [f"{'node':28s} {'kind':9s} {'total':>7s} {'flt!=ref':>8s} {'fx!=emu':>8s} {'fx!=flt':>8s} "
                 f"{'rate ref':>8s} {'rate fx':>8s}"]
        for r in self.layers:
            lines.append(f"{r.node:28s} {r.kind:9s} {r.total:7d} {r.float_vs_reference:8d} {r.fixed_vs_emulation:8d} "
                         f"{r.fixed_vs_float:8d} {r.rate_reference:8.3f} {r.rate_fixed:8.3f}")
        lines.append(f"actions over {self.decisions} decisions: float == reference {self.action_float_vs_reference:.1%}, "
                     f"fixed == float {self.action_fixed_vs_float:.1%}, fixed == reference "
                     f"{self.action_fixed_vs_reference:.1%}; latency {self.latency_steps} steps")
        return "\n".join(lines)


def verify_bundle(bundle: str | Path, decision_inputs: np.ndarray, *, timeout: float = DEFAULT_TIMEOUT_S,
                  modes: tuple[str, ...] = ("float", "fixed")) -> LavaAgreement:
    """Run `decision_inputs` (B, D_in, L) through Lava (floating_pt and fixed_pt) and compare.

    float vs reference: every spiking layer and the Output against the reference simulator;
    fixed vs emulation: bit-exactness against the NumPy emulation of Loihi's arithmetic;
    fixed vs float: the cost of quantization (spikes per layer, actions). The B decisions are
    pipelined through one Lava run per mode. Raises LavaError when the sidecar fails.
    """
    bundle = Path(bundle)
    graph = load_graph(bundle / "model.nir")
    plan = load_plan(bundle)
    if plan.streaming:
        raise LavaError(f"{bundle} is a streaming bundle: verify it on episodes with verify_stream_bundle")
    host_terms = bundle_host_terms(bundle)
    inputs = np.asarray(decision_inputs, dtype=np.float64)
    n = inputs.shape[0]
    reference = ReferenceSimulator(graph).run(inputs, time_steps=plan.time_steps, record=True)
    currents = host_currents(graph, host_terms, inputs)
    n_steps = plan.total_steps(n)
    timing: dict[str, Any] = {}
    report = fxp.QuantizationReport()
    lava: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix=f"spikingmind-lava-plan-{os.getpid()}-") as scratch:  # pid: whose it is
        plan.save(scratch)
        for mode in modes:
            fixed = mode == "fixed"
            data = host_data(plan, currents, n_steps, fixed, report if fixed else None)
            t0 = time.perf_counter()
            traces, run_timing = run_sidecar(Path(scratch), mode, data, n_steps, timeout=timeout)
            timing[mode] = {**run_timing, "wall_s": time.perf_counter() - t0, "decisions": n}
            lava[mode] = lava_records(plan, traces, n, fixed)
            if fixed:
                emulated, counts = emulate(plan, data, n_steps, fixed=True)
                emulated = {f"pop/{k}" if k != "readout" else k: v for k, v in emulated.items()}
                lava["emulation"] = lava_records(plan, emulated, n, True)
                for name, count in counts.items():
                    report.add(name, "u_wrapped", count["u_wrapped"], n_steps * plan.population(name).size, "24-bit wrap")
                    report.add(name, "v_saturated", count["v_saturated"], n_steps * plan.population(name).size,
                               "+-(2**23-1)")
    decode = read_policy_metadata((graph.metadata or {}).get("spikingmind"), str(bundle / "model.nir"),
                                  require_env=False, n_tokens=inputs.shape[-1]).decode
    rows = []
    names = [p.name for p in plan.populations if p.record] + ([plan.readout.name] if plan.readout else [])
    for name in names:
        ref = reference.records[name] if name in reference.records else reference.outputs[name]
        is_output = plan.readout is not None and name == plan.readout.name

        def diff(a, b):
            if a is None or b is None:
                return -1
            return int(np.count_nonzero(np.abs(a - b) > 1e-9)) if is_output else int(np.count_nonzero(a != b))

        flt, fx, emu = (lava.get(m, {}).get(name) for m in ("float", "fixed", "emulation"))
        if is_output and fx is not None and emu is not None:
            fx_vs_emu = int(np.count_nonzero(fx != emu))
        else:
            fx_vs_emu = diff(fx, emu)
        rows.append(LayerAgreement(
            name, "output" if is_output else plan.population(name).kind, int(ref.size),
            diff(flt, ref), fx_vs_emu, diff(fx, flt),
            float(ref.mean()) if not is_output else float("nan"),
            float(fx.mean()) if (fx is not None and not is_output) else float("nan")))

    def actions(mode):
        if plan.readout is None:
            return None
        output = reference.outputs[plan.readout.name] if mode == "reference" else lava.get(mode, {}).get(plan.readout.name)
        return None if output is None else decode_actions(decode.decision_outputs(output), decode)

    def action_agreement(a, b):
        a, b = actions(a), actions(b)
        if a is None or b is None:
            return float("nan")
        return float(np.mean(np.all(np.isclose(a, b, atol=1e-9).reshape(n, -1), axis=1)))

    def out_err(mode):
        if plan.readout is None or mode not in lava:
            return float("nan")
        return float(np.max(np.abs(lava[mode][plan.readout.name] - reference.outputs[plan.readout.name])))

    return LavaAgreement(plan.latency, rows, action_agreement("float", "reference"),
                         action_agreement("fixed", "reference"), out_err("float"), out_err("fixed"), timing,
                         report.to_json(), action_agreement("fixed", "float"), n)



def verify_stream_bundle(bundle: str | Path, episodes: list[list[np.ndarray]], *,
                         timeout: float = DEFAULT_TIMEOUT_S) -> LavaAgreement:
    """A streaming bundle in Lava floating_pt against the reference simulator, step by step.

    episodes: per episode its decisions' new tokens, (n, F) each, as a streaming policy sees
    them (the first decision return-to-go and state, then action, return-to-go, state). The
    reference runs them token by token from its carry; Lava runs every episode side by side in
    one network and one run, one decision after another, its trace carried in Lava. Compared:
    every spiking node's spikes, every carried trace (`{mix}.trace`, graded: values differing
    by > 1e-9) and the Output, at every token; the actions of the state tokens. fixed_pt is not
    run (a streaming plan has none). Raises LavaError when the sidecar fails.
    """
    from spikingmind.export.nir import NIRPolicy

    bundle = Path(bundle)
    graph = load_graph(bundle / "model.nir")
    plan = load_plan(bundle)
    if not plan.streaming:
        raise LavaError(f"{bundle} is a windowed bundle: verify it with verify_bundle")
    stream = plan.streaming
    episodes = [[np.asarray(tokens, dtype=np.float64) for tokens in episode] for episode in episodes]
    if not episodes or any(not episode for episode in episodes):
        raise ValueError("verify_stream_bundle needs at least one decision in every episode")
    n_decisions = max(len(episode) for episode in episodes)
    features = episodes[0][0].shape[-1]
    tokens = np.zeros((len(episodes), n_decisions, stream.positions, features))
    present = np.zeros((len(episodes), n_decisions, stream.positions), bool)
    reference = []  # per episode: per decision the records of its token runs and its outputs
    policy = NIRPolicy(graph, record=True)
    for row, episode in enumerate(episodes):
        present[row, :len(episode)] = decision_slots([len(t) for t in episode], stream.positions)
        policy.begin(1)
        runs = []
        for d, new in enumerate(episode):
            tokens[row, d, stream.positions - len(new):] = new
            outputs = policy.step_outputs(new[None], np.arange(1))
            runs.append((policy.last_runs, outputs[0]))
        reference.append(runs)
    data = stream_inputs(plan, HostEncoder(graph, bundle_host_terms(bundle)), tokens, present)
    n_steps = n_decisions * plan.decision_steps
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"spikingmind-lava-plan-{os.getpid()}-") as scratch:  # pid: whose it is
        plan.save(scratch)
        traces, run_timing = run_sidecar(Path(scratch), "float", data, n_steps, batch=len(episodes), timeout=timeout)
    decisions = sum(len(episode) for episode in episodes)
    timing = {"float": {**run_timing, "wall_s": time.perf_counter() - t0, "decisions": decisions}}
    lanes = {pop.name: pop for pop in plan.populations if pop.kind == "trace"}
    traces_of = {name.rsplit("#", 1)[0] for name in lanes}
    nodes = [p.name for p in plan.populations if p.record and p.kind != "trace"] + sorted(traces_of) + [
        plan.readout.name]
    ref_values: dict[str, list] = {name: [] for name in nodes}
    lava_values: dict[str, list] = {name: [] for name in nodes}
    decode = read_policy_metadata((graph.metadata or {}).get("spikingmind"), str(bundle / "model.nir"),
                                  require_env=False, n_tokens=1).decode
    ref_actions, lava_actions, out_err = [], [], 0.0
    for row, episode in enumerate(episodes):
        records = stream_records(plan, traces, row)
        for d, new in enumerate(episode):
            runs, ref_out = reference[row][d]
            for i in range(len(new)):
                position = stream.positions - len(new) + i
                for name in nodes:
                    got = records[f"{name}#{position}" if name in traces_of else name][d, position]
                    ref_values[name].append(runs[i][name][:, 0])  # (T, *shape)
                    lava_values[name].append(got)
            state = records[plan.readout.name][d, stream.decision_position][:, None]  # (T, 1, n_out, 1)
            lava_out = decode.decision_outputs(state)[0]
            out_err = max(out_err, float(np.max(np.abs(lava_out - ref_out))))
            ref_actions.append(decode_actions(ref_out[None], decode)[0])
            lava_actions.append(decode_actions(lava_out[None], decode)[0])
    rows = []
    for name in nodes:
        ref, got = np.stack(ref_values[name]), np.stack(lava_values[name])
        graded = name in traces_of or name == plan.readout.name
        differ = int(np.count_nonzero(np.abs(got - ref) > 1e-9)) if graded else int(np.count_nonzero(got != ref))
        kind = "output" if name == plan.readout.name else ("trace" if name in traces_of
                                                            else plan.population(name).kind)
        rows.append(LayerAgreement(name, kind, int(ref.size), differ, -1, -1,
                                   float(ref.mean()) if not graded else float("nan"), float("nan")))
    agree = np.mean([np.allclose(a, b, atol=1e-9) for a, b in zip(lava_actions, ref_actions)])
    return LavaAgreement(plan.readout.offset(plan), rows, float(agree), float("nan"), out_err, float("nan"),
                         timing, [], float("nan"), decisions)
