"""The energy regulariser is the energy report's spike-driven energy, and it has a gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikingmind.energy.profiles import load_profile
from spikingmind.energy.regularizer import layer_spike_rates, spike_energy, spike_energy_table
from spikingmind.energy.report import Accounted, build_report
from spikingmind.energy.snn_counts import count_snn
from spikingmind.export.nir import model_to_graph
from spikingmind.export.reference import ReferenceSimulator
from spikingmind.model import DecisionTransformer, ModelConfig
from tests.support.checkpoints import randomise_batch_norms


def _firing_model(seed: int = 0) -> DecisionTransformer:
    """A tiny float64 spiking DT whose every layer fires (random BatchNorm statistics and gains)."""
    torch.manual_seed(seed)
    model = DecisionTransformer(ModelConfig(width=6, n_blocks=2, context_length=3, time_steps=3), 7, 2).double()
    randomise_batch_norms(model, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model.blocks[0].attn.q.linear.weight[:, 1] = 0.0  # a zero weight column: that fan-out must shrink
    return model.eval()


def _tokens(batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, 9, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2


@pytest.mark.parametrize("profile_name", ["loihi", "loihi-sanafe", "loihi-kerasspiking"])
def test_regulariser_equals_the_reports_spike_driven_energy(profile_name):
    model, tokens, profile = _firing_model(), _tokens(), load_profile(profile_name)
    record: dict = {}
    with torch.no_grad():
        model(tokens, record)
    assert all(0 < float(s.mean()) < 1 for s in record.values()), "a silent or saturated layer tests nothing"
    regulariser = float(spike_energy(record, spike_energy_table(model, profile)))
    # the same spikes through the exported graph, the reference simulator and the report's counting
    graph = model_to_graph(model)
    inputs = tokens.numpy().transpose(0, 2, 1)
    records = dict(ReferenceSimulator(graph).run(inputs, record=True).records)
    records["input"] = np.broadcast_to(inputs, (model.cfg.time_steps, *inputs.shape))
    for name, spikes in record.items():  # float64: PyTorch and the reference fire the same spikes
        np.testing.assert_array_equal(records[name], spikes.numpy().transpose(0, 1, 3, 2), err_msg=name)
    report = build_report([Accounted("full_window", count_snn(graph, records))], [profile], [])
    assert regulariser == pytest.approx(report.snn_spike_driven_pj, rel=1e-12)
    assert regulariser > 0


def test_zero_weight_columns_shrink_the_fan_out():
    model = _firing_model()
    table = spike_energy_table(model, load_profile("loihi")).per_spike["blocks.0.attn.lif_in"]
    # channel 1 drives k and v (2 x 6 weights) but no q: 12 synaptic ops instead of 18, plus routing
    assert table[0, 1] == pytest.approx(1.7 + 12 * 23.6) and table[0, 0] == pytest.approx(1.7 + 18 * 23.6)
    mix = spike_energy_table(model, load_profile("loihi")).per_spike["blocks.0.attn.kv_and"]
    assert mix[:, 0].tolist() == pytest.approx([1.7 + d * 23.6 for d in (9, 8, 7, 6, 5, 4, 3, 2, 1)])  # later tokens


def test_the_regulariser_has_a_gradient_through_the_surrogate():
    model, tokens = _firing_model(), _tokens()
    table = spike_energy_table(model, load_profile("loihi"))
    record: dict = {}
    model(tokens, record)
    (spike_energy(record, table) / table.max_pj + layer_spike_rates(record).mean()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert float(model.blocks[0].attn.q.linear.weight.grad.abs().sum()) > 0
    assert 0 < float(spike_energy(record, table)) < table.max_pj
