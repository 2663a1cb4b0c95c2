"""The ablation sweep's tables and plots: one row per run, mean and std over seeds, figures,
and the return/energy front (the cheapest config of each family that reaches the target)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from spikingmind.io import atomic_path, atomic_write_text

#: Per-run metrics that depend on the machine's load, not on the run's config and seed.
TIMING_COLUMNS = ("latency_ms", "latency_ort_ms", "ms_per_decision_batch", "train_seconds", "wall_seconds")
#: Per-run metrics written to runs.csv and aggregated in summary.csv, in column order; the
#: energy columns of the sweep's profiles (`energy_columns`) follow them.
METRIC_COLUMNS = (
    "mean_return", "std_return", "spikes_per_decision", "mean_spike_rate", "spike_rate_energy_decisions",
    "latency_ms", "latency_ort_ms", "ms_per_decision_batch", "best_val_return", "train_seconds", "wall_seconds",
)
#: A config's identity in the tables: the columns every run of it shares.
CONFIG_COLUMNS = ("model", "time_steps", "context", "width", "energy_weight")


def energy_columns(entries: Iterable[dict]) -> tuple[str, ...]:
    """energy_pj_<profile> (decision-only) and energy_full_pj_<profile> of every profile the runs name."""
    profiles: dict[str, None] = {}
    for entry in entries:
        evaluation = entry.get("evaluation") or {}
        for name in (*evaluation.get("snn_profiles", ()), *evaluation.get("ann_profiles", ())):
            profiles.setdefault(name, None)
    return tuple(f"energy_{kind}_{name}" for kind in ("pj", "full_pj") for name in profiles)
#: (column, axis label) of the figures.
PLOTTED = (
    ("mean_return", "return (mean over seeds)"),
    ("spikes_per_decision", "spikes per decision"),
    ("latency_ms", "latency per decision, batch 1 (ms)"),
    ("energy_pj", "energy per decision, estimate (pJ)"),
)


def run_rows(entries: Iterable[dict]) -> list[dict]:
    """One row per run; metrics of unfinished or failed runs stay empty (None), never 0."""
    entries = list(entries)
    columns = METRIC_COLUMNS + energy_columns(entries)
    rows = []
    for entry in entries:
        result = entry.get("result") or {}
        row = {"run_id": entry["run_id"], "model": entry["model"], "time_steps": entry["time_steps"],
               "context": entry["context"], "width": entry.get("width"), "energy_weight": entry.get("energy_weight"),
               "seed": entry["seed"], "status": entry["status"], "error": entry.get("error") or ""}
        row.update({column: result.get(column) for column in columns})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["model"] != "snn", r["time_steps"], r["context"], r["width"] or 0,
                                       r["energy_weight"] or 0.0, r["seed"]))


def aggregate(entries: Iterable[dict]) -> list[dict]:
    """One row per config (model, T, K, width, energy weight): mean and std over finished seeds of
    every metric, and each seed's mean return (`returns_by_seed`)."""
    entries = list(entries)
    columns = METRIC_COLUMNS + energy_columns(entries)
    groups: dict[tuple, list[dict]] = {}
    for row in run_rows(entries):
        groups.setdefault(tuple(row[c] for c in CONFIG_COLUMNS), []).append(row)
    out = []
    for key, rows in groups.items():
        done = [r for r in rows if r["status"] == "done"]
        summary = {**dict(zip(CONFIG_COLUMNS, key)), "runs": len(rows), "done": len(done),
                   "failed": sum(r["status"] == "failed" for r in rows)}
        for column in columns:
            values = [r[column] for r in done if r[column] is not None]
            summary[f"{column}_mean"] = float(np.mean(values)) if values else None
            summary[f"{column}_std"] = float(np.std(values)) if values else None
        summary["returns_by_seed"] = {str(r["seed"]): r["mean_return"] for r in done}
        out.append(summary)
    return out


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])
    return buffer.getvalue()


def write_tables(sweep_dir: Path, entries: list[dict]) -> tuple[Path, Path]:
    runs_csv, summary_csv = sweep_dir / "runs.csv", sweep_dir / "summary.csv"
    atomic_write_text(runs_csv, _csv_text(run_rows(entries)))
    rows = [{k: v for k, v in row.items() if k != "returns_by_seed"} for row in aggregate(entries)]
    atomic_write_text(summary_csv, _csv_text(rows))
    return runs_csv, summary_csv


def plot_sweep(plot_dir: Path, summary: list[dict], cfg) -> list[Path]:
    """One PNG per metric: against T (one line per K) and against K (one line per T, plus the
    ANN twin where the metric applies to it); error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w0, e0 = cfg.default_width_and_weight()
    # the T and K axes run at the default width and energy weight (the ANN: at every width)
    summary = [r for r in summary if r["model"] == "ann" or (r["width"] == w0 and r["energy_weight"] == e0)]
    paths = []
    for metric, label in PLOTTED:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for axis, (x_key, line_key, x_label) in zip(axes, (("time_steps", "context", "T (SNN steps per decision)"),
                                                            ("context", "time_steps", "K (context, env steps)"))):
            for model in ("snn", "ann"):
                columns = [f"{metric}_{p}" for p in (cfg.snn_profiles if model == "snn" else cfg.ann_profiles)] \
                    if metric == "energy_pj" else [metric]
                rows = [r for r in summary if r["model"] == model]
                if model == "ann":
                    if x_key != "context":
                        continue
                    lines = {None: [r for r in rows if r["width"] == w0]}
                else:
                    lines = {}
                    for row in rows:
                        lines.setdefault(row[line_key], []).append(row)
                for column in columns:
                    for fixed, members in sorted(lines.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
                        members = sorted((r for r in members if r.get(f"{column}_mean") is not None),
                                         key=lambda r: r[x_key])
                        if len(members) < (1 if model == "ann" else 2):
                            continue
                        name = column.removeprefix("energy_pj_") if metric == "energy_pj" else ""
                        tag = f"{model.upper()}" + (f" {'K' if line_key == 'context' else 'T'}={fixed}" if fixed is not None else "")
                        axis.errorbar([r[x_key] for r in members], [r[f"{column}_mean"] for r in members],
                                      yerr=[r[f"{column}_std"] for r in members], marker="o", capsize=3,
                                      label=f"{tag} {name}".strip())
            axis.set_xlabel(x_label)
            axis.set_ylabel(label)
            axis.set_xscale("log", base=2)
            if metric == "energy_pj":
                axis.set_yscale("log")
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7)
            axis.grid(alpha=0.3)
        figure.suptitle(f"{cfg.env_id}: {label} (mean +- std over {cfg.seeds} seed(s))", fontsize=10)
        figure.tight_layout()
        path = plot_dir / f"{metric}.png"
        with atomic_path(path, suffix=".png") as tmp:
            figure.savefig(tmp, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- the front


def _cost(row: dict, profiles) -> float | None:
    """The row's energy per decision (decision-only) under its worst profile, or None."""
    values = [row.get(f"energy_pj_{p}_mean") for p in profiles]
    return None if any(v is None for v in values) else max(values)


def config_label(row: dict) -> str:
    if row["model"] == "snn":
        return f"SNN T={row['time_steps']} K={row['context']} w={row['width']} e={row['energy_weight']:g}"
    return f"ANN K={row['context']} w={row['width']}"


def front(summary: list[dict], snn_profiles, ann_profiles, target: float, seeds: int) -> dict:
    """The cheapest SNN config (by its energy under the most expensive SNN profile) and the cheapest
    ANN config (by int8, the last ANN profile) whose mean return over every seed reaches `target`,
    with their returns by seed, energies per profile and the SNN / ANN ratios per SNN profile.
    A family with no config there gets None and the config closest to the target instead."""

    def reaches(row) -> bool:
        return row["done"] == seeds and row["mean_return_mean"] is not None and row["mean_return_mean"] >= target

    def pick(model: str, profiles) -> dict:
        rows = [r for r in summary if r["model"] == model and _cost(r, profiles) is not None]
        good = [r for r in rows if reaches(r)]
        best = min(good, key=lambda r: _cost(r, profiles)) if good else None
        closest = max(rows, key=lambda r: r["mean_return_mean"] or -np.inf) if rows else None
        def describe(row):
            if row is None:
                return None
            return {"config": config_label(row), "model": model, "time_steps": row["time_steps"],
                    "context": row["context"], "width": row["width"], "energy_weight": row["energy_weight"],
                    "mean_return": row["mean_return_mean"], "std_over_seeds": row["mean_return_std"],
                    "returns_by_seed": row["returns_by_seed"],
                    "spike_rate": row.get("spike_rate_energy_decisions_mean"),
                    "energy_uj": {p: row[f"energy_pj_{p}_mean"] / 1e6 for p in profiles},
                    "energy_full_window_uj": {p: (None if row.get(f"energy_full_pj_{p}_mean") is None
                                                  else row[f"energy_full_pj_{p}_mean"] / 1e6) for p in profiles}}
        return {"cheapest_reaching_target": describe(best), "closest_to_target": describe(closest)}

    snn, ann = pick("snn", snn_profiles), pick("ann", ann_profiles)
    ratio = None
    if snn["cheapest_reaching_target"] and ann["cheapest_reaching_target"]:
        int8 = ann["cheapest_reaching_target"]["energy_uj"][ann_profiles[-1]]
        ratio = {p: e / int8 for p, e in snn["cheapest_reaching_target"]["energy_uj"].items()}
    return {"target_return": target, "accounting": "decision_only", "seeds": seeds, "snn": snn, "ann": ann,
            "ratio_snn_over_int8": ratio, "int8_profile": ann_profiles[-1]}


def front_lines(front: dict) -> list[str]:
    """front.json in words, for `spikingmind ablate` and the README (make results): one line per
    family (its cheapest config that reaches the target, or the closest) and, when both have one,
    the cheapest SNN / cheapest int8 ANN ratio per Loihi profile."""
    from spikingmind.energy.report import format_pj

    lines = []
    for name in ("snn", "ann"):
        part = front.get(name) or {}
        best = part.get("cheapest_reaching_target")
        if best is None:
            near = part.get("closest_to_target")  # None: no config of the family has a result
            lines.append(f"no {name.upper()} config in this sweep has a result" if near is None else
                         f"no {name.upper()} config reaches it (closest: {near['config']}, {near['mean_return']:.1f})")
            continue
        energies = ", ".join(f"{format_pj(uj * 1e6)} ({profile})" for profile, uj in best["energy_uj"].items())
        lines.append(f"cheapest {name.upper()}: {best['config']}, return {best['mean_return']:.1f}, {energies}")
    ratio = front.get("ratio_snn_over_int8")
    if ratio:
        worse = all(value > 1.0 for value in ratio.values())
        lines.append(f"cheapest SNN / cheapest ANN ({front['int8_profile']}): "
                     + ", ".join(f"{value:.3g}x ({profile})" for profile, value in ratio.items())
                     + (" — the SNN costs MORE under every Loihi profile" if worse else ""))
    return lines


def plot_front(path: Path, summary: list[dict], snn_profiles, ann_profiles, target: float, chosen: dict,
               title: str) -> Path:
    """Return (mean +- std over seeds) against energy per decision (log, decision-only): every SNN
    config under every SNN profile, every ANN config under every ANN profile; the target return as a
    line, the cheapest config of each family that reaches it circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8.5, 5.2))
    markers = dict(zip((*snn_profiles, *ann_profiles), "osD^vP*X"))
    for model, profiles, colour in (("snn", snn_profiles, "tab:blue"), ("ann", ann_profiles, "tab:orange")):
        rows = [r for r in summary if r["model"] == model and r["mean_return_mean"] is not None]
        for index, profile in enumerate(profiles):
            points = [(r[f"energy_pj_{profile}_mean"] / 1e6, r["mean_return_mean"], r["mean_return_std"] or 0.0)
                      for r in rows if r.get(f"energy_pj_{profile}_mean")]
            if not points:
                continue
            x, y, e = zip(*points)
            axis.errorbar(x, y, yerr=e, fmt=markers[profile], color=colour, alpha=0.45 + 0.55 * (index == 0),
                          capsize=2, label=f"{model.upper()} ({profile})")
        best = chosen[model]["cheapest_reaching_target"]
        if best is not None:
            for profile in profiles:
                axis.scatter([best["energy_uj"][profile]], [best["mean_return"]], s=220, facecolors="none",
                             edgecolors=colour, linewidths=1.6)
            axis.annotate(best["config"], (min(best["energy_uj"].values()), best["mean_return"]),
                          textcoords="offset points", xytext=(6, -14), fontsize=7, color=colour)
    axis.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target return {target:g}")
    axis.set_xscale("log")
    axis.set_xlabel("energy per decision, decision-only accounting (uJ, estimate)")
    axis.set_ylabel("return (mean +- std over seeds)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
    return path
