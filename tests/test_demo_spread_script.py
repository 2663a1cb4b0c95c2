"""scripts/demo_spread.py: `make demo`'s spiking DT over training seeds, the issue's criteria on
every seed, and the same-machine check against the demo's own checkpoint."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def spread():
    spec = importlib.util.spec_from_file_location("demo_spread_script", ROOT / "scripts" / "demo_spread.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def write_eval(spread, out: Path, seed: int, target: float, mean: float) -> None:
    path = spread.eval_path(out, seed, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mean_return": mean, "std_return": 2.0, "min_return": mean - 5,
                                "max_return": mean + 5, "episodes": 20}))


def test_every_seed_trains_with_its_seed_and_evaluates_on_the_demos_seeds(spread, tmp_path):
    steps = dict(spread.commands(tmp_path, [0, 1, 2], ROOT / "configs" / "cartpole.toml"))
    demo = " ".join((ROOT / "scripts" / "demo.sh").read_text().replace("\\\n", " ").split())
    assert " ".join(spread.DEMO_COLLECT) in demo  # the demo's own dataset
    for seed in (0, 1, 2):
        train = steps[f"train-seed{seed}"]
        assert train[train.index("--seed") + 1] == str(seed) and train[train.index("--model") + 1] == "snn"
        for target in ("500", "100"):
            evaluate = steps[f"evaluate-seed{seed}-target{target}"]
            assert evaluate[evaluate.index("--seed") + 1] == "0"  # only the training seed differs
            assert evaluate[evaluate.index("--target-return") + 1] == target
            assert evaluate[evaluate.index("--episodes") + 1] == "20"


def test_criteria_hold_on_every_seed_or_not_at_all(spread, tmp_path):
    for seed, (at500, at100) in enumerate(((500.0, 104.0), (480.0, 76.0), (475.0, 126.0))):
        write_eval(spread, tmp_path, seed, 500.0, at500)
        write_eval(spread, tmp_path, seed, 100.0, at100)
    record = spread.summarise(tmp_path, [0, 1, 2])
    at500, at100 = record["by_target"]["500"], record["by_target"]["100"]
    assert at500["met_on_every_seed"] is True and at500["mean_over_seeds"] == pytest.approx(485.0)
    assert [row["met"] for row in at100["by_seed"].values()] == [True, True, False]  # 126 is 26% off
    assert at100["met_on_every_seed"] is False
    assert at500["std_over_seeds"] == pytest.approx(10.8012, abs=1e-4)
    spread.eval_path(tmp_path, 2, 100.0).unlink()
    partial = spread.summarise(tmp_path, [0, 1, 2])["by_target"]["100"]
    assert partial["by_seed"]["2"] is None and partial["met_on_every_seed"] is None  # not every seed run
    json.dumps(record, allow_nan=False)


def test_seed0_is_compared_bit_for_bit_with_the_demos_checkpoint(spread, snn_checkpoint, tmp_path):
    ours, demo = tmp_path / "spread" / "snn" / "seed0" / "checkpoint", tmp_path / "demo" / "snn" / "checkpoint"
    shutil.copytree(snn_checkpoint, ours)
    assert spread.demo_identity(tmp_path / "spread", tmp_path / "demo") is None  # no demo run
    shutil.copytree(snn_checkpoint, demo)
    assert spread.demo_identity(tmp_path / "spread", tmp_path / "demo") is True
    from safetensors.torch import load_file, save_file

    import torch

    weights = load_file(str(demo / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point())
    flat = weights[name].clone().view(-1)
    flat[0] = torch.nextafter(flat[0], flat[0] + 1)  # one value, its last bit
    weights[name] = flat.view(weights[name].shape)
    save_file(weights, str(demo / "model.safetensors"))
    assert spread.demo_identity(tmp_path / "spread", tmp_path / "demo") is False
    meta = json.loads((demo / "checkpoint.json").read_text())
    meta["train"]["steps"] += 1
    (demo / "checkpoint.json").write_text(json.dumps(meta))
    assert spread.demo_identity(tmp_path / "spread", tmp_path / "demo") is None  # another config: not comparable
