"""The NumPy reference simulator follows docs/SEMANTICS.md exactly and reads .nir files (which graphs
are valid at all: tests/test_graph.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikingmind import units
from spikingmind.errors import GraphError
from spikingmind.export.reference import COMPILERS, ReferenceSimulator, load_graph
from spikingmind.graph import NODE_KINDS, validate_graph
from tests.support import graphs as g
from tests.support.graphs import dt_graph as _dt_graph

DT = units.DT


def dt_graph(blocks=2, action_kind="discrete", **options):
    """The SEMANTICS.md-shaped test graph of tests/support/graphs.py with real-valued weights."""
    return _dt_graph(blocks=blocks, action_kind=action_kind, dyadic=False, beta=0.5, **options)


# ---- neuron and edge semantics -----------------------------------------------------------


def test_lif_constant_drive_spikes_at_hand_computed_steps():
    # beta = 0.5, threshold 1, zero reset. Drive 0.6: v = 0.6, 0.9, 1.05* | 0.6, 0.9, 1.05* ...
    # Drive 1.0: v = 1.0 (not > 1), 1.5* | 1.0, 1.5* ...  (a >= comparison would fire every step)
    graph = g.graph(
        {"in": nir.Input(np.array([2])), "lif": g.lif((2,)), "out": nir.Output(np.array([2]))},
        [("in", "lif"), ("lif", "out")],
    )
    result = ReferenceSimulator(graph).run(np.array([[0.6, 1.0]]), time_steps=8, record=True)
    spikes = result.outputs["out"][:, 0]
    np.testing.assert_array_equal(spikes[:, 0], [0, 0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(spikes[:, 1], [0, 1, 0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(result.records["lif"], result.outputs["out"])
    np.testing.assert_array_equal(result.records["in"][:, 0], np.tile([0.6, 1.0], (8, 1)))


def test_state_starts_at_zero_on_every_run():
    graph = g.graph(
        {"in": nir.Input(np.array([1])), "lif": g.lif((1,)), "out": nir.Output(np.array([1]))},
        [("in", "lif"), ("lif", "out")],
    )
    sim = ReferenceSimulator(graph)
    first = sim.run(np.array([[0.6]]), time_steps=2).outputs["out"]
    second = sim.run(np.array([[0.6]]), time_steps=2).outputs["out"]
    np.testing.assert_array_equal(first, np.zeros((2, 1, 1)))  # would fire at step 1 if v carried over
    np.testing.assert_array_equal(second, first)


def test_threshold_with_two_edges_is_a_strict_and():
    nodes = {
        "k": nir.Input(np.array([4])),
        "v": nir.Input(np.array([4])),
        "and": nir.Threshold(np.full(4, 1.5)),
        "out": nir.Output(np.array([4])),
    }
    graph = g.graph(nodes, [("k", "and"), ("v", "and"), ("and", "out")])
    result = ReferenceSimulator(graph).run(
        {"k": np.array([[0, 1, 1, 0.75]]), "v": np.array([[1, 0, 1, 0.75]])}, time_steps=1
    )
    np.testing.assert_array_equal(result.output[0, 0], [0, 0, 1, 0])  # 1.5 is not > 1.5


@pytest.mark.parametrize("order", [("a", "b", "c"), ("c", "b", "a")])
def test_incoming_edges_are_summed_in_edge_list_order(order):
    values = {"a": 0.1, "b": 0.2, "c": 0.3}  # (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1 in float64
    nodes = {name: nir.Input(np.array([1])) for name in values} | {"out": nir.Output(np.array([1]))}
    graph = g.graph(nodes, [(name, "out") for name in order])
    inputs = {name: np.array([[value]]) for name, value in values.items()}
    got = ReferenceSimulator(graph).run(inputs, time_steps=1).output[0, 0, 0]
    x, y, z = (values[name] for name in order)
    assert got == (x + y) + z
    other = (z + y) + x
    assert got != other


def test_delay_shifts_each_element_by_its_own_number_of_steps():
    graph = g.graph(
        {
            "in": nir.Input(np.array([3])),
            "delay": nir.Delay(np.array([0.0, 1.0, 2.0]) * DT),
            "out": nir.Output(np.array([3])),
        },
        [("in", "delay"), ("delay", "out")],
    )
    drive = np.repeat(np.arange(1.0, 6.0)[:, None, None], 3, axis=2)  # (T=5, B=1, 3): t + 1
    out = ReferenceSimulator(graph).run(drive, time_varying=True).output[:, 0]
    np.testing.assert_array_equal(out[:, 0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(out[:, 1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 2, 3])


def test_feedback_edge_in_a_cycle_reads_the_previous_step():
    # IF (r = 1, threshold 1) driven by 0.3 and by 2 x its own spikes through a Scale.
    # The IF -> scale edge is feedback: v = 0.3, 0.6, 0.9, 1.2* then 0.3 + 2 = 2.3* every step.
    nodes = {
        "in": nir.Input(np.array([1])),
        "if": nir.IF(r=np.ones(1), v_threshold=np.ones(1), v_reset=np.zeros(1)),
        "scale": nir.Scale(np.array([2.0])),
        "out": nir.Output(np.array([1])),
    }
    graph = g.graph(nodes, [("in", "if"), ("if", "scale"), ("scale", "if"), ("if", "out")])
    out = ReferenceSimulator(graph).run(np.array([[0.3]]), time_steps=6).output[:, 0, 0]
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 1, 1])


def test_li_and_i_integrate_as_specified():
    tau, r = np.full(1, 4 * DT), np.full(1, 2.0)
    nodes = {
        "in": nir.Input(np.array([1])),
        "li": nir.LI(tau=tau, r=r, v_leak=np.full(1, 0.5)),
        "i": nir.I(r=np.full(1, 500.0)),
        "out": nir.Output(np.array([1])),
        "out_i": nir.Output(np.array([1])),
    }
    graph = g.graph(nodes, [("in", "li"), ("li", "out"), ("in", "i"), ("i", "out_i")])
    result = ReferenceSimulator(graph).run(np.array([[1.0]]), time_steps=3)
    v, expected = 0.0, []
    for _ in range(3):  # beta = 0.75, gain = 0.5, leak drive = 0.125
        v = 0.75 * v + 0.5 * 1.0 + 0.125
        expected.append(v)
    np.testing.assert_array_equal(result.outputs["out"][:, 0, 0], expected)
    np.testing.assert_allclose(result.outputs["out_i"][:, 0, 0], [0.5, 1.0, 1.5], rtol=1e-15)


def test_cuba_lif_filters_the_input_current_first():
    # tau_syn = tau_mem = 2 dt: beta_syn = beta = 0.5; r = 2 -> gain 1. Drive 1:
    # i = 1, 1.5, 1.75, 1.875;  v = 1 (not > 1), 0.5 + 1.5 = 2*, 0 + 1.75*, 0 + 1.875*
    two_dt = np.full(1, 2 * DT)
    node = nir.CubaLIF(
        tau_syn=two_dt, tau_mem=two_dt, r=np.full(1, 2.0), v_leak=np.zeros(1),
        v_threshold=np.ones(1), v_reset=np.zeros(1),
    )
    graph = g.graph(
        {"in": nir.Input(np.array([1])), "cuba": node, "out": nir.Output(np.array([1]))},
        [("in", "cuba"), ("cuba", "out")],
    )
    out = ReferenceSimulator(graph).run(np.array([[1.0]])).output[:, 0, 0]
    np.testing.assert_array_equal(out, [0, 1, 1, 1])


def test_flatten_affine_linear_if_chain():
    rng = np.random.default_rng(5)
    w_aff, b_aff, w_lin = rng.normal(size=(4, 6)), rng.normal(size=4), rng.normal(size=(2, 3))
    nodes = {
        "in": nir.Input(np.array([2, 3])),
        "flat": nir.Flatten(np.array([2, 3]), start_dim=0, end_dim=-1),
        "aff": nir.Affine(weight=w_aff, bias=b_aff),
        "if": nir.IF(r=np.full(4, 0.5), v_threshold=np.full(4, 0.25), v_reset=np.full(4, -0.5)),
        "lin": nir.Linear(weight=w_lin),  # over the last axis of the (2, 3) input
        "out": nir.Output(np.array([4])),
        "out_lin": nir.Output(np.array([2, 2])),
    }
    edges = [("in", "flat"), ("flat", "aff"), ("aff", "if"), ("if", "out"), ("in", "lin"), ("lin", "out_lin")]
    graph = g.graph(nodes, edges)
    assert validate_graph(graph)["flat"] == (6,)
    partial = nir.Flatten(np.array([2, 3, 4]), start_dim=1, end_dim=-1)
    partial_graph = g.graph(
        {"in": nir.Input(np.array([2, 3, 4])), "flat": partial, "out": nir.Output(np.array([2, 12]))},
        [("in", "flat"), ("flat", "out")],
    )
    assert validate_graph(partial_graph)["flat"] == (2, 12)
    y = np.arange(24.0).reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(ReferenceSimulator(partial_graph).run(y, 1).output[0], y.reshape(1, 2, 12))
    x = rng.normal(size=(3, 2, 3))
    result = ReferenceSimulator(graph).run(x, time_steps=3, record=True)
    current = x.reshape(3, 6) @ w_aff.T + b_aff
    np.testing.assert_allclose(result.records["aff"][0], current, rtol=1e-13)
    v, spikes = np.zeros((3, 4)), []
    for _ in range(3):
        v = v + 0.5 * current
        spikes.append(v > 0.25)
        v = np.where(spikes[-1], -0.5, v)
    np.testing.assert_array_equal(result.outputs["out"], np.array(spikes, dtype=float))
    np.testing.assert_allclose(result.outputs["out_lin"][0], x @ w_lin.T, rtol=1e-13)


# ---- Conv1d -------------------------------------------------------------------------------

CONV_CASES = [
    # c_in, c_out, kernel, stride, padding, dilation, groups, n
    (3, 5, 1, 1, 0, 1, 1, 7),  # pointwise matmul
    (4, 6, 1, 1, "same", 1, 2, 7),  # pointwise, grouped
    (4, 6, 3, 1, 0, 1, 1, 10),
    (4, 6, 3, 2, 1, 1, 2, 11),
    (6, 6, 5, 1, "same", 2, 3, 12),
    (4, 4, 4, 1, "same", 1, 1, 9),  # even kernel: torch pads one more on the right
    (4, 8, 3, 3, 2, 2, 4, 17),
    (5, 5, 3, 1, "valid", 1, 5, 8),  # depthwise -> per-channel Toeplitz
    (4, 4, 4, 1, "same", 1, 4, 9),  # depthwise, asymmetric 'same' padding
    (4, 4, 3, 2, 1, 2, 1, 10),  # dense diagonal weight below -> per-channel Toeplitz
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv1d_matches_torch(case):
    c_in, c_out, kernel, stride, padding, dilation, groups, n = case
    rng = np.random.default_rng(CONV_CASES.index(case))  # its index: a str hash would be salted per process
    weight = rng.normal(size=(c_out, c_in // groups, kernel))
    if case == CONV_CASES[-1]:
        weight *= np.eye(c_in)[:, :, None]
    bias = rng.normal(size=c_out)
    x = rng.normal(size=(3, c_in, n))
    expected = F.conv1d(
        torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
        stride=stride, padding=padding, dilation=dilation, groups=groups,
    ).numpy()
    node = g.conv(weight, bias, n_in=n, stride=stride, padding=padding, dilation=dilation, groups=groups)
    graph = g.graph(
        {"in": nir.Input(np.array([c_in, n])), "conv": node, "out": nir.Output(np.array(expected.shape[1:]))},
        [("in", "conv"), ("conv", "out")],
    )
    assert validate_graph(graph)["conv"] == expected.shape[1:]
    got = ReferenceSimulator(graph).run(x, time_steps=2).output
    np.testing.assert_allclose(got[0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[1], got[0])


def test_diagonal_and_depthwise_conv_take_the_per_channel_path():
    # guards that the parametrized torch comparison really exercises every strategy
    strategies = []
    for case in CONV_CASES:
        c_in, c_out, kernel, stride, padding, dilation, groups, n = case
        weight = np.ones((c_out, c_in // groups, kernel))
        if case == CONV_CASES[-1]:
            weight *= np.eye(c_in)[:, :, None]
        node = g.conv(weight, n_in=n, stride=stride, padding=padding, dilation=dilation, groups=groups)
        shape = validate_graph(g.graph({"in": nir.Input(np.array([c_in, n])), "c": node,
                                       "o": nir.Output(None)}, [("in", "c"), ("c", "o")]))["c"]
        graph = g.graph({"in": nir.Input(np.array([c_in, n])), "c": node, "o": nir.Output(np.array(shape))},
                       [("in", "c"), ("c", "o")])
        strategies.append(ReferenceSimulator(graph)._programs[0].step.__name__)
    assert strategies[:2] == ["_conv_pointwise_step"] * 2
    assert strategies[-3:] == ["_conv_channelwise_step"] * 3
    assert "_conv_im2col_step" in strategies


def test_causal_conv_ignores_the_future():
    C, L = 3, 8
    weight = np.zeros((C, C, 2 * L - 1))
    for d in range(L):
        weight[np.arange(C), np.arange(C), L - 1 - d] = np.array([0.5, 0.7, 0.9]) ** d
    graph = g.graph(
        {
            "in": nir.Input(np.array([C, L])),
            "mix": g.conv(weight, n_in=L, padding=L - 1),
            "lif": g.lif((C, L), threshold=0.8),
            "out": nir.Output(np.array([C, L])),
        },
        [("in", "mix"), ("mix", "lif"), ("lif", "out")],
    )
    sim = ReferenceSimulator(graph)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (2, C, L))
    changed = x.copy()
    changed[:, :, 5:] += rng.uniform(1, 2, (2, C, L - 5))
    base, perturbed = sim.run(x, record=True).records, sim.run(changed, record=True).records
    np.testing.assert_array_equal(perturbed["mix"][..., :5], base["mix"][..., :5])
    np.testing.assert_array_equal(perturbed["lif"][..., :5], base["lif"][..., :5])
    assert np.all(perturbed["mix"][..., 5:] > base["mix"][..., 5:])
    expected = F.conv1d(torch.from_numpy(x), torch.from_numpy(weight), padding=L - 1).numpy()
    np.testing.assert_allclose(base["mix"][0], expected, rtol=1e-12)


# ---- Conv2d ----------------------------------------------------------------------------------

CONV2D_CASES = [
    # c_in, c_out, kernel, stride, padding, dilation, groups, (H, W)
    (3, 5, (1, 1), 1, 0, 1, 1, (1, 7)),  # pointwise matmul on the flattened grid
    (4, 6, (3, 3), 1, 1, 1, 1, (5, 6)),
    (4, 6, (2, 3), (2, 1), (1, 2), (1, 2), 2, (6, 9)),  # non-square, grouped
    (6, 6, (3, 3), 1, "same", (1, 2), 3, (4, 8)),
    (4, 4, (4, 2), 1, "same", 1, 1, (5, 5)),  # even kernel: torch pads one more at the end
    (5, 5, (3, 3), 1, "valid", 1, 5, (4, 6)),  # depthwise -> per-channel Toeplitz
    (4, 4, (3, 3), 1, (1, 4), (1, 4), 1, (1, 12)),  # dense diagonal, centre row: a portable mix stage
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d_matches_torch(case):
    c_in, c_out, kernel, stride, padding, dilation, groups, hw = case
    rng = np.random.default_rng(CONV2D_CASES.index(case))  # the index: a string hash is salted per process
    weight = rng.normal(size=(c_out, c_in // groups, *kernel))
    if case == CONV2D_CASES[-1]:
        weight *= np.eye(c_in)[:, :, None, None]
        weight[:, :, [0, 2], :] = 0.0
    bias = rng.normal(size=c_out)
    x = rng.normal(size=(3, c_in, *hw))
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
                        stride=stride, padding=padding, dilation=dilation, groups=groups).numpy()
    node = nir.Conv2d(input_shape=hw, weight=weight, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, bias=bias)
    graph = g.graph(
        {"in": nir.Input(np.array([c_in, *hw])), "conv": node, "out": nir.Output(np.array(expected.shape[1:]))},
        [("in", "conv"), ("conv", "out")],
    )
    assert validate_graph(graph)["conv"] == expected.shape[1:]
    sim = ReferenceSimulator(graph)
    got = sim.run(x, time_steps=2).output
    np.testing.assert_allclose(got[0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[1], got[0])
    if case in (CONV2D_CASES[0], CONV2D_CASES[-1]):  # the fast paths, as for Conv1d
        inner = sim._programs[0].params[0].__name__
        assert inner == ("_conv_pointwise_step" if case == CONV2D_CASES[0] else "_conv_channelwise_step")


def test_conv2d_pointwise_is_the_conv1d_step_bit_for_bit():
    """A 1x1 Conv2d on (C, 1, L) computes exactly what the kernel-1 Conv1d on (C, L) does:
    the portable export relies on it for spike-exact agreement."""
    rng = np.random.default_rng(5)
    weight, bias = rng.normal(size=(6, 4)), rng.normal(size=6)
    x = rng.normal(size=(3, 4, 9))
    conv1d = g.graph({"in": nir.Input(np.array([4, 9])), "c": g.conv(weight[:, :, None], bias, n_in=9),
                     "o": nir.Output(np.array([6, 9]))}, [("in", "c"), ("c", "o")])
    conv2d = g.graph({"in": nir.Input(np.array([4, 1, 9])),
                     "c": nir.Conv2d(input_shape=(1, 9), weight=weight[:, :, None, None], stride=1, padding=0,
                                     dilation=1, groups=1, bias=bias),
                     "o": nir.Output(np.array([6, 1, 9]))}, [("in", "c"), ("c", "o")])
    one = ReferenceSimulator(conv1d).run(x, 1).output
    two = ReferenceSimulator(conv2d).run(x[:, :, None, :], 1).output
    np.testing.assert_array_equal(two[:, :, :, 0, :], one)


def test_conv2d_kernel_too_large_is_named():
    node = nir.Conv2d(input_shape=(1, 5), weight=np.ones((2, 2, 3, 3)), stride=1, padding=0, dilation=1,
                      groups=1, bias=np.zeros(2))
    graph = g.graph({"in": nir.Input(np.array([2, 1, 5])), "c": node, "o": nir.Output(None)},
                   [("in", "c"), ("c", "o")])
    with pytest.raises(GraphError, match=r"node 'c' \(Conv2d\).*too small for the kernel"):
        validate_graph(graph)


# ---- a whole model, files, policy ------------------------------------------------------------


def test_write_read_round_trip_reproduces_every_record(tmp_path):
    graph = dt_graph(action_kind="continuous")
    path = tmp_path / "model.nir"
    nir.write(path, graph)
    loaded = load_graph(path)
    assert json.loads(loaded.metadata["spikingmind"]) == json.loads(graph.metadata["spikingmind"])
    assert loaded.metadata["dt"] == DT and loaded.metadata["time_steps"] == 4
    assert len(loaded.nodes) == 37
    x = np.random.default_rng(2).normal(0, 1.5, (3, 5, 6))
    before = ReferenceSimulator(graph).run(x, record=True)
    after = ReferenceSimulator(loaded).run(x, record=True)
    assert before.records.keys() == after.records.keys()
    for name, spikes in before.records.items():
        np.testing.assert_array_equal(after.records[name], spikes, err_msg=name)
    lifs = [n for n in before.records if n.endswith("lif") or n.endswith("lif_in")]
    rates = [before.records[n].mean() for n in lifs]
    assert 0 < np.mean(rates) < 1  # the graph is not silent or saturated: the check has teeth


def test_custom_node_in_a_file_names_file_and_node(tmp_path):
    @dataclass(eq=False)
    class Gate(nir.NIRNode):
        level: np.ndarray

        def __post_init__(self):
            self.input_type = {"input": np.array(self.level.shape)}
            self.output_type = {"output": np.array(self.level.shape)}

    path = tmp_path / "custom.nir"
    nir.write(path, g.chain(("gate", Gate(np.ones(3)))))
    with pytest.raises(GraphError, match=r"custom\.nir.*node 'gate' has unknown type 'Gate'"):
        load_graph(path)


def test_truncated_and_missing_files_raise_graph_error(tmp_path):
    path = tmp_path / "model.nir"
    nir.write(path, dt_graph())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphError, match=r"model\.nir: cannot read NIR graph"):
        load_graph(path)
    with pytest.raises(GraphError, match=r"absent\.nir: no such graph file"):
        load_graph(tmp_path / "absent.nir")


def test_reference_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, spikingmind.export.reference; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert NODE_KINDS[nir.LIF].stateful


def test_every_node_kind_of_the_graph_semantics_compiles_to_a_step_function():
    """spikingmind.graph says which node types are valid; the simulator steps exactly those."""
    assert set(COMPILERS) == set(NODE_KINDS)
