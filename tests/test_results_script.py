"""scripts/results.py: the ablation and fine-tuning sections of the README's results, and the
figures it copies into a committed folder (runs/ is git-ignored) and links relatively."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import struct
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLOT_METRICS = ("mean_return", "spikes_per_decision", "latency_ms", "energy_pj")
SUMMARY_COLUMNS = ["model", "time_steps", "context", "runs", "done", "failed", "mean_return_mean", "mean_return_std",
                   "spikes_per_decision_mean", "spikes_per_decision_std", "latency_ms_mean", "latency_ms_std",
                   "energy_pj_loihi_mean", "energy_pj_cmos45nm-fp32_mean", "energy_pj_cmos45nm-int8_mean"]
SUMMARY_ROWS = [
    ["snn", 2, 5, 3, 3, 0, 412.34, 12.06, 1234.4, 56.2, 1.5, 0.1, 2.5e6, "", ""],
    ["ann", 4, 5, 3, 3, 0, 480.0, 20.0, "", "", 0.25, 0.01, "", 1.1e7, 2.6e6],
    ["snn", 8, 5, 2, 0, 2, "", "", "", "", "", "", "", "", ""],  # every seed failed: no metrics
]


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_png(path: Path, shade: int) -> bytes:
    """A valid 1x1 grey PNG; `shade` makes each file's bytes unique."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes([0, shade]))) + chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return png


def write_ablation(ablate_dir: Path, slug: str = "cartpole") -> dict[str, bytes]:
    """summary.csv (SNN, ANN, failed SNN), manifest.json and the four plots; returns plot bytes by metric."""
    folder = ablate_dir / slug
    folder.mkdir(parents=True)
    with (folder / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        writer.writerows(SUMMARY_ROWS)
    sweep = {"env_id": "CartPole-v1", "time_steps": [2, 8], "context": [5], "seeds": 3, "grid": "axes", "ann": True,
             "train": {"steps": 400}, "eval_episodes": 10, "snn_profiles": ["loihi"],
             "ann_profiles": ["cmos45nm-fp32", "cmos45nm-int8"]}
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "sweep": sweep, "runs": {}}))
    return {metric: write_png(folder / "plots" / f"{metric}.png", shade)
            for shade, metric in enumerate(PLOT_METRICS, start=10)}


def write_finetune(finetune_dir: Path, slug: str = "cartpole", metrics_in: str = "checkpoint") -> bytes:
    """offline.json, finetuned.json, the run's record and learning curve; returns the curve's bytes."""
    folder = finetune_dir / slug
    run = folder / "finetune"
    (run / "checkpoint").mkdir(parents=True)
    for name, mean, std in (("offline", 150.3, 30.5), ("finetuned", 498.0, 4.1)):
        (folder / f"{name}.json").write_text(json.dumps({"mean_return": mean, "std_return": std, "episodes": 20}))
    config = {"config": {"algo": "reinforce", "episodes": 3200}, "parent": {"path": "x"}}
    metrics = {"episodes": 3200, "env_steps": 900000, "seconds": 600.0, "start_greedy_return": 198.5,
               "final_greedy_return": 500.0}
    if metrics_in == "checkpoint":  # where spikingmind.finetune puts them
        (run / "finetune.json").write_text(json.dumps(config))
        (run / "checkpoint" / "checkpoint.json").write_text(json.dumps({"finetune": {**config, "metrics": metrics}}))
    else:
        (run / "finetune.json").write_text(json.dumps({**config, "metrics": metrics}))
    return write_png(run / "learning_curve.png", 99)


def table_row(text: str, first_cells: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(first_cells)]
    assert len(rows) == 1, (first_cells, text)
    return rows[0]


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("|").split("|")]


def png_links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)]+\.png)\)", text)


def test_ablation_table_formats_means_and_leaves_failed_runs_empty(results, tmp_path):
    write_ablation(tmp_path / "ablate")
    text = results.ablation_section("CartPole-v1", tmp_path / "ablate", tmp_path, tmp_path / "figures")

    assert text.startswith("### Ablation over T and K, CartPole-v1")
    assert cells(table_row(text, "| SNN | 2 | 5 |")) == [
        "SNN", "2", "5", "3/0", "412.3 ± 12.1", "1234 ± 56", "1.5 ms", "2.5 uJ (loihi)"]
    ann = cells(table_row(text, "| ANN |"))
    assert ann[:6] == ["ANN", "—", "5", "3/0", "480.0 ± 20.0", "—"]  # the ANN has no T and no spikes
    assert ann[7] == "11 uJ (cmos45nm-fp32), 2.6 uJ (cmos45nm-int8)"
    failed = table_row(text, "| SNN | 8 | 5 |")
    assert cells(failed) == ["SNN", "8", "5", "0/2 failed", "—", "—", "—", "—"]
    assert "0.0" not in failed
    assert "3 seeds per point" in text and "10 unseen evaluation episodes per run" in text
    assert "400 training steps per run" in text and "T ∈ {2, 8}" in text and "K ∈ {5}" in text
    assert "std over the seeds" in text


def test_figures_are_copied_and_linked_relative_to_the_readme(results, tmp_path):
    readme_dir, figures_dir = tmp_path / "repo", tmp_path / "repo" / "docs" / "results"
    readme_dir.mkdir()
    plots = write_ablation(tmp_path / "runs" / "ablate")
    curve = write_finetune(tmp_path / "runs" / "finetune")
    text = (results.ablation_section("CartPole-v1", tmp_path / "runs" / "ablate", readme_dir, figures_dir)
            + results.finetune_section("CartPole-v1", tmp_path / "runs" / "finetune", readme_dir, figures_dir))

    expected = {f"ablate-cartpole-{metric}.png": png for metric, png in plots.items()}
    expected["finetune-cartpole-learning_curve.png"] = curve
    links = png_links(text)
    assert sorted(Path(link).name for link in links) == sorted(expected)
    for link in links:
        assert not os.path.isabs(link) and link.startswith("docs/results/"), link
        assert (readme_dir / link).read_bytes() == expected[Path(link).name]
    assert sorted(p.name for p in figures_dir.iterdir()) == sorted(expected)  # no temp files left behind
    embedded = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(Path(link).name for link in embedded) == [
        "ablate-cartpole-energy_pj.png", "ablate-cartpole-mean_return.png", "finetune-cartpole-learning_curve.png"]


@pytest.mark.parametrize("metrics_in", ["checkpoint", "finetune.json"])
def test_finetune_table_shows_offline_and_finetuned_returns(results, tmp_path, metrics_in):
    write_finetune(tmp_path / "finetune", metrics_in=metrics_in)
    text = results.finetune_section("CartPole-v1", tmp_path / "finetune", tmp_path, tmp_path / "figures")

    assert text.startswith("### Online fine-tuning (REINFORCE), CartPole-v1")
    assert "| offline checkpoint | 150.3 ± 30.5 (20 ep.) |" in text
    assert "| fine-tuned | 498.0 ± 4.1 (20 ep.) |" in text
    assert "3200 fine-tuning episodes, 900000 env steps, 10.0 min" in text
    assert "198.5 at the start, 500.0 at the end" in text


def test_finetune_missing_files_say_not_run(results, tmp_path):
    folder = tmp_path / "finetune" / "cartpole"
    folder.mkdir(parents=True)
    (folder / "offline.json").write_text(json.dumps({"mean_return": 150.3, "std_return": 30.5, "episodes": 20}))
    text = results.finetune_section("CartPole-v1", tmp_path / "finetune", tmp_path, tmp_path / "figures")

    assert "| offline checkpoint | 150.3 ± 30.5 (20 ep.) |" in text
    assert "| fine-tuned | not run |" in text
    assert "fine-tuning: *not run*" in text
    assert not png_links(text)


def test_readme_gets_sections_only_for_envs_with_files(results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.START}\nold\n{results.END}\ntail\n")
    dirs = {name: tmp_path / "runs" / name for name in ("results", "demo", "ablate", "finetune")}
    write_ablation(dirs["ablate"])
    write_finetune(dirs["finetune"])
    results.main(["--envs", "CartPole-v1,Acrobot-v1", "--readme", str(readme), "--figures-dir",
                  str(tmp_path / "figures"), *[arg for name, folder in dirs.items()
                                               for arg in (f"--{name}-dir", str(folder))]])

    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("tail\n") and "old" not in text
    assert "### Ablation over T and K, CartPole-v1" in text
    assert "### Online fine-tuning (REINFORCE), CartPole-v1" in text
    assert "Acrobot-v1" in text and "Ablation over T and K, Acrobot-v1" not in text
    assert "Online fine-tuning (REINFORCE), Acrobot-v1" not in text
    for link in png_links(text):
        assert link.startswith("figures/") and (tmp_path / link).is_file(), link


def test_no_ablation_or_finetune_files_render_no_heading(results, tmp_path):
    text = results.render(tmp_path / "results", ["CartPole-v1"], tmp_path, demo_dir=tmp_path / "demo",
                          figures_dir=tmp_path / "figures", ablate_dir=tmp_path / "ablate",
                          finetune_dir=tmp_path / "finetune")

    assert "### CartPole-v1" in text
    assert "Ablation" not in text and "fine-tuning" not in text
    assert not (tmp_path / "figures").exists()


def test_latency_line_ranks_backends_and_states_the_goal(results):
    timing = lambda ms: {"batch1": {"median_ms": ms}}  # noqa: E731
    latency = {"results": {"snn-pytorch": timing(1.6), "snn-event": timing(0.3), "ann-ort": timing(0.2)},
               "goal": {"spiking_dt_over_ann_ort_batch1_at_most": 2.0, "spiking_backend": "snn-event",
                        "ratio": 1.5, "met": True}}
    line = results.latency_line(latency)
    assert line.index("ann-ort 0.2 ms (1.00x)") < line.index("snn-event 0.3 ms (1.50x)") \
        < line.index("snn-pytorch 1.6 ms (8.00x)")
    assert line.endswith("goal (fastest spiking backend <= 2x ann-ort): met, 1.50x with snn-event.")
    latency["goal"] = {**latency["goal"], "met": False, "ratio": 8.0, "spiking_backend": "snn-pytorch"}
    assert "not met, 8.00x with snn-pytorch" in results.latency_line(latency)
