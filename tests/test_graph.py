"""Which NIR graphs are valid (spikingmind.graph), and that every reader of a graph agrees:
the reference simulator and the energy counter accept and refuse the same graphs."""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import pytest

from spikingmind import units
from spikingmind.energy.snn_counts import count_snn
from spikingmind.errors import GraphError
from spikingmind.export.reference import ReferenceSimulator
from spikingmind.graph import plan_graph, validate_graph
from tests.support import graphs as g

# ---- validation: every failure names the node or edge ------------------------------------------


def test_valid_chain_passes():
    assert validate_graph(g.chain(("lif", g.lif((3,)))))["out"] == (3,)


def test_dangling_edge_is_named():
    graph = g.chain(("lif", g.lif((3,))), extra_edges=[("lif", "ghost")])
    with pytest.raises(GraphError, match="edge 'lif' -> 'ghost' names missing node 'ghost'"):
        validate_graph(graph, source="model.nir")


def test_shape_mismatch_names_the_edge():
    graph = g.chain(("lif", g.lif((4,))))
    with pytest.raises(GraphError, match=r"edge 'in' -> 'lif'.*\(3,\).*\(4,\)"):
        validate_graph(graph)


def test_conv_channel_mismatch_names_the_edge():
    graph = g.graph(
        {"in": nir.Input(np.array([3, 5])), "c": g.conv(np.ones((2, 4, 1)), n_in=5),
         "out": nir.Output(np.array([2, 5]))},
        [("in", "c"), ("c", "out")],
    )
    with pytest.raises(GraphError, match=r"'in' -> 'c'.*\(4, 5\)"):
        validate_graph(graph)


def test_nan_weight_is_named():
    weight = np.ones((3, 3))
    weight[1, 2] = np.nan
    graph = g.chain(("aff", nir.Affine(weight=weight, bias=np.zeros(3))))
    with pytest.raises(GraphError, match="node 'aff' \\(Affine\\) parameter 'weight' contains NaN"):
        validate_graph(graph)


def test_unsupported_node_types_are_named():
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    with pytest.raises(GraphError, match="node 'pool' has unsupported type SumPool2d"):
        validate_graph(g.chain(("pool", pool)))

    @dataclass(eq=False)
    class Spiky(nir.LIF):  # a custom subclass is not the standard node
        pass

    p = units.lif_parameters(np.full(3, 0.5))
    custom = Spiky(tau=p["tau"], r=p["r"], v_leak=p["v_leak"], v_threshold=np.ones(3))
    with pytest.raises(GraphError, match="node 'spiky' has unsupported type Spiky"):
        validate_graph(g.chain(("spiky", custom)))


def test_cycle_without_a_stateful_node_is_rejected():
    graph = g.chain(
        ("a", nir.Affine(weight=np.eye(3), bias=np.zeros(3))),
        ("b", nir.Scale(np.ones(3))),
        extra_edges=[("b", "a")],
    )
    with pytest.raises(GraphError, match="cycle 'a' -> 'b' -> 'a' contains no stateful node"):
        validate_graph(graph)


def test_non_positive_time_constant_is_named():
    node = g.lif((3,))
    node.tau[1] = 0.0
    with pytest.raises(GraphError, match=r"node 'lif' \(LIF\) parameter 'tau' must be > 0"):
        validate_graph(g.chain(("lif", node)))


def test_missing_dt_is_named():
    graph = g.chain(("lif", g.lif((3,))), metadata={"time_steps": 4})
    with pytest.raises(GraphError, match=r"node 'lif' \(LIF\) needs metadata\['dt'\]"):
        validate_graph(graph)
    validate_graph(g.chain(("s", nir.Scale(np.ones(3))), metadata={}))  # stateless: dt not needed


def test_node_without_inputs_and_unreachable_nodes_are_named():
    graph = g.chain(("lif", g.lif((3,))))
    graph.nodes["orphan"] = g.lif((3,))
    graph.edges.append(("orphan", "out"))
    with pytest.raises(GraphError, match="node 'orphan' \\(LIF\\) has no incoming edges"):
        validate_graph(graph)

    graph = g.chain(("lif", g.lif((3,))))
    graph.nodes["island"] = g.lif((3,))
    graph.nodes["loop"] = nir.Scale(np.ones(3))
    graph.edges += [("island", "loop"), ("loop", "island")]
    with pytest.raises(GraphError, match="node 'island' \\(LIF\\) is not reachable"):
        validate_graph(graph)


# ---- the evaluation order -------------------------------------------------------------------


def test_order_is_first_in_first_out_over_the_zero_delay_edges():
    """Kahn's algorithm with a FIFO queue: sources in node order, successors in edge-list order
    (the order the energy report lists its layers in)."""
    nodes = {"in": nir.Input(np.array([3])), "a": g.lif((3,)), "b": g.lif((3,)), "a2": nir.Scale(np.ones(3)),
             "b2": nir.Scale(np.ones(3)), "out": nir.Output(np.array([3]))}
    graph = g.graph(nodes, [("in", "a"), ("in", "b"), ("a", "a2"), ("b", "b2"), ("a2", "out"), ("b2", "out")])
    assert plan_graph(graph).order == ["in", "a", "b", "a2", "b2", "out"]


def test_a_cycle_through_a_stateful_node_is_ordered_by_its_zero_delay_edges():
    nodes = {"in": nir.Input(np.array([3])), "lif": g.lif((3,)), "fb": nir.Scale(np.full(3, 0.5)),
             "out": nir.Output(np.array([3]))}
    plan = plan_graph(g.graph(nodes, [("in", "lif"), ("fb", "lif"), ("lif", "fb"), ("lif", "out")]))
    assert plan.order == ["in", "fb", "lif", "out"]  # fb reads lif one step late: no zero-delay source
    assert ("fb", False) in plan.sources["lif"] and ("lif", True) in plan.sources["fb"]  # lif -> fb is feedback


# ---- every reader agrees on which graphs are valid -----------------------------------------------


def _counted(graph: nir.NIRGraph) -> None:
    """The energy counter on records of the right shapes (what it counts does not matter here)."""
    shapes = {name: (2, 1, *shape) for name, shape in validate_graph(graph).items()}  # (T, B, *shape)
    count_snn(graph, {name: np.zeros(shape) for name, shape in shapes.items()})


def _invalid_graphs():
    pointwise = g.conv(np.ones((2, 2, 1)), n_in=4)
    yield "cycle without a stateful node", g.chain(
        ("a", nir.Affine(weight=np.eye(3), bias=np.zeros(3))), ("b", nir.Scale(np.ones(3))), extra_edges=[("b", "a")])
    yield "no dt for a LIF", g.chain(("lif", g.lif((3,))), metadata={"time_steps": 4})
    yield "Conv1d groups that do not divide its channels", g.chain(
        ("c", g.conv(np.ones((3, 1, 1)), n_in=4, groups=2)), ("l", g.lif((3, 4))), shape=(2, 4))
    yield "padding 'same' with stride 2", g.chain(
        ("c", g.conv(np.ones((2, 2, 3)), n_in=4, stride=2, padding="same")), ("l", g.lif((2, 2))), shape=(2, 4))
    yield "Conv1d channel mismatch", g.chain(("c", pointwise), ("l", g.lif((2, 4))), shape=(3, 4))


@pytest.mark.parametrize("what, graph", list(_invalid_graphs()), ids=[w for w, _ in _invalid_graphs()])
def test_the_simulator_and_the_energy_counter_refuse_the_same_graphs(what, graph):
    with pytest.raises(GraphError) as simulated:
        ReferenceSimulator(graph)
    with pytest.raises(GraphError) as counted:
        count_snn(graph, {name: np.zeros((2, 1, 3)) for name in graph.nodes})
    assert str(counted.value) == str(simulated.value)  # the same rule, the same message


def test_the_simulator_and_the_energy_counter_accept_a_recurrent_graph_alike():
    nodes = {"in": nir.Input(np.array([3])), "w": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
             "lif": g.lif((3,)), "fb": nir.Affine(weight=0.5 * np.eye(3), bias=np.zeros(3)),
             "out": nir.Output(np.array([3]))}
    graph = g.graph(nodes, [("in", "w"), ("w", "lif"), ("fb", "lif"), ("lif", "fb"), ("lif", "out")])
    inputs = np.random.default_rng(0).normal(1.0, 1.0, (5, 3))
    records = dict(ReferenceSimulator(graph).run(inputs, record=True).records)
    records["in"] = np.broadcast_to(inputs, (4, *inputs.shape))
    counts = count_snn(graph, records)
    assert [layer.name for layer in counts.layers] == ["fb", "w", "lif"]  # the plan's order (fb: feedback only)
    lif = next(layer for layer in counts.layers if layer.name == "lif")
    assert lif.spikes == records["lif"].sum() / 5 and lif.spikes > 0
    _counted(graph)


def test_the_energy_counter_uses_the_graphs_conv1d_geometry():
    """A strided, dilated, padded Conv1d: positions reached follow graph.conv_geometry (as the
    simulator computes them): every input spike drives exactly the taps that land on an output."""
    node = g.conv(np.ones((1, 1, 3)), n_in=7, stride=2, padding=1, dilation=2)
    nodes = {"in": nir.Input(np.array([1, 7])), "c": node, "l": g.lif((1, 3)), "out": nir.Output(np.array([1, 3]))}
    graph = g.graph(nodes, [("in", "c"), ("c", "l"), ("l", "out")])
    assert validate_graph(graph)["c"] == (1, 3)
    spikes = np.zeros((1, 1, 1, 7))
    spikes[0, 0, 0, :] = 1.0  # every input position spikes once
    counts = count_snn(graph, {"in": spikes, "c": np.zeros((1, 1, 1, 3)), "l": np.zeros((1, 1, 1, 3)),
                               "out": np.zeros((1, 1, 1, 3))})
    # output p reads inputs 2p - 1 + 2k (k = 0, 1, 2) inside 0..6: p=0 -> 1, 3; p=1 -> 1, 3, 5; p=2 -> 3, 5
    assert next(layer for layer in counts.layers if layer.name == "c").effective_acs == 7.0
