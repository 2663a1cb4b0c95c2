"""NeuroBench's own metrics on a policy's closed-loop decisions, term by term beside our counts.

    python benchmarks/neurobench_metrics.py --checkpoint runs/snn/checkpoint
    python benchmarks/neurobench_metrics.py --env CartPole-v1 --checkpoint runs/ann/checkpoint \\
        --episodes 10 --max-decisions 1500

Needs neurobench 2.3.0, which `make venv` installs; by hand, without its dependencies (they
would pull torchaudio, tonic and another torch): `pip install --no-deps neurobench==2.3.0
tqdm==4.70.1`. NeuroBench has no closed-loop task of its own: this is a NeuroBench-style
closed-loop benchmark, with NeuroBench's metric names and NeuroBench's code for its metrics.

For one checkpoint, a spiking DT (kind "snn") or its ANN twin (kind "ann"):
1. Closed loop: `run_episodes` of the checkpoint's PyTorch policy (`TorchPolicy`: float32,
   `model.decide`) on evaluation seeds, recording every decision window (`on_decision`).
   The return comes from these episodes; every count below is taken on the first
   --max-decisions of these windows.
2. NeuroBench's `Benchmark` over those windows: one sample = one decision, every token
   computed (`model.forward`, the work the NIR graph holds), in --dtype. Static: Footprint,
   ConnectionSparsity; workload: SynapticOperations, ActivationSparsity, MembraneUpdates,
   plus per layer the loop of SynapticOperations kept per layer and ActivationSparsityByLayer.
   The spiking DT is measured twice: as is (NeuroBench finds only its torch Linear layers)
   and with snnTorch `Leaky` stand-ins for our LIF layers (`spikingmind.neurobench_adapter`),
   checked to give the original's outputs and spikes exactly on every window.
3. Our counts on the same windows. Spiking DT: the NIR export in memory, run by the reference
   simulator with records, counted by `snn_counts.count_snn` (what `energy-report` counts;
   its spikes are compared with PyTorch's). ANN twin: its ONNX export counted by
   `onnx_counts.count_onnx` (what `energy-report --baseline` counts: dense, batch 1).
4. Term by term: every layer both sides see, with the % difference and its reason; every layer
   only we count, with why NeuroBench cannot see it; totals with the difference split by reason.
NeuroBench reports a workload metric that raised as 0.0, and its activation metrics as 0.0
when it found no activation module: such a metric is null here, and `not_measured` says why.

JSON (default benchmarks/out/neurobench-<env>-<model>.json), all counts per decision:
  env, model ("snn" | "ann"), label, checkpoint, versions, protocol (episodes, seeds, decisions
      in the episodes, decisions measured, NeuroBench batch, dtype, time_steps T)
  metrics            NeuroBench names; null = not measured (see not_measured):
    Return              {mean, std, min, max, episodes}: env return of the closed-loop episodes
    SynapticOperations  {Effective_MACs, Effective_ACs, Dense}: NeuroBench's, one decision
    ActivationSparsity  zero outputs / all outputs of the neuron layers NeuroBench sees
    MembraneUpdates     NeuroBench's count of membrane updates (step 0: every neuron; later
                        steps: the neurons whose membrane value changed)
    Footprint           bytes of parameters + buffers of the float32 model (NeuroBench's Footprint)
    ConnectionSparsity  zero weights / weights of the Linear layers (NeuroBench, 4 decimals)
    Latency             {median_ms, iqr_ms, n, backend}: batch-1 `act` of the closed-loop policy
  metrics_source     which NeuroBench run `metrics` come from
  not_measured       {metric: reason}
  neurobench         {"as_is": run, "snntorch_neurons": run (snn only)}; run = {metrics, raw (NeuroBench's
                     own dict, zeros included), not_measured, synops_by_layer, connection_layers,
                     activation_layers, samples, notes}
  equivalence        (snn) the stand-in model against the original (outputs_equal, spikes_equal,
                     spike_mismatches) and PyTorch's spikes against the reference simulator's
                     (reference_spike_mismatches: node -> neuron-steps that differ)
  ours               (snn) SNNCounts.to_dict(); (ann) ONNX MACs per module and totals
  comparison         synaptic_operations {layers: [{layer, ours_node, metric, neurobench, ours,
                       difference_pct, equal, reason_key, reason}], not_seen_by_neurobench: [{layer,
                       node_type, effective_acs, effective_macs, dense_ops, reason_key, reason}], totals:
                       {metric: {neurobench, ours, difference, difference_pct, explained_by: {reason_key:
                       ops}, unexplained}}, reasons: {reason_key: text}, (snn) neurobench_layers_sum_to_total}
                     activation_sparsity, membrane_updates, footprint, connection_sparsity: each
                     {neurobench, ours..., difference..., reason}
difference_pct = 100 * (NeuroBench - ours) / ours. `equal` compares integer totals over all
measured decisions (both sides count whole operations).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import spikingmind
from spikingmind.checkpoint import load_checkpoint
from spikingmind.io import atomic_write_json
from spikingmind.neurobench_adapter import (
    DecisionOutputs,
    compare_records,
    neuron_layers,
    nir_node_name,
    run_neurobench,
    with_snntorch_neurons,
)
from spikingmind.policy import TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds

OUT_DIR = Path(__file__).resolve().parent / "out"

REASONS = {
    "equal": "same count: NeuroBench's rule (one op per nonzero input x nonzero weight, bias excluded) is ours",
    "causal_mix": "the causal decay mix is an einsum / bmm over tokens in PyTorch, no Linear/Conv module: "
                  "NeuroBench has no hook on it (in NIR it is a Conv1d; ours counts its nonzero taps)",
    "and_gates": "the AND of two spike trains is a product of spike tensors in PyTorch, no module: NeuroBench "
                 "sees neither the gate nor its two identity synapses (ours: one AC per incoming spike)",
    "spike_disagreement": "the spikes feeding this layer differ between PyTorch (what NeuroBench runs) and the "
                          "reference simulator (what we count) at some neuron-steps: float rounding near the "
                          "threshold (BatchNorm folded into the NIR weights, applied after the Linear in PyTorch)",
    "zero_inputs": "NeuroBench counts a MAC only for a nonzero input (effective MACs); the ONNX count is the dense "
                   "product, zeros included",
    "attention_matmul": "q @ k^T and softmax @ v multiply two activations (torch matmul, no module): NeuroBench's "
                        "SynapticOperations only hooks Linear / Conv / RNN layers",
    "unexplained": "no known reason: a disagreement to investigate",
}
SYNOPS = {"effective_acs": "Effective_ACs", "effective_macs": "Effective_MACs", "dense_ops": "Dense"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (spiking DT or ANN twin)")
    parser.add_argument("--env", default=None, help="expected env id (checked against the checkpoint's)")
    parser.add_argument("--episodes", type=int, default=10, help="closed-loop episodes on evaluation seeds")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed block (rollout.evaluation_seeds)")
    parser.add_argument("--max-decisions", type=int, default=1500, help="decisions measured (the first N)")
    parser.add_argument("--batch", type=int, default=64, help="decisions per NeuroBench / simulator batch")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of the model NeuroBench runs (float64: the reference simulator's)")
    parser.add_argument("--latency-calls", type=int, default=200, help="timed batch-1 act calls")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--label", default=None, help="model part of the output name (default: the kind)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/out/neurobench-<env>-<model>.json)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the output path")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- closed loop


def closed_loop(ckpt, episodes: int, seed: int) -> tuple[dict, np.ndarray]:
    """Episodes of the float32 PyTorch policy; (return summary, every decision window (N, L, F))."""
    windows: list[np.ndarray] = []
    results = run_episodes(TorchPolicy(ckpt), evaluation_seeds(episodes, seed), on_decision=windows.append)
    return results.summary(), np.concatenate(windows)


def latency(ckpt, windows: np.ndarray, calls: int, warmup: int = 20) -> dict:
    """Median / IQR of batch-1 `act` calls of the closed-loop policy on recorded windows."""
    policy = TorchPolicy(ckpt)
    picks = np.linspace(0, len(windows) - 1, num=min(calls, len(windows))).astype(int)
    for index in picks[:warmup]:
        policy.act(windows[index:index + 1])
    samples = []
    for index in picks:
        start = time.perf_counter()
        policy.act(windows[index:index + 1])
        samples.append(time.perf_counter() - start)
    q25, median, q75 = np.percentile(np.asarray(samples) * 1000.0, [25, 50, 75])
    return {"median_ms": float(median), "iqr_ms": float(q75 - q25), "n": len(samples),
            "backend": f"PyTorch model.decide via TorchPolicy.act, float32, {torch.get_num_threads()} thread(s)"}


# ---------------------------------------------------------------------------- comparisons


def pct(neurobench: float | None, ours: float | None) -> float | None:
    if neurobench is None or ours is None:
        return None
    if ours == 0:
        return 0.0 if neurobench == 0 else None
    return 100.0 * (neurobench - ours) / ours


def same_total(a: float, b: float, decisions: int) -> bool:
    """Whole operations over all decisions: per-decision means agree once multiplied back."""
    return round(a * decisions) == round(b * decisions)


def row(layer, ours_node, metric, neurobench, ours, decisions, reason_key) -> dict:
    return {"layer": layer, "ours_node": ours_node, "metric": metric, "neurobench": neurobench, "ours": ours,
            "difference_pct": pct(neurobench, ours), "equal": same_total(neurobench, ours, decisions),
            "reason_key": reason_key, "reason": REASONS[reason_key]}


def reasons_of(rows: list[dict], unseen: list[dict]) -> dict[str, str]:
    return {key: REASONS[key] for key in sorted({r["reason_key"] for r in rows + unseen})}


def totals(neurobench: dict, ours: dict, rows: list[dict], unseen: list[dict], metrics: dict) -> dict:
    """Per metric: NeuroBench's total vs ours and the difference split by reason."""
    out = {}
    for ours_name, nb_name in metrics.items():
        explained: dict[str, float] = {}
        for r in rows:
            if r["metric"] == ours_name and r["neurobench"] != r["ours"]:
                explained[r["reason_key"]] = explained.get(r["reason_key"], 0.0) + r["neurobench"] - r["ours"]
        for u in unseen:
            if u.get(ours_name):
                explained[u["reason_key"]] = explained.get(u["reason_key"], 0.0) - u[ours_name]
        nb, us = neurobench[nb_name], ours[ours_name]
        residual = (nb - us) - sum(explained.values())
        out[ours_name] = {"neurobench": nb, "ours": us, "difference": nb - us, "difference_pct": pct(nb, us),
                          "explained_by": explained, "unexplained": residual}
    return out


def compare_snn_synops(run, counts, graph, reference_mismatches: dict, time_steps: int) -> dict:
    """Per NIR weighted node: NeuroBench's SynapticOperations of its torch Linear, or why there is none."""
    decisions = counts.decisions
    layers = {layer.name: layer for layer in counts.layers}
    sources: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        sources.setdefault(dst, []).append(src)
    rows, seen = [], set()
    for module_path, nb in run.synops_by_layer.items():
        node = nir_node_name(module_path)
        seen.add(node)
        ours = layers[node]
        disagree = any(reference_mismatches.get(src, 0) for src in sources.get(node, []))
        for metric, nb_name in SYNOPS.items():
            a, b = float(nb[nb_name]), float(getattr(ours, metric))
            if same_total(a, b, decisions):
                key = "equal"
            elif disagree:
                key = "spike_disagreement"
            else:
                key = "unexplained"
            rows.append(row(module_path, node, metric, a, b, decisions, key))
    unseen = []
    for layer in counts.layers:
        if layer.name in seen:
            continue
        if layer.node_type == "Conv1d" and layer.name.endswith(".mix"):
            key = "causal_mix"
        elif layer.node_type == "Threshold":
            key = "and_gates"
        elif layer.effective_acs or layer.effective_macs or layer.dense_ops:
            key = "unexplained"
        else:
            continue  # a neuron fed by weighted edges: no synaptic ops of its own (see membrane updates)
        unseen.append({"layer": layer.name, "node_type": layer.node_type, "effective_acs": layer.effective_acs,
                       "effective_macs": layer.effective_macs, "dense_ops": layer.dense_ops,
                       "reason_key": key, "reason": REASONS[key]})
    nb_totals = run.metrics["SynapticOperations"] or run.raw["SynapticOperations"]
    ours_totals = {m: counts.total(m) for m in SYNOPS}
    by_layer_sum = {n: sum(float(v[n]) for v in run.synops_by_layer.values()) for n in SYNOPS.values()}
    return {"layers": rows, "not_seen_by_neurobench": unseen,
            "totals": totals(nb_totals, ours_totals, rows, unseen, SYNOPS),
            "neurobench_layers_sum_to_total": all(same_total(by_layer_sum[n], float(nb_totals[n]), decisions)
                                                  for n in SYNOPS.values()),
            "reasons": reasons_of(rows, unseen)}


def lif_sparsity(layers, time_steps: int) -> float | None:
    """1 - spikes / (neurons x T) over `layers`, per decision."""
    slots = sum(l.neurons for l in layers) * time_steps
    return 1.0 - sum(l.spikes for l in layers) / slots if slots else None


def compare_snn_neurons(run, counts, names: dict[str, str]) -> tuple[dict, dict]:
    """Activation sparsity and membrane updates: NeuroBench (snnTorch stand-ins) against ours."""
    lif = [l for l in counts.layers if l.node_type == "LIF"]
    gates = [l for l in counts.layers if l.node_type == "Threshold"]
    by_layer = run.metrics.get("ActivationSparsityByLayer") or {}
    nodes = {l.name: l for l in counts.layers}
    per_layer = []
    for nb_name, value in by_layer.items():
        node = nir_node_name(names.get(nb_name, nb_name))
        ours = nodes[node].activation_sparsity if node in nodes else None
        per_layer.append({"layer": nb_name, "ours_node": node, "neurobench": value, "ours": ours,
                          "difference": None if ours is None else value - ours,
                          "equal": ours is not None and abs(value - ours) < 1e-12})
    nb, ours_lif = run.metrics.get("ActivationSparsity"), lif_sparsity(lif, counts.time_steps)
    sparsity = {
        "neurobench": nb, "ours_lif_layers": ours_lif, "ours_all_spiking_nodes": counts.activation_sparsity,
        "difference_lif_layers": None if nb is None or ours_lif is None else nb - ours_lif,
        "layers": per_layer,
        "reason": "NeuroBench averages over the snnTorch neurons it sees, our LIF layers; ours_all_spiking_nodes "
                  f"also counts the {len(gates)} AND gates (Threshold nodes), which NeuroBench cannot see "
                  "(products of spike tensors in PyTorch)",
    }
    nb_updates = run.metrics.get("MembraneUpdates")
    ours_dense = sum(l.neuron_updates for l in lif)
    updates = {
        "neurobench": nb_updates, "ours_lif_neuron_updates": ours_dense,
        "ours_lif_neuron_updates_active": sum(l.neuron_updates_active for l in lif),
        "ours_all_neuron_updates": sum(l.neuron_updates for l in counts.layers if l.kind == "neuron"),
        "difference_pct_vs_lif_neuron_updates": pct(nb_updates, ours_dense),
        "reason": "different definitions: NeuroBench counts every neuron at a decision's first step and, at later "
                  "steps, only the neurons whose membrane value changed (pre- vs post-step membrane); ours counts "
                  "one update per neuron per step (neuron_updates, what the energy report prices), 'active' the "
                  "neuron-steps with a nonzero input, and 'all' adds the stateless AND gates",
    }
    return sparsity, updates


def nir_parameters(graph) -> dict:
    """Weights and biases the exported graph's weighted nodes store."""
    weights = nonzero = biases = 0
    for node in graph.nodes.values():
        weight = getattr(node, "weight", None)
        if weight is None or type(node).__name__ not in ("Conv1d", "Affine", "Linear"):
            continue
        weights += int(np.size(weight))
        nonzero += int(np.count_nonzero(weight))
        bias = getattr(node, "bias", None)
        biases += 0 if bias is None else int(np.size(bias))
    return {"weights": weights, "nonzero_weights": nonzero, "biases": biases}


# ---------------------------------------------------------------------------- the two kinds


def measure_snn(ckpt, path: Path, windows: np.ndarray, args) -> dict:
    from spikingmind.energy.snn_counts import count_snn, merge_counts
    from spikingmind.export.nir import model_to_graph
    from spikingmind.export.reference import ReferenceSimulator

    dtype = getattr(torch, args.dtype)
    model = load_checkpoint(path, dtype=dtype).model
    adapted = with_snntorch_neurons(model)
    graph = model_to_graph(load_checkpoint(path, dtype=torch.float64).model)
    simulator = ReferenceSimulator(graph)
    input_name = next(n for n, node in graph.nodes.items() if type(node).__name__ == "Input")
    parts, reference_mismatches = [], {}

    def reference_chunk(chunk: np.ndarray, torch_record: dict) -> None:
        # the energy report's records (measure.count_snn_on_inputs), on the chunk PyTorch just ran
        inputs = chunk.transpose(0, 2, 1).astype(np.float64)  # (B, D_in, L) as the NIR Input
        records = dict(simulator.run(inputs, record=True).records)
        records.setdefault(input_name, np.broadcast_to(inputs, (graph.metadata["time_steps"], *inputs.shape)))
        parts.append(count_snn(graph, records))
        for name, spikes in torch_record.items():  # (T, B, L, C) -> NIR's (T, B, C, L)
            pytorch = spikes.double().numpy().transpose(0, 1, 3, 2)
            reference_mismatches[name] = reference_mismatches.get(name, 0) + int(np.sum(pytorch != records[name]))

    equivalence = compare_records(model, adapted, windows, batch=args.batch, on_chunk=reference_chunk)
    equivalence["reference_spike_mismatches"] = reference_mismatches
    equivalence["reference_spikes_equal"] = not any(reference_mismatches.values())
    counts = merge_counts(parts)
    as_is = run_neurobench(DecisionOutputs(model), windows, batch=args.batch, by_layer=False)
    stand_ins = run_neurobench(DecisionOutputs(adapted, route_through_modules=True), windows, batch=args.batch)
    synops = compare_snn_synops(stand_ins, counts, graph, reference_mismatches, model.cfg.time_steps)
    sparsity, updates = compare_snn_neurons(stand_ins, counts, neuron_layers(adapted))
    seen_nodes = {nir_node_name(p) for p in stand_ins.synops_by_layer}
    weights_seen = sum(l.weights for l in counts.layers if l.name in seen_nodes)
    nonzero_seen = sum(l.nonzero_weights for l in counts.layers if l.name in seen_nodes)
    weighted = [l for l in counts.layers if l.kind == "synaptic"]
    params = nir_parameters(graph)
    footprint32 = footprint(ckpt.model)
    return {
        "runs": {"as_is": as_is, "snntorch_neurons": stand_ins},
        "metrics_run": "snntorch_neurons",
        "equivalence": equivalence,
        "ours": counts.to_dict(),
        "comparison": {
            "synaptic_operations": synops,
            "activation_sparsity": sparsity,
            "membrane_updates": updates,
            "footprint": {
                "neurobench_bytes_float32": footprint32, "ours_nir_weights_and_biases": params,
                "ours_bytes_float32": 4 * (params["weights"] + params["biases"]),
                "ours_nonzero_weight_bytes_float32": 4 * params["nonzero_weights"],
                "reason": "NeuroBench sums the torch module's parameters and buffers (BatchNorm weights, biases, "
                          "running statistics and its int64 batch counter; the mix's C decay logits); the NIR "
                          "graph stores BatchNorm folded into the weights and the causal mix as a dense "
                          "(C, C, 2L-1) Conv1d kernel of which only C x L taps are nonzero; neither counts the "
                          "other's neuron parameters (NIR stores tau, r, v_leak, v_threshold, v_reset per neuron). "
                          "The Footprint inside neurobench.* is of the model NeuroBench ran (--dtype; the "
                          "stand-ins' snnTorch buffers included)",
            },
            "connection_sparsity": {
                "neurobench": stand_ins.metrics.get("ConnectionSparsity"),
                "ours_same_layers": 1.0 - nonzero_seen / weights_seen if weights_seen else None,
                "ours_all_weighted_nodes": 1.0 - sum(l.nonzero_weights for l in weighted) / sum(l.weights for l in weighted),
                "reason": "NeuroBench rounds to 4 decimals and sees the Linear layers only; ours over all weighted "
                          "NIR nodes adds the causal mix's Conv1d kernel, zero off its diagonal and for future taps",
            },
        },
    }


def footprint(model) -> int | None:
    """NeuroBench's Footprint of a model (bytes of parameters + buffers)."""
    from neurobench.metrics.static import Footprint
    from neurobench.models import TorchModel

    return Footprint()(TorchModel(model))


def measure_ann(ckpt, path: Path, windows: np.ndarray, args) -> dict:
    from spikingmind.energy.onnx_counts import count_onnx
    from spikingmind.export.onnx import export_metadata, model_to_onnx

    model = load_checkpoint(path, dtype=getattr(torch, args.dtype)).model
    run = run_neurobench(DecisionOutputs(model), windows, batch=args.batch)
    counts = count_onnx(model_to_onnx(ckpt.model, export_metadata(ckpt)), label=str(path))
    macs: dict[str, float] = {}
    for node in counts.nodes:
        if node.macs:
            macs[node.module or "<unattributed>"] = macs.get(node.module or "<unattributed>", 0.0) + node.macs
    decisions = len(windows)
    rows = []
    for layer, nb in run.synops_by_layer.items():
        ours = macs.get(layer, 0.0)
        dense, effective = float(nb["Dense"]), float(nb["Effective_MACs"])
        rows.append(row(layer, layer, "dense_ops", dense, ours, decisions,
                        "equal" if same_total(dense, ours, decisions) else "unexplained"))
        rows.append(row(layer, layer, "effective_macs", effective, ours, decisions,
                        "equal" if same_total(effective, ours, decisions) else
                        "zero_inputs" if effective < ours and same_total(dense, ours, decisions) else "unexplained"))
    unseen = [{"layer": module, "node_type": "MatMul", "effective_macs": value, "dense_ops": value,
               "reason_key": "attention_matmul" if module.endswith(".attn") else "unexplained",
               "reason": REASONS["attention_matmul" if module.endswith(".attn") else "unexplained"]}
              for module, value in macs.items() if module not in run.synops_by_layer]
    nb_totals = run.metrics["SynapticOperations"] or run.raw["SynapticOperations"]
    ours_totals = {"effective_macs": sum(macs.values()), "dense_ops": sum(macs.values())}
    synops = {"layers": rows, "not_seen_by_neurobench": unseen,
              "totals": totals(nb_totals, ours_totals, rows, unseen,
                               {"effective_macs": "Effective_MACs", "dense_ops": "Dense"}),
              "reasons": reasons_of(rows, unseen)}
    return {
        "runs": {"as_is": run},
        "metrics_run": "as_is",
        "ours": {"per": "decision (ONNX graph at batch 1, every token)", "macs_by_module": macs,
                 "totals": {"macs": counts.total("macs"), "parameters": counts.parameters},
                 "uncounted": counts.uncounted},
        "comparison": {
            "synaptic_operations": synops,
            "activation_sparsity": {"neurobench": run.metrics.get("ActivationSparsity"), "reason":
                                    "the ANN twin's activation is GELU, which NeuroBench does not hook "
                                    "(it knows ReLU, Sigmoid and snnTorch neurons)"},
            "membrane_updates": {"neurobench": run.metrics.get("MembraneUpdates"),
                                 "reason": "an ANN has no membranes"},
            "footprint": {"neurobench_bytes_float32": footprint(ckpt.model),
                          "ours_onnx_parameters": counts.parameters,
                          "ours_bytes_float32": 4 * counts.parameters,
                          "reason": "NeuroBench sums parameters and buffers of the torch module (the causal mask "
                                    "is a non-persistent buffer of bools, counted too); ours counts the ONNX "
                                    "graph's parameter tensors"},
            "connection_sparsity": {"neurobench": run.metrics.get("ConnectionSparsity"),
                                    "reason": "NeuroBench: zero weights of the Linear layers"},
        },
    }


# ---------------------------------------------------------------------------- main


def run_dict(run) -> dict:
    return {"metrics": run.metrics, "raw": run.raw, "not_measured": run.not_measured,
            "synops_by_layer": run.synops_by_layer, "connection_layers": run.connection_layers,
            "activation_layers": run.activation_layers, "samples": run.samples, "notes": run.notes}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import neurobench
    import snntorch

    ckpt = load_checkpoint(args.checkpoint)
    env_id, kind = ckpt.spec.env_id, ckpt.config.kind
    if args.env is not None and args.env != env_id:
        raise SystemExit(f"{args.checkpoint} is a {env_id} policy, not {args.env}")
    summary, windows = closed_loop(ckpt, args.episodes, args.seed)
    measured = windows[: args.max_decisions]
    timing = latency(ckpt, measured, args.latency_calls)
    result = (measure_snn if kind == "snn" else measure_ann)(ckpt, args.checkpoint, measured, args)
    runs = result.pop("runs")
    source = runs[result.pop("metrics_run")]
    metrics = {"Return": {k: summary[k] for k in ("mean_return", "std_return", "min_return", "max_return", "episodes")}}
    metrics.update({name: source.metrics.get(name) for name in
                    ("SynapticOperations", "ActivationSparsity", "MembraneUpdates", "ConnectionSparsity")})
    metrics["Footprint"] = result["comparison"]["footprint"]["neurobench_bytes_float32"]
    metrics["Latency"] = timing
    label = args.label or kind
    report = {
        "env": env_id, "model": kind, "label": label, "checkpoint": str(args.checkpoint),
        "versions": {"neurobench": neurobench.__version__, "torch": torch.__version__,
                     "snntorch": snntorch.__version__, "spikingmind": spikingmind.__version__,
                     "python": platform.python_version()},
        "protocol": {"episodes": args.episodes, "seeds": summary["seeds"], "returns": summary["returns"],
                     "decisions_in_episodes": int(len(windows)), "decisions_measured": int(len(measured)),
                     "neurobench_batch": args.batch, "dtype": args.dtype,
                     "time_steps": ckpt.config.time_steps if kind == "snn" else None,
                     "per": "decision (NeuroBench: per sample, one sample = one decision window)"},
        "metrics": metrics,
        "metrics_source": {"snntorch_neurons": "NeuroBench with snnTorch Leaky stand-ins for the LIF layers",
                           "as_is": "NeuroBench on the model as is"}[
                               "snntorch_neurons" if "snntorch_neurons" in runs else "as_is"],
        "not_measured": source.not_measured,
        "neurobench": {name: run_dict(run) for name, run in runs.items()},
        **result,
    }
    out = args.out or OUT_DIR / f"neurobench-{env_id}-{label}.json"
    atomic_write_json(out, report)
    if not args.quiet:
        render(report)
    print(f"wrote {out}")
    return report


def _num(value) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(report: dict) -> None:
    console = Console(width=160)
    console.print(f"[bold]NeuroBench {report['versions']['neurobench']} on {report['env']} {report['model']}[/]: "
                  f"{report['protocol']['decisions_measured']} decisions of {report['protocol']['episodes']} episodes")
    synops = report["comparison"]["synaptic_operations"]
    table = Table(title="synaptic operations per decision: NeuroBench vs ours")
    for col in ("layer", "metric", "NeuroBench", "ours", "diff %", "reason"):
        table.add_column(col, overflow="fold")
    for r in synops["layers"]:
        if r["neurobench"] or r["ours"]:
            table.add_row(r["ours_node"], r["metric"], _num(r["neurobench"]), _num(r["ours"]),
                          _num(r["difference_pct"]), r["reason_key"])
    for u in synops["not_seen_by_neurobench"]:
        for metric in ("effective_acs", "effective_macs", "dense_ops"):
            if u.get(metric):
                table.add_row(u["layer"], metric, "not seen", _num(u[metric]), "", u["reason_key"])
    for metric, t in synops["totals"].items():
        table.add_row("[bold]total[/]", metric, _num(t["neurobench"]), _num(t["ours"]), _num(t["difference_pct"]),
                      ", ".join(f"{k} {v:+.6g}" for k, v in t["explained_by"].items())
                      + (f", unexplained {t['unexplained']:+.3g}" if abs(t["unexplained"]) > 1e-6 else ""))
    console.print(table)
    for key, text in synops["reasons"].items():
        console.print(f"  {key}: {text}")
    metrics = Table(title="NeuroBench metric names (null = not measured)")
    for col in ("metric", "value", "note"):
        metrics.add_column(col, overflow="fold")
    for name, value in report["metrics"].items():
        note = report["not_measured"].get(name, "")
        metrics.add_row(name, _num(value) if not isinstance(value, dict) else
                        ", ".join(f"{k}={_num(v)}" for k, v in value.items()), note)
    console.print(metrics)
    for name in ("activation_sparsity", "membrane_updates", "footprint", "connection_sparsity"):
        entry = {k: v for k, v in report["comparison"][name].items() if k not in ("layers",)}
        console.print(f"[bold]{name}[/]: " + ", ".join(f"{k}={_num(v)}" for k, v in entry.items() if k != "reason"))
        console.print(f"  reason: {entry['reason']}")
    as_is = report["neurobench"]["as_is"]
    console.print(f"NeuroBench as is: {len(as_is['connection_layers'])} connection layers, "
                  f"{len(as_is['activation_layers'])} neuron layers; not measured: "
                  + ("; ".join(f"{k} ({v})" for k, v in as_is["not_measured"].items()) or "none"))
    for note in dict.fromkeys(n for run in report["neurobench"].values() for n in run["notes"]):
        console.print(f"  note: {note}")
    if "equivalence" in report:
        e = report["equivalence"]
        console.print(f"snnTorch stand-ins: outputs equal {e['outputs_equal']}, spikes equal {e['spikes_equal']}; "
                      f"PyTorch spikes equal the reference simulator's: {e['reference_spikes_equal']}")


if __name__ == "__main__":
    main()
