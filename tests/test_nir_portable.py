"""The portable NIR export: a verified rewrite of the standard graph (export/nir/portable.py).

The third-party runs of it (nirtorch, snnTorch, norse) are in test_third_party_readers.py.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spikingmind import units
from spikingmind.cli import app
from spikingmind.errors import ExportError
from spikingmind.export.nir import portable as nir_portable
from spikingmind.export.nir import NIRPolicy, checkpoint_to_graph, graph_metadata, model_to_graph
from spikingmind.export.nir.portable import (
    PORTABLE_DT,
    closed_loop_decisions,
    portable_inputs,
    to_portable,
    verify_portable,
)
from spikingmind.export.reference import ReferenceSimulator, load_graph
from spikingmind.model import DecisionTransformer, ModelConfig
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds


@pytest.fixture(scope="module")
def exported(snn_checkpoint, tmp_path_factory):
    """(standard model.nir, model-portable.nir) of the trained tiny DT, written by the CLI."""
    folder = tmp_path_factory.mktemp("portable")
    runner = CliRunner()
    for name, extra in (("model.nir", []), ("model-portable.nir", ["--portable"])):
        result = runner.invoke(app, ["export", str(snn_checkpoint), "--target", "nir", *extra, "-o", str(folder / name)])
        assert result.exit_code == 0, result.output
    return folder / "model.nir", folder / "model-portable.nir"


@pytest.fixture(scope="module")
def decisions(exported):
    return closed_loop_decisions(load_graph(exported[0]), episodes=6, max_steps=30, seed=4)


def test_portable_file_has_only_reader_friendly_nodes_and_the_verification(exported):
    standard_path, portable_path = exported
    graph = nir.read(str(portable_path))  # the plain NIR reader, type checks on
    assert {type(node) for node in graph.nodes.values()} == {nir.Input, nir.Output, nir.Conv2d, nir.LIF}
    assert float(graph.metadata["dt"]) == PORTABLE_DT
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            np.testing.assert_array_equal(node.r, 1.0)
            assert np.unique(node.v_threshold).size == 1  # snnTorch needs one threshold per layer
        if isinstance(node, nir.Conv2d):
            assert node.weight.shape[2] == node.weight.shape[3]  # square: nir 1.0.8 reads one kernel size
    meta, standard_meta = graph_metadata(graph), graph_metadata(nir.read(str(standard_path)))
    assert set(standard_meta) <= set(meta) and "portable" not in standard_meta
    assert meta["dt"] == PORTABLE_DT and standard_meta["dt"] == units.DT
    check = meta["portable"]["verification"]
    assert check["spike_mismatches"] == 0 and check["action_mismatches"] == 0 and check["decisions"] >= 30
    assert check["spike_values"] > check["spikes"] > 0


def test_standard_export_is_untouched(exported, snn_checkpoint):
    graph = load_graph(exported[0])
    assert {type(node) for node in graph.nodes.values()} == {nir.Input, nir.Output, nir.Conv1d, nir.LIF, nir.Threshold}
    assert float(graph.metadata["dt"]) == units.DT
    assert sorted(graph.nodes) == sorted(checkpoint_to_graph(snn_checkpoint).nodes)  # nir.read sorts names


def test_portable_spikes_equal_the_standard_ones_on_real_decisions(exported, decisions):
    standard, portable = load_graph(exported[0]), load_graph(exported[1])
    result = verify_portable(standard, portable, decisions)
    assert result["spike_mismatches"] == 0 and result["action_mismatches"] == 0
    assert result["max_relative_output_difference"] == 0.0  # same spikes into the same readout: same bits
    assert result["spiking_nodes"] == sum(isinstance(n, (nir.LIF, nir.Threshold)) for n in standard.nodes.values())
    assert result["conv_nodes"] == sum(isinstance(n, nir.Conv1d) for n in standard.nodes.values())
    assert result["max_relative_current_difference"] < 1e-14  # the mix stages: a few ulps


def test_evaluate_runs_the_portable_file_through_the_reference(exported):
    seeds = evaluation_seeds(2, 5)
    portable = run_episodes(NIRPolicy.from_file(exported[1]), seeds)
    standard = run_episodes(NIRPolicy.from_file(exported[0]), seeds)
    assert portable.returns == standard.returns and portable.lengths == standard.lengths
    result = CliRunner().invoke(app, ["evaluate", str(exported[1]), "--episodes", "1"])
    assert result.exit_code == 0, result.output


def test_a_standard_nir_file_is_a_valid_source(exported, tmp_path):
    out = tmp_path / "again.nir"
    result = CliRunner().invoke(app, ["export", str(exported[0]), "--target", "nir", "--portable", "-o", str(out)])
    assert result.exit_code == 0, result.output
    again, first = load_graph(out), load_graph(exported[1])
    assert list(again.nodes) == list(first.nodes) and again.edges == first.edges
    for name, node in first.nodes.items():
        if hasattr(node, "weight"):
            np.testing.assert_array_equal(again.nodes[name].weight, node.weight)


def _halve_embed(graph):  # the gain factor 2 not folded into one Conv
    graph.nodes["embed"].weight = graph.nodes["embed"].weight / 2
    graph.nodes["embed"].bias = graph.nodes["embed"].bias / 2


def _nudge_mix_stage(graph):  # one decay tap 0.1% off: no spike may flip, the currents catch it
    stage = graph.nodes["blocks.0.attn.mix.stage1"]
    stage.weight = stage.weight.copy()
    stage.weight[:, :, 1, 0] *= 1.001


def _and_threshold_low(graph):  # the AND LIF fires on one input spike
    node = graph.nodes["blocks.0.attn.kv_and"]
    node.v_threshold = np.full_like(node.v_threshold, 0.5)


def _leaky_and(graph):  # the AND LIF keeps half its membrane: not stateless any more
    node = graph.nodes["blocks.0.attn.qkv_and"]
    node.tau = np.full_like(node.tau, 2 * PORTABLE_DT)


@pytest.mark.parametrize("corrupt", [_halve_embed, _nudge_mix_stage, _and_threshold_low, _leaky_and])
def test_a_broken_rewrite_fails_the_verification_in_one_line(exported, decisions, corrupt):
    standard, portable = load_graph(exported[0]), load_graph(exported[1])
    corrupt(portable)
    with pytest.raises(ExportError, match="does not reproduce the standard graph on .* real decisions") as caught:
        verify_portable(standard, portable, decisions)
    assert "\n" not in str(caught.value)


def test_export_fails_when_the_verification_fails(snn_checkpoint, tmp_path, monkeypatch):
    """The export path itself refuses to write a graph that disagrees (here: a rewrite that forgets
    the gain factor of one Conv) and leaves no file behind."""
    rewrite = nir_portable.to_portable

    def broken(standard, source="graph"):
        graph, note = rewrite(standard, source)
        _halve_embed(graph)
        return graph, note

    monkeypatch.setattr(nir_portable, "to_portable", broken)
    out = tmp_path / "model-portable.nir"
    result = CliRunner().invoke(app, ["export", str(snn_checkpoint), "--target", "nir", "--portable", "-o", str(out)])
    assert result.exit_code == 2 and "does not reproduce the standard graph" in result.output
    assert "Traceback" not in result.output and not out.exists()


def _impulse_response(graph: nir.NIRGraph, names: list[str], n_tokens: int) -> np.ndarray:
    """Taps (C, L) of a chain of channelwise Conv2d nodes: the response at the last token to a unit
    spike at token L-1-d, for every lag d, through the reference simulator."""
    channels = graph.nodes[names[0]].weight.shape[0]
    nodes = {"in": nir.Input({"input": np.array([channels, 1, n_tokens])}), **{n: graph.nodes[n] for n in names},
             "out": nir.Output({"output": np.array([channels, 1, n_tokens])})}
    chain = ["in", *names, "out"]
    sim = ReferenceSimulator(nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), type_check=False))
    impulses = np.zeros((n_tokens, channels, 1, n_tokens))
    impulses[np.arange(n_tokens), :, 0, n_tokens - 1 - np.arange(n_tokens)] = 1.0
    bias = sim.run(np.zeros((1, channels, 1, n_tokens)), 1).output[0, 0, :, 0, -1]
    return (sim.run(impulses, 1).output[0, :, :, 0, -1] - bias).T  # (C, L): lag d in column d


def test_mix_stages_reproduce_the_standard_kernel(snn_checkpoint):
    standard = checkpoint_to_graph(snn_checkpoint)
    portable, note = to_portable(standard)
    mix = standard.nodes["blocks.0.attn.mix"]
    n_tokens = mix.weight.shape[2] // 2 + 1
    stages = note["mix_stages"]["blocks.0.attn.mix"]
    assert len(stages) == int(np.ceil(np.log2(n_tokens)))  # L = 12: 4 stages cover lags 0..15
    taps = mix.weight[np.arange(mix.weight.shape[0]), np.arange(mix.weight.shape[0]), n_tokens - 1::-1]  # (C, L)
    staged = _impulse_response(portable, stages, n_tokens) / 2  # the last stage carries kv_lif's gain 2
    relative = np.abs(staged - taps) / np.abs(taps).max(axis=1, keepdims=True)
    assert relative.max() < 1e-15 and note["mix_max_relative_tap_error"] < 1e-15
    bias = portable.nodes[stages[-1]].bias
    np.testing.assert_array_equal(bias, 2 * mix.bias)  # the shift once, on the last stage
    assert all(not portable.nodes[s].bias.any() for s in stages[:-1])


def test_mix_stages_are_causal(snn_checkpoint):
    portable, note = to_portable(checkpoint_to_graph(snn_checkpoint))
    for stage in note["mix_stages"]["blocks.0.attn.mix"]:
        weight = portable.nodes[stage].weight
        assert not weight[:, :, [0, 2], :].any() and not weight[:, :, 1, 2].any()  # no future tap, centre row only


def test_schedule_nodes_make_the_depth_first_order_topological(snn_checkpoint):
    standard = checkpoint_to_graph(snn_checkpoint)
    portable, note = to_portable(standard)

    def late_edges(graph):
        order, _ = nir_portable._depth_first(graph.nodes, graph.edges, "input")
        position = {name: i for i, name in enumerate(order)}
        return sorted((a, b) for a, b in graph.edges if position[a] > position[b]), order

    late, _ = late_edges(standard)
    assert late == [("blocks.0.attn.kv_lif", "blocks.0.attn.qkv_and"), ("blocks.0.attn.v_lif", "blocks.0.attn.kv_and")]
    late, order = late_edges(portable)
    assert late == [] and order[-1] == "output"
    assert note["schedule_nodes"] == {
        "blocks.0.attn.k.schedule": {"from": "blocks.0.attn.q_lif", "to": "blocks.0.attn.k"},
        "blocks.0.attn.v.schedule": {"from": "blocks.0.attn.k_lif", "to": "blocks.0.attn.v"},
    }
    for name in note["schedule_nodes"]:
        assert not portable.nodes[name].weight.any() and not portable.nodes[name].bias.any()


@pytest.mark.parametrize("context_length, n_blocks", [(1, 1), (2, 2), (3, 1), (6, 1), (22, 1)])
def test_rewrite_generalises_over_window_length_and_depth(context_length, n_blocks):
    """L = 3, 6, 9, 18, 66 tokens: ceil(log2 L) stages; spikes equal on varied inputs (float64 model)."""
    torch.manual_seed(context_length)
    model = DecisionTransformer(ModelConfig(width=8, n_blocks=n_blocks, context_length=context_length),
                                n_features=11, n_out=2).double().eval()
    standard = model_to_graph(model)
    portable, note = to_portable(standard)
    n_tokens = 3 * context_length
    assert all(len(s) == max(1, int(np.ceil(np.log2(n_tokens)))) for s in note["mix_stages"].values())
    assert len(note["schedule_nodes"]) == 2 * n_blocks
    inputs = np.random.default_rng(0).normal(0, 1.5, (24, 11, n_tokens))
    result = verify_portable(standard, portable, inputs, note["conv_counterparts"])
    assert result["spike_mismatches"] == 0 and result["spikes"] > 0
    assert result["max_relative_current_difference"] < 1e-14


def test_weights_ratio_is_recorded(snn_checkpoint):
    standard = checkpoint_to_graph(snn_checkpoint)
    _, note = to_portable(standard)
    weights = note["weights"]
    assert weights["standard"] == nir_portable.weight_count(standard)
    assert weights["ratio"] == round(weights["portable"] / weights["standard"], 4)


def _graph_with(node_name, node, shape=(3, 4)):
    lif = units.lif_parameters(np.full(shape, 0.5))
    nodes = {
        "input": nir.Input({"input": np.array(shape)}),
        "fc": nir.Conv1d(input_shape=shape[1], weight=np.ones((3, 3, 1)), stride=1, padding=0, dilation=1, groups=1,
                         bias=np.zeros(3)),
        node_name: node if node is not None else nir.LIF(tau=lif["tau"], r=lif["r"], v_leak=lif["v_leak"],
                                                         v_threshold=np.ones(shape), v_reset=np.zeros(shape)),
        "output": nir.Output({"output": np.array(shape)}),
    }
    edges = [("input", "fc"), ("fc", node_name), (node_name, "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": units.DT, "time_steps": 2}, type_check=False)


def test_unrewritable_graphs_are_refused_naming_the_node():
    shape = (3, 4)
    scale = nir.Scale(scale=np.ones(shape))
    with pytest.raises(ExportError, match="node 'odd' \\(Scale\\) has no portable rewrite"):
        to_portable(_graph_with("odd", scale))
    tau = units.tau_from_beta(np.full(shape, 0.3))  # beta 0.3: its gain factor 1/0.7 is inexact
    lif = nir.LIF(tau=tau, r=tau / units.DT, v_leak=np.zeros(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))
    with pytest.raises(ExportError, match="node 'lif' \\(LIF\\) .*(power of two|does not survive)"):
        to_portable(_graph_with("lif", lif))
    leaky = nir.LIF(tau=units.tau_from_beta(np.full(shape, 0.5)), r=np.full(shape, 2.0), v_leak=np.ones(shape),
                    v_threshold=np.ones(shape), v_reset=np.zeros(shape))
    with pytest.raises(ExportError, match="node 'lif' \\(LIF\\) has v_leak != 0"):
        to_portable(_graph_with("lif", leaky))
    graph = _graph_with("lif", None)
    graph.edges = [("input", "lif"), ("lif", "output"), ("input", "fc"), ("fc", "output")]
    with pytest.raises(ExportError, match="node 'lif' \\(LIF\\) reads 'input' \\(Input\\)"):
        to_portable(graph)


def test_portable_applies_to_the_nir_target_only(snn_checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["export", str(snn_checkpoint), "--target", "onnx", "--portable",
                                      "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "--portable applies to --target nir" in result.output


def test_portable_metadata_restates_the_neuron_rule(exported):
    meta = graph_metadata(load_graph(exported[1]))
    assert "r = 1" in meta["neuron"]["discretization"] and "1/(1 - beta)" in meta["neuron"]["discretization"]
    assert meta["portable"]["weights"]["portable"] > 0
    json.dumps(meta)  # plain JSON all the way down


def test_portable_inputs_add_the_unit_axis():
    x = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    np.testing.assert_array_equal(portable_inputs(x)[:, :, 0, :], x)
