"""The ablation sweep's tables and plots: one row per run, mean and std over seeds, figures."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from spikingmind.io import atomic_path, atomic_write_text

#: Per-run metrics that depend on the machine's load, not on the run's config and seed.
TIMING_COLUMNS = ("latency_ms", "latency_ort_ms", "ms_per_decision_batch", "train_seconds", "wall_seconds")
#: Per-run metrics written to runs.csv and aggregated in summary.csv, in column order.
METRIC_COLUMNS = (
    "mean_return", "std_return", "spikes_per_decision", "mean_spike_rate", "latency_ms", "latency_ort_ms",
    "ms_per_decision_batch", "energy_pj_loihi", "energy_pj_cmos45nm-fp32", "energy_pj_cmos45nm-int8",
    "best_val_return", "train_seconds", "wall_seconds",
)
#: (column, axis label) of the figures.
PLOTTED = (
    ("mean_return", "return (mean over seeds)"),
    ("spikes_per_decision", "spikes per decision"),
    ("latency_ms", "latency per decision, batch 1 (ms)"),
    ("energy_pj", "energy per decision, estimate (pJ)"),
)


def run_rows(entries: Iterable[dict]) -> list[dict]:
    """One row per run; metrics of unfinished or failed runs stay empty (None), never 0."""
    rows = []
    for entry in entries:
        result = entry.get("result") or {}
        row = {"run_id": entry["run_id"], "model": entry["model"], "time_steps": entry["time_steps"],
               "context": entry["context"], "seed": entry["seed"], "status": entry["status"],
               "error": entry.get("error") or ""}
        row.update({column: result.get(column) for column in METRIC_COLUMNS})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["model"] != "snn", r["time_steps"], r["context"], r["seed"]))


def aggregate(entries: Iterable[dict]) -> list[dict]:
    """One row per (model, T, K): mean and std over finished seeds of every metric."""
    groups: dict[tuple, list[dict]] = {}
    for row in run_rows(entries):
        groups.setdefault((row["model"], row["time_steps"], row["context"]), []).append(row)
    out = []
    for (model, t, k), rows in groups.items():
        done = [r for r in rows if r["status"] == "done"]
        summary = {"model": model, "time_steps": t, "context": k, "runs": len(rows), "done": len(done),
                   "failed": sum(r["status"] == "failed" for r in rows)}
        for column in METRIC_COLUMNS:
            values = [r[column] for r in done if r[column] is not None]
            summary[f"{column}_mean"] = float(np.mean(values)) if values else None
            summary[f"{column}_std"] = float(np.std(values)) if values else None
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
    atomic_write_text(summary_csv, _csv_text(aggregate(entries)))
    return runs_csv, summary_csv


def plot_sweep(plot_dir: Path, summary: list[dict], cfg) -> list[Path]:
    """One PNG per metric: against T (one line per K) and against K (one line per T, plus the
    ANN twin where the metric applies to it); error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                    lines = {None: rows}
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
