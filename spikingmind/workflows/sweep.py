"""Ablation sweeps over time steps T, context K, width and the energy weight, SNN and ANN family:
a manifest of runs, executed locally or on Ray, and the return/energy front they draw.

A sweep lives in one folder:
    manifest.json       the sweep settings and one entry per run (config x seed): run id, status
                        (pending / running / done / failed + error line), result metrics;
                        rewritten atomically by the driver after every state change
    runs/<run id>/      train() run folder (resumable) + eval.json, model.nir / ann.onnx,
                        energy.json and result.json of that run
    runs.csv            one row per run (failed runs keep empty metric cells, never zeros)
    summary.csv         one row per config (model, T, K, width, energy weight): mean and std
                        over the seeds that finished
    plots/*.png         return, spikes per decision, latency and energy against T and against K,
                        and pareto.png: return against energy per decision, SNN (every Loihi
                        profile) and the ANN family (fp32 and int8), the cheapest config of each
                        family that reaches the target return marked
    front.json          those cheapest configs, their returns by seed and energies per profile
                        (tables, plots and the front: `sweep_results`)

Energy is counted as deployed (decision-only accounting on both sides: the SNN's decision
cone, the ANN's --decision-only graph) and over the whole window, under every SNN and ANN
profile (`energy_pj_<profile>` and `energy_full_pj_<profile>` in the tables).

A run id is a hash of everything that determines its result (the full TrainConfig, seed
included, and the evaluation settings), so re-running a sweep skips runs that are done,
resumes interrupted ones (train() is resumable) and retries failed ones. Each run is one
call of `execute_run`, a plain function of JSON-able arguments: the local executor runs it
in a process pool, the Ray executor as a `ray.remote` task, with no other difference.

Why one file over 500 lines: the manifest, its executors (local, Ray) and the per-run
steps are one resumable state machine; tables, plots and the front are in sweep_results.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spikingmind.errors import ConfigError
from spikingmind.io import atomic_write_json
from spikingmind.envs import get_env_spec
from spikingmind.workflows.sweep_results import aggregate, front, plot_front, plot_sweep, write_tables

MANIFEST_FORMAT = 1
STATUSES = ("pending", "running", "done", "failed")
EXECUTORS = ("local", "ray")
GRIDS = ("axes", "full")
#: Every cited parameterisation of Loihi: the front's verdict must hold under all of them.
LOIHI_PROFILES = ("loihi", "loihi-sanafe", "loihi-kerasspiking")

@dataclass(frozen=True)
class SweepConfig:
    """Every knob of a sweep; saved in the manifest. Train settings come from `train` (a
    TrainConfig dict, e.g. read from configs/<env>.toml) with T, K and seed set per run."""

    env_id: str = "CartPole-v1"
    time_steps: tuple[int, ...] = (1, 2, 4, 8)
    context: tuple[int, ...] = (1, 5, 10, 20)
    widths: tuple[int, ...] = ()  # SNN widths; empty: the train config's model.width only
    energy_weights: tuple[float, ...] = ()  # SNN train.energy_weight values; empty: the config's only
    seeds: int = 3
    grid: str = "axes"  # axes: vary each SNN axis at the others' defaults; full: every combination
    default_time_steps: int | None = None  # None: the train config's model.time_steps
    default_context: int | None = None  # None: the train config's model.context_length
    ann: bool = True  # also train the ANN family: every width of ann_widths at every K of ann_context
    ann_widths: tuple[int, ...] = ()  # empty: the SNN's widths
    ann_context: tuple[int, ...] = ()  # empty: the SNN runs' K values
    target_return: float | None = None  # the return the front's cheapest configs must reach; None: the env's
    train: dict = field(default_factory=dict)  # TrainConfig values shared by every run
    dataset_episodes: int = 100
    dataset_mix: dict | None = None  # None: the env's default mix
    dataset_seed: int = 0
    eval_episodes: int = 20  # unseen evaluation seeds per run
    eval_seed: int = 0
    energy_episodes: int = 1  # closed-loop episodes whose decisions the energy counts use
    energy_max_decisions: int = 128
    latency_calls: int = 50  # batch-1 calls timed per run (median reported)
    snn_profiles: tuple[str, ...] = LOIHI_PROFILES
    ann_profiles: tuple[str, ...] = ("cmos45nm-fp32", "cmos45nm-int8")

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_weights", tuple(float(w) for w in self.energy_weights))
        if any(not w >= 0 for w in self.energy_weights):
            raise ConfigError(f"--energy-weights: values must be >= 0, got {list(self.energy_weights)}")
        if any(w < 1 for w in (*self.widths, *self.ann_widths, *self.ann_context)):
            raise ConfigError("--widths, --ann-widths and --ann-context take values >= 1")
        if self.grid not in GRIDS:
            raise ConfigError(f"--grid must be one of {', '.join(GRIDS)}, not {self.grid!r}")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if not self.time_steps or not self.context:
            raise ConfigError("--time-steps and --context need at least one value each")
        for name in ("dataset_episodes", "eval_episodes", "energy_episodes", "energy_max_decisions", "latency_calls"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sweep.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def defaults(self) -> tuple[int, int]:
        """(T, K) of the axes' crossing point."""
        model = self.train.get("model", {})
        t = self.default_time_steps or model.get("time_steps") or 4
        k = self.default_context or model.get("context_length") or 20
        return int(t), int(k)

    def default_width_and_weight(self) -> tuple[int, float]:
        """(width, energy weight) of the crossing point: the first listed, else the config's."""
        width = self.widths[0] if self.widths else int(self.train.get("model", {}).get("width", 64))
        weight = self.energy_weights[0] if self.energy_weights else float(self.train.get("energy_weight", 0.0))
        return width, weight

    def points(self) -> list[tuple[int, int, int, float]]:
        """(T, K, width, energy weight) of the spiking runs, in a stable order."""
        w0, e0 = self.default_width_and_weight()
        widths, weights = self.widths or (w0,), self.energy_weights or (e0,)
        if self.grid == "full":
            return [(t, k, w, e) for t in self.time_steps for k in self.context for w in widths for e in weights]
        t0, k0 = self.defaults()
        points = ([(t, k0, w0, e0) for t in self.time_steps] + [(t0, k, w0, e0) for k in self.context]
                  + [(t0, k0, w, e0) for w in widths] + [(t0, k0, w0, e) for e in weights])
        return list(dict.fromkeys(points))

    def ann_points(self) -> list[tuple[int, int]]:
        """(K, width) of the ANN family's runs."""
        ks = self.ann_context or tuple(dict.fromkeys(k for _, k, _, _ in self.points()))
        widths = self.ann_widths or self.widths or (self.default_width_and_weight()[0],)
        return [(k, w) for k in ks for w in widths]


def _parse_list(text: str, option: str, parse, what: str, rule: str, valid, example: str) -> tuple:
    """Comma-separated values, each `parse`d and `valid`, duplicates dropped in order; ConfigError
    naming the option otherwise."""
    values = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            value = parse(part)
        except ValueError:
            raise ConfigError(f"{option}: {part!r} is not {what} (e.g. {option} {example})") from None
        if not valid(value):
            raise ConfigError(f"{option}: values must be {rule}, got {part}")
        values.append(value)
    if not values:
        raise ConfigError(f"{option}: no values given (e.g. {option} {example})")
    return tuple(dict.fromkeys(values))


def parse_float_list(text: str, option: str) -> tuple[float, ...]:
    """'0,0.5,2' -> (0.0, 0.5, 2.0): finite values >= 0."""
    return _parse_list(text, option, float, "a number", "finite and >= 0", lambda v: np.isfinite(v) and v >= 0,
                       "0,0.5,2")


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """'1,2,4,8' -> (1, 2, 4, 8): integers >= 1."""
    return _parse_list(text, option, int, "an integer", ">= 1", lambda v: v >= 1, "1,2,4,8")


# ---------------------------------------------------------------------------- the manifest


def run_id(train_config: dict, evaluation: dict) -> str:
    """Hash of everything that determines a run's result (config + seed + evaluation settings)."""
    canonical = json.dumps({"train": train_config, "evaluation": evaluation}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def plan_runs(cfg: SweepConfig, dataset_id: str) -> list[dict]:
    """Manifest entries (status pending) for every (model, T, K, seed) of the sweep."""
    from spikingmind.model import ModelConfig

    base = json.loads(json.dumps(cfg.train))
    base_model = {**ModelConfig().to_dict(), **base.pop("model", {})}
    t0, _ = cfg.defaults()
    models = [("snn", t, k, w, e) for t, k, w, e in cfg.points()]
    if cfg.ann:  # the ANN has no T and no spikes: recorded at the default T, energy weight 0
        models += [("ann", t0, k, w, 0.0) for k, w in cfg.ann_points()]
    evaluation = {"episodes": cfg.eval_episodes, "seed": cfg.eval_seed, "energy_episodes": cfg.energy_episodes,
                  "energy_max_decisions": cfg.energy_max_decisions, "snn_profiles": list(cfg.snn_profiles),
                  "ann_profiles": list(cfg.ann_profiles), "latency_calls": cfg.latency_calls}
    runs = []
    for kind, t, k, w, e in models:
        for seed in range(cfg.seeds):
            model = {**base_model, "kind": kind, "time_steps": t, "context_length": k, "width": w}
            train_config = {**base, "env_id": cfg.env_id, "dataset": dataset_id, "seed": seed, "model": model,
                            "energy_weight": e}
            runs.append({"run_id": run_id(train_config, evaluation), "model": kind, "time_steps": t, "context": k,
                         "width": w, "energy_weight": e, "seed": seed, "status": "pending", "error": None,
                         "train": train_config, "evaluation": evaluation, "result": None})
    return runs


def check_runs(cfg: SweepConfig) -> None:
    """Every run's TrainConfig (types, ranges, memory budget at its T and K) and every energy
    profile, checked before a dataset is collected or a run started (what `spikingmind ablate`
    does first): a bad value fails the sweep at once with one line, not each of its runs after
    the data were collected. `run_sweep` itself records such a run as failed and goes on."""
    from spikingmind.energy.profiles import load_profile
    from spikingmind.envs import get_env_spec
    from spikingmind.train import TrainConfig

    get_env_spec(cfg.env_id)
    for entry in plan_runs(cfg, "the-sweep-dataset-v0"):
        TrainConfig.from_dict(entry["train"], source=f"sweep run {entry['model']} T={entry['time_steps']} "
                                                     f"K={entry['context']} seed {entry['seed']}")
    for name in (*cfg.snn_profiles, *cfg.ann_profiles):
        load_profile(name)


class Manifest:
    """The sweep's manifest.json: settings + runs by id, written atomically on every update."""

    def __init__(self, path: Path, sweep: dict, runs: dict[str, dict]):
        self.path, self.sweep, self.runs = path, sweep, runs

    @classmethod
    def open(cls, sweep_dir: Path, sweep: dict, planned: list[dict]) -> "Manifest":
        """Load the folder's manifest (or start one) and add the planned runs it lacks."""
        path = sweep_dir / "manifest.json"
        runs: dict[str, dict] = {}
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                runs = {entry["run_id"]: entry for entry in saved["runs"]}
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ConfigError(f"{path}: corrupt sweep manifest ({error}); move it away to start over") from None
            if saved.get("sweep", {}).get("env_id") not in (None, sweep["env_id"]):
                raise ConfigError(f"{path}: this folder holds a sweep on {saved['sweep']['env_id']}, "
                                  f"not {sweep['env_id']}; use another --out")
        for entry in planned:
            runs.setdefault(entry["run_id"], entry)
        manifest = cls(path, sweep, runs)
        manifest.save()
        return manifest

    def save(self) -> None:
        atomic_write_json(self.path, {"format": MANIFEST_FORMAT, "sweep": self.sweep, "runs": list(self.runs.values())})

    def update(self, rid: str, **changes: Any) -> None:
        self.runs[rid].update(changes)
        self.save()


# ---------------------------------------------------------------------------- one run


def _median_latency_ms(act: Callable[[np.ndarray], Any], windows: np.ndarray, calls: int) -> float:
    """Median wall time of `act` on single windows (batch 1), after a few untimed calls."""
    for index in range(min(5, calls)):
        act(windows[index % len(windows)][None])
    samples = []
    for index in range(calls):
        start = time.perf_counter()
        act(windows[index % len(windows)][None])
        samples.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(samples))


def _snn_energy(run_dir: Path, checkpoint: Path, evaluation: dict) -> dict[str, float]:
    """SNN energy per decision under each SNN profile, as `spikingmind energy-report` counts it
    (spikes recorded by the reference simulator on closed-loop decisions): decision-only
    (`energy_pj_<profile>`) and over the whole window (`energy_full_pj_<profile>`)."""
    from spikingmind.export.nir import export as export_nir
    from spikingmind.workflows.energy_report import estimate_energy

    graph_path = export_nir(checkpoint, run_dir / "model.nir", force=True)
    report = estimate_energy(graph_path, list(evaluation["snn_profiles"]), (), (), evaluation["energy_episodes"],
                             evaluation["seed"], evaluation["energy_max_decisions"]).to_dict()
    atomic_write_json(run_dir / "energy.json", report)
    full = report["other_accountings"]["full_window"]
    energy = {f"energy_pj_{p['profile']}": p["snn_total_pj"] for p in report["profiles"]}
    energy.update({f"energy_full_pj_{p['profile']}": p["snn_total_pj"] for p in full["profiles"]})
    energy["spike_rate_energy_decisions"] = report["spike_rate"]  # the decision cone's neurons
    return energy


def _ann_energy(run_dir: Path, checkpoint: Path, evaluation: dict) -> tuple[dict[str, float], Path]:
    """ANN energy per decision (batch 1) under each ANN profile, counted from its ONNX graphs:
    the --decision-only one (`energy_pj_<profile>`) and the full window (`energy_full_pj_<profile>`)."""
    from spikingmind.energy.profiles import load_profile
    from spikingmind.energy.report import price_ann
    from spikingmind.export.onnx import export as export_onnx
    from spikingmind.workflows.energy_report import baseline_counts

    onnx_path = export_onnx(checkpoint, run_dir / "ann.onnx", force=True)
    counts = baseline_counts([checkpoint])
    energy = {}
    for name in evaluation["ann_profiles"]:
        profile = load_profile(name)
        energy[f"energy_pj_{name}"] = sum(line.total_pj for line in price_ann(counts["decision_only"], profile))
        energy[f"energy_full_pj_{name}"] = sum(line.total_pj for line in price_ann(counts["full_window"], profile))
    atomic_write_json(run_dir / "energy.json", {"kind": "estimate", **energy, "parameters": counts["full_window"].parameters,
                                                "counts": {k: c.to_dict() for k, c in counts.items()}})
    return energy, onnx_path


def execute_run(entry: dict, sweep_dir: str, datasets_root: str | None = None) -> dict:
    """Train, evaluate, time and energy-count one run; never raises.

    Returns {"run_id", "status": "done", "result": metrics} or {"run_id", "status": "failed",
    "error": one line}. Also writes the outcome to runs/<run id>/result.json.
    """
    import torch

    torch.set_num_threads(1)  # one core per run: the pool or Ray provides the parallelism
    if datasets_root is not None:
        os.environ["MINARI_DATASETS_PATH"] = datasets_root
    rid = entry["run_id"]
    run_dir = Path(sweep_dir) / "runs" / rid
    started = time.perf_counter()
    try:
        result = _run(entry, run_dir)
        result["wall_seconds"] = time.perf_counter() - started
        outcome = {"run_id": rid, "status": "done", "error": None, "result": result}
    except BaseException as error:  # a failed run is recorded, the sweep goes on
        if isinstance(error, KeyboardInterrupt):
            raise
        line = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
        outcome = {"run_id": rid, "status": "failed", "error": line, "result": None,
                   "traceback": "".join(traceback.format_exception(error))[-4000:]}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "result.json", outcome)
    return outcome


def _run(entry: dict, run_dir: Path) -> dict:
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.export.onnx import OnnxPolicy
    from spikingmind.policy import TorchPolicy
    from spikingmind.train import TrainConfig, train
    from spikingmind.verification import sample_windows
    from spikingmind.workflows.evaluate import evaluate

    evaluation = entry["evaluation"]
    cfg = TrainConfig.from_dict(entry["train"], source=f"run {entry['run_id']}")
    checkpoint, metrics = train(run_dir / "train", cfg)
    scores = evaluate(checkpoint, episodes=evaluation["episodes"], seed=evaluation["seed"])
    atomic_write_json(run_dir / "eval.json", scores)
    result: dict[str, Any] = {
        "mean_return": scores["mean_return"], "std_return": scores["std_return"], "returns": scores["returns"],
        "ms_per_decision_batch": scores["ms_per_decision_batch"], "best_val_return": metrics.get("best_val_return"),
        "train_seconds": metrics.get("train_seconds"), "checkpoint": str(checkpoint),
    }
    ckpt = load_checkpoint(checkpoint)
    windows = sample_windows(ckpt.layout, ckpt.norm, ckpt.spec, 64, seed=evaluation["seed"])
    result["latency_ms"] = _median_latency_ms(TorchPolicy(ckpt).act, windows, evaluation["latency_calls"])
    if ckpt.config.kind == "snn":
        result["spikes_per_decision"] = scores.get("spikes_per_decision")
        result["mean_spike_rate"] = scores.get("mean_spike_rate")
        result.update(_snn_energy(run_dir, checkpoint, evaluation))
    else:
        energy, onnx_path = _ann_energy(run_dir, checkpoint, evaluation)
        result.update(energy)
        result["latency_ort_ms"] = _median_latency_ms(OnnxPolicy(onnx_path).act, windows, evaluation["latency_calls"])
    return result


# ---------------------------------------------------------------------------- executors


def _run_local(pending: list[dict], sweep_dir: Path, datasets_root: str, workers: int,
               on_outcome: Callable[[dict], None], on_start: Callable[[dict], None]) -> None:
    """Runs in a spawn-context process pool (fork after torch started threads can deadlock)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {}
        for entry in pending:
            on_start(entry)
            futures[pool.submit(execute_run, entry, str(sweep_dir), datasets_root)] = entry
        for future in as_completed(futures):
            entry = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker process itself died (OOM kill, segfault)
                outcome = {"run_id": entry["run_id"], "status": "failed", "result": None,
                           "error": f"worker process failed: {type(error).__name__}: {error}".splitlines()[0]}
            on_outcome(outcome)


def _run_ray(pending: list[dict], sweep_dir: Path, datasets_root: str, address: str | None,
             on_outcome: Callable[[dict], None], on_start: Callable[[dict], None]) -> None:
    """The same `execute_run` as Ray tasks (one CPU each) on a running cluster or a local instance.

    On a cluster, every node needs spikingmind installed and `sweep_dir` / the datasets folder
    on a shared filesystem; results also come back by value into the manifest.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:  # address None starts a local instance; "auto" or "ray://host:port" joins a cluster
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        refs = {}
        for entry in pending:
            on_start(entry)
            refs[task.remote(entry, str(sweep_dir), datasets_root)] = entry
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            entry = refs[done[0]]
            try:
                outcome = ray.get(done[0])
            except Exception as error:  # the task's worker died
                outcome = {"run_id": entry["run_id"], "status": "failed", "result": None,
                           "error": f"ray task failed: {type(error).__name__}: {error}".splitlines()[0]}
            on_outcome(outcome)
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------- the sweep


def prepare_dataset(cfg: SweepConfig, progress=None) -> str:
    """Collect the sweep's dataset once (shared by every run), or reuse an identical one."""
    from spikingmind.data import collect, default_dataset_id, existing_dataset_matches

    mix = cfg.dataset_mix or get_env_spec(cfg.env_id).dataset_mix()
    dataset_id = default_dataset_id(cfg.env_id, mix, cfg.dataset_episodes, cfg.dataset_seed)
    if not existing_dataset_matches(dataset_id, None, cfg.env_id, mix, cfg.dataset_episodes, cfg.dataset_seed):
        collect(cfg.env_id, cfg.dataset_episodes, mix, seed=cfg.dataset_seed, dataset_id=dataset_id, progress=progress)
    return dataset_id


@dataclass
class SweepSummary:
    """What one call of `run_sweep` did."""

    planned: int
    skipped: int  # already done before this call
    done: int
    failed: int
    runs_csv: Path
    summary_csv: Path
    plots: list[Path]
    seconds: float
    tabled: int = 0  # runs in the tables and the front (the planned ones, or the folder's comparable ones)
    left_out: int = 0  # whole_folder: runs of the folder trained or evaluated with other settings
    outside_grid: int = 0  # not whole_folder: runs of the folder trained and evaluated alike, of other grids


def _settings_apart_from_the_grid(entry: dict) -> str:
    """A run's training and evaluation settings without what a sweep varies (model kind, T, K,
    width, energy weight, seed): two runs with the same string belong in one table."""
    train = json.loads(json.dumps(entry["train"]))
    for key in ("seed", "energy_weight"):
        train.pop(key, None)
    for key in ("kind", "time_steps", "context_length", "width"):
        train.get("model", {}).pop(key, None)
    return json.dumps({"train": train, "evaluation": entry["evaluation"]}, sort_keys=True)


def tabled_runs(manifest_runs: list[dict], planned: list[dict], whole_folder: bool) -> tuple[list[dict], int]:
    """The runs the tables and the front cover, and how many of the folder's were left out: the
    planned ones, or (`whole_folder`) every run of the folder whose settings apart from the grid
    equal the planned runs' (grids of earlier invocations added together)."""
    if not whole_folder:
        return planned, 0
    wanted = {_settings_apart_from_the_grid(entry) for entry in planned}
    kept = [entry for entry in manifest_runs if _settings_apart_from_the_grid(entry) in wanted]
    return kept, len(manifest_runs) - len(kept)


def comparable_runs_outside(manifest_runs: list[dict], planned: list[dict]) -> int:
    """How many runs of the folder, trained and evaluated like the planned ones, are not among
    them: what `whole_folder` would add to the tables and the front."""
    planned_ids = {entry["run_id"] for entry in planned}
    kept, _ = tabled_runs(manifest_runs, planned, whole_folder=True)
    return sum(entry["run_id"] not in planned_ids for entry in kept)


def run_sweep(sweep_dir: str | Path, cfg: SweepConfig, executor: str = "local", workers: int = 2,
              address: str | None = None, retry_failed: bool = True,
              on_event: Callable[[str, dict], None] | None = None, whole_folder: bool = False) -> SweepSummary:
    """Run (or resume) the sweep in `sweep_dir`, then write runs.csv, summary.csv, plots and front.json.

    Finished runs are skipped; failed ones are retried unless `retry_failed` is False;
    `on_event(kind, entry)` sees "skip", "start" and "done"/"failed" events. The tables and the
    front cover the planned runs, or with `whole_folder` every run of the folder trained and
    evaluated like them (`tabled_runs`): a front grown over several invocations.
    """
    from spikingmind.data import datasets_root

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    started = time.perf_counter()
    sweep_dir = Path(sweep_dir).resolve()
    dataset_id = prepare_dataset(cfg)
    planned = plan_runs(cfg, dataset_id)
    manifest = Manifest.open(sweep_dir, cfg.to_dict(), planned)
    notify = on_event or (lambda kind, entry: None)
    pending, skipped = [], 0
    for entry in planned:
        saved = manifest.runs[entry["run_id"]]
        finished = _finished_outcome(sweep_dir, entry["run_id"])
        if saved["status"] != "done" and finished is not None:  # done, but the driver died before recording it
            manifest.update(entry["run_id"], status="done", error=None, result=finished["result"])
        if manifest.runs[entry["run_id"]]["status"] == "done" or (saved["status"] == "failed" and not retry_failed):
            skipped += 1
            notify("skip", manifest.runs[entry["run_id"]])
        else:
            pending.append(manifest.runs[entry["run_id"]])

    def on_start(entry: dict) -> None:
        manifest.update(entry["run_id"], status="running", error=None)
        notify("start", entry)

    def on_outcome(outcome: dict) -> None:
        manifest.update(outcome["run_id"], status=outcome["status"], error=outcome["error"], result=outcome["result"])
        notify(outcome["status"], manifest.runs[outcome["run_id"]])

    if pending:
        root = str(datasets_root())
        if executor == "ray":
            _run_ray(pending, sweep_dir, root, address, on_outcome, on_start)
        else:
            _run_local(pending, sweep_dir, root, workers, on_outcome, on_start)
    ran = [manifest.runs[entry["run_id"]] for entry in planned]
    entries, left_out = tabled_runs(list(manifest.runs.values()), ran, whole_folder)
    outside_grid = 0 if whole_folder else comparable_runs_outside(list(manifest.runs.values()), ran)
    runs_csv, summary_csv = write_tables(sweep_dir, entries)
    summary = aggregate(entries)
    plots = plot_sweep(sweep_dir / "plots", summary, cfg)
    target = cfg.target_return if cfg.target_return is not None else get_env_spec(cfg.env_id).target_return
    chosen = front(summary, cfg.snn_profiles, cfg.ann_profiles, target, cfg.seeds)
    atomic_write_json(sweep_dir / "front.json", {"env_id": cfg.env_id, **chosen})
    plots.append(plot_front(sweep_dir / "plots" / "pareto.png", summary, cfg.snn_profiles, cfg.ann_profiles, target,
                            chosen, f"{cfg.env_id}: return against energy per decision ({cfg.seeds} seed(s) a config)"))
    return SweepSummary(planned=len(planned), skipped=skipped,
                        done=sum(e["status"] == "done" for e in ran),
                        failed=sum(e["status"] == "failed" for e in ran),
                        runs_csv=runs_csv, summary_csv=summary_csv, plots=plots,
                        tabled=len(entries), left_out=left_out, outside_grid=outside_grid,
                        seconds=time.perf_counter() - started)


def _finished_outcome(sweep_dir: Path, rid: str) -> dict | None:
    path = sweep_dir / "runs" / rid / "result.json"
    try:
        outcome = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return outcome if outcome.get("status") == "done" and outcome.get("run_id") == rid else None
