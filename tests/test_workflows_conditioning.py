"""The return-conditioning sweep: the grid the dataset implies, what it measures, the verdict
rule, strict JSON and the plot, through the library and the CLI (`spikingmind condition`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spikingmind.cli import app
from spikingmind.data import dataset_dir
from spikingmind.errors import ConfigError, DatasetError
from spikingmind.model import ModelConfig
from spikingmind.seeds import evaluation_seeds
from spikingmind.workflows.conditioning import (
    RULE, ConditioningRule, fit, plan_sweep, plot_conditioning, summarise_model, summary, sweep_conditioning,
    target_grid, write_json)
from spikingmind.workflows.evaluate import evaluate
from tests.support.checkpoints import TINY_MODEL, untrained

PNG = b"\x89PNG\r\n\x1a\n"


def strict_load(path: Path):
    """json.load that refuses NaN and infinities (what allow_nan=False guarantees)."""
    def refuse(name):
        raise AssertionError(f"{path}: non-strict JSON constant {name}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def dataset_returns(dataset: str) -> list[float]:
    meta = json.loads((dataset_dir(dataset) / "spikingmind.json").read_text())
    return [episode["return"] for episode in meta["episodes"]]


@pytest.fixture(scope="module")
def swept(snn_checkpoint, ann_checkpoint):
    """The tiny SNN and ANN (training seed 1, tiny-cartpole-v0) at 3 targets + 1, 2 episodes each."""
    return sweep_conditioning([ann_checkpoint, snn_checkpoint], targets=3, episodes=2)


def test_target_grid_spans_the_dataset_and_adds_one_above_the_best():
    grid, in_range = target_grid([-200.0, -150.0, -100.0, -120.0], targets=5)
    assert grid == [-200.0, -175.0, -150.0, -125.0, -100.0, -90.0]  # + 10% of the range above the best
    assert in_range == [True] * 5 + [False]
    assert target_grid([0.0, 10.0], targets=2, above_best=0.5)[0] == [0.0, 10.0, 15.0]
    with pytest.raises(DatasetError, match="every dataset episode has return 500"):
        target_grid([500.0, 500.0])
    with pytest.raises(ConfigError, match="--targets must be >= 2"):
        target_grid([0.0, 1.0], targets=1)
    with pytest.raises(ConfigError, match="--above-best must be positive"):
        target_grid([0.0, 1.0], above_best=0.0)


def test_fit_measures_correlation_and_slope():
    assert fit([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx({"correlation": 1.0, "slope": 2.0})
    falling = fit([0, 1, 2, 3], [9, 7, 8, 1])
    assert falling["correlation"] < -0.7 and falling["slope"] < 0
    assert fit([0, 1, 2], [5, 5, 5]) == {"correlation": None, "slope": 0.0}  # ignores the request: undefined r


def test_rule_says_when_a_model_conditions_and_when_the_snn_does_so_as_clearly():
    rule = ConditioningRule()
    assert rule.conditions(0.95, 0.8) and rule.conditions(0.9, 0.5)
    assert not rule.conditions(0.89, 1.0) and not rule.conditions(0.99, 0.49) and not rule.conditions(None, 1.0)
    ann = {"correlation": 0.99, "slope": 1.0}
    assert rule.as_clearly({"correlation": 0.95, "slope": 0.8}, ann)
    assert not rule.as_clearly({"correlation": 0.93, "slope": 0.8}, ann)  # r more than 0.05 below the twin's
    assert not rule.as_clearly({"correlation": 0.97, "slope": 0.7}, ann)  # slope below 0.75x the twin's
    assert rule.as_clearly({"correlation": 0.95, "slope": 0.6}, {"correlation": None, "slope": 0.0})
    assert not rule.as_clearly({"correlation": 0.95, "slope": 0.4}, {"correlation": None, "slope": 0.0})
    assert "0.9" in rule.text() and "0.75x" in rule.text()


def test_scores_come_from_the_mean_over_seeds_over_the_datasets_range_only():
    targets, in_range = [0.0, 50.0, 100.0, 110.0], [True, True, True, False]

    def run(seed, means):
        return {"seed": seed, "achieved": [{"target": t, "mean": m} for t, m in zip(targets, means)]}

    # seed 0 tracks the request, seed 1 ignores it; both collapse above the best (not scored)
    model = summarise_model([run(0, [0, 50, 100, -999]), run(1, [60, 60, 60, -999])], targets, in_range)
    assert model["mean"] == [30.0, 55.0, 80.0, -999.0]
    assert model["std_over_seeds"] == [30.0, 5.0, 20.0, 0.0]
    assert model["correlation"] == pytest.approx(1.0) and model["slope"] == pytest.approx(0.5)
    assert model["correlation_by_seed"][0] == pytest.approx(1.0) and model["correlation_by_seed"][1] is None
    assert model["slope_by_seed"] == pytest.approx([1.0, 0.0])
    assert model["conditions"] is RULE.conditions(1.0, 0.5) is True


def test_sweep_uses_the_grid_of_the_checkpoints_dataset(swept, cartpole_dataset):
    returns = dataset_returns(cartpole_dataset)
    low, high = min(returns), max(returns)
    assert swept["dataset"]["id"] == cartpole_dataset and swept["dataset"]["n_episodes"] == len(returns)
    assert swept["targets"] == pytest.approx([low, (low + high) / 2, high, high + 0.1 * (high - low)])
    assert swept["in_range"] == [True, True, True, False]
    assert list(swept["models"]) == ["snn", "ann"]  # SNN first whatever the order given
    for model in swept["models"].values():
        assert model["seeds"] == [1] and len(model["mean"]) == 4
        (run,) = model["runs"]
        assert run["episode_seeds"] == evaluation_seeds(2, 1)  # evaluate --seed <training seed>
        assert [row["target"] for row in run["achieved"]] == swept["targets"]
    assert isinstance(swept["snn_as_clearly_as_ann"], bool)


def test_sweep_returns_are_what_evaluate_gives_at_each_target(swept, snn_checkpoint):
    run = swept["models"]["snn"]["runs"][0]
    for row in (run["achieved"][0], run["achieved"][-1]):
        scores = evaluate(snn_checkpoint, episodes=2, seed=1, target_return=row["target"])
        assert row["returns"] == scores["returns"] and row["mean"] == scores["mean_return"]


def test_sweep_writes_strict_json_and_a_plot(swept, tmp_path):
    record = json.loads(json.dumps(swept))
    record["models"]["snn"]["correlation"] = None  # an undefined r is null, never NaN
    write_json(tmp_path / "c.json", record)
    assert strict_load(tmp_path / "c.json") == record
    with pytest.raises(ValueError):
        write_json(tmp_path / "nan.json", {**record, "episodes": float("nan")})
    assert not (tmp_path / "nan.json").exists()
    plot_conditioning(record, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.png"]  # no temp files left
    short = summary(record)
    assert short["snn"]["correlation"] is None and short["targets"] == record["targets"]
    assert set(short) >= {"snn", "ann", "snn_as_clearly_as_ann", "rule"}


def test_cli_writes_json_and_plot_and_refuses_to_overwrite(snn_checkpoint, ann_checkpoint, tmp_path):
    out, plot = tmp_path / "c.json", tmp_path / "c.png"
    args = ["condition", str(snn_checkpoint), str(ann_checkpoint), "--targets", "2", "--episodes", "1",
            "--json", str(out), "--plot", str(plot)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = strict_load(out)
    assert len(record["targets"]) == 3 and record["episodes"] == 1
    assert plot.read_bytes().startswith(PNG)
    assert "SNN conditions as clearly as the ANN twin" in result.output and "rule:" in result.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "already exists; pass --force" in again.output
    assert plan_sweep([snn_checkpoint, ann_checkpoint], targets=2).episodes(1) == 6


def copy_with_meta(checkpoint: Path, folder: Path, change) -> Path:
    """A copy of a checkpoint folder whose checkpoint.json went through `change(meta)`."""
    shutil.copytree(checkpoint, folder)
    meta = json.loads((folder / "checkpoint.json").read_text())
    change(meta)
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    return folder


def test_bad_inputs_are_one_line_errors(snn_checkpoint, tmp_path, cartpole_dataset):
    untrained_ckpt = untrained(tmp_path / "untrained", ModelConfig(**TINY_MODEL))  # no training record
    elsewhere = copy_with_meta(snn_checkpoint, tmp_path / "elsewhere",
                               lambda meta: meta["dataset"].update(id="other-v0", content_hash="1" * 64))
    reseeded = copy_with_meta(elsewhere, tmp_path / "reseeded", lambda meta: meta["train"].update(seed=2))
    cases = [
        ([str(snn_checkpoint), str(elsewhere)], "trained on different datasets"),
        ([str(snn_checkpoint), str(snn_checkpoint)], "both snn with training seed 1"),
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(untrained_ckpt)], "names no model kind, training seed"),
        ([str(reseeded)], "dataset 'other-v0' not found"),
        ([str(snn_checkpoint), "--episodes", "0"], "--episodes must be >= 1"),
        ([str(snn_checkpoint), "--targets", "1"], "--targets must be >= 2"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["condition", *args])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert result.output.startswith("error: ") and result.output.count("\n") == 1  # one line, no progress bar
    # a --dataset with other data than the checkpoint's (same id, another content hash)
    copy = tmp_path / "datasets" / cartpole_dataset
    shutil.copytree(dataset_dir(cartpole_dataset), copy)
    meta = json.loads((copy / "spikingmind.json").read_text())
    meta["content_hash"] = "0" * 64
    (copy / "spikingmind.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="differs from the"):
        sweep_conditioning([snn_checkpoint], targets=2, episodes=1, dataset=str(copy))
    meta["episodes"] = [{**e, "return": 10.0} for e in meta["episodes"]]
    meta["content_hash"] = json.loads((dataset_dir(cartpole_dataset) / "spikingmind.json").read_text())["content_hash"]
    (copy / "spikingmind.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="no range of returns"):
        sweep_conditioning([snn_checkpoint], targets=2, episodes=1, dataset=str(copy))
    assert np.isfinite(dataset_returns(cartpole_dataset)).all()
