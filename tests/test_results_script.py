"""scripts/results.py: the ablation and fine-tuning sections of the README's results, and the
figures it copies into a committed folder (runs/ is git-ignored) and links relatively."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import struct
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLOT_METRICS = ("mean_return", "spikes_per_decision", "latency_ms", "energy_pj")
SUMMARY_COLUMNS = ["model", "time_steps", "context", "width", "energy_weight", "runs", "done", "failed",
                   "mean_return_mean", "mean_return_std",
                   "spikes_per_decision_mean", "spikes_per_decision_std", "latency_ms_mean", "latency_ms_std",
                   "energy_pj_loihi_mean", "energy_pj_cmos45nm-fp32_mean", "energy_pj_cmos45nm-int8_mean"]
SUMMARY_ROWS = [
    ["snn", 2, 5, 32, 0.25, 3, 3, 0, 412.34, 12.06, 1234.4, 56.2, 1.5, 0.1, 2.5e6, "", ""],
    ["ann", 4, 5, 8, 0.0, 3, 3, 0, 480.0, 20.0, "", "", 0.25, 0.01, "", 1.1e7, 2.6e6],
    ["snn", 8, 5, 32, 0.0, 2, 0, 2, "", "", "", "", "", "", "", "", ""],  # every seed failed: no metrics
]


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


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
             "train": {"steps": 400}, "eval_episodes": 10, "energy_episodes": 1, "energy_max_decisions": 128,
             "snn_profiles": ["loihi"],
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

    assert text.startswith("### Ablation and energy front, CartPole-v1")
    assert cells(table_row(text, "| SNN | 2 | 5 |")) == [
        "SNN", "2", "5", "32", "0.25", "3/0", "412.3 ± 12.1", "1234 ± 56", "1.5 ms", "2.5 uJ (loihi)"]
    ann = cells(table_row(text, "| ANN |"))
    assert ann[:8] == ["ANN", "—", "5", "8", "—", "3/0", "480.0 ± 20.0", "—"]  # the ANN has no T, weight or spikes
    assert ann[9] == "11 uJ (cmos45nm-fp32), 2.6 uJ (cmos45nm-int8)"
    failed = table_row(text, "| SNN | 8 | 5 |")
    assert cells(failed) == ["SNN", "8", "5", "32", "0", "0/2 failed", "—", "—", "—", "—"]
    assert "0.0" not in failed
    assert "3 seeds per point" in text and "10 unseen evaluation episodes per run" in text
    # the grid as the table holds it (a folder may have grown over several invocations)
    assert "400 training steps per run" in text and "2 SNN points over T ∈ {2, 8}, K ∈ {5}, width ∈ {32}" in text
    assert "energy counted on at most the first 128 decisions of 1 episode per run" in text
    assert "1 ANN point (K ∈ {5}, width ∈ {8})" in text
    assert "std over the seeds" in text


def test_the_energy_weight_sweep_renders_as_its_own_section_with_its_own_figures(results, tmp_path):
    write_ablation(tmp_path / "ablate-energy")
    text = results.render(tmp_path / "results", ["CartPole-v1"], tmp_path, demo_dir=tmp_path / "demo",
                          figures_dir=tmp_path / "figures", ablate_dir=tmp_path / "none",
                          finetune_dir=tmp_path / "none", experts_path=None, third_party_path=None,
                          demo_spread_dir=tmp_path / "none", energy_sweep_dir=tmp_path / "ablate-energy")
    assert "### Energy-weight sweep at the recommended model, CartPole-v1" in text
    assert "### Ablation and energy front" not in text
    assert "| SNN | 2 | 5 | 32 | 0.25 | 3/0 | 412.3 ± 12.1 |" in text
    assert (tmp_path / "figures" / "energy-sweep-cartpole-mean_return.png").exists()
    assert "](figures/energy-sweep-cartpole-mean_return.png)" in text
    assert not list((tmp_path / "figures").glob("ablate-*"))


def test_ablation_section_states_the_front_and_embeds_the_pareto_plot(results, tmp_path):
    """front.json in one line: each family's cheapest config reaching the target, the ratio per
    Loihi profile and MORE when the SNN loses under all of them; the Pareto plot embedded."""
    write_ablation(tmp_path / "ablate")
    folder = tmp_path / "ablate" / "cartpole"
    write_png(folder / "plots" / "pareto.png", 40)
    snn = {"config": "SNN T=4 K=1 w=16 e=0", "mean_return": 480.0, "energy_uj": {"loihi": 0.25, "loihi-sanafe": 0.3}}
    ann = {"config": "ANN K=1 w=8", "mean_return": 490.0, "energy_uj": {"cmos45nm-fp32": 0.05, "cmos45nm-int8": 0.005}}
    (folder / "front.json").write_text(json.dumps({
        "target_return": 475.0, "snn": {"cheapest_reaching_target": snn}, "ann": {"cheapest_reaching_target": ann},
        "ratio_snn_over_int8": {"loihi": 50.0, "loihi-sanafe": 60.0}, "int8_profile": "cmos45nm-int8"}))
    text = results.ablation_section("CartPole-v1", tmp_path / "ablate", tmp_path, tmp_path / "figures")
    line = next(row for row in text.splitlines() if row.startswith("- energy front"))
    assert "target return 475" in line and "cheapest SNN: SNN T=4 K=1 w=16 e=0, return 480.0" in line
    assert "cheapest ANN: ANN K=1 w=8, return 490.0" in line and "5 nJ (cmos45nm-int8)" in line
    assert "50x (loihi), 60x (loihi-sanafe)" in line and "costs MORE under every Loihi profile" in line
    assert "figures/ablate-cartpole-pareto.png" in png_links(text)
    (folder / "front.json").write_text(json.dumps({"target_return": 475.0, "snn": {"cheapest_reaching_target": None,
                                                   "closest_to_target": {"config": "SNN T=1", "mean_return": 300.0}}}))
    text = results.ablation_section("CartPole-v1", tmp_path / "ablate", tmp_path, tmp_path / "figures")
    assert "no SNN config reaches it (closest: SNN T=1, 300.0)" in text and "MORE" not in text


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
    assert "### Ablation and energy front, CartPole-v1" in text
    assert "### Online fine-tuning (REINFORCE), CartPole-v1" in text
    assert "Acrobot-v1" in text and "Ablation and energy front, Acrobot-v1" not in text
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


# ---------------------------------------------------------------------------- the protocol (issue #14)


def write_eval(folder: Path, model: str, seed: int, returns: list[float], target: float = 500.0) -> None:
    """An `evaluate --json` result of training seed `seed` (what scripts/results.py --run writes)."""
    import numpy as np

    values = np.asarray(returns, dtype=float)
    record = {"env_id": "CartPole-v1", "model": model, "backend": "pytorch", "target_return": target, "seed": seed,
              "episodes": len(returns), "mean_return": float(values.mean()), "std_return": float(values.std()),
              "min_return": float(values.min()), "max_return": float(values.max()), "returns": list(returns)}
    path = folder / "eval" / f"{model}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def write_kept(folder: Path, model: str, seed: int, step: int, val_return: float) -> None:
    run = folder / model / f"seed{seed}" / "checkpoint"
    run.mkdir(parents=True)
    (run / "checkpoint.json").write_text(json.dumps({
        "metrics": {"best_step": step, "steps": 1000, "best_val_return": val_return,
                    "validation_seeds": [2_000_000_000, 2_000_000_009]},
        "train": {"seed": seed, "eval_episodes": 10}}))


EXPERTS = {"CartPole-v1": {
    "expert": {"policy": "cartpole_expert", "mean": 500.0, "std": 0.0, "min": 500.0, "max": 500.0,
               "returns": [500.0] * 100, "seeds": list(range(100))},
    "heuristic": {"policy": "cartpole_heuristic", "mean": 480.5, "std": 10.25, "min": 440.0, "max": 500.0,
                  "returns": [480.5] * 100, "seeds": list(range(100))},
    "zoo": {"return": 500.0, "std": 0.0, "algo": "PPO"}}}


def conditioning_record(correlations=(0.99, 0.97)) -> dict:
    """A `spikingmind condition` record of 3 seeds per model, built with the workflow's own summary."""
    from spikingmind.workflows.conditioning import RULE, summarise_model

    targets, in_range = [10.0, 255.0, 500.0, 549.0], [True, True, True, False]
    models = {}
    for model, lift in zip(("snn", "ann"), (0.9, 1.0)):
        runs = [{"seed": seed, "achieved": [{"target": t, "mean": lift * min(t, 500.0) + seed} for t in targets]}
                for seed in (0, 1, 2)]
        models[model] = summarise_model(runs, targets, in_range)
    return {"format": 1, "env_id": "CartPole-v1", "targets": targets, "in_range": in_range, "episodes": 20,
            "dataset": {"id": "cartpole-demo-v0", "min_return": 10.0, "max_return": 500.0, "n_episodes": 150},
            "rule": RULE.to_dict(), "models": models,
            "snn_as_clearly_as_ann": RULE.as_clearly(models["snn"], models["ann"])}


@pytest.fixture
def protocol_files(tmp_path):
    """runs/results/cartpole with SNN seeds 0, 1 (seed 2 missing) and ANN seeds 0, 1, 2."""
    folder = tmp_path / "results" / "cartpole"
    for seed, returns in enumerate(([500.0, 480.0], [490.0, 470.0])):
        write_eval(folder, "snn", seed, returns)
        write_kept(folder, "snn", seed, 900 + 100 * seed, 499.5)
    for seed, returns in enumerate(([500.0, 500.0], [450.0, 470.0], [400.0, 500.0])):
        write_eval(folder, "ann", seed, returns)
    (folder / "conditioning.json").write_text(json.dumps(conditioning_record()))
    write_png(folder / "conditioning.png", 7)
    experts = tmp_path / "experts.json"
    experts.write_text(json.dumps(EXPERTS))
    return tmp_path, folder, experts


def test_protocol_table_reports_seeds_episodes_expert_and_zoo(results, protocol_files):
    tmp_path, folder, experts = protocol_files
    found = results.env_results(tmp_path / "results", "CartPole-v1")
    text = results.env_table("CartPole-v1", found, tmp_path, tmp_path / "figures", json.loads(experts.read_text()))
    protocol, energy_table = text.split("| model | return, training seed 0 (unseen seeds) |")  # the first seed's models

    snn = cells(table_row(protocol, "| SNN (spiking DT) | "))
    assert snn[1] == "485.0 ± 5.0 (2 of 3 seeds)"  # per-seed means 490 and 480
    assert snn[2] == "490.0, 480.0, not run"
    assert snn[3] == "485.0 ± 11.2, 470.0 .. 500.0 (4 ep.)"
    assert snn[4] == "900 (499.5), 1000 (499.5), not run"
    ann = cells(table_row(protocol, "| ANN twin | "))
    assert ann[1] == "470.0 ± 21.6 (3 of 3 seeds)" and ann[2] == "500.0, 460.0, 450.0"
    assert ann[3] == "470.0 ± 36.5, 400.0 .. 500.0 (6 ep.)" and ann[4] == "not run"
    assert cells(table_row(energy_table, "| SNN (spiking DT) | "))[1] == "490.0 ± 10.0 (2 ep.)"
    assert cells(table_row(text, "| expert `cartpole_expert`"))[3] == "500.0 ± 0.0, 500.0 .. 500.0 (100 ep.)"
    assert cells(table_row(text, "| RL Baselines3 Zoo's best (PPO"))[3] == "500.0 ± 0.0"
    assert ("issue #14's bar for the spiking DT, mean over training seeds >= 495: **not met** (485.0, 2 of 3 seeds; "
            "ANN twin 470.0).") in text
    assert "the SNN conditions as clearly as the twin: **yes**" in text
    assert "![CartPole-v1: achieved against requested return](figures/cartpole-conditioning.png)" in text
    assert (tmp_path / "figures" / "cartpole-conditioning.png").read_bytes() == (folder / "conditioning.png").read_bytes()


def test_goal_is_met_on_the_mean_over_seeds_not_on_the_best_seed(results, protocol_files):
    tmp_path, folder, _ = protocol_files
    write_eval(folder, "snn", 2, [500.0, 500.0])
    stats = {m: results.seed_stats(results.env_results(tmp_path / "results", "CartPole-v1")["evals"][m])
             for m in results.MODELS}
    assert results.goal_line("CartPole-v1", stats, 3).endswith("**not met** (490.0; ANN twin 470.0).")
    write_eval(folder, "snn", 1, [500.0, 490.0])
    write_eval(folder, "snn", 0, [500.0, 490.0])
    stats["snn"] = results.seed_stats(results.env_results(tmp_path / "results", "CartPole-v1")["evals"]["snn"])
    assert "**met** (496.7; ANN twin 470.0)" in results.goal_line("CartPole-v1", stats, 3)


def test_summary_json_is_strict_and_has_the_protocols_fields(results, protocol_files):
    tmp_path, folder, experts = protocol_files
    found = {env_id: results.env_results(tmp_path / "results", env_id) for env_id in results.ENVS}
    path = results.write_summary(tmp_path / "summary.json",
                                 results.summary_records(found, json.loads(experts.read_text())))

    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    summary = json.loads(path.read_text(), parse_constant=refuse)["envs"]
    assert list(summary) == list(results.ENVS)
    cartpole = summary["CartPole-v1"]
    assert cartpole["target_return"] == 500.0 and cartpole["training_seeds"] == [0, 1, 2]
    assert cartpole["snn"]["returns_by_seed"] == {"0": 490.0, "1": 480.0}  # the mean per training seed
    assert cartpole["snn"]["evaluation_by_seed"]["1"]["returns"] == [490.0, 470.0]
    assert cartpole["snn"]["missing_seeds"] == [2] and set(cartpole["ann"]["returns_by_seed"]) == {"0", "1", "2"}
    assert cartpole["snn"]["mean_over_seeds"] == 485.0 and cartpole["goal"] == {**cartpole["goal"], "met": False}
    assert cartpole["conditioning"]["snn"]["correlation"] == pytest.approx(1.0)
    assert cartpole["conditioning"]["snn_as_clearly_as_ann"] is True
    assert cartpole["expert"]["mean"] == 500.0 and "returns" not in cartpole["expert"]
    assert summary["Acrobot-v1"]["snn"] is None and summary["Acrobot-v1"]["conditioning"] is None
    write_eval(folder, "ann", 0, [float("nan"), 1.0])  # a NaN never reaches the file
    found["CartPole-v1"] = results.env_results(tmp_path / "results", "CartPole-v1")
    with pytest.raises(ValueError):
        results.write_summary(tmp_path / "summary.json", results.summary_records(found))
    assert json.loads(path.read_text())["envs"]["CartPole-v1"]["ann"]["mean_over_seeds"] == 470.0  # left as it was


def test_readme_states_the_protocol_experts_third_party_and_demo_spread(results, protocol_files):
    tmp_path, _, experts = protocol_files
    third_party = tmp_path / "third_party.json"
    third_party.write_text(json.dumps({"summary": "nirtorch reads it.", "tests": "tests/test_third_party_readers.py"}))
    spread = tmp_path / "spread"
    spread.mkdir()
    row = lambda mean: {"mean": mean, "std": 1.0, "min": mean - 2, "max": mean + 2, "episodes": 20}  # noqa: E731
    (spread / "spread.json").write_text(json.dumps({
        "seeds": [0, 1], "targets": ["500", "100"], "episodes": 20, "seed0_identical_to_demo": True,
        "train_seconds_by_seed": {"0": 300.0, "1": 312.0},
        "by_target": {"500": {"criterion": "mean >= 475", "by_seed": {"0": row(500.0), "1": row(490.0)},
                              "mean_over_seeds": 495.0, "std_over_seeds": 5.0, "met_on_every_seed": True},
                      "100": {"criterion": "within 25%", "by_seed": {"0": row(110.0), "1": None},
                              "mean_over_seeds": 110.0, "std_over_seeds": 0.0, "met_on_every_seed": None}}}))
    text = results.render(tmp_path / "results", ["CartPole-v1"], tmp_path, demo_dir=tmp_path / "demo",
                          figures_dir=tmp_path / "figures", ablate_dir=tmp_path / "ablate",
                          finetune_dir=tmp_path / "finetune", experts_path=experts, third_party_path=third_party,
                          demo_spread_dir=spread)
    assert "- Third-party NIR readers: nirtorch reads it (rendered by `scripts/third_party_table.py`" in text
    assert "| CartPole-v1 | `cartpole_expert` 500.0 ± 0.0, 500.0 .. 500.0 (100 ep.) | `cartpole_heuristic` 480.5 " \
           "± 10.2, 440.0 .. 500.0 (100 ep.) | 500.0 ± 0.0 (PPO) |" in text
    assert "best mean return on the validation seeds" in text and "2 unseen evaluation seeds of its own" in text  # as run
    assert "evaluation seeds are never read during training or selection" in text
    assert "| 500 | 500.0 ± 1.0, 498 .. 502 | 490.0 ± 1.0, 488 .. 492 | 495.0 ± 5.0 | mean >= 475 | yes |" in text
    assert "| 100 | 110.0 ± 1.0, 108 .. 112 | not run | 110.0 ± 0.0 | within 25% | not run |" in text
    assert "bit-identical weights" in text and "training took 5.0, 5.2 min per seed" in text


def tiny_args(results, tmp_path: Path, *extra: str):
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    (configs / "cartpole.toml").write_text('[train]\nsteps = 4\n[data]\nepisodes = 12\nmix = "expert=0.5,random=0.5"\n')
    return results.parse_args(["--configs", str(configs), "--results-dir", str(tmp_path / "results"), *extra])


def test_run_plan_trains_three_seeds_and_evaluates_each_on_its_own_unseen_seeds(results, tmp_path):
    settings, stages = results.plan_env("CartPole-v1", tiny_args(results, tmp_path))
    by_name = {stage.name: stage.command for stage in stages}
    assert settings["training_seeds"] == [0, 1, 2] and settings["dataset"] == "cartpole-expert50-random50-n12-s0-v0"
    collect = by_name["collect"]
    assert collect[collect.index("--workers") + 1] == "2" and collect[collect.index("--episodes") + 1] == "12"
    out = tmp_path / "results" / "cartpole"
    for model in ("snn", "ann"):
        for seed in (0, 1, 2):
            train = by_name[f"train-{model}-seed{seed}"]
            assert train[train.index("--seed") + 1] == str(seed)
            assert train[train.index("--out") + 1] == str(out / model / f"seed{seed}")
            evaluate = by_name[f"evaluate-{model}-seed{seed}"]
            assert evaluate[evaluate.index("--seed") + 1] == str(seed)  # evaluation_seeds(20, seed)
            assert evaluate[evaluate.index("--episodes") + 1] == "20"
            assert evaluate[2] == str(out / model / f"seed{seed}" / "checkpoint")  # the kept checkpoint, nothing else
    condition = by_name["condition"]
    assert [arg for arg in condition if arg.endswith("checkpoint")] == [
        str(out / m / f"seed{s}" / "checkpoint") for m in ("snn", "ann") for s in (0, 1, 2)]
    assert condition[condition.index("--targets") + 1] == "8" and condition[condition.index("--episodes") + 1] == "20"
    assert str(out / "snn" / "seed0" / "checkpoint") in by_name["export-nir"]
    assert [stage.name for stage in stages][-1] == "latency"
    assert results.plan_env("Acrobot-v1", tiny_args(results, tmp_path)) is None  # no configs/acrobot.toml


def test_run_resumes_skips_what_is_up_to_date_and_keeps_its_time(results, tmp_path, monkeypatch):
    args = tiny_args(results, tmp_path, "--seeds", "0,1")
    ran = []

    def fake_stage(stage, env, log):
        ran.append(stage.name)
        for output in stage.outputs:  # what the command would write (train leaves a finished run alone)
            if not (stage.group == "train" and output.exists()):
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text("x")
        return 2.0

    monkeypatch.setattr(results, "_run_stage", fake_stage)
    first = results.run_env("CartPole-v1", args)
    assert ran == [stage.name for stage in results.plan_env("CartPole-v1", args)[1]]
    assert first["seconds"] == 2.0 * len(ran) and not any(s.get("reused") for s in first["stages"])

    ran.clear()
    second = results.run_env("CartPole-v1", args)
    assert ran == ["collect", "train-snn-seed0", "train-snn-seed1", "train-ann-seed0", "train-ann-seed1"]
    assert second["seconds"] == first["seconds"]  # skipped stages keep the time they took
    assert all(s["reused"] for s in second["stages"] if s["stage"] != "collect")

    ran.clear()
    os.utime(tmp_path / "results" / "cartpole" / "snn" / "seed1" / "checkpoint" / "model.safetensors",
             (2e9, 2e9))  # retrained: newer than what was computed from it
    results.run_env("CartPole-v1", args)
    assert [name for name in ran if not name.startswith(("collect", "train"))] == [
        "evaluate-snn-seed1", "evaluate-snn-fixed-seed1", "condition"]
    ran.clear()
    results.run_env("CartPole-v1", tiny_args(results, tmp_path, "--seeds", "0,1", "--force"))
    assert len(ran) == len(first["stages"])


def test_up_to_date_needs_every_output_newer_than_every_input(results, tmp_path):
    source, output = tmp_path / "in", tmp_path / "out"
    stage = results.Stage("x", ["true"], inputs=[source], outputs=[output])
    assert not results.up_to_date(stage)
    source.write_text("a")
    assert not results.up_to_date(stage)
    output.write_text("b")
    os.utime(source, (1e9, 1e9))
    os.utime(output, (1.5e9, 1.5e9))
    assert results.up_to_date(stage)
    os.utime(source, (2e9, 2e9))
    assert not results.up_to_date(stage)
    assert not results.up_to_date(results.Stage("train", ["true"], inputs=[source]))  # no outputs: always runs


def write_energy(folder: Path) -> dict:
    """energy.json as energy-report writes it: a real report (every cited Loihi profile against
    fp32 and int8, both accountings) of hand-made counts."""
    from spikingmind.energy.onnx_counts import OnnxCounts, OnnxNodeCounts
    from spikingmind.energy.profiles import load_profile
    from spikingmind.energy.report import Accounted, build_report
    from spikingmind.energy.snn_counts import LayerCounts, SNNCounts

    synapse = LayerCounts(name="syn", node_type="Conv1d", kind="synaptic", input_binary=True,
                          effective_acs=100, weight_reads=100, weights=100, nonzero_weights=100)
    neuron = LayerCounts(name="lif", node_type="LIF", kind="neuron", input_binary=False, neurons=10, neuron_updates=40,
                         neuron_updates_active=40, state_reads=40, state_writes=40, spikes=8, spike_rate=0.2)
    snn = SNNCounts(time_steps=4, decisions=1, layers=[synapse, neuron])
    ann = OnnxCounts(model="ann", input_shapes={"tokens": [1, 3, 7]}, nodes=[OnnxNodeCounts(
        name="/fc/MatMul", op_type="MatMul", macs=50_000, parameter_reads=50_000, activation_reads=10,
        activation_writes=10, parameters=50_000)])
    report = build_report([Accounted("decision_only", snn, ann), Accounted("full_window", snn, ann)],
                          [load_profile(p) for p in ("loihi", "loihi-sanafe", "loihi-kerasspiking")],
                          [load_profile(p) for p in ("cmos45nm-fp32", "cmos45nm-int8")])
    data = report.to_dict()
    (folder / "energy.json").write_text(json.dumps(data))
    return data


def test_energy_fields_of_the_summary_and_the_table(results, protocol_files):
    """Issue #13's summary fields: the SNN's energy per Loihi profile and fixed-point returns, the
    sweep front's cheapest ANN and SNN / int8 ratios computed from them; the table prices the
    SNN under every Loihi profile and prints every verdict."""
    tmp_path, folder, _ = protocol_files
    energy = write_energy(folder)
    write_eval(folder, "snn-fixed", 0, [480.0, 470.0])
    ablate = tmp_path / "ablate" / "cartpole"
    ablate.mkdir(parents=True)
    cheapest = {"config": "ANN K=1 w=8", "returns_by_seed": [500.0, 498.0, 499.0], "mean_return": 499.0,
                "energy_uj": {"cmos45nm-fp32": 0.02, "cmos45nm-int8": 0.004}}
    small_snn = {"config": "SNN T=4 K=1 w=16 e=0", "returns_by_seed": {"0": 480.0}, "mean_return": 480.0,
                 "spike_rate": 0.1, "energy_uj": {"loihi": 0.2, "loihi-sanafe": 0.3, "loihi-kerasspiking": 0.25}}
    (ablate / "front.json").write_text(json.dumps({"ann": {"cheapest_reaching_target": cheapest},
                                                   "snn": {"cheapest_reaching_target": small_snn},
                                                   "int8_profile": "cmos45nm-int8"}))
    found = results.env_results(tmp_path / "results", "CartPole-v1", ablate_dir=tmp_path / "ablate")
    record = results.summary_record("CartPole-v1", found)
    snn_uj = {entry["profile"]: entry["snn_total_pj"] / 1e6 for entry in energy["profiles"]}
    assert set(snn_uj) == {"loihi", "loihi-sanafe", "loihi-kerasspiking"}
    assert record["snn"]["energy_uj"] == snn_uj and record["snn"]["spike_rate"] == pytest.approx(0.2 / 1)
    assert record["snn"]["fixed_point_returns_by_seed"] == {"0": 475.0}
    fixed_row = cells(table_row(results.protocol_table("CartPole-v1", found, None),
                                "| SNN in Loihi fixed point (loihi-emulation) | "))
    assert fixed_row[1] == "475.0 ± 0.0 (1 of 3 seeds)" and fixed_row[2] == "475.0, not run, not run"
    assert record["ann_cheapest"]["config"] == "ANN K=1 w=8"
    assert record["ratio_snn_over_int8"] == {p: pytest.approx(e / 0.004) for p, e in snn_uj.items()}
    assert record["snn_cheapest"]["config"] == "SNN T=4 K=1 w=16 e=0"  # the front's, not the recommended one
    assert record["snn_cheapest"]["ratio_over_cheapest_int8"] == {p: pytest.approx(e / 0.004)
                                                                  for p, e in small_snn["energy_uj"].items()}
    assert record["energy_vs_twin"]["accounting"] == "decision_only"
    text = results.env_table("CartPole-v1", found, tmp_path, tmp_path / "figures")
    energy_table = text.split("| model | return, training seed 0 (unseen seeds) |")[1]
    row = cells(table_row(energy_table, "| SNN (spiking DT) | "))
    assert row[5:8] == [results.format_pj(energy["profiles"][i]["snn_total_pj"]) for i in range(3)]
    for verdict in energy["verdicts"]:
        assert f"- {verdict['statement']}." in text
    assert len(energy["verdicts"]) == 2


def test_portable_readers_line(results):
    row = {"reader": "norse", "version": "1.1.0", "dtype": "float32", "spike_mismatches": 0, "spike_values": 12345,
           "actions_agreeing": 40, "decisions": 40}
    line = results.portable_line({"readers": [row, {**row, "reader": "snntorch", "spike_mismatches": 3}]})
    assert "norse 1.1.0 (float32) 0 of 12,345 spikes differ, 40/40 actions agree" in line
    assert "snntorch 1.1.0 (float32) 3 of 12,345 spikes differ" in line
    assert results.portable_line(None) is None


def test_streaming_runs_are_summarised_beside_the_windowed_ones(results, protocol_files):
    """Issue #18's section: streaming returns over seeds beside the windowed models', the window
    recompute's cost ratios, energy against the streaming twin's int8 and the latency goal."""
    tmp_path, folder, _ = protocol_files
    stream = folder / "stream"
    for seed, returns in enumerate(([500.0, 490.0], [480.0, 480.0], [470.0, 500.0])):
        write_eval(stream, "snn", seed, returns)
    write_eval(stream, "ann", 0, [500.0, 500.0])
    energy = write_energy(stream)
    window = {"mean_return": 480.0, "spikes": 4000.0, "synaptic_ops": 90000.0, "energy_uj": {"loihi": 9.0}}
    (stream / "stream_vs_window.json").write_text(json.dumps({
        "window_steps": 20, "window_over_stream": {"spikes": 20.0, "synaptic_ops": 18.0, "energy": {"loihi": 15.0}},
        "stream": {"mean_return": 490.0, "spikes": 200.0, "synaptic_ops": 5000.0, "energy_uj": {"loihi": 0.6}},
        "window": window}))
    (stream / "latency.json").write_text(json.dumps({
        "results": {"snn-event": {"batch1": {"median_ms": 0.05}}, "ann-ort": {"batch1": {"median_ms": 0.1}}},
        "goal": {"ratio": 0.5, "met": True}}))
    for name, returns in (("lava", [416.0]), ("reference", [416.0])):
        (stream / "eval" / f"{name}.json").write_text(json.dumps({
            "episodes": 1, "decisions": 416, "returns": returns, "ms_per_decision_batch": 80.4}))
    found = results.env_results(tmp_path / "results", "CartPole-v1")
    record = results.summary_record("CartPole-v1", found)["streaming"]
    assert record["snn"]["returns_by_seed"] == {"0": 495.0, "1": 480.0, "2": 485.0}
    assert record["windowed_snn"]["mean_over_seeds"] == 485.0 and record["ann"]["missing_seeds"] == [1, 2]
    int8 = next(b["ann_total_pj"] for b in energy["baselines"] if b["profile"] == "cmos45nm-int8") / 1e6
    assert record["energy"]["ratio_snn_over_int8"]["loihi"] == pytest.approx(energy["profiles"][0]["snn_total_pj"]
                                                                             / 1e6 / int8)
    assert record["versus_window"]["window_over_stream"]["spikes"] == 20.0
    assert record["latency_batch1_ms"] == {"snn-event": 0.05, "ann-ort": 0.1}
    text = "\n".join(results.streaming_lines("CartPole-v1", found))
    assert "SNN 486.7 ± 6.2 over 3 seeds" in text and "ANN twin (key/value cache) 500.0 ± 0.0 over 1 seed" in text
    assert "200 vs 4,000 spikes (20.0x fewer), 5,000 vs 90,000 synaptic ops (18.0x fewer)" in text
    assert "snn-event / ann-ort = 0.50x (met: <= 1)" in text
    assert record["lava"]["same_return_as_reference"] is True
    assert ("Lava (floating point) drives 1 whole episode(s) closed loop, batch 1: 80 ms per decision over 416 "
            "decisions, return 416, the same return as the reference simulator on that seed.") in text
    assert results.streaming_lines("Acrobot-v1", results.env_results(tmp_path / "results", "Acrobot-v1")) == []


def test_a_stream_config_adds_the_streaming_runs_on_the_same_data(results, tmp_path):
    args = tiny_args(results, tmp_path)
    (tmp_path / "configs" / "cartpole-stream.toml").write_text('[train]\nsteps = 4\n[model]\nhistory = "stream"\n')
    settings, stages = results.plan_env("CartPole-v1", args)
    by_name = {stage.name: stage.command for stage in stages}
    stream = tmp_path / "results" / "cartpole" / "stream"
    for model in ("snn", "ann"):
        for seed in (0, 1, 2):
            train = by_name[f"stream-train-{model}-seed{seed}"]
            assert train[train.index("--dataset") + 1] == settings["dataset"]  # the windowed models' data
            assert train[train.index("--out") + 1] == str(stream / model / f"seed{seed}")
            assert by_name[f"stream-evaluate-{model}-seed{seed}"][2] == str(stream / model / f"seed{seed}" / "checkpoint")
    energy = by_name["stream-energy-report"]
    assert energy[energy.index("--baseline") + 1] == str(stream / "ann" / "seed0" / "checkpoint")
    assert {"stream-export-nir", "stream-vs-window", "stream-latency"} <= set(by_name)
    fixed = by_name["evaluate-snn-fixed-seed2"]
    assert fixed[fixed.index("--backend") + 1] == "loihi-emulation" and fixed[fixed.index("--seed") + 1] == "2"


def plan_with_config(results, tmp_path: Path, name: str, text: str, prefix: str) -> tuple[Path, dict]:
    """CartPole's stages by name once configs/cartpole-<name>.toml holds `text` (none start with
    `prefix` before); returns (that config, the stages)."""
    args = tiny_args(results, tmp_path)
    assert not any(stage.name.startswith(prefix) for stage in results.plan_env("CartPole-v1", args)[1])
    config = tmp_path / "configs" / f"cartpole-{name}.toml"
    config.write_text(text)
    return config, {stage.name: stage for stage in results.plan_env("CartPole-v1", args)[1]}


def test_a_finetune_config_fine_tunes_every_seeds_offline_checkpoint(results, tmp_path):
    config, by_name = plan_with_config(results, tmp_path, "finetune", "[finetune]\nepisodes = 4\nbatch_episodes = 2\n",
                                       "finetune")
    out = tmp_path / "results" / "cartpole"
    for model in ("snn", "ann"):
        for seed in (0, 1, 2):
            tune = by_name[f"finetune-{model}-seed{seed}"]
            command = tune.command
            assert command[2] == str(out / model / f"seed{seed}" / "checkpoint")  # the offline kept checkpoint
            assert command[command.index("--config") + 1] == str(config)
            assert command[command.index("--seed") + 1] == str(seed)
            run = out / "finetune" / model / f"seed{seed}"
            assert command[command.index("--out") + 1] == str(run) and tune.group == "train"
            evaluate = by_name[f"finetune-evaluate-{model}-seed{seed}"].command
            assert evaluate[2] == str(run / "checkpoint")
            assert evaluate[evaluate.index("--seed") + 1] == str(seed)  # the offline model's unseen seeds
    fixed = by_name["finetune-evaluate-snn-fixed-seed1"].command
    assert fixed[fixed.index("--backend") + 1] == "loihi-emulation"
    condition = by_name["finetune-condition"].command  # the conditioning sweep again, of the fine-tuned models
    assert [arg for arg in condition if arg.endswith("checkpoint")] == [
        str(out / "finetune" / m / f"seed{s}" / "checkpoint") for m in ("snn", "ann") for s in (0, 1, 2)]
    assert condition[condition.index("--json") + 1] == str(out / "finetune" / "conditioning.json")


def write_finetuned_kept(folder: Path, model: str, seed: int, update: int, val_return: float) -> None:
    run = folder / "finetune" / model / f"seed{seed}" / "checkpoint"
    run.mkdir(parents=True)
    config = {"algo": "reinforce", "episodes": 64, "batch_episodes": 32, "lr": 3e-4, "action_std": 0.15, "temperature": 0.5,
              "eval_episodes": 10, "seed": seed}
    (run / "checkpoint.json").write_text(json.dumps({"finetune": {"config": config, "metrics": {
        "best_update": update, "updates": 2, "episodes": 64, "env_steps": 9000, "start_greedy_return": 400.0,
        "best_greedy_return": val_return, "validation_seeds": [2_000_000_000, 2_000_000_009]}}}))


def test_finetuned_rows_and_summary_beside_the_offline_ones(results, protocol_files):
    tmp_path, folder, experts = protocol_files
    found = results.env_results(tmp_path / "results", "CartPole-v1")
    untuned = results.env_table("CartPole-v1", found, tmp_path, tmp_path / "figures")
    assert "fine-tuned" not in untuned and "after fine-tuning" not in untuned
    assert results.summary_record("CartPole-v1", found)["finetuned"] is None
    for seed, returns in enumerate(([500.0, 500.0], [490.0, 500.0], [500.0, 496.0])):
        write_eval(folder / "finetune", "snn", seed, returns)
        write_finetuned_kept(folder, "snn", seed, 2, 499.0)
    write_eval(folder / "finetune", "snn-fixed", 0, [480.0, 500.0])
    write_eval(folder / "finetune", "ann", 0, [300.0, 500.0])
    (folder / "finetune" / "conditioning.json").write_text(json.dumps(conditioning_record()))
    write_png(folder / "finetune" / "conditioning.png", 9)
    found = results.env_results(tmp_path / "results", "CartPole-v1")
    text = results.env_table("CartPole-v1", found, tmp_path, tmp_path / "figures")
    tuned = cells(table_row(text, "| SNN (spiking DT), fine-tuned online (REINFORCE) | "))
    assert tuned[1] == "497.7 ± 2.1 (3 of 3 seeds)" and tuned[2] == "500.0, 495.0, 498.0"
    assert tuned[4] == "update 2 (499.0), update 2 (499.0), update 2 (499.0)"
    assert cells(table_row(text, "| SNN fine-tuned, in Loihi fixed point | "))[1] == "490.0 ± 0.0 (1 of 3 seeds)"
    assert cells(table_row(text, "| ANN twin, fine-tuned online (REINFORCE) | "))[1] == "400.0 ± 0.0 (1 of 3 seeds)"
    assert "sampling temperature 0.5" in text and "`configs/cartpole-finetune.toml`" in text
    assert "issue #14's bar after fine-tuning: **met** (497.7, +12.7 over offline)." in text
    assert "bar for the spiking DT, mean over training seeds >= 495: **not met** (485.0" in text  # offline unchanged
    assert "- return conditioning after fine-tuning (4 requested returns" in text
    assert "![CartPole-v1: achieved against requested return, fine-tuned](figures/cartpole-finetuned-conditioning.png)" \
        in text
    assert (tmp_path / "figures" / "cartpole-finetuned-conditioning.png").read_bytes() == \
        (folder / "finetune" / "conditioning.png").read_bytes()
    assert (tmp_path / "figures" / "cartpole-conditioning.png").read_bytes() == (folder / "conditioning.png").read_bytes()
    record = results.summary_record("CartPole-v1", found)["finetuned"]
    assert record["conditioning"]["snn"]["correlation"] == pytest.approx(1.0)
    assert record["algorithm"] == "reinforce"
    assert record["goal_met"] is True and record["snn"]["returns_by_seed"] == {"0": 500.0, "1": 495.0, "2": 498.0}
    assert record["snn"]["fixed_point_returns_by_seed"] == {"0": 490.0}
    assert record["snn"]["kept_update_by_seed"]["1"]["validation_return"] == 499.0
    assert record["ann"]["missing_seeds"] == [1, 2]


def test_keep_missing_keeps_the_parts_whose_files_are_gone_and_renders_the_rest(results, protocol_files):
    """A fresh clone has no runs/: re-rendering after re-running one env keeps every other part."""
    import shutil

    tmp_path, folder, experts = protocol_files
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.START}\nold\n{results.END}\ntail\n")
    summary = tmp_path / "figures" / "summary.json"
    write_ablation(tmp_path / "ablate")
    args = ["--readme", str(readme), "--figures-dir", str(tmp_path / "figures"), "--experts", str(experts),
            *[arg for name in ("results", "demo", "ablate", "finetune", "energy-sweep", "demo-spread")
              for arg in (f"--{name}-dir", str(tmp_path / name))], "--third-party", str(tmp_path / "none.json")]
    results.main(args)
    before = results.parts_of(results.readme_section(readme))
    cartpole_before = json.loads(summary.read_text())["envs"]["CartPole-v1"]
    assert "485.0 ± 5.0 (2 of 3 seeds)" in before["env CartPole-v1"]
    assert "### Ablation and energy front, CartPole-v1" in before["ablation CartPole-v1"]

    shutil.rmtree(tmp_path / "results")  # the clone: CartPole's runs and the ablation are gone, Acrobot re-run
    shutil.rmtree(tmp_path / "ablate")
    write_eval(tmp_path / "results" / "acrobot", "snn", 0, [-70.0, -68.0], target=-60.0)
    results.main([*args, "--keep-missing"])
    text = readme.read_text()
    after = results.parts_of(results.readme_section(readme))
    assert text.startswith("intro\n") and text.endswith("tail\n")
    assert after["env CartPole-v1"] == before["env CartPole-v1"]
    assert after["ablation CartPole-v1"] == before["ablation CartPole-v1"]
    assert "-69.0 ± 0.0 (1 of 3 seeds)" in after["env Acrobot-v1"]  # rendered from the files here
    assert after["env MountainCar-v0"] == before["env MountainCar-v0"] and "*not run*" in after["env MountainCar-v0"]
    assert "*Kept from the previous render (`--keep-missing`: their result files are not here): " \
           "`env CartPole-v1`, `ablation CartPole-v1`.*" in text
    records = json.loads(summary.read_text())["envs"]
    assert records["CartPole-v1"] == cartpole_before
    assert records["Acrobot-v1"]["snn"]["returns_by_seed"] == {"0": -69.0}

    results.main(args)  # without the flag a part without files is "not run" again
    after = results.parts_of(results.readme_section(readme))
    assert "*not run*" in after["env CartPole-v1"] and "ablation CartPole-v1" not in after
    assert json.loads(summary.read_text())["envs"]["CartPole-v1"]["snn"] is None
    assert "Kept from the previous render" not in readme.read_text()


def test_keep_missing_refuses_an_unreadable_summary_and_writes_nothing(results, tmp_path):
    import subprocess

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.START}\nold\n{results.END}\ntail\n")
    summary = tmp_path / "figures" / "summary.json"
    summary.parent.mkdir()
    summary.write_text('{"envs": ')  # cut short
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "results.py"), "--keep-missing", "--readme",
                           str(readme), "--figures-dir", str(summary.parent), "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and str(summary) in done.stderr and "'envs'" in done.stderr
    assert readme.read_text().endswith("old\n" + results.END + "\ntail\n") and summary.read_text() == '{"envs": '


def test_keep_missing_prices_a_re_run_env_against_the_front_its_summary_recorded(results, protocol_files):
    """Re-running one env without its energy sweep's files keeps the sweep's front (summary.json's
    ann_cheapest / snn_cheapest) and prices the new SNN against it, instead of dropping #13's fields."""
    tmp_path, folder, _ = protocol_files
    energy = write_energy(folder)
    ablate = tmp_path / "ablate" / "cartpole"
    ablate.mkdir(parents=True)
    cheapest = {"config": "ANN K=1 w=8", "returns_by_seed": [500.0, 498.0, 499.0], "mean_return": 499.0,
                "energy_uj": {"cmos45nm-fp32": 0.02, "cmos45nm-int8": 0.004}}
    (ablate / "front.json").write_text(json.dumps({"ann": {"cheapest_reaching_target": cheapest},
                                                   "snn": {"cheapest_reaching_target": None},
                                                   "int8_profile": "cmos45nm-int8"}))
    with_front = results.env_results(tmp_path / "results", "CartPole-v1", ablate_dir=tmp_path / "ablate")
    previous = results.summary_records({"CartPole-v1": with_front})
    assert previous["CartPole-v1"]["ann_cheapest"]["config"] == "ANN K=1 w=8"

    write_energy(folder)  # the re-run: new result files here, no sweep
    rerun = results.env_results(tmp_path / "results", "CartPole-v1", ablate_dir=tmp_path / "none")
    assert results.summary_records({"CartPole-v1": rerun})["CartPole-v1"]["ann_cheapest"] is None  # no flag
    record = results.summary_records({"CartPole-v1": rerun}, previous=previous)["CartPole-v1"]
    assert record["ann_cheapest"]["config"] == "ANN K=1 w=8"
    assert record["ann_cheapest"]["energy_uj"] == cheapest["energy_uj"] and record["snn_cheapest"] is None
    snn_uj = {entry["profile"]: entry["snn_total_pj"] / 1e6 for entry in energy["profiles"]}
    assert record["ratio_snn_over_int8"] == {p: pytest.approx(e / 0.004) for p, e in snn_uj.items()}
    assert results.recorded_front({"ann_cheapest": None, "snn_cheapest": None}) is None


def test_a_condition_config_trains_its_own_models_on_its_own_data_and_sweeps_them(results, tmp_path):
    """configs/<env>-condition.toml: the models trained for return conditioning, on the dataset its
    [data] names (not the recommended config's), each seed evaluated on its unseen seeds, then swept."""
    config, by_name = plan_with_config(results, tmp_path, "condition",
                                       '[train]\nsteps = 2\n\n[data]\nepisodes = 12\nmix = "expert=0.5,capped=0.5"\n',
                                       "condition-config")
    collect = by_name["condition-config-collect"].command
    assert collect[collect.index("--episodes") + 1] == "12" and collect[collect.index("--mix") + 1] == "expert=0.5,capped=0.5"
    dataset = by_name["train-snn-seed0"].command
    out = tmp_path / "results" / "cartpole" / "condition"
    for model in ("snn", "ann"):
        for seed in (0, 1, 2):
            train = by_name[f"condition-config-train-{model}-seed{seed}"]
            command = train.command
            assert command[command.index("--config") + 1] == str(config) and train.group == "train"
            assert command[command.index("--dataset") + 1] != dataset[dataset.index("--dataset") + 1]
            assert command[command.index("--seed") + 1] == str(seed)
            assert command[command.index("--out") + 1] == str(out / model / f"seed{seed}")
            evaluate = by_name[f"condition-config-evaluate-{model}-seed{seed}"].command
            assert evaluate[2] == str(out / model / f"seed{seed}" / "checkpoint")
            assert evaluate[evaluate.index("--seed") + 1] == str(seed)
    condition = by_name["condition-config-condition"].command
    assert [arg for arg in condition if arg.endswith("checkpoint")] == [
        str(out / m / f"seed{s}" / "checkpoint") for m in ("snn", "ann") for s in (0, 1, 2)]
    assert condition[condition.index("--json") + 1] == str(out / "conditioning.json")


def test_condition_config_part_and_summary_beside_the_recommended_ones(results, protocol_files):
    tmp_path, folder, _ = protocol_files
    found = results.env_results(tmp_path / "results", "CartPole-v1")
    assert results.conditioning_config_section("CartPole-v1", found, tmp_path, tmp_path / "figures") is None
    assert results.summary_record("CartPole-v1", found)["conditioning_config"] is None
    trained = folder / "condition"
    for seed, returns in enumerate(([400.0, 420.0], [380.0, 400.0])):
        write_eval(trained, "snn", seed, returns)
    write_eval(trained, "ann", 0, [450.0, 450.0])
    (trained / "conditioning.json").write_text(json.dumps(conditioning_record()))
    write_png(trained / "conditioning.png", 7)
    found = results.env_results(tmp_path / "results", "CartPole-v1")
    text = results.conditioning_config_section("CartPole-v1", found, tmp_path, tmp_path / "figures")
    assert text.startswith("#### CartPole-v1: models trained for return conditioning")
    assert "`configs/cartpole-condition.toml` trains a spiking DT and its ANN twin for return conditioning" in text
    assert "they return: SNN (spiking DT) 400.0 ± 10.0 over 2 seeds; ANN twin 450.0 ± 0.0 over 1 seed." in text
    assert "- return conditioning of the models trained for it (4 requested returns" in text
    assert "figures/cartpole-condition-config-conditioning.png)" in text
    assert (tmp_path / "figures" / "cartpole-condition-config-conditioning.png").read_bytes() == \
        (trained / "conditioning.png").read_bytes()
    section = results.render(tmp_path / "results", ["CartPole-v1"], tmp_path, demo_dir=tmp_path / "demo",
                             figures_dir=tmp_path / "figures", ablate_dir=None, experts_path=None,
                             third_party_path=None, demo_spread_dir=tmp_path / "spread")
    parts = results.parts_of(section)
    assert parts["condition-config CartPole-v1"] == text
    assert "- return conditioning (4 requested returns" in parts["env CartPole-v1"]  # the recommended models' sweep
    assert list(parts).index("condition-config CartPole-v1") == list(parts).index("env CartPole-v1") + 1
    record = results.summary_record("CartPole-v1", found)["conditioning_config"]
    assert record["config"] == "configs/cartpole-condition.toml"
    assert record["snn"]["returns_by_seed"] == {"0": 410.0, "1": 390.0} and record["ann"]["missing_seeds"] == [1, 2]
    assert record["conditioning"]["snn"]["correlation"] == pytest.approx(1.0)


def test_keep_missing_merges_a_conditioning_only_run_into_the_kept_env(results, protocol_files):
    """`--run --stages condition-config` on an env whose other files are not here: its entry and
    part are kept, the models trained for conditioning are fresh, and the other way round."""
    import shutil

    tmp_path, folder, _ = protocol_files
    found = results.env_results(tmp_path / "results", "CartPole-v1")
    previous = results.summary_records({"CartPole-v1": found})
    shutil.rmtree(tmp_path / "results")
    trained = tmp_path / "results" / "cartpole" / "condition"
    write_eval(trained, "snn", 0, [400.0, 420.0])
    only = results.env_results(tmp_path / "results", "CartPole-v1")
    merged = results.summary_records({"CartPole-v1": only}, previous=previous)["CartPole-v1"]
    assert merged["snn"] == previous["CartPole-v1"]["snn"]  # kept
    assert merged["conditioning_config"]["snn"]["returns_by_seed"] == {"0": 410.0}  # fresh
    assert previous["CartPole-v1"]["conditioning_config"] is None  # the kept entry itself is not changed
    shutil.rmtree(trained)  # and a re-run env without them keeps the recorded ones
    write_eval(tmp_path / "results" / "cartpole", "snn", 0, [480.0, 490.0])
    again = results.summary_records({"CartPole-v1": results.env_results(tmp_path / "results", "CartPole-v1")},
                                    previous={"CartPole-v1": merged})["CartPole-v1"]
    assert again["snn"]["returns_by_seed"] == {"0": 485.0}
    assert again["conditioning_config"] == merged["conditioning_config"]


def test_run_stages_filter_runs_only_the_named_stages_and_keeps_the_others_record(results, tmp_path, monkeypatch):
    args = tiny_args(results, tmp_path)
    (tmp_path / "configs" / "cartpole-condition.toml").write_text('[data]\nepisodes = 12\nmix = "expert=1"\n')
    out = tmp_path / "results" / "cartpole"
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"stages": [{"stage": "train-snn-seed0", "command": "x", "seconds": 9.0}]}))
    ran = []
    monkeypatch.setattr(results, "_run_stage", lambda stage, env, log: ran.append(stage.name) or 1.0)
    args.stages = "condition-config"
    results.run_env("CartPole-v1", args)
    assert ran and all(name.startswith("condition-config") for name in ran)
    recorded = {s["stage"]: s for s in json.loads((out / "run.json").read_text())["stages"]}
    assert recorded["train-snn-seed0"]["seconds"] == 9.0 and set(ran) <= set(recorded)
    args.stages = "nothing-like-it"
    from spikingmind.errors import ConfigError

    with pytest.raises(ConfigError, match="--stages: no stage of CartPole-v1 starts with nothing-like-it"):
        results.run_env("CartPole-v1", args)
