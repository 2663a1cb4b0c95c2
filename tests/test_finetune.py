"""Online REINFORCE fine-tuning: curve files, a loadable checkpoint that records its parent,
changed parameters, resume/refuse semantics, and the advantage arithmetic."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from spikingmind.checkpoint import load_checkpoint
from spikingmind.errors import ConfigError, RunExistsError
from spikingmind.finetune import (
    FinetuneConfig,
    advantages,
    finetune,
    policy_gradient_mode,
    returns_to_go,
)
from spikingmind.model import DecisionTransformer, ModelConfig
from tests.support.checkpoints import untrained

TINY = ModelConfig(kind="snn", width=16, n_blocks=1, context_length=2, time_steps=2)


def _tiny_checkpoint(path, env_id: str, seed: int = 0):
    """An untrained tiny checkpoint (fine-tuning does not care how the weights came about)."""
    return untrained(path, TINY, env_id, seed=seed, dataset={"id": "none", "episode_seeds": []})


def _weights(path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_checkpoint(path).model.state_dict().items()}


FAST = FinetuneConfig(episodes=4, batch_episodes=2, lr=3e-3, eval_every=1, eval_episodes=1, seed=1)


@pytest.fixture(scope="module")
def cartpole_finetune(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    parent = _tiny_checkpoint(root / "parent", "CartPole-v1")
    new_checkpoint, metrics = finetune(parent, root / "run", FAST)
    return root, parent, new_checkpoint, metrics


def test_finetune_writes_curve_and_checkpoint(cartpole_finetune):
    root, parent, new_checkpoint, metrics = cartpole_finetune
    rows = list(csv.DictReader((root / "run" / "learning_curve.csv").open()))
    assert [int(r["update"]) for r in rows] == [0, 1, 2]
    assert [int(r["episodes"]) for r in rows] == [0, 2, 4]
    assert all(r["greedy_return"] != "" for r in rows)  # eval_every=1
    assert all(np.isfinite(float(r["loss"])) for r in rows[1:])
    assert int(rows[-1]["env_steps"]) == metrics["env_steps"] > 0
    png = (root / "run" / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000

    ckpt = load_checkpoint(new_checkpoint)
    recorded = ckpt.meta["finetune"]
    assert recorded["config"] == FAST.to_dict()
    assert recorded["parent"]["path"] == str(parent.resolve())
    assert recorded["metrics"]["best_greedy_return"] == max(float(r["greedy_return"]) for r in rows)
    assert ckpt.meta["dataset"]["id"] == "none"  # provenance of the offline data is kept


def test_finetune_changes_the_parameters(cartpole_finetune):
    root, parent, _, _ = cartpole_finetune
    from safetensors.torch import load_file

    before = _weights(parent)
    after = load_file(str(root / "run" / "resume" / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "embed.weight" in changed and "head.weight" in changed
    # BatchNorm statistics are the offline ones: fine-tuning never updates them
    for key in before:
        if key.endswith(("running_mean", "running_var")):
            assert torch.equal(before[key], after[key]), key


def test_finetune_resumes_and_refuses(cartpole_finetune):
    root, parent, new_checkpoint, _ = cartpole_finetune
    again, metrics = finetune(parent, root / "run", FAST)
    assert again == new_checkpoint and metrics["status"] == "already finished"
    with pytest.raises(RunExistsError, match="lr"):
        finetune(parent, root / "run", FinetuneConfig(**{**FAST.to_dict(), "lr": 1e-5}))


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    parent = _tiny_checkpoint(tmp_path / "parent", "CartPole-v1", seed=3)
    cfg = FinetuneConfig(episodes=4, batch_episodes=2, lr=3e-3, eval_every=1, eval_episodes=1)
    straight, straight_metrics = finetune(parent, tmp_path / "straight", cfg)

    def crash_after_first_update(entry: dict) -> None:
        if entry["update"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(parent, tmp_path / "interrupted", cfg, on_progress=crash_after_first_update)
    assert not (tmp_path / "interrupted" / "checkpoint").exists()
    assert json.loads((tmp_path / "interrupted" / "resume" / "state.json").read_text())["update"] == 1
    resumed, metrics = finetune(parent, tmp_path / "interrupted", cfg)
    assert metrics["env_steps"] == straight_metrics["env_steps"]  # same episodes replayed
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_continuous_finetune_learns_the_std(tmp_path):
    parent = _tiny_checkpoint(tmp_path / "parent", "Pendulum-v1")
    cfg = FinetuneConfig(episodes=2, batch_episodes=2, lr=1e-2, eval_every=1, eval_episodes=1,
                         action_std=0.3, max_decisions_per_update=128)
    new_checkpoint, metrics = finetune(parent, tmp_path / "run", cfg)
    assert metrics["final_action_std"] != pytest.approx(0.3 * 2.0, abs=1e-9)
    assert abs(metrics["final_action_std"] - 0.6) < 0.1  # one small step
    rows = list(csv.DictReader((tmp_path / "run" / "learning_curve.csv").open()))
    assert float(rows[0]["action_std"]) == pytest.approx(0.6, rel=1e-6)
    assert np.isfinite(float(rows[1]["loss"]))
    # the update moved the weights: the run's latest weights (resume/) differ from the parent's
    before = _weights(parent)
    latest = load_file(str(tmp_path / "run" / "resume" / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], latest[k].to(before[k].dtype))]
    assert any(k.startswith("blocks.") for k in changed), changed
    # and the checkpoint kept is the best validated one: the parent's weights only if update 0 won
    kept = _weights(new_checkpoint)
    assert all(torch.equal(kept[k], (before if metrics["best_update"] == 0 else latest)[k].to(kept[k].dtype))
               for k in kept)


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="--algo 'ppo'"):
        FinetuneConfig.from_dict({"algo": "ppo"})
    with pytest.raises(ConfigError, match="batch_episodes"):
        FinetuneConfig.from_dict({"episodes": 2, "batch_episodes": 4})
    with pytest.raises(ConfigError, match="unknown finetune keys: steps"):
        FinetuneConfig.from_dict({"steps": 3})


def test_returns_and_advantages():
    rewards = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    episode = np.array([0, 0, 0, 1, 1])
    timestep = np.array([0, 1, 2, 0, 1])
    rtg = returns_to_go(rewards, episode, gamma=0.5)
    np.testing.assert_allclose(rtg, [1.75, 1.5, 1.0, 1.5, 1.0])
    adv = advantages(rtg, episode, timestep, normalize=False)
    # per-timestep batch mean (an ended episode counts 0): t0 1.625, t1 1.25, t2 0.5
    np.testing.assert_allclose(adv, [0.125, 0.25, 0.5, -0.125, -0.25])
    normalized = advantages(rtg, episode, timestep, normalize=True)
    assert normalized.std() == pytest.approx(1.0)


def test_policy_gradient_mode_freezes_batch_norm():
    torch.manual_seed(0)
    model = policy_gradient_mode(DecisionTransformer(TINY, 10, 2))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and not any(m.training for m in norms)
    assert model.training and model.blocks[0].attn.mix.training
    x = torch.randn(3, 6, 10)
    stats = [m.running_mean.clone() for m in norms]
    out = model(x)
    out.sum().backward()
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, norms))
    assert model.embed.weight.grad is not None and model.embed.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), out.detach())  # same function as at evaluation


def test_cli_finetune_runs_and_refuses_unknown_algorithms(cartpole_finetune, tmp_path):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    _, parent, _, _ = cartpole_finetune
    bad = CliRunner().invoke(app, ["finetune", str(parent), "--algo", "ppo", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--algo 'ppo' is not supported" in bad.output
    assert not (tmp_path / "x").exists()
    ok = CliRunner().invoke(app, ["finetune", str(parent), "--episodes", "2", "--batch-episodes", "2",
                                  "--eval-every", "1", "--eval-episodes", "1", "--out", str(tmp_path / "cli")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "cli" / "checkpoint" / "checkpoint.json").exists()
    assert (tmp_path / "cli" / "learning_curve.csv").read_text().count("\n") == 3  # header + updates 0, 1


def test_cli_finetune_reads_a_config_file_and_options_typed_override_it(cartpole_finetune, tmp_path):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    _, parent, _, _ = cartpole_finetune
    config = tmp_path / "tune.toml"
    config.write_text("[finetune]\nepisodes = 4\nbatch_episodes = 2\nlr = 2e-3\neval_every = 1\neval_episodes = 1\n")
    ok = CliRunner().invoke(app, ["finetune", str(parent), "--config", str(config), "--episodes", "2",
                                  "--seed", "3", "--out", str(tmp_path / "run")])
    assert ok.exit_code == 0, ok.output
    saved = json.loads((tmp_path / "run" / "finetune.json").read_text())["config"]
    assert (saved["episodes"], saved["batch_episodes"], saved["lr"], saved["seed"]) == (2, 2, 2e-3, 3)
    assert saved["temperature"] == 1.0  # neither in the file nor typed: the default
    config.write_text("[finetune]\nepisodes = 4\nbatch_size = 2\n")
    bad = CliRunner().invoke(app, ["finetune", str(parent), "--config", str(config), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and str(config) in bad.output and "batch_size" in bad.output
    config.write_text("[train]\nsteps = 4\n")
    bad = CliRunner().invoke(app, ["finetune", str(parent), "--config", str(config), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown tables" in bad.output
    assert not (tmp_path / "x").exists()
