"""The environment registry and its extension point: a user env trains and evaluates through
the library API without touching library code."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from spikingmind.data import collect, load_episodes
from spikingmind.envs import EnvSpec, get_env_spec, register_env, spec_from_gym, supported_envs, unregister_env
from spikingmind.errors import ConfigError, UnknownEnvError
from spikingmind.workflows.evaluate import evaluate
from spikingmind.model import ModelConfig
from spikingmind.train import TrainConfig, train

CORRIDOR = "TinyCorridor-v0"
CORRIDOR_STEPS = 10


class TinyCorridor(gym.Env):
    """Walk right: reward 1 for action 1 ("right"), 0 for action 0; CORRIDOR_STEPS steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.position = float(self.np_random.uniform(-0.1, 0.1))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.position += 0.1 if int(action) == 1 else -0.1
        return self._obs(), float(int(action) == 1), False, self.t >= CORRIDOR_STEPS, {}

    def _obs(self):
        return np.array([self.position, self.t / CORRIDOR_STEPS], dtype=np.float32)


def corridor_expert(obs: np.ndarray) -> int:
    return 1


@pytest.fixture
def corridor(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    spec = register_env(spec_from_gym(CORRIDOR, make=TinyCorridor, target_return=CORRIDOR_STEPS,
                                      return_scale=CORRIDOR_STEPS, max_episode_steps=CORRIDOR_STEPS,
                                      expert=corridor_expert, default_mix="expert=0.75,random=0.25"))
    yield spec
    unregister_env(CORRIDOR)


def test_builtin_envs_and_default_mixes():
    assert {"CartPole-v1", "MountainCar-v0", "Acrobot-v1", "Pendulum-v1"} <= set(supported_envs())
    for env_id in ("MountainCar-v0", "Acrobot-v1", "Pendulum-v1"):
        mix = get_env_spec(env_id).dataset_mix()
        assert set(mix) == {"expert", "random"} and abs(sum(mix.values()) - 1) < 1e-12
    pendulum = get_env_spec("Pendulum-v1")
    assert not pendulum.discrete and pendulum.action_low == (-2.0,) and pendulum.action_high == (2.0,)


def test_spec_from_gym_reads_spaces_of_builtin_ids():
    read = spec_from_gym("Pendulum-v1", target_return=-150, return_scale=1000)
    builtin = get_env_spec("Pendulum-v1")
    assert (read.obs_dim, read.action_kind, read.act_dim, read.action_low, read.action_high,
            read.max_episode_steps) == (3, "continuous", 1, builtin.action_low, builtin.action_high, 200)
    acrobot = spec_from_gym("Acrobot-v1", target_return=-80, return_scale=500)
    assert (acrobot.obs_dim, acrobot.act_dim, acrobot.discrete, acrobot.max_episode_steps) == (6, 3, True, 500)
    assert acrobot.dataset_mix() == {"random": 1.0}  # no expert given -> random demonstrations


def test_unknown_env_lists_supported_ids(corridor):
    with pytest.raises(UnknownEnvError) as info:
        get_env_spec("NoSuchEnv-v9")
    message = str(info.value)
    assert "NoSuchEnv-v9" in message
    for env_id in ("CartPole-v1", "MountainCar-v0", "Acrobot-v1", "Pendulum-v1", CORRIDOR):
        assert env_id in message


def test_register_refuses_duplicates_and_bad_specs(corridor):
    with pytest.raises(ValueError, match="already registered"):
        register_env(corridor)
    assert register_env(corridor, replace=True) is corridor
    with pytest.raises(ValueError, match="already registered"):
        register_env(spec_from_gym("CartPole-v1", target_return=500, return_scale=500))
    with pytest.raises(ValueError, match="needs an expert"):
        EnvSpec("X-v0", obs_dim=1, action_kind="discrete", act_dim=2, target_return=1, return_scale=1,
                max_episode_steps=5, default_mix="expert=1")
    with pytest.raises(ConfigError, match="unknown policy"):
        EnvSpec("X-v0", obs_dim=1, action_kind="discrete", act_dim=2, target_return=1, return_scale=1,
                max_episode_steps=5, default_mix="greedy=1")
    with pytest.raises(ValueError, match="action_low"):
        EnvSpec("X-v0", obs_dim=1, action_kind="continuous", act_dim=1, target_return=1, return_scale=1,
                max_episode_steps=5, action_low=(1.0,), action_high=(-1.0,))


def test_user_env_collects_trains_and_evaluates(corridor, tmp_path):
    """The extension point end to end: register (env class) -> collect -> train -> evaluate."""
    dataset, meta = collect(CORRIDOR, 12, corridor.dataset_mix(), seed=0, root=tmp_path / "datasets")
    assert meta["mix"] == {"expert": 0.75, "random": 0.25}
    episodes = load_episodes(dataset, CORRIDOR)
    assert episodes.observations.shape[1] == 2 and len(episodes.starts) == 12
    expert_returns = [r["return"] for r in meta["episodes"] if r["policy"] == "expert"]
    assert expert_returns == [float(CORRIDOR_STEPS)] * 9

    model = ModelConfig(kind="snn", width=16, n_blocks=1, context_length=2, time_steps=2)
    cfg = TrainConfig(env_id=CORRIDOR, dataset=dataset, model=model, steps=40, batch_size=32, lr=3e-3,
                      warmup_steps=2, eval_every=40, eval_episodes=2)
    checkpoint, metrics = train(tmp_path / "run", cfg)
    assert np.isfinite(metrics["final_loss"])
    saved = json.loads((checkpoint / "checkpoint.json").read_text())
    assert saved["env"]["env_id"] == CORRIDOR and saved["n_out"] == 2

    result = evaluate(checkpoint, episodes=4)
    assert result["env_id"] == CORRIDOR and result["episodes"] == 4
    assert result["lengths"] == [CORRIDOR_STEPS] * 4
    # imitating "always right" from 75% expert data: well above the random policy's 5
    assert result["mean_return"] >= 8.0


def test_cli_collect_uses_the_env_default_mix(corridor, tmp_path):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    root = tmp_path / "cli-datasets"
    result = CliRunner().invoke(app, ["collect", "--env", CORRIDOR, "--episodes", "4", "--root", str(root)])
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    meta = json.loads((folder / "spikingmind.json").read_text())
    assert meta["mix"] == {"expert": 0.75, "random": 0.25}
