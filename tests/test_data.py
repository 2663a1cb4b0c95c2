"""Demonstrations: deterministic hashes, recorded mix, token windows, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikingmind.data import collect, load_episodes, parse_mix
from spikingmind.errors import ConfigError, DatasetError, RunExistsError
from spikingmind.tokens import TokenLayout, Normalization, encode_return, step_tokens, window_indices, windows


def test_same_seed_same_hash_other_seed_other_hash(tmp_path):
    mix = {"expert": 0.5, "random": 0.5}
    _, first = collect("CartPole-v1", 4, mix, seed=7, dataset_id="a-v0", root=tmp_path / "one")
    _, again = collect("CartPole-v1", 4, mix, seed=7, dataset_id="a-v0", root=tmp_path / "two")
    _, other = collect("CartPole-v1", 4, mix, seed=8, dataset_id="a-v0", root=tmp_path / "three")
    assert first["content_hash"] == again["content_hash"]
    assert first["content_hash"] != other["content_hash"]


def test_one_and_two_workers_write_identical_data(tmp_path):
    mix = {"expert": 0.5, "capped": 0.25, "random": 0.25}
    _, alone = collect("CartPole-v1", 4, mix, seed=5, dataset_id="w-v0", root=tmp_path / "one", workers=1)
    seen = []
    _, pair = collect("CartPole-v1", 4, mix, seed=5, dataset_id="w-v0", root=tmp_path / "two", workers=2,
                      progress=lambda done, total: seen.append((done, total)))
    assert alone["content_hash"] == pair["content_hash"]
    assert alone["episodes"] == pair["episodes"]
    assert sorted({r["policy"] for r in pair["episodes"]}) == ["capped", "expert", "random"]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert (tmp_path / "one" / "w-v0" / "spikingmind.json").read_bytes() == (
        tmp_path / "two" / "w-v0" / "spikingmind.json").read_bytes()


def test_an_episode_does_not_depend_on_the_dataset_size(tmp_path):
    # its randomness derives from (dataset seed, index) alone; only the policy plan is shared
    small_id, _ = collect("CartPole-v1", 2, {"random": 1.0}, seed=4, dataset_id="s-v0", root=tmp_path)
    large_id, _ = collect("CartPole-v1", 3, {"random": 1.0}, seed=4, dataset_id="l-v0", root=tmp_path)
    small, large = load_episodes(str(tmp_path / small_id)), load_episodes(str(tmp_path / large_id))
    n = int(small.lengths.sum())
    np.testing.assert_array_equal(small.actions, large.actions[:n])
    np.testing.assert_array_equal(small.observations, large.observations[:n])


def _make_cartpole():
    import gymnasium as gym

    return gym.make("CartPole-v1")


def test_a_user_registered_env_goes_to_the_workers_pickled(tmp_path):
    from spikingmind.envs import EnvSpec, register_env, unregister_env
    from spikingmind.experts import cartpole_expert

    register_env(EnvSpec("PickledPole-v0", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500,
                         return_scale=500, max_episode_steps=500, expert=cartpole_expert, make=_make_cartpole))
    try:
        hashes = [collect("PickledPole-v0", 3, {"capped": 1.0}, seed=2, dataset_id="p-v0", root=tmp_path / str(w),
                          workers=w)[1]["content_hash"] for w in (1, 2)]
    finally:
        unregister_env("PickledPole-v0")
    assert hashes[0] == hashes[1]


def test_an_unpicklable_user_env_asks_for_one_worker(tmp_path):
    from spikingmind.envs import EnvSpec, register_env, unregister_env

    register_env(EnvSpec("LambdaPole-v0", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500,
                         return_scale=500, max_episode_steps=500, expert=lambda obs: 0, make=_make_cartpole))
    try:
        with pytest.raises(ConfigError, match="cannot be sent to worker processes.*use --workers 1"):
            collect("LambdaPole-v0", 2, {"expert": 1.0}, dataset_id="q-v0", root=tmp_path, workers=2)
    finally:
        unregister_env("LambdaPole-v0")


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_bad_worker_counts_are_refused(tmp_path, workers):
    with pytest.raises(ConfigError, match="--workers must be a whole number >= 1"):
        collect("CartPole-v1", 2, {"random": 1.0}, dataset_id="x-v0", root=tmp_path, workers=workers)
    assert not (tmp_path / "x-v0").exists()


def test_collect_cli_writes_the_same_dataset_with_one_or_two_workers(tmp_path):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    hashes = []
    for workers in ("1", "2"):
        result = CliRunner().invoke(app, ["collect", "--env", "CartPole-v1", "--episodes", "3", "--mix",
                                          "capped=1", "--workers", workers, "--root", str(tmp_path / workers)])
        assert result.exit_code == 0, result.output
        assert f"{workers} worker" in result.output and "3/3" in result.output
        hashes.append(result.output.split("content sha256 ")[1].split()[0])
    assert hashes[0] == hashes[1] and len(hashes[0]) == 64


def test_collect_cli_refuses_zero_workers_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    result = CliRunner().invoke(app, ["collect", "--episodes", "2", "--workers", "0", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "--workers must be a whole number >= 1, got 0" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_metadata_records_mix_seeds_and_policies(cartpole_dataset, datasets_root):
    meta = json.loads((datasets_root / cartpole_dataset / "spikingmind.json").read_text())
    assert meta["mix"] == {"expert": 0.5, "capped": 0.25, "random": 0.25}
    policies = [e["policy"] for e in meta["episodes"]]
    assert sorted(policies) == sorted(["expert"] * 6 + ["capped"] * 3 + ["random"] * 3)
    capped = [e for e in meta["episodes"] if e["policy"] == "capped"]
    # after giving up it acts at random, which topples the pole within a few dozen steps
    assert all(e["give_up_after"] <= e["return"] <= e["give_up_after"] + 100 for e in capped)
    expert = [e["return"] for e in meta["episodes"] if e["policy"] == "expert"]
    assert min(expert) == 500.0


def test_loaded_episodes_match_metadata(cartpole_dataset):
    episodes = load_episodes(cartpole_dataset, "CartPole-v1")
    returns = [e["return"] for e in episodes.metadata["episodes"]]
    np.testing.assert_allclose(episodes.returns, returns)
    rtg = episodes.returns_to_go()
    assert rtg[episodes.starts[0]] == returns[0]
    assert episodes.timesteps()[episodes.starts[1]] == 0


def test_existing_dataset_is_not_overwritten(tmp_path):
    collect("CartPole-v1", 2, {"random": 1.0}, seed=1, dataset_id="keep-v0", root=tmp_path)
    before = (tmp_path / "keep-v0" / "spikingmind.json").read_bytes()
    with pytest.raises(RunExistsError, match="already exists"):
        collect("CartPole-v1", 2, {"expert": 1.0}, seed=2, dataset_id="keep-v0", root=tmp_path)
    assert (tmp_path / "keep-v0" / "spikingmind.json").read_bytes() == before


def test_dataset_of_another_env_is_refused(cartpole_dataset):
    with pytest.raises(DatasetError, match="obs_dim"):
        load_episodes(cartpole_dataset, "Acrobot-v1")


@pytest.mark.parametrize("text, message", [
    ("expert=0.7,random", "NAME=WEIGHT"),
    ("expert=0.7,wizard=0.3", "unknown policy 'wizard'"),
    ("expert=abc", "not a number"),
    ("expert=-1", "non-negative"),
    ("expert=0,random=0", "no positive weight"),
])
def test_bad_mix_strings(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_mix(text)


def test_mix_is_normalised():
    assert parse_mix("expert=7, random=3") == {"expert": 0.7, "random": 0.3}


def test_dataset_ids_must_end_in_version(tmp_path):
    with pytest.raises(ConfigError, match="-vN"):
        collect("CartPole-v1", 1, {"random": 1.0}, dataset_id="noversion", root=tmp_path)


def test_windows_pad_on_the_left_and_lay_out_tokens():
    layout = TokenLayout(obs_dim=2, act_dim=3, discrete=True, context_length=3)
    norm = Normalization((0.0, 0.0), (1.0, 1.0), return_scale=10.0, max_episode_steps=100)
    obs = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    rows = step_tokens(layout, norm, obs, np.array([0, 2, 1]), np.array([3.0, 2.0, 1.0]), np.arange(3))
    assert rows.shape == (3, 3, layout.n_features)
    assert rows[1, 0, 0] == pytest.approx(encode_return(2.0, 10.0))
    assert rows[1, 1, 0] == rows[1, 0, 0] and rows[1, 2, 0] == 0.0  # repeated on the state token only
    assert list(rows[1, 1, layout.obs_slice]) == [3, 4]
    assert list(rows[1, 2, layout.act_slice]) == [0, 0, 1]
    assert list(rows[2, 1, layout.type_slice]) == [0, 1, 0]
    assert rows[2, 0, layout.time_channel] == pytest.approx(0.02)
    index, valid = window_indices(np.array([1]), np.array([0]), 3)
    window = windows(rows, index, valid)[0]
    assert window.shape == (9, layout.n_features)
    assert not window[:3].any()  # one padded step
    np.testing.assert_array_equal(window[3:6], rows[0])
    np.testing.assert_array_equal(window[6:], rows[1])


def test_return_encoding_is_monotone_and_signed():
    values = encode_return(np.array([-500.0, -10.0, 0.0, 10.0, 100.0, 500.0]), 500.0)
    assert np.all(np.diff(values) > 0)
    assert values[2] == 0.0 and values[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(encode_return([-10.0, 100.0], 500.0, gain=4.0), 4.0 * values[[1, 4]], rtol=1e-12)


def test_return_gain_reaches_the_tokens():
    layout = TokenLayout(obs_dim=1, act_dim=2, discrete=True, context_length=1)
    plain = Normalization((0.0,), (1.0,), return_scale=10.0, max_episode_steps=100)
    strong = Normalization((0.0,), (1.0,), return_scale=10.0, max_episode_steps=100, return_gain=4.0)
    rows = [step_tokens(layout, norm, np.ones((1, 1), np.float32), None, np.array([3.0]), np.zeros(1))
            for norm in (plain, strong)]
    assert rows[1][0, 0, 0] == pytest.approx(4.0 * rows[0][0, 0, 0]) and rows[0][0, 0, 0] > 0
