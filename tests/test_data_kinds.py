"""The noisy and late demonstration kinds: determinism, what each episode records, the returns
they give on CartPole (instant), expert resets, and --mix parsing with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikingmind.data import (NOISY_EPSILON_RANGE, LateExpert, NoisyExpert, collect, default_dataset_id,
                              existing_dataset_matches, load_episodes, parse_mix)
from spikingmind.errors import ConfigError, RunExistsError
from spikingmind.experts import cartpole_expert


def _spearman(a, b) -> float:
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 (no ties in these tests)
    return float(np.corrcoef(rank(np.asarray(a)), rank(np.asarray(b)))[0, 1])


def _episode_slices(episodes):
    return [slice(int(s), int(s + n)) for s, n in zip(episodes.starts, episodes.lengths)]


def test_noisy_and_late_episodes_are_the_same_bit_for_bit_with_one_or_two_workers(tmp_path):
    mix = {"expert": 0.25, "noisy": 0.5, "late": 0.25}
    _, alone = collect("CartPole-v1", 8, mix, seed=11, dataset_id="k-v0", root=tmp_path / "one", workers=1)
    _, pair = collect("CartPole-v1", 8, mix, seed=11, dataset_id="k-v0", root=tmp_path / "two", workers=2)
    _, other = collect("CartPole-v1", 8, mix, seed=12, dataset_id="k-v0", root=tmp_path / "three", workers=1)
    assert alone["content_hash"] == pair["content_hash"] != other["content_hash"]
    assert (tmp_path / "one" / "k-v0" / "spikingmind.json").read_bytes() == (
        tmp_path / "two" / "k-v0" / "spikingmind.json").read_bytes()
    first, second = load_episodes(str(tmp_path / "one" / "k-v0")), load_episodes(str(tmp_path / "two" / "k-v0"))
    np.testing.assert_array_equal(first.actions, second.actions)
    np.testing.assert_array_equal(first.observations, second.observations)
    assert sorted({r["policy"] for r in alone["episodes"]}) == ["expert", "late", "noisy"]


def test_late_episodes_of_a_planner_are_the_same_with_one_or_two_workers(tmp_path):
    # the Acrobot planner keeps a plan between calls: a worker that plays several episodes
    # must start each from a reset planner, whichever episodes it got
    mix = {"expert": 0.25, "late": 0.75}
    alone, pair = (collect("Acrobot-v1", 4, mix, seed=6, dataset_id="a-v0", root=tmp_path / str(w), workers=w)[1]
                   for w in (1, 2))
    assert alone["content_hash"] == pair["content_hash"] and alone["episodes"] == pair["episodes"]
    late = [r for r in alone["episodes"] if r["policy"] == "late"]
    assert len(late) == 3 and min(r["expert_from"] for r in late) < 100
    # the planner takes over and reaches the goal in about the expert's time from there
    assert all(-(r["expert_from"] + 150) < r["return"] <= -r["expert_from"] for r in late)


def test_noisy_episodes_record_the_epsilon_they_were_played_with(tmp_path):
    dataset, meta = collect("CartPole-v1", 16, {"noisy": 1.0}, seed=2, dataset_id="n-v0", root=tmp_path)
    records = meta["episodes"]
    epsilons = [r["epsilon"] for r in records]
    low, high = NOISY_EPSILON_RANGE
    assert all(low <= e < high for e in epsilons) and len(set(epsilons)) == len(epsilons)
    assert max(epsilons) - min(epsilons) > 0.5 * (high - low)  # drawn across the range, not one value
    # the fraction of steps that differ from the (stateless) expert is epsilon / 2 on average:
    # a random one of CartPole's two actions is the expert's half of the time
    episodes = load_episodes(str(tmp_path / dataset))
    deviation = []
    for part in _episode_slices(episodes):
        expert_actions = np.array([cartpole_expert(obs) for obs in episodes.observations[part]])
        deviation.append(float(np.mean(expert_actions != episodes.actions[part])))
    assert _spearman(epsilons, deviation) > 0.8
    assert np.mean(np.abs(np.asarray(deviation) - np.asarray(epsilons) / 2)) < 0.1


def test_noisy_returns_lie_between_random_and_expert_and_fall_with_epsilon(tmp_path):
    _, noisy = collect("CartPole-v1", 16, {"noisy": 1.0}, seed=0, dataset_id="n-v0", root=tmp_path)
    _, rand = collect("CartPole-v1", 16, {"random": 1.0}, seed=0, dataset_id="r-v0", root=tmp_path)
    returns = np.array([r["return"] for r in noisy["episodes"]])
    random_mean, expert_return = np.mean([r["return"] for r in rand["episodes"]]), 500.0
    assert random_mean < np.median(returns) < expert_return
    assert returns.max() == expert_return and returns.min() < random_mean + 0.1 * (expert_return - random_mean)
    # some land inside the range, not only at its ends (on CartPole not evenly: the pole either
    # stays up for all 500 steps or falls within about half of them)
    span = expert_return - random_mean
    assert np.sum((returns > random_mean + 0.1 * span) & (returns < expert_return - 0.1 * span)) >= 3
    assert _spearman([r["epsilon"] for r in noisy["episodes"]], returns) < -0.7


def test_late_episodes_play_random_actions_then_exactly_the_expert(tmp_path):
    dataset, meta = collect("CartPole-v1", 24, {"late": 1.0}, seed=1, dataset_id="l-v0", root=tmp_path)
    episodes = load_episodes(str(tmp_path / dataset))
    takeovers = [r["expert_from"] for r in meta["episodes"]]
    assert all(0 <= t < 500 for t in takeovers) and len(set(takeovers)) > 12
    differs_before = []
    for part, expert_from in zip(_episode_slices(episodes), takeovers):
        expert_actions = np.array([cartpole_expert(obs) for obs in episodes.observations[part]])
        played = episodes.actions[part]
        np.testing.assert_array_equal(played[expert_from:], expert_actions[expert_from:])
        differs_before.append(np.any(played[:expert_from] != expert_actions[:expert_from]))
    assert sum(differs_before) >= sum(t >= 10 for t in takeovers) - 1  # random play before the take-over


def test_heuristic_episodes_play_exactly_the_stateless_heuristic(tmp_path):
    from spikingmind.experts import cartpole_heuristic

    mix = {"heuristic": 0.75, "random": 0.25}
    dataset, meta = collect("CartPole-v1", 8, mix, seed=3, dataset_id="h-v0", root=tmp_path / "one", workers=1)
    _, pair = collect("CartPole-v1", 8, mix, seed=3, dataset_id="h-v0", root=tmp_path / "two", workers=2)
    assert meta["content_hash"] == pair["content_hash"]
    assert default_dataset_id("CartPole-v1", mix, 8, 3) == "cartpole-heuristic75-random25-n8-s3-v0"
    episodes = load_episodes(str(tmp_path / "one" / dataset))
    kinds = [r["policy"] for r in meta["episodes"]]
    assert kinds.count("heuristic") == 6
    differs_from_expert = 0
    for part, kind in zip(_episode_slices(episodes), kinds):
        observations = episodes.observations[part]
        heuristic = np.array([cartpole_heuristic(obs) for obs in observations])
        if kind == "heuristic":
            np.testing.assert_array_equal(episodes.actions[part], heuristic)
            differs_from_expert += int(np.any(heuristic != [cartpole_expert(obs) for obs in observations]))
        else:
            assert np.any(episodes.actions[part] != heuristic)
    assert differs_from_expert > 0  # the heuristic is not the planner expert under another name


def test_a_heuristic_mix_for_an_env_without_one_is_refused_before_playing(tmp_path):
    from spikingmind.envs import EnvSpec, register_env, unregister_env

    register_env(EnvSpec("NoHeuristicPole-v0", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500,
                         return_scale=500, max_episode_steps=500, expert=cartpole_expert, make=_make_cartpole))
    try:
        with pytest.raises(ConfigError, match="NoHeuristicPole-v0 has no heuristic expert"):
            collect("NoHeuristicPole-v0", 4, {"heuristic": 1.0}, seed=0, dataset_id="x-v0", root=tmp_path, workers=1)
    finally:
        unregister_env("NoHeuristicPole-v0")
    assert not any(tmp_path.iterdir())


class _ResetLog:
    """A stateful CartPole expert that logs its resets and the observations it is asked about."""

    def __init__(self):
        self.log: list = []

    def reset(self):
        self.log.append("reset")

    def __call__(self, obs):
        self.log.append(np.asarray(obs).tobytes())
        return cartpole_expert(obs)


def _make_cartpole():
    import gymnasium as gym

    return gym.make("CartPole-v1")


@pytest.mark.parametrize("kind", ["expert", "capped", "noisy", "late"])
def test_every_expert_kind_resets_the_expert_before_each_episode(tmp_path, kind):
    from spikingmind.envs import EnvSpec, register_env, unregister_env

    expert = _ResetLog()
    register_env(EnvSpec("ResetPole-v0", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500,
                         return_scale=500, max_episode_steps=500, expert=expert, make=_make_cartpole))
    try:
        dataset, _ = collect("ResetPole-v0", 4, {kind: 1.0}, seed=5, dataset_id="z-v0", root=tmp_path, workers=1)
        episodes = load_episodes(str(tmp_path / dataset))
    finally:
        unregister_env("ResetPole-v0")
    chunks, current = [], None
    for entry in expert.log:
        if entry == "reset":
            current = []
            chunks.append(current)
        else:
            assert current is not None, "the expert was asked before its first reset"
            current.append(entry)
    assert len(chunks) == 4  # exactly one reset per episode
    for chunk, part in zip(chunks, _episode_slices(episodes)):
        seen = {obs.tobytes() for obs in episodes.observations[part]}
        assert set(chunk) <= seen  # what the expert saw after a reset is of that episode alone


def test_late_expert_plays_exactly_expert_from_random_steps_then_the_expert():
    observations = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    late = LateExpert(cartpole_expert, 3, lambda obs: "random")
    for _ in range(2):  # and again after a reset
        late.reset()
        assert [late(obs) for obs in observations] == ["random"] * 3 + [cartpole_expert(o) for o in observations[3:]]


def test_noisy_expert_at_epsilon_zero_is_the_expert_and_at_one_the_random_policy():
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(50, 4)).astype(np.float32)
    sentinel = lambda obs: "random"  # noqa: E731
    never = NoisyExpert(cartpole_expert, 0.0, sentinel, np.random.default_rng(1))
    always = NoisyExpert(cartpole_expert, 1.0, sentinel, np.random.default_rng(1))
    assert [never(obs) for obs in observations] == [cartpole_expert(obs) for obs in observations]
    assert {always(obs) for obs in observations} == {"random"}
    with pytest.raises(ValueError, match="epsilon"):
        NoisyExpert(cartpole_expert, 1.5, sentinel, rng)
    with pytest.raises(ValueError, match="expert_from"):
        LateExpert(cartpole_expert, -1, sentinel)


def test_mixes_with_noisy_and_late_name_and_match_their_datasets(tmp_path):
    mix = parse_mix("expert=0.5,noisy=0.3,random=0.2")
    assert mix == {"expert": 0.5, "noisy": 0.3, "random": 0.2}
    assert default_dataset_id("CartPole-v1", mix, 6, 0) == "cartpole-expert50-noisy30-random20-n6-s0-v0"
    assert default_dataset_id("Acrobot-v1", parse_mix("late=1,noisy=1"), 6, 0) == "acrobot-late50-noisy50-n6-s0-v0"
    dataset, _ = collect("CartPole-v1", 6, mix, seed=0, root=tmp_path)
    assert existing_dataset_matches(dataset, tmp_path, "CartPole-v1", mix, 6, 0)
    with pytest.raises(RunExistsError, match="other settings"):
        existing_dataset_matches(dataset, tmp_path, "CartPole-v1", parse_mix("expert=0.5,capped=0.3,random=0.2"), 6, 0)


def test_collect_cli_reuses_a_noisy_dataset_with_exist_ok(tmp_path):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    args = ["collect", "--env", "CartPole-v1", "--episodes", "4", "--mix", "expert=0.5,noisy=0.3,random=0.2",
            "--workers", "2", "--root", str(tmp_path)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "noisy: 1 ep" in first.output  # 0.3 of 4 episodes, rounded
    meta = json.loads((tmp_path / "cartpole-expert50-noisy30-random20-n4-s0-v0" / "spikingmind.json").read_text())
    assert [r["policy"] for r in meta["episodes"]].count("noisy") == 1
    again = CliRunner().invoke(app, args + ["--exist-ok"])
    assert again.exit_code == 0 and "reusing it" in again.output


@pytest.mark.parametrize("text, message", [
    ("noisy", "NAME=WEIGHT"),
    ("expert=0.5,nosiy=0.5", "unknown policy 'nosiy'; choose from expert, capped, noisy, late, idle, random, heuristic"),
    ("noisy=lots", "weight of 'noisy' is not a number"),
    ("late=-0.2,expert=1", "weight of 'late' must be a non-negative"),
    ("noisy=nan", "weight of 'noisy' must be a non-negative"),
    ("noisy=0,late=0", "no positive weight"),
])
def test_bad_mixes_with_the_new_kinds_fail_in_one_line(tmp_path, text, message):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    with pytest.raises(ConfigError, match=message):
        parse_mix(text)
    result = CliRunner().invoke(app, ["collect", "--episodes", "2", "--mix", text, "--root", str(tmp_path)])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["noisy", "late"])
def test_the_new_kinds_need_an_expert(tmp_path, kind):
    from spikingmind.envs import EnvSpec, register_env, unregister_env

    register_env(EnvSpec("NoExpertPole-v0", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500,
                         return_scale=500, max_episode_steps=500, make=_make_cartpole))
    try:
        with pytest.raises(ConfigError, match="has no expert"):
            collect("NoExpertPole-v0", 2, {kind: 1.0}, dataset_id="e-v0", root=tmp_path, workers=2)
    finally:
        unregister_env("NoExpertPole-v0")
    assert not (tmp_path / "e-v0").exists()


def test_idle_episodes_hold_the_idle_action_then_play_exactly_the_expert(tmp_path):
    from spikingmind.envs import EnvSpec, register_env, unregister_env

    register_env(EnvSpec("IdlePole-v0", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500,
                         return_scale=500, max_episode_steps=500, expert=cartpole_expert, make=_make_cartpole,
                         idle_action=1))
    try:
        dataset, meta = collect("IdlePole-v0", 12, {"idle": 1.0}, seed=2, dataset_id="i-v0", root=tmp_path, workers=1)
        episodes = load_episodes(str(tmp_path / dataset))
    finally:
        unregister_env("IdlePole-v0")
    takeovers = [r["expert_from"] for r in meta["episodes"]]
    assert len(set(takeovers)) > 6 and all(r["policy"] == "idle" for r in meta["episodes"])
    for part, expert_from in zip(_episode_slices(episodes), takeovers):
        played = episodes.actions[part]
        held = min(expert_from, len(played))
        np.testing.assert_array_equal(played[:held], np.ones(held, dtype=played.dtype))  # the idle action, held
        np.testing.assert_array_equal(played[held:], [cartpole_expert(o) for o in episodes.observations[part][held:]])


def test_idle_kind_is_refused_before_playing_where_the_env_has_no_idle_action(tmp_path):
    from spikingmind.envs import EnvSpec, get_env_spec

    assert get_env_spec("CartPole-v1").idle_action is None  # CartPole always pushes
    assert get_env_spec("MountainCar-v0").idle_action == 1 and get_env_spec("Pendulum-v1").idle_action == (0.0,)
    with pytest.raises(ConfigError, match="CartPole-v1 has no idle action"):
        collect("CartPole-v1", 4, {"idle": 1.0}, seed=0, dataset_id="x-v0", root=tmp_path, workers=1)
    assert not any(tmp_path.iterdir())
    for bad in (2, -1, True, 0.5):
        with pytest.raises(ValueError, match="idle_action must be an action index"):
            EnvSpec("Bad-v0", obs_dim=4, action_kind="discrete", act_dim=2, target_return=1, return_scale=1,
                    max_episode_steps=5, idle_action=bad)
    with pytest.raises(ValueError, match="within action_low/action_high"):
        EnvSpec("BadTorque-v0", obs_dim=3, action_kind="continuous", act_dim=1, target_return=1, return_scale=1,
                max_episode_steps=5, action_low=(-2.0,), action_high=(2.0,), idle_action=(3.0,))
