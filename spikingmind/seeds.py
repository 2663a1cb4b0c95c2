"""Env seeds of every kind of episode, drawn from disjoint ranges: the one place for the bases.

    dataset episodes   dataset_seed * 100_000 + episode            below EVAL_SEED_BASE
    evaluation         EVAL_SEED_BASE + seed * 10_000 + i          (evaluate, energy-report, Lava checks)
    fine-tuning        FINETUNE_SEED_BASE + seed * 1_000_000 + i   (the episodes REINFORCE plays)
    validation         VALIDATION_SEED_BASE + i                    (greedy scores during train / finetune)
    expert report      EXPERT_EVAL_SEED_BASE + i                   (`python -m spikingmind.experts`)

So no evaluation ever replays an episode a policy was trained or selected on.
"""

from __future__ import annotations

from spikingmind.errors import ConfigError

#: episode indices one dataset seed owns: dataset_seed * this + episode
EPISODES_PER_DATASET_SEED = 100_000
EVAL_SEED_BASE = 1_000_000_000
FINETUNE_SEED_BASE = 1_600_000_000
VALIDATION_SEED_BASE = 2_000_000_000
#: Above every training seed and above the model evaluation seeds of every --seed below 300,000.
EXPERT_EVAL_SEED_BASE = 4_000_000_000


def episode_seed(dataset_seed: int, episode: int) -> int:
    """Env reset seed of training episode `episode` of a dataset collected with `dataset_seed`."""
    seed = dataset_seed * EPISODES_PER_DATASET_SEED + episode
    if not 0 <= seed < EVAL_SEED_BASE:
        raise ConfigError(f"dataset seed {dataset_seed} / episode {episode} leaves the training seed range")
    return seed


def evaluation_seeds(n_episodes: int, seed: int) -> list[int]:
    """Env seeds for evaluation: disjoint from every training seed (`episode_seed`)."""
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    return [EVAL_SEED_BASE + seed * 10_000 + i for i in range(n_episodes)]


def validation_seeds(n_episodes: int) -> list[int]:
    """Env seeds of the validation episodes that pick the best checkpoint during training."""
    return [VALIDATION_SEED_BASE + i for i in range(n_episodes)]


def finetune_seeds(seed: int, first: int, n_episodes: int) -> list[int]:
    """Env seeds of fine-tuning episodes `first .. first + n_episodes - 1` of a run with `seed`."""
    return [FINETUNE_SEED_BASE + seed * 1_000_000 + first + i for i in range(n_episodes)]


def expert_evaluation_seeds(n_episodes: int) -> list[int]:
    """Env seeds of the expert report: EXPERT_EVAL_SEED_BASE + i, fixed, disjoint from training seeds."""
    return [EXPERT_EVAL_SEED_BASE + i for i in range(n_episodes)]
