"""Export to Intel Lava (lava-nc 0.10.0): bundle, verification against the reference, policy.

Lava runs only in a Python 3.10 sidecar (`export/lava_sidecar/run.py`, venv from
`spikingmind.export.lava_env`); this module never imports Lava. It

1. turns a NIR graph of docs/SEMANTICS.md's node set into a Lava *plan*
   (`lava_sidecar/plan.py`: LIFReset populations, Sparse synapses, host sources, sinks,
   delay-balancing relays, per-population offsets) and a Loihi fixed-point version of it;
2. writes a bundle atomically: `model.nir`, `lava_plan.json`, `params_float.npz`,
   `params_fixed.npz`, `manifest.json` (+ `agreement.json` from `export`);
3. runs the bundle in the sidecar (own process group, timeout, group killed on any failure)
   and compares every layer's spikes with `export/reference.py` (floating_pt) and with the
   NumPy emulation of Loihi's integer arithmetic (fixed_pt);
4. serves closed-loop decisions (`LavaPolicy`) from one persistent sidecar;
5. `export` (the registry's entry point) does 2 and 3 on real decisions from closed-loop
   reference episodes, and keeps the bundle only once Lava has run it (see its docstring).

Encoder: the real-valued `embed` Conv1d of the Input is computed on the host (it is
constant over the T steps of a decision) and injected as a graded current straight into
each residual-stream population (an NpySource, scheduled at that population's offset). It is counted as MACs, not spike ops, exactly as in the energy model.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind import units
from spikingmind.errors import ExportError, LavaError, RunExistsError, UnsupportedModuleError
from spikingmind.export import lava_env
from spikingmind.export.lava_sidecar.plan import (
    PLAN_VERSION,
    Plan,
    Population,
    Readout,
    Synapse,
    align_records,
    emulate,
    schedule_host_currents,
)
from spikingmind.export.reference import ReferenceSimulator, _conv_geometry, load_graph, validate_graph
from spikingmind.io import atomic_dir, atomic_write_json

__all__ = ["LavaAgreement", "LavaPolicy", "agreement_table", "build_plan", "export", "export_lava_bundle",
           "real_decision_inputs", "run_sidecar", "verify_bundle"]

SIDECAR = Path(__file__).resolve().parent / "lava_sidecar" / "run.py"
LAVA_VERSION = "0.10.0"
BUNDLE_VERSION = 1
DEFAULT_TIMEOUT_S = 120.0
_STDERR_TAIL = 1500

SPIKING = (nir.LIF, nir.Threshold)


# ---------------------------------------------------------------------------------------
# NIR graph -> Lava plan


@dataclass
class _HostTerm:
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
    c_out, _, kernel, stride, dilation, groups, pad, n_out = _conv_geometry(node, n_in)
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


def build_plan(graph: nir.NIRGraph) -> tuple[Plan, list[_HostTerm], dict[str, Any]]:
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

    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, nir.Conv1d, *SPIKING)):
            raise UnsupportedModuleError(
                f"node '{name}' ({kind(name)}) has no Lava mapping; supported: Input, Conv1d, LIF, "
                "Threshold, Output")

    populations: dict[str, Population] = {}
    synapses: list[Synapse] = []
    arrays: dict[str, np.ndarray] = {}
    host_terms: list[_HostTerm] = []
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
                        host_terms.append(_HostTerm(name, src))
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
        elif isinstance(node, nir.Conv1d):
            for dst in (d for s, d in edges if s == name):
                if not isinstance(nodes[dst], (*SPIKING, nir.Output)):
                    raise UnsupportedModuleError(
                        f"Conv1d '{name}' feeds '{dst}' ({kind(dst)}); on Lava a Conv1d must feed neurons or the Output")

    _balance_delays(populations, synapses, arrays)
    for name, pop in populations.items():
        arrays[f"bias/{name}"] = np.asarray(float_bias.get(name, np.zeros(pop.size)), dtype=np.float64)
    plan = Plan(time_steps, dt, list(populations.values()), synapses, readout, arrays)
    if readout is not None:
        arrays["readout_idx"], arrays["readout_w"], arrays["readout_bias"] = readout_idx, readout_w, readout_b
    report = _quantize(plan, beta_of, theta_of)
    notes["quantization_report"] = report
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
#: k = 0 .. SCALE_CANDIDATES - 1 (threshold mantissa from 4096 down to about 128).
SCALE_STEPS_PER_OCTAVE = 8
SCALE_CANDIDATES = 40
#: At most this many synapse groups (Sparse processes) per fixed-point synapse, and the
#: factor by which each extra group must divide the squared quantization error.
MAX_WEIGHT_GROUPS = 2
GROUP_MIN_GAIN = 2.0


def _unique_weights(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    return uniq, counts


def _bias_error(bias: np.ndarray, scale: float) -> float:
    """Squared error (float units) of a bias quantized at `scale`, clipping included."""
    if not bias.size or not np.any(bias):
        return 0.0
    mant, exp = fxp.quantize_bias(bias, scale)
    return float(np.sum((fxp.effective_bias(mant, exp) / ((1 << fxp.ACT_SHIFT) * scale) - bias) ** 2))


def _choose_scale(pop: Population, theta: float, incoming: list[tuple[np.ndarray, np.ndarray]],
                  bias: np.ndarray) -> float:
    """The population's scale A (activation units per float unit), shared by every incoming
    synapse group, the bias and the threshold: the candidate that minimises the summed
    squared error (float units) of all of them, rounding and clipping together. Each
    synapse's weights are partitioned into groups (`fxp.best_partition`) at each candidate.
    Ties keep the larger scale (finer threshold, activations and bias)."""
    base = fxp.layer_scale(theta)
    best, best_cost = base, float("inf")
    for k in range(SCALE_CANDIDATES):
        scale = base * 2.0 ** (-k / SCALE_STEPS_PER_OCTAVE)
        vth = round(theta * scale)
        cost = pop.size * ((vth - theta * scale) / scale) ** 2 + _bias_error(bias, scale)
        if pop.host_input:
            cost += pop.size / 12.0 / scale ** 2  # rounding of the graded host current
        for uniq, counts in incoming:
            cost += fxp.best_partition(uniq * scale, counts, max_groups=MAX_WEIGHT_GROUPS,
                                       min_gain=GROUP_MIN_GAIN)[1] / scale ** 2
        if cost < best_cost:
            best, best_cost = scale, cost
    return best


def _quantize(plan: Plan, beta_of, theta_of) -> fxp.QuantizationReport:
    """Fill the plan's fixed-point fields (see spikingmind.fixed_point for the formats).

    Per population one scale A (`_choose_scale`); per synapse a partition of its weights
    into synapse groups with their own exponents (`fxp.plan_weight_groups`), each weight
    rounded to nearest; every clip is counted in the report."""
    report = fxp.QuantizationReport()

    def unstored_zeros(index_key, shape):
        return plan.arrays[index_key].shape[1] < shape[0] * shape[1]

    def quantize_matrix(w_key, idx_key, shape, scale, layer):
        implicit = unstored_zeros(idx_key, shape)
        weights = plan.arrays[w_key]
        masks, _ = fxp.plan_weight_groups(weights, scale, implicit_zero=implicit, max_groups=MAX_WEIGHT_GROUPS,
                                          min_gain=GROUP_MIN_GAIN)
        groups = fxp.quantize_weight_groups(weights, scale, masks, layer=layer, report=report,
                                            implicit_zero=implicit)
        mant = np.zeros(weights.shape, np.int32)
        group_id = np.zeros(weights.shape, np.int8)
        for g, group in enumerate(groups):
            mant[group.select], group_id[group.select] = group.mant, g
        return mant, group_id, [group.exp for group in groups]

    for pop in plan.populations:
        theta = pop.vth
        incoming = [_unique_weights(plan.arrays[f"w/{syn.name}"]) for syn in plan.synapses if syn.dst == pop.name]
        pop.scale = _choose_scale(pop, theta, incoming, plan.arrays[f"bias/{pop.name}"])
        pop.vth_int = fxp.quantize_threshold(theta, pop.scale, layer=pop.name, report=report)
        pop.dv_int = fxp.DECAY_MAX if pop.stateless else fxp.quantize_decay(
            beta_of[pop.name], layer=pop.name, report=report)
        if not pop.stateless and beta_of[pop.name] == 0.0:
            pop.stateless = True  # beta = 0: dv = 4096 is not representable, reset every step instead
        mant, exp = fxp.quantize_bias(plan.arrays[f"bias/{pop.name}"], pop.scale, layer=pop.name, report=report)
        plan.arrays[f"bias_mant/{pop.name}"], pop.bias_exp = mant, exp

    for syn in plan.synapses:
        dst = plan.population(syn.dst)
        (plan.arrays[f"w_mant/{syn.name}"], plan.arrays[f"w_group/{syn.name}"],
         syn.weight_exps) = quantize_matrix(f"w/{syn.name}", f"w_idx/{syn.name}", plan.matrix_shape(syn),
                                            dst.scale, syn.name)
    if plan.readout is not None:
        weight = plan.arrays["readout_w"]
        peak = float(np.max(np.abs(weight))) if weight.size else 1.0
        plan.readout.scale = 254.0 / (peak or 1.0)  # full mantissa at weight_exp 0; the host divides it out
        (plan.arrays["readout_w_mant"], plan.arrays["readout_w_group"],
         plan.readout.weight_exps) = quantize_matrix("readout_w", "readout_idx", plan.readout_shape(),
                                                     plan.readout.scale, plan.readout.name)
    return report


# ---------------------------------------------------------------------------------------
# Bundle


_FIXED_KEYS = ("bias_mant/", "w_mant/", "w_group/", "readout_w_mant", "readout_w_group")


def _save_plan(plan: Plan, folder: Path) -> None:
    plan.save(folder)
    # split the arrays into the float and fixed-point parameter files named in the manifest
    with np.load(folder / "lava_plan.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    (folder / "lava_plan.npz").unlink()
    np.savez(folder / "params_float.npz", **{k: v for k, v in arrays.items() if not k.startswith(_FIXED_KEYS)})
    np.savez(folder / "params_fixed.npz", **{k: v for k, v in arrays.items() if k.startswith(_FIXED_KEYS)})


def load_plan(bundle: str | Path) -> Plan:
    """The plan of a bundle (a scratch copy with the merged npz the sidecar reads)."""
    bundle = Path(bundle)
    meta = json.loads((bundle / "lava_plan.json").read_text())
    if meta.get("plan_version") != PLAN_VERSION:
        raise LavaError(f"{bundle}: Lava plan version {meta.get('plan_version')}, this spikingmind reads "
                        f"{PLAN_VERSION}; re-export it with `spikingmind export --target lava --force`")
    arrays = {}
    for part in ("params_float.npz", "params_fixed.npz"):
        with np.load(bundle / part, allow_pickle=False) as data:
            arrays.update({key: data[key] for key in data.files})
    return Plan(int(meta["time_steps"]), float(meta["dt"]), [Population(**p) for p in meta["populations"]],
                [Synapse(**s) for s in meta["synapses"]],
                Readout(**meta["readout"]) if meta["readout"] else None, arrays)


def export_lava_bundle(graph: nir.NIRGraph | str | Path, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write a Lava bundle for `graph` (a NIRGraph or a .nir path) into `out_dir`, atomically.

    Contents: model.nir, lava_plan.json (populations, synapses, offsets), params_float.npz,
    params_fixed.npz (8-bit weight mantissas + exponents, 13-bit biases, 12-bit decays,
    17-bit thresholds), manifest.json (Lava version, latency, dt, T, scales, saturation).
    Raises RunExistsError when out_dir exists and not force.
    """
    if isinstance(graph, (str, Path)):
        graph = load_graph(graph)
    plan_parts = build_plan(graph)
    with atomic_dir(out_dir, overwrite=force) as tmp:
        _write_bundle(graph, tmp, plan_parts)
    return Path(out_dir)


def _write_bundle(graph: nir.NIRGraph, tmp: Path, plan_parts=None) -> None:
    """The bundle's files into the (temporary) folder `tmp`."""
    plan, host_terms, notes = plan_parts or build_plan(graph)
    report: fxp.QuantizationReport = notes["quantization_report"]
    nir.write(tmp / "model.nir", graph)
    _save_plan(plan, tmp)
    manifest = {
        "bundle_version": BUNDLE_VERSION,
        "target": "lava",
        "lava_nc_version": LAVA_VERSION,
        "time_steps": plan.time_steps,
        "dt": plan.dt,
        "period_steps": plan.time_steps,
        "latency_steps": plan.latency,
        "output_latency_steps": plan.readout.offset(plan) if plan.readout else None,
        "timing": ("decision k, SNN step t of population n runs at Lava step k*period + offset[n] + t "
                   "(0-based); the Output of step t appears output_latency_steps later"),
        "encoder": "host: Conv1d nodes reading the Input are computed on the host and injected as "
                   "graded currents (NpySource) into the populations they feed",
        "host_terms": [{"population": h.population, "conv": h.conv} for h in host_terms],
        "populations": [
            {"name": p.name, "kind": p.kind, "size": p.size, "offset": p.offset, "stateless": p.stateless,
             "float": {"dv": p.dv, "vth": p.vth},
             "fixed": {"scale": p.scale, "dv": p.dv_int, "vth": p.vth_int, "bias_exp": p.bias_exp}}
            for p in plan.populations
        ],
        "synapses": [{"name": s.name, "src": s.src, "dst": s.dst, "fixed_weight_exps": s.weight_exps}
                     for s in plan.synapses],
        "readout": None if plan.readout is None else {
            "output": plan.readout.name, "src": plan.readout.src, "scale": plan.readout.scale,
            "fixed_weight_exps": plan.readout.weight_exps},
        "inexact_float_decays": notes["inexact_decays"],
        "quantization_report": report.to_json(),
    }
    atomic_write_json(tmp / "manifest.json", manifest)


# ---------------------------------------------------------------------------------------
# Sidecar processes


def _kill_group(proc: subprocess.Popen, wait_s: float = 10.0) -> None:
    """SIGKILL the sidecar's process group (Lava's runtime children included) and wait until
    no member is left, so that a raised LavaError means nothing of it still runs."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = text.strip()
    return text[-_STDERR_TAIL:].replace("\n", " | ") if text else "(no stderr)"


def _sidecar_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the main venv's paths must not leak into 3.10
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_sidecar(plan_dir: Path, mode: str, host_data: dict[str, np.ndarray], n_steps: int, *,
                period: int | None = None, record: list[str] | None = None,
                timeout: float = DEFAULT_TIMEOUT_S, python: Path | None = None) -> tuple[dict, dict]:
    """One sidecar run in its own process group; returns (arrays, timing). LavaError on failure."""
    python = python or lava_env.find_lava_python()
    with tempfile.TemporaryDirectory(prefix="spikingmind-lava-") as scratch:
        scratch = Path(scratch)
        np.savez(scratch / "host.npz", **host_data)
        job = {"plan_dir": str(plan_dir), "mode": mode, "host_data": str(scratch / "host.npz"),
               "n_steps": int(n_steps), "period": period, "record": record, "out": str(scratch / "out.npz")}
        (scratch / "job.json").write_text(json.dumps(job))
        stderr_path = scratch / "stderr.txt"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen([str(python), str(SIDECAR), "--job", str(scratch / "job.json")],
                                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                    start_new_session=True, env=_sidecar_env(), cwd=scratch)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise LavaError(f"Lava sidecar ({mode}) timed out after {timeout:.0f} s and was killed; "
                                f"stderr: {_tail(stderr_path)}") from None
            finally:
                _kill_group(proc)  # Lava's runtime children, should any survive
        if rc != 0 or not (scratch / "out.npz").exists():
            raise LavaError(f"Lava sidecar ({mode}) failed with exit code {rc}; stderr: {_tail(stderr_path)}")
        reply = json.loads((scratch / "out.npz.json").read_text())
        with np.load(scratch / "out.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    return arrays, reply["timing"]


class _Server:
    """A persistent sidecar (`run.py --serve`) answering one JSON job per line."""

    def __init__(self, plan_dir: Path, mode: str, timeout: float, python: Path | None = None):
        self.plan_dir, self.mode, self.timeout = plan_dir, mode, timeout
        self.scratch = Path(tempfile.mkdtemp(prefix="spikingmind-lava-serve-"))
        self.stderr_path = self.scratch / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")
        python = python or lava_env.find_lava_python()
        self.proc = subprocess.Popen([str(python), str(SIDECAR), "--serve", str(plan_dir), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=True, env=_sidecar_env(), cwd=self.scratch)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        self._buffer = b""
        self.jobs = 0

    def request(self, host_data: dict[str, np.ndarray], n_steps: int, *, period: int | None = None,
                record: list[str] | None = None) -> tuple[dict, dict]:
        if self.proc.poll() is not None:
            raise self._fail(f"Lava sidecar ({self.mode}) is not running (exit code {self.proc.returncode})")
        self.jobs += 1
        host_path = self.scratch / f"host{self.jobs}.npz"
        out_path = self.scratch / f"out{self.jobs}.npz"
        np.savez(host_path, **host_data)
        job = {"host_data": str(host_path), "n_steps": int(n_steps), "period": period, "record": record,
               "out": str(out_path)}
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail(f"Lava sidecar ({self.mode}) closed its input") from None
        reply = json.loads(self._readline())
        host_path.unlink(missing_ok=True)
        if not reply.get("ok"):
            raise self._fail(f"Lava sidecar ({self.mode}) failed: {reply.get('error')}")
        with np.load(out_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        out_path.unlink(missing_ok=True)
        return arrays, reply["timing"]

    def _readline(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"Lava sidecar ({self.mode}) timed out after {self.timeout:.0f} s and was killed")
            if not self._selector.select(timeout=remaining):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                self.proc.wait(timeout=5) if self.proc.poll() is None else None
                raise self._fail(f"Lava sidecar ({self.mode}) exited (code {self.proc.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _fail(self, message: str) -> LavaError:
        tail = _tail(self.stderr_path)
        self.close(graceful=False)
        return LavaError(f"{message}; stderr: {tail}")

    def close(self, graceful: bool = True) -> None:
        """End the sidecar: EOF on its input lets it stop Lava cleanly; then kill the group."""
        if getattr(self, "proc", None) is None:
            return
        try:
            if graceful and self.proc.poll() is None and self.proc.stdin:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _kill_group(self.proc)
        self._selector.close()
        self._stderr.close()
        self.proc = None
        shutil.rmtree(self.scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Host side of a run: currents in, records out


class _HostEncoder:
    """The real-valued Conv1d terms that read the Input, computed on the host.

    Each is run by the reference simulator itself on a two-node probe graph (Input -> Conv1d;
    the Input is constant over the T steps of a decision), so the graded currents are exactly
    the reference's numbers, at the cost of the encoder alone.
    """

    def __init__(self, graph: nir.NIRGraph, host_terms: list[_HostTerm]):
        self.host_terms = host_terms
        input_shape = None
        for node in graph.nodes.values():
            if isinstance(node, nir.Input):
                input_shape = np.asarray(next(iter(node.input_type.values()))).reshape(-1).astype(int)
        self.simulators = {}
        for conv in sorted({h.conv for h in host_terms}):
            node = graph.nodes[conv]
            c_out, *_, n_out = _conv_geometry(node, int(input_shape[1]))
            probe = nir.NIRGraph(
                nodes={"input": nir.Input(input_shape), "conv": node, "output": nir.Output(np.array([c_out, n_out]))},
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


def _host_currents(graph: nir.NIRGraph, host_terms: list[_HostTerm], inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Per host-fed population: (B, size) float current = sum of its Input Conv1d outputs."""
    return _HostEncoder(graph, host_terms).currents(np.asarray(inputs, dtype=np.float64))


def _host_data(plan: Plan, currents: dict[str, np.ndarray], n_steps: int, fixed: bool,
               report: fxp.QuantizationReport | None = None) -> dict[str, np.ndarray]:
    scaled = {}
    for pop in plan.populations:
        if pop.host_input:
            current = currents[pop.name]
            scaled[pop.name] = (fxp.quantize_activation(current, pop.scale, layer=pop.name, report=report)
                                if fixed else current)
    return schedule_host_currents(plan, scaled, n_steps)


def _records(plan: Plan, traces: dict[str, np.ndarray], n: int, fixed: bool) -> dict[str, np.ndarray]:
    """Lava traces -> {node: (T, N, *shape)} on the reference time axis (Output included)."""
    out = {}
    for pop in plan.populations:
        if pop.record and (f"pop/{pop.name}" in traces or pop.name in traces):
            raw = traces.get(f"pop/{pop.name}", traces.get(pop.name))
            out[pop.name] = align_records(raw, pop.offset, n, plan.time_steps, pop.shape).astype(np.float64)
    if plan.readout is not None and "readout" in traces:
        ro = plan.readout
        raw = traces["readout"].astype(np.float64)
        if fixed:
            raw = raw / (ro.scale)
        raw = raw + plan.arrays["readout_bias"][:, None]
        out[ro.name] = align_records(raw, ro.offset(plan), n, plan.time_steps, ro.shape)
    return out


# ---------------------------------------------------------------------------------------
# Verification


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


def agreement_table(agreement: LavaAgreement | dict, title: str = "Lava agreement"):
    """A rich Table of an agreement (object or its JSON): mismatch counts per layer, actions."""
    from rich.table import Table

    data = agreement.to_json() if isinstance(agreement, LavaAgreement) else agreement
    table = Table(title=title, caption=(
        f"{data.get('decisions', '?')} decisions, latency {data['latency_steps']} Lava steps; actions: "
        f"float == reference {data['action_float_vs_reference']:.1%}, "
        f"fixed == float {data.get('action_fixed_vs_float', float('nan')):.1%}, "
        f"fixed == reference {data['action_fixed_vs_reference']:.1%}"))
    for column in ("node", "kind", "values", "float≠ref", "fixed≠emu", "fixed≠float", "rate ref", "rate fixed"):
        table.add_column(column, justify="left" if column in ("node", "kind") else "right",
                         no_wrap=column == "node", min_width=22 if column == "node" else None)

    def count(value):
        return "-" if value < 0 else (f"[red]{value}[/]" if value else "0")

    for row in data["layers"]:
        rates = [("" if rate != rate else f"{rate:.3f}") for rate in (row["rate_reference"], row["rate_fixed"])]
        table.add_row(row["node"], row["kind"], str(row["total"]), count(row["float_vs_reference"]),
                      count(row["fixed_vs_emulation"]), str(row["fixed_vs_float"]), *rates)
    return table


class _Decoder:
    """SEMANTICS.md's decoding from a graph's spikingmind metadata (full export metadata or the
    short {action_kind, action_low, action_high} form)."""

    def __init__(self, meta: dict | None, n_tokens: int):
        meta = meta or {}
        decode = meta.get("decode") or {}
        self.token_index = int(decode.get("token_index", n_tokens - 2))
        if "action" in decode:
            self.discrete = decode["action"] == "argmax"
        else:
            self.discrete = meta.get("action_kind", "discrete") == "discrete"
        low, high = decode.get("action_low", meta.get("action_low")), decode.get("action_high", meta.get("action_high"))
        self.low = None if low is None else np.asarray(low, dtype=np.float64)
        self.high = None if high is None else np.asarray(high, dtype=np.float64)

    def logits(self, output: np.ndarray) -> np.ndarray:
        """(T, B, n_out, L) Output record -> (B, n_out) decision-token logits."""
        return output[:, :, :, self.token_index].mean(axis=0)

    def actions(self, logits: np.ndarray) -> np.ndarray:
        if self.discrete:
            return np.argmax(logits, axis=-1)
        return (self.low + (np.tanh(logits) + 1.0) / 2.0 * (self.high - self.low)).astype(np.float32)


def _policy_meta(graph: nir.NIRGraph) -> dict | None:
    raw = (graph.metadata or {}).get("spikingmind")
    if raw is None:
        return None
    if isinstance(raw, np.ndarray):
        raw = raw.item()
    if isinstance(raw, (bytes, np.bytes_)):
        raw = raw.decode()
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _input_shape(graph: nir.NIRGraph) -> tuple[int, int]:
    for node in graph.nodes.values():
        if isinstance(node, nir.Input):
            return tuple(int(x) for x in np.asarray(next(iter(node.input_type.values()))).reshape(-1))
    raise ExportError("the graph has no Input node")


def _bundle_host_terms(bundle: Path) -> list[_HostTerm]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return [_HostTerm(h["population"], h["conv"]) for h in manifest["host_terms"]]


def verify_bundle(bundle: str | Path, decision_inputs: np.ndarray, *, timeout: float = DEFAULT_TIMEOUT_S,
                  modes: tuple[str, ...] = ("float", "fixed")) -> LavaAgreement:
    """Run `decision_inputs` (B, D_in, L) through Lava (floating_pt and fixed_pt) and compare.

    float vs reference: every spiking layer and the Output against export/reference.py;
    fixed vs emulation: bit-exactness against the NumPy emulation of Loihi's arithmetic;
    fixed vs float: the cost of quantization (spikes per layer, actions). The B decisions are
    pipelined through one Lava run per mode. Raises LavaError when the sidecar fails.
    """
    bundle = Path(bundle)
    graph = load_graph(bundle / "model.nir")
    plan = load_plan(bundle)
    host_terms = _bundle_host_terms(bundle)
    inputs = np.asarray(decision_inputs, dtype=np.float64)
    n = inputs.shape[0]
    reference = ReferenceSimulator(graph).run(inputs, time_steps=plan.time_steps, record=True)
    currents = _host_currents(graph, host_terms, inputs)
    n_steps = plan.total_steps(n)
    timing: dict[str, Any] = {}
    report = fxp.QuantizationReport()
    lava: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="spikingmind-lava-plan-") as scratch:
        plan.save(scratch)
        for mode in modes:
            fixed = mode == "fixed"
            data = _host_data(plan, currents, n_steps, fixed, report if fixed else None)
            t0 = time.perf_counter()
            traces, run_timing = run_sidecar(Path(scratch), mode, data, n_steps, timeout=timeout)
            timing[mode] = {**run_timing, "wall_s": time.perf_counter() - t0, "decisions": n}
            lava[mode] = _records(plan, traces, n, fixed)
            if fixed:
                emulated, counts = emulate(plan, data, n_steps, fixed=True)
                emulated = {f"pop/{k}" if k != "readout" else k: v for k, v in emulated.items()}
                lava["emulation"] = _records(plan, emulated, n, True)
                for name, count in counts.items():
                    report.add(name, "u_wrapped", count["u_wrapped"], n_steps * plan.population(name).size, "24-bit wrap")
                    report.add(name, "v_saturated", count["v_saturated"], n_steps * plan.population(name).size,
                               "+-(2**23-1)")
    decoder = _Decoder(_policy_meta(graph), inputs.shape[-1])
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
        return None if output is None else decoder.actions(decoder.logits(output))

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


# ---------------------------------------------------------------------------------------
# Closed-loop policy


class LavaPolicy:
    """A Lava bundle as a closed-loop policy: every action is computed by Lava (one persistent
    sidecar, floating_pt or fixed_pt), the encoder Conv1d on the host.

    act(windows (B, L, D_in)) / logits(...) as `export.nir.NIRReferencePolicy`; the B windows
    of one call are pipelined through the network (one every T Lava steps). `spec`, `layout`,
    `norm`, `meta` come from the graph's spikingmind metadata (None when it has none).
    `timings` holds one entry per call; `decision_stats()` summarises them. Use as a context
    manager or call close(); the sidecar's process group is killed on close, error, timeout.
    """

    def __init__(self, bundle: str | Path, fixed_point: bool = False, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.bundle = Path(bundle)
        if not (self.bundle / "manifest.json").exists():
            raise LavaError(f"{self.bundle} is not a Lava bundle (no manifest.json); "
                            "write one with `spikingmind export --target lava`")
        self._server: _Server | None = None
        self._plan_dir: Path | None = None
        self.mode = "fixed" if fixed_point else "float"
        self.graph = load_graph(self.bundle / "model.nir")
        self.meta = _policy_meta(self.graph) or {}
        self.spec = self.layout = self.norm = None
        if "env" in self.meta:
            from spikingmind.rollout import policy_context

            self.spec, self.layout, self.norm = policy_context(self.meta, str(self.bundle / "model.nir"))
        self.token_features, self.context_tokens = _input_shape(self.graph)
        self.decoder = _Decoder(self.meta, self.context_tokens)
        self.plan = load_plan(self.bundle)
        self.encoder = _HostEncoder(self.graph, _bundle_host_terms(self.bundle))
        self.timeout = timeout
        self._plan_dir = Path(tempfile.mkdtemp(prefix="spikingmind-lava-plan-"))
        self.plan.save(self._plan_dir)
        self._capacity = 1
        self.timings: list[dict] = []
        self.quantization = fxp.QuantizationReport()

    def _ensure_server(self) -> _Server:
        if self._server is None or self._server.proc is None:
            self._server = _Server(self._plan_dir, self.mode, self.timeout)
        return self._server

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (B, L, D_in) or (L, D_in) -> decision-token logits (B, n_out) or (n_out,)."""
        tokens = np.asarray(tokens, dtype=np.float64)
        single = tokens.ndim == 2
        batch = tokens[None] if single else tokens
        expected = (self.context_tokens, self.token_features)
        if batch.ndim != 3 or batch.shape[1:] != expected:
            raise ValueError(f"tokens have shape {tokens.shape}; expected (B, {expected[0]}, {expected[1]})")
        inputs = np.ascontiguousarray(batch.transpose(0, 2, 1))  # (B, D_in, L)
        n = inputs.shape[0]
        # the sidecar keeps its network while jobs have the same length: pad to the largest
        # batch seen, and to whole periods so that every job starts at the same phase
        self._capacity = max(self._capacity, n)
        period = self.plan.time_steps
        n_steps = -(-self.plan.total_steps(self._capacity) // period) * period
        fixed = self.mode == "fixed"
        t0 = time.perf_counter()
        data = _host_data(self.plan, self.encoder.currents(inputs), n_steps, fixed,
                          self.quantization if fixed else None)
        t1 = time.perf_counter()
        try:
            traces, timing = self._ensure_server().request(data, n_steps, record=[])
        except LavaError:
            self._server = None
            raise
        out = _records(self.plan, traces, n, fixed)[self.plan.readout.name]  # (T, B, n_out, L)
        self.timings.append({**timing, "host_s": t1 - t0, "wall_s": time.perf_counter() - t0, "decisions": n})
        logits = self.decoder.logits(out)
        return logits[0] if single else logits

    def act(self, tokens: np.ndarray) -> np.ndarray:
        return self.decoder.actions(self.logits(tokens))

    def decision_stats(self) -> dict:
        """Lava time per decision over every call so far (the first call builds the network,
        so `lava_ms_per_decision_warm` leaves out calls that (re)built it)."""
        if not self.timings:
            return {}
        decisions = sum(t["decisions"] for t in self.timings)
        warm = [t for t in self.timings if not t.get("rebuilt")]
        run_s = sum(t["run_s"] for t in self.timings)
        steps = sum(t["n_steps"] for t in self.timings)
        stats = {
            "lava_mode": "fixed_pt" if self.mode == "fixed" else "floating_pt",
            "lava_decisions": decisions,
            "lava_ms_per_decision": 1000.0 * sum(t["wall_s"] for t in self.timings) / decisions,
            "lava_run_ms_per_decision": 1000.0 * run_s / decisions,
            "lava_steps_per_s": steps / run_s if run_s > 0 else float("nan"),
            "lava_build_s": sum(t["build_s"] for t in self.timings if t.get("rebuilt")),
        }
        if warm:
            stats["lava_ms_per_decision_warm"] = 1000.0 * sum(t["wall_s"] for t in warm) / sum(
                t["decisions"] for t in warm)
        return stats

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._plan_dir is not None:
            shutil.rmtree(self._plan_dir, ignore_errors=True)
            self._plan_dir = None

    def __enter__(self) -> "LavaPolicy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------
# Registry entry point: export + verification on real decisions


def real_decision_inputs(graph: nir.NIRGraph, n: int, seed: int = 0) -> np.ndarray:
    """n graph inputs (n, D_in, L) from closed-loop episodes of the reference policy on
    evaluation seeds: whole episodes until at least n decisions exist, then n evenly spaced
    ones (so a long episode's late decisions, with full windows, are included)."""
    from spikingmind.rollout import record_decision_inputs

    episodes = 1
    while True:
        inputs = record_decision_inputs(graph, episodes, seed)
        if len(inputs) >= n or episodes >= 64:
            break
        episodes *= 2
    return inputs[np.unique(np.linspace(0, len(inputs) - 1, min(n, len(inputs))).round().astype(int))]


def export(source: str | Path, out: str | Path, force: bool = False, verify_decisions: int = 20,
           timeout: float = DEFAULT_TIMEOUT_S, seed: int = 0, console=None) -> Path:
    """Registry entry point: checkpoint folder or .nir -> verified Lava bundle folder `out`.

    Writes the bundle into a temp folder next to `out`, runs `verify_decisions` real decisions
    (closed-loop reference episodes on evaluation seeds `seed`) through Lava floating_pt and
    fixed_pt, writes `agreement.json` into it and only then renames it onto `out`:

    - Lava missing, crashing or timing out (LavaError), or any other failure: nothing is
      left at `out` (an existing bundle there stays untouched);
    - Lava ran but disagreed (float spikes != reference or fixed != emulation): the bundle
      is kept for inspection with `agreement.json` saying `"passed": false`, and LavaError
      is raised after the table is shown.

    `console` (a rich Console) gets the agreement table; None prints nothing.
    """
    from spikingmind.export.nir import load_or_export_graph

    out = Path(out)
    if out.exists() and not force:
        raise RunExistsError(f"{out} already exists; pass --force to replace it")
    if verify_decisions < 1:
        raise ExportError(f"verify_decisions must be >= 1, got {verify_decisions}")
    lava_env.find_lava_python()  # fail before any work when the sidecar cannot run
    graph = load_or_export_graph(source)
    inputs = real_decision_inputs(graph, verify_decisions, seed)
    with atomic_dir(out, overwrite=force) as tmp:
        _write_bundle(graph, tmp)
        agreement = verify_bundle(tmp, inputs, timeout=timeout)
        record = {**agreement.to_json(), "source": str(source), "decision_inputs": {
            "kind": "closed-loop episodes of the NIR reference policy", "seed": seed,
            "decisions": int(len(inputs))}}
        atomic_write_json(tmp / "agreement.json", record)
    if console is not None:
        console.print(agreement_table(agreement, title=f"Lava agreement · {out}"))
        for mode, label in (("float", "floating_pt"), ("fixed", "fixed_pt")):
            t = agreement.timing.get(mode) or {}
            if t:
                console.print(f"{label}: {1000 * t['run_s'] / t['decisions']:.1f} ms per decision pipelined "
                              f"({t['n_steps'] / t['run_s']:.0f} Lava steps/s), network build {t['build_s']:.1f} s")
    if not agreement.passed:
        raise LavaError(f"Lava disagrees: {agreement.float_mismatches} float spikes differ from the reference, "
                        f"{agreement.fixed_emulation_mismatches} fixed-point values from the emulation; "
                        f"the bundle is kept at {out} for inspection (agreement.json: passed false)")
    return out
