"""Frozen exports (tests/fixtures, made by make_fixtures.py) must still read and reproduce.

The fixture files were written on one machine and are checked on any other, so the checks
are split by what is portable:

- Spikes are compared bit for bit. They are portable because every membrane of the fixture
  stays far from its threshold (`test_fixture_membranes_keep_a_margin_from_threshold`): a
  last-bit difference in a current (another BLAS summation order, a recomputed parameter)
  cannot flip a spike, and `test_fresh_export_reproduces_the_frozen_spikes` measures how far
  a recomputed export moves the currents against that margin.
- Real-valued outputs and currents are sums of weights whose order the BLAS kernel of the
  CPU chooses: compared to 1e-12 relative (a flipped spike moves them by a whole weight).
- The exporter's parameters for the fixture model come from float32 exp/log (the mix decay
  g^d, BatchNorm folding): recomputed here they may differ from the file in the last bits,
  so float parameters are compared to 1e-6 relative, every other field exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import numpy as np

from spikingmind import units
from spikingmind.export.reference import ReferenceSimulator, load_graph
from tests.support.graph_checks import assert_same_graph, spike_margins

FIXTURES = Path(__file__).parent / "fixtures"
OUTPUT_RTOL = 1e-12  # real-valued sums: another summation order changes the last bits only
PARAMETER_RTOL = 1e-6  # parameters recomputed with another CPU's vectorised exp/log
#: The fixture's membranes must stay this far from threshold. float64 sums of |I| < 100 in
#: another order differ by < 1e-12, so a margin of 1e-6 leaves a factor of 10^6.
MARGIN = 1e-6
SAFETY = 10.0  # a recomputed export may move a membrane by at most margin / SAFETY


def _frozen():
    graph = load_graph(FIXTURES / "tiny_dt.nir")
    expected = np.load(FIXTURES / "tiny_dt_expected.npz")
    records = {key.split("/", 1)[1]: expected[key] for key in expected.files if key.startswith("record/")}
    return graph, expected, records


def _fresh_graph() -> nir.NIRGraph:
    sys.path.insert(0, str(FIXTURES))
    try:
        from make_fixtures import build_graph
    finally:
        sys.path.remove(str(FIXTURES))
    return build_graph()


def _spiking(graph: nir.NIRGraph) -> list[str]:
    return [name for name, node in graph.nodes.items() if isinstance(node, nir.LIF | nir.Threshold)]


def test_frozen_export_reproduces_its_spikes_and_outputs():
    graph, expected, records = _frozen()
    result = ReferenceSimulator(graph).run(expected["inputs"], record=True)
    np.testing.assert_allclose(result.outputs["output"], expected["output"], rtol=OUTPUT_RTOL, atol=0)
    assert set(records) == set(graph.nodes)
    spiking = _spiking(graph)
    for name, values in records.items():
        if name in spiking:
            np.testing.assert_array_equal(result.records[name], values, err_msg=name)
        else:
            np.testing.assert_allclose(result.records[name], values, rtol=OUTPUT_RTOL, atol=0, err_msg=name)
    assert all(records[n].any() for n in spiking)  # every spiking layer fires in the fixture
    assert not any(records[n].all() for n in spiking)  # and none is saturated


def test_fixture_membranes_keep_a_margin_from_threshold():
    """Why the bit-exact spike comparisons are portable: no membrane of the fixture's inputs
    comes within MARGIN of its threshold."""
    graph, expected, records = _frozen()
    assert max(float(np.abs(values).max()) for values in records.values()) < 100  # the |I| MARGIN assumes
    margins = spike_margins(graph, records, expected["inputs"])
    assert set(margins) == set(_spiking(graph))
    assert min(margins.values()) > MARGIN, {k: v for k, v in margins.items() if v <= MARGIN}


def test_frozen_export_is_still_what_the_exporter_writes():
    """The exporter's output for the fixture model has not drifted: same nodes, edges, every
    field (padding, stride, groups, shapes, ...) and the metadata; float parameters to 1e-6."""
    frozen, _, _ = _frozen()
    assert_same_graph(_fresh_graph(), frozen, rtol=PARAMETER_RTOL)


def test_fresh_export_reproduces_the_frozen_spikes():
    """Today's export of the fixture model fires exactly the frozen spikes, and not by luck: the
    largest change its recomputed parameters make to any membrane is SAFETY times below the margin."""
    frozen, expected, records = _frozen()
    fresh = _fresh_graph()
    result = ReferenceSimulator(fresh).run(expected["inputs"], record=True)
    for name in _spiking(fresh):
        np.testing.assert_array_equal(result.records[name], records[name], err_msg=name)
    np.testing.assert_allclose(result.outputs["output"], expected["output"], rtol=1e-5, atol=1e-9)
    margins = spike_margins(frozen, records, expected["inputs"])
    sources: dict[str, list[str]] = {}
    for src, dst in frozen.edges:
        sources.setdefault(dst, []).append(src)
    for name in _spiking(fresh):
        if isinstance(fresh.nodes[name], nir.Threshold):
            continue  # fed by spikes only: exact integers
        moved = sum(float(np.abs(result.records[s] - records[s]).max()) for s in sources[name])
        beta = float(units.beta_from_tau(fresh.nodes[name].tau, float(fresh.metadata["dt"])).max())
        # with identical upstream spikes a membrane moves by at most sum_k beta^k = 1/(1-beta) x the current change
        assert moved / (1 - beta) * SAFETY < margins[name], (name, moved, margins[name])
