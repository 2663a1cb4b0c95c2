"""Loihi fixed-point formats and the NumPy emulation of Lava's bit-accurate integer models."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from spikingmind import fixed_point as fxp
from spikingmind.export import lava
from spikingmind.export.lava.host import host_currents, host_data, lava_records
from spikingmind.export.lava_sidecar.plan import emulate
from spikingmind.export.reference import ReferenceSimulator
from tests.support.graphs import decision_inputs, dt_graph


@pytest.mark.parametrize("sign", ["mixed", "excitatory", "inhibitory"])
def test_weight_round_trip_is_within_half_a_step(sign):
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.4, (16, 24))
    weights = {"mixed": weights, "excitatory": np.abs(weights), "inhibitory": -np.abs(weights)}[sign]
    scale = fxp.layer_scale(1.0)
    report = fxp.QuantizationReport()
    mant, exp = fxp.quantize_weights(weights, scale, layer="w", report=report)
    step = 2 ** exp * (2 if sign == "mixed" else 1)
    assert np.max(np.abs(mant * 2.0 ** exp - weights * scale)) <= step / 2
    assert np.array_equal(fxp.lava_weights(mant), mant)  # Lava's clip + truncation change nothing
    assert fxp.sign_mode(mant) == sign and report.clipped == 0
    assert np.abs(mant).max() > 128  # the exponent uses the mantissa's range


def test_saturation_is_reported_per_layer_never_wrapped():
    report = fxp.QuantizationReport()
    mant, exp = fxp.quantize_bias(np.array([1e9, -1e9, 0.5]), 4096.0, layer="big", report=report)
    assert exp == fxp.BIAS_EXP_MAX and mant.tolist()[:2] == [fxp.BIAS_MANT_MAX, fxp.BIAS_MANT_MIN]
    act = fxp.quantize_activation(np.array([100.0, -100.0, 1.0]), 4096.0, layer="embed", report=report)
    assert act.tolist() == [fxp.ACT_MAX, -fxp.ACT_MAX - 1, 4096]
    assert fxp.quantize_decay(-0.5, layer="leaky", report=report) == fxp.DECAY_MAX
    assert fxp.quantize_threshold(1e6, 4096.0, layer="vth", report=report) == fxp.VTH_MAX
    assert [(r.layer, r.quantity, r.clipped) for r in report.records] == [
        ("big", "bias", 2), ("embed", "graded_input", 2), ("leaky", "dv", 1), ("vth", "vth", 1)]
    assert "big.bias: 2/3 values clipped" in str(report)


def test_lif_step_matches_hand_computed_loihi_arithmetic():
    state = fxp.FixedLifState(np.array([0, 1000], np.int32), np.array([-4097, 100000], np.int32))
    spikes = fxp.lif_fixed_step(state, np.array([10, -3]), du=fxp.DU_FULL, dv=2048,
                                bias=fxp.effective_bias(np.array([5, 0]), 2), vth=2000)
    # u is replaced by act << 6; v halves toward zero, adds u and bias << exp
    assert state.u.tolist() == [640, -192]
    assert state.v.tolist() == [-2048 + 640 + 20, 50000 - 192] and spikes.tolist() == [False, False]
    # a spike needs v > vth << 6 and resets v to 0
    state = fxp.FixedLifState(np.zeros(1, np.int32), np.zeros(1, np.int32))
    assert fxp.lif_fixed_step(state, np.array([3000]), du=fxp.DU_FULL, dv=0, bias=np.zeros(1, np.int32),
                              vth=2999).tolist() == [True]
    assert state.v.tolist() == [0]


def test_state_limits_are_counted():
    state = fxp.FixedLifState(np.zeros(2, np.int32), np.zeros(2, np.int32))
    for _ in range(3):
        fxp.lif_fixed_step(state, np.array([0, 0]), du=fxp.DU_FULL, dv=0,
                           bias=np.array([-(fxp.STATE_LIMIT // 2), 0], np.int32), vth=fxp.VTH_MAX)
    assert state.v[0] == -(fxp.STATE_LIMIT - 1) and state.saturated == 2
    fxp.lif_fixed_step(state, np.array([0, (1 << 17) + 1]), du=fxp.DU_FULL, dv=0,
                       bias=np.zeros(2, np.int32), vth=fxp.VTH_MAX)
    assert state.wrapped == 1  # Lava wraps u; the emulation wraps identically and counts it


def _fixed_point_spikes(graph, decisions: int):
    """(emulated fixed-point spike records, reference float64 records) of `decisions` inputs."""
    plan, host_terms, notes = lava.build_plan(graph)
    assert notes["quantization_report"].clipped == 0
    inputs = decision_inputs(graph, decisions)
    reference = ReferenceSimulator(graph).run(inputs, record=True)
    n_steps = plan.total_steps(decisions)
    currents = host_currents(graph, host_terms, inputs)
    data = host_data(plan, currents, n_steps, fixed=True)
    traces, counts = emulate(plan, data, n_steps, fixed=True)
    assert all(c == {"u_wrapped": 0, "v_saturated": 0} for c in counts.values())
    records = lava_records(plan, {("pop/" + k if k != "readout" else k): v for k, v in traces.items()}, decisions,
                            True)
    spiking = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF | nir.Threshold)]
    assert set(spiking) <= set(records)
    return {n: records[n] for n in spiking}, reference.records


def test_fixed_point_is_exact_where_quantisation_is_exact():
    """Dyadic weights, biases, inputs and decays (tests/support/graphs.py) survive Loihi's
    8-bit mantissas and 12-bit decays exactly: then every spike of every layer must agree."""
    fixed, reference = _fixed_point_spikes(dt_graph(blocks=1, seed=4, dyadic=True), 6)
    for name, spikes in fixed.items():
        np.testing.assert_array_equal(spikes, reference[name], err_msg=name)
    assert sum(float(s.sum()) for s in fixed.values()) > 0


def test_fixed_point_plan_tracks_float_closely():
    """Real-valued weights lose bits to quantisation: a few spikes near threshold may flip,
    in every layer fewer than 1% (measured: at least 99.48% agreement per layer)."""
    fixed, reference = _fixed_point_spikes(dt_graph(blocks=1, seed=4, dyadic=False), 6)
    for name, spikes in fixed.items():
        agreement = np.mean(spikes == reference[name])
        assert agreement >= 0.99, (name, agreement)


def test_mixed_sign_weights_split_into_excitatory_and_inhibitory_groups():
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 0.4, 500)
    scale = fxp.layer_scale(1.0)
    masks, error = fxp.plan_weight_groups(weights, scale)
    assert len(masks) == 2 and np.array_equal(masks[0] | masks[1], np.ones(500, bool))
    groups = fxp.quantize_weight_groups(weights, scale, masks)
    modes = sorted(fxp.sign_mode(g.mant, implicit_zero=True) for g in groups)
    assert modes == ["excitatory", "inhibitory"]  # each sign keeps the full 8-bit mantissa
    assert all(np.abs(g.mant).max() > 128 for g in groups)
    single = fxp.quantize_weights(weights, scale, implicit_zero=True)
    single_error = np.sum((single[0] * 2.0 ** single[1] - weights * scale) ** 2)
    assert error * 2 < single_error
    rebuilt = np.zeros(500)
    for g in groups:
        rebuilt[g.select] = g.mant * 2.0 ** g.exp
    assert np.sum((rebuilt - weights * scale) ** 2) == pytest.approx(error)


def test_wide_range_weights_get_a_finer_exponent_for_the_small_taps():
    weights = np.concatenate([np.full(5, 60.0), np.linspace(0.01, 0.9, 400)])  # excitatory, like the causal mix
    scale = 100.0
    masks, _ = fxp.plan_weight_groups(weights, scale)
    groups = fxp.quantize_weight_groups(weights, scale, masks)
    assert len(groups) == 2 and groups[0].exp > groups[1].exp
    report = fxp.QuantizationReport()
    fxp.quantize_weight_groups(weights, scale, masks, layer="mix", report=report)
    assert report.clipped == 0


def test_exponent_never_clips_a_positive_peak_of_a_mixed_matrix():
    # 255.6 rounds to 256 > 254 (mixed-sign top): the exponent must grow, not clip
    report = fxp.QuantizationReport()
    mant, exp = fxp.quantize_weights(np.array([255.6, -3.0]), 1.0, layer="w", report=report)
    assert report.clipped == 0 and exp == 1 and mant.tolist() == [128, -2]
