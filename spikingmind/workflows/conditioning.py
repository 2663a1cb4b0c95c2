"""Return conditioning made visible: ask trained policies for a grid of target returns and
measure the returns they achieve (what Decision Transformer users look for first).

    grid      `targets` values evenly from the dataset's lowest to its highest episode return
              (the dataset the checkpoints name in their metadata, read from its
              spikingmind.json), plus one ABOVE_BEST of that range above the best: can the
              policy be asked for more than it was shown?
    sweep     every checkpoint (SNN and ANN twin, any number of training seeds) at every target,
              on `episodes` evaluation seeds: `evaluation_seeds(episodes, <its training seed>)`,
              the seeds `evaluate --seed <training seed>` plays, disjoint from data and validation
    measure   per model, over the dataset's range only (the target above the best is shown, not
              scored), on the mean over training seeds of the achieved mean return at each
              target: the Pearson correlation r of achieved against requested and the
              least-squares slope (1: the achieved return moves one for one with the request)
    verdict   `ConditioningRule`: a model conditions when r >= 0.9 and slope >= 0.5; the SNN
              conditions as clearly as its ANN twin when it conditions, its r is at most 0.05
              below the twin's and its slope at least 0.75 of the twin's (any slope, if the
              twin's is not positive)

`sweep_conditioning` returns one JSON-ready record (strict JSON: no NaN; an undefined r, e.g.
a model that achieves the same return at every target, is null and does not condition);
`write_json` writes it, `plot_conditioning` draws achieved against requested with y = x.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from spikingmind.errors import ConfigError, DatasetError, SpikingmindError

FORMAT = 1
ABOVE_BEST = 0.1  # the extra target: this share of the dataset's return range above its best return
MODEL_ORDER = ("snn", "ann")
MODEL_LABELS = {"snn": "SNN (spiking DT)", "ann": "ANN twin"}


@dataclass(frozen=True)
class ConditioningRule:
    """When a model's achieved return follows the requested one, and when the SNN does so as
    clearly as its ANN twin. Scored on the mean over training seeds, over the dataset's range."""

    min_correlation: float = 0.9  # Pearson r of achieved vs requested
    min_slope: float = 0.5  # achieved rises at least half as fast as requested
    max_correlation_gap: float = 0.05  # SNN r >= ANN r - this
    min_slope_ratio: float = 0.75  # SNN slope >= this x ANN slope (when the ANN's is positive)

    def text(self) -> str:
        return (f"a model conditions when, over the dataset's range of returns and on the mean over training seeds, "
                f"the Pearson r of achieved against requested return is >= {self.min_correlation:g} and the "
                f"least-squares slope is >= {self.min_slope:g}; the SNN conditions as clearly as its ANN twin when it "
                f"conditions, its r is at most {self.max_correlation_gap:g} below the twin's and its slope at least "
                f"{self.min_slope_ratio:g}x the twin's")

    def conditions(self, correlation: float | None, slope: float | None) -> bool:
        return (correlation is not None and slope is not None and correlation >= self.min_correlation
                and slope >= self.min_slope)

    def as_clearly(self, snn: dict, ann: dict) -> bool:
        """SNN conditions as clearly as the ANN (both: {"correlation", "slope"} on the mean curve)."""
        if not self.conditions(snn["correlation"], snn["slope"]):
            return False
        if ann["correlation"] is not None and snn["correlation"] < ann["correlation"] - self.max_correlation_gap:
            return False
        return not (ann["slope"] is not None and ann["slope"] > 0 and snn["slope"] < self.min_slope_ratio * ann["slope"])

    def to_dict(self) -> dict:
        return {**asdict(self), "text": self.text()}


RULE = ConditioningRule()


# ---------------------------------------------------------------------------- the grid


def dataset_record(dataset: str, content_hash: str | None = None) -> dict:
    """The dataset's id, hash, size and episode returns, read from its spikingmind.json
    (`dataset`: an id under MINARI_DATASETS_PATH or a folder). DatasetError when it is missing,
    corrupt or (given `content_hash`) holds other data than the checkpoint was trained on."""
    from spikingmind.data import dataset_dir
    from spikingmind.io import read_text

    folder = dataset_dir(dataset)
    path = folder / "spikingmind.json"
    text = read_text(path, DatasetError, f"{path}: missing; this folder is not a spikingmind dataset")
    try:
        meta = json.loads(text)
        returns = [float(episode["return"]) for episode in meta["episodes"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise DatasetError(f"{path}: corrupt (no episode returns)") from None
    if not returns or not np.all(np.isfinite(returns)):
        raise DatasetError(f"{path}: no finite episode returns")
    if content_hash is not None and meta.get("content_hash") != content_hash:
        raise DatasetError(f"{folder}: content hash {str(meta.get('content_hash'))[:12]}... differs from the "
                           f"{content_hash[:12]}... the checkpoints were trained on")
    return {"id": meta.get("dataset_id", folder.name), "content_hash": meta.get("content_hash"),
            "n_episodes": len(returns), "min_return": min(returns), "max_return": max(returns), "returns": returns}


def target_grid(returns: Iterable[float], targets: int = 8, above_best: float = ABOVE_BEST) -> tuple[list[float], list[bool]]:
    """`targets` requested returns evenly from min(returns) to max(returns), then one
    `above_best` x (max - min) above the max; with a flag per target: inside the dataset's range."""
    if targets < 2:
        raise ConfigError(f"--targets must be >= 2 (the lowest and the highest return), got {targets}")
    if not above_best > 0:
        raise ConfigError(f"--above-best must be positive, got {above_best}")
    values = np.asarray(list(returns), dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        raise DatasetError(f"every dataset episode has return {low:g}: no range of returns to condition on")
    grid = [float(v) for v in np.linspace(low, high, targets)]
    return grid + [high + above_best * (high - low)], [True] * targets + [False]


def fit(requested: list[float], achieved: list[float]) -> dict:
    """Pearson r (None when either side is constant) and least-squares slope of achieved on requested."""
    x, y = np.asarray(requested, dtype=np.float64), np.asarray(achieved, dtype=np.float64)
    if y.std() == 0:  # the same return at every target: flat (polyfit would leave rounding noise)
        return {"correlation": None, "slope": 0.0}
    slope = float(np.polyfit(x, y, 1)[0])
    return {"correlation": float(np.corrcoef(x, y)[0, 1]), "slope": slope}


# ---------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class Source:
    """One checkpoint of the sweep and what its metadata says about it."""

    path: Path
    model: str  # "snn" / "ann"
    seed: int  # its training seed: also the evaluation seed offset
    env_id: str
    dataset_id: str
    content_hash: str | None


def read_source(path: str | Path) -> Source:
    """A checkpoint folder's model kind, training seed, env and dataset (CheckpointError if unreadable)."""
    from spikingmind.checkpoint import read_meta
    from spikingmind.export import source_kind

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if source_kind(path) != "checkpoint":
        raise ConfigError(f"{path}: not a checkpoint folder (the sweep reads the dataset from a checkpoint's metadata)")
    meta = read_meta(path)
    try:
        return Source(path, str(meta["model"]["kind"]), int(meta["train"]["seed"]), str(meta["env"]["env_id"]),
                      str(meta["dataset"]["id"]), meta["dataset"].get("content_hash"))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: its checkpoint.json names no model kind, training seed, env or dataset") from None


def check_sources(sources: list[Source]) -> None:
    """One env, one dataset, each (model, seed) once."""
    if not sources:
        raise ConfigError("no checkpoints given")
    for name, values in (("environments", {s.env_id for s in sources}),
                         ("datasets", {(s.dataset_id, s.content_hash) for s in sources})):
        if len(values) > 1:
            raise ConfigError(f"the checkpoints were trained on different {name} ({', '.join(sorted(map(str, values)))}); "
                              "a conditioning sweep compares models of one dataset")
    seen: dict[tuple[str, int], Path] = {}
    for source in sources:
        key = (source.model, source.seed)
        if key in seen:
            raise ConfigError(f"{source.path} and {seen[key]} are both {source.model} with training seed {source.seed}")
        seen[key] = source.path


def achieved_returns(source: Source, targets: list[float], episodes: int, backend: str | None = None,
                     progress: Callable[[int], None] | None = None) -> list[dict]:
    """The checkpoint at each target on evaluation_seeds(episodes, its training seed): per target
    mean, std, min, max and every return."""
    from spikingmind.rollout import run_episodes
    from spikingmind.seeds import evaluation_seeds
    from spikingmind.workflows.evaluate import load_policy

    policy = load_policy(source.path, backend)
    try:
        seeds = evaluation_seeds(episodes, source.seed)
        if set(policy.dataset.get("episode_seeds", [])) & set(seeds):
            raise SpikingmindError(f"{source.path}: evaluation seeds overlap the training data's episode seeds")
        rows = []
        for target in targets:
            returns = np.asarray(run_episodes(policy, seeds, target, progress=progress).returns, dtype=np.float64)
            rows.append({"target": target, "mean": float(returns.mean()), "std": float(returns.std()),
                         "min": float(returns.min()), "max": float(returns.max()),
                         "returns": [float(r) for r in returns]})
    finally:
        policy.close()
    return rows


def summarise_model(runs: list[dict], targets: list[float], in_range: list[bool]) -> dict:
    """Mean and std over training seeds at each target; r and slope per seed and on the mean."""
    means = np.asarray([[row["mean"] for row in run["achieved"]] for run in runs])  # (seeds, targets)
    scored = [i for i, inside in enumerate(in_range) if inside]
    requested = [targets[i] for i in scored]
    mean_curve = means.mean(axis=0)
    by_seed = [fit(requested, [run["achieved"][i]["mean"] for i in scored]) for run in runs]
    for run, stats in zip(runs, by_seed):
        run.update(stats)
    stats = fit(requested, [float(mean_curve[i]) for i in scored])
    return {
        "seeds": [run["seed"] for run in runs],
        "mean": [float(v) for v in mean_curve],
        "std_over_seeds": [float(v) for v in means.std(axis=0)],
        **stats,
        "correlation_by_seed": [s["correlation"] for s in by_seed],
        "slope_by_seed": [s["slope"] for s in by_seed],
        "conditions": RULE.conditions(stats["correlation"], stats["slope"]),
        "runs": runs,
    }


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will play: the checkpoints (read and checked), their dataset and the grid."""

    sources: tuple[Source, ...]
    dataset: dict  # dataset_record
    targets: tuple[float, ...]
    in_range: tuple[bool, ...]

    def episodes(self, per_target: int) -> int:
        """Episodes the sweep plays: checkpoints x targets x per_target."""
        return len(self.sources) * len(self.targets) * per_target


def plan_sweep(checkpoints: Iterable[str | Path], targets: int = 8, above_best: float = ABOVE_BEST,
               dataset: str | None = None) -> SweepPlan:
    """Read the checkpoints and their dataset, build the grid; every bad input fails here.

    `dataset` overrides where the dataset is looked up (default: the id in the checkpoints'
    metadata under MINARI_DATASETS_PATH); its content hash must match theirs."""
    sources = [read_source(path) for path in checkpoints]
    check_sources(sources)
    data = dataset_record(dataset or sources[0].dataset_id, sources[0].content_hash)
    grid, in_range = target_grid(data["returns"], targets, above_best)
    return SweepPlan(tuple(sources), data, tuple(grid), tuple(in_range))


def run_sweep(plan: SweepPlan, episodes: int = 20, backend: str | None = None,
              progress: Callable[[int], None] | None = None) -> dict:
    """Evaluate every checkpoint of the plan at every target; the record `write_json` writes.
    `progress(n)` is called as episodes finish (total: `plan.episodes(episodes)`)."""
    from spikingmind.seeds import evaluation_seeds

    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    grid, in_range, sources = list(plan.targets), list(plan.in_range), plan.sources
    models = {}
    for model in sorted({s.model for s in sources}, key=lambda m: (MODEL_ORDER + (m,)).index(m)):
        runs = [{"seed": s.seed, "checkpoint": str(s.path), "episode_seeds": evaluation_seeds(episodes, s.seed),
                 "achieved": achieved_returns(s, grid, episodes, backend, progress)}
                for s in sorted((s for s in sources if s.model == model), key=lambda s: s.seed)]
        models[model] = summarise_model(runs, grid, in_range)
    verdict = None
    if "snn" in models and "ann" in models:
        verdict = RULE.as_clearly(models["snn"], models["ann"])
    return {
        "format": FORMAT,
        "env_id": sources[0].env_id,
        "dataset": {k: v for k, v in plan.dataset.items() if k != "returns"},
        "targets": grid,
        "in_range": in_range,
        "episodes": episodes,
        "backend": backend,
        "rule": RULE.to_dict(),
        "models": models,
        "snn_as_clearly_as_ann": verdict,
    }


def sweep_conditioning(checkpoints: Iterable[str | Path], targets: int = 8, episodes: int = 20,
                       above_best: float = ABOVE_BEST, backend: str | None = None, dataset: str | None = None,
                       progress: Callable[[int], None] | None = None) -> dict:
    """`plan_sweep` then `run_sweep`: the record of the whole sweep."""
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    return run_sweep(plan_sweep(checkpoints, targets, above_best, dataset), episodes, backend, progress)


def summary(record: dict) -> dict:
    """The few figures the results summary keeps per env: r, slope and the verdicts."""
    return {
        "targets": record["targets"],
        "in_range": record["in_range"],
        "episodes": record["episodes"],
        **{model: {"seeds": m["seeds"], "correlation": m["correlation"], "slope": m["slope"],
                   "correlation_by_seed": m["correlation_by_seed"], "slope_by_seed": m["slope_by_seed"],
                   "conditions": m["conditions"]} for model, m in record["models"].items()},
        "snn_as_clearly_as_ann": record["snn_as_clearly_as_ann"],
        "rule": record["rule"]["text"],
    }


def write_json(path: str | Path, record: dict) -> Path:
    """Strict JSON (no NaN or infinity: json.dumps(allow_nan=False)), written atomically."""
    from spikingmind.io import atomic_write_text

    return atomic_write_text(path, json.dumps(record, indent=2, allow_nan=False) + "\n")


def plot_conditioning(record: dict, path: str | Path) -> Path:
    """Achieved against requested return (mean ± std over training seeds) per model, the y = x
    line and the dataset's range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikingmind.io import atomic_path

    targets = np.asarray(record["targets"])
    low, high = record["dataset"]["min_return"], record["dataset"]["max_return"]
    figure, axis = plt.subplots(figsize=(5.2, 4.2))
    axis.axvspan(low, high, color="0.93", zorder=0, label="dataset's range")
    span = [min(targets.min(), low), targets.max()]
    axis.plot(span, span, "k--", linewidth=1, label="y = x")
    for offset, (model, m) in zip((-0.006, 0.006), record["models"].items()):
        x = targets + offset * (targets.max() - targets.min())  # side by side where the error bars overlap
        r = "r undefined" if m["correlation"] is None else f"r {m['correlation']:.2f}"
        bars = axis.errorbar(x, m["mean"], yerr=m["std_over_seeds"], marker="o", markersize=4, capsize=3,
                             label=f"{MODEL_LABELS.get(model, model)}: {r}, slope {m['slope']:.2f} "
                                   f"({len(m['seeds'])} seeds)")
        for run in m["runs"]:  # each seed's mean, faint
            axis.plot(x, [row["mean"] for row in run["achieved"]], ".", color=bars[0].get_color(), alpha=0.35)
    axis.set_xlabel("requested return (return-to-go at the start)")
    axis.set_ylabel(f"achieved return, mean ± std over seeds ({record['episodes']} ep. each)")
    axis.set_title(f"{record['env_id']}: return conditioning", fontsize=10)
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
    return Path(path)
