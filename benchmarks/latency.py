"""Per-decision latency (batch 1) and throughput (batch 64) of the three policy backends.

    python benchmarks/latency.py                       # random models of the default config
    python benchmarks/latency.py --snn runs/snn/checkpoint --ann runs/ann/checkpoint

Backends, all timed through the same `act(windows) -> actions` call a closed-loop episode
makes (tensor conversion and decoding included):
  snn-pytorch           the spiking DT's policy path in PyTorch (`model.decide`: the last block
                        only where the decision token reads it; inference mode)
  snn-pytorch-all       the same model computing every token (`model(tokens)`, as in training)
  snn-ort               `export --target onnx` of the spiking DT: its whole inference graph (T steps
                        unrolled, spikes verified against PyTorch at export), ONNX Runtime (CPU)
  snn-ort-decision      `export --target onnx --decision-only`: the graph of `model.decide`
  snn-event             the event-driven CPU runtime (`spikingmind.export.event`, numba): the
                        decision path of `model.decide` with synapses that add the weight rows
                        of the inputs that spiked and one fused loop per LIF layer; checked
                        against PyTorch when built (`evaluate --backend event`)
  ann-pytorch           the ANN twin's policy path in PyTorch (`model.decide`)
  ann-ort               `export --target onnx` of the ANN twin (every token), ONNX Runtime: the
                        baseline the goal names
  ann-ort-decision      `export --target onnx --decision-only` of the ANN twin: the fair
                        counterpart of the SNN's decision-only graphs
  snn-pytorch-compiled  with --compile: `torch.compile(model.decide)` (inductor, CPU; compile
                        time not timed)
Same machine, same thread count for PyTorch and ONNX Runtime, one process; the
repetitions are interleaved (round r times every backend, in an order rotated each round)
so drift of the machine hits all of them alike. Reports median and IQR, and ratios that
are only ever computed between numbers measured in this run. Writes JSON under
benchmarks/out/ and prints a table. The goal: the spiking DT (its fastest backend) / ann-ort at
batch 1 <= 2; the ratio to the fastest ANN backend is reported beside it. Dense MAC counts of
the ONNX graphs (`spikingmind.energy.onnx_counts`) are reported next to the times: the SNN does
about T x the ANN's matmul work per decision.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import spikingmind
from spikingmind.checkpoint import load_checkpoint, untrained_checkpoint
from spikingmind.energy.onnx_counts import count_onnx
from spikingmind.export.event import EventPolicy
from spikingmind.export.onnx import OnnxPolicy
from spikingmind.export.onnx import export as export_onnx
from spikingmind.io import atomic_write_json
from spikingmind.metadata import DecodeRule
from spikingmind.model import ModelConfig
from spikingmind.policy import TorchPolicy, decode_actions
from spikingmind.verification import sample_windows

GOAL_RATIO = 2.0  # spiking DT (best backend) / ann-ort at batch 1


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snn", type=Path, help="spiking DT checkpoint folder (default: random init)")
    parser.add_argument("--ann", type=Path, help="ANN-twin checkpoint folder (default: random init)")
    parser.add_argument("--env", default="CartPole-v1", help="env of the random models' token layout")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--context", type=int, default=20, help="K environment steps (L = 3K tokens)")
    parser.add_argument("--time-steps", type=int, default=4, help="T SNN steps per decision")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for PyTorch and ONNX Runtime")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=20, help="timed batch-1 calls per backend per round")
    parser.add_argument("--batch", type=int, default=64, help="batch of the throughput measurement")
    parser.add_argument("--batch-calls", type=int, default=3, help="timed large-batch calls per backend per round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per backend first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model.decide) of the SNN")
    parser.add_argument("--label", default="", help="suffix of the output file name")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/out/latency[-label].json)")
    return parser.parse_args(argv)


def random_checkpoint(folder: Path, kind: str, args, history: str = "window") -> Path:
    """A randomly initialised model of the benchmark config, saved as a checkpoint folder
    (also benchmarks/latency_streaming.py's, with history="stream")."""
    cfg = ModelConfig(kind=kind, width=args.width, n_blocks=args.blocks, context_length=args.context,
                      time_steps=args.time_steps, history=history)
    return untrained_checkpoint(folder, args.env, cfg, seed=None)


def graph_macs(path: Path, layout) -> dict:
    """Dense MACs and node count of an exported ONNX graph for one decision (batch 1)."""
    import onnx

    counts = count_onnx(path, {"tokens": (1, layout.n_tokens, layout.n_features)})
    return {"macs_per_decision": counts.total("macs"), "nodes": len(onnx.load(str(path)).graph.node),
            "uncounted_nodes": len(counts.uncounted)}


def torch_act(ckpt, forward):
    """act() through `forward(tokens) -> decision-token outputs`, converting and decoding as
    TorchPolicy does (for the PyTorch variants TorchPolicy does not run)."""
    rule = DecodeRule.for_env(ckpt.spec, ckpt.layout)

    def act(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = forward(torch.as_tensor(windows, dtype=torch.float32))
        return decode_actions(out.double().numpy(), rule)

    return act


def stats(samples_s: list[float]) -> dict:
    """Median and quartiles in ms of per-call samples in seconds (also benchmarks/latency_streaming.py's)."""
    values = np.asarray(samples_s) * 1000.0
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {"median_ms": float(median), "q25_ms": float(q25), "q75_ms": float(q75), "iqr_ms": float(q75 - q25),
            "n": int(len(values))}


def measure(backends: dict, small: list[np.ndarray], large: np.ndarray, args) -> dict:
    """Interleaved timing of every backend; returns raw samples (seconds per call)."""
    names = list(backends)
    for name in names:
        for index in range(args.warmup):
            backends[name](small[index % len(small)])
        backends[name](large)
    samples = {name: {"batch1": [], "batch": []} for name in names}
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            act = backends[name]
            for call in range(args.calls):
                windows = small[(round_index * args.calls + call) % len(small)]
                start = time.perf_counter()
                act(windows)
                samples[name]["batch1"].append(time.perf_counter() - start)
            for _ in range(args.batch_calls):
                start = time.perf_counter()
                act(large)
                samples[name]["batch"].append(time.perf_counter() - start)
    return samples


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="spikingmind-latency-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(args.seed)
        snn_dir = args.snn or random_checkpoint(tmp / "snn", "snn", args)
        ann_dir = args.ann or random_checkpoint(tmp / "ann", "ann", args)
        snn, ann = load_checkpoint(snn_dir), load_checkpoint(ann_dir)
        if snn.config.kind != "snn" or ann.config.kind != "ann":
            raise SystemExit(f"--snn needs a spiking checkpoint and --ann an ANN twin (got {snn.config.kind}, "
                             f"{ann.config.kind})")
        if snn.layout != ann.layout:
            raise SystemExit(f"the two checkpoints have different token layouts: {snn.layout} vs {ann.layout}")
        graphs = {
            "snn": export_onnx(snn_dir, tmp / "snn.onnx"),
            "snn-decision": export_onnx(snn_dir, tmp / "snn-decision.onnx", decision_only=True),
            "ann": export_onnx(ann_dir, tmp / "ann.onnx"),
            "ann-decision": export_onnx(ann_dir, tmp / "ann-decision.onnx", decision_only=True),
        }
        macs = {name: graph_macs(path, snn.layout) for name, path in graphs.items()}
        ort_act = lambda name: OnnxPolicy(graphs[name], intra_op_threads=args.threads).act  # noqa: E731
        backends = {
            "snn-pytorch": TorchPolicy(snn).act,
            "snn-pytorch-all": torch_act(snn, lambda tokens: snn.model(tokens)[:, snn.layout.decision_token]),
            "snn-ort": ort_act("snn"),
            "snn-ort-decision": ort_act("snn-decision"),
            "snn-event": EventPolicy(snn).act,
            "ann-pytorch": TorchPolicy(ann).act,
            "ann-ort": ort_act("ann"),
            "ann-ort-decision": ort_act("ann-decision"),
        }
        if args.compile:
            # inductor, CPU: a C++ compiler is needed at the first (untimed, warm-up) call
            backends["snn-pytorch-compiled"] = torch_act(snn, torch.compile(snn.model.decide, dynamic=False))
        pool = sample_windows(snn.layout, snn.norm, snn.spec, max(args.batch, 64), seed=args.seed)
        small = [pool[i: i + 1] for i in range(len(pool))]
        large = pool[: args.batch]
        samples = measure(backends, small, large, args)

    results = {}
    for name, runs in samples.items():
        batch1, batch = stats(runs["batch1"]), stats(runs["batch"])
        results[name] = {"batch1": batch1, f"batch{args.batch}": batch,
                         "throughput_decisions_per_s": args.batch / (batch["median_ms"] / 1000.0)}
    ort_b1 = results["ann-ort"]["batch1"]["median_ms"]
    big = f"batch{args.batch}"

    def ratio(a: str, b: str, key: str) -> float:
        return results[a][key]["median_ms"] / results[b][key]["median_ms"]

    fastest = lambda kind: min((n for n in results if n.startswith(kind)),  # noqa: E731
                               key=lambda name: results[name]["batch1"]["median_ms"])
    best_snn, best_ann = fastest("snn"), fastest("ann")
    ratios = {}
    for key in ("batch1", big):
        for snn_name in ("snn-pytorch", "snn-ort", "snn-ort-decision", "snn-event"):
            ratios[f"{snn_name}_over_ann-ort_{key}"] = ratio(snn_name, "ann-ort", key)
        ratios[f"best_snn_over_best_ann_{key}"] = ratio(best_snn, best_ann, key)
        ratios[f"snn-pytorch-all_over_snn-pytorch_{key}"] = ratio("snn-pytorch-all", "snn-pytorch", key)
        ratios[f"ann-pytorch_over_ann-ort_{key}"] = ratio("ann-pytorch", "ann-ort", key)
    ratios["snn_over_ann_macs"] = macs["snn"]["macs_per_decision"] / macs["ann"]["macs_per_decision"]
    ratios["snn_over_ann_macs_decision_only"] = (macs["snn-decision"]["macs_per_decision"]
                                                 / macs["ann-decision"]["macs_per_decision"])
    goal_ratio = results[best_snn]["batch1"]["median_ms"] / ort_b1
    report = {
        "benchmark": "latency",
        "config": {"snn": str(args.snn or "random init"), "ann": str(args.ann or "random init"),
                   "snn_model": snn.config.to_dict(), "ann_model": ann.config.to_dict(), "env": snn.spec.env_id,
                   "n_tokens": snn.layout.n_tokens, "n_features": snn.layout.n_features, "threads": args.threads,
                   "rounds": args.rounds, "calls_per_round": args.calls, "batch": args.batch,
                   "batch_calls_per_round": args.batch_calls, "warmup": args.warmup, "seed": args.seed,
                   "timed": "policy.act(windows): tensor conversion + forward + decode"},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0], "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__, "spikingmind": spikingmind.__version__},
        "results": results,
        "ratios": ratios,
        "macs": {**macs, "note": "dense multiply-accumulates of each ONNX graph per decision (batch 1; batch B is "
                                 "B x), from spikingmind.energy.onnx_counts; the SNN runs every matmul at each of "
                                 "its T steps and its causal mix is a dense (C, L, L) MatMul"},
        "goal": {"spiking_dt_over_ann_ort_batch1_at_most": GOAL_RATIO, "spiking_backend": best_snn,
                 "ratio": goal_ratio, "met": goal_ratio <= GOAL_RATIO, "fastest_ann_backend": best_ann,
                 "ratio_to_fastest_ann": ratios["best_snn_over_best_ann_batch1"]},
    }
    out = args.out or Path(__file__).resolve().parent / "out" / f"latency{'-' + args.label if args.label else ''}.json"
    atomic_write_json(out, report)

    table = Table(title=f"per-decision latency, {args.threads} thread(s), {args.rounds}x{args.calls} interleaved calls")
    for column in ("backend", "batch 1 median ms", "batch 1 IQR ms", f"batch {args.batch} ms/call",
                   "decisions/s", "batch 1 / ann-ort"):
        table.add_column(column, justify="right" if column != "backend" else "left")
    for name, result in results.items():
        b1, bn = result["batch1"], result[f"batch{args.batch}"]
        table.add_row(name, f"{b1['median_ms']:.3f}", f"{b1['iqr_ms']:.3f}", f"{bn['median_ms']:.2f}",
                      f"{result['throughput_decisions_per_s']:.0f}", f"{b1['median_ms'] / ort_b1:.2f}x")
    console.print(table)
    for name, graph in macs.items():
        console.print(f"{name} ONNX graph: {graph['macs_per_decision'] / 1e6:.2f} M MACs per decision, "
                      f"{graph['nodes']} nodes")
    console.print(f"MACs snn / ann: {ratios['snn_over_ann_macs']:.2f}x all tokens, "
                  f"{ratios['snn_over_ann_macs_decision_only']:.2f}x decision-only (T = {snn.config.time_steps})")
    console.print(f"batch {args.batch}: fastest SNN / fastest ANN {ratios[f'best_snn_over_best_ann_{big}']:.2f}x")
    verdict = "[green]met[/]" if goal_ratio <= GOAL_RATIO else "[red]not met[/]"
    console.print(f"goal: spiking DT ({best_snn}) / ann-ort at batch 1 = {goal_ratio:.2f}x "
                  f"(<= {GOAL_RATIO:g}x: {verdict}); against the fastest ANN backend ({best_ann}): "
                  f"{ratios['best_snn_over_best_ann_batch1']:.2f}x")
    console.print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
