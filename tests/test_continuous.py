"""Continuous actions (Pendulum-v1) end to end: collect -> train -> evaluate -> NIR export ->
the exported graph drives the env to the same returns."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from spikingmind.checkpoint import load_checkpoint
from spikingmind.data import collect, load_episodes
from spikingmind.envs import get_env_spec
from spikingmind.errors import ConfigError
from spikingmind.workflows.evaluate import evaluate
from spikingmind.model import ModelConfig
from spikingmind.policy import TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds
from spikingmind.tokens import TokenLayout
from spikingmind.train import TrainConfig, dt_loss, train

PENDULUM = "Pendulum-v1"


def test_dt_loss_regresses_the_squashed_action():
    """Loss = mean squared error of low + (tanh(y) + 1) / 2 * (high - low), in half-range units,
    over valid steps only."""
    spec = get_env_spec(PENDULUM)
    layout = TokenLayout(3, 1, False, context_length=2)
    outputs = torch.zeros(1, 6, 1)
    outputs[0, 1, 0] = 0.5  # state token of step 0
    outputs[0, 4, 0] = -10.0  # state token of step 1 (saturates at -2)
    actions = torch.tensor([[[1.0], [-2.0]]])
    valid = torch.tensor([[True, True]])
    squashed = -2.0 + (np.tanh(0.5) + 1.0) / 2.0 * 4.0
    expected = ((squashed - 1.0) ** 2 / 4.0 + 0.0) / 2
    assert float(dt_loss(outputs, actions, valid, layout, spec, "squashed")) == pytest.approx(expected, rel=1e-4)
    only_first = torch.tensor([[True, False]])
    assert float(dt_loss(outputs, actions, only_first, layout, spec, "squashed")) == pytest.approx(expected * 2,
                                                                                             rel=1e-4)


def test_pre_squash_loss_regresses_the_raw_output_onto_atanh_of_the_target():
    spec = get_env_spec(PENDULUM)
    layout = TokenLayout(3, 1, False, context_length=1)
    actions = torch.tensor([[[2.0]]])  # at the bound: the target is atanh(0.995), not infinity
    valid = torch.tensor([[True]])
    target = float(np.arctanh(0.995))
    outputs = torch.zeros(1, 3, 1)
    outputs[0, 1, 0] = target
    assert float(dt_loss(outputs, actions, valid, layout, spec, "pre_squash")) == pytest.approx(0.0, abs=1e-6)
    outputs[0, 1, 0] = 1.0  # decodes to 1.52: the squashed loss is small there, the pre-squash one is not
    pre = float(dt_loss(outputs, actions, valid, layout, spec, "pre_squash"))
    assert pre == pytest.approx((1.0 - target) ** 2, rel=1e-5)
    assert pre > 10 * float(dt_loss(outputs, actions, valid, layout, spec, "squashed"))
    with pytest.raises(ConfigError, match="train.continuous_loss"):
        TrainConfig.from_dict({"continuous_loss": "huber"})


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pendulum")
    dataset, meta = collect(PENDULUM, 3, {"expert": 2 / 3, "random": 1 / 3}, seed=0, root=root / "datasets")
    cfg = TrainConfig(env_id=PENDULUM, dataset=str(root / "datasets" / dataset),
                      model=ModelConfig(kind="snn", width=16, n_blocks=1, context_length=2, time_steps=2),
                      steps=6, batch_size=16, warmup_steps=1, eval_every=6, eval_episodes=1)
    checkpoint, metrics = train(root / "run", cfg)
    return root, checkpoint, metrics, meta


def test_pendulum_dataset_holds_bounded_float_actions(pendulum_run):
    root, _, _, meta = pendulum_run
    episodes = load_episodes(str(root / "datasets" / meta["dataset_id"]), PENDULUM)
    assert episodes.actions.dtype == np.float32 and episodes.actions.shape == (600, 1)
    assert np.all(np.abs(episodes.actions) <= 2.0)
    assert {r["policy"] for r in meta["episodes"]} == {"expert", "random"}


def test_pendulum_trains_and_evaluates(pendulum_run):
    _, checkpoint, metrics, _ = pendulum_run
    assert np.isfinite(metrics["final_loss"]) and metrics["steps"] == 6
    ckpt = load_checkpoint(checkpoint)
    assert ckpt.model.n_out == 1 and not ckpt.layout.discrete
    result = evaluate(checkpoint, episodes=2)
    assert result["env_id"] == PENDULUM and result["lengths"] == [200, 200]
    assert all(np.isfinite(result["returns"])) and result["decisions"] == 400

    actions = []
    policy = TorchPolicy(ckpt)
    original = policy.act
    policy.act = lambda w: actions.append(original(w)) or actions[-1]
    run_episodes(policy, evaluation_seeds(1, 0))
    actions = np.concatenate(actions)
    assert actions.shape == (200, 1) and np.all(np.abs(actions) <= 2.0)


def test_pendulum_nir_export_reproduces_the_checkpoint(pendulum_run, tmp_path):
    from spikingmind.export.nir import export

    _, checkpoint, _, _ = pendulum_run
    nir_path = export(checkpoint, tmp_path / "pendulum.nir")
    from_nir = evaluate(nir_path, episodes=2)
    assert from_nir["backend"] == "nir-reference" and from_nir["env_id"] == PENDULUM

    # float64 PyTorch is the graph's arithmetic: same actions, so the same returns
    ckpt64 = load_checkpoint(checkpoint, dtype=torch.float64)
    from_torch = run_episodes(TorchPolicy(ckpt64), evaluation_seeds(2, 0))
    np.testing.assert_allclose(from_nir["returns"], from_torch.returns, rtol=1e-9)
    # the float32 checkpoint as `spikingmind evaluate` runs it agrees to float32 precision
    np.testing.assert_allclose(from_nir["returns"], evaluate(checkpoint, episodes=2)["returns"], rtol=1e-3)

    from spikingmind.export.nir import graph_metadata
    from spikingmind.export.reference import load_graph

    meta = graph_metadata(load_graph(nir_path))
    assert meta["action_kind"] == "continuous"
    assert meta["action_low"] == [-2.0] and meta["action_high"] == [2.0]
    assert "tanh" in meta["decode"]["action"]
    assert json.loads(json.dumps(meta["env"]))["env_id"] == PENDULUM


# ---------------------------------------------------------------------------- learning a continuous action

REACH = "TinyReach-v0"


class TinyReach(gym.Env):
    """Move a point on [-1, 1] to 0: x += 0.25 u, u in [-1, 1]; reward -|x| per step, 10 steps.
    A continuous task a tiny spiking DT learns in a second (Pendulum's swing-up takes thousands
    of steps at width 96: configs/pendulum.toml)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, float(self.np_random.uniform(-1.0, 1.0))
        return np.array([self.x], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        self.x = float(np.clip(self.x + 0.25 * float(np.asarray(action).reshape(-1)[0]), -1.0, 1.0))
        return np.array([self.x], dtype=np.float32), -abs(self.x), False, self.t >= 10, {}


def reach_expert(obs: np.ndarray) -> np.ndarray:
    return np.clip(-4.0 * obs, -1.0, 1.0).astype(np.float32)


class StandStill:
    """The zero-action policy: the cost of not acting, -10 E|x0| = -5 on average."""

    def __init__(self, spec, layout, norm):
        self.spec, self.layout, self.norm = spec, layout, norm

    def act(self, windows):
        return np.zeros((len(windows), 1), dtype=np.float32)


def test_tiny_spiking_dt_learns_a_continuous_action(tmp_path, monkeypatch):
    from spikingmind.envs import register_env, spec_from_gym, unregister_env

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    register_env(spec_from_gym(REACH, make=TinyReach, target_return=0.0, return_scale=5.0, max_episode_steps=10,
                               expert=reach_expert, default_mix="expert=0.75,random=0.25"))
    try:
        dataset, _ = collect(REACH, 40, {"expert": 0.75, "random": 0.25}, seed=0, root=tmp_path / "datasets")
        cfg = TrainConfig(env_id=REACH, dataset=dataset, steps=400, batch_size=32, lr=3e-3, warmup_steps=2,
                          eval_every=400, eval_episodes=2,
                          model=ModelConfig(kind="snn", width=16, n_blocks=1, context_length=2, time_steps=2))
        checkpoint, _ = train(tmp_path / "run", cfg)
        learned = evaluate(checkpoint, episodes=10, target_return=0.0)
        ckpt = load_checkpoint(checkpoint)
        still = run_episodes(StandStill(ckpt.spec, ckpt.layout, ckpt.norm), evaluation_seeds(10, 0))
    finally:
        unregister_env(REACH)
    # measured: -0.75 against -4.08 for standing still on these seeds (the expert's data: about -0.5)
    assert learned["mean_return"] > 0.5 * float(np.mean(still.returns)), (learned["mean_return"], still.returns)
