"""Fixed point beside float: `evaluate --backend loihi-emulation` and `compare_fixed_point`
report both on the same seeds, reruns are identical, and the agreement measure can say no."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from spikingmind.cli import app
from spikingmind.policy import Policy
from spikingmind.seeds import evaluation_seeds
from spikingmind.workflows.evaluate import evaluate
from spikingmind.workflows.fixed_point import compare_closed_loop, compare_fixed_point

EPISODES, MAX_STEPS = 3, 80


@pytest.fixture(scope="module")
def nir_file(snn_checkpoint, tmp_path_factory):
    from spikingmind.export.nir import checkpoint_to_graph, write_graph

    return write_graph(checkpoint_to_graph(snn_checkpoint), tmp_path_factory.mktemp("fixed") / "model.nir")


def test_evaluate_json_has_fixed_and_float_side_by_side_and_a_rerun_is_identical(nir_file, tmp_path):
    out = tmp_path / "fixed.json"
    result = CliRunner().invoke(app, ["evaluate", str(nir_file), "--backend", "loihi-emulation", "--episodes",
                                      str(EPISODES), "--max-steps", str(MAX_STEPS), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "float (nir-reference) on the same seeds" in " ".join(result.output.split())
    data = json.loads(out.read_text())
    side = data["fixed_point"]
    assert data["backend"] == side["fixed_backend"] == "loihi-emulation"
    assert side["seeds"] == data["seeds"] == evaluation_seeds(EPISODES, 0)
    assert side["fixed_returns"] == data["returns"]
    assert data["spikes_per_decision"] > 0 and data["emulation_ms_per_decision"] > 0
    assert data["decisions"] == side["action_agreement"]["fixed_decisions"]  # stats of its own run only
    graded = data["fixed_point_limits"]["graded_input"]  # per host-fed population: width 16 x L = 12 values
    assert graded and {entry["total"] for entry in graded.values()} == {data["decisions"] * 16 * 12}
    # the float side is the reference simulator's own evaluation on those seeds
    float_alone = evaluate(nir_file, episodes=EPISODES, backend="reference", max_steps=MAX_STEPS)
    assert side["float_backend"] == float_alone["backend"] and side["float_returns"] == float_alone["returns"]
    assert side["return_gap"] == pytest.approx(np.mean(side["fixed_returns"]) - np.mean(side["float_returns"]))
    assert 0.5 <= side["action_agreement"]["on_fixed_decisions"] <= 1.0
    # a rerun of the fixed point gives the same returns and agreement
    again = evaluate(nir_file, episodes=EPISODES, backend="loihi-emulation", max_steps=MAX_STEPS)
    assert again["returns"] == data["returns"] and again["lengths"] == data["lengths"]
    assert again["fixed_point"]["action_agreement"] == side["action_agreement"]


def test_compare_fixed_point_runs_any_source(snn_checkpoint, nir_file):
    from_checkpoint = compare_fixed_point(snn_checkpoint, episodes=2, max_steps=40)
    from_nir = compare_fixed_point(nir_file, episodes=2, max_steps=40)
    for key in ("fixed_returns", "float_returns", "action_agreement", "seeds"):
        assert from_checkpoint[key] == from_nir[key], key
    assert from_nir["env_id"] == "CartPole-v1" and from_nir["fixed_stats"]["fixed_point_limits"]["u_wrapped"] == 0


class _Always(Policy):
    """Another policy's interface, always the same action."""

    def __init__(self, like: Policy, action: int):
        self.spec, self.layout, self.norm, self.decode, self.meta = like.spec, like.layout, like.norm, like.decode, {}
        self.action, self.backend = action, f"always-{action}"

    def act(self, windows):
        return np.full(len(windows), self.action)


def test_agreement_is_one_for_a_policy_against_itself_and_less_against_another(nir_file):
    from spikingmind.export.nir import NIRPolicy

    reference = NIRPolicy.from_file(nir_file)
    seeds = evaluation_seeds(2, 5)
    same = compare_closed_loop(reference, NIRPolicy.from_file(nir_file), seeds, max_steps=30)
    assert same.agreement_on_fixed == same.agreement_on_float == 1.0
    assert same.fixed_run.returns == same.float_run.returns
    other = compare_closed_loop(_Always(reference, 0), reference, seeds, max_steps=30)
    chosen = np.concatenate([reference.act(w) for w in _windows(reference, seeds)])
    assert other.agreement_on_float == pytest.approx(np.mean(chosen == 0))
    assert other.agreement_on_float < 1.0 and other.fixed_backend == "always-0"


def _windows(policy, seeds):
    from spikingmind.rollout import run_episodes

    seen = []
    run_episodes(policy, seeds, on_decision=seen.append, max_steps=30)
    return seen
