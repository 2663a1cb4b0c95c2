"""`spikingmind export --target lava` and `evaluate --backend lava` end to end, on a tiny
untrained CartPole checkpoint (real Lava in the Python 3.10 sidecar)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spikingmind.cli import app
from spikingmind.errors import RunExistsError
from spikingmind.model import ModelConfig
from spikingmind.workflows.evaluate import evaluate
from tests.support.checkpoints import CARTPOLE_OBS_STD, untrained

ENV = "CartPole-v1"
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return untrained(tmp_path_factory.mktemp("lava-cli") / "ckpt",
                     ModelConfig(width=8, n_blocks=1, context_length=2, time_steps=4), ENV, obs_std=CARTPOLE_OBS_STD)


@pytest.fixture(scope="module")
def bundle(lava_python, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("lava-cli-out") / "bundle"
    result = runner.invoke(app, ["export", str(checkpoint), "--target", "lava", "-o", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    pytest.lava_export_output = result.output
    return out


def test_export_writes_a_verified_bundle_and_prints_the_agreement(bundle):
    output = pytest.lava_export_output
    assert "Lava agreement" in output and "ms per decision" in output
    agreement = json.loads((bundle / "agreement.json").read_text())
    assert agreement["passed"] is True
    assert agreement["decisions"] == 20 and agreement["decision_inputs"]["decisions"] == 20
    assert agreement["float_mismatches"] == 0 and agreement["fixed_emulation_mismatches"] == 0
    assert all(row["float_vs_reference"] == 0 and row["fixed_vs_emulation"] == 0 for row in agreement["layers"])
    assert sum(row["total"] for row in agreement["layers"] if row["kind"] != "output") > 0
    assert agreement["action_float_vs_reference"] == 1.0
    assert sorted(p.name for p in bundle.iterdir()) == [
        "agreement.json", "lava_plan.json", "manifest.json", "model.nir", "params_fixed.npz", "params_float.npz"]


def test_existing_bundle_without_force_is_an_error_and_untouched(bundle, checkpoint):
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    result = runner.invoke(app, ["export", str(checkpoint), "--target", "lava", "-o", str(bundle)])
    assert result.exit_code == RunExistsError.exit_code and "already exists" in result.output, result.output
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert [p.name for p in bundle.parent.iterdir()] == ["bundle"]  # no temp folder left behind


def test_evaluate_with_lava_equals_the_reference_return(bundle, tmp_path):
    out = tmp_path / "lava.json"
    result = runner.invoke(app, ["evaluate", str(bundle), "--backend", "lava", "--episodes", "1", "--json", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    lava_result = json.loads(out.read_text())
    reference = evaluate(bundle / "model.nir", episodes=1)
    assert lava_result["backend"] == "lava-floating_pt"
    assert lava_result["returns"] == reference["returns"] and lava_result["lengths"] == reference["lengths"]
    assert lava_result["lava_decisions"] == lava_result["decisions"] == reference["decisions"]
    assert lava_result["lava_ms_per_decision"] > 0
