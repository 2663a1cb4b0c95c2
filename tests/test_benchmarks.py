"""benchmarks/*.py stay runnable: each on a tiny config, checked for the fields its JSON promises."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--width", "16", "--blocks", "1", "--context", "4", "--time-steps", "2"]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_streaming_latency_benchmark_times_every_backend_and_states_the_goal(tmp_path):
    out = tmp_path / "latency-streaming.json"
    report = load("latency_streaming").main([*TINY, "--rounds", "2", "--calls", "2", "--nir-calls", "1",
                                             "--warmup", "1", "--out", str(out)])
    assert json.loads(out.read_text())["goal"] == report["goal"]
    assert report["config"]["snn_model"]["history"] == report["config"]["ann_model"]["history"] == "stream"
    assert set(report["results"]) == {"snn-pytorch", "snn-event", "snn-nir", "ann-pytorch", "ann-ort"}
    counts = {name: r["batch1"]["n"] for name, r in report["results"].items()}
    assert counts == {"snn-pytorch": 4, "snn-event": 4, "snn-nir": 2, "ann-pytorch": 4, "ann-ort": 4}
    median = {name: r["batch1"]["median_ms"] for name, r in report["results"].items()}
    assert all(value > 0 for value in median.values())
    goal = report["goal"]
    assert goal["ratio"] == pytest.approx(median["snn-event"] / median["ann-ort"])
    assert goal["met"] == (goal["ratio"] <= goal["snn_event_over_ann_ort_batch1_at_most"])


@pytest.mark.parametrize("kind,mode", load("memory").CASES)
def test_memory_measurement_runs_each_case(kind, mode):
    memory = load("memory")
    args = memory.parse_args([*TINY, "--steps", "2", "--batch", "4", "--decisions", "3", "--child", kind, mode])
    result = memory.child(args)
    assert (result["kind"], result["mode"]) == (kind, mode) and result["parameters"] > 0
    assert set(result) >= {"seconds", "peak_rss_mib_after_setup", "peak_rss_mib", "peak_rss_mib_above_setup"}


def test_memory_peaks_are_measured_in_a_fresh_process_per_case():
    """Each case runs in its own process and reports its own peak: a bigger workload shows a
    bigger peak, and the parent's size does not leak in (ru_maxrss inherits it across fork+exec)."""
    import numpy as np

    memory = load("memory")
    ballast = np.ones(50_000_000)  # 400 MB resident in this parent: a child must not report it as its own
    big, small = (memory.measure(memory.parse_args([*TINY, "--steps", "2", "--batch", str(batch)]), "snn", "train")
                  for batch in (512, 2))
    del ballast
    assert big["batch"] == 512 and small["batch"] == 2
    assert big["peak_rss_mib_above_setup"] > small["peak_rss_mib_above_setup"] + 20  # MiB: activations of 256x the batch


def test_latency_benchmark_times_every_backend_and_states_the_goal(tmp_path):
    out = tmp_path / "latency.json"
    report = load("latency").main([*TINY, "--rounds", "1", "--calls", "2", "--batch", "4", "--batch-calls", "1",
                                   "--warmup", "1", "--out", str(out)])
    assert json.loads(out.read_text())["goal"] == report["goal"]
    expected = {"snn-pytorch", "snn-pytorch-all", "snn-ort", "snn-ort-decision", "snn-event", "ann-pytorch", "ann-ort",
                "ann-ort-decision"}
    assert set(report["results"]) == expected
    assert all(r["batch1"]["n"] == 2 and r["batch1"]["median_ms"] > 0 for r in report["results"].values())
    goal = report["goal"]
    assert goal["spiking_backend"].startswith("snn-")
    assert goal["ratio"] == pytest.approx(report["results"][goal["spiking_backend"]]["batch1"]["median_ms"]
                                          / report["results"]["ann-ort"]["batch1"]["median_ms"])
    assert goal["met"] == (goal["ratio"] <= 2.0)


def test_target_ceiling_plays_the_expert_then_asks_each_episode_for_its_return(snn_checkpoint, tmp_path,
                                                                              monkeypatch):
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.experts.wrappers import play_episode
    from spikingmind.rollout import run_episodes

    benchmark = load("target_ceiling")
    asked = []  # the target of every run: CartPole's expert makes 500, the default target, so spy on them

    def spy(policy, seeds, target_return=None, **kwargs):
        asked.append(target_return)
        return run_episodes(policy, seeds, target_return, **kwargs)

    monkeypatch.setattr(benchmark, "run_episodes", spy)
    out = tmp_path / "target_ceiling.json"
    report = benchmark.main([str(snn_checkpoint), "--episodes", "2", "--seed", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    row, = report["results"]
    ckpt = load_checkpoint(snn_checkpoint)
    env = ckpt.spec.make_env()
    assert row["expert"]["returns"] == [play_episode(env, ckpt.spec.expert, seed)[0] for seed in row["seeds"]]
    assert asked == [None, row["expert"]["returns"]]
    assert row["default_target"]["target"] == ckpt.spec.target_return
    assert row["recovered_by_oracle"] == pytest.approx(row["oracle_targets"]["mean"] - row["default_target"]["mean"])
    assert row["shortfall"] == pytest.approx(row["expert"]["mean"] - row["default_target"]["mean"])
    assert report["mean_over_checkpoints"]["oracle_targets"] == row["oracle_targets"]["mean"]


def test_target_ceiling_plays_each_checkpoint_on_its_training_seeds_evaluation_seeds(snn_checkpoint):
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.seeds import evaluation_seeds

    row = load("target_ceiling").measure(snn_checkpoint, episodes=1)
    training_seed = load_checkpoint(snn_checkpoint).meta["train"]["seed"]
    assert row["seed"] == training_seed and row["seeds"] == evaluation_seeds(1, training_seed)


def test_target_ceiling_needs_an_expert(snn_checkpoint, tmp_path):
    from spikingmind.envs import get_env_spec
    from spikingmind.errors import ConfigError

    spec = get_env_spec("CartPole-v1")
    with pytest.raises(ConfigError, match="has no expert"):
        load("target_ceiling").expert_returns(dataclasses.replace(spec, expert=None, default_mix="random=1"), [0])


def test_clonability_fits_the_expert_then_labels_the_imitators_own_states(tmp_path, monkeypatch):
    clonability = load("clonability")
    labelled = []  # the actor of every labelled episode
    play = clonability.play

    def spy(env, actor, expert, seed, observations, labels):
        labelled.append((actor, seed))
        return play(env, actor, expert, seed, observations, labels)

    monkeypatch.setattr(clonability, "play", spy)
    out = tmp_path / "clonability.json"
    report = clonability.main(["--env", "CartPole-v1", "--episodes", "2", "--steps", "30", "--dagger-iterations", "2",
                               "--dagger-episodes", "1", "--eval-episodes", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    rounds = report["rounds"]
    assert [r["iteration"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["steps_of_data"] == 1000  # the CartPole expert balances both episodes to the limit
    assert rounds[0]["steps_of_data"] < rounds[1]["steps_of_data"] < rounds[2]["steps_of_data"]
    assert [r["mlp_return_while_labelled"] is None for r in rounds] == [True, False, False]
    expert = clonability.get_env_spec("CartPole-v1").expert
    assert [actor is expert for actor, _ in labelled] == [True, True, False, False]
    assert all(isinstance(actor, clonability.Imitator) for actor, _ in labelled[2:])
    assert len({seed for _, seed in labelled}) == 4  # every labelled episode starts somewhere new
    assert all(seed not in report["eval_seeds"] for _, seed in labelled)
    assert all(0.0 <= r["fit"] <= 1.0 and len(r["returns"]) == 2 for r in rounds)


def test_clonability_fits_an_mlp_of_the_width_and_batch_asked_for(tmp_path, monkeypatch):
    clonability = load("clonability")
    fits = []
    fit = clonability.Imitator.fit

    def spy(self, observations, actions, steps, batch=128):
        fits.append((steps, batch))
        return fit(self, observations, actions, steps, batch)

    monkeypatch.setattr(clonability.Imitator, "fit", spy)
    built = []
    monkeypatch.setattr(clonability.Imitator, "__call__",
                        lambda self, obs: built.append(self.net[0].out_features) or 0)
    clonability.main(["--env", "CartPole-v1", "--episodes", "1", "--steps", "3", "--batch", "5", "--width", "7",
                      "--dagger-iterations", "0", "--eval-episodes", "1", "--out", str(tmp_path / "c.json")])
    assert fits == [(3, 5)] and set(built) == {7}


def test_clonability_imitates_continuous_actions_inside_the_action_box():
    import numpy as np

    clonability = load("clonability")
    spec = clonability.get_env_spec("Pendulum-v1")
    imitator = clonability.Imitator(spec, seed=0)
    observations = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    actions = np.where(observations[:, :1] > 0, 2.0, -2.0).astype(np.float32)  # the bounds of the box
    assert imitator.fit(observations, actions, steps=300) < 0.5  # scaled MSE: a sign is easy to learn
    taken = np.array([imitator(obs) for obs in observations])
    assert taken.dtype == np.float32 and taken.shape == (64, 1)
    assert np.all(np.abs(taken) <= 2.0)
    assert np.mean(np.sign(taken) == np.sign(actions)) > 0.9


def test_clonability_refuses_a_fit_that_ends_non_finite():
    import numpy as np

    from spikingmind.errors import DivergedError

    clonability = load("clonability")
    imitator = clonability.Imitator(clonability.get_env_spec("CartPole-v1"), seed=0)
    observations = np.zeros((8, 4), np.float32)
    observations[3, 0] = np.inf  # one corrupt observation poisons the weights
    with pytest.raises(DivergedError, match="non-finite"):
        imitator.fit(observations, np.zeros(8, np.int64), steps=5, batch=8)


@pytest.mark.parametrize("script,args,message", [
    ("target_ceiling", ["/nonexistent/checkpoint"], "error: checkpoint /nonexistent/checkpoint does not exist"),
    ("clonability", ["--env", "NoSuch-v0"], "error: unknown environment 'NoSuch-v0'")])
def test_a_benchmark_given_bad_input_says_so_in_one_line_and_exits_2(tmp_path, script, args, message):
    import subprocess
    import sys

    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args, "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1
    assert not out.exists()


def test_clonability_clones_the_heuristic_when_asked(tmp_path, monkeypatch):
    from spikingmind.experts import HEURISTIC_EXPERTS

    clonability = load("clonability")
    labellers = []
    play = clonability.play

    def spy(env, actor, expert, seed, observations, labels):
        labellers.append(expert)
        return play(env, actor, expert, seed, observations, labels)

    monkeypatch.setattr(clonability, "play", spy)
    report = clonability.main(["--env", "CartPole-v1", "--heuristic", "--episodes", "1", "--steps", "5",
                               "--dagger-iterations", "1", "--dagger-episodes", "1", "--eval-episodes", "1",
                               "--out", str(tmp_path / "c.json")])
    assert labellers == [HEURISTIC_EXPERTS["CartPole-v1"]] * 2
    assert report["expert"]["policy"] == "cartpole_heuristic"
