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
Rendering reads only those files and marks what is missing as "not run". Besides the
per-environment tables it renders, for every env in --envs that has them:
    --ablate-dir <dir>/<env>/summary.csv (+ manifest.json, plots/*.png) from `spikingmind ablate`
        -> "Ablation over T and K": one row per (model, T, K), mean ± std over seeds
    --finetune-dir <dir>/<env>/{offline,finetuned}.json + finetune/ from scripts/finetune_demo.sh
        -> "Online fine-tuning (REINFORCE)": offline vs fine-tuned return, learning curve
An env without those files gets no such subsection.

runs/ is git-ignored, so every figure the section shows or links (summary, energy breakdowns,
ablation plots, learning curves) is copied into --figures-dir (default docs/results/, committed)
under a unique name (e.g. cartpole-energy.png, ablate-cartpole-mean_return.png) and the README
links the copy; stale copies there are left alone.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from spikingmind.energy.report import format_pj
from spikingmind.envs import env_slug

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("CartPole-v1", "MountainCar-v0", "Acrobot-v1", "Pendulum-v1")
START, END = "<!-- results:start -->", "<!-- results:end -->"
SNN_PROFILE = "loihi"
ANN_PROFILES = ("cmos45nm-fp32", "cmos45nm-int8")
NOT_RUN = "not run"
# `spikingmind ablate` writes <sweep>/plots/<metric>.png (spikingmind.workflows.sweep_results.PLOTTED); two are shown, two linked
ABLATION_PLOTS = {"mean_return": "return", "spikes_per_decision": "spikes per decision",
                  "latency_ms": "latency", "energy_pj": "energy per decision"}
ABLATION_EMBEDDED = ("mean_return", "energy_pj")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="produce the result files first (slow: see README)")
    parser.add_argument("--envs", default=",".join(ENVS), help="comma-separated env ids to produce with --run "
                                                                  "(the README always shows all four)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "runs" / "results")
    parser.add_argument("--configs", type=Path, default=ROOT / "configs", help="folder with <env>.toml configs")
    parser.add_argument("--episodes", type=int, default=20, help="unseen evaluation episodes per model")
    parser.add_argument("--dataset-episodes", type=int, default=100,
                        help="episodes collected per env unless its config has [data] episodes = N "
                             "([data] mix = \"...\" likewise overrides the env's default mix)")
    parser.add_argument("--energy-episodes", type=int, default=3, help="episodes whose decisions energy-report counts")
    parser.add_argument("--latency-rounds", type=int, default=15, help="benchmarks/latency.py --rounds")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "runs" / "demo", help="`make demo`'s output")
    parser.add_argument("--ablate-dir", type=Path, default=ROOT / "runs" / "ablate",
                        help="`spikingmind ablate` folders, <dir>/<env>/summary.csv")
    parser.add_argument("--finetune-dir", type=Path, default=ROOT / "runs" / "results" / "finetune",
                        help="scripts/finetune_demo.sh output, <dir>/<env>/")
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "results",
                        help="where the figures the README shows are copied (runs/ is not committed)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only run, do not rewrite the README")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- producing results


def _spikingmind() -> list[str]:
    script = Path(sys.executable).with_name("spikingmind")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from spikingmind.cli import main; main()"]


def run_env(env_id: str, args: argparse.Namespace) -> dict | None:
    """Produce <results-dir>/<env>/*; returns the provenance record, None when skipped."""
    from spikingmind.data import default_dataset_id, parse_mix
    from spikingmind.envs import get_env_spec
    from spikingmind.train import load_data_config

    slug = env_slug(env_id)
    config = args.configs / f"{slug}.toml"
    if not config.exists():
        print(f"[results] {env_id}: skipped, no config {config} (create it to include this env)", flush=True)
        return None
    out = args.results_dir / slug
    out.mkdir(parents=True, exist_ok=True)
    datasets = args.results_dir / "datasets"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(datasets), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    data = load_data_config(config)  # [data] episodes / mix override the defaults (validated)
    episodes = int(data.get("episodes", args.dataset_episodes))
    mix_text = data.get("mix")
    mix = parse_mix(mix_text) if mix_text else get_env_spec(env_id).dataset_mix()
    dataset = default_dataset_id(env_id, mix, episodes, 0)
    sm = _spikingmind()
    stages = [
        ("collect", sm + ["collect", "--env", env_id, "--episodes", str(episodes), "--seed", "0", "--exist-ok",
                          *(["--mix", mix_text] if mix_text else [])]),
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


def _returns(scores: dict | None) -> str:
    """An `evaluate --json` result as one cell: mean ± std (episodes)."""
    if not scores:
        return NOT_RUN
    return f"{scores['mean_return']:.1f} ± {scores['std_return']:.1f} ({scores['episodes']} ep.)"


def publish_figure(source: Path, figures_dir: Path, name: str) -> Path | None:
    """Copy `source` to figures_dir/name (atomically) so a fresh clone can show it; None if absent."""
    if not source.is_file():
        return None
    from spikingmind.io import atomic_write_bytes

    return atomic_write_bytes(figures_dir / name, source.read_bytes())


def env_results(results_dir: Path, env_id: str) -> dict:
    """Whatever result files exist for the env (None for each missing one)."""
    folder = results_dir / env_slug(env_id)
    return {name: _load(folder / f"{name}.json") for name in ("snn", "ann", "energy", "latency", "run")} | {
        "folder": folder}


def latency_line(latency: dict) -> str:
    """benchmarks/latency.py's JSON as one line: every backend's batch-1 median and its ratio to
    ann-ort, fastest first, and the goal's verdict."""
    results, goal = latency["results"], latency.get("goal", {})
    ort_ms = results["ann-ort"]["batch1"]["median_ms"]
    ranked = sorted(results.items(), key=lambda item: item[1]["batch1"]["median_ms"])
    cells = ", ".join(f"{name} {r['batch1']['median_ms']:.3g} ms ({r['batch1']['median_ms'] / ort_ms:.2f}x)"
                      for name, r in ranked)
    verdict = ""
    if goal:
        verdict = (f"; goal (fastest spiking backend <= {goal['spiking_dt_over_ann_ort_batch1_at_most']:g}x ann-ort): "
                   f"{'met' if goal['met'] else 'not met'}, {goal['ratio']:.2f}x with {goal['spiking_backend']}")
    return f"- batch-1 latency by backend (ratio to ann-ort): {cells}{verdict}."


def env_table(env_id: str, found: dict, readme_dir: Path, figures_dir: Path) -> str:
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

    def latency_cells(backend):
        ms = lat.get(backend, {}).get("batch1", {}).get("median_ms")
        if ms is None:
            return [NOT_RUN, NOT_RUN]
        return [f"{ms:.3g} ms ({backend})", f"{ms / ort_ms:.2f}x" if ort_ms else NOT_RUN]

    snn_energy = [format_pj(energy["snn_total_pj"]) if energy else NOT_RUN] + ["—"] * len(ANN_PROFILES)
    snn_spikes = f"{snn['spikes_per_decision']:.0f} (rate {snn['mean_spike_rate']:.1%})" \
        if snn and snn.get("spikes_per_decision") is not None else NOT_RUN
    ann_energy = ["—"] + [format_pj(baselines[p]["ann_total_pj"]) if p in baselines else NOT_RUN for p in ANN_PROFILES]
    snn_backend = (latency or {}).get("goal", {}).get("spiking_backend", "snn-pytorch")  # its faster backend
    lines.append("| " + " | ".join(["SNN (spiking DT)", _returns(snn), snn_spikes, *latency_cells(snn_backend),
                                     *snn_energy]) + " |")
    lines.append("| " + " | ".join(["ANN twin", _returns(ann), "—", *latency_cells("ann-ort"), *ann_energy]) + " |")
    lines.append("")
    for profile, baseline in baselines.items():
        lines.append(f"- {SNN_PROFILE} vs {profile}: {baseline['verdict']}; break-even: {baseline['break_even_note']}.")
    if latency:
        lines.append(latency_line(latency))
    figure = publish_figure(found["folder"] / "energy.png", figures_dir, f"{env_slug(env_id)}-energy.png")
    extras = []
    if figure is not None:
        extras.append(f"[energy breakdown]({_rel(figure, readme_dir)})")
    if run:
        extras.append(f"produced {run['started']} .. {run['finished']} in {run['seconds'] / 60:.0f} min "
                      f"on {run['machine_cpus']} cores from `{_rel(Path(run['config']), readme_dir)}`")
    if extras:
        lines.append(f"- {'; '.join(extras)}.")
    lines.append("")
    return "\n".join(lines)


def demo_table(demo_dir: Path, readme_dir: Path, figures_dir: Path) -> str:
    """`make demo`'s CartPole-v1 results (runs/demo), if it has been run."""
    evals = {name: _load(demo_dir / "eval" / f"{name}.json") for name in (
        "snn", "snn-target100", "snn-event", "ann", "ann-target100", "nir", "onnx", "lava", "nir-40steps")}
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
    figure = publish_figure(demo_dir / "energy.png", figures_dir, "demo-energy.png")
    if figure is not None:
        lines.append(f"- [energy breakdown]({_rel(figure, readme_dir)}).")
    lava = _load(demo_dir / "export" / "lava" / "agreement.json")
    if lava:
        lines.append(f"- Lava export check on {lava.get('decisions')} real decisions: float vs reference "
                     f"{lava.get('action_float_vs_reference', float('nan')):.1%} of actions, fixed point vs float "
                     f"{lava.get('action_fixed_vs_float', float('nan')):.1%}.")
    lines.append("")
    return "\n".join(lines)


def read_summary_csv(path: Path) -> list[dict]:
    """summary.csv rows: numbers as floats, empty cells (failed or unfinished runs) as None."""
    def cell(text: str) -> float | str | None:
        if text == "":
            return None
        try:
            return float(text)
        except ValueError:
            return text

    with path.open(newline="") as handle:
        return [{key: cell(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _mean_std(row: dict, metric: str, spec: str) -> str:
    mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
    if mean is None:
        return "—"
    return f"{mean:{spec}} ± {std:{spec}}" if std is not None else f"{mean:{spec}}"


def _runs_cell(row: dict) -> str:
    """done/failed over the seeds, e.g. "3/0" or "2/1 failed" (+ runs neither done nor failed)."""
    runs, done, failed = (int(row[k]) for k in ("runs", "done", "failed"))
    cell = f"{done}/{failed}" + (" failed" if failed else "")
    unfinished = runs - done - failed
    return cell + (f", {unfinished} unfinished" if unfinished else "")


def _energy_cell(row: dict, profiles: list[str]) -> str:
    values = [row.get(f"energy_pj_{profile}_mean") for profile in profiles]
    if all(value is None for value in values):
        return "—"
    return ", ".join(f"{format_pj(value) if value is not None else '—'} ({profile})"
                     for profile, value in zip(profiles, values))


def _sweep_line(sweep: dict) -> str:
    """The sweep's settings (manifest.json "sweep") in one sentence."""
    parts = []
    if sweep.get("seeds") is not None:
        parts.append(f"{sweep['seeds']} seed{'s' if sweep['seeds'] != 1 else ''} per point")
    if sweep.get("eval_episodes") is not None:
        parts.append(f"{sweep['eval_episodes']} unseen evaluation episodes per run")
    if (sweep.get("train") or {}).get("steps") is not None:
        parts.append(f"{sweep['train']['steps']} training steps per run")
    grid = [f"{name} ∈ {{{', '.join(str(v) for v in sweep[key])}}}"
            for name, key in (("T", "time_steps"), ("K", "context")) if sweep.get(key)]
    if grid:
        parts.append(f"grid `{sweep.get('grid', '?')}` over {' and '.join(grid)}"
                     + (" (the ANN twin once per K)" if sweep.get("ann") else ""))
    return ("; ".join(parts) + ".") if parts else ""


def ablation_section(env_id: str, ablate_dir: Path, readme_dir: Path, figures_dir: Path) -> str | None:
    """`spikingmind ablate`'s summary for the env; None when it has not been run."""
    slug = env_slug(env_id)
    folder = ablate_dir / slug
    if not (folder / "summary.csv").is_file():
        return None
    rows = read_summary_csv(folder / "summary.csv")
    manifest = _load(folder / "manifest.json") or {}
    sweep = manifest.get("sweep") or {}
    runs = manifest.get("runs") or []
    runs = runs.values() if isinstance(runs, dict) else runs
    run_seconds = sum((entry.get("result") or {}).get("wall_seconds") or 0.0 for entry in runs)
    profiles = {"snn": sweep.get("snn_profiles") or [SNN_PROFILE],
                "ann": sweep.get("ann_profiles") or list(ANN_PROFILES)}
    lines = [f"### Ablation over T and K, {env_id}", ""]
    source = (f"From `{_rel(folder, readme_dir)}/` (`spikingmind ablate`); ± and error bars are the std over the "
              "seeds that finished; failed runs have no metrics (—).")
    if run_seconds:
        source += f" The runs took {run_seconds / 60:.0f} min in total, added up (they run side by side, one per worker)."
    lines += [" ".join(filter(None, (_sweep_line(sweep), source))), ""]
    header = ["model", "T", "K", "runs done/failed", "return, mean ± std over seeds", "spikes / decision",
              "latency batch 1 (PyTorch), mean", "energy / decision, mean"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        model = str(row["model"])
        snn = model == "snn"
        lines.append("| " + " | ".join([
            model.upper(),
            f"{int(row['time_steps'])}" if snn else "—",  # the ANN twin has no time steps
            f"{int(row['context'])}",
            _runs_cell(row),
            _mean_std(row, "mean_return", ".1f"),
            _mean_std(row, "spikes_per_decision", ".0f") if snn else "—",
            f"{row['latency_ms_mean']:.3g} ms" if row.get("latency_ms_mean") is not None else "—",
            _energy_cell(row, profiles.get(model, [])),
        ]) + " |")
    lines.append("")
    figures = {metric: publish_figure(folder / "plots" / f"{metric}.png", figures_dir, f"ablate-{slug}-{metric}.png")
               for metric in ABLATION_PLOTS}
    for metric in ABLATION_EMBEDDED:
        if figures[metric] is not None:
            lines += [f"![{env_id}: {ABLATION_PLOTS[metric]} against T and K]({_rel(figures[metric], readme_dir)})", ""]
    linked = [f"[{ABLATION_PLOTS[m]}]({_rel(f, readme_dir)})" for m, f in figures.items()
              if f is not None and m not in ABLATION_EMBEDDED]
    if linked:
        lines += [f"- against T and K: {', '.join(linked)}.", ""]
    return "\n".join(lines)


def finetune_section(env_id: str, finetune_dir: Path, readme_dir: Path, figures_dir: Path) -> str | None:
    """scripts/finetune_demo.sh's result for the env: offline vs fine-tuned; None without its folder."""
    slug = env_slug(env_id)
    folder = finetune_dir / slug
    if not folder.is_dir():
        return None
    run = folder / "finetune"
    # the metrics land in the fine-tuned checkpoint's meta; finetune.json holds the config
    record = {**(_load(run / "finetune.json") or {}),
              **((_load(run / "checkpoint" / "checkpoint.json") or {}).get("finetune") or {})}
    metrics = record.get("metrics")
    lines = [f"### Online fine-tuning (REINFORCE), {env_id}", "",
             "| policy | return, mean ± std (unseen seeds) |", "|---|---|",
             f"| offline checkpoint | {_returns(_load(folder / 'offline.json'))} |",
             f"| fine-tuned | {_returns(_load(folder / 'finetuned.json'))} |", ""]
    if metrics:
        episodes = metrics.get("episodes", (record.get("config") or {}).get("episodes"))
        lines.append(f"- {episodes} fine-tuning episodes, {metrics['env_steps']} env steps, "
                     f"{metrics['seconds'] / 60:.1f} min; greedy validation return "
                     f"{metrics['start_greedy_return']:.1f} at the start, "
                     f"{metrics['final_greedy_return']:.1f} at the end "
                     f"(from `{_rel(folder, readme_dir)}/`, `scripts/finetune_demo.sh`).")
    else:
        lines.append(f"- fine-tuning: *{NOT_RUN}* (no finished run in `{_rel(run, readme_dir)}/`).")
    lines.append("")
    figure = publish_figure(run / "learning_curve.png", figures_dir, f"finetune-{slug}-learning_curve.png")
    if figure is not None:
        lines += [f"![{env_id}: fine-tuning learning curve]({_rel(figure, readme_dir)})", ""]
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


def render(results_dir: Path, envs: list[str], readme_dir: Path, demo_dir: Path = ROOT / "runs" / "demo",
           figures_dir: Path = ROOT / "docs" / "results", ablate_dir: Path = ROOT / "runs" / "ablate",
           finetune_dir: Path = ROOT / "runs" / "results" / "finetune") -> str:
    """The README's results section; copies every figure it shows into `figures_dir`."""
    found = {env_id: env_results(results_dir, env_id) for env_id in envs}
    summary = summary_figure(results_dir, found)
    figure = publish_figure(summary, figures_dir, "summary.png") if summary is not None else None
    now = dt.datetime.now().isoformat(timespec="minutes")
    lines = [
        START,
        f"*Generated by `make results` (`python scripts/results.py`) on {now} from the files in "
        f"`{_rel(results_dir, readme_dir)}/`; `make results RUN=1` produces them (`python scripts/results.py --run`). "
        "Returns on unseen evaluation seeds (how many: in brackets; `--run` uses 20); latency = median of batch-1 `act` calls "
        "(`benchmarks/latency.py`, 1 thread; the SNN's faster backend), ratio to the ANN twin in ONNX Runtime; energy is an estimate "
        "(counted operations x cited per-op energies, `spikingmind energy-report`). Figures are copies in "
        f"`{_rel(figures_dir, readme_dir)}/`. Do not edit by hand.*",
        "",
    ]
    lines.append(demo_table(demo_dir, readme_dir, figures_dir))
    if figure is not None:
        lines += [f"![returns and energy per environment]({_rel(figure, readme_dir)})", ""]
    for env_id in envs:
        lines.append(env_table(env_id, found[env_id], readme_dir, figures_dir))
    for section, folder in ((ablation_section, ablate_dir), (finetune_section, finetune_dir)):
        for env_id in envs:
            text = section(env_id, folder, readme_dir, figures_dir)
            if text is not None:
                lines.append(text)
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
    if not args.no_readme:  # every env's results, not only those just produced
        rewrite_readme(args.readme, render(args.results_dir, list(ENVS), args.readme.parent, demo_dir=args.demo_dir,
                                           figures_dir=args.figures_dir, ablate_dir=args.ablate_dir,
                                           finetune_dir=args.finetune_dir))
        print(f"[results] rewrote the results section of {args.readme}")


if __name__ == "__main__":
    main()
