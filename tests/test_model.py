"""The spiking DT and its twin: neuron dynamics, binary spikes, causality, live attention."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch

from spikingmind.model import LIF, DecisionTransformer, ModelConfig, lif_step


def test_lif_step_equals_snntorch_leaky_step_for_step():
    torch.manual_seed(0)
    beta, threshold = 0.5, 1.0
    leaky = snn.Leaky(beta=beta, threshold=threshold, reset_mechanism="zero")
    currents = torch.rand(200, 32) * 1.5
    mem_ref = leaky.init_leaky()
    mem = torch.zeros(32)
    spikes_ours, spikes_ref = [], []
    for current in currents:
        spike_ref, mem_ref = leaky(current, mem_ref)
        spike, mem = lif_step(current, mem, beta, threshold, 2.0)
        spikes_ref.append(spike_ref)
        spikes_ours.append(spike)
    spikes_ref, spikes_ours = torch.stack(spikes_ref), torch.stack(spikes_ours)
    assert spikes_ref.sum() > 100  # the comparison is not vacuous
    assert torch.equal(spikes_ours, spikes_ref)


def test_lif_layer_inference_path_equals_surrogate_path():
    torch.manual_seed(1)
    layer = LIF(0.5, 1.0, 2.0)
    currents = torch.randn(4, 3, 10, 8) + 0.8
    with torch.no_grad():
        fast = layer(currents)
    slow = layer(currents.clone().requires_grad_(True))
    assert torch.equal(fast, slow.detach())


def test_lif_gradient_flows_through_surrogate():
    layer = LIF(0.5, 1.0, 2.0)
    currents = (torch.rand(4, 5, generator=torch.Generator().manual_seed(2)) + 0.5).requires_grad_(True)
    layer(currents).sum().backward()
    assert currents.grad is not None and currents.grad.abs().sum() > 0


def _model(kind="snn", seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, width=16, n_blocks=2, context_length=5, **overrides)
    return DecisionTransformer(cfg, n_features=11, n_out=2).eval()


def _tokens(batch=3, n_tokens=15, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_tokens, 11, generator=generator) * 2


def test_every_spiking_activation_is_binary():
    model = _model()
    record: dict = {}
    with torch.no_grad():
        model(_tokens(), record)
    assert len(record) == 2 * 9 + 1
    for name, spikes in record.items():
        assert set(torch.unique(spikes).tolist()) <= {0.0, 1.0}, name
    assert sum(float(s.sum()) for s in record.values()) > 0


def test_trained_attention_fires_on_real_episode_windows(snn_checkpoint, cartpole_dataset):
    """The seed project's attention output was always zero: guard the AND outputs explicitly."""
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.data import load_episodes
    from spikingmind.tokens import step_tokens, window_indices, windows

    ckpt = load_checkpoint(snn_checkpoint)
    episodes = load_episodes(cartpole_dataset)
    rows = step_tokens(ckpt.layout, ckpt.norm, episodes.observations, episodes.actions,
                       episodes.returns_to_go(), episodes.timesteps())
    ends = np.arange(0, len(rows), 7)
    index, valid = window_indices(ends, np.repeat(episodes.starts, episodes.lengths)[ends], ckpt.layout.context_length)
    record: dict = {}
    with torch.no_grad():
        ckpt.model(torch.from_numpy(windows(rows, index, valid)), record)
    for name in ("blocks.0.attn.kv_and", "blocks.0.attn.qkv_and"):
        assert record[name].sum() > 0, f"{name} never fired on real inputs"
    assert set(torch.unique(record["blocks.0.attn.qkv_and"]).tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_future_tokens_never_change_the_past(kind):
    model = _model(kind)
    tokens = _tokens(batch=2)
    for position in (0, 4, 9, 13):
        perturbed = tokens.clone()
        perturbed[:, position + 1:] += torch.randn_like(perturbed[:, position + 1:]) * 3
        rec_a, rec_b = {}, {}
        with torch.no_grad():
            out_a = model(tokens, rec_a if kind == "snn" else None)
            out_b = model(perturbed, rec_b if kind == "snn" else None)
        assert torch.equal(out_a[:, : position + 1], out_b[:, : position + 1])
        assert not torch.equal(out_a[:, position + 1:], out_b[:, position + 1:])
        for name in rec_a:
            assert torch.equal(rec_a[name][:, :, : position + 1], rec_b[name][:, :, : position + 1]), name


def test_causal_mix_is_lower_triangular_decay():
    model = _model()
    matrix = model.blocks[0].attn.mix.mixing_matrix().detach()
    assert torch.equal(torch.triu(matrix, diagonal=1), torch.zeros_like(matrix))
    decay = torch.sigmoid(model.blocks[0].attn.mix.decay_logit.detach())
    assert torch.allclose(matrix[:, 3, 1], decay**2)
    assert torch.allclose(matrix[:, 2, 2], torch.ones_like(decay))


def test_twins_have_the_same_size():
    snn_params = sum(p.numel() for p in _model("snn").parameters())
    ann_params = sum(p.numel() for p in _model("ann").parameters())
    assert abs(snn_params - ann_params) / ann_params < 0.1


def test_float64_model_runs_and_matches_float32_spikes_mostly():
    model = _model()
    tokens = _tokens()
    with torch.no_grad():
        out32 = model(tokens)
        out64 = model.double()(tokens.double())
    assert out64.dtype == torch.float64
    assert np.isfinite(out64.numpy()).all()
    assert (out32.argmax(-1) == out64.float().argmax(-1)).float().mean() > 0.9


@pytest.mark.parametrize("kind", ["snn", "ann"])
@pytest.mark.parametrize("n_blocks", [1, 2])
def test_decide_equals_forward_at_the_decision_token(kind, n_blocks):
    """The fast policy path (last block at the decision token only) gives forward()'s values."""
    torch.manual_seed(3)
    cfg = ModelConfig(kind=kind, width=16, n_blocks=n_blocks, context_length=5)
    model = DecisionTransformer(cfg, n_features=11, n_out=2).double().eval()
    tokens = _tokens(batch=64, seed=4).double()
    with torch.inference_mode():
        full = model(tokens)[:, model.decision_token]
        fast = model.decide(tokens)
    assert fast.shape == (64, 2) and full.abs().max() > 0
    if kind == "snn":
        record = {}
        with torch.inference_mode():
            model(tokens, record)
        assert record["head.lif"][:, :, model.decision_token].sum() > 0  # the readout is not silent
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-12)


def test_bad_config_is_rejected():
    from spikingmind.errors import ConfigError

    with pytest.raises(ConfigError, match="beta"):
        ModelConfig(beta=1.5)
    with pytest.raises(ConfigError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({"colour": 1})
