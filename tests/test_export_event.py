"""The event-driven runtime: each kernel computes its PyTorch layer, `decide` the model's decision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikingmind.export import event as er
from spikingmind.export.event import kernels
from spikingmind.checkpoint import load_checkpoint
from spikingmind.envs import get_env_spec
from spikingmind.errors import ConfigError, ExportError
from spikingmind.folding import fold_batch_norm
from spikingmind.model import CausalDecayMix, DecisionTransformer, ModelConfig, lif_no_grad
from spikingmind.metadata import DecodeRule
from spikingmind.policy import TorchPolicy, decode_actions
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds
from spikingmind.tokens import Normalization, TokenLayout
from spikingmind.verification import sample_windows
from tests.support.checkpoints import randomise_batch_norms

BETA, THRESHOLD = np.float32(0.5), np.float32(1.0)


def _model(env_id: str, n_blocks: int, time_steps: int, seed: int = 0):
    torch.manual_seed(seed)
    spec = get_env_spec(env_id)
    layout = TokenLayout(obs_dim=spec.obs_dim, act_dim=spec.act_dim, discrete=spec.discrete, context_length=5)
    norm = Normalization(obs_mean=(0.0,) * spec.obs_dim, obs_std=(1.0,) * spec.obs_dim,
                         return_scale=spec.return_scale, max_episode_steps=spec.max_episode_steps)
    cfg = ModelConfig(kind="snn", width=16, n_blocks=n_blocks, context_length=5, time_steps=time_steps)
    model = DecisionTransformer(cfg, layout.n_features, spec.act_dim)
    randomise_batch_norms(model, torch.Generator().manual_seed(seed))
    return model.eval(), spec, layout, norm


def test_lif_kernel_equals_the_pytorch_lif_bit_for_bit():
    currents = torch.randn(4, 5000, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.5
    expected = lif_no_grad(currents, float(BETA), float(THRESHOLD)).numpy().astype(np.uint8)
    actual = kernels._lif(currents.numpy(), BETA, THRESHOLD, np.empty(currents.shape, np.uint8))
    assert 0.1 < expected.mean() < 0.6  # spikes and resets both happen
    np.testing.assert_array_equal(actual, expected)


def test_synapses_add_the_weight_rows_of_the_inputs_that_spiked():
    spikes = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.uint8)
    weight_t = np.array([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]], np.float32)  # (C_in, C_out)
    bias = np.array([0.5, -0.5], np.float32)
    out = kernels._synapses(spikes, weight_t, bias, np.full((3, 2), np.nan, np.float32))
    np.testing.assert_array_equal(out, [[101.5, 201.5], [0.5, -0.5], [10.5, 19.5]])


def test_causal_mix_recurrence_equals_the_mixing_matrix():
    generator = torch.Generator().manual_seed(1)
    mix = CausalDecayMix(8, 12, (0.5, 0.95))
    randomise_batch_norms(mix, generator)
    mix.eval()
    spikes = (torch.rand(3, 12, 8, generator=generator) < 0.3).float()  # (T, L, C)
    with torch.inference_mode():
        expected = mix(spikes).numpy()
    scale, shift = fold_batch_norm(np.ones(8), np.zeros(8), mix.norm)
    decay = torch.sigmoid(mix.decay_logit.detach().double()).numpy()
    args = (decay.astype(np.float32), scale.astype(np.float32), shift.astype(np.float32))
    trace = np.zeros((3, 8), np.float32)
    actual = kernels._causal_mix(spikes.numpy().astype(np.uint8), *args, trace, np.empty((3, 12, 8), np.float32))
    np.testing.assert_allclose(actual, expected, atol=2e-6)
    # the trace it leaves continues the recurrence: 5 tokens, then 7 more, is all 12 at once
    trace = np.zeros((3, 8), np.float32)
    first = kernels._causal_mix(spikes[:, :5].numpy().astype(np.uint8), *args, trace, np.empty((3, 5, 8), np.float32))
    rest = kernels._causal_mix(spikes[:, 5:].numpy().astype(np.uint8), *args, trace, np.empty((3, 7, 8), np.float32))
    np.testing.assert_array_equal(np.concatenate([first, rest], axis=1), actual)


@pytest.mark.parametrize("env_id,n_blocks,time_steps", [
    ("CartPole-v1", 1, 4), ("CartPole-v1", 2, 4), ("CartPole-v1", 2, 1), ("Pendulum-v1", 2, 2)])
def test_decide_equals_model_decide(env_id, n_blocks, time_steps):
    model, spec, layout, norm = _model(env_id, n_blocks, time_steps)
    windows = np.concatenate([sample_windows(layout, norm, spec, 24, seed=3),
                              np.random.default_rng(4).normal(size=(8, layout.n_tokens, layout.n_features))
                              .astype(np.float32)])
    record: dict = {}
    with torch.inference_mode():
        expected = model.decide(torch.from_numpy(windows)).numpy()
        model(torch.from_numpy(windows), record)
    assert all(0.0 < float(spikes.mean()) < 1.0 for spikes in record.values()), "a silent or saturated layer"
    actual = er.decide(er.EventWeights.from_model(model), windows)
    assert actual.shape == expected.shape == (len(windows), spec.act_dim)
    # float64 weights run the same kernels in float64: against PyTorch in float64 every window
    # agrees (membranes here stay >= 4e-6 from threshold, float64 sums differ by ~1e-15)
    exact = er.decide(er.EventWeights.from_model(model.double(), np.float64), windows)
    with torch.inference_mode():
        expected64 = model.decide(torch.from_numpy(windows).double()).numpy()
    model.float()
    np.testing.assert_allclose(exact, expected64, rtol=0, atol=1e-9)
    rule = DecodeRule.for_env(spec, layout)
    np.testing.assert_array_equal(decode_actions(exact, rule), decode_actions(expected64, rule))
    # float32 (the runtime as deployed), another summation order than BLAS: a membrane within
    # float32 rounding of its threshold may flip a spike, hence the verification's criteria
    error = np.abs(actual - expected).max(axis=1)
    assert (error <= 1e-4).mean() >= 0.95, error.max()
    np.testing.assert_allclose(decode_actions(actual, rule)[error <= 1e-4], decode_actions(expected, rule)[error <= 1e-4],
                               atol=1e-4)
    if spec.discrete:
        np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))
    one = er.decide(er.EventWeights.from_model(model), windows[:1])  # batch 1 == row 0 of the batch
    np.testing.assert_array_equal(one, actual[:1])


def test_tokens_after_the_decision_token_are_not_read():
    model, spec, layout, norm = _model("CartPole-v1", 2, 4)
    weights = er.EventWeights.from_model(model)
    windows = sample_windows(layout, norm, spec, 4, seed=5)
    changed = windows.copy()
    changed[:, layout.decision_token + 1:] += 3.0  # the last action token: causally after the decision
    np.testing.assert_array_equal(er.decide(weights, changed), er.decide(weights, windows))
    changed[:, layout.decision_token] += 3.0  # the decision token itself must matter
    assert not np.array_equal(er.decide(weights, changed), er.decide(weights, windows))


def test_weights_refuse_the_ann_twin_a_training_model_and_mixed_neurons():
    model, *_ = _model("CartPole-v1", 1, 2)
    ann = DecisionTransformer(ModelConfig(kind="ann", width=16, n_blocks=1, context_length=5), 11, 2).eval()
    with pytest.raises(ConfigError, match="not the ANN twin"):
        er.EventWeights.from_model(ann)
    with pytest.raises(ExportError, match="eval mode"):
        er.EventWeights.from_model(model.train())
    model.eval()
    model.head_lif.threshold = 0.75
    with pytest.raises(ExportError, match="one \\(beta, threshold\\)"):
        er.EventWeights.from_model(model)


def test_verification_refuses_weights_that_do_not_match_the_model(snn_checkpoint):
    ckpt = load_checkpoint(snn_checkpoint)
    weights = er.EventWeights.from_model(ckpt.model)
    report = er.verify_against_torch(weights, ckpt)
    assert report["windows_within_tolerance"] >= 0.95 and report["action_mismatches"] == 0
    weights.head_t[:] = -weights.head_t  # a wrong readout: every action flips
    with pytest.raises(ExportError, match="differs from PyTorch"):
        er.verify_against_torch(weights, ckpt, source="tiny")


def test_event_policy_drives_episodes_like_pytorch(snn_checkpoint):
    ckpt = load_checkpoint(snn_checkpoint)
    seeds = evaluation_seeds(3, 0)
    event = run_episodes(er.EventPolicy(ckpt), seeds, max_steps=60)
    torch_run = run_episodes(TorchPolicy(ckpt), seeds, max_steps=60)
    assert event.returns == torch_run.returns and event.lengths == torch_run.lengths


# ---- streaming models -------------------------------------------------------------------------


def _stream_model(env_id: str, seed: int = 0):
    torch.manual_seed(seed)
    spec = get_env_spec(env_id)
    layout = TokenLayout(obs_dim=spec.obs_dim, act_dim=spec.act_dim, discrete=spec.discrete, context_length=4)
    norm = Normalization(obs_mean=(0.0,) * spec.obs_dim, obs_std=(1.0,) * spec.obs_dim,
                         return_scale=spec.return_scale, max_episode_steps=spec.max_episode_steps)
    cfg = ModelConfig(kind="snn", width=16, n_blocks=2, context_length=4, time_steps=3, history="stream")
    model = DecisionTransformer(cfg, layout.n_features, spec.act_dim)
    randomise_batch_norms(model, torch.Generator().manual_seed(seed))
    return model.eval(), spec, layout, norm


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_stream_step_equals_the_models_step(env_id):
    """Token by token over 12 steps (beyond the 4-step training segment) from the carried traces:
    in float64 the runtime's outputs are PyTorch's at every step."""
    from spikingmind.export.event.weights import initial_traces, step

    model, spec, layout, norm = _stream_model(env_id)
    episode = sample_windows(layout.__class__(layout.obs_dim, layout.act_dim, layout.discrete, 12), norm, spec, 5,
                             seed=2)  # (5, 36, F)
    model = model.double()
    weights = er.EventWeights.from_model(model, np.float64)
    traces, state, rows = initial_traces(weights, 5), model.initial_state(5), np.arange(5)
    for chunk in [slice(0, 2)] + [slice(i, i + 3) for i in range(2, 35, 3)]:
        ours = step(weights, episode[:, chunk], rows, traces)
        with torch.inference_mode():
            theirs, state = model.step(torch.from_numpy(episode[:, chunk]).double(), state)
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-9)
    for k, trace in enumerate(state):  # and the state they carry is the same
        np.testing.assert_allclose(traces[:, k].transpose(1, 0, 2), trace.numpy(), rtol=0, atol=1e-9)


def test_event_policy_streams_episodes_like_pytorch():
    from spikingmind.checkpoint import Checkpoint

    model, spec, layout, norm = _stream_model("CartPole-v1", seed=3)
    ckpt = Checkpoint(model=model, spec=spec, layout=layout, norm=norm)
    event = er.EventPolicy(ckpt)
    assert event.streaming and event.verification["action_mismatches"] == 0
    seeds = evaluation_seeds(3, 1)
    assert run_episodes(event, seeds).returns == run_episodes(TorchPolicy(ckpt), seeds).returns
