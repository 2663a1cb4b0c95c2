"""Loihi fixed point without Lava: speed and returns of the `loihi-emulation` backend beside the
float reference simulator and Lava fixed_pt; writes benchmarks/out/fixed_point.json.

    python benchmarks/fixed_point.py --source runs/cp/model.nir [--episodes 20] [--lava-decisions 64]

1. ms/decision at batch 1 and batch 32 on real decisions (windows recorded closed loop by the
   reference policy on evaluation seeds): the reference simulator (float64) and the emulation,
   timed in interleaved rounds (medians; the ratio is between numbers of this run). With
   `--lava-decisions N`, the first N of those decisions through Lava fixed_pt in one warm sidecar
   (`LavaPolicy`, decisions pipelined), and whether its actions equal the emulation's.
2. one closed-loop episode of the emulation at batch 1 on the first evaluation seed: seconds.
3. `spikingmind.workflows.fixed_point.compare_fixed_point`: returns on `--episodes` evaluation
   seeds in float and in fixed point, action agreement on each run's decisions.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from spikingmind.export import lava
from spikingmind.export.lava.emulation import LoihiEmulationPolicy
from spikingmind.export.nir import NIRPolicy, load_or_export_graph
from spikingmind.io import atomic_write_json
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds
from spikingmind.workflows.fixed_point import compare_fixed_point


def _median_ms_per_decision(policies: dict, windows: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    """Median over interleaved rounds of one `act` call on `batch` windows, per decision."""
    chunks = [windows[i:i + batch] for i in range(0, len(windows) - batch + 1, batch)] or [windows[:batch]]
    times: dict[str, list[float]] = {name: [] for name in policies}
    for name, policy in policies.items():  # warm-up
        policy.act(chunks[0])
    for r in range(rounds):
        chunk = chunks[r % len(chunks)]
        for name, policy in policies.items():
            start = time.perf_counter()
            policy.act(chunk)
            times[name].append((time.perf_counter() - start) / len(chunk))
    return {name: 1000.0 * float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="runs/cp/model.nir", help=".nir graph or checkpoint folder")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--lava-decisions", type=int, default=64, help="0: skip Lava")
    parser.add_argument("--out", default="benchmarks/out/fixed_point.json")
    args = parser.parse_args()
    result: dict = {"source": args.source, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                       "load_average": os.getloadavg()}}
    graph = load_or_export_graph(args.source)
    start = time.perf_counter()
    emulation = LoihiEmulationPolicy(graph)
    result["build_s"] = time.perf_counter() - start  # plan + quantisation + network
    reference = NIRPolicy(graph)
    windows: list[np.ndarray] = []
    run_episodes(reference, evaluation_seeds(2, args.seed), on_decision=windows.append)
    windows = np.concatenate(windows)
    result["timing_decisions"] = int(len(windows))
    policies = {"reference": reference, "loihi-emulation": emulation}
    for batch in (1, 32):
        times = _median_ms_per_decision(policies, windows, batch, args.rounds)
        result[f"ms_per_decision_batch{batch}"] = times
        print(f"batch {batch:2d}: " + ", ".join(f"{name} {ms:.2f} ms/decision" for name, ms in times.items())
              + f"; emulation / reference {times['loihi-emulation'] / times['reference']:.2f}")
    if args.lava_decisions:
        tokens = windows[:args.lava_decisions]
        with tempfile.TemporaryDirectory() as scratch:
            bundle = lava.export_lava_bundle(graph, Path(scratch) / "bundle")
            with lava.LavaPolicy(bundle, fixed_point=True, timeout=1800) as lava_fixed:
                lava_fixed.act(tokens)  # builds the network
                start = time.perf_counter()
                lava_actions = lava_fixed.act(tokens)
                lava_ms = 1000.0 * (time.perf_counter() - start) / len(tokens)
            with lava.LavaPolicy(bundle, fixed_point=True, timeout=1800) as lava_single:  # batch 1, as closed loop
                lava_single.act(tokens[:1])
                single = []
                for i in range(1, 4):
                    start = time.perf_counter()
                    lava_single.act(tokens[i:i + 1])
                    single.append(time.perf_counter() - start)
                lava_ms_single = 1000.0 * float(np.median(single))
        start = time.perf_counter()
        emulation_actions = emulation.act(tokens)
        emulation_ms = 1000.0 * (time.perf_counter() - start) / len(tokens)
        result["lava_fixed_pt"] = {"decisions": int(len(tokens)), "lava_ms_per_decision_warm": lava_ms,
                                   "lava_ms_per_decision_batch1": lava_ms_single,
                                   "emulation_ms_per_decision_same_batch": emulation_ms,
                                   "actions_equal": bool(np.array_equal(lava_actions, emulation_actions))}
        print(f"Lava fixed_pt: {lava_ms:.1f} ms/decision over {len(tokens)} pipelined decisions (warm), "
              f"{lava_ms_single:.0f} ms at batch 1; emulation {emulation_ms:.2f} on the {len(tokens)}-decision batch; "
              f"actions equal: {result['lava_fixed_pt']['actions_equal']}")
    single = LoihiEmulationPolicy(graph)
    start = time.perf_counter()
    episode = run_episodes(single, evaluation_seeds(1, args.seed), batch=1)
    result["closed_loop_episode"] = {"decisions": episode.decisions, "return": episode.returns[0],
                                     "seconds": time.perf_counter() - start}
    print(f"one closed-loop episode at batch 1: {episode.decisions} decisions in "
          f"{result['closed_loop_episode']['seconds']:.1f} s (return {episode.returns[0]:.0f})")
    comparison = compare_fixed_point(args.source, episodes=args.episodes, seed=args.seed)
    result["returns"] = comparison
    agreement = comparison["action_agreement"]
    print(f"{args.episodes} evaluation seeds: float {comparison['float_mean_return']:.1f} ± "
          f"{comparison['float_std_return']:.1f}, fixed {comparison['fixed_mean_return']:.1f} ± "
          f"{comparison['fixed_std_return']:.1f}; same action on {100 * agreement['on_fixed_decisions']:.2f}% of "
          f"the fixed run's {agreement['fixed_decisions']} decisions, {100 * agreement['on_float_decisions']:.2f}% "
          f"of the float run's {agreement['float_decisions']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
