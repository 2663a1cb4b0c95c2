"""NeuroBench 2.3.0 on our policies (benchmarks/neurobench_metrics.py, spikingmind/neurobench_adapter.py).

neurobench is imported at the top on purpose: `make venv` installs it, and a missing install
must fail this file, not skip it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import neurobench  # noqa: F401  (fails loudly when the extra is not installed)
import numpy as np
import pytest
import torch

from spikingmind.checkpoint import load_checkpoint
from spikingmind.model import LIF
from spikingmind.neurobench_adapter import (
    DecisionOutputs,
    SnnTorchLIF,
    compare_records,
    run_neurobench,
    with_snntorch_neurons,
)

ROOT = Path(__file__).resolve().parent.parent
METRIC_NAMES = {"Return", "SynapticOperations", "ActivationSparsity", "MembraneUpdates", "Footprint",
                "ConnectionSparsity", "Latency"}


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_neurobench_metrics",
                                                  ROOT / "benchmarks" / "neurobench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def snn_report(snn_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("neurobench") / "snn.json"
    report = load_script().main(["--checkpoint", str(snn_checkpoint), "--episodes", "3", "--latency-calls", "5",
                                 "--batch", "16", "--out", str(out), "--quiet"])
    return report, out


@pytest.fixture(scope="module")
def windows(snn_checkpoint):
    from spikingmind.policy import TorchPolicy
    from spikingmind.rollout import run_episodes
    from spikingmind.seeds import evaluation_seeds

    recorded = []
    run_episodes(TorchPolicy(load_checkpoint(snn_checkpoint)), evaluation_seeds(2, 5), on_decision=recorded.append)
    return np.concatenate(recorded)


def test_script_writes_the_promised_json(snn_report):
    report, out = snn_report
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["env"] == "CartPole-v1" and report["model"] == "snn"
    assert set(report["metrics"]) == METRIC_NAMES
    assert set(report["metrics"]["SynapticOperations"]) == {"Effective_MACs", "Effective_ACs", "Dense"}
    assert report["metrics"]["Return"]["episodes"] == 3
    assert report["metrics"]["Latency"]["n"] == 5 and report["metrics"]["Latency"]["median_ms"] > 0
    assert report["metrics"]["Footprint"] > 0
    # the snnTorch stand-ins make NeuroBench's neuron metrics real measurements
    assert 0.0 < report["metrics"]["ActivationSparsity"] < 1.0 and report["metrics"]["MembraneUpdates"] > 0
    assert report["not_measured"] == {}
    assert set(report["comparison"]) == {"synaptic_operations", "activation_sparsity", "membrane_updates",
                                         "footprint", "connection_sparsity"}
    assert report["protocol"]["decisions_measured"] == report["neurobench"]["snntorch_neurons"]["samples"] > 0
    assert report["equivalence"]["outputs_equal"] and report["equivalence"]["spikes_equal"]


def test_neurobench_as_is_sees_linears_only_and_its_zeros_are_not_measured(snn_report, snn_checkpoint):
    report, _ = snn_report
    as_is = report["neurobench"]["as_is"]
    model = load_checkpoint(snn_checkpoint).model
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert as_is["connection_layers"] == linears and as_is["activation_layers"] == []
    # NeuroBench's own dict says 0.0; ours says "not measured", with the reason
    assert as_is["raw"]["ActivationSparsity"] == 0.0 and as_is["raw"]["MembraneUpdates"] == 0.0
    assert as_is["metrics"]["ActivationSparsity"] is None and as_is["metrics"]["MembraneUpdates"] is None
    assert "no activation module" in as_is["not_measured"]["ActivationSparsity"]
    lifs = [name for name, m in model.named_modules() if isinstance(m, LIF)]
    assert len(report["neurobench"]["snntorch_neurons"]["activation_layers"]) == len(lifs)


def test_neurobench_effective_acs_equal_ours_on_every_layer_both_see(snn_report):
    report, _ = snn_report
    synops = report["comparison"]["synaptic_operations"]
    acs = [r for r in synops["layers"] if r["metric"] == "effective_acs"]
    assert len(acs) == 8  # embed (real-valued input: no ACs), q, k, v, out_proj, fc1, fc2, head
    assert all(r["ours"] > 0 for r in acs if r["layer"] != "embed")  # spikes reached every spike-driven layer
    for r in acs:
        assert r["equal"] and r["neurobench"] == pytest.approx(r["ours"], rel=1e-12), r
    # dense ops and the embedding's MACs agree too: both count the real-valued encoder once per
    # decision (the host computes it once and holds the currents for the T steps)
    for r in synops["layers"]:
        if r["metric"] == "dense_ops" or (r["layer"] == "embed" and r["metric"] == "effective_macs"):
            assert r["equal"] and r["neurobench"] > 0, r
    assert synops["neurobench_layers_sum_to_total"]


def test_total_ac_difference_is_the_mix_and_the_and_gates(snn_report):
    report, _ = snn_report
    synops = report["comparison"]["synaptic_operations"]
    unseen = {u["layer"]: u for u in synops["not_seen_by_neurobench"]}
    assert set(unseen) == {"blocks.0.attn.mix", "blocks.0.attn.kv_and", "blocks.0.attn.qkv_and"}
    total = synops["totals"]["effective_acs"]
    missing = sum(u["effective_acs"] for u in unseen.values())
    assert missing > 0
    assert total["ours"] - total["neurobench"] == pytest.approx(missing, rel=1e-9)
    assert set(total["explained_by"]) == {"causal_mix", "and_gates"}
    assert total["unexplained"] == pytest.approx(0.0, abs=1e-6)
    assert total["neurobench"] == report["metrics"]["SynapticOperations"]["Effective_ACs"]


def test_neurobench_layer_sparsity_equals_ours_on_every_lif_layer(snn_report):
    report, _ = snn_report
    sparsity = report["comparison"]["activation_sparsity"]
    assert len(sparsity["layers"]) == 8
    for layer in sparsity["layers"]:
        assert layer["equal"], layer
    assert sparsity["neurobench"] == pytest.approx(sparsity["ours_lif_layers"], abs=1e-12)


def test_snntorch_stand_ins_give_the_same_outputs_and_spikes(snn_checkpoint, windows):
    model = load_checkpoint(snn_checkpoint, dtype=torch.float64).model
    adapted = with_snntorch_neurons(model)
    assert not any(type(m) is LIF for m in adapted.modules())
    check = compare_records(model, adapted, windows[:40], batch=16)
    assert check["outputs_equal"] and check["spikes_equal"] and check["max_output_difference"] == 0.0
    # the check can fail: one stand-in with a lower threshold fires differently
    stand_in = next(m for m in adapted.modules() if isinstance(m, SnnTorchLIF))
    stand_in.neuron.threshold.fill_(0.5)
    broken = compare_records(model, adapted, windows[:40], batch=16)
    assert not broken["spikes_equal"] and broken["spike_mismatches"]["blocks.0.attn.lif_in"] > 0


class _GRUPolicy(torch.nn.Module):
    """A net with a layer NeuroBench 2.3.0 cannot count: its SynapticOperations raises on nn.GRU."""

    def __init__(self, n_features: int):
        super().__init__()
        self.gru = torch.nn.GRU(n_features, 8, batch_first=True)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, tokens):
        return self.out(self.gru(tokens)[0][:, -1])


def test_a_metric_that_errors_is_null_not_zero():
    torch.manual_seed(0)
    net = _GRUPolicy(5)
    windows = np.random.default_rng(0).normal(size=(12, 4, 5)).astype(np.float32)
    one_batch = run_neurobench(net, windows, batch=12, by_layer=False)
    assert one_batch.raw["SynapticOperations"] == 0.0  # NeuroBench's fallback for a metric that raised
    assert one_batch.metrics["SynapticOperations"] is None
    assert "raised TypeError" in one_batch.not_measured["SynapticOperations"]
    # over several batches NeuroBench leaves a partial count (the GRU dropped after its first failure)
    batches = run_neurobench(net, windows, batch=4, by_layer=False)
    assert batches.raw["SynapticOperations"] != 0.0 and batches.metrics["SynapticOperations"] is None
    assert batches.metrics["Footprint"] > 0 and "Footprint" not in batches.not_measured  # what did work stays


def test_run_neurobench_counts_a_plain_model_without_complaint(snn_checkpoint, windows):
    """The control of the test above: the guard nulls only what raised or saw nothing."""
    model = load_checkpoint(snn_checkpoint, dtype=torch.float64).model
    run = run_neurobench(DecisionOutputs(model), windows[:20], batch=10, by_layer=True)
    assert run.metrics["SynapticOperations"]["Effective_ACs"] > 0
    assert set(run.not_measured) == {"ActivationSparsity", "MembraneUpdates", "ActivationSparsityByLayer"}
    by_layer = sum(v["Effective_ACs"] for v in run.synops_by_layer.values())
    assert by_layer == pytest.approx(run.metrics["SynapticOperations"]["Effective_ACs"], rel=1e-12)


def test_ann_twin_neurobench_dense_macs_equal_the_onnx_count(ann_checkpoint, tmp_path):
    report = load_script().main(["--checkpoint", str(ann_checkpoint), "--episodes", "2", "--latency-calls", "3",
                                 "--max-decisions", "40", "--out", str(tmp_path / "ann.json"), "--quiet"])
    assert report["model"] == "ann" and set(report["metrics"]) == METRIC_NAMES
    assert report["metrics"]["ActivationSparsity"] is None and "ActivationSparsity" in report["not_measured"]
    synops = report["comparison"]["synaptic_operations"]
    dense = [r for r in synops["layers"] if r["metric"] == "dense_ops"]
    assert len(dense) == 6 and all(r["equal"] for r in dense)  # embed, qkv, out_proj, mlp.0, mlp.2, head
    unseen = synops["not_seen_by_neurobench"]
    assert [u["reason_key"] for u in unseen] == ["attention_matmul"]
    total = synops["totals"]["dense_ops"]
    assert total["ours"] - total["neurobench"] == pytest.approx(unseen[0]["dense_ops"], rel=1e-12)
    embed = next(r for r in synops["layers"] if r["layer"] == "embed" and r["metric"] == "effective_macs")
    assert embed["reason_key"] == "zero_inputs" and embed["neurobench"] < embed["ours"]  # tokens are mostly zeros


def test_make_results_renders_the_report_as_one_line(snn_report):
    """scripts/results.py's README line reads the JSON the benchmark writes (names and numbers)."""
    import sys

    spec = importlib.util.spec_from_file_location("results_script_neurobench", ROOT / "scripts" / "results.py")
    results = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = results  # its dataclasses look their module up
    try:
        spec.loader.exec_module(results)
    finally:
        sys.modules.pop(spec.name, None)
    report, out = snn_report
    line = results.neurobench_line(json.loads(out.read_text()))
    acs = report["comparison"]["synaptic_operations"]["totals"]["effective_acs"]
    assert f"Effective_ACs {acs['neurobench']:,.0f} vs ours {acs['ours']:,.0f} ({acs['difference_pct']:+.2f}%" in line
    assert f"on {report['protocol']['decisions_measured']} of these closed-loop decisions" in line
