"""Ablation sweeps: the manifest resumes, a failing run is recorded and the sweep goes on,
and the Ray executor gives the same table as the local process pool."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from spikingmind.errors import ConfigError
from spikingmind.workflows.sweep import SweepConfig, comparable_runs_outside, plan_runs, run_sweep, tabled_runs
from spikingmind.workflows.sweep_results import TIMING_COLUMNS

TINY_TRAIN = {"steps": 80, "batch_size": 16, "lr": 3e-3, "eval_every": 80, "eval_episodes": 1, "warmup_steps": 2,
              "model": {"width": 16, "n_blocks": 1, "mlp_ratio": 2}}
#: CartPole's uniformly random policy returns about 22; the tiny runs imitate the expert
#: (70% of the data) well past that.
LEARNED_RETURN = 60.0


def tiny_sweep(**overrides) -> SweepConfig:
    """T = 0 is invalid: ModelConfig raises inside that run, which must fail on its own."""
    values = dict(env_id="CartPole-v1", time_steps=(2, 0), context=(2,), seeds=1, train=TINY_TRAIN,
                  default_time_steps=2, default_context=2, dataset_episodes=12, eval_episodes=3,
                  energy_max_decisions=8, latency_calls=3)
    values.update(overrides)
    return SweepConfig(**values)


def read_rows(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def deterministic(rows: list[dict]) -> list[dict]:
    """The table without the columns that measure the machine's load."""
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, datasets_root):
    folder = tmp_path_factory.mktemp("sweep") / "local"
    summary = run_sweep(folder, tiny_sweep(), executor="local", workers=2)
    return folder, summary


def by_model(rows, model, t):
    return next(r for r in rows if r["model"] == model and int(r["time_steps"]) == t)


def test_failing_run_is_recorded_as_failed_and_the_others_finish(local_sweep):
    folder, summary = local_sweep
    assert (summary.planned, summary.done, summary.failed) == (3, 2, 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    statuses = {(r["model"], r["time_steps"]): r for r in manifest["runs"]}
    failed = statuses[("snn", 0)]
    assert failed["status"] == "failed" and "time_steps must be >= 1" in failed["error"]
    assert failed["result"] is None
    assert statuses[("snn", 2)]["status"] == statuses[("ann", 2)]["status"] == "done"
    rows = read_rows(summary.runs_csv)
    assert by_model(rows, "snn", 0)["mean_return"] == ""  # failed: empty, never 0
    snn = by_model(rows, "snn", 2)
    assert float(snn["mean_return"]) >= LEARNED_RETURN  # measured: 142 (SNN, T = 2) and 482 (ANN)
    assert float(by_model(rows, "ann", 2)["mean_return"]) >= LEARNED_RETURN
    assert float(snn["spikes_per_decision"]) > 0
    assert float(snn["energy_pj_loihi"]) > 0 and snn["energy_pj_cmos45nm-fp32"] == ""
    # decision-only below the whole window, on both sides, under every profile
    assert 0 < float(snn["energy_pj_loihi-sanafe"]) < float(snn["energy_full_pj_loihi-sanafe"])
    ann = by_model(rows, "ann", 2)
    assert 0 < float(ann["energy_pj_cmos45nm-int8"]) < float(ann["energy_full_pj_cmos45nm-int8"])
    front = json.loads((folder / "front.json").read_text())
    assert front["env_id"] == "CartPole-v1" and front["accounting"] == "decision_only"
    assert (folder / "plots" / "pareto.png").stat().st_size > 0
    aggregated = read_rows(summary.summary_csv)
    assert {(r["model"], r["time_steps"], r["done"], r["failed"]) for r in aggregated} == {
        ("snn", "2", "1", "0"), ("snn", "0", "0", "1"), ("ann", "2", "1", "0")}
    assert all(path.stat().st_size > 0 for path in summary.plots)


def test_rerun_skips_finished_runs_and_retries_failed_ones(local_sweep):
    folder, _ = local_sweep
    results = sorted((folder / "runs").glob("*/result.json"))
    done_before = {p: p.stat().st_mtime_ns for p in results if json.loads(p.read_text())["status"] == "done"}
    events = []
    summary = run_sweep(folder, tiny_sweep(), executor="local", workers=2, retry_failed=False,
                        on_event=lambda kind, entry: events.append((kind, entry["time_steps"])))
    assert summary.skipped == 3 and sorted(events) == [("skip", 0), ("skip", 2), ("skip", 2)]
    summary = run_sweep(folder, tiny_sweep(), executor="local", workers=1,
                        on_event=lambda kind, entry: events.append((kind, entry["model"], entry["time_steps"])))
    assert summary.skipped == 2 and ("failed", "snn", 0) in events and ("start", "snn", 2) not in events
    assert {p: p.stat().st_mtime_ns for p in done_before} == done_before  # finished runs untouched


def test_a_smaller_grid_in_the_folder_says_how_many_comparable_runs_its_tables_leave_out(local_sweep):
    folder, _ = local_sweep
    smaller = tiny_sweep(time_steps=(2,))  # the folder also holds this sweep's T = 0 run
    this_grid = run_sweep(folder, smaller, executor="local", workers=1)
    assert (this_grid.skipped, this_grid.tabled, this_grid.outside_grid) == (2, 2, 1)
    whole = run_sweep(folder, smaller, executor="local", workers=1, whole_folder=True)
    assert (whole.tabled, whole.outside_grid, whole.left_out) == (3, 0, 0)


def test_ray_executor_gives_the_same_table_as_the_local_one(local_sweep, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    folder, local = local_sweep
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_sweep(tmp_path / "ray", tiny_sweep(), executor="ray")
    finally:
        ray.shutdown()
    assert (remote.done, remote.failed) == (local.done, local.failed)
    assert deterministic(read_rows(remote.runs_csv)) == deterministic(read_rows(local.runs_csv))
    summary_timing = {f"{c}_{s}" for c in TIMING_COLUMNS for s in ("mean", "std")}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in summary_timing} for r in rows]  # noqa: E731
    assert strip(read_rows(remote.summary_csv)) == strip(read_rows(local.summary_csv))


def test_axes_grid_crosses_at_the_defaults_and_run_ids_follow_the_config():
    cfg = SweepConfig(time_steps=(1, 2, 4, 8), context=(1, 5, 10, 20), seeds=3, default_time_steps=4,
                      default_context=20)
    # (T, K, width, energy weight): without width or weight axes both stay at the config's (64, 0)
    assert cfg.points() == [(t, k, 64, 0.0) for t, k in ((1, 20), (2, 20), (4, 20), (8, 20), (4, 1), (4, 5), (4, 10))]
    runs = plan_runs(cfg, "some-data-v0")
    assert len(runs) == (7 + 4) * 3 and len({r["run_id"] for r in runs}) == len(runs)
    assert plan_runs(cfg, "some-data-v0") == runs  # stable ids: a re-run finds its runs
    full = SweepConfig(time_steps=(1, 2), context=(1, 5), grid="full", ann=False)
    assert [(t, k) for t, k, _, _ in full.points()] == [(1, 1), (1, 5), (2, 1), (2, 5)]


def test_energy_axes_and_the_ann_family():
    """The issue's grid: T x energy weight x width for the SNN, widths x K for the ANN family."""
    cfg = SweepConfig(time_steps=(1, 2, 4), context=(5,), widths=(32, 64), energy_weights=(0, 0.5, 2, 8),
                      ann_widths=(16, 32, 64), ann_context=(1, 5), grid="full", seeds=3)
    points = cfg.points()
    assert len(points) == 3 * 2 * 4 and (4, 5, 64, 8.0) in points and (1, 5, 32, 0.0) in points
    assert cfg.ann_points() == [(1, 16), (1, 32), (1, 64), (5, 16), (5, 32), (5, 64)]
    runs = plan_runs(cfg, "some-data-v0")
    assert len(runs) == (24 + 6) * 3
    snn = next(r for r in runs if r["model"] == "snn" and r["energy_weight"] == 2.0 and r["width"] == 32)
    assert snn["train"]["energy_weight"] == 2.0 and snn["train"]["model"]["width"] == 32
    assert all(r["train"]["energy_weight"] == 0.0 for r in runs if r["model"] == "ann")
    axes = SweepConfig(time_steps=(1, 2, 4), context=(5,), widths=(32, 64), energy_weights=(0, 0.5, 2, 8),
                       default_time_steps=2, default_context=5)
    assert axes.points() == [(1, 5, 32, 0.0), (2, 5, 32, 0.0), (4, 5, 32, 0.0), (2, 5, 64, 0.0),
                             (2, 5, 32, 0.5), (2, 5, 32, 2.0), (2, 5, 32, 8.0)]
    with pytest.raises(ConfigError, match="energy-weights"):
        SweepConfig(energy_weights=(-1.0,))


def test_whole_folder_tables_add_the_grids_of_earlier_invocations_trained_alike():
    """--whole-folder: a front grown over invocations covers every run of the folder trained and
    evaluated like this grid's (other T, K, width, weight and seeds added), and leaves out runs
    with other training settings, which one table row must not mix."""
    first = plan_runs(SweepConfig(time_steps=(4,), context=(5,), seeds=2, default_time_steps=4), "data-v0")
    second = plan_runs(SweepConfig(time_steps=(1, 2), context=(1,), widths=(16,), seeds=2, default_time_steps=4,
                                   default_context=1), "data-v0")
    longer = plan_runs(SweepConfig(time_steps=(2,), context=(1,), seeds=2, train={"steps": 3000}), "data-v0")
    other_data = plan_runs(SweepConfig(time_steps=(2,), context=(1,), seeds=2), "other-v0")
    folder = {e["run_id"]: e for e in first + second + longer + other_data}  # what Manifest.open accumulates
    assert tabled_runs(list(folder.values()), second, whole_folder=False) == (second, 0)
    kept, left_out = tabled_runs(list(folder.values()), second, whole_folder=True)
    assert {e["run_id"] for e in kept} == {e["run_id"] for e in first + second}
    assert left_out == len(longer) + len(other_data) and len(kept) > len(second)
    # without --whole-folder the command says how many comparable runs the tables leave out
    assert comparable_runs_outside(list(folder.values()), second) == len(first)
    assert comparable_runs_outside(list(folder.values()), first + second) == 0


def test_front_picks_the_cheapest_config_of_each_family_that_reaches_the_target():
    from spikingmind.workflows.sweep_results import front

    def row(model, w, ret, energies):
        return {"model": model, "time_steps": 2, "context": 1, "width": w, "energy_weight": 0.0, "done": 3,
                "mean_return_mean": ret, "mean_return_std": 1.0, "returns_by_seed": {"0": ret},
                **{f"energy_pj_{p}_mean": e for p, e in energies.items()}}
    snn_profiles, ann_profiles = ("a", "b"), ("fp32", "int8")
    summary = [row("snn", 64, 480, {"a": 5e6, "b": 9e6}), row("snn", 32, 476, {"a": 3e6, "b": 10e6}),
               row("snn", 16, 400, {"a": 1e6, "b": 1e6}),  # cheap but below the target
               row("ann", 64, 500, {"fp32": 8e6, "int8": 4e6}), row("ann", 8, 490, {"fp32": 1e6, "int8": 2e6})]
    chosen = front(summary, snn_profiles, ann_profiles, target=475, seeds=3)
    # the SNN is ranked by its most expensive profile: width 64 (max 9 uJ) beats width 32 (max 10 uJ)
    assert chosen["snn"]["cheapest_reaching_target"]["width"] == 64
    assert chosen["ann"]["cheapest_reaching_target"]["width"] == 8
    assert chosen["ratio_snn_over_int8"] == pytest.approx({"a": 2.5, "b": 4.5})
    none = front(summary, snn_profiles, ann_profiles, target=499, seeds=3)
    assert none["snn"]["cheapest_reaching_target"] is None and none["ratio_snn_over_int8"] is None
    assert none["snn"]["closest_to_target"]["mean_return"] == 480


def test_front_lines_tell_a_family_left_out_of_the_sweep_from_one_that_misses_the_target():
    from spikingmind.workflows.sweep_results import front, front_lines

    snn_only = [{"model": "snn", "time_steps": 4, "context": 20, "width": 64, "energy_weight": 2.0, "done": 3,
                 "mean_return_mean": 494.4, "mean_return_std": 7.8, "returns_by_seed": {"0": 494.4},
                 "energy_pj_a_mean": 2e7}]
    lines = front_lines({**front(snn_only, ("a",), ("fp32", "int8"), target=475, seeds=3), "target_return": 475})
    assert lines[1] == "no ANN config in this sweep has a result"  # an SNN-only sweep (ablate --no-ann)
    lines = front_lines({**front(snn_only, ("a",), ("fp32", "int8"), target=499, seeds=3), "target_return": 499})
    assert lines[0] == "no SNN config reaches it (closest: SNN T=4 K=20 w=64 e=2, 494.4)"


def test_cli_rejects_a_bad_value_list_in_one_line(tmp_path):
    from spikingmind.cli import app

    result = CliRunner().invoke(app, ["ablate", "--time-steps", "1,x", "--out", str(tmp_path / "s")])
    assert result.exit_code != 0
    assert "--time-steps: 'x' is not an integer" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()
