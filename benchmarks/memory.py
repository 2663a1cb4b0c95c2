"""Peak resident memory of a short training run and of batch-1 inference, spiking DT and ANN twin.

    python benchmarks/memory.py                 # default config, 20 steps at batch 64
    python benchmarks/memory.py --steps 50 --batch 128

Each measurement runs in a fresh subprocess (so one cannot inherit another's peak) and
reads its own peak resident set (`peak_mib`: VmHWM on Linux) twice: after the imports
and model construction (the floor every run pays) and after the work. Training uses
synthetic token windows of the env's layout (no dataset needed), AdamW and the DT loss
of `spikingmind.train`; inference runs `--decisions` batch-1 forwards in inference mode, and
`infer-event` as many decisions of the event-driven runtime (`spikingmind.export.event`; its
setup includes numba and the folded weights, its work the kernels' first call, which compiles
them or loads them from numba's cache).
Writes JSON under benchmarks/out/ and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CASES = [("snn", "train"), ("ann", "train"), ("snn", "infer"), ("ann", "infer"), ("snn", "infer-event")]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--context", type=int, default=20)
    parser.add_argument("--time-steps", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="training steps")
    parser.add_argument("--batch", type=int, default=64, help="training batch")
    parser.add_argument("--decisions", type=int, default=200, help="batch-1 inference calls")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "memory.json")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "MODE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peak_mib() -> float:
    """This process's peak resident set (MiB) since its exec.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own memory map.
    Not ru_maxrss: a child forked from a big parent inherits the parent's resident size in
    ru_maxrss across fork + exec (seen: children of the test process all reported 0 MiB above
    their floor, the parent's size). Elsewhere ru_maxrss is the best there is.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB, macOS: bytes (rough)


def child(args) -> dict:
    """One measurement, inside its own process; prints its result as JSON."""
    import numpy as np
    import torch

    from spikingmind.envs import get_env_spec
    from spikingmind.model import DecisionTransformer, ModelConfig
    from spikingmind.tokens import TokenLayout
    from spikingmind.train import TrainConfig, dt_loss

    kind, mode = args.child
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = get_env_spec(args.env)
    layout = TokenLayout(obs_dim=spec.obs_dim, act_dim=spec.act_dim, discrete=spec.discrete,
                         context_length=args.context)
    cfg = ModelConfig(kind=kind, width=args.width, n_blocks=args.blocks, context_length=args.context,
                      time_steps=args.time_steps)
    model = DecisionTransformer(cfg, layout.n_features, spec.act_dim)
    if mode == "infer-event":
        from spikingmind.export import event as event_runtime

        weights = event_runtime.EventWeights.from_model(model.eval())
    rng = np.random.default_rng(0)
    floor = peak_mib()
    start = time.perf_counter()
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(args.steps):
            tokens = torch.from_numpy(rng.normal(size=(args.batch, layout.n_tokens, layout.n_features)).astype(np.float32))
            valid = torch.ones(args.batch, args.context, dtype=torch.bool)
            if spec.discrete:
                actions = torch.from_numpy(rng.integers(0, spec.act_dim, (args.batch, args.context)))
            else:
                actions = torch.from_numpy(rng.uniform(-1, 1, (args.batch, args.context, spec.act_dim)).astype(np.float32))
            loss = dt_loss(model(tokens), actions, valid, layout, spec, TrainConfig.continuous_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        work = {"steps": args.steps, "batch": args.batch}
    elif mode == "infer-event":
        tokens = rng.normal(size=(1, layout.n_tokens, layout.n_features)).astype(np.float32)
        for _ in range(args.decisions):
            event_runtime.decide(weights, tokens)
        work = {"decisions": args.decisions, "batch": 1}
    else:
        model.eval()
        tokens = torch.from_numpy(rng.normal(size=(1, layout.n_tokens, layout.n_features)).astype(np.float32))
        with torch.inference_mode():
            for _ in range(args.decisions):
                model(tokens)
        work = {"decisions": args.decisions, "batch": 1}
    return {"kind": kind, "mode": mode, **work, "seconds": time.perf_counter() - start,
            "peak_rss_mib_after_setup": floor, "peak_rss_mib": peak_mib(),
            "peak_rss_mib_above_setup": peak_mib() - floor,
            "parameters": sum(p.numel() for p in model.parameters())}


def measure(args: argparse.Namespace, kind: str, mode: str) -> dict:
    """One case measured in a fresh subprocess (its peak is its own, not inherited)."""
    passthrough = [f"--env={args.env}", f"--width={args.width}", f"--blocks={args.blocks}",
                   f"--context={args.context}", f"--time-steps={args.time_steps}", f"--steps={args.steps}",
                   f"--batch={args.batch}", f"--decisions={args.decisions}", f"--threads={args.threads}"]
    run = subprocess.run([sys.executable, __file__, *passthrough, "--child", kind, mode],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"measurement {kind}/{mode} failed:\n{run.stderr.strip()[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return {}
    from rich.console import Console
    from rich.table import Table

    import spikingmind
    from spikingmind.io import atomic_write_json

    results = [measure(args, kind, mode) for kind, mode in CASES]
    report = {"benchmark": "memory", "measure": "peak resident set (VmHWM) of a fresh process, MiB",
              "config": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
              "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                          "spikingmind": spikingmind.__version__},
              "results": results}
    atomic_write_json(args.out, report)
    table = Table(title="peak RSS per fresh process (MiB)")
    for column in ("model", "work", "after setup", "peak", "peak - setup", "seconds"):
        table.add_column(column, justify="left" if column in ("model", "work") else "right")
    for r in results:
        work = f"train {r['steps']} steps x {r['batch']}" if r["mode"] == "train" else \
            f"{r['mode']} {r['decisions']} x batch 1"
        table.add_row(r["kind"], work, f"{r['peak_rss_mib_after_setup']:.0f}", f"{r['peak_rss_mib']:.0f}",
                      f"{r['peak_rss_mib_above_setup']:.0f}", f"{r['seconds']:.1f}")
    console = Console(width=120)
    console.print(table)
    console.print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
