"""Heuristic experts: they solve their environments, are deterministic, and the capped
expert's return tracks its give-up step."""

import gymnasium as gym
import numpy as np
import pytest

from spikingmind.experts import (
    EXPERTS,
    cartpole_expert,
    make_capped_expert,
    mountain_car_expert,
    pendulum_expert,
    random_policy,
    run_episode,
)

SEEDS = (1000, 1001, 1002)


def _returns(env_id, policy, seeds=SEEDS):
    env = gym.make(env_id)
    try:
        return np.array([run_episode(env, policy, seed) for seed in seeds])
    finally:
        env.close()


def test_registry_covers_the_four_environments():
    assert set(EXPERTS) == {"CartPole-v1", "MountainCar-v0", "Acrobot-v1", "Pendulum-v1"}


def test_cartpole_expert_balances_the_full_episode():
    assert _returns("CartPole-v1", cartpole_expert).tolist() == [500.0] * len(SEEDS)


def test_mountain_car_expert_reaches_the_goal():
    returns = _returns("MountainCar-v0", mountain_car_expert)
    assert (returns > -200).all(), returns


def test_acrobot_expert_swings_up():
    returns = _returns("Acrobot-v1", EXPERTS["Acrobot-v1"])
    assert (returns > -150).all(), returns


def test_pendulum_expert_swings_up_and_balances():
    returns = _returns("Pendulum-v1", pendulum_expert)
    assert returns.mean() > -300, returns


def test_pendulum_action_shape_dtype_and_bounds():
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        action = pendulum_expert(obs)
        assert action.shape == (1,) and action.dtype == np.float32
        assert -2.0 <= action[0] <= 2.0
        obs, *_ = env.step(action)


@pytest.mark.parametrize("env_id", sorted(EXPERTS))
def test_expert_is_deterministic(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=7)
    expert = EXPERTS[env_id]
    for _ in range(20):
        first, second = expert(obs.copy()), expert(obs.copy())
        np.testing.assert_array_equal(first, second)
        obs, _, terminated, truncated, _ = env.step(first)
        if terminated or truncated:
            break


@pytest.mark.parametrize("give_up_after", [50, 100, 200])
def test_capped_cartpole_return_sits_just_above_give_up_step(give_up_after):
    capped = make_capped_expert(cartpole_expert, give_up_after, give_up=0)
    returns = _returns("CartPole-v1", capped)
    # A constant push topples the pole within ~10 steps of giving up.
    assert ((returns >= give_up_after) & (returns <= give_up_after + 20)).all(), returns


def test_capped_expert_reset_restarts_the_step_count():
    capped = make_capped_expert(cartpole_expert, 30, give_up=1)
    first = _returns("CartPole-v1", capped, seeds=(1000,))
    second = _returns("CartPole-v1", capped, seeds=(1000,))  # run_episode calls reset()
    assert first.tolist() == second.tolist()
    assert 30 <= first[0] <= 50


def test_capped_expert_plays_expert_then_a_fixed_give_up_action():
    capped = make_capped_expert(lambda obs: 7, 2, give_up=3)
    obs = np.zeros(4, dtype=np.float32)
    assert [capped(obs) for _ in range(4)] == [7, 7, 3, 3]
    capped.reset()
    assert capped(obs) == 7


def test_capped_expert_gives_up_with_a_policy():
    seen = []
    capped = make_capped_expert(lambda obs: 7, 1, give_up=lambda obs: seen.append(obs) or 5)
    obs = np.ones(4, dtype=np.float32)
    assert [capped(obs) for _ in range(3)] == [7, 5, 5] and len(seen) == 2


def test_capped_expert_rejects_negative_give_up_after():
    with pytest.raises(ValueError, match="give_up_after"):
        make_capped_expert(cartpole_expert, -1, give_up=0)


def test_random_policy_samples_inside_the_space_reproducibly():
    discrete = gym.make("Acrobot-v1").action_space
    box = gym.make("Pendulum-v1").action_space
    obs = np.zeros(3, dtype=np.float32)
    for space in (discrete, box):
        draws = [random_policy(space, np.random.default_rng(3))(obs) for _ in range(2)]
        np.testing.assert_array_equal(draws[0], draws[1])
        policy = random_policy(space, np.random.default_rng(4))
        samples = [policy(obs) for _ in range(200)]
        assert all(space.contains(sample) for sample in samples)
    discrete_samples = {random_policy(discrete, np.random.default_rng(5))(obs)}
    policy = random_policy(discrete, np.random.default_rng(5))
    discrete_samples |= {policy(obs) for _ in range(200)}
    assert discrete_samples == {0, 1, 2}
