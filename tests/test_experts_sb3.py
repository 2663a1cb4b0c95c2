"""`collect --expert sb3:PATH --trust-pickle`: a user's Stable-Baselines3 policy as the demonstrator.

The models are SB3's own, saved by SB3 (untrained: what matters is that the data are exactly
the policy's deterministic actions, not how good it is). The refusal tests check that nothing
in the file is unpickled before --trust-pickle: a crafted model whose pickle would write a
file is refused, and the file is never written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import zipfile

import numpy as np
import pytest
import stable_baselines3 as sb3

from spikingmind.data import collect, load_episodes
from spikingmind.envs import get_env_spec
from spikingmind.errors import ConfigError
from spikingmind.experts.sb3 import SB3Expert, parse_expert_source, read_header
from tests.test_cli import assert_one_line_error, invoke



@pytest.fixture(scope="module")
def ppo_cartpole(tmp_path_factory):
    import gymnasium as gym

    path = tmp_path_factory.mktemp("sb3") / "ppo_cartpole.zip"
    sb3.PPO("MlpPolicy", gym.make("CartPole-v1"), seed=0, n_steps=64, batch_size=32, device="cpu").save(path)
    return path


@pytest.fixture(scope="module")
def td3_pendulum(tmp_path_factory):
    import gymnasium as gym

    path = tmp_path_factory.mktemp("sb3") / "td3_pendulum.zip"
    sb3.TD3("MlpPolicy", gym.make("Pendulum-v1"), seed=0, buffer_size=10, device="cpu").save(path)
    return path


class _WritesAFile:
    """Unpickling it creates `marker`: the stand-in for the code a hostile pickle would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _hostile_model(tmp_path, marker, actions=2):
    """A zip shaped like an SB3 DQN for CartPole whose pickled fields would write `marker`."""
    payload = base64.b64encode(pickle.dumps(_WritesAFile(marker))).decode()
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": payload,
                             "__module__": "stable_baselines3.dqn.policies"},
            "observation_space": {":serialized:": payload, "_shape": [4]},
            "action_space": {":serialized:": payload, "n": str(actions), "_shape": []}}
    path = tmp_path / "dqn_cartpole.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("_stable_baselines3_version", "2.9.2")
    return path


def test_the_expert_episodes_are_exactly_the_models_deterministic_actions(ppo_cartpole, tmp_path):
    model = sb3.PPO.load(ppo_cartpole, device="cpu")
    expert = SB3Expert(ppo_cartpole, get_env_spec("CartPole-v1"), trust_pickle=True)
    dataset, meta = collect("CartPole-v1", 3, {"expert": 1.0}, seed=4, root=tmp_path, expert=expert)
    episodes = load_episodes(str(tmp_path / dataset))
    predicted = model.predict(episodes.observations, deterministic=True)[0]
    np.testing.assert_array_equal(episodes.actions, predicted)
    assert meta["expert"] == "sb3-ppo:ppo_cartpole.zip"
    assert meta["expert_source"]["algorithm"] == "ppo"
    assert meta["expert_source"]["sha256"] == hashlib.sha256(ppo_cartpole.read_bytes()).hexdigest()
    assert dataset.startswith("cartpole-sb3ppo" + meta["expert_source"]["sha256"][:8] + "-")


def test_an_sb3_contrib_model_loads_too(tmp_path):
    import gymnasium as gym
    import sb3_contrib

    path = tmp_path / "qrdqn_acrobot.zip"
    sb3_contrib.QRDQN("MlpPolicy", gym.make("Acrobot-v1"), seed=0, buffer_size=10, device="cpu").save(path)
    expert = SB3Expert(path, get_env_spec("Acrobot-v1"), trust_pickle=True)
    dataset, meta = collect("Acrobot-v1", 1, {"expert": 1.0}, seed=0, root=tmp_path, expert=expert)
    episodes = load_episodes(str(tmp_path / dataset))
    predicted = sb3_contrib.QRDQN.load(path, device="cpu").predict(episodes.observations, deterministic=True)[0]
    np.testing.assert_array_equal(episodes.actions, predicted)
    assert meta["expert_source"]["package"] == "sb3_contrib" and meta["expert_source"]["algorithm"] == "qrdqn"


def test_sb3_data_do_not_depend_on_the_workers_and_every_expert_kind_uses_the_model(ppo_cartpole, tmp_path):
    mix = {"expert": 0.25, "capped": 0.25, "noisy": 0.25, "late": 0.25}
    expert = SB3Expert(ppo_cartpole, get_env_spec("CartPole-v1"), trust_pickle=True)
    _, alone = collect("CartPole-v1", 8, mix, seed=3, dataset_id="a-v0", root=tmp_path / "one", expert=expert)
    _, pair = collect("CartPole-v1", 8, mix, seed=3, dataset_id="a-v0", root=tmp_path / "two", expert=expert,
                      workers=2)
    _, own = collect("CartPole-v1", 8, mix, seed=3, dataset_id="a-v0", root=tmp_path / "three")
    assert alone["content_hash"] == pair["content_hash"]
    assert own["content_hash"] != alone["content_hash"]  # the built-in LQR expert plays other actions


def test_a_continuous_sb3_policy_gives_bounded_float_actions(td3_pendulum, tmp_path):
    expert = SB3Expert(td3_pendulum, get_env_spec("Pendulum-v1"), trust_pickle=True)
    dataset, meta = collect("Pendulum-v1", 1, {"expert": 1.0}, seed=0, root=tmp_path, expert=expert)
    actions = load_episodes(str(tmp_path / dataset)).actions
    assert actions.shape == (200, 1) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 2.0) and meta["expert_source"]["algorithm"] == "td3"


def test_without_trust_pickle_nothing_in_the_file_is_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    model = _hostile_model(tmp_path, marker)
    result = invoke("collect", "--env", "CartPole-v1", "--episodes", "1", "--root", tmp_path / "ds",
                    "--expert", f"sb3:{model}")
    assert_one_line_error(result, f"{model}: an SB3 model is loaded by unpickling it")
    assert "--trust-pickle" in result.output
    assert result.exit_code == 2
    assert not marker.exists() and not (tmp_path / "ds").exists()
    assert read_header(model)["algorithm"] == "dqn"  # the header is read, the pickle is not
    assert not marker.exists()


def test_a_model_of_another_env_is_refused_by_its_header_before_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    model = _hostile_model(tmp_path, marker)
    result = invoke("collect", "--env", "Acrobot-v1", "--episodes", "1", "--root", tmp_path / "ds",
                    "--expert", f"sb3:{model}", "--trust-pickle")
    assert_one_line_error(result, f"{model}: data.observation_space has shape (4,), Acrobot-v1 observes (6,)")
    assert result.exit_code == 2 and not marker.exists()


def test_a_discrete_model_with_another_action_count_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    model = _hostile_model(tmp_path, marker, actions=3)
    with pytest.raises(ConfigError, match="data.action_space has 3 actions, CartPole-v1 has 2"):
        SB3Expert(model, get_env_spec("CartPole-v1"), trust_pickle=True)
    assert not marker.exists()


@pytest.mark.parametrize("content, fragment", [
    (b"not a zip", "not a Stable-Baselines3 model"),
    ("bad json", "member `data` is not JSON"),
    ("damaged", "not a Stable-Baselines3 model"),
])
def test_files_that_are_not_sb3_models_fail_in_one_line(tmp_path, content, fragment):
    path = tmp_path / "model.zip"
    if content == "bad json":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data", b"\xff{")
    elif content == "damaged":  # a real zip whose compressed `data` bytes were overwritten
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("data", json.dumps({"policy_class": {"__module__": "x" * 4000}}))
        raw = bytearray(path.read_bytes())
        raw[60:90] = b"\x00" * 30
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(content)
    result = invoke("collect", "--env", "CartPole-v1", "--episodes", "1", "--root", tmp_path / "ds",
                    "--expert", f"sb3:{path}", "--trust-pickle")
    assert_one_line_error(result, f"{path}: {fragment}")
    assert result.exit_code == 2 and path.exists()


def test_expert_option_parsing():
    assert parse_expert_source(None) is None and parse_expert_source("builtin") is None
    assert str(parse_expert_source("sb3:models/dqn.zip")) == "models/dqn.zip"
    for text in ("sb3:", "zoo:dqn.zip", "dqn.zip"):
        with pytest.raises(ConfigError, match="not builtin or sb3:PATH"):
            parse_expert_source(text)
    assert_one_line_error(invoke("collect", "--env", "CartPole-v1", "--episodes", "1", "--trust-pickle"),
                          "--trust-pickle: only --expert sb3:PATH loads a pickle")


def test_exist_ok_reuses_a_dataset_only_for_the_same_sb3_file(ppo_cartpole, tmp_path):
    args = ("collect", "--env", "CartPole-v1", "--episodes", "2", "--mix", "expert=1", "--root", tmp_path,
            "--dataset-id", "mine-v0", "--workers", "1")
    assert invoke(*args, "--expert", f"sb3:{ppo_cartpole}", "--trust-pickle").exit_code == 0
    again = invoke(*args, "--expert", f"sb3:{ppo_cartpole}", "--trust-pickle", "--exist-ok")
    assert again.exit_code == 0 and "reusing it" in again.output
    assert_one_line_error(invoke(*args, "--exist-ok"), "exists at")  # the built-in expert: other data
