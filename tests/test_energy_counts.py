"""Energy counting: exact hand-computed counts from known spikes, ONNX MACs, report arithmetic."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import nir
import numpy as np
import pytest

from spikingmind.energy.onnx_counts import OnnxCounts, OnnxNodeCounts, count_onnx
from spikingmind.energy.profiles import load_profile
from spikingmind.energy.report import (
    Accounted, break_even_spike_rate, build_report, plot_energy,
)
from spikingmind.energy.snn_counts import LayerCounts, SNNCounts, count_snn, decision_cone, merge_counts
from spikingmind.cli.energy_cmds import render_report
from spikingmind.errors import GraphError, ProfileError

T, B, C, L = 2, 2, 2, 3


def lif(shape):
    ones = np.ones(shape)
    return nir.LIF(tau=2e-3 * ones, r=2 * ones, v_leak=0 * ones, v_threshold=ones, v_reset=0 * ones)


def tiny_graph() -> nir.NIRGraph:
    """input -> embed (k=1) -> lif_a -> causal mix -> lif_b; AND(lif_a, lif_b) -> readout -> output."""
    mix = np.zeros((C, C, 2 * L - 1))
    for d in range(L):  # weight[c, c, L-1-d] = g**d, future taps stay 0
        mix[0, 0, L - 1 - d] = 0.5**d
        mix[1, 1, L - 1 - d] = 0.5**d
    mix[1, 1, 0] = 0.0  # channel 1 drops its oldest tap: must not be counted
    nodes = {
        "input": nir.Input(input_type={"input": np.array([C, L])}),
        "embed": nir.Conv1d(input_shape=L, weight=np.array([[[1.0], [0.0]], [[0.5], [2.0]]]), stride=1,
                            padding=0, dilation=1, groups=1, bias=np.array([0.1, 0.0])),
        "lif_a": lif((C, L)),
        "mix": nir.Conv1d(input_shape=L, weight=mix, stride=1, padding=L - 1, dilation=1, groups=1,
                          bias=np.zeros(C)),
        "lif_b": lif((C, L)),
        "and": nir.Threshold(threshold=np.full((C, L), 1.5)),
        "readout": nir.Conv1d(input_shape=L, weight=np.array([[[1.0], [-1.0]]]), stride=1, padding=0,
                              dilation=1, groups=1, bias=np.array([0.5])),
        "output": nir.Output(output_type={"output": np.array([1, L])}),
    }
    edges = [("input", "embed"), ("embed", "lif_a"), ("lif_a", "mix"), ("mix", "lif_b"),
             ("lif_a", "and"), ("lif_b", "and"), ("and", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})  # valid under spikingmind.graph


def spikes(*per_step_batch):
    """(T, B, C, L) from T*B lists of (c, n) spike positions, ordered t0b0, t0b1, t1b0, t1b1."""
    out = np.zeros((T, B, C, L))
    for index, positions in enumerate(per_step_batch):
        for c, n in positions:
            out[index // B, index % B, c, n] = 1.0
    return out


def tiny_records() -> dict[str, np.ndarray]:
    x0 = np.array([[0.5, 0.0, 1.2], [0.0, 0.0, -1.0]])  # 3 nonzero
    x1 = np.ones((C, L))  # 6 nonzero
    inputs = np.broadcast_to(np.stack([x0, x1]), (T, B, C, L)).copy()
    currents = np.full((T, B, C, L), 0.7)
    currents[0, 1] = 0.0  # decision 1 gets no current at step 0: those neuron-steps are inactive
    lif_a = spikes([(0, 0), (1, 1)], [], [(0, 0), (0, 1)], [(0, 2), (1, 0), (1, 2)])
    lif_b = spikes([(0, 0)], [], [(0, 0), (0, 1)], [(0, 2)])
    return {
        "input": inputs, "embed": currents, "lif_a": lif_a, "mix": currents.copy(), "lif_b": lif_b,
        "and": lif_a * lif_b, "readout": np.full((T, B, 1, L), 0.2), "output": np.full((T, B, 1, L), 0.2),
    }


def by_name(counts: SNNCounts) -> dict[str, LayerCounts]:
    return {layer.name: layer for layer in counts.layers}


def test_hand_built_graph_counts_exactly():
    counts = count_snn(tiny_graph(), tiny_records())
    layers = by_name(counts)
    assert list(layers) == ["embed", "lif_a", "mix", "lif_b", "and", "readout"]

    embed = layers["embed"]  # real-valued input: MACs over nonzero inputs x nonzero fan-out (2 for c0, 1 for c1)
    assert not embed.input_binary
    # the same input at both steps: a host computes it once per decision (b0: 2*2+1*1 = 5, b1: 3*2+3*1 = 9)
    assert embed.once_per_decision
    assert embed.effective_macs == 7.0  # (5 + 9) / 2 decisions
    assert embed.effective_acs == 0.0
    assert embed.input_reads == 4.5
    assert embed.dense_ops == 12.0  # C_out*N_out*C_in*K = 12, one step
    assert embed.bias_adds == 3.0  # one nonzero bias x 3 positions, one step
    assert embed.weight_reads == 10.0
    assert (embed.weights, embed.nonzero_weights) == (4, 3)

    mix = layers["mix"]  # causal diagonal conv: fan-out c0 = [3, 2, 1], c1 = [2, 2, 1] (oldest tap zero)
    assert mix.input_binary
    assert mix.effective_acs == 7.0  # (3+2) + (3+2) + (1+2+1) = 14 over 2 decisions
    assert mix.effective_macs == 0.0
    assert mix.dense_ops == 120.0  # 2*3*2*5 per step, zero taps included
    assert mix.bias_adds == 0.0
    assert mix.weight_reads == 7.0
    assert mix.nonzero_weights == 5

    lif_a = layers["lif_a"]
    assert lif_a.neuron_updates == 12.0
    assert lif_a.neuron_updates_active == 9.0
    assert lif_a.state_reads == lif_a.state_writes == 12.0
    assert lif_a.spikes == 3.5
    assert lif_a.spike_rate == pytest.approx(7 / 24)
    assert lif_a.activation_sparsity == pytest.approx(17 / 24)

    gate = layers["and"]  # two incoming spike edges: one AC per incoming spike, no state
    assert gate.effective_acs == 5.5  # (7 + 4) / 2
    assert gate.neuron_updates == 12.0
    assert gate.neuron_updates_active == 3.5  # union of both inputs' spikes: 2 + 2 + 0 + 3
    assert gate.state_reads == gate.state_writes == 0.0
    assert gate.spikes == 2.0

    readout = layers["readout"]
    assert readout.effective_acs == 2.0
    assert readout.bias_adds == 6.0
    assert readout.weight_reads == 8.0
    assert readout.dense_ops == 12.0

    assert counts.total("spikes") == 7.5
    assert counts.spike_rate == pytest.approx(7.5 / 36)
    assert counts.activation_sparsity == pytest.approx(1 - 7.5 / 36)
    data = json.loads(json.dumps(counts.to_dict()))
    assert data["totals"]["effective_acs"] == 7.0 + 5.5 + 2.0
    assert data["totals"]["effective_macs"] == 7.0


def test_binary_is_decided_from_records_not_node_types():
    records = tiny_records()
    records["input"] = (records["input"] != 0).astype(float)  # the same Input, now only 0/1 values
    embed = by_name(count_snn(tiny_graph(), records))["embed"]
    assert embed.input_binary and not embed.once_per_decision  # spikes: a neuromorphic core takes each step
    assert embed.effective_macs == 0.0
    assert embed.effective_acs == 14.0  # same nonzero pattern, now priced as accumulates, every step


def test_affine_and_scale_fan_out():
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Affine(weight=np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]), bias=np.zeros(2)),
            "scale": nir.Scale(scale=np.array([2.0, 0.0])),
            "li": nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "fc"), ("fc", "scale"), ("scale", "li"), ("li", "output")],
        metadata={"dt": 1e-3},
    )
    inputs = np.zeros((1, 2, 3))
    inputs[0, 0] = [1, 1, 1]
    inputs[0, 1] = [0, 1, 1]
    fc_out = np.array([[[3.0, 3.0], [2.0, 3.0]]])
    records = {"input": inputs, "fc": fc_out, "scale": fc_out * [2.0, 0.0], "li": fc_out, "output": fc_out}
    layers = by_name(count_snn(graph, records))
    assert layers["fc"].effective_acs == (3 + 2) / 2  # fan-out of columns [1, 0, 2]: [1,1,1] -> 3, [0,1,1] -> 2
    assert layers["fc"].dense_ops == 6.0
    assert layers["scale"].effective_macs == (1 + 1) / 2  # only the nonzero scale, both values nonzero
    assert layers["li"].spike_rate is None  # LI outputs a potential, not spikes


def test_counts_merge_as_a_decision_weighted_mean():
    graph, records = tiny_graph(), tiny_records()
    whole = count_snn(graph, records)
    halves = [count_snn(graph, {k: v[:, i:i + 1] for k, v in records.items()}) for i in range(B)]
    merged = merge_counts(halves)
    assert merged.decisions == B
    for a, b in zip(whole.layers, merged.layers):
        assert a.effective_acs == pytest.approx(b.effective_acs)
        assert a.effective_macs == pytest.approx(b.effective_macs)
        assert a.spikes == pytest.approx(b.spikes)
        assert a.neuron_updates_active == pytest.approx(b.neuron_updates_active)
    assert merged.spike_rate == pytest.approx(whole.spike_rate)


def test_missing_record_names_the_node():
    records = tiny_records()
    del records["lif_b"]
    with pytest.raises(GraphError, match="lif_b"):
        count_snn(tiny_graph(), records)


def test_counts_agree_with_the_reference_simulator_records():
    from spikingmind.export.reference import ReferenceSimulator

    graph = tiny_graph()
    graph.metadata = {"dt": 1e-3, "time_steps": 4}
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(5, C, L)) * 2
    records = dict(ReferenceSimulator(graph).run(inputs, time_steps=4, record=True).records)
    records.setdefault("input", np.broadcast_to(inputs, (4, *inputs.shape)))
    counts = by_name(count_snn(graph, records))
    assert counts["lif_a"].spikes == pytest.approx(records["lif_a"].sum() / 5)
    # every spike of lif_a drives exactly its nonzero causal taps
    fanout = np.array([[3, 2, 1], [2, 2, 1]])
    assert counts["mix"].effective_acs == pytest.approx((records["lif_a"].sum(axis=(0, 1)) * fanout).sum() / 5)


# ---- ONNX ----------------------------------------------------------------------------


def export_tiny_onnx(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(3, 4, kernel_size=1)  # (B, 3, 5) -> (B, 4, 5)
            self.norm = torch.nn.LayerNorm(4)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.conv(x)).transpose(1, 2)  # (B, 5, 4)
            attn = torch.softmax(h @ h.transpose(1, 2), dim=-1)  # (B, 5, 5)
            return self.fc(self.norm(h + attn @ h))  # (B, 5, 2)

    path = tmp_path / "tiny.onnx"
    torch.onnx.export(Tiny().eval(), (torch.randn(1, 3, 5),), str(path), opset_version=17, dynamo=False,
                      input_names=["tokens"], dynamic_axes={"tokens": {0: "batch"}})
    return path


def test_onnx_counts_exact_macs(tmp_path):
    counts = count_onnx(export_tiny_onnx(tmp_path))
    by_op: dict[str, list[OnnxNodeCounts]] = {}
    for node in counts.nodes:
        by_op.setdefault(node.op_type, []).append(node)
    assert counts.input_shapes == {"tokens": [1, 3, 5]}
    (conv,) = by_op["Conv"]
    assert conv.macs == 4 * 5 * 3
    assert conv.adds == 20  # bias
    assert conv.parameter_reads == 60 + 20
    matmuls = sorted(n.macs for n in by_op["MatMul"])
    assert matmuls == [5 * 2 * 4, 5 * 5 * 4, 5 * 4 * 5]  # fc, h @ h^T, attn @ h
    assert counts.total("macs") == 60 + 40 + 100 + 100
    (softmax,) = by_op["Softmax"]
    assert (softmax.transcendentals, softmax.divs) == (25, 25)
    (norm,) = by_op["LayerNormalization"]
    assert norm.transcendentals == 5  # one rsqrt per token
    assert by_op["Relu"][0].compares == 20
    assert counts.parameters == 4 * 3 + 4 + 4 + 4 + 4 * 2 + 2
    assert counts.uncounted == []
    assert "Transpose" not in by_op  # layout op: no ops, no traffic


def test_onnx_unknown_op_is_listed_not_dropped():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Hardmax", ["r"], ["y"], name="hm")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    counts = count_onnx(model)
    assert [n.name for n in counts.nodes] == ["relu"]
    assert counts.uncounted == [{"name": "hm", "op_type": "Hardmax", "reason": "no counting rule"}]

    dynamic = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])])
    model = helper.make_model(dynamic, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(GraphError, match="axis 1 is dynamic"):
        count_onnx(model)
    assert count_onnx(model, input_shapes={"x": (1, 7)}).total("compares") == 7
    with pytest.raises(GraphError, match="cannot read"):
        count_onnx("/nonexistent/model.onnx")


# ---- report arithmetic --------------------------------------------------------------

TOY_PROFILE = """
[profile]
name = "toy"
[constants.add]
value = 1.0
unit = "pJ"
source = "toysrc"
where = "row-add"
[constants.multiply]
value = 2.0
unit = "pJ"
source = "toysrc"
where = "row-multiply"
[constants.mac]
value = 3.0
unit = "pJ"
source = "toysrc"
where = "row-mac"
[constants.update]
value = 2.0
unit = "pJ"
source = "toysrc"
where = "row-update"
[constants.sram]
value = 2.0
unit = "pJ"
source = "toysrc"
where = "row-sram"
[accounting]
ac = "add"
mac = "mac"
add = "add"
multiply = "multiply"
neuron_update = "update"
weight_memory = "sram"
state_memory = "sram"
activation_memory = "sram"
weight_bits = 64
state_bits = 64
activation_bits = 64
"""


def synthetic_snn() -> SNNCounts:
    """One synaptic layer (100 ACs) and one neuron layer (10 neurons, T=4, 8 spikes: rate 0.2)."""
    synapse = LayerCounts(name="syn", node_type="Conv1d", kind="synaptic", input_binary=True,
                          effective_acs=100, weight_reads=100)
    neuron = LayerCounts(name="lif", node_type="LIF", kind="neuron", input_binary=False, neurons=10,
                         neuron_updates=40, neuron_updates_active=40, state_reads=40, state_writes=40, spikes=8,
                         spike_rate=0.2)
    return SNNCounts(time_steps=4, decisions=1, layers=[synapse, neuron])


def synthetic_ann(macs: float) -> OnnxCounts:
    node = OnnxNodeCounts(name="/fc/MatMul", op_type="MatMul", macs=macs, parameter_reads=macs,
                          activation_reads=10, activation_writes=10)
    return OnnxCounts(model="toy.onnx", input_shapes={"x": [1, 4]}, nodes=[node])


def report_of(snn, profile, ann, baselines, accounting="decision_only"):
    """One accounting, one SNN profile."""
    return build_report([Accounted(accounting, snn, ann)], [profile], baselines)


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY_PROFILE)
    return load_profile(path)


def test_report_ratios_and_break_even_when_the_snn_costs_more(toy):
    report = report_of(synthetic_snn(), toy, synthetic_ann(50), [toy])
    # SNN: ACs 100*(1 + 2) = 300 spike-driven; neurons 40*2 + (40+40)*2 = 240 fixed
    assert report.snn_total_pj == 540.0
    assert report.snn_spike_driven_pj == 300.0
    assert report.snn_fixed_pj == 240.0
    assert report.snn_memory_pj == 200.0 + 160.0
    (cmp,) = report.baselines
    assert cmp.ann_total_pj == 50 * 3 + 50 * 2 + 20 * 2  # 290
    assert cmp.snn_over_ann == pytest.approx(540 / 290)
    assert cmp.ann_over_snn == pytest.approx(290 / 540)
    assert "MORE" in cmp.verdict
    # r* = r0 (E_ann - F) / V = 0.2 * 50 / 300; check it really equalises the two
    assert cmp.break_even_spike_rate == pytest.approx(0.2 * 50 / 300)
    assert 240 + 300 * cmp.break_even_spike_rate / 0.2 == pytest.approx(290)


def test_break_even_cases(toy):
    cheaper = report_of(synthetic_snn(), toy, synthetic_ann(500), [toy]).baselines[0]
    assert "less" in cheaper.verdict
    assert cheaper.break_even_spike_rate == pytest.approx(0.2 * (2540 - 240) / 300)
    assert "above 100%" in cheaper.break_even_note
    never = report_of(synthetic_snn(), toy, synthetic_ann(10), [toy]).baselines[0]
    assert never.break_even_spike_rate is None
    assert "even at zero spikes" in never.break_even_note
    assert break_even_spike_rate(0.0, 10.0, 0.0, 20.0)[0] is None


def test_loihi_prices_the_real_valued_encoder_on_its_host():
    counts = count_snn(tiny_graph(), tiny_records())
    fp32, int8, loihi = (load_profile(n) for n in ("cmos45nm-fp32", "cmos45nm-int8", "loihi"))
    report = report_of(counts, loihi, synthetic_ann(100), [fp32, int8])
    lines = {line.name: line for line in report.snn_layers}
    assert report.mac_host_profile == "cmos45nm-fp32"
    assert lines["embed"].components["mac"] == pytest.approx(7 * 4.6)
    # the host holds 4 fp32 weights (16 B): the 8 KB array, 32 of 64 bits per read
    assert lines["embed"].components["weight_read"] == pytest.approx(10 * 10.0 / 2)
    assert lines["mix"].components["ac"] == pytest.approx(7 * 23.6)
    assert lines["mix"].memory_pj == 0.0  # included in Loihi's measured synaptic op
    assert lines["lif_a"].components["neuron_update"] == pytest.approx(9 * 81 + 3 * 52)
    assert lines["lif_a"].components["spike_routing"] == pytest.approx(3.5 * 1.7)
    assert sum(line.share for line in report.snn_layers) == pytest.approx(1.0)
    used = {(c["profile"], c["key"]) for c in report.constants}
    assert ("loihi", "synaptic_op") in used and ("cmos45nm-fp32", "mac") in used
    assert ("cmos45nm-int8", "mac") in used
    assert all(c["source"] and c["where"] for c in report.constants)
    assert any("host core" in note for note in report.notes)
    assert [b.profile for b in report.baselines] == ["cmos45nm-fp32", "cmos45nm-int8"]
    json.dumps(report.to_dict())  # JSON-serialisable as is


def test_ann_cannot_be_priced_on_a_profile_without_a_mac():
    with pytest.raises(ProfileError, match="loihi.*'mac'"):
        report_of(synthetic_snn(), load_profile("cmos45nm-fp32"), synthetic_ann(1), [load_profile("loihi")])


def test_rendered_report_says_estimate_and_cites(toy, tmp_path):
    from rich.console import Console

    report = report_of(synthetic_snn(), toy, synthetic_ann(50), [toy])
    console = Console(file=io.StringIO(), width=200)
    render_report(report, console)
    text = console.file.getvalue()
    assert "estimate" in text.lower()
    assert "MORE" in text and "break-even" in text
    assert report.constants and "toysrc" in text
    for constant in report.constants:  # every constant used is printed with its own citation
        assert f"row-{constant['key']}" in text, constant["key"]
    png = plot_energy(report, tmp_path / "energy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_energy_report_cli_end_to_end(snn_checkpoint, ann_checkpoint, tmp_path):
    """A trained (tiny) spiking DT checkpoint against its ANN twin's ONNX, on real episodes."""
    from typer.testing import CliRunner

    from spikingmind.cli import app
    from spikingmind.export.onnx import export as export_onnx

    baseline = export_onnx(ann_checkpoint, tmp_path / "ann.onnx")
    out, plot = tmp_path / "energy.json", tmp_path / "energy.png"
    result = CliRunner().invoke(app, ["energy-report", str(snn_checkpoint), "--baseline", str(baseline),
                                      "--episodes", "2", "--json", str(out), "--plot", str(plot)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "estimate" in result.output.lower()
    data = json.loads(out.read_text())
    assert data["kind"] == "estimate" and data["decisions"] > 2
    assert data["provenance"]["env"] == "CartPole-v1"
    assert {b["profile"] for b in data["baselines"]} == {"cmos45nm-fp32", "cmos45nm-int8"}
    for baseline_row in data["baselines"]:  # both directions of the ratio are reported and consistent
        assert baseline_row["snn_over_ann"] * baseline_row["ann_over_snn"] == pytest.approx(1.0)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = out.read_bytes()
    again = CliRunner().invoke(app, ["energy-report", str(snn_checkpoint), "--json", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output  # refuses to overwrite without --force
    assert out.read_bytes() == before


# ---- decision-only accounting, profiles, verdicts -------------------------------------


def test_decision_only_counts_only_what_the_decision_token_reads():
    """The Output column of the decision token (L - 2 = 1) depends on tokens 0..1 of the mix's
    inputs and on token 1 after the mix: everything else is left out, by hand."""
    graph, records = tiny_graph(), tiny_records()
    cone = decision_cone(graph, 1, {name: values.shape[2:] for name, values in records.items()})
    assert cone["output"].tolist() == [[False, True, False]]
    assert cone["and"].tolist() == cone["lif_b"].tolist() == [[False, True, False]] * 2
    assert cone["lif_a"].tolist() == cone["embed"].tolist() == [[True, True, False]] * 2  # mix taps d = 0, 1
    full, decision = by_name(count_snn(graph, records)), by_name(count_snn(graph, records, cone))
    # the encoder at tokens 0..1: b0 one nonzero input (fan-out 2), b1 four (fan-outs 2, 2, 1, 1)
    assert decision["embed"].effective_macs == (2 + 6) / 2 and full["embed"].effective_macs == 7.0
    # the mix's spikes at tokens 0..1 each reach the decision row once: 2 + 0 + 2 + 1 over 2 decisions
    assert decision["mix"].effective_acs == 2.5 and full["mix"].effective_acs == 7.0
    for name, tokens in (("lif_a", 2), ("lif_b", 1), ("and", 1)):  # C x tokens x T neuron updates per decision
        assert decision[name].neuron_updates == C * tokens * T
        assert full[name].neuron_updates == C * L * T
    assert decision["and"].effective_acs == 1.5  # input spikes at token 1: lif_a 2, lif_b 1
    assert decision["and"].spikes == 0.5 and decision["lif_b"].spikes == 0.5
    assert decision["readout"].effective_acs == 0.5 and decision["readout"].bias_adds == T
    assert full["readout"].bias_adds == L * T
    # nothing the decision does not need is ever counted more than in the full window
    for name in full:
        for attr in ("effective_acs", "effective_macs", "neuron_updates", "spikes", "dense_ops"):
            assert getattr(decision[name], attr) <= getattr(full[name], attr), (name, attr)


def test_weights_are_read_from_the_smallest_array_that_holds_them():
    int8 = load_profile("cmos45nm-int8")
    assert int8.price("weight_read", 4_774).constants == ("sram_8kb_read",)  # a width-16, K = 1 ANN
    assert int8.price("weight_read", 20_000).constants == ("sram_32kb_read",)
    assert int8.price("weight_read", 79_020).constants == ("sram_1mb_read",)  # the width-64, K = 20 twin
    assert int8.price("weight_read", 4_774).pj == pytest.approx(10.0 * 8 / 64)
    assert int8.price("weight_read", 2e6).constants == ("dram_read",)  # over 1 MB: off-chip
    assert int8.price("weight_read", 2e6).pj == pytest.approx(1300.0 * 8 / 64)
    sram_only = dataclasses.replace(int8, accounting=dataclasses.replace(
        int8.accounting, memory_arrays={k: v for k, v in int8.accounting.memory_arrays.items() if k != "dram_read"}))
    with pytest.raises(ProfileError, match="fit none of the listed arrays"):
        sram_only.price("weight_read", 2e6)
    with pytest.raises(ProfileError, match="size in bytes is needed"):
        int8.price("weight_read")


def _toy_variant(tmp_path, name: str, neuron_update_pj: float):
    path = tmp_path / f"{name}.toml"
    path.write_text(TOY_PROFILE.replace('name = "toy"', f'name = "{name}"\ntechnology = "toy node"')
                    .replace("[constants.update]\nvalue = 2.0", f"[constants.update]\nvalue = {neuron_update_pj}"))
    return load_profile(path)


def test_cheaper_is_said_only_when_every_snn_profile_agrees(toy, tmp_path):
    # ANN 2540 pJ; SNN 500 pJ (cheap: 1 pJ per neuron update), 540 (toy: 2), 4460 (dear: 100)
    cheap, dear = _toy_variant(tmp_path, "cheap", 1.0), _toy_variant(tmp_path, "dear", 100.0)
    agree = build_report([Accounted("decision_only", synthetic_snn(), synthetic_ann(500))], [cheap, toy], [toy])
    (verdict,) = agree.verdicts
    assert verdict["cheaper_under_every_profile"] and "cheaper" in verdict["statement"]
    assert "decision-only accounting" in verdict["statement"] and "toy node" in verdict["statement"]
    split = build_report([Accounted("decision_only", synthetic_snn(), synthetic_ann(500))], [cheap, dear], [toy])
    (verdict,) = split.verdicts
    assert verdict["ratios"]["cheap"] < 1 < verdict["ratios"]["dear"]
    assert not verdict["cheaper_under_every_profile"] and "cheaper" not in verdict["statement"]
    from rich.console import Console

    console = Console(file=io.StringIO(), width=250)
    render_report(split, console)
    assert "cheaper" not in console.file.getvalue()
    assert [p["profile"] for p in split.profiles] == ["cheap", "dear"]


def test_both_accountings_are_reported_and_the_verdict_names_its_own(toy):
    full_ann, decision_ann = synthetic_ann(500), synthetic_ann(200)
    report = build_report([Accounted("decision_only", synthetic_snn(), decision_ann),
                           Accounted("full_window", synthetic_snn(), full_ann)], [toy], [toy])
    assert report.accounting == "decision_only" and report.baselines[0].ann_total_pj == 200 * 5 + 40
    other = report.other_accountings["full_window"]["profiles"][0]["baselines"][0]
    assert other["ann_total_pj"] == 500 * 5 + 40
    assert report.verdicts[0]["accounting"] == "decision_only"
    json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON


def test_an_uncountable_baseline_is_an_error_never_zero(toy):
    empty = OnnxCounts(model="zero.onnx", input_shapes={}, nodes=[],
                       uncounted=[{"name": "x", "op_type": "Hardmax", "reason": "no counting rule"}])
    with pytest.raises(ProfileError, match="zero.onnx.*no countable operations"):
        report_of(synthetic_snn(), toy, empty, [toy])


def streaming_graph(time_steps: int = 2) -> nir.NIRGraph:
    """One token per run: input -> embed -> lif_a -> trace (+ decay <- delay <- trace) -> mix ->
    lif_b -> readout -> output; the trace's Delay + Scale loop is what the next run reads."""
    shape, eye = (C, 1), np.eye(C)[:, :, None]
    conv = lambda weight, bias: nir.Conv1d(input_shape=1, weight=weight, stride=1, padding=0, dilation=1,  # noqa: E731
                                           groups=1, bias=bias)
    nodes = {
        "input": nir.Input(input_type={"input": np.array(shape)}),
        "embed": conv(np.array([[[1.0], [0.0]], [[0.5], [2.0]]]), np.zeros(C)),
        "lif_a": lif(shape),
        "trace": conv(eye, np.zeros(C)),
        "delay": nir.Delay(delay=np.full(shape, (time_steps - 1) * 1e-3)),
        "decay": nir.Scale(scale=np.full(shape, 0.5)),
        "mix": conv(np.diag([1.0, 2.0])[:, :, None], np.zeros(C)),
        "lif_b": lif(shape),
        "readout": conv(np.array([[[1.0], [-1.0]]]), np.array([0.5])),
        "output": nir.Output(output_type={"output": np.array([1, 1])}),
    }
    edges = [("input", "embed"), ("embed", "lif_a"), ("lif_a", "trace"), ("decay", "trace"), ("trace", "delay"),
             ("delay", "decay"), ("trace", "mix"), ("mix", "lif_b"), ("lif_b", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def streaming_run(token, a_spikes, b_spikes) -> dict[str, np.ndarray]:
    """Records (T=2, B=1, C, 1) of one token's run: its input, and lif_a / lif_b spikes per step
    ([c, ...] per step); the real-valued nodes get plausible nonzero values (the embedding's
    the same at both steps, as its input is)."""
    records = {"input": np.broadcast_to(np.asarray(token, dtype=float)[None, None, :, None], (2, 1, C, 1)).copy()}
    for name, per_step in (("lif_a", a_spikes), ("lif_b", b_spikes)):
        records[name] = np.zeros((2, 1, C, 1))
        for t, channels in enumerate(per_step):
            records[name][t, 0, channels, 0] = 1.0
    for name in ("embed", "trace", "delay", "decay", "mix"):  # the trace changes from step to step
        records[name] = np.full((2, 1, C, 1), 0.25) * (1 + np.arange(2)[:, None, None, None] * (name != "embed"))
    records["readout"] = records["output"] = np.full((2, 1, 1, 1), 0.1)
    return records


def test_a_streaming_decision_counts_exactly():
    """A steady-state streaming decision is 3 runs (action, return-to-go, state tokens): each run
    computes what later runs read (the carried cone: embed, lif_a, the trace loop), the state
    token's run also the decision (mix, lif_b, readout). Spikes the deployment never computes
    (lif_b in the first two runs) are not counted, though the records hold them."""
    from spikingmind.energy.snn_counts import add_runs, carried_cone

    graph = streaming_graph()
    runs = [streaming_run([1.0, 0.0], [[0], [0, 1]], [[0, 1], [0, 1]]),  # action token: lif_b not computed
            streaming_run([0.5, 0.5], [[1], []], [[0], [0]]),            # return-to-go token: neither
            streaming_run([0.0, 2.0], [[0, 1], [1]], [[1], []])]          # state token: the decision
    shapes = {name: values.shape[2:] for name, values in runs[0].items()}
    carried, decision = carried_cone(graph, shapes), decision_cone(graph, 0, shapes)
    assert {n for n, m in carried.items() if m.any()} == {"input", "embed", "lif_a", "trace", "delay", "decay"}
    deciding = {name: carried[name] | decision[name] for name in carried}
    counts = add_runs([count_snn(graph, runs[0], carried), count_snn(graph, runs[1], carried),
                       count_snn(graph, runs[2], deciding)])
    layers = by_name(counts)

    assert layers["lif_a"].neurons == 3 * C and layers["lif_a"].neuron_updates == 3 * C * T
    assert layers["lif_a"].spikes == 3 + 1 + 3
    assert layers["lif_a"].spike_rate == pytest.approx(7 / (3 * C * T))
    assert layers["lif_b"].neurons == C and layers["lif_b"].neuron_updates == C * T
    assert layers["lif_b"].spikes == 1  # the state run's alone
    assert layers["readout"].effective_acs == 1  # one lif_b spike x one nonzero weight
    assert layers["readout"].dense_ops == 2 * T  # C_in x C_out per step, one run
    # embed: real-valued, step-invariant input: MACs once per run, nonzero inputs x nonzero fan-out
    # (input 0 fans out to 2 channels, input 1 to 1): 2 + (2 + 1) + 1
    assert layers["embed"].once_per_decision and layers["embed"].effective_macs == 6
    # the trace and mix compute in every run that needs them: mix only in the state run
    assert layers["mix"].dense_ops == C * C * T and layers["trace"].dense_ops == 3 * C * C * T
    assert counts.total("spikes") == 8
