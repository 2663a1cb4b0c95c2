"""spikingmind.rollout: the return-to-go each episode starts from."""

from __future__ import annotations

import numpy as np
import pytest

from spikingmind.checkpoint import load_checkpoint
from spikingmind.errors import ConfigError
from spikingmind.policy import TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds
from spikingmind.tokens import RTG, TOKENS_PER_STEP, encode_return


@pytest.fixture(scope="module")
def policy(snn_checkpoint):
    return TorchPolicy(load_checkpoint(snn_checkpoint))


def test_each_episode_starts_from_its_own_target_when_given_one_per_seed(policy):
    seeds, targets = evaluation_seeds(3, 0), [500.0, 100.0, 20.0]
    windows = []
    run_episodes(policy, seeds, target_return=targets, on_decision=windows.append)
    for t in (0, 1):  # CartPole pays 1 per step: the return-to-go of step t is the target - t
        fed = windows[t][:, -TOKENS_PER_STEP + RTG, 0]
        expected = encode_return(np.asarray(targets) - t, policy.norm.return_scale, policy.norm.return_gain)
        np.testing.assert_allclose(fed, expected, rtol=1e-6)
    assert len(set(windows[0][:, -TOKENS_PER_STEP + RTG, 0].tolist())) == 3


def test_one_target_is_every_episodes(policy):
    seeds = evaluation_seeds(2, 0)
    assert run_episodes(policy, seeds, target_return=100.0).returns == \
        run_episodes(policy, seeds, target_return=[100.0, 100.0]).returns


@pytest.mark.parametrize("targets,message", [([100.0], "1 targets for 2 episodes"),
                                             ([100.0, float("nan")], r"--target-return\[1\] must be a finite")])
def test_per_seed_targets_must_be_one_finite_number_per_seed(policy, targets, message):
    with pytest.raises(ConfigError, match=message):
        run_episodes(policy, evaluation_seeds(2, 0), target_return=targets)
