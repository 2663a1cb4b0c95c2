"""Training: deterministic, resumable, never overwrites; checkpoints round trip without pickle."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.support.checkpoints import tiny_train_config
from spikingmind.checkpoint import load_checkpoint
from spikingmind.envs import get_env_spec
from spikingmind.errors import CheckpointError, ConfigError, RunExistsError
from spikingmind.policy import TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds
from spikingmind.train import TrainConfig, load_config_file, load_data_config, train


def _weights(checkpoint):
    return load_file(str(checkpoint / "model.safetensors"))


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_a_same_seed_rerun_gives_identical_weights_and_another_seed_does_not(tmp_path, cartpole_dataset, kind):
    """Part of the results protocol: a rerun on the same machine with the same seed gives the
    same checkpoint, bit for bit (weights, BatchNorm statistics, the validation history)."""
    cfg = tiny_train_config(cartpole_dataset, kind, steps=8, eval_every=4)
    first, first_metrics = train(tmp_path / "a", cfg)
    second, second_metrics = train(tmp_path / "b", cfg)
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys()
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    strip = lambda history: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in history]  # noqa: E731
    assert strip(first_metrics["history"]) == strip(second_metrics["history"])
    assert first_metrics["best_step"] == second_metrics["best_step"]
    reseeded, _ = train(tmp_path / "c", tiny_train_config(cartpole_dataset, kind, steps=8, eval_every=4, seed=2))
    c = _weights(reseeded)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the comparison can tell runs apart


def test_checkpoint_selection_plays_validation_seeds_only(tmp_path, cartpole_dataset, monkeypatch):
    """Every episode `train` plays to pick its checkpoint (recorded at env.reset, whatever calls
    it) is on a validation seed: none on an evaluation seed of any training seed the results use
    (`scripts/results.py`: seeds 0, 1, 2, 20 evaluation episodes each), none on a data seed. The
    checkpoint kept is the evaluation step with the best validation return (later on ties)."""
    from spikingmind.envs import EnvSpec
    from spikingmind.seeds import validation_seeds

    played: list[int] = []
    make_env = EnvSpec.make_env

    def recording_make_env(self, **kwargs):
        env = make_env(self, **kwargs)
        reset = env.reset

        def recorded_reset(*args, seed=None, **more):
            played.append(seed)
            return reset(*args, seed=seed, **more)

        env.reset = recorded_reset
        return env

    monkeypatch.setattr(EnvSpec, "make_env", recording_make_env)
    cfg = tiny_train_config(cartpole_dataset, steps=6, eval_every=2, eval_episodes=3)
    checkpoint, metrics = train(tmp_path / "run", cfg)

    assert len(played) == 3 * 3  # three evaluations of three episodes
    assert set(played) == set(validation_seeds(3))
    evaluation = {seed for training_seed in (0, 1, 2) for seed in evaluation_seeds(20, training_seed)}
    assert not set(played) & evaluation
    data_seeds = json.loads((checkpoint / "checkpoint.json").read_text())["dataset"]["episode_seeds"]
    assert not set(played) & set(data_seeds)
    returns = [entry["val_return"] for entry in metrics["history"] if "val_return" in entry]
    best = max(returns)
    later_best = max(i for i, r in enumerate(returns) if r == best)
    assert metrics["best_step"] == (later_best + 1) * cfg.eval_every and metrics["best_val_return"] == best


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, cartpole_dataset):
    cfg = tiny_train_config(cartpole_dataset, steps=8, eval_every=4)
    straight, _ = train(tmp_path / "straight", cfg)

    def interrupt(entry):
        if entry["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", cfg, on_progress=interrupt)
    assert not (tmp_path / "resumed" / "checkpoint").exists()
    assert json.loads((tmp_path / "resumed" / "resume" / "state.json").read_text())["step"] == 4
    resumed, metrics = train(tmp_path / "resumed", cfg)
    assert metrics["steps"] == 8
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_is_left_alone_and_other_config_refused(tmp_path, cartpole_dataset):
    cfg = tiny_train_config(cartpole_dataset, steps=4, eval_every=4)
    checkpoint, _ = train(tmp_path / "run", cfg)
    before = (checkpoint / "model.safetensors").read_bytes()
    _, metrics = train(tmp_path / "run", cfg)
    assert metrics["status"] == "already finished"
    with pytest.raises(RunExistsError, match="differs in: .*steps"):
        train(tmp_path / "run", tiny_train_config(cartpole_dataset, steps=5, eval_every=5))
    assert (checkpoint / "model.safetensors").read_bytes() == before


def test_checkpoint_round_trip_in_a_fresh_process_gives_identical_actions(snn_checkpoint, tmp_path):
    ckpt = load_checkpoint(snn_checkpoint)
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(16, ckpt.layout.n_tokens, ckpt.layout.n_features)).astype(np.float32)
    np.save(tmp_path / "windows.npy", windows)
    ours = TorchPolicy(ckpt).outputs(windows)
    script = (
        "import sys, numpy as np\n"
        "from spikingmind.checkpoint import load_checkpoint\n"
        "from spikingmind.policy import TorchPolicy\n"
        f"policy = TorchPolicy(load_checkpoint(r'{snn_checkpoint}'))\n"
        f"np.save(r'{tmp_path / 'theirs.npy'}', policy.outputs(np.load(r'{tmp_path / 'windows.npy'}')))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    theirs = np.load(tmp_path / "theirs.npy")
    np.testing.assert_array_equal(ours, theirs)
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


def test_checkpoint_records_provenance(snn_checkpoint):
    meta = json.loads((snn_checkpoint / "checkpoint.json").read_text())
    assert meta["dataset"]["id"] == "tiny-cartpole-v0" and len(meta["dataset"]["content_hash"]) == 64
    assert meta["versions"]["torch"].startswith("2.13")
    assert meta["train"]["seed"] == 1 and meta["model"]["kind"] == "snn"
    assert "history" in meta["metrics"]
    assert meta["train"]["return_gain"] is None  # the env's: CartPole's EnvSpec.return_gain
    assert meta["normalization"]["return_gain"] == get_env_spec("CartPole-v1").return_gain == 4.0
    assert load_checkpoint(snn_checkpoint).norm.return_gain == 4.0


def test_config_return_gain_overrides_the_envs(tmp_path, cartpole_dataset):
    cfg = tiny_train_config(cartpole_dataset, return_gain=1.5, steps=2, eval_every=2)
    checkpoint, _ = train(tmp_path / "run", cfg)
    assert load_checkpoint(checkpoint).norm.return_gain == 1.5


def test_other_format_version_is_refused_with_both_versions(snn_checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(snn_checkpoint, copy)
    meta = json.loads((copy / "checkpoint.json").read_text())
    meta["format_version"] = 0
    (copy / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 0, .* reads version 2"):
        load_checkpoint(copy)


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "model.safetensors").write_bytes(b"garbage"), "cannot read weights"),
    (lambda p: (p / "model.safetensors").unlink(), "missing"),
    (lambda p: (p / "checkpoint.json").write_text("{not json"), "corrupt JSON"),
])
def test_damaged_checkpoints_give_clear_errors(snn_checkpoint, tmp_path, damage, message):
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(snn_checkpoint, copy)
    damage(copy)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(copy)


def test_evaluation_seeds_are_disjoint_from_training_seeds(snn_checkpoint):
    meta = json.loads((snn_checkpoint / "checkpoint.json").read_text())
    assert not set(meta["dataset"]["episode_seeds"]) & set(evaluation_seeds(50, 0))


def test_closed_loop_episodes_are_reproducible(snn_checkpoint):
    ckpt = load_checkpoint(snn_checkpoint)
    first = run_episodes(TorchPolicy(ckpt), evaluation_seeds(2, 0))
    second = run_episodes(TorchPolicy(ckpt), evaluation_seeds(2, 0))
    assert first.returns == second.returns and first.decisions == sum(first.lengths)


def test_bad_config_values_are_named(cartpole_dataset):
    with pytest.raises(ConfigError, match="train.steps"):
        tiny_train_config(cartpole_dataset, steps=0)
    with pytest.raises(ConfigError, match="unknown train keys: learning_rate"):
        tiny_train_config(cartpole_dataset, learning_rate=1.0)
    with pytest.raises(ConfigError, match="train.return_gain"):
        tiny_train_config(cartpole_dataset, return_gain=0.0)


@pytest.mark.parametrize("table,fragment", [
    ("episode = 100", "unknown [data] keys episode (expected episodes, mix)"),
    ("episodes = 0", "data.episodes must be an integer >= 1, got 0"),
    ("episodes = 1.5", "data.episodes must be an integer >= 1, got 1.5"),
    ('mix = "expert=0.7,oracle=0.3"', "data.mix: unknown policy 'oracle'"),
    ("mix = 3", "data.mix must be a string"),
])
def test_bad_data_table_is_named_with_its_file(tmp_path, table, fragment):
    path = tmp_path / "env.toml"
    path.write_text(f"[train]\nsteps = 10\n\n[data]\n{table}\n")
    for load in (load_config_file, load_data_config):
        with pytest.raises(ConfigError) as error:
            load(path)
        assert str(error.value).startswith(f"{path}: ") and fragment in str(error.value)


def test_data_table_is_read_apart_from_the_training_config(tmp_path):
    path = tmp_path / "env.toml"
    path.write_text('[train]\nsteps = 10\n\n[data]\nepisodes = 150\nmix = "expert=0.3,capped=0.45,random=0.25"\n')
    assert load_config_file(path) == {"steps": 10}
    assert load_data_config(path) == {"episodes": 150, "mix": "expert=0.3,capped=0.45,random=0.25"}
    (tmp_path / "plain.toml").write_text("[train]\nsteps = 10\n")
    assert load_data_config(tmp_path / "plain.toml") == {}


def test_energy_weight_lowers_the_spike_driven_energy_and_is_logged(cartpole_dataset, tmp_path):
    """The energy term pushes activity down where it costs energy; every evaluation step is a
    line of metrics.jsonl with the spike rate and the window's spike-driven energy."""
    runs = {}
    for weight in (0.0, 20.0):
        cfg = tiny_train_config(cartpole_dataset, "snn", energy_weight=weight, energy_profile="loihi",
                                eval_every=20, steps=40)
        checkpoint, metrics = train(tmp_path / f"w{weight}", cfg)
        lines = [json.loads(line) for line in (tmp_path / f"w{weight}" / "metrics.jsonl").read_text().splitlines()]
        assert [line["step"] for line in lines] == [20, 40]
        assert all({"loss", "val_return", "spike_rate", "energy_uj"} <= set(line) for line in lines)
        runs[weight] = lines[-1]
    assert runs[20.0]["energy_uj"] < 0.9 * runs[0.0]["energy_uj"], runs  # measured: 0.80x after 40 steps
    assert runs[20.0]["spike_rate"] < runs[0.0]["spike_rate"]


@pytest.mark.parametrize("key, value, fragment", [("energy_weight", -1.0, "train.energy_weight must be >= 0"),
                                                  ("spike_rate_target", 1.5, r"spike_rate_target must be in \[0, 1\]"),
                                                  ("energy_profile", "tpu", "train.energy_profile")])
def test_bad_energy_settings_are_refused(key, value, fragment):
    values = {"energy_weight": 1.0, key: value}
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig.from_dict(values)
