"""Lava agreement and speed on a real checkpoint; writes benchmarks/out/lava_agreement.json.

    python benchmarks/lava_agreement.py [--checkpoint runs/dev/snn/checkpoint | runs/dev/snn.nir] [--decisions 20]
        [--seed 0] [--closed-loop-decisions N]

1. floating_pt spikes of every layer vs the reference simulator, fixed_pt vs the NumPy
   emulation, over `--decisions` real decisions (closed-loop reference episodes);
2. one full CartPole episode of the reference policy on the first evaluation seed: all its
   windows pipelined through Lava floating_pt and fixed_pt (float vs reference per layer,
   fixed vs float action agreement over the whole episode);
3. the same seed driven closed loop by Lava floating_pt (every action from Lava): its return
   vs the reference's, Lava time per decision and steps/s. `--closed-loop-decisions` caps it
   (0 = the whole episode).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from spikingmind.export import lava
from spikingmind.export.nir import NIRPolicy, load_or_export_graph
from spikingmind.io import atomic_write_json
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/dev/snn/checkpoint")
    parser.add_argument("--decisions", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--closed-loop-decisions", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/lava_agreement.json")
    args = parser.parse_args()
    result: dict = {"checkpoint": args.checkpoint}
    graph = load_or_export_graph(args.checkpoint)  # a checkpoint folder or a .nir file
    with tempfile.TemporaryDirectory() as scratch:
        bundle = lava.export_lava_bundle(graph, Path(scratch) / "bundle")
        manifest = json.loads((bundle / "manifest.json").read_text())
        result["network"] = {"populations": len(manifest["populations"]), "synapses": len(manifest["synapses"]),
                             "latency_steps": manifest["latency_steps"],
                             "quantization_report": manifest["quantization_report"]}

        inputs = lava.real_decision_inputs(graph, args.decisions, args.seed)
        t0 = time.perf_counter()
        agreement = lava.verify_bundle(bundle, inputs, timeout=1800)
        result["sampled_decisions"] = {**agreement.to_json(), "wall_s": time.perf_counter() - t0}
        print(agreement.to_text())

        seed = evaluation_seeds(1, args.seed)
        windows: list[np.ndarray] = []
        reference = run_episodes(NIRPolicy(graph), seed, on_decision=windows.append)
        episode_inputs = np.concatenate(windows).transpose(0, 2, 1)
        t0 = time.perf_counter()
        full = lava.verify_bundle(bundle, episode_inputs, timeout=3600)
        result["full_episode_open_loop"] = {
            **full.to_json(), "wall_s": time.perf_counter() - t0, "seed": seed[0],
            "reference_return": reference.returns[0], "decisions": len(episode_inputs)}
        print(full.to_text())
        json_out = Path(args.out)
        atomic_write_json(json_out, result)

        cap = args.closed_loop_decisions
        with lava.LavaPolicy(bundle, timeout=600) as policy:
            if cap:
                policy_act = policy.act
                count = {"n": 0}

                class _Capped:  # stop the episode after `cap` decisions by truncating it
                    spec, layout, norm = policy.spec, policy.layout, policy.norm

                    def act(self, w):
                        count["n"] += len(w)
                        if count["n"] > cap:
                            raise StopIteration
                        return policy_act(w)

                try:
                    run_episodes(_Capped(), seed)
                except StopIteration:
                    pass
                closed = {"decisions": cap, "return": None}
            else:
                episode = run_episodes(policy, seed)
                closed = {"decisions": episode.decisions, "return": episode.returns[0],
                          "reference_return": reference.returns[0],
                          "same_return": episode.returns[0] == reference.returns[0]}
            result["closed_loop_float"] = {**closed, **policy.decision_stats()}
        print(result["closed_loop_float"])
    atomic_write_json(json_out, result)
    print(f"wrote {json_out}")


if __name__ == "__main__":
    main()
