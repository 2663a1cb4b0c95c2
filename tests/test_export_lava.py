"""Lava export: real lava-nc 0.10 runs in the Python 3.10 sidecar against the reference.

Skipped only when this machine has no Python 3.10 interpreter at all; when one exists but
the sidecar venv is missing, the tests fail (run `make lava-env`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import nir
import numpy as np
import pytest

from spikingmind.errors import LavaError, RunExistsError, UnsupportedModuleError
from spikingmind.export import lava, lava_env
from spikingmind.export.lava.host import host_currents, host_data, lava_records
from spikingmind.export.lava_sidecar.plan import emulate
from spikingmind.export.nir import NIRPolicy
from spikingmind.export.reference import ReferenceSimulator
from tests.support.graphs import decision_inputs, dt_graph
from tests.support.hostile import processes_with

BLOCKS = 2


@pytest.fixture(scope="module")
def graph() -> nir.NIRGraph:
    return dt_graph(channels=8, tokens=6, blocks=BLOCKS, time_steps=4, seed=3)


@pytest.fixture(scope="module")
def bundle(graph, tmp_path_factory) -> Path:
    return lava.export_lava_bundle(graph, tmp_path_factory.mktemp("lava") / "bundle")


@pytest.fixture
def tagged(monkeypatch) -> str:
    """A marker in the sidecar's environment, inherited by every Lava child process."""
    tag = f"spikingmind-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("SPIKINGMIND_LAVA_TEST_TAG", tag)
    return tag


# ---- plan (NumPy only): delay balancing and offsets ---------------------------------------


def test_plan_emulation_matches_reference_with_documented_latency(graph):
    plan, host_terms, _ = lava.build_plan(graph)
    # lif_in 0, q/k/v 1, kv_and 2, kv_lif 3, qkv_and 4, mlp.lif_in 5, hidden 6 per block
    assert plan.population("head.lif").offset == 7 * BLOCKS
    assert plan.readout.offset(plan) == 7 * BLOCKS + 1 == plan.latency
    inputs = decision_inputs(graph, 3)
    reference = ReferenceSimulator(graph).run(inputs, record=True)
    n_steps = plan.total_steps(3)
    data = host_data(plan, host_currents(graph, host_terms, inputs), n_steps, fixed=False)
    traces, _ = emulate(plan, data, n_steps, fixed=False)
    records = lava_records(plan, {("pop/" + k if k != "readout" else k): v for k, v in traces.items()}, 3, False)
    for name, got in records.items():
        want = reference.records[name] if name in reference.records else reference.outputs[name]
        np.testing.assert_array_equal(got, want, err_msg=name)


# ---- real Lava ------------------------------------------------------------------------------


def test_lava_float_matches_reference_and_fixed_matches_emulation(lava_python, graph, bundle):
    inputs = decision_inputs(graph, 4)
    agreement = lava.verify_bundle(bundle, inputs, timeout=120)
    spiking = {n for n, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.Threshold))}
    assert {row.node for row in agreement.layers} == spiking | {"output"}
    for row in agreement.layers:
        assert row.float_vs_reference == 0, agreement.to_text()
        assert row.fixed_vs_emulation == 0, agreement.to_text()
    assert sum(row.total for row in agreement.layers if row.kind != "output") > 0
    assert agreement.action_float_vs_reference == 1.0
    assert agreement.output_max_abs_float == 0.0  # dyadic weights: every sum is exact
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["output_latency_steps"] == agreement.latency_steps == 7 * BLOCKS + 1


def test_lava_policy_acts_like_the_reference_policy(lava_python, graph, bundle):
    reference = NIRPolicy(graph)
    with lava.LavaPolicy(bundle, timeout=120) as policy:
        for seed, batch in ((5, 3), (6, 3), (7, 1)):  # the second call reuses the network
            tokens = decision_inputs(graph, batch, seed=seed).transpose(0, 2, 1)
            np.testing.assert_array_equal(policy.outputs(tokens), reference.outputs(tokens))
            np.testing.assert_array_equal(policy.act(tokens), reference.act(tokens))
        assert policy.timings[1]["rebuilt"] is False


def test_exception_inside_a_lava_process_is_a_clear_error_and_leaves_no_process(lava_python, graph, tagged,
                                                                              tmp_path):
    plan, host_terms, _ = lava.build_plan(graph)
    broken = "b0.attn.kv_lif"
    plan.arrays[f"bias/{broken}"] = np.zeros(plan.population(broken).size + 1)  # wrong length
    plan.save(tmp_path)
    inputs = decision_inputs(graph, 1)
    n_steps = plan.total_steps(1)
    data = host_data(plan, host_currents(graph, host_terms, inputs), n_steps, fixed=False)
    start = time.monotonic()
    with pytest.raises(LavaError, match="exit code.*broadcast"):
        lava.run_sidecar(tmp_path, "float", data, n_steps, timeout=60)
    assert time.monotonic() - start < 60
    assert processes_with(tagged) == []


def test_hung_sidecar_is_killed_at_the_timeout(lava_python, bundle, graph, tagged, monkeypatch):
    monkeypatch.setenv("SPIKINGMIND_LAVA_SIDECAR_SLEEP", "300")
    tokens = decision_inputs(graph, 1).transpose(0, 2, 1)
    start = time.monotonic()
    with lava.LavaPolicy(bundle, timeout=3) as policy, pytest.raises(LavaError, match="timed out after 3 s"):
        policy.act(tokens)
    assert time.monotonic() - start < 20
    assert processes_with(tagged) == []
    with pytest.raises(LavaError, match="timed out"):
        lava.verify_bundle(bundle, decision_inputs(graph, 1), timeout=3, modes=("float",))
    assert processes_with(tagged) == []


def test_bad_lava_python_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKINGMIND_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(LavaError, match="does not run as a Python interpreter.*Python 3.10"):
        lava_env.find_lava_python()
    monkeypatch.setenv("SPIKINGMIND_LAVA_PYTHON", os.sys.executable)  # the 3.11 main venv
    with pytest.raises(LavaError, match=r"is Python 3\.11, Lava needs 3\.10"):
        lava_env.find_lava_python()


# ---- bundle ---------------------------------------------------------------------------------


def test_bundle_contents_and_overwrite_rules(graph, bundle, lava_python):
    assert sorted(p.name for p in bundle.iterdir()) == [
        "lava_plan.json", "manifest.json", "model.nir", "params_fixed.npz", "params_float.npz"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    # the Lava the bundle is written for is the Lava the sidecar really runs
    installed = subprocess.run([str(lava_python), "-c", "import importlib.metadata as m; print(m.version('lava-nc'))"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert manifest["lava_nc_version"] == installed and manifest["time_steps"] == 4
    assert manifest["quantization_report"] == []
    with np.load(bundle / "params_fixed.npz") as fixed:
        for key in fixed.files:
            if key.startswith("w_mant/"):
                assert fixed[key].dtype == np.int32 and np.abs(fixed[key]).max() <= 256
    with pytest.raises(RunExistsError):
        lava.export_lava_bundle(graph, bundle)
    lava.export_lava_bundle(graph, bundle, force=True)


def test_unsupported_node_fails_before_anything_is_written(graph, tmp_path):
    nodes = dict(graph.nodes)
    nodes["head.lif"] = nir.LI(tau=np.full((8, 6), 2e-3), r=np.ones((8, 6)), v_leak=np.zeros((8, 6)))
    bad = nir.NIRGraph(nodes=nodes, edges=graph.edges, metadata=graph.metadata, type_check=False)
    with pytest.raises(UnsupportedModuleError, match="head.lif.*LI"):
        lava.export_lava_bundle(bad, tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []
