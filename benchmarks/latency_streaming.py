"""Per-decision latency (batch 1) of the streaming models: 3 new tokens per decision, from carried state.

    python benchmarks/latency_streaming.py                        # random models of the default config
    python benchmarks/latency_streaming.py --snn runs/stream-snn/checkpoint --ann runs/stream-ann/checkpoint

Every backend is timed through the same `step(tokens, rows) -> actions` call a closed-loop
streaming episode makes (issue #18), on the steady-state decisions of replayed episodes
(the previous action, the return-to-go and the state: 3 tokens, a full key/value cache for
the ANN twin; an episode's first decision, with 2 tokens, is not timed):
  snn-pytorch   the streaming spiking DT's `model.step` in PyTorch (inference mode)
  snn-event     the event-driven CPU runtime streaming from its carried traces (numba)
  snn-nir       the NumPy reference simulator on the exported one-token NIR graph (3 runs per decision)
  ann-pytorch   the streaming ANN twin's `model.step` (key/value cache)
  ann-ort       its ONNX step graph in ONNX Runtime (cache in, cache out): the baseline of the goal
Same machine, one process, one thread; repetitions interleaved (round r times every backend,
in an order rotated each round), so drift hits all alike. Median and IQR, and ratios only
between numbers of this run. The goal: snn-event / ann-ort at batch 1 <= 1. Writes JSON under
benchmarks/out/ and prints a table.
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
from spikingmind.checkpoint import load_checkpoint
from spikingmind.export.event import EventPolicy
from spikingmind.export.nir import NIRPolicy, load_or_export_graph
from spikingmind.export.onnx import OnnxPolicy
from spikingmind.export.onnx import export as export_onnx
from spikingmind.export.onnx.ann import stream_chunks
from spikingmind.io import atomic_write_json
from spikingmind.policy import TorchPolicy
from spikingmind.verification import sample_windows

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the windowed benchmark beside this one
from latency import random_checkpoint, stats  # noqa: E402  (its random models and its statistics)

GOAL_RATIO = 1.0  # snn-event / ann-ort at batch 1 (issue #18)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snn", type=Path, help="streaming spiking DT checkpoint folder (default: random init)")
    parser.add_argument("--ann", type=Path, help="streaming ANN-twin checkpoint folder (default: random init)")
    parser.add_argument("--env", default="CartPole-v1", help="env of the random models' token layout")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--context", type=int, default=5, help="the ANN twin's attention band, in env steps")
    parser.add_argument("--time-steps", type=int, default=4, help="T SNN steps per token")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=20, help="timed decisions per backend per round")
    parser.add_argument("--nir-calls", type=int, default=3, help="timed decisions of the slow reference per round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed decisions per backend first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="", help="suffix of the output file name")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/out/latency-streaming[-label].json)")
    return parser.parse_args(argv)


class Replay:
    """Feeds a streaming policy the tokens of sampled episodes: the untimed first decision of
    each (2 tokens), then timed steady-state ones (3 tokens); a new episode when one runs out."""

    def __init__(self, policy, episodes: np.ndarray):
        self.policy, self.episodes, self.episode, self.chunks = policy, episodes, -1, []
        self.rows = np.zeros(1, dtype=np.int64)

    def _next_episode(self) -> None:
        self.episode = (self.episode + 1) % len(self.episodes)
        first, *self.chunks = stream_chunks(self.episodes[self.episode: self.episode + 1])
        self.policy.begin(1)
        self.policy.step(first, self.rows)

    def timed_step(self) -> float:
        if not self.chunks:
            self._next_episode()
        chunk = self.chunks.pop(0)
        start = time.perf_counter()
        self.policy.step(chunk, self.rows)
        return time.perf_counter() - start


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="spikingmind-latency-stream-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(args.seed)
        snn_dir = args.snn or random_checkpoint(tmp / "snn", "snn", args, history="stream")
        ann_dir = args.ann or random_checkpoint(tmp / "ann", "ann", args, history="stream")
        snn, ann = load_checkpoint(snn_dir), load_checkpoint(ann_dir)
        if (snn.config.kind, ann.config.kind) != ("snn", "ann") or not (snn.config.streaming and ann.config.streaming):
            raise SystemExit("--snn needs a streaming spiking checkpoint and --ann a streaming ANN twin "
                             f"(got {snn.config.kind}/{snn.config.history}, {ann.config.kind}/{ann.config.history})")
        policies = {
            "snn-pytorch": TorchPolicy(snn),
            "snn-event": EventPolicy(snn),
            "snn-nir": NIRPolicy(load_or_export_graph(snn_dir), record=False),
            "ann-pytorch": TorchPolicy(ann),
            "ann-ort": OnnxPolicy(export_onnx(ann_dir, tmp / "ann-step.onnx"), intra_op_threads=1),
        }
        # sampled token windows, each replayed as an episode from its first token
        episodes = sample_windows(snn.layout, snn.norm, snn.spec, 32, seed=args.seed)
        replays = {name: Replay(policy, episodes) for name, policy in policies.items()}
        for replay in replays.values():
            for _ in range(args.warmup):
                replay.timed_step()
        counting = Replay(TorchPolicy(snn, record_spikes=True), episodes)  # what the timed SNN fires
        for _ in range(4 * args.calls):
            counting.timed_step()
        spikes = counting.policy.spike_stats()
        samples: dict[str, list[float]] = {name: [] for name in replays}
        names = list(replays)
        for round_index in range(args.rounds):
            order = names[round_index % len(names):] + names[: round_index % len(names)]
            for name in order:
                calls = args.nir_calls if name == "snn-nir" else args.calls
                samples[name].extend(replays[name].timed_step() for _ in range(calls))

    results = {name: {"batch1": stats(values)} for name, values in samples.items()}
    median = lambda name: results[name]["batch1"]["median_ms"]  # noqa: E731
    ratios = {f"{name}_over_ann-ort_batch1": median(name) / median("ann-ort") for name in results}
    ratios["snn-event_over_ann-pytorch_batch1"] = median("snn-event") / median("ann-pytorch")
    goal = ratios["snn-event_over_ann-ort_batch1"]
    report = {
        "benchmark": "latency-streaming",
        "config": {"snn": str(args.snn or "random init"), "ann": str(args.ann or "random init"),
                   "snn_model": snn.config.to_dict(), "ann_model": ann.config.to_dict(), "env": snn.spec.env_id,
                   "threads": 1, "rounds": args.rounds, "calls_per_round": args.calls,
                   "nir_calls_per_round": args.nir_calls, "warmup": args.warmup, "seed": args.seed,
                   "timed": "policy.step(3 new tokens, rows): conversion + forward from carried state + decode"},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0], "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__, "spikingmind": spikingmind.__version__},
        "results": results,
        "snn_spikes_per_decision": spikes["spikes_per_decision"],
        "snn_mean_spike_rate": spikes["mean_spike_rate"],
        "ratios": ratios,
        "goal": {"snn_event_over_ann_ort_batch1_at_most": GOAL_RATIO, "ratio": goal, "met": goal <= GOAL_RATIO},
    }
    out = args.out or Path(__file__).resolve().parent / "out" / \
        f"latency-streaming{'-' + args.label if args.label else ''}.json"
    atomic_write_json(out, report)
    table = Table(title=f"streaming, per-decision latency at batch 1 ({args.rounds} interleaved rounds)")
    for column in ("backend", "median ms", "IQR ms", "n", "/ ann-ort"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for name, result in results.items():
        b1 = result["batch1"]
        table.add_row(name, f"{b1['median_ms']:.3f}", f"{b1['iqr_ms']:.3f}", str(b1["n"]),
                      f"{ratios[f'{name}_over_ann-ort_batch1']:.2f}x")
    console.print(table)
    console.print(f"the SNN fires {spikes['spikes_per_decision']:.0f} spikes per decision "
                  f"(mean rate {spikes['mean_spike_rate']:.1%}) on these tokens")
    if spikes["mean_spike_rate"] < 0.01:
        console.print("[yellow]almost no spikes: an untrained model flatters the event runtime; pass --snn a "
                      "trained checkpoint[/]")
    verdict = "[green]met[/]" if goal <= GOAL_RATIO else "[red]not met[/]"
    console.print(f"goal: snn-event / ann-ort at batch 1 = {goal:.2f}x (<= {GOAL_RATIO:g}x: {verdict})")
    console.print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
