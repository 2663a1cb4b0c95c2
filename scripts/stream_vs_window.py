"""A streaming spiking DT against the same network recomputing a K = 20 window (issue #18).

    python scripts/stream_vs_window.py runs/results/cartpole/stream/snn/seed0/checkpoint \
        --out runs/results/cartpole/stream/window-copy --json runs/results/cartpole/stream/stream_vs_window.json

Writes the windowed copy (`spikingmind.workflows.stream_window.windowed_copy`), then measures
both on the same evaluation seeds: returns, and spikes, synaptic operations and energy per
decision under every cited Loihi profile (decision-only accounting), with the window / stream
ratios. Prints one line per model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spikingmind.io import atomic_write_json
from spikingmind.workflows.stream_window import WINDOW_STEPS, compare, windowed_copy

PROFILES = ("loihi", "loihi-sanafe", "loihi-kerasspiking")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a streaming spiking DT's checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="where the windowed copy's checkpoint goes")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--window", type=int, default=WINDOW_STEPS, help="K of the windowed copy")
    parser.add_argument("--energy-episodes", type=int, default=2)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed block")
    args = parser.parse_args(argv)
    window = windowed_copy(args.checkpoint, args.out, args.window, overwrite=True)
    result = compare(args.checkpoint, window, PROFILES, args.energy_episodes, args.eval_episodes, args.seed)
    atomic_write_json(args.json, result)
    for name in ("stream", "window"):
        row = result[name]
        print(f"{name:6s} return {row['mean_return']:.1f}: {row['spikes']:.0f} spikes, {row['synaptic_ops']:.0f} "
              f"synaptic ops per decision, {', '.join(f'{p} {e:.3g} uJ' for p, e in row['energy_uj'].items())}")
    ratios = result["window_over_stream"]
    print(f"window K={args.window} / stream: spikes {ratios['spikes']:.1f}x, synaptic ops {ratios['synaptic_ops']:.1f}x")
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
