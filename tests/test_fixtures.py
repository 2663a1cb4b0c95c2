"""Frozen exports (tests/fixtures, made by make_fixtures.py) must still read and reproduce."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from spikingmind.export.reference import ReferenceSimulator, load_graph

FIXTURES = Path(__file__).parent / "fixtures"


def test_frozen_export_reproduces_its_spikes_and_outputs_exactly():
    graph = load_graph(FIXTURES / "tiny_dt.nir")
    expected = np.load(FIXTURES / "tiny_dt_expected.npz")
    result = ReferenceSimulator(graph).run(expected["inputs"], record=True)
    np.testing.assert_array_equal(result.outputs["output"], expected["output"])
    recorded = [key.split("/", 1)[1] for key in expected.files if key.startswith("record/")]
    assert set(recorded) == set(graph.nodes)
    for name in recorded:
        np.testing.assert_array_equal(result.records[name], expected[f"record/{name}"], err_msg=name)
    spiking = [n for n in recorded if isinstance(graph.nodes[n], (nir.LIF, nir.Threshold))]
    assert all(expected[f"record/{n}"].any() for n in spiking)  # every spiking layer fires in the fixture


def test_frozen_export_is_still_what_the_exporter_writes():
    """The exporter's output for the fixture model has not drifted (same nodes, edges, parameters)."""
    import sys

    sys.path.insert(0, str(FIXTURES))
    try:
        from make_fixtures import build_graph
    finally:
        sys.path.remove(str(FIXTURES))
    fresh, frozen = build_graph(), load_graph(FIXTURES / "tiny_dt.nir")
    assert list(fresh.edges) == [tuple(edge) for edge in frozen.edges]
    for name, node in fresh.nodes.items():
        assert type(node) is type(frozen.nodes[name]), name
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(frozen.nodes[name], field), value, err_msg=f"{name}.{field}")
