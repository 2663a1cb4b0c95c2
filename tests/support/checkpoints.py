"""Tiny models for the tests: the trained fixtures' recipe and untrained checkpoints.

`untrained` wraps `spikingmind.checkpoint.untrained_checkpoint` (the one builder, the
latency benchmark uses it too) with the few shapes the tests use; each keeps the seed and
normalisation its test was written with, so their numbers do not move.
"""

from __future__ import annotations

from pathlib import Path

from spikingmind.checkpoint import untrained_checkpoint
from spikingmind.model import ModelConfig

TINY_MODEL = {"width": 16, "n_blocks": 1, "mlp_ratio": 2, "context_length": 4, "time_steps": 4}
#: the synthetic training data an untrained checkpoint names (no episode seeds: any evaluation seed is unseen)
SYNTHETIC = {"id": "synthetic", "episode_seeds": []}
#: a CartPole normalisation that is not the identity (exercises the input scaling of every backend)
CARTPOLE_OBS_STD = (0.5, 1.0, 0.1, 1.0)


def tiny_train_config(dataset: str, kind: str = "snn", **overrides):
    """The tiny training run of the session fixtures (conftest.snn_checkpoint / ann_checkpoint)."""
    from spikingmind.train import TrainConfig

    values = {"env_id": "CartPole-v1", "dataset": dataset, "model": {**TINY_MODEL, "kind": kind}, "seed": 1,
              "steps": 40, "batch_size": 8, "eval_every": 20, "eval_episodes": 1, "warmup_steps": 2}
    values.update(overrides)
    return TrainConfig.from_dict(values)


def untrained(path: Path, cfg: ModelConfig, env_id: str = "CartPole-v1", *, obs_mean=None, obs_std=None,
              seed: int = 0, dataset: dict | None = None) -> Path:
    """An untrained checkpoint folder of `cfg` on `env_id` (torch seeded with `seed` first)."""
    return untrained_checkpoint(path, env_id, cfg, obs_mean=obs_mean, obs_std=obs_std, seed=seed,
                                dataset=SYNTHETIC if dataset is None else dataset)


def randomise_batch_norms(model, generator) -> None:
    """Non-trivial running statistics, and gains and shifts that make every layer of a random
    spiking DT fire (a silent layer would test nothing)."""
    import torch

    with torch.no_grad():
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            norm.running_mean.uniform_(-0.3, 0.3, generator=generator)
            norm.running_var.uniform_(0.5, 2.0, generator=generator)
            norm.weight.uniform_(2.0, 4.0, generator=generator)
            norm.bias.uniform_(0.0, 1.0, generator=generator)
