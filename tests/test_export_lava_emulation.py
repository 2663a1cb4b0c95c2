"""The `loihi-emulation` backend: Loihi fixed point in NumPy, one decision per batch row.

Checked against the Lava-timeline emulation (`lava_sidecar.plan.emulate`, itself bit-exact
against Lava fixed_pt) on every population, and against real Lava fixed_pt on the actions of a
trained model's recorded decisions (skipped only where no Python 3.10 exists at all).
"""

from __future__ import annotations

import numpy as np
import pytest

from spikingmind import fixed_point as fxp
from spikingmind.errors import ExportError
from spikingmind.export import lava
from spikingmind.export.lava.bundle import bundle_host_terms
from spikingmind.export.lava.emulation import FixedPointNetwork, LoihiEmulationPolicy, synapse_terms
from spikingmind.export.lava.host import fixed_host_currents, host_currents, host_data, lava_records, readout_values
from spikingmind.export.lava_sidecar.plan import SparseWeights, emulate
from spikingmind.export.nir import NIRPolicy
from spikingmind.policy import decode_actions
from spikingmind.rollout import record_decision_inputs
from tests.support.graphs import decision_inputs, dt_graph


@pytest.fixture(scope="module")
def trained(snn_checkpoint, tmp_path_factory):
    """The tiny trained spiking DT as a .nir file and as a Lava bundle."""
    from spikingmind.export.nir import checkpoint_to_graph, write_graph

    folder = tmp_path_factory.mktemp("emulation")
    graph = checkpoint_to_graph(snn_checkpoint)
    nir_file = write_graph(graph, folder / "model.nir")
    return {"graph": graph, "nir": nir_file, "bundle": lava.export_lava_bundle(graph, folder / "bundle"),
            "checkpoint": snn_checkpoint}


# ---- the network against the Lava-timeline emulation ----------------------------------------


@pytest.mark.parametrize("dyadic, blocks, seed", [(True, 2, 3), (False, 2, 4), (False, 1, 5)])
def test_every_population_and_the_readout_equal_the_lava_timeline_emulation(dyadic, blocks, seed):
    graph = dt_graph(channels=8, tokens=6, blocks=blocks, seed=seed, dyadic=dyadic)
    plan, host_terms, _ = lava.build_plan(graph)
    n = 7
    inputs = decision_inputs(graph, n, seed=seed, dyadic=dyadic)
    currents = host_currents(graph, host_terms, inputs)
    n_steps = plan.total_steps(n)
    traces, _ = emulate(plan, host_data(plan, currents, n_steps, fixed=True), n_steps, fixed=True)
    want = lava_records(plan, {("pop/" + k if k != "readout" else k): v for k, v in traces.items()}, n, True)
    network = FixedPointNetwork(plan)
    run = network.run(fixed_host_currents(plan, currents), n, record=True)
    recorded = {p.name for p in plan.populations if p.record}
    assert set(run.spikes) == recorded and len(recorded) < len(plan.populations)  # relays are not recorded
    for name in recorded:
        np.testing.assert_array_equal(run.spikes[name], want[name].astype(bool), err_msg=name)
        assert run.spike_counts[name] == int(want[name].sum())
    assert sum(run.spike_counts.values()) > 0
    out = readout_values(plan, run.readout.transpose(2, 0, 1), True).transpose(1, 2, 0)
    np.testing.assert_array_equal(out.reshape(plan.time_steps, n, *plan.readout.shape), want[plan.readout.name])
    # every relay and AND population is a truth table, no LIF is
    kinds = {p.name: p.kind for p in plan.populations}
    assert {kinds[name] for name in network.logic} == {"relay", "threshold"}
    assert all(kinds[p.name] != "lif" or p.name not in network.logic for p in plan.populations)


def _random_group(rng, rows, cols):
    """A synapse group on given coordinates: mixed-sign even mantissas, a negative exponent
    (a right shift, which is not linear: every group must be shifted on its own)."""
    return np.stack([rows, cols]), rng.integers(-128, 128, rows.size) * 2, -2


@pytest.mark.parametrize("form", ["diagonal", "channel", "token", "sparse", "channel-with-a-gap"])
def test_each_synapse_form_equals_the_sparse_matrix(form):
    rng = np.random.default_rng(7)
    c, tokens = 5, 4
    grid = np.arange(c * tokens).reshape(c, tokens)
    if form == "diagonal":
        rows = cols = np.arange(c * tokens)
    elif form in ("channel", "channel-with-a-gap"):  # kron(W, I_L), W (3, 5) dense
        o, ci, i = np.meshgrid(np.arange(3), np.arange(c), np.arange(tokens), indexing="ij")
        rows, cols = (o * tokens + i).ravel(), grid[ci, i].ravel()
    elif form == "token":  # channel-diagonal, lower-triangular in tokens
        ch, i, j = np.nonzero(np.tril(np.ones((c, tokens, tokens), bool)))
        rows, cols = grid[ch, i], grid[ch, j]
    else:
        rows, cols = rng.integers(0, 3 * tokens, 30), rng.integers(0, c * tokens, 30)
        keep = np.unique(rows * 1000 + cols, return_index=True)[1]
        rows, cols = rows[keep], cols[keep]
    shape_dst = [c, tokens] if form in ("diagonal", "token") else [3, tokens]
    index, mant, exp = _random_group(rng, rows, cols)
    if form == "channel":  # one value per (o, c), the same at every token
        mant = np.repeat(mant.reshape(3, c, tokens)[:, :, :1], tokens, axis=2).ravel()
    if form == "channel-with-a-gap":  # the same, with one token's entry missing: not kron(W, I)
        mant = np.repeat(mant.reshape(3, c, tokens)[:, :, :1], tokens, axis=2).ravel()
        index, mant = index[:, 1:], mant[1:]
    (synapse,) = synapse_terms([(index, mant, exp)], shape_dst, [c, tokens])
    assert synapse.kind == {"channel-with-a-gap": "sparse"}.get(form, form) and synapse.weight_exp == exp
    n_dst = int(np.prod(shape_dst))
    weights = fxp.lava_weights(mant, implicit_zero=index.shape[1] < n_dst * c * tokens)
    matrix = SparseWeights(index, weights, (n_dst, c * tokens))
    spikes = rng.random((6, c * tokens)) < 0.5
    want = np.stack([fxp.shift_accumulated(matrix.accumulate(s), exp) for s in spikes])
    grid = spikes.reshape(6, c, tokens).transpose(1, 0, 2).astype(np.float64)  # (C, B, L), as the network holds it
    got = synapse(grid)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.transpose(1, 0, 2).reshape(6, n_dst), want)


def test_groups_with_left_shifts_merge_and_right_shifts_stay_apart():
    """sum_g (a_g << e_g) is one product for e_g >= 0; a right shift rounds toward -inf, so
    floor(a / 4) + floor(b / 4) != floor((a + b) / 4): such a group keeps its own sum."""
    index = np.stack([np.arange(4), np.arange(4)])
    groups = [(index[:, :2], np.array([3, 5]), 2), (index[:, 2:], np.array([-8, 10]), 0),
              (index[:, :2], np.array([1, 3]), -1), (index[:, 2:], np.array([-3, -1]), -1)]
    terms = synapse_terms(groups, [4, 1], [4, 1])
    assert [term.weight_exp for term in terms] == [0, -1, -1]
    spikes = np.ones((4, 1, 1))
    total = sum(term(spikes) for term in terms).reshape(-1)
    assert total.tolist() == [12 + 0, 20 + 1, -8 - 2, 10 - 1]  # 1 >> 1 == 0, -3 >> 1 == -2, -1 >> 1 == -1


def test_a_plan_without_balanced_delays_or_a_readout_is_refused():
    plan, _, _ = lava.build_plan(dt_graph(blocks=1, seed=2))
    syn = plan.synapses[0]
    plan.population(syn.dst).offset += 1
    with pytest.raises(ExportError, match=f"synapse {syn.name}.*not delay-balanced"):
        FixedPointNetwork(plan)
    plan.population(syn.dst).offset -= 1
    plan.readout = None
    with pytest.raises(ExportError, match="no readout"):
        FixedPointNetwork(plan)


def test_spike_stats_equal_the_reference_where_quantisation_is_exact():
    """Dyadic weights survive Loihi's formats exactly: then the fixed-point spikes are the
    reference's, and so are the spike counts the two policies report (the outputs differ by
    the readout's 8-bit mantissas only)."""
    graph = dt_graph(channels=8, tokens=6, blocks=2, seed=3, dyadic=True)
    tokens = decision_inputs(graph, 5, seed=2).transpose(0, 2, 1)
    emulation, reference = LoihiEmulationPolicy(graph), NIRPolicy(graph, record=True)
    np.testing.assert_allclose(emulation.outputs(tokens), reference.outputs(tokens), atol=1e-2)
    assert emulation.spike_stats() == reference.spike_stats()
    assert emulation.spike_stats()["spikes_per_decision"] > 0
    stats = emulation.decision_stats()
    assert stats["emulation_decisions"] == 5 and stats["emulation_ms_per_decision"] > 0
    limits = stats["fixed_point_limits"]
    assert limits["quantization"] == [] and limits["u_wrapped"] == limits["v_saturated"] == 0
    host_fed = [p for p in emulation.plan.populations if p.host_input]
    assert limits["graded_input"] == {p.name: {"clipped": 0, "total": 5 * p.size} for p in host_fed}
    # a current beyond the 16-bit graded input is clipped, and counted
    tokens[0] *= 1e4
    emulation.outputs(tokens[:1])
    assert emulation.decision_stats()["fixed_point_limits"]["graded_input"][host_fed[0].name]["clipped"] > 0


# ---- a trained model: Lava fixed_pt, sources, closed loop ------------------------------------


def test_actions_equal_lava_fixed_point_on_recorded_decisions(lava_python, trained):
    """Decisions recorded closed loop (by the float reference and by the emulation itself):
    Lava fixed_pt's outputs and actions, bit for bit."""
    emulation = LoihiEmulationPolicy.from_source(trained["bundle"])
    reference = NIRPolicy(trained["graph"])
    inputs = np.concatenate([lava.real_decision_inputs(trained["graph"], 20, seed=0),
                             record_decision_inputs(emulation, 1, seed=1)[::7][:20]])
    tokens = inputs.transpose(0, 2, 1)
    with lava.LavaPolicy(trained["bundle"], fixed_point=True, timeout=180) as lava_fixed:
        want = lava_fixed.outputs(tokens)
    got = emulation.outputs(tokens)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(emulation.act(tokens), decode_actions(want, emulation.decode))
    assert np.any(got != reference.outputs(tokens))  # fixed point is not the float network


def test_every_spike_equals_lava_fixed_point(lava_python, trained, tmp_path):
    """The same decisions through one Lava fixed_pt run, every recorded population compared."""
    plan = lava.load_plan(trained["bundle"])
    inputs = lava.real_decision_inputs(trained["graph"], 30, seed=3)
    n = len(inputs)
    currents = host_currents(trained["graph"], bundle_host_terms(trained["bundle"]), inputs)
    n_steps = plan.total_steps(n)
    plan.save(tmp_path)
    traces, _ = lava.run_sidecar(tmp_path, "fixed", host_data(plan, currents, n_steps, fixed=True), n_steps,
                                 timeout=180)
    want = lava_records(plan, traces, n, True)
    run = FixedPointNetwork(plan).run(fixed_host_currents(plan, currents), n, record=True)
    assert set(run.spikes) <= set(want) and sum(run.spike_counts.values()) > 0
    for name, spikes in run.spikes.items():
        np.testing.assert_array_equal(spikes, want[name].astype(bool), err_msg=name)
    out = readout_values(plan, run.readout.transpose(2, 0, 1), True).transpose(1, 2, 0)
    np.testing.assert_array_equal(out.reshape(plan.time_steps, n, *plan.readout.shape), want[plan.readout.name])


def test_every_source_gives_the_same_fixed_point_network(trained):
    """A .nir and a checkpoint are planned and quantised in memory exactly as the bundle was."""
    tokens = lava.real_decision_inputs(trained["graph"], 12, seed=2).transpose(0, 2, 1)
    from_bundle = LoihiEmulationPolicy.from_source(trained["bundle"]).outputs(tokens)
    for source in ("nir", "checkpoint"):
        np.testing.assert_array_equal(LoihiEmulationPolicy.from_source(trained[source]).outputs(tokens), from_bundle)


def test_one_window_or_a_batch_and_bad_shapes(trained):
    policy = LoihiEmulationPolicy(trained["graph"])
    window = lava.real_decision_inputs(trained["graph"], 1, seed=0)[0].T  # (L, D_in)
    np.testing.assert_array_equal(policy.outputs(window), policy.outputs(window[None])[0])
    with pytest.raises(ValueError, match=r"expected \(B, "):
        policy.outputs(np.zeros((2, 3, 3)))
