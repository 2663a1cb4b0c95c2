"""The README's results: produced by commands from result files, never typed by hand.

    python scripts/results.py                  # rewrite README's results section from runs/results/
    python scripts/results.py --run            # first produce the result files, then rewrite
    python scripts/results.py --run --envs CartPole-v1 --configs configs

`make results` runs the first form, `make results RUN=1` the second.

--run, for each environment (CartPole-v1, MountainCar-v0, Acrobot-v1, Pendulum-v1) whose
configs/<env>.toml exists (others are skipped with a message), through the same CLI a user
types, into <results-dir>/<env>/ (the protocol: README, "Results"):
    collect --workers 2 (the config's [data], else the env's default mix) -> the dataset, once
    train --model snn / ann --seed N, N in --seeds (0,1,2) -> snn/seed<N>/, ann/seed<N>/; the
        checkpoint kept: best mean return on the validation seeds (spikingmind.seeds)
    evaluate each on 20 unseen seeds of its own (--seed N) -> eval/<model>-seed<N>.json
    condition (every checkpoint, 8 requested returns over the dataset's range + 1 above)
                                     -> conditioning.json, conditioning.png
    export --target nir / onnx (first seed)                -> model.nir, ann.onnx
    energy-report (loihi vs cmos45nm-fp32, cmos45nm-int8)  -> energy.json, energy.png
    benchmarks/latency.py (first seed)                     -> latency.json
    provenance (commands, times)                           -> run.json
and, where they exist, configs/<env>-stream.toml (streaming models, same data -> stream/),
configs/<env>-finetune.toml (online fine-tuning of every offline checkpoint -> finetune/) and
configs/<env>-condition.toml (models trained for return conditioning on their own data, for
an env whose recommended config clones expert episodes alone: 3 seeds each, evaluated, swept
-> condition/).
Re-running resumes: a stage whose outputs are newer than its inputs is skipped (--force redoes
them), `train` leaves finished runs alone. --jobs N runs an env's trainings (then its
evaluations) N at a time.
Rendering reads only those files and marks what is missing as "not run" (with --keep-missing,
a part of the section without files here keeps its text from the README's last render: each
part is headed by a PART marker; summary.json entries likewise); it also writes
<figures-dir>/summary.json (strict JSON: per env the target return, returns by training seed of
the SNN and the ANN, the bar of issue #14, the expert and RL Zoo references, `conditioning`;
one writer, `write_summary`). Besides the per-environment tables it renders, when their files exist:
    --experts docs/results/experts.json -> the experts' own returns next to RL Zoo's agents
    --third-party docs/results/third_party.json -> its README summary line
    --demo-spread-dir <dir>/spread.json from scripts/demo_spread.py -> the demo over 3 seeds
and for every env in --envs that has them:
    --ablate-dir <dir>/<env>/summary.csv (+ manifest.json, plots/*.png) from `spikingmind ablate`
        -> "Ablation over T and K": one row per (model, T, K), mean ± std over seeds
    --energy-sweep-dir <dir>/<env>/ likewise, from `spikingmind ablate --energy-weights` at the
        env's recommended model -> "Energy-weight sweep at the recommended model"
    --finetune-dir <dir>/<env>/{offline,finetuned}.json + finetune/ from scripts/finetune_demo.sh
        -> "Online fine-tuning (REINFORCE)": offline vs fine-tuned return, learning curve
An env without those files gets no such subsection.

runs/ is git-ignored, so every figure the section shows or links (summary, energy breakdowns,
ablation plots, learning curves, conditioning curves) is copied into --figures-dir (default docs/results/, committed)
under a unique name (e.g. cartpole-energy.png, ablate-cartpole-mean_return.png) and the README
links the copy; stale copies there are left alone.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from spikingmind.energy.report import format_pj
from spikingmind.envs import env_slug
from spikingmind.workflows.conditioning import MODEL_LABELS, MODEL_ORDER

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("CartPole-v1", "MountainCar-v0", "Acrobot-v1", "Pendulum-v1")
START, END = "<!-- results:start -->", "<!-- results:end -->"
PART = "<!-- results:part {} -->"  # heads each part of the section (`render`), so one can be kept alone
PART_PATTERN = re.compile(r"<!-- results:part ([^>]+?) -->")
SNN_PROFILE = "loihi"  # the flat fields of the energy report (its first profile)
SNN_PROFILES = ("loihi", "loihi-sanafe", "loihi-kerasspiking")  # every cited Loihi parameterisation
ANN_PROFILES = ("cmos45nm-fp32", "cmos45nm-int8")
NOT_RUN = "not run"
# `spikingmind ablate` writes <sweep>/plots/<metric>.png (spikingmind.workflows.sweep_results.PLOTTED); two are shown, two linked
ABLATION_PLOTS = {"mean_return": "return", "spikes_per_decision": "spikes per decision",
                  "latency_ms": "latency", "energy_pj": "energy per decision"}
ABLATION_EMBEDDED = ("mean_return", "energy_pj")
MODELS = MODEL_ORDER  # ("snn", "ann")
TRAINING_SEEDS = (0, 1, 2)
FIXED_POINT = ("--backend", "loihi-emulation")  # the spiking DT as Loihi runs it (NumPy emulation)
#: issue #14's bar for the spiking DT (mean over 3 training seeds, 20 unseen seeds each): CartPole 495,
#: elsewhere the best agent of RL Baselines3 Zoo (also in docs/results/experts.json, "zoo")
GOALS = {"CartPole-v1": 495.0, "MountainCar-v0": -100.8, "Acrobot-v1": -69.1, "Pendulum-v1": -151.9}


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: {text!r} is not a comma-separated list of integers") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds: {text!r}: give distinct seeds >= 0")
    return seeds


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
    parser.add_argument("--energy-sweep-dir", type=Path, default=ROOT / "runs" / "ablate-energy",
                        help="`spikingmind ablate --energy-weights` folders at each env's recommended model, "
                             "<dir>/<env>/summary.csv (the README's energy-weight sweeps)")
    parser.add_argument("--finetune-dir", type=Path, default=ROOT / "runs" / "results" / "finetune",
                        help="scripts/finetune_demo.sh output, <dir>/<env>/")
    parser.add_argument("--figures-dir", type=Path, default=ROOT / "docs" / "results",
                        help="where the figures the README shows are copied (runs/ is not committed)")
    parser.add_argument("--seeds", type=_seed_list, default=TRAINING_SEEDS,
                        help="training seeds of every model (comma-separated; default 0,1,2)")
    parser.add_argument("--workers", type=int, default=2, help="`collect --workers`: processes playing episodes")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings and evaluations of one env run side by side, this many at a time "
                             "(their output goes to <env>/logs/); the latency benchmark always runs alone")
    parser.add_argument("--conditioning-targets", type=int, default=8,
                        help="`condition --targets`: requested returns over the dataset's range (+1 above it)")
    parser.add_argument("--conditioning-episodes", type=int, default=20,
                        help="`condition --episodes`: unseen episodes per checkpoint and target")
    parser.add_argument("--stages", default="",
                        help="with --run, only the stages whose names start with one of these (comma-separated, "
                             "e.g. condition-config: the models trained for conditioning, without the rest)")
    parser.add_argument("--force", action="store_true",
                        help="re-run evaluations, sweeps, exports and benchmarks whose outputs are up to date "
                             "(finished training runs are always left alone)")
    parser.add_argument("--experts", type=Path, default=ROOT / "docs" / "results" / "experts.json",
                        help="`python -m spikingmind.experts` report (expert and RL Zoo returns)")
    parser.add_argument("--third-party", type=Path, default=ROOT / "docs" / "results" / "third_party.json",
                        help="scripts/third_party_table.py's JSON (its README summary line)")
    parser.add_argument("--demo-spread-dir", type=Path, default=ROOT / "runs" / "demo-spread",
                        help="scripts/demo_spread.py's output (spread.json)")
    parser.add_argument("--summary", type=Path, default=None,
                        help="where the per-env summary JSON goes (default <figures-dir>/summary.json)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only run, do not rewrite the README")
    parser.add_argument("--keep-missing", action="store_true",
                        help="a part whose result files are not here (e.g. on a fresh clone: runs/ is not committed) "
                             "keeps its text in the README and its entry in summary.json, instead of 'not run'; "
                             "the section's header names the parts kept")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- producing results


def say(text: str) -> None:
    """One progress line (whole, even from --jobs threads)."""
    sys.stdout.write(f"[results] {text}\n")
    sys.stdout.flush()


def _spikingmind() -> list[str]:
    script = Path(sys.executable).with_name("spikingmind")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from spikingmind.cli import main; main()"]


@dataclass
class Stage:
    """One command of an env's run. It is skipped when every output is newer than every input
    (`up_to_date`; training and collection always run: they leave finished work alone and
    refuse a changed config). Stages of one `group` may run side by side (--jobs)."""

    name: str
    command: list[str]
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    group: str = ""


def _weights(run_dir: Path) -> Path:
    return run_dir / "checkpoint" / "model.safetensors"


def eval_path(out: Path, model: str, seed: int) -> Path:
    """<env>/eval/<model>-seed<N>.json: the model of training seed N on its 20 unseen seeds."""
    return out / "eval" / f"{model}-seed{seed}.json"


def evaluate_stage(name: str, run: Path, seed: int, out: Path, model: str, args: argparse.Namespace,
                   backend: tuple[str, ...] = ()) -> Stage:
    """`spikingmind evaluate` of run/checkpoint on training seed `seed`'s unseen seeds
    (evaluation_seeds(episodes, seed)) into eval_path(out, model, seed); `backend` e.g.
    ("--backend", "loihi-emulation")."""
    return Stage(name, _spikingmind() + ["evaluate", str(run / "checkpoint"), *backend, "--episodes", str(args.episodes),
                                         "--seed", str(seed), "--json", str(eval_path(out, model, seed)), "--force"],
                 inputs=[_weights(run)], outputs=[eval_path(out, model, seed)], group="evaluate")


def condition_stage(name: str, runs: dict, out: Path, args: argparse.Namespace) -> Stage:
    """`spikingmind condition` over every run's checkpoint into out/conditioning.{json,png}."""
    return Stage(name, _spikingmind() + ["condition", *[str(run / "checkpoint") for run in runs.values()],
                                         "--targets", str(args.conditioning_targets), "--episodes",
                                         str(args.conditioning_episodes), "--json", str(out / "conditioning.json"),
                                         "--plot", str(out / "conditioning.png"), "--force"],
                 inputs=[_weights(run) for run in runs.values()],
                 outputs=[out / "conditioning.json", out / "conditioning.png"])


def plan_env(env_id: str, args: argparse.Namespace) -> tuple[dict, list[Stage]] | None:
    """What `--run` does for one env: (its settings, its stages); None without a config."""
    slug = env_slug(env_id)
    config = args.configs / f"{slug}.toml"
    if not config.exists():
        return None
    out = args.results_dir / slug
    dataset, collect = dataset_of(env_id, config, args)
    seeds = args.seeds
    sm = _spikingmind()
    runs = {(m, seed): out / m / f"seed{seed}" for m in MODELS for seed in seeds}
    stages = [Stage("collect", collect)]
    stages += [Stage(f"train-{m}-seed{seed}", sm + ["train", "--env", env_id, "--model", m, "--dataset", dataset,
                                                    "--config", str(config), "--seed", str(seed), "--out", str(run)],
                     outputs=[_weights(run)], group="train") for (m, seed), run in runs.items()]
    # each training seed on its own unseen evaluation seeds: evaluation_seeds(episodes, seed)
    stages += [evaluate_stage(f"evaluate-{m}-seed{seed}", run, seed, out, m, args) for (m, seed), run in runs.items()]
    # the deployed network: each spiking DT in Loihi fixed point (NumPy emulation), its float returns beside
    stages += [evaluate_stage(f"evaluate-snn-fixed-seed{seed}", runs[("snn", seed)], seed, out, "snn-fixed", args,
                              FIXED_POINT) for seed in seeds]
    stages.append(condition_stage("condition", runs, out, args))
    # export, energy and latency: the first training seed's models
    snn, ann = runs[("snn", seeds[0])], runs[("ann", seeds[0])]
    stages += [
        Stage("export-nir", sm + ["export", str(snn / "checkpoint"), "--target", "nir", "-o", str(out / "model.nir"),
                                  "--force"], inputs=[_weights(snn)], outputs=[out / "model.nir"]),
        Stage("export-onnx", sm + ["export", str(ann / "checkpoint"), "--target", "onnx", "-o", str(out / "ann.onnx"),
                                   "--force"], inputs=[_weights(ann)], outputs=[out / "ann.onnx"]),
        # the ANN twin's checkpoint: both its graphs are counted, the verdict on the decision-only one
        Stage("energy-report", sm + ["energy-report", str(out / "model.nir"), "--profile", ",".join(SNN_PROFILES),
                                     "--baseline", str(ann / "checkpoint"), "--baseline-profile", ",".join(ANN_PROFILES),
                                     "--episodes", str(args.energy_episodes), "--json", str(out / "energy.json"),
                                     "--plot", str(out / "energy.png"), "--force"],
              inputs=[out / "model.nir", _weights(ann)], outputs=[out / "energy.json", out / "energy.png"]),
        # NeuroBench's own metrics beside ours, and the portable export in nirtorch, snnTorch and norse
        Stage("neurobench", [sys.executable, str(ROOT / "benchmarks" / "neurobench_metrics.py"), "--checkpoint",
                             str(snn / "checkpoint"), "--env", env_id, "--episodes", str(args.energy_episodes),
                             "--max-decisions", "300", "--out", str(out / "neurobench-snn.json"), "--quiet"],
              inputs=[_weights(snn)], outputs=[out / "neurobench-snn.json"]),
        Stage("portable-readers", [sys.executable, str(ROOT / "benchmarks" / "portable_readers.py"), "--checkpoint",
                                   str(snn / "checkpoint"), "--episodes", "3", "--max-steps", "25", "--out",
                                   str(out / "portable_readers.json")],
              inputs=[_weights(snn)], outputs=[out / "portable_readers.json"]),
        Stage("latency", [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--snn", str(snn / "checkpoint"),
                          "--ann", str(ann / "checkpoint"), "--rounds", str(args.latency_rounds),
                          "--out", str(out / "latency.json")],
              inputs=[_weights(snn), _weights(ann)], outputs=[out / "latency.json"]),
    ]
    stages += streaming_stages(env_id, args, dataset, runs)
    stages += finetune_stages(env_id, args, runs)
    stages += conditioning_config_stages(env_id, args)
    settings = {"env_id": env_id, "config": str(config), "dataset": dataset, "training_seeds": list(seeds),
                "eval_episodes": args.episodes, "folder": out}
    return settings, stages


def dataset_of(env_id: str, config: Path, args: argparse.Namespace) -> tuple[str, list[str]]:
    """The dataset a config trains on (its [data] episodes / mix, else the defaults) and the
    `spikingmind collect` command that makes it (seed 0; skipped by --exist-ok once made)."""
    from spikingmind.data import default_dataset_id, parse_mix
    from spikingmind.envs import get_env_spec
    from spikingmind.train import load_data_config

    data = load_data_config(config)  # validated
    episodes = int(data.get("episodes", args.dataset_episodes))
    mix_text = data.get("mix")
    mix = parse_mix(mix_text) if mix_text else get_env_spec(env_id).dataset_mix()
    command = _spikingmind() + ["collect", "--env", env_id, "--episodes", str(episodes), "--seed", "0", "--exist-ok",
                                "--workers", str(args.workers), *(["--mix", mix_text] if mix_text else [])]
    return default_dataset_id(env_id, mix, episodes, 0), command


def conditioning_config_stages(env_id: str, args: argparse.Namespace) -> list[Stage]:
    """When configs/<env>-condition.toml exists: a model family trained for return conditioning
    on its own data (a mix whose returns span a range), for an env whose recommended config is
    trained for return on expert episodes alone and so cannot condition. Every training seed's
    SNN and ANN twin on that data, each evaluated on its unseen seeds at the env's default
    target, then the conditioning sweep over all of them; <results-dir>/<env>/condition/."""
    config = args.configs / f"{env_slug(env_id)}-condition.toml"
    if not config.exists():
        return []
    out, sm, seeds = args.results_dir / env_slug(env_id) / "condition", _spikingmind(), args.seeds
    dataset, collect = dataset_of(env_id, config, args)
    runs = {(m, seed): out / m / f"seed{seed}" for m in MODELS for seed in seeds}
    stages = [Stage("condition-config-collect", collect)]
    stages += [Stage(f"condition-config-train-{m}-seed{seed}", sm + [
        "train", "--env", env_id, "--model", m, "--dataset", dataset, "--config", str(config), "--seed", str(seed),
        "--out", str(run)], outputs=[_weights(run)], group="train") for (m, seed), run in runs.items()]
    stages += [evaluate_stage(f"condition-config-evaluate-{m}-seed{seed}", run, seed, out, m, args)
               for (m, seed), run in runs.items()]
    stages.append(condition_stage("condition-config-condition", runs, out, args))
    return stages


def streaming_stages(env_id: str, args: argparse.Namespace, dataset: str, windowed: dict) -> list[Stage]:
    """Issue #18's runs, when configs/<env>-stream.toml exists (same data as the windowed
    models): the streaming SNN and ANN twin per training seed, each evaluated on its unseen
    seeds; for the first seed's pair the streaming NIR export, its energy report against the
    streaming twin's step graph, the same SNN recomputing a K = 20 window, and the streaming
    latency benchmark; <results-dir>/<env>/stream/."""
    slug = env_slug(env_id)
    config = args.configs / f"{slug}-stream.toml"
    if not config.exists():
        return []
    out, sm, seeds = args.results_dir / slug / "stream", _spikingmind(), args.seeds
    runs = {(m, seed): out / m / f"seed{seed}" for m in MODELS for seed in seeds}
    stages = [Stage(f"stream-train-{m}-seed{seed}", sm + ["train", "--env", env_id, "--model", m, "--dataset", dataset,
                                                          "--config", str(config), "--seed", str(seed), "--out",
                                                          str(run)], outputs=[_weights(run)], group="train")
              for (m, seed), run in runs.items()]
    stages += [evaluate_stage(f"stream-evaluate-{m}-seed{seed}", run, seed, out, m, args)
               for (m, seed), run in runs.items()]
    snn, ann = runs[("snn", seeds[0])], runs[("ann", seeds[0])]
    stages += [
        Stage("stream-export-nir", sm + ["export", str(snn / "checkpoint"), "--target", "nir", "-o",
                                         str(out / "model.nir"), "--force"],
              inputs=[_weights(snn)], outputs=[out / "model.nir"]),
        Stage("stream-energy-report", sm + ["energy-report", str(out / "model.nir"), "--profile", ",".join(SNN_PROFILES),
                                            "--baseline", str(ann / "checkpoint"), "--baseline-profile",
                                            ",".join(ANN_PROFILES), "--episodes", str(args.energy_episodes),
                                            "--json", str(out / "energy.json"), "--force"],
              inputs=[out / "model.nir", _weights(ann)], outputs=[out / "energy.json"]),
        Stage("stream-vs-window", [sys.executable, str(ROOT / "scripts" / "stream_vs_window.py"), str(snn / "checkpoint"),
                                   "--out", str(out / "window-copy"), "--json", str(out / "stream_vs_window.json"),
                                   "--energy-episodes", str(args.energy_episodes), "--eval-episodes",
                                   str(args.episodes), "--seed", str(seeds[0])],
              inputs=[_weights(snn)], outputs=[out / "stream_vs_window.json"]),
        # Lava floating point drives a whole episode of the streaming SNN (ms per decision in its JSON)
        Stage("stream-export-lava", sm + ["export", str(snn / "checkpoint"), "--target", "lava", "-o",
                                          str(out / "lava"), "--force"],
              inputs=[_weights(snn)], outputs=[out / "lava" / "manifest.json"]),
        Stage("stream-evaluate-lava", sm + ["evaluate", str(out / "lava"), "--backend", "lava", "--episodes", "1",
                                            "--seed", str(seeds[0]), "--json", str(out / "eval" / "lava.json"),
                                            "--force"],
              inputs=[out / "lava" / "manifest.json"], outputs=[out / "eval" / "lava.json"]),
        Stage("stream-evaluate-reference", sm + ["evaluate", str(out / "model.nir"), "--episodes", "1", "--seed",
                                                 str(seeds[0]), "--json", str(out / "eval" / "reference.json"),
                                                 "--force"],
              inputs=[out / "model.nir"], outputs=[out / "eval" / "reference.json"]),
        Stage("stream-latency", [sys.executable, str(ROOT / "benchmarks" / "latency_streaming.py"), "--snn",
                                 str(snn / "checkpoint"), "--ann", str(ann / "checkpoint"), "--rounds",
                                 str(args.latency_rounds), "--out", str(out / "latency.json")],
              inputs=[_weights(snn), _weights(ann)], outputs=[out / "latency.json"]),
    ]
    return stages


def finetune_stages(env_id: str, args: argparse.Namespace, offline: dict) -> list[Stage]:
    """When configs/<env>-finetune.toml exists: every training seed's SNN and ANN twin fine-tuned
    online from its offline checkpoint (REINFORCE, `spikingmind finetune --config`, the training
    seed as its seed), each evaluated on the same unseen seeds as the offline one, the SNN in
    Loihi fixed point too; <results-dir>/<env>/finetune/."""
    config = args.configs / f"{env_slug(env_id)}-finetune.toml"
    if not config.exists():
        return []
    out, sm, seeds = args.results_dir / env_slug(env_id) / "finetune", _spikingmind(), args.seeds
    runs = {(m, seed): out / m / f"seed{seed}" for m in MODELS for seed in seeds}
    stages = [Stage(f"finetune-{m}-seed{seed}", sm + ["finetune", str(offline[(m, seed)] / "checkpoint"), "--config",
                                                      str(config), "--seed", str(seed), "--out", str(run)],
                    inputs=[_weights(offline[(m, seed)])], outputs=[_weights(run)], group="train")
              for (m, seed), run in runs.items()]
    stages += [evaluate_stage(f"finetune-evaluate-{m}-seed{seed}", run, seed, out, m, args)
               for (m, seed), run in runs.items()]
    stages += [evaluate_stage(f"finetune-evaluate-snn-fixed-seed{seed}", runs[("snn", seed)], seed, out, "snn-fixed",
                              args, FIXED_POINT) for seed in seeds]
    stages.append(condition_stage("finetune-condition", runs, out, args))
    return stages


def up_to_date(stage: Stage) -> bool:
    """Every output exists and is at least as new as every input (which all exist)."""
    if not stage.outputs or not all(p.exists() for p in [*stage.outputs, *stage.inputs]):
        return False
    return min(p.stat().st_mtime for p in stage.outputs) >= max((p.stat().st_mtime for p in stage.inputs),
                                                                  default=0.0)


def _run_stage(stage: Stage, env: dict, log: Path | None) -> float:
    """Run the stage's command (its output to `log` when given); returns its seconds."""
    started = time.perf_counter()
    if log is None:
        subprocess.run(stage.command, check=True, env=env, cwd=ROOT)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            result = subprocess.run(stage.command, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
        if result.returncode:
            raise SystemExit(f"[results] {stage.name} failed (exit {result.returncode}); its output: {log}")
    return round(time.perf_counter() - started, 1)


def run_env(env_id: str, args: argparse.Namespace) -> dict | None:
    """Produce <results-dir>/<env>/*; returns the provenance record, None when skipped.

    Resumable: a stage whose outputs are up to date is skipped (its time is taken from the
    previous run.json), finished training runs are left alone by `train` itself."""
    planned = plan_env(env_id, args)
    if planned is None:
        print(f"[results] {env_id}: skipped, no config {args.configs / (env_slug(env_id) + '.toml')} "
              "(create it to include this env)", flush=True)
        return None
    settings, stages = planned
    prefixes = tuple(p.strip() for p in args.stages.split(",") if p.strip())
    if prefixes:
        stages = [stage for stage in stages if stage.name.startswith(prefixes)]
        if not stages:
            from spikingmind.errors import ConfigError

            raise ConfigError(f"--stages: no stage of {env_id} starts with {', '.join(prefixes)}")
    out = settings.pop("folder")
    out.mkdir(parents=True, exist_ok=True)
    datasets = args.results_dir / "datasets"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(datasets), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    previous = {s["stage"]: s for s in (_load(out / "run.json") or {}).get("stages", [])}
    record = {**settings, "machine_cpus": os.cpu_count(), "jobs": args.jobs,
              "started": dt.datetime.now().isoformat(timespec="seconds"), "stages": []}
    wall = time.perf_counter()

    def execute(stage: Stage, log: Path | None) -> dict:
        entry = {"stage": stage.name, "command": shlex.join(stage.command)}
        done_before = bool(stage.outputs) and all(p.exists() for p in stage.outputs)
        if not args.force and up_to_date(stage) and stage.group != "train":
            say(f"{env_id}: {stage.name}: up to date, skipped")
            return {**entry, "seconds": previous.get(stage.name, {}).get("seconds", 0.0), "reused": True}
        say(f"{env_id}: {stage.name}: {entry['command']}")
        seconds = _run_stage(stage, env, log)
        if stage.group == "train" and done_before:  # a finished run, left alone: keep the time it took
            return {**entry, "seconds": previous.get(stage.name, {}).get("seconds", seconds), "reused": True}
        return {**entry, "seconds": seconds}

    index = 0
    while index < len(stages):
        group = stages[index].group
        batch = [stages[index]]
        while group and index + len(batch) < len(stages) and stages[index + len(batch)].group == group:
            batch.append(stages[index + len(batch)])
        if args.jobs > 1 and len(batch) > 1:  # side by side, each into its own log
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                entries = list(pool.map(lambda s: execute(s, out / "logs" / f"{s.name}.log"), batch))
        else:
            entries = [execute(stage, None) for stage in batch]
        record["stages"] += entries
        index += len(batch)
    ran = {entry["stage"] for entry in record["stages"]}  # with --stages, the others keep their record
    record["stages"] += [entry for name, entry in previous.items() if name not in ran]
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    record["seconds"] = round(sum(s["seconds"] for s in record["stages"]), 1)  # reused stages included
    record["wall_seconds"] = round(time.perf_counter() - wall, 1)  # this invocation
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


def _kept_checkpoint(run_dir: Path) -> dict | None:
    """What training kept in run_dir/checkpoint: the step with the best mean validation return."""
    meta = _load(run_dir / "checkpoint" / "checkpoint.json")
    if not meta:
        return None
    metrics, train = meta.get("metrics", {}), meta.get("train", {})
    return {"step": metrics.get("best_step"), "steps": metrics.get("steps"),
            "validation_return": metrics.get("best_val_return"), "validation_episodes": train.get("eval_episodes"),
            "validation_seeds": metrics.get("validation_seeds"), "seed": train.get("seed")}


def _kept_finetune(run_dir: Path) -> dict | None:
    """What fine-tuning kept in run_dir/checkpoint: the update with the best greedy validation return."""
    meta = _load(run_dir / "checkpoint" / "checkpoint.json")
    record = (meta or {}).get("finetune") or {}
    metrics, config = record.get("metrics") or {}, record.get("config") or {}
    if not metrics:
        return None
    return {"update": metrics.get("best_update"), "updates": metrics.get("updates"),
            "episodes": metrics.get("episodes"), "env_steps": metrics.get("env_steps"),
            "start_validation_return": metrics.get("start_greedy_return"),
            "validation_return": metrics.get("best_greedy_return"), "validation_episodes": config.get("eval_episodes"),
            "validation_seeds": metrics.get("validation_seeds"), "seed": config.get("seed"), "config": config}


def env_results(results_dir: Path, env_id: str, seeds: tuple[int, ...] = TRAINING_SEEDS,
                ablate_dir: Path | None = None) -> dict:
    """Whatever result files exist for the env (None for each missing one): every training
    seed's evaluation ("evals", the SNN's fixed-point one under "fixed") and kept checkpoint
    ("kept"), under "snn"/"ann" the first seed's evaluations (the energy and latency table's
    models), and the energy sweep's front (`ablate_dir/<env>/front.json`)."""
    folder = results_dir / env_slug(env_id)
    evals = {m: {seed: _load(eval_path(folder, m, seed)) for seed in seeds} for m in MODELS}
    fixed = {seed: _load(eval_path(folder, "snn-fixed", seed)) for seed in seeds}
    kept = {m: {seed: _kept_checkpoint(folder / m / f"seed{seed}") for seed in seeds} for m in MODELS}
    front = _load(ablate_dir / env_slug(env_id) / "front.json") if ablate_dir else None
    stream = folder / "stream"
    streaming = {"evals": {m: {seed: _load(eval_path(stream, m, seed)) for seed in seeds} for m in MODELS},
                 "lava": _load(stream / "eval" / "lava.json"), "reference": _load(stream / "eval" / "reference.json"),
                 **{name: _load(stream / f"{name}.json") for name in ("energy", "latency", "stream_vs_window")}}
    tuned = folder / "finetune"
    finetuned = {"evals": {m: {seed: _load(eval_path(tuned, m, seed)) for seed in seeds} for m in MODELS},
                 "fixed": {seed: _load(eval_path(tuned, "snn-fixed", seed)) for seed in seeds},
                 "kept": {m: {seed: _kept_finetune(tuned / m / f"seed{seed}") for seed in seeds} for m in MODELS},
                 "conditioning": _load(tuned / "conditioning.json")}
    trained = folder / "condition"  # configs/<env>-condition.toml's models (conditioning_config_stages)
    conditioning_config = {"evals": {m: {seed: _load(eval_path(trained, m, seed)) for seed in seeds} for m in MODELS},
                           "conditioning": _load(trained / "conditioning.json"), "folder": trained}
    return {"snn": evals["snn"][seeds[0]], "ann": evals["ann"][seeds[0]], "streaming": streaming, "finetuned": finetuned,
            "conditioning_config": conditioning_config,
            **{name: _load(folder / f"{name}.json") for name in ("energy", "latency", "run", "conditioning")},
            "neurobench": _load(folder / "neurobench-snn.json"), "portable": _load(folder / "portable_readers.json"),
            "evals": evals, "fixed": fixed, "kept": kept, "seeds": list(seeds), "folder": folder, "front": front}


def seed_stats(evals: dict[int, dict | None]) -> dict | None:
    """Returns over training seeds: each seed's mean (of its unseen episodes), their mean and
    std (population, as the ablation), and the spread of every episode pooled; None if none ran."""
    import numpy as np

    done = {seed: e for seed, e in evals.items() if e}
    if not done:
        return None
    means = np.asarray([e["mean_return"] for e in done.values()], dtype=np.float64)
    pooled = np.asarray([r for e in done.values() for r in e["returns"]], dtype=np.float64)
    return {
        "seeds": list(done), "missing_seeds": [seed for seed in evals if seed not in done],
        "mean": float(means.mean()), "std": float(means.std()),
        "by_seed": {seed: {"mean": e["mean_return"], "std": e["std_return"], "min": e["min_return"],
                           "max": e["max_return"], "episodes": e["episodes"], "evaluation_seed": e.get("seed"),
                           "returns": list(e["returns"])} for seed, e in done.items()},
        "episodes": int(pooled.size), "episode_mean": float(pooled.mean()), "episode_std": float(pooled.std()),
        "episode_min": float(pooled.min()), "episode_max": float(pooled.max()),
        "target_return": sorted({e["target_return"] for e in done.values()}),
    }


def goal_line(env_id: str, stats: dict[str, dict | None], n_seeds: int) -> str | None:
    """Issue #14's bar for the spiking DT (mean over training seeds), the ANN twin beside it."""
    goal = GOALS.get(env_id)
    if goal is None:
        return None
    snn, ann = stats["snn"], stats["ann"]
    if snn is None:
        verdict = f"*{NOT_RUN}*"
    else:
        partial = f", {len(snn['seeds'])} of {n_seeds} seeds" if snn["missing_seeds"] else ""
        verdict = f"**{'met' if snn['mean'] >= goal else 'not met'}** ({snn['mean']:.1f}{partial}"
        verdict += f"; ANN twin {ann['mean']:.1f})" if ann else ")"
    return f"- issue #14's bar for the spiking DT, mean over training seeds >= {goal:g}: {verdict}."


def protocol_table(env_id: str, found: dict, experts: dict | None) -> str:
    """The env's returns under the protocol: SNN and ANN twin over training seeds, the expert
    that made the demonstrations and RL Zoo's best agent beside them."""
    n_seeds = len(found["seeds"])
    lines = ["| model | return: mean ± std over training seeds | each training seed: mean of its unseen episodes | "
             "every episode pooled: mean ± std, min .. max | kept checkpoint per seed: step (validation return) |",
             "|---|---|---|---|---|"]
    by_model = {model: seed_stats(found["evals"][model]) for model in MODELS}
    rows = [(MODEL_LABELS[m], by_model[m], found["kept"][m]) for m in MODELS]
    fixed = seed_stats(found.get("fixed") or {})
    if fixed is not None:  # the spiking DT as Loihi runs it: the same checkpoints in fixed point
        rows.insert(1, ("SNN in Loihi fixed point (loihi-emulation)", fixed, found["kept"]["snn"]))
    tuned = found["finetuned"]
    for model in MODELS:  # the fine-tuned models after the offline ones, the SNN's fixed point after it
        stats = seed_stats(tuned["evals"][model])
        if stats is not None:
            rows.append((f"{MODEL_LABELS[model]}, fine-tuned online (REINFORCE)", stats, tuned["kept"][model]))
        if model == "snn" and (tuned_fixed := seed_stats(tuned["fixed"])) is not None:
            rows.append(("SNN fine-tuned, in Loihi fixed point", tuned_fixed, tuned["kept"]["snn"]))
    for label, stats, kept in rows:
        kept_cell = ", ".join(_kept_label(k) for k in kept.values()) if any(kept.values()) else NOT_RUN
        if stats is None:
            lines.append(f"| {label} | {NOT_RUN} | {NOT_RUN} | {NOT_RUN} | {kept_cell} |")
        else:
            per_seed = ", ".join(f"{stats['by_seed'][seed]['mean']:.1f}" if seed in stats["by_seed"] else NOT_RUN
                                 for seed in found["seeds"])
            over = f"{stats['mean']:.1f} ± {stats['std']:.1f} ({len(stats['seeds'])} of {n_seeds} seeds)"
            pooled = (f"{stats['episode_mean']:.1f} ± {stats['episode_std']:.1f}, {stats['episode_min']:.1f} .. "
                      f"{stats['episode_max']:.1f} ({stats['episodes']} ep.)")
            lines.append(f"| {label} | {over} | {per_seed} | {pooled} | {kept_cell} |")
    entry = (experts or {}).get(env_id) or {}
    expert, zoo = entry.get("expert"), entry.get("zoo")
    if expert:
        lines.append(f"| expert `{expert['policy']}` (made the demonstrations) | — | — | {expert['mean']:.1f} ± "
                     f"{expert['std']:.1f}, {expert['min']:.1f} .. {expert['max']:.1f} ({len(expert['returns'])} ep.) "
                     "| — |")
    if zoo:
        lines.append(f"| RL Baselines3 Zoo's best ({zoo['algo']}, online) | — | — | {zoo['return']:.1f} ± "
                     f"{zoo['std']:.1f} | — |")
    lines.append("")
    goal = goal_line(env_id, by_model, n_seeds)
    if goal:
        lines.append(goal)
    lines += finetune_protocol_lines(env_id, tuned, by_model)
    return "\n".join(lines)


def _kept_label(kept: dict | None) -> str:
    """A kept checkpoint as its table cell: training's step, or fine-tuning's update, and its validation return."""
    if not kept:
        return NOT_RUN
    where = kept["step"] if "step" in kept else f"update {kept['update']}"
    return f"{where} ({kept['validation_return']:.1f})"


def finetune_protocol_lines(env_id: str, tuned: dict, offline: dict[str, dict | None]) -> list[str]:
    """What the fine-tuned rows are, and the fine-tuned spiking DT against issue #14's bar."""
    snn = seed_stats(tuned["evals"]["snn"])
    if snn is None:
        return []
    kept = [k for k in tuned["kept"]["snn"].values() if k]
    how = ""
    if kept:
        from spikingmind.envs import get_env_spec

        cfg = kept[0]["config"]
        sampling = (f"sampling temperature {cfg['temperature']:g}" if get_env_spec(env_id).discrete
                    else f"initial action std {cfg['action_std']:g} of the half range")
        how = (f" ({cfg['episodes']} episodes in updates of {cfg['batch_episodes']}, lr {cfg['lr']:g}, {sampling}; "
               f"the kept update is the best greedy return on {cfg['eval_episodes']} validation seeds, "
               "disjoint from the evaluation seeds)")
    lines = [f"- fine-tuned rows: each offline checkpoint above, improved online with REINFORCE from "
             f"`configs/{env_slug(env_id)}-finetune.toml`{how}, evaluated on the same unseen seeds."]
    goal = GOALS.get(env_id)
    if goal is not None:
        before = offline.get("snn")
        gain = f", {snn['mean'] - before['mean']:+.1f} over offline" if before else ""
        lines.append(f"- issue #14's bar after fine-tuning: **{'met' if snn['mean'] >= goal else 'not met'}** "
                     f"({snn['mean']:.1f}{gain}).")
    return lines


# conditioning_lines' kinds of models: (what the line says, the plot's title and file name tag)
CONDITIONING_KINDS = {"": ("return conditioning", "achieved against requested return", ""),
                      "finetuned": ("return conditioning after fine-tuning",
                                    "achieved against requested return, fine-tuned", "finetuned-"),
                      "condition-config": ("return conditioning of the models trained for it",
                                           "achieved against requested return, the models trained for it",
                                           "condition-config-")}


def conditioning_lines(env_id: str, conditioning: dict | None, readme_dir: Path, figures_dir: Path,
                       folder: Path, kind: str = "") -> list[str]:
    """`spikingmind condition`'s r, slope and verdict per model, and its plot (copied), of the
    recommended models, or of another kind of them (CONDITIONING_KINDS: nothing when it has none)."""
    what, title, tag = CONDITIONING_KINDS[kind]
    if not conditioning:
        return [f"- {what}: *{NOT_RUN}*.", ""] if kind == "" else []
    cells = []
    for model in MODELS:
        m = conditioning["models"].get(model)
        if m is None:
            continue
        r = "undefined" if m["correlation"] is None else f"{m['correlation']:.2f}"
        by_seed = ", ".join("—" if v is None else f"{v:.2f}" for v in m["correlation_by_seed"])
        cells.append(f"{MODEL_LABELS[model]} r {r}, slope {m['slope']:.2f} (per seed r {by_seed}): "
                     f"{'conditions' if m['conditions'] else 'does NOT condition'}")
    verdict = conditioning.get("snn_as_clearly_as_ann")
    data = conditioning["dataset"]
    line = (f"- {what} ({len(conditioning['targets'])} requested returns, {len(conditioning['targets']) - 1} "
            f"over the dataset's {data['min_return']:.1f} .. {data['max_return']:.1f} and one above it; "
            f"{conditioning['episodes']} unseen ep. per seed and target; r and slope of the mean over seeds, "
            f"over the dataset's range): {'; '.join(cells)}")
    if verdict is not None:
        line += f"; the SNN conditions as clearly as the twin: {'**yes**' if verdict else '**no**'}"
    lines = [line + ".", ""]
    figure = publish_figure(folder / "conditioning.png", figures_dir, f"{env_slug(env_id)}-{tag}conditioning.png")
    if figure is not None:
        lines += [f"![{env_id}: {title}]({_rel(figure, readme_dir)})", ""]
    return lines


def has_conditioning_config(found: dict) -> bool:
    """Whether configs/<env>-condition.toml's models have result files here."""
    trained = found["conditioning_config"]
    return bool(trained["conditioning"]) or any(e for by_seed in trained["evals"].values() for e in by_seed.values())


def conditioning_config_section(env_id: str, found: dict, readme_dir: Path, figures_dir: Path) -> str | None:
    """The README part of configs/<env>-condition.toml's models (conditioning_config_stages): their
    returns at the default target and their conditioning sweep; None when they were not run."""
    record = conditioning_config_record(env_id, found)
    if record is None:
        return None
    trained = found["conditioning_config"]
    returns = "; ".join(f"{MODEL_LABELS[m]} {over_seeds_text(record[m])}" for m in MODELS if record[m])
    lines = [f"#### {env_id}: models trained for return conditioning", "",
             f"- `configs/{env_slug(env_id)}-condition.toml` trains a spiking DT and its ANN twin for return "
             f"conditioning, {len(found['seeds'])} training seeds each, on its own data, whose episodes' returns span a range (the "
             f"recommended config's may not, and then it cannot condition; its model and return gain may differ "
             f"too: the config says why). At the default target they return: {returns or NOT_RUN}.", ""]
    lines += conditioning_lines(env_id, trained["conditioning"], readme_dir, figures_dir, trained["folder"],
                                kind="condition-config")
    return "\n".join(lines)


def over_seeds_text(record: dict | None) -> str:
    """A model's returns over training seeds (an `over_seeds` record) in a sentence: mean ± std
    over N seed(s); NOT_RUN for None."""
    if record is None:
        return NOT_RUN
    done = len(record["returns_by_seed"])
    return f"{record['mean_over_seeds']:.1f} ± {record['std_over_seeds']:.1f} over {done} seed{'s' if done != 1 else ''}"


def experts_section(experts: dict | None, envs: list[str]) -> str | None:
    """The demonstrators' own returns (100 fixed seeds) next to RL Zoo's best online agents."""
    if not experts:
        return None
    lines = ["### Experts (the demonstrators) and published agents", "",
             "| env | expert: mean ± std, min .. max (episodes) | the heuristic it replaced | "
             "RL Baselines3 Zoo's best online agent |", "|---|---|---|---|"]

    def cell(entry: dict | None) -> str:
        if not entry:
            return "—"
        return (f"`{entry['policy']}` {entry['mean']:.1f} ± {entry['std']:.1f}, {entry['min']:.1f} .. "
                f"{entry['max']:.1f} ({len(entry['returns'])} ep.)")

    for env_id in envs:
        entry = experts.get(env_id)
        if not entry:
            continue
        zoo = entry.get("zoo")
        zoo_cell = f"{zoo['return']:.1f} ± {zoo['std']:.1f} ({zoo['algo']})" if zoo else "—"
        lines.append(f"| {env_id} | {cell(entry.get('expert'))} | {cell(entry.get('heuristic'))} | {zoo_cell} |")
    lines += ["", "- expert episodes on the fixed seeds `spikingmind.seeds.expert_evaluation_seeds` "
                  "(`python -m spikingmind.experts`, docs/results/experts.json).", ""]
    return "\n".join(lines)


def third_party_line(third_party: dict | None, readme_dir: Path) -> str | None:
    """scripts/third_party_table.py's README summary line."""
    if not third_party or not third_party.get("summary"):
        return None
    return (f"- Third-party NIR readers: {third_party['summary'].rstrip('.')} (rendered by `scripts/third_party_table.py` from "
            f"`{third_party.get('tests', 'tests/test_third_party_readers.py')}`).\n")


def demo_spread_section(spread_dir: Path, readme_dir: Path) -> str | None:
    """scripts/demo_spread.py's spread.json: the demo's SNN trained with 3 seeds."""
    spread = _load(spread_dir / "spread.json")
    if not spread:
        return None
    lines = ["### `make demo-spread`: the demo's spiking DT over training seeds", "",
             "| target return | " + " | ".join(f"seed {seed}: mean ± std, min .. max" for seed in spread["seeds"])
             + " | mean ± std over seeds | criterion | met on every seed |",
             "|---|" + "---|" * (len(spread["seeds"]) + 3)]
    for target in spread["targets"]:
        row = spread["by_target"][str(target)] if str(target) in spread["by_target"] else None
        if row is None:
            continue
        cells = [f"{r['mean']:.1f} ± {r['std']:.1f}, {r['min']:.0f} .. {r['max']:.0f}" if r else NOT_RUN
                 for r in (row["by_seed"].get(str(seed)) for seed in spread["seeds"])]
        over = f"{row['mean_over_seeds']:.1f} ± {row['std_over_seeds']:.1f}" if row.get("mean_over_seeds") is not None \
            else NOT_RUN
        met = {True: "yes", False: "**no**", None: NOT_RUN}[row.get("met_on_every_seed")]
        lines.append(f"| {float(target):g} | {' | '.join(cells)} | {over} | {row['criterion']} | {met} |")
    lines.append("")
    same = spread.get("seed0_identical_to_demo")
    if same is not None:
        lines.append(f"- seed 0 retrained on this machine gives {'bit-identical' if same else 'DIFFERENT'} weights to "
                     f"`make demo`'s checkpoint.")
    trained = [f"{seconds / 60:.1f}" for seconds in (spread.get("train_seconds_by_seed") or {}).values() if seconds]
    took = f"; training took {', '.join(trained)} min per seed" if trained else ""
    lines.append(f"- {spread['episodes']} unseen episodes per seed and target (the demo's evaluation seeds: only the "
                 f"training seed differs){took}; from `{_rel(spread_dir, readme_dir)}/spread.json` "
                 "(`make demo-spread`, `scripts/demo_spread.py`).")
    lines.append("")
    return "\n".join(lines)


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


def neurobench_line(result: dict | None) -> str | None:
    """benchmarks/neurobench_metrics.py's JSON as one line: NeuroBench's own synaptic operations
    beside ours (difference and its reasons), and what it could not measure."""
    if not result:
        return None
    totals = result["comparison"]["synaptic_operations"]["totals"]
    names = {"effective_acs": "Effective_ACs", "effective_macs": "Effective_MACs", "dense_ops": "Dense"}  # NeuroBench's
    cells = []
    for key, total in totals.items():
        if not total.get("ours"):
            continue
        metric = names.get(key, key)
        why = ", ".join(f"{key.replace('_', ' ')} {ops:,.0f}" for key, ops in total.get("explained_by", {}).items()
                        if ops)
        cells.append(f"{metric} {total['neurobench']:,.0f} vs ours {total['ours']:,.0f} "
                     f"({total['difference_pct']:+.2f}%{': ' + why if why else ''})")
    missing = sorted(result.get("not_measured") or {})
    version = result.get("versions", {}).get("neurobench", "")
    return (f"- NeuroBench {version} itself, on {result['protocol']['decisions_measured']} of these closed-loop "
            f"decisions (per decision): {'; '.join(cells)}"
            f"{'; not measured by it: ' + ', '.join(missing) if missing else ''}.")


def portable_line(result: dict | None) -> str | None:
    """benchmarks/portable_readers.py's JSON as one line: each third-party reader of the portable export."""
    if not result:
        return None
    readers = ", ".join(f"{r['reader']} {r['version']} ({r['dtype']}) {r['spike_mismatches']} of "
                        f"{r['spike_values']:,} spikes differ, {r['actions_agreeing']}/{r['decisions']} actions agree"
                        for r in result["readers"])
    return f"- the portable NIR export of this model in third-party readers: {readers}."


def env_table(env_id: str, found: dict, readme_dir: Path, figures_dir: Path, experts: dict | None = None) -> str:
    snn, ann, energy, latency, run = (found[k] for k in ("snn", "ann", "energy", "latency", "run"))
    lines = [f"### {env_id}", ""]
    if not has_results(found):
        return "\n".join(lines + [f"*{NOT_RUN}* (no result files in `{_rel(found['folder'], readme_dir)}/`).", ""])
    lines += [protocol_table(env_id, found, experts), ""]
    lines += conditioning_lines(env_id, found["conditioning"], readme_dir, figures_dir, found["folder"])
    lines += conditioning_lines(env_id, found["finetuned"]["conditioning"], readme_dir, figures_dir,
                                found["folder"] / "finetune", kind="finetuned")
    # spikes, latency and energy: the first training seed's models
    snn_priced = {entry["profile"]: entry["snn_total_pj"] for entry in (energy or {}).get("profiles", [])} \
        or ({energy["snn_profile"]: energy["snn_total_pj"]} if energy else {})
    snn_profiles = list(snn_priced) or list(SNN_PROFILES)
    accounting = (energy or {}).get("accounting", "decision_only").replace("_", "-")
    header = ["model", f"return, training seed {found['seeds'][0]} (unseen seeds)", "spikes / decision", "latency batch 1",
              "latency / ANN (ORT)", *[f"energy / decision, {p}" for p in (*snn_profiles, *ANN_PROFILES)]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    baselines = {b["profile"]: b for b in (energy or {}).get("baselines", [])}
    lat = (latency or {}).get("results", {})
    ort_ms = lat.get("ann-ort", {}).get("batch1", {}).get("median_ms")

    def latency_cells(backend):
        ms = lat.get(backend, {}).get("batch1", {}).get("median_ms")
        if ms is None:
            return [NOT_RUN, NOT_RUN]
        return [f"{ms:.3g} ms ({backend})", f"{ms / ort_ms:.2f}x" if ort_ms else NOT_RUN]

    snn_energy = [format_pj(snn_priced[p]) if p in snn_priced else NOT_RUN for p in snn_profiles] + \
        ["—"] * len(ANN_PROFILES)
    snn_spikes = f"{snn['spikes_per_decision']:.0f} (rate {snn['mean_spike_rate']:.1%})" \
        if snn and snn.get("spikes_per_decision") is not None else NOT_RUN
    ann_energy = ["—"] * len(snn_profiles) + [format_pj(baselines[p]["ann_total_pj"]) if p in baselines else NOT_RUN
                                              for p in ANN_PROFILES]
    snn_backend = (latency or {}).get("goal", {}).get("spiking_backend", "snn-pytorch")  # its faster backend
    lines.append("| " + " | ".join(["SNN (spiking DT)", _returns(snn), snn_spikes, *latency_cells(snn_backend),
                                     *snn_energy]) + " |")
    lines.append("| " + " | ".join(["ANN twin", _returns(ann), "—", *latency_cells("ann-ort"), *ann_energy]) + " |")
    lines.append("")
    if energy:
        lines.append(f"- energy: {accounting} accounting on both sides (what a deployed policy computes per "
                     "decision; docs/SEMANTICS.md), an estimate from counted operations x cited per-op energies.")
    for verdict in (energy or {}).get("verdicts", []):
        lines.append(f"- {verdict['statement']}.")
    if not (energy or {}).get("verdicts"):
        for profile, baseline in baselines.items():
            lines.append(f"- {energy['snn_profile']} vs {profile}: {baseline['verdict']}; "
                         f"break-even: {baseline['break_even_note']}.")
    if latency:
        lines.append(latency_line(latency))
    for text in (neurobench_line(found.get("neurobench")), portable_line(found.get("portable"))):
        if text is not None:
            lines.append(text)
    figure = publish_figure(found["folder"] / "energy.png", figures_dir, f"{env_slug(env_id)}-energy.png")
    extras = []
    if figure is not None:
        extras.append(f"[energy breakdown]({_rel(figure, readme_dir)})")
    if run:
        reused = " (stages left from earlier invocations included)" if any(
            st.get("reused") for st in run.get("stages", [])) else ""
        jobs = f", {run['jobs']} jobs side by side" if run.get("jobs", 1) > 1 else ""
        extras.append(f"produced {run['started']} .. {run['finished']} in {run['seconds'] / 60:.0f} min of stage time"
                      f"{reused} on {run['machine_cpus']} cores{jobs} from `{_config_name(run['config'])}`")
    if extras:
        lines.append(f"- {'; '.join(extras)}.")
    lines.append("")
    lines += streaming_lines(env_id, found)
    return "\n".join(lines)


def over_seeds(stats: dict | None) -> dict | None:
    """summary.json's returns of one model over training seeds (seed_stats); None: not run."""
    if stats is None:
        return None
    return {"mean_over_seeds": stats["mean"], "std_over_seeds": stats["std"], "missing_seeds": stats["missing_seeds"],
            "returns_by_seed": {str(seed): v["mean"] for seed, v in stats["by_seed"].items()}}


def _conditioning_summary(conditioning: dict | None) -> dict | None:
    """summary.json's `conditioning` of a `spikingmind condition` record; None: not run."""
    if not conditioning:
        return None
    from spikingmind.workflows.conditioning import summary as conditioning_summary

    return conditioning_summary(conditioning)


def streaming_record(found: dict) -> dict | None:
    """summary.json's `streaming` entry of one env (issue #18); None when its runs do not exist."""
    streaming = found.get("streaming") or {}
    stats = {m: seed_stats(streaming.get("evals", {}).get(m, {})) for m in MODELS}
    energy, versus, latency = (streaming.get(k) for k in ("energy", "stream_vs_window", "latency"))
    if not any((*stats.values(), energy, versus, latency)):
        return None
    windowed = {m: seed_stats(found["evals"][m]) for m in MODELS}
    record = {"snn": over_seeds(stats["snn"]), "ann": over_seeds(stats["ann"]),
              "windowed_snn": over_seeds(windowed["snn"]), "windowed_ann": over_seeds(windowed["ann"])}
    if energy:
        snn_uj = {entry["profile"]: entry["snn_total_pj"] / 1e6 for entry in energy.get("profiles", [])}
        ann_uj = {b["profile"]: b["ann_total_pj"] / 1e6 for b in energy.get("baselines", [])}
        record["energy"] = {
            "accounting": energy.get("accounting"), "per": "steady-state decision (3 new tokens)",
            "snn_uj": snn_uj, "ann_uj": ann_uj, "spike_rate": energy.get("spike_rate"),
            "ratio_snn_over_int8": {p: e / ann_uj[ANN_PROFILES[-1]] for p, e in snn_uj.items()}
            if ANN_PROFILES[-1] in ann_uj else None,
            "cheaper_than_int8_under_every_profile": next(
                (v["cheaper_under_every_profile"] for v in energy.get("verdicts", [])
                 if v["ann_profile"] == ANN_PROFILES[-1]), None)}
    if versus:
        record["versus_window"] = {key: versus[key] for key in ("window_steps", "window_over_stream")}
        record["versus_window"].update({name: {k: versus[name][k] for k in
                                               ("mean_return", "spikes", "synaptic_ops", "energy_uj")}
                                        for name in ("stream", "window")})
    if latency:
        record["latency_batch1_ms"] = {name: r["batch1"]["median_ms"] for name, r in latency["results"].items()}
        record["latency_goal"] = latency.get("goal")
    lava, reference = streaming.get("lava"), streaming.get("reference")
    if lava:
        record["lava"] = {"episodes": lava["episodes"], "decisions": lava["decisions"], "returns": lava["returns"],
                          "ms_per_decision": lava["ms_per_decision_batch"], "backend": "lava floating_pt, batch 1",
                          "reference_returns": reference["returns"] if reference else None,
                          "same_return_as_reference": (lava["returns"] == reference["returns"]) if reference else None}
    return record


def streaming_lines(env_id: str, found: dict) -> list[str]:
    """The env's streaming runs (issue #18) under its table: returns beside the windowed models',
    the per-decision cost against the same network recomputing a window, energy and latency."""
    record = streaming_record(found)
    if record is None:
        return []
    text = over_seeds_text
    lines = [f"**Streaming** ({env_id}; 3 new tokens per decision from carried state, docs/SEMANTICS.md): SNN "
             f"{text(record['snn'])}, ANN twin (key/value cache) {text(record['ann'])}; the windowed models above: "
             f"SNN {text(record['windowed_snn'])}, ANN {text(record['windowed_ann'])}.", ""]
    versus = record.get("versus_window")
    if versus:
        stream, window, ratio = versus["stream"], versus["window"], versus["window_over_stream"]
        lines.append(f"- per decision, streaming vs the same SNN recomputing a K = {versus['window_steps']} window "
                     f"(decision-only): {stream['spikes']:,.0f} vs {window['spikes']:,.0f} spikes "
                     f"({ratio['spikes']:.1f}x fewer), {stream['synaptic_ops']:,.0f} vs {window['synaptic_ops']:,.0f} "
                     f"synaptic ops ({ratio['synaptic_ops']:.1f}x fewer); returns {stream['mean_return']:.1f} "
                     f"(streaming) and {window['mean_return']:.1f} (windowed copy) on the same seeds.")
    energy = record.get("energy")
    if energy:
        cells = ", ".join(f"{p} {format_pj(e * 1e6)}" for p, e in energy["snn_uj"].items())
        twin = ", ".join(f"{p} {format_pj(e * 1e6)}" for p, e in energy["ann_uj"].items())
        verdict = energy["cheaper_than_int8_under_every_profile"]
        lines.append(f"- energy per steady-state decision, decision-only on both sides: streaming SNN {cells}; "
                     f"streaming ANN twin {twin}; cheaper than the twin's int8 under every Loihi profile: "
                     f"**{'yes' if verdict else 'no'}**.")
    latency = record.get("latency_batch1_ms")
    if latency:
        cells = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(latency.items(), key=lambda item: item[1]))
        goal = record.get("latency_goal") or {}
        lines.append(f"- streaming batch-1 latency per decision: {cells}; snn-event / ann-ort = "
                     f"{goal.get('ratio', float('nan')):.2f}x ({'met' if goal.get('met') else 'not met'}: <= 1).")
    lava = record.get("lava")
    if lava:
        same = {True: "the same return as the reference simulator on that seed",
                False: f"the reference simulator got {lava['reference_returns']}",
                None: "the reference not run"}[lava["same_return_as_reference"]]
        lines.append(f"- Lava (floating point) drives {lava['episodes']} whole episode(s) closed loop, batch 1: "
                     f"{lava['ms_per_decision']:.0f} ms per decision over {lava['decisions']} decisions, return "
                     f"{', '.join(f'{r:g}' for r in lava['returns'])}, {same}.")
    lines.append("")
    return lines


def demo_evals(demo_dir: Path) -> dict[str, dict | None]:
    """`make demo`'s evaluations by name (None: missing), in the order its table lists them."""
    return {name: _load(demo_dir / "eval" / f"{name}.json") for name in (
        "snn", "snn-target100", "snn-event", "ann", "ann-target100", "nir", "onnx", "lava", "nir-40steps")}


def demo_table(demo_dir: Path, readme_dir: Path, figures_dir: Path) -> str:
    """`make demo`'s CartPole-v1 results (runs/demo), if it has been run."""
    evals = demo_evals(demo_dir)
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
        for verdict in energy.get("verdicts", []):
            lines.append(f"- energy estimate: {verdict['statement']}.")
        if not energy.get("verdicts"):
            for baseline in energy.get("baselines", []):
                lines.append(f"- energy estimate, {energy['snn_profile']} vs {baseline['profile']}: "
                             f"{baseline['verdict']}; break-even: {baseline['break_even_note']}.")
    figure = publish_figure(demo_dir / "energy.png", figures_dir, "demo-energy.png")
    if figure is not None:
        lines.append(f"- [energy breakdown]({_rel(figure, readme_dir)}).")
    lava = _load(demo_dir / "export" / "lava" / "agreement.json")
    if lava:
        share = lambda key: NOT_RUN if lava.get(key) is None else f"{lava[key]:.1%}"  # noqa: E731
        lines.append(f"- Lava export check on {lava.get('decisions')} real decisions: float vs reference "
                     f"{share('action_float_vs_reference')} of actions, fixed point vs float "
                     f"{share('action_fixed_vs_float')}.")
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


def _sweep_line(sweep: dict, rows: list[dict]) -> str:
    """The sweep's settings (manifest.json "sweep") in one sentence, its grid read from the points
    the table holds (summary.csv `rows`: a folder may have grown over several invocations)."""
    parts = []
    if sweep.get("seeds") is not None:
        parts.append(f"{sweep['seeds']} seed{'s' if sweep['seeds'] != 1 else ''} per point")
    if sweep.get("eval_episodes") is not None:
        parts.append(f"{sweep['eval_episodes']} unseen evaluation episodes per run")
    if (sweep.get("train") or {}).get("steps") is not None:
        parts.append(f"{sweep['train']['steps']} training steps per run")
    if sweep.get("energy_episodes") is not None:  # a sample: early decisions of a windowed DT see a part-empty window
        cap = sweep.get("energy_max_decisions")
        parts.append("energy counted on " + (f"at most the first {cap} decisions of " if cap else "")
                     + f"{sweep['energy_episodes']} episode{'s' if sweep['energy_episodes'] != 1 else ''} per run")
    snn = [r for r in rows if r["model"] == "snn"]
    values = lambda key, group: sorted({r[key] for r in group if r.get(key) is not None})  # noqa: E731
    axes = [f"{name} ∈ {{{', '.join(f'{v:g}' for v in values(key, snn))}}}"
            for name, key in (("T", "time_steps"), ("K", "context"), ("width", "width"),
                              ("energy weight", "energy_weight")) if values(key, snn)]
    if axes:
        parts.append(f"{len(snn)} SNN point{'s' if len(snn) != 1 else ''} over {', '.join(axes)}")
    ann = [r for r in rows if r["model"] == "ann"]
    if ann:
        listed = lambda key: ", ".join(f"{v:g}" for v in values(key, ann))  # noqa: E731
        parts.append(f"{len(ann)} ANN point{'s' if len(ann) != 1 else ''} (K ∈ {{{listed('context')}}}"
                     + (f", width ∈ {{{listed('width')}}}" if values("width", ann) else "") + ")")
    return ("; ".join(parts) + ".") if parts else ""


def ablation_section(env_id: str, ablate_dir: Path, readme_dir: Path, figures_dir: Path,
                     title: str = "Ablation and energy front", figure_prefix: str = "ablate") -> str | None:
    """`spikingmind ablate`'s summary for the env (every point of its summary.csv: T, K, width and
    energy weight), its energy front (front.json: the cheapest config of each family that reaches
    the target, and their ratio per Loihi profile) and the Pareto plot; None when it has not run.
    `title` heads it; its figures are copied as <figure_prefix>-<env>-<metric>.png."""
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
    lines = [f"### {title}, {env_id}", ""]
    source = (f"From `{_rel(folder, readme_dir)}/` (`spikingmind ablate`); ± and error bars are the std over the "
              "seeds that finished; failed runs have no metrics (—).")
    if run_seconds:
        source += f" The runs took {run_seconds / 60:.0f} min in total, added up (they run side by side, one per worker)."
    lines += [" ".join(filter(None, (_sweep_line(sweep, rows), source))), ""]
    header = ["model", "T", "K", "width", "energy weight", "runs done/failed", "return, mean ± std over seeds",
              "spikes / decision", "latency batch 1 (PyTorch), mean", "energy / decision, mean"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        model = str(row["model"])
        snn = model == "snn"
        lines.append("| " + " | ".join([
            model.upper(),
            f"{int(row['time_steps'])}" if snn else "—",  # the ANN twin has no time steps
            f"{int(row['context'])}",
            f"{int(row['width'])}" if row.get("width") is not None else "—",
            f"{row['energy_weight']:g}" if snn and row.get("energy_weight") is not None else "—",
            _runs_cell(row),
            _mean_std(row, "mean_return", ".1f"),
            _mean_std(row, "spikes_per_decision", ".0f") if snn else "—",
            f"{row['latency_ms_mean']:.3g} ms" if row.get("latency_ms_mean") is not None else "—",
            _energy_cell(row, profiles.get(model, [])),
        ]) + " |")
    lines.append("")
    front = _load(folder / "front.json")
    if front:
        lines += [front_line(front), ""]
    figures = {metric: publish_figure(folder / "plots" / f"{metric}.png", figures_dir,
                                      f"{figure_prefix}-{slug}-{metric}.png") for metric in ABLATION_PLOTS}
    pareto = publish_figure(folder / "plots" / "pareto.png", figures_dir, f"{figure_prefix}-{slug}-pareto.png")
    if pareto is not None:
        lines += [f"![{env_id}: return against energy per decision, SNN and ANN families]"
                  f"({_rel(pareto, readme_dir)})", ""]
    for metric in ABLATION_EMBEDDED:
        if figures[metric] is not None:
            lines += [f"![{env_id}: {ABLATION_PLOTS[metric]} against T and K]({_rel(figures[metric], readme_dir)})", ""]
    linked = [f"[{ABLATION_PLOTS[m]}]({_rel(f, readme_dir)})" for m, f in figures.items()
              if f is not None and m not in ABLATION_EMBEDDED]
    if linked:
        lines += [f"- against T and K: {', '.join(linked)}.", ""]
    return "\n".join(lines)


def front_line(front: dict) -> str:
    """front.json as one README bullet (`sweep_results.front_lines`, which `spikingmind ablate` prints)."""
    from spikingmind.workflows.sweep_results import front_lines

    return (f"- energy front (decision-only accounting; target return {front['target_return']:g}): "
            + "; ".join(front_lines(front)) + ".")


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


def summary_figure(results_dir: Path, records: dict[str, dict]) -> Path | None:
    """Returns (mean ± std over training seeds) and energy per decision of every env that has them,
    SNN next to ANN, drawn from summary.json's records (`summary_record`), so the two never differ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    envs = [e for e, r in records.items() if r.get("snn") or r.get("ann")]
    if not envs:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(envs))
    for offset, model in ((-0.2, "snn"), (0.2, "ann")):
        means = [records[e][model]["mean_over_seeds"] if records[e].get(model) else np.nan for e in envs]
        stds = [records[e][model]["std_over_seeds"] if records[e].get(model) else 0.0 for e in envs]
        left.bar(x + offset, means, 0.4, yerr=stds, capsize=3, label=model.upper())
    left.set_xticks(x, envs, fontsize=8)
    left.set_ylabel("return (mean ± std over training seeds)")
    left.legend(fontsize=8)

    def snn_pj(record: dict) -> float:
        return ((record.get("snn") or {}).get("energy_uj") or {}).get(SNN_PROFILE, np.nan) * 1e6

    def ann_pj(record: dict, profile: str) -> float:
        return ((record.get("energy_vs_twin") or {}).get("ann_energy_uj") or {}).get(profile, np.nan) * 1e6

    columns = [("SNN " + SNN_PROFILE, snn_pj)] + [(f"ANN {p}", partial(ann_pj, profile=p)) for p in ANN_PROFILES]
    width = 0.8 / len(columns)
    drawn = False
    for index, (label, value) in enumerate(columns):
        heights = [value(records[e]) for e in envs]
        drawn = drawn or any(np.isfinite(heights))
        right.bar(x - 0.4 + width * (index + 0.5), heights, width, label=label)
    right.set_xticks(x, envs, fontsize=8)
    if drawn:  # a log axis needs a positive value
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


def summary_record(env_id: str, found: dict, experts: dict | None = None) -> dict:
    """summary.json's entry for one env: what was asked, returns per training seed (SNN, ANN),
    the bar, the expert and RL Zoo references, and the conditioning figures (None: not run).
    Every field of the env's summary is added here, so that summary.json has one writer."""
    from spikingmind.envs import get_env_spec

    stats = {m: seed_stats(found["evals"][m]) for m in MODELS}
    targets = sorted({t for st in stats.values() if st for t in st["target_return"]})
    entry = (experts or {}).get(env_id) or {}
    goal = GOALS.get(env_id)
    record = {
        "target_return": targets[0] if len(targets) == 1 else (targets or get_env_spec(env_id).target_return),
        "training_seeds": found["seeds"],
        "goal": None if goal is None else {
            "return": goal, "met": None if stats["snn"] is None else stats["snn"]["mean"] >= goal,
            "rule": "the spiking DT's mean over training seeds of its mean return on its unseen evaluation seeds"},
        "selection": "checkpoint = best mean return on the validation seeds (spikingmind.seeds.validation_seeds), "
                     "disjoint from the data's and the evaluation seeds",
    }
    for model in MODELS:
        st, kept = stats[model], found["kept"][model]
        record[model] = None if st is None else {
            "config": _config_name((found.get("run") or {}).get("config")), **over_seeds(st),
            "evaluation_by_seed": {str(seed): v for seed, v in st["by_seed"].items()},
            "episodes": st["episodes"], "episode_mean": st["episode_mean"], "episode_std": st["episode_std"],
            "episode_min": st["episode_min"], "episode_max": st["episode_max"],
            "kept_checkpoint_by_seed": {str(seed): k for seed, k in kept.items() if k},
        }
    record.update(energy_fields(found, record))
    record["streaming"] = streaming_record(found)
    record["finetuned"] = finetuned_record(env_id, found)
    record["expert"] = {k: v for k, v in entry["expert"].items() if k not in ("returns", "seeds")} \
        if entry.get("expert") else None
    record["zoo"] = entry.get("zoo")
    record["conditioning"] = _conditioning_summary(found["conditioning"])
    record["conditioning_config"] = conditioning_config_record(env_id, found)
    return record


def conditioning_config_record(env_id: str, found: dict) -> dict | None:
    """summary.json's `conditioning_config`: configs/<env>-condition.toml's models, trained for
    return conditioning (conditioning_config_stages), their returns at the default target per
    training seed and their `conditioning` figures; None when they were not run (then
    `conditioning`, of the recommended models, is the env's only one)."""
    if not has_conditioning_config(found):
        return None
    trained = found["conditioning_config"]
    return {"config": f"configs/{env_slug(env_id)}-condition.toml",
            **{m: over_seeds(seed_stats(trained["evals"][m])) for m in MODELS},
            "conditioning": _conditioning_summary(trained["conditioning"])}


def finetuned_record(env_id: str, found: dict) -> dict | None:
    """summary.json's `finetuned`: the fine-tuned SNN and twin per training seed (None: not run)."""
    tuned = found["finetuned"]
    stats = {m: seed_stats(tuned["evals"][m]) for m in MODELS}
    if not any(stats.values()):
        return None
    configs = [k["config"] for by_seed in tuned["kept"].values() for k in by_seed.values() if k]
    goal = GOALS.get(env_id)
    record = {"config": f"configs/{env_slug(env_id)}-finetune.toml",
              "algorithm": configs[0].get("algo") if configs else None,
              "goal_met": None if goal is None or stats["snn"] is None else stats["snn"]["mean"] >= goal}
    for model, st in stats.items():
        record[model] = None if st is None else {**over_seeds(st), "kept_update_by_seed": {
            str(seed): {k: v for k, v in kept.items() if k != "config"} for seed, kept in tuned["kept"][model].items()
            if kept}}
    fixed = over_seeds(seed_stats(tuned["fixed"]))
    if record["snn"] is not None and fixed is not None:
        record["snn"]["fixed_point_returns_by_seed"] = fixed["returns_by_seed"]
    record["conditioning"] = _conditioning_summary(tuned["conditioning"])
    return record


def _config_name(path: str | None) -> str | None:
    """A recommended config as the repo names it (configs/<env>.toml), wherever the run's checkout was."""
    if path is None or Path(path).parent.name != "configs":
        return path
    return f"configs/{Path(path).name}"


def energy_fields(found: dict, record: dict) -> dict:
    """Issue #13's fields: the recommended SNN's fixed-point returns, spike rate and energy per
    Loihi profile (decision-only, the first training seed's model); the cheapest ANN of the energy
    sweep's front that reaches the target (None without a sweep) and the SNN / int8 ratio per
    Loihi profile; the front's cheapest SNN that reaches the target (`snn_cheapest`, often not the
    recommended config, which is chosen for #14's returns) and its ratio to that ANN; and the
    recommended SNN against the same-size twin (`energy_vs_twin`). Adds the SNN's part into
    record["snn"]."""
    energy, front = found.get("energy"), found.get("front")
    fixed = {str(seed): e["mean_return"] for seed, e in (found.get("fixed") or {}).items() if e}
    snn_uj = {entry["profile"]: entry["snn_total_pj"] / 1e6 for entry in (energy or {}).get("profiles", [])}
    if record.get("snn") is not None:
        record["snn"].update({
            "fixed_point_returns_by_seed": fixed or None,
            "fixed_point_backend": "loihi-emulation" if fixed else None,
            "spike_rate": energy["spike_rate"] if energy else None,
            "energy_uj": snn_uj or None,
            "energy_accounting": energy.get("accounting") if energy else None,
            "energy_measured_on": f"training seed {found['seeds'][0]}" if energy else None,
        })
    cheapest = ((front or {}).get("ann") or {}).get("cheapest_reaching_target")
    int8 = (front or {}).get("int8_profile", ANN_PROFILES[-1])
    fields: dict = {"ann_cheapest": None, "ratio_snn_over_int8": None}
    if cheapest:
        fields["ann_cheapest"] = {
            "config": cheapest["config"], "returns_by_seed": cheapest["returns_by_seed"],
            "mean_return": cheapest["mean_return"], "energy_uj": cheapest["energy_uj"],
            "source": "the energy sweep's front (spikingmind ablate): the cheapest ANN config whose mean return "
                      "over its seeds reaches the target, by int8 energy, decision-only accounting"}
        if snn_uj:
            fields["ratio_snn_over_int8"] = {p: e / cheapest["energy_uj"][int8] for p, e in snn_uj.items()}
    snn_front = ((front or {}).get("snn") or {}).get("cheapest_reaching_target")
    fields["snn_cheapest"] = None if not snn_front else {
        "config": snn_front["config"], "returns_by_seed": snn_front["returns_by_seed"],
        "mean_return": snn_front["mean_return"], "spike_rate": snn_front.get("spike_rate"),
        "energy_uj": snn_front["energy_uj"],
        "ratio_over_cheapest_int8": None if not cheapest else {
            p: e / cheapest["energy_uj"][int8] for p, e in snn_front["energy_uj"].items()},
        "source": "the energy sweep's front: the cheapest SNN config whose mean return over its seeds reaches "
                  "the target, by Loihi energy, decision-only accounting"}
    twin = {b["profile"]: b["ann_total_pj"] / 1e6 for b in (energy or {}).get("baselines", [])}
    fields["energy_vs_twin"] = None if not (snn_uj and twin) else {
        "ann_energy_uj": twin, "accounting": energy.get("accounting"),
        "ratio_snn_over_ann": {f"{p}/{q}": e / a for p, e in snn_uj.items() for q, a in twin.items()},
        "cheaper_under_every_profile": {v["ann_profile"]: v["cheaper_under_every_profile"]
                                        for v in energy.get("verdicts", [])}}
    return fields


def summary_records(found: dict[str, dict], experts: dict | None = None,
                    previous: dict[str, dict] | None = None) -> dict[str, dict]:
    """`summary_record` per env id; an env without result files here keeps its entry in
    `previous` (an earlier summary.json's "envs", `--keep-missing`) where it has one."""
    previous = previous or {}
    records = {}
    for env_id, f in found.items():
        before = previous.get(env_id)
        if before is None:
            records[env_id] = summary_record(env_id, f, experts)
        elif not has_results(f):  # kept, but its models trained for conditioning may have been run here
            records[env_id] = dict(before)
            if has_conditioning_config(f):
                records[env_id]["conditioning_config"] = conditioning_config_record(env_id, f)
        else:  # re-run here: its energy sweep and its models trained for conditioning may not have been
            front = f["front"] if f.get("front") is not None else recorded_front(before)
            records[env_id] = summary_record(env_id, {**f, "front": front}, experts)
            if not has_conditioning_config(f):
                records[env_id]["conditioning_config"] = before.get("conditioning_config")
    return records


def recorded_front(record: dict) -> dict | None:
    """The energy sweep's front as an earlier summary.json entry recorded it (its cheapest ANN and
    SNN that reach the target), in front.json's shape, so that `--keep-missing` prices a re-run
    env's SNN against the front its sweep found instead of dropping it; None if it recorded none."""
    if not (record.get("ann_cheapest") or record.get("snn_cheapest")):
        return None
    return {"ann": {"cheapest_reaching_target": record.get("ann_cheapest")},
            "snn": {"cheapest_reaching_target": record.get("snn_cheapest")}, "int8_profile": ANN_PROFILES[-1]}


def write_summary(path: Path, records: dict[str, dict]) -> Path:
    """docs/results/summary.json: the records (`summary_records`) by env id, strict JSON (no NaN), atomically."""
    from spikingmind.io import atomic_write_text

    record = {"generated_by": "scripts/results.py", "envs": records}
    return atomic_write_text(path, json.dumps(record, indent=2, allow_nan=False) + "\n")


def protocol_text(seeds: list[int], episodes: int = 20) -> str:
    """What is selected on what, said once at the top of the section."""
    from spikingmind.seeds import EVAL_SEED_BASE, VALIDATION_SEED_BASE

    return (f"**Protocol.** Every model is trained with {len(seeds)} training seeds ({', '.join(map(str, seeds))}) on "
            "one dataset per env (collected once, dataset seed 0: episode seeds below "
            f"{EVAL_SEED_BASE:,}). The checkpoint kept is the one with the best mean return on the validation "
            f"seeds (`spikingmind.seeds.validation_seeds`, from {VALIDATION_SEED_BASE:,}; the config's "
            "`eval_episodes` of them, checked every `eval_every` steps); evaluation seeds are never read during "
            f"training or selection. Each kept checkpoint is then evaluated once on {episodes} unseen evaluation seeds of its "
            f"own (`evaluation_seeds({episodes}, training seed)`, from {EVAL_SEED_BASE:,}), disjoint from the data's and the "
            "validation seeds. Tables give the mean ± std over training seeds of each seed's mean return, each "
            "seed's mean, and the spread of all episodes pooled; the std is the population std (as in the ablation). "
            "Energy, spikes and latency are measured on the first training seed's models.")


def has_results(found: dict) -> bool:
    """Whether any of the env's own result files exist (evaluations, energy, latency, conditioning)."""
    return any(e for by_seed in found["evals"].values() for e in by_seed.values()) or any(
        found[k] for k in ("energy", "latency", "conditioning"))


def render(results_dir: Path, envs: list[str], readme_dir: Path, demo_dir: Path = ROOT / "runs" / "demo",
           figures_dir: Path = ROOT / "docs" / "results", ablate_dir: Path = ROOT / "runs" / "ablate",
           finetune_dir: Path = ROOT / "runs" / "results" / "finetune", seeds: tuple[int, ...] = TRAINING_SEEDS,
           experts_path: Path | None = ROOT / "docs" / "results" / "experts.json",
           third_party_path: Path | None = ROOT / "docs" / "results" / "third_party.json",
           demo_spread_dir: Path = ROOT / "runs" / "demo-spread",
           energy_sweep_dir: Path | None = None, previous: str | None = None,
           records: dict[str, dict] | None = None) -> str:
    """The README's results section; copies every figure it shows into `figures_dir`.

    The section is a sequence of parts, each headed by a `PART` marker with its key. A part whose
    result files are not here renders as "not run" (or not at all) unless `previous` (an earlier
    render's section) has it: then that text is kept, and the header names it. `records`
    (summary.json's entries by env id, default: built from the files here) draw the summary figure."""
    found = {env_id: env_results(results_dir, env_id, seeds, ablate_dir) for env_id in envs}
    experts = _load(experts_path) if experts_path else None
    records = records if records is not None else {e: summary_record(e, found[e], experts) for e in envs}
    summary = summary_figure(results_dir, records)
    figure = publish_figure(summary, figures_dir, "summary.png") if summary is not None else None
    counts = sorted({e["episodes"] for f in found.values() for by_seed in f["evals"].values()
                     for e in by_seed.values() if e})
    third_party = third_party_line(_load(third_party_path) if third_party_path else None, readme_dir)
    # (key, text, whether it comes from result files here); text None: no such part
    parts: list[tuple[str, str | None, bool]] = [
        ("demo", demo_table(demo_dir, readme_dir, figures_dir), any(demo_evals(demo_dir).values())),
        ("demo-spread", demo_spread_section(demo_spread_dir, readme_dir), True),
        ("third-party", third_party, True),
        ("experts", experts_section(experts, envs), True),
        ("protocol", protocol_text(list(seeds), counts[0] if len(counts) == 1 else 20) + "\n", True),
        ("summary-figure", None if figure is None else
         f"![returns and energy per environment]({_rel(figure, readme_dir)})\n", True),
    ]
    for env_id in envs:
        parts += [(f"env {env_id}", env_table(env_id, found[env_id], readme_dir, figures_dir, experts),
                   has_results(found[env_id])),
                  (f"condition-config {env_id}", conditioning_config_section(env_id, found[env_id], readme_dir,
                                                                            figures_dir),
                   has_conditioning_config(found[env_id]))]
    energy_sweep = partial(ablation_section, title="Energy-weight sweep at the recommended model",
                           figure_prefix="energy-sweep")
    for key, section, folder in (("ablation", ablation_section, ablate_dir), ("energy-sweep", energy_sweep,
                                 energy_sweep_dir), ("finetune", finetune_section, finetune_dir)):
        if folder is not None:
            parts += [(f"{key} {env_id}", section(env_id, folder, readme_dir, figures_dir), True) for env_id in envs]
    kept_texts = parts_of(previous) if previous else {}
    body, kept = [], []
    for key, text, here in parts:
        if not (here and text is not None) and kept_texts.get(key, text) != text:
            text = kept_texts[key]
            kept.append(key)
        if text is not None:
            body += [PART.format(key), text]
    now = dt.datetime.now().isoformat(timespec="minutes")
    header = (
        f"*Generated by `make results` (`python scripts/results.py`) on {now} from the files in "
        f"`{_rel(results_dir, readme_dir)}/`; `make results RUN=1` produces them (`python scripts/results.py --run`). "
        "Returns on unseen evaluation seeds (how many: in brackets; `--run` uses 20); latency = median of batch-1 `act` calls "
        "(`benchmarks/latency.py`, 1 thread; the SNN's faster backend), ratio to the ANN twin in ONNX Runtime; energy is an estimate "
        "(counted operations x cited per-op energies, `spikingmind energy-report`). Figures are copies in "
        f"`{_rel(figures_dir, readme_dir)}/`. Do not edit by hand.*")
    if kept:
        header += ("\n\n*Kept from the previous render (`--keep-missing`: their result files are not here): "
                   + ", ".join(f"`{key}`" for key in kept) + ".*")
    return "\n".join([START, header, "", *body, END])


def parts_of(section: str) -> dict[str, str]:
    """A rendered results section's parts by key (`render`); a section without PART markers has none."""
    parts: dict[str, list[str]] = {}
    key = None
    for line in section.split("\n"):
        match = PART_PATTERN.fullmatch(line)
        if match:
            key = match.group(1)
            parts[key] = []
        elif line == END:
            key = None
        elif key is not None:
            parts[key].append(line)
    return {key: "\n".join(lines) for key, lines in parts.items()}


def readme_section(readme: Path) -> str:
    """The README's results section, START to END (both included)."""
    text = readme.read_text()
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise SystemExit(f"{readme}: missing the {START} ... {END} markers in its Results section")
    return START + text.split(START, 1)[1].split(END, 1)[0] + END


def rewrite_readme(readme: Path, section: str) -> None:
    from spikingmind.io import atomic_write_text

    text, old = readme.read_text(), readme_section(readme)
    atomic_write_text(readme, text.replace(old, section, 1))


def previous_records(path: Path) -> dict[str, dict]:
    """The env entries of an earlier summary.json (`--keep-missing`); none if there is no file.
    An unreadable one is refused rather than dropped, since its entries would be lost."""
    from spikingmind.errors import OutputError

    if not path.exists():
        return {}
    record = _load(path)
    if not isinstance(record, dict) or not isinstance(record.get("envs"), dict):
        raise OutputError(f"{path}: field 'envs': not a summary.json (unreadable JSON or no 'envs' object); "
                          "--keep-missing would lose its entries, so nothing was written")
    return record["envs"]


def main(argv=None) -> None:
    args = parse_args(argv)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    if args.run:
        for env_id in envs:
            run_env(env_id, args)
    if not args.no_readme:  # every env's results, not only those just produced
        summary_path = args.summary or args.figures_dir / "summary.json"
        found = {env_id: env_results(args.results_dir, env_id, args.seeds, args.ablate_dir) for env_id in ENVS}
        previous = readme_section(args.readme) if args.keep_missing else None
        records = summary_records(found, _load(args.experts),
                                  previous_records(summary_path) if args.keep_missing else None)
        rewrite_readme(args.readme, render(args.results_dir, list(ENVS), args.readme.parent, demo_dir=args.demo_dir,
                                           figures_dir=args.figures_dir, ablate_dir=args.ablate_dir,
                                           finetune_dir=args.finetune_dir, seeds=args.seeds,
                                           experts_path=args.experts, third_party_path=args.third_party,
                                           demo_spread_dir=args.demo_spread_dir,
                                           energy_sweep_dir=args.energy_sweep_dir, previous=previous,
                                           records=records))
        print(f"[results] rewrote the results section of {args.readme}")
        print(f"[results] wrote {write_summary(summary_path, records)}")


if __name__ == "__main__":
    from spikingmind.errors import exit_on_error

    exit_on_error(main)
