"""Shared checks on NIR graphs for the tests: field-by-field equality and threshold margins.

`assert_same_graph` compares every field of every node (arrays, ints, strings, shapes, the
node metadata) and the graph metadata, not only the array fields: a changed `padding`,
`stride` or `groups` must fail. Float arrays may be compared with a relative tolerance where
one side was recomputed on another machine (vectorised exp/log differ in the last bits
between instruction sets); everything else is compared exactly.

`spike_margins` says how far every LIF membrane and Threshold input stays from its threshold
on recorded inputs: when that margin is far above what a last-bit change of a parameter can
move a current, the recorded spikes cannot flip on any CPU.
"""

from __future__ import annotations

import dataclasses
import json

import nir
import numpy as np

from spikingmind import units


def _plain(value):
    """NIR values as they read back (numpy scalars, 0-d arrays, bytes) -> comparable Python."""
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        try:
            return json.loads(value)  # the spikingmind metadata is a JSON string
        except json.JSONDecodeError:
            return value
    return value


def assert_same_value(expected, actual, where: str, rtol: float = 0.0) -> None:
    """Recursive equality of NIR field values; float arrays within `rtol` (0: bit for bit)."""
    expected, actual = _plain(expected), _plain(actual)
    if isinstance(expected, dict) or isinstance(actual, dict):
        assert isinstance(expected, dict) and isinstance(actual, dict), f"{where}: {expected!r} != {actual!r}"
        assert set(expected) == set(actual), f"{where}: keys {sorted(expected)} != {sorted(actual)}"
        for key in expected:
            assert_same_value(expected[key], actual[key], f"{where}.{key}", rtol)
        return
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        expected, actual = np.asarray(expected), np.asarray(actual)
        assert expected.shape == actual.shape, f"{where}: shape {expected.shape} != {actual.shape}"
        if np.issubdtype(expected.dtype, np.floating) and rtol > 0:
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0.0, err_msg=where)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=where)
        return
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        assert len(expected) == len(actual), f"{where}: {expected!r} != {actual!r}"
        for index, (e, a) in enumerate(zip(expected, actual)):
            assert_same_value(e, a, f"{where}[{index}]", rtol)
        return
    assert expected == actual, f"{where}: {expected!r} != {actual!r}"


def assert_same_graph(expected: nir.NIRGraph, actual: nir.NIRGraph, rtol: float = 0.0) -> None:
    """Same node names and types, same edges in the same order, every field and the metadata equal."""
    assert set(expected.nodes) == set(actual.nodes), f"nodes {sorted(expected.nodes)} != {sorted(actual.nodes)}"
    assert [tuple(e) for e in expected.edges] == [tuple(e) for e in actual.edges], "edges differ (or their order)"
    for name, node in expected.nodes.items():
        other = actual.nodes[name]
        assert type(node) is type(other), f"{name}: {type(node).__name__} != {type(other).__name__}"
        for field in dataclasses.fields(node):
            assert_same_value(getattr(node, field.name), getattr(other, field.name), f"{name}.{field.name}", rtol)
    assert_same_value(dict(expected.metadata), dict(actual.metadata), "graph.metadata", rtol)


def spike_margins(graph: nir.NIRGraph, records: dict[str, np.ndarray], inputs: np.ndarray,
                  per_decision: bool = False) -> dict[str, float | np.ndarray]:
    """Smallest |membrane - threshold| (LIF, before reset) or |input - threshold| (Threshold)
    per spiking node over every neuron, step and decision of `records` (ReferenceSimulator
    records, (T, B, ...)); `inputs` is the decision input (B, ...) shown at every step.
    With `per_decision`, each node's margins are an array (B,): the smallest per decision."""
    records = dict(records)
    time_steps = next(iter(records.values())).shape[0]
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            records[name] = np.broadcast_to(inputs, (time_steps, *inputs.shape))
    sources: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        sources.setdefault(dst, []).append(src)
    dt = float(np.asarray(graph.metadata["dt"]))
    margins = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.LIF | nir.Threshold):
            continue
        current = sum(records[s].astype(np.float64) for s in sources[name])
        if isinstance(node, nir.Threshold):
            distance = np.abs(current - node.threshold)  # (T, B, ...)
        else:
            beta = units.beta_from_tau(node.tau, dt)
            gain, drive = units.input_gain(node.tau, node.r, dt), units.leak_drive(node.tau, node.v_leak, dt)
            v, distance = np.zeros(current.shape[1:]), np.empty(current.shape)
            for t, step in enumerate(current):
                v = beta * v + gain * step + drive
                distance[t] = np.abs(v - node.v_threshold)
                v = np.where(v > node.v_threshold, node.v_reset, v)
        per_batch = distance.reshape(distance.shape[0], distance.shape[1], -1).min(axis=(0, 2))  # (B,)
        margins[name] = per_batch if per_decision else float(per_batch.min())
    return margins
