"""The README's results: produced by commands from result files, never typed by hand.

    python scripts/results.py                  # rewrite README's results section from runs/results/
    python scripts/results.py --run            # first produce the result files, then rewrite
    python scripts/results.py --run --envs CartPole-v1 --configs configs

`make results` runs the first form, `make results RUN=1` the second.

--run, for each environment (CartPole-v1, MountainCar-v0, Acrobot-v1, Pendulum-v1) whose
configs/<env>.toml exists (others are skipped with a message), through the same CLI a user
types, into <results-dir>/<env>/:
    collect (the env's default mix)  -> dataset, reused when already collected
    train --model snn / ann --config configs/<env>.toml  -> snn/, ann/ (resumable)
    evaluate each on 20 unseen seeds -> snn.json, ann.json
    export --target nir / onnx       -> model.nir, ann.onnx
    energy-report (loihi vs cmos45nm-fp32, cmos45nm-int8) -> energy.json, energy.png
    benchmarks/latency.py            -> latency.json
    provenance (commands, times)     -> run.json
Rendering reads only those files and marks what is missing as "not run".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("CartPole-v1", "MountainCar-v0", "Acrobot-v1", "Pendulum-v1")
START, END = "<!-- results:start -->", "<!-- results:end -->"
SNN_PROFILE = "loihi"
ANN_PROFILES = ("cmos45nm-fp32", "cmos45nm-int8")
NOT_RUN = "not run"


def env_slug(env_id: str) -> str:
    return env_id.split("-v")[0].lower()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="produce the result files first (slow: see README)")
    parser.add_argument("--envs", default=",".join(ENVS), help="comma-separated env ids")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "runs" / "results")
    parser.add_argument("--configs", type=Path, default=ROOT / "configs", help="folder with <env>.toml configs")
    parser.add_argument("--episodes", type=int, default=20, help="unseen evaluation episodes per model")
    parser.add_argument("--dataset-episodes", type=int, default=100, help="episodes collected per env")
    parser.add_argument("--energy-episodes", type=int, default=3, help="episodes whose decisions energy-report counts")
    parser.add_argument("--latency-rounds", type=int, default=15, help="benchmarks/latency.py --rounds")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only run, do not rewrite the README")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- producing results


def _spikingmind() -> list[str]:
    script = Path(sys.executable).with_name("spikingmind")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from spikingmind.cli import main; main()"]


def run_env(env_id: str, args: argparse.Namespace) -> dict | None:
    """Produce <results-dir>/<env>/*; returns the provenance record, None when skipped."""
    from spikingmind.data import default_dataset_id
    from spikingmind.envs import get_env_spec

    slug = env_slug(env_id)
    config = args.configs / f"{slug}.toml"
    if not config.exists():
        print(f"[results] {env_id}: skipped, no config {config} (create it to include this env)", flush=True)
        return None
    out = args.results_dir / slug
    out.mkdir(parents=True, exist_ok=True)
    datasets = args.results_dir / "datasets"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(datasets), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    dataset = default_dataset_id(env_id, get_env_spec(env_id).dataset_mix(), args.dataset_episodes, 0)
    sm = _spikingmind()
    stages = [
        ("collect", sm + ["collect", "--env", env_id, "--episodes", str(args.dataset_episodes), "--seed", "0",
                          "--exist-ok"]),
        *[(f"train-{m}", sm + ["train", "--env", env_id, "--model", m, "--dataset", dataset, "--config", str(config),
                              "--out", str(out / m)]) for m in ("snn", "ann")],
        *[(f"evaluate-{m}", sm + ["evaluate", str(out / m / "checkpoint"), "--episodes", str(args.episodes),
                                 "--json", str(out / f"{m}.json"), "--force"]) for m in ("snn", "ann")],
        ("export-nir", sm + ["export", str(out / "snn" / "checkpoint"), "--target", "nir", "-o", str(out / "model.nir"),
                             "--force"]),
        ("export-onnx", sm + ["export", str(out / "ann" / "checkpoint"), "--target", "onnx", "-o",
                              str(out / "ann.onnx"), "--force"]),
        ("energy-report", sm + ["energy-report", str(out / "model.nir"), "--profile", SNN_PROFILE, "--baseline",
                                str(out / "ann.onnx"), "--baseline-profile", ",".join(ANN_PROFILES), "--episodes",
                                str(args.energy_episodes), "--json", str(out / "energy.json"), "--plot",
                                str(out / "energy.png"), "--force"]),
        ("latency", [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--snn", str(out / "snn" / "checkpoint"),
                     "--ann", str(out / "ann" / "checkpoint"), "--rounds", str(args.latency_rounds),
                     "--out", str(out / "latency.json")]),
    ]
    record = {"env_id": env_id, "config": str(config), "dataset": dataset, "machine_cpus": os.cpu_count(),
              "started": dt.datetime.now().isoformat(timespec="seconds"), "stages": []}
    for name, command in stages:
        print(f"[results] {env_id}: {name}: {shlex.join(command)}", flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True, env=env, cwd=ROOT)
        record["stages"].append({"stage": name, "command": shlex.join(command),
                                 "seconds": round(time.perf_counter() - started, 1)})
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    record["seconds"] = round(sum(s["seconds"] for s in record["stages"]), 1)
    from spikingmind.io import atomic_write_json

    atomic_write_json(out / "run.json", record)
    return record


# ---------------------------------------------------------------------------- rendering


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _pj(value: float) -> str:
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} pJ"


def env_results(results_dir: Path, env_id: str) -> dict:
    """Whatever result files exist for the env (None for each missing one)."""
    folder = results_dir / env_slug(env_id)
    return {name: _load(folder / f"{name}.json") for name in ("snn", "ann", "energy", "latency", "run")} | {
        "folder": folder}


def env_table(env_id: str, found: dict, readme_dir: Path) -> str:
    snn, ann, energy, latency, run = (found[k] for k in ("snn", "ann", "energy", "latency", "run"))
    lines = [f"### {env_id}", ""]
    if not any((snn, ann, energy, latency)):
        return "\n".join(lines + [f"*{NOT_RUN}* (no result files in `{_rel(found['folder'], readme_dir)}/`).", ""])
    profiles = [SNN_PROFILE, *ANN_PROFILES]
    header = ["model", "return, mean ± std (unseen seeds)", "spikes / decision", "latency batch 1",
              "latency / ANN (ORT)", *[f"energy / decision, {p}" for p in profiles]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    baselines = {b["profile"]: b for b in (energy or {}).get("baselines", [])}
    lat = (latency or {}).get("results", {})
    ort_ms = lat.get("ann-ort", {}).get("batch1", {}).get("median_ms")

    def returns(scores):
        if not scores:
            return NOT_RUN
        return f"{scores['mean_return']:.1f} ± {scores['std_return']:.1f} ({scores['episodes']} ep.)"

    def latency_cells(backend):
        ms = lat.get(backend, {}).get("batch1", {}).get("median_ms")
        if ms is None:
            return [NOT_RUN, NOT_RUN]
        return [f"{ms:.3g} ms ({backend})", f"{ms / ort_ms:.2f}x" if ort_ms else NOT_RUN]

    snn_energy = [_pj(energy["snn_total_pj"]) if energy else NOT_RUN] + ["—"] * len(ANN_PROFILES)
    snn_spikes = f"{snn['spikes_per_decision']:.0f} (rate {snn['mean_spike_rate']:.1%})" \
        if snn and snn.get("spikes_per_decision") is not None else NOT_RUN
    ann_energy = ["—"] + [_pj(baselines[p]["ann_total_pj"]) if p in baselines else NOT_RUN for p in ANN_PROFILES]
    snn_backend = (latency or {}).get("goal", {}).get("spiking_backend", "snn-pytorch")  # its faster backend
    lines.append("| " + " | ".join(["SNN (spiking DT)", returns(snn), snn_spikes, *latency_cells(snn_backend),
                                     *snn_energy]) + " |")
    lines.append("| " + " | ".join(["ANN twin", returns(ann), "—", *latency_cells("ann-ort"), *ann_energy]) + " |")
    lines.append("")
    for profile, baseline in baselines.items():
        lines.append(f"- {SNN_PROFILE} vs {profile}: {baseline['verdict']}; break-even: {baseline['break_even_note']}.")
    figure = found["folder"] / "energy.png"
    extras = []
    if figure.exists():
        extras.append(f"[energy breakdown]({_rel(figure, readme_dir)})")
    if run:
        extras.append(f"produced {run['started']} .. {run['finished']} in {run['seconds'] / 60:.0f} min "
                      f"on {run['machine_cpus']} cores from `{_rel(Path(run['config']), readme_dir)}`")
    if extras:
        lines.append(f"- {'; '.join(extras)}.")
    lines.append("")
    return "\n".join(lines)


def demo_table(demo_dir: Path, readme_dir: Path) -> str:
    """`make demo`'s CartPole-v1 results (runs/demo), if it has been run."""
    evals = {name: _load(demo_dir / "eval" / f"{name}.json") for name in (
        "snn", "snn-target100", "ann", "ann-target100", "nir", "onnx", "lava", "nir-40steps")}
    lines = ["### `make demo` (CartPole-v1)", ""]
    if not any(evals.values()):
        return "\n".join(lines + [f"*{NOT_RUN}* (no `{_rel(demo_dir, readme_dir)}/eval/*.json`).", ""])
    lines += ["| policy | backend | target return | return, mean ± std (unseen seeds) | spikes / decision | ms / decision (episodes in lockstep batches; Lava: batch 1) |",
              "|---|---|---|---|---|---|"]
    for name, scores in evals.items():
        if not scores:
            continue
        truncated = f", first {scores['max_steps']} steps" if scores.get("max_steps") else ""
        spikes = scores.get("spikes_per_decision")
        spike_cell = f"{spikes:.0f} (rate {scores['mean_spike_rate']:.1%})" if spikes else "—"
        ms = scores.get("lava_ms_per_decision", scores["ms_per_decision_batch"])
        lines.append(f"| {scores['model'].upper()} | {scores['backend']} | {scores['target_return']:g} | "
                     f"{scores['mean_return']:.1f} ± {scores['std_return']:.1f} ({scores['episodes']} ep.{truncated}) | "
                     f"{spike_cell} | {ms:.3g} |")
    lines.append("")
    for model in ("snn", "ann"):
        meta = _load(demo_dir / model / "checkpoint" / "checkpoint.json")
        if meta:
            m = meta["metrics"]
            reached = (f"first reached the reward threshold {m['reward_threshold']:g} on validation after "
                       f"{m['time_to_reward_threshold_s']:.0f} s (step {m['steps_to_reward_threshold']})"
                       if m.get("time_to_reward_threshold_s") is not None else "never reached the reward threshold on validation")
            lines.append(f"- {model.upper()} training: {m['steps']} steps in {m['train_seconds']:.0f} s; {reached}; "
                         f"kept step {m['best_step']} (validation return {m['best_val_return']:.1f}).")
    energy = _load(demo_dir / "energy.json")
    if energy:
        for baseline in energy.get("baselines", []):
            lines.append(f"- energy estimate, {energy['snn_profile']} vs {baseline['profile']}: {baseline['verdict']}; "
                         f"break-even: {baseline['break_even_note']}.")
    lava = _load(demo_dir / "export" / "lava" / "agreement.json")
    if lava:
        lines.append(f"- Lava export check on {lava.get('decisions')} real decisions: float vs reference "
                     f"{lava.get('action_float_vs_reference', float('nan')):.1%} of actions, fixed point vs float "
                     f"{lava.get('action_fixed_vs_float', float('nan')):.1%}.")
    lines.append("")
    return "\n".join(lines)


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:
        return str(path)


def summary_figure(results_dir: Path, found: dict[str, dict]) -> Path | None:
    """Returns (mean ± std) and energy per decision of every env that has them, SNN next to ANN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    envs = [e for e, f in found.items() if f["snn"] or f["ann"]]
    if not envs:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(envs))
    for offset, model in ((-0.2, "snn"), (0.2, "ann")):
        means = [found[e][model]["mean_return"] if found[e][model] else np.nan for e in envs]
        stds = [found[e][model]["std_return"] if found[e][model] else 0.0 for e in envs]
        left.bar(x + offset, means, 0.4, yerr=stds, capsize=3, label=model.upper())
    left.set_xticks(x, envs, fontsize=8)
    left.set_ylabel("return (mean ± std, unseen seeds)")
    left.legend(fontsize=8)
    columns = [("SNN " + SNN_PROFILE, lambda e: e["snn_total_pj"])] + [
        (f"ANN {p}", lambda e, p=p: next((b["ann_total_pj"] for b in e["baselines"] if b["profile"] == p), np.nan))
        for p in ANN_PROFILES]
    width = 0.8 / len(columns)
    for index, (label, value) in enumerate(columns):
        heights = [value(found[e]["energy"]) if found[e]["energy"] else np.nan for e in envs]
        right.bar(x - 0.4 + width * (index + 0.5), heights, width, label=label)
    right.set_xticks(x, envs, fontsize=8)
    right.set_yscale("log")
    right.set_ylabel("energy per decision, estimate (pJ)")
    right.legend(fontsize=8)
    figure.tight_layout()
    from spikingmind.io import atomic_path

    path = results_dir / "summary.png"
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
    return path


def render(results_dir: Path, envs: list[str], readme_dir: Path, demo_dir: Path = ROOT / "runs" / "demo") -> str:
    found = {env_id: env_results(results_dir, env_id) for env_id in envs}
    figure = summary_figure(results_dir, found)
    now = dt.datetime.now().isoformat(timespec="minutes")
    lines = [
        START,
        f"*Generated by `make results` (`python scripts/results.py`) on {now} from the files in "
        f"`{_rel(results_dir, readme_dir)}/`; `make results RUN=1` produces them (`python scripts/results.py --run`). "
        "Returns on unseen evaluation seeds (how many: in brackets; `--run` uses 20); latency = median of batch-1 `act` calls "
        "(`benchmarks/latency.py`, 1 thread; the SNN's faster backend), ratio to the ANN twin in ONNX Runtime; energy is an estimate "
        "(counted operations x cited per-op energies, `spikingmind energy-report`). Do not edit by hand.*",
        "",
    ]
    lines.append(demo_table(demo_dir, readme_dir))
    if figure is not None:
        lines += [f"![returns and energy per environment]({_rel(figure, readme_dir)})", ""]
    for env_id in envs:
        lines.append(env_table(env_id, found[env_id], readme_dir))
    lines.append(END)
    return "\n".join(lines)


def rewrite_readme(readme: Path, section: str) -> None:
    from spikingmind.io import atomic_write_text

    text = readme.read_text()
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise SystemExit(f"{readme}: missing the {START} ... {END} markers in its Results section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(readme, head + section + tail)


def main(argv=None) -> None:
    args = parse_args(argv)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    if args.run:
        for env_id in envs:
            run_env(env_id, args)
    if not args.no_readme:
        rewrite_readme(args.readme, render(args.results_dir, envs, args.readme.parent))
        print(f"[results] rewrote the results section of {args.readme}")


if __name__ == "__main__":
    main()
