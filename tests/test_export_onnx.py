"""`export --target onnx`: the ANN twin and the spiking DT run in ONNX Runtime as in PyTorch, with metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spikingmind.checkpoint import load_checkpoint
from spikingmind.errors import CheckpointError, ExportError, GraphError, RunExistsError
from spikingmind.export import export as export_target
from spikingmind.export.onnx import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    OnnxPolicy,
    verify_snn_against_torch,
    with_spike_outputs,
)
from spikingmind.model import ModelConfig
from spikingmind.policy import TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.verification import sample_windows
from tests.support.checkpoints import CARTPOLE_OBS_STD, untrained

ENV = "CartPole-v1"


def _save_tiny(path, kind: str, n_blocks: int = 1):
    return untrained(path, ModelConfig(kind=kind, width=16, n_blocks=n_blocks, context_length=4, time_steps=2), ENV,
                     obs_mean=(0.0, 0.1, 0.0, -0.1), obs_std=CARTPOLE_OBS_STD)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    ckpt_dir = _save_tiny(root / "ann", "ann")
    path = export_target("onnx", ckpt_dir, root / "ann.onnx")
    return ckpt_dir, path


def _windows(ckpt, n, seed):
    return sample_windows(ckpt.layout, ckpt.norm, ckpt.spec, n, seed=seed)


def test_export_passes_checker_and_records_opset_and_metadata(exported):
    ckpt_dir, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [("", OPSET)]
    assert not any(n.op_type in ("Shape", "Gather") for n in model.graph.node)  # clean, shape-free graph
    meta = json.loads({p.key: p.value for p in model.metadata_props}["spikingmind"])
    ckpt = load_checkpoint(ckpt_dir)
    assert meta["onnx"]["opset"] == OPSET
    assert meta["env"]["env_id"] == ENV
    assert meta["token_layout"] == ckpt.meta["token_layout"]
    assert meta["normalization"] == ckpt.meta["normalization"]
    assert meta["model"]["kind"] == "ann"
    assert meta["decode"]["token_index"] == ckpt.layout.n_tokens - 2
    assert meta["decode"]["action"] == "argmax"
    assert meta["time_steps"] is None and "dt" not in meta
    assert meta["dataset"]["id"] == "synthetic"
    assert meta["spikingmind_version"]


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch_matches_pytorch(exported, batch):
    ckpt_dir, path = exported
    ckpt = load_checkpoint(ckpt_dir)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == INPUT_NAME
    rng = np.random.default_rng(batch)
    for windows in (rng.normal(size=(batch, ckpt.layout.n_tokens, ckpt.layout.n_features)).astype(np.float32),
                    _windows(ckpt, batch, seed=batch)):
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]
        with torch.inference_mode():
            expected = ckpt.model(torch.from_numpy(windows)).numpy()
        assert actual.shape == (batch, ckpt.layout.n_tokens, ckpt.model.n_out)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_policy_acts_like_torch_policy(exported):
    ckpt_dir, path = exported
    ckpt = load_checkpoint(ckpt_dir)
    onnx_policy, torch_policy = OnnxPolicy(path, intra_op_threads=2), TorchPolicy(ckpt)
    assert onnx_policy.layout == ckpt.layout and onnx_policy.norm == ckpt.norm and onnx_policy.spec == ckpt.spec
    windows = _windows(ckpt, 32, seed=3)
    np.testing.assert_allclose(onnx_policy.outputs(windows), torch_policy.outputs(windows), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(onnx_policy.act(windows), torch_policy.act(windows))


@pytest.mark.parametrize("export", ["exported", "exported_snn"])  # the ANN twin and the spiking DT
def test_closed_loop_returns_identical(export, request):
    ckpt_dir, path = request.getfixturevalue(export)
    seeds = [11, 12]
    onnx_run = run_episodes(OnnxPolicy(path), seeds, batch=2)
    torch_run = run_episodes(TorchPolicy(load_checkpoint(ckpt_dir)), seeds, batch=2)
    assert onnx_run.returns == torch_run.returns and onnx_run.lengths == torch_run.lengths


@pytest.fixture(scope="module")
def exported_snn(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-snn")
    ckpt_dir = _save_tiny(root / "snn", "snn")
    return ckpt_dir, export_target("onnx", ckpt_dir, root / "snn.onnx")


def test_spiking_checkpoint_exports_its_inference_graph(exported_snn):
    ckpt_dir, path = exported_snn
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"Greater", "Where", "And", "MatMul"} <= ops and not ops & {"BatchNormalization", "Loop", "Scan"}
    meta = json.loads({p.key: p.value for p in model.metadata_props}["spikingmind"])
    ckpt = load_checkpoint(ckpt_dir)
    assert meta["model"]["kind"] == "snn" and meta["graph"]["model"] == "snn"
    assert meta["time_steps"] == meta["graph"]["time_steps"] == ckpt.config.time_steps == 2
    assert meta["graph"]["inference_only"] is True and "nir_version" not in meta
    check = meta["verification"]
    assert check["action_mismatches"] == 0
    assert check["spike_flip_fraction"] <= check["criteria"]["spike_flip_fraction_at_most"]
    assert check["flip_free_windows"] >= check["criteria"]["flip_free_windows_at_least"]
    assert check["flip_free_windows_outside_tolerance"] == 0
    assert check["max_abs_output_error_flip_free"] <= check["criteria"]["output_tolerance"]


@pytest.mark.parametrize("batch", [1, 5])
def test_snn_spikes_and_actions_match_pytorch(exported_snn, batch):
    ckpt_dir, path = exported_snn
    ckpt = load_checkpoint(ckpt_dir)
    debug, names = with_spike_outputs(onnx.load(str(path)))
    session = ort.InferenceSession(debug.SerializeToString(), providers=["CPUExecutionProvider"])
    windows = _windows(ckpt, batch, seed=10 + batch)
    windows[:, :, 1:5] *= 4.0  # larger observations: more spikes than the tiny model's defaults give
    record = {}
    with torch.inference_mode():
        expected = ckpt.model(torch.from_numpy(windows), record).numpy()
    actual, *spikes = session.run([OUTPUT_NAME, *names], {INPUT_NAME: windows})
    assert set(names) == set(record)
    assert sum(int(s.sum()) for s in spikes) > 0  # the comparison is not between two silent networks
    for name, ort_spikes in zip(names, spikes):
        np.testing.assert_array_equal(ort_spikes, record[name].numpy().astype(bool), err_msg=name)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    policy = OnnxPolicy(path)
    np.testing.assert_array_equal(policy.act(windows), TorchPolicy(ckpt).act(windows))
    assert policy.model_kind == "snn" and policy.spike_stats()["spikes_per_decision"] is None


def test_snn_verification_catches_a_wrong_graph(exported_snn):
    ckpt_dir, path = exported_snn
    ckpt = load_checkpoint(ckpt_dir)
    model = onnx.load(str(path))
    readout = next(i for i in model.graph.initializer if i.name.startswith("head.readout.bias"))
    readout.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(readout) + 0.1, readout.name))
    with pytest.raises(ExportError, match="windows where no spike differs"):  # no flip excuses a moved output
        verify_snn_against_torch(model, ckpt.model, ckpt, "wrong")


def test_existing_output_needs_force(exported, tmp_path):
    ckpt_dir, _ = exported
    out = tmp_path / "ann.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(RunExistsError, match="--force"):
        export_target("onnx", ckpt_dir, out)
    assert out.read_bytes() == b"keep me"


def test_corrupt_file_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx model\xff" * 10)
    with pytest.raises(GraphError, match="bad.onnx.*not a readable ONNX model"):
        OnnxPolicy(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        OnnxPolicy(tmp_path / "missing.onnx")


def test_missing_or_corrupt_metadata_gives_clear_error(exported, tmp_path):
    _, path = exported
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save_model(model, str(tmp_path / "plain.onnx"))
    with pytest.raises(GraphError, match="plain.onnx.*no 'spikingmind' metadata"):
        OnnxPolicy(tmp_path / "plain.onnx")
    entry = model.metadata_props.add()
    entry.key, entry.value = "spikingmind", "{not json"
    onnx.save_model(model, str(tmp_path / "broken.onnx"))
    with pytest.raises(GraphError, match="broken.onnx.*corrupt spikingmind metadata"):
        OnnxPolicy(tmp_path / "broken.onnx")


@pytest.mark.parametrize("kind,n_blocks", [("ann", 2), ("snn", 1), ("snn", 2)])
def test_decision_only_graph_acts_like_the_full_one(tmp_path, kind, n_blocks):
    """--decision-only: output (batch, n_out), the values the full graph gives at the decision token."""
    ckpt_dir = _save_tiny(tmp_path / kind, kind, n_blocks)
    full = OnnxPolicy(export_target("onnx", ckpt_dir, tmp_path / "full.onnx"))
    path = export_target("onnx", ckpt_dir, tmp_path / "decision.onnx", decision_only=True)
    policy = OnnxPolicy(path)
    ckpt = load_checkpoint(ckpt_dir)
    windows = _windows(ckpt, 7, seed=5)
    windows[:, :, 1:5] *= 4.0  # more spikes than the tiny model's defaults give
    raw = policy.session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]
    assert raw.shape == (7, ckpt.model.n_out)
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["spikingmind"])
    assert meta["decode"]["shape"] == ["batch", ckpt.model.n_out] and meta["decode"]["decision_only"]
    np.testing.assert_allclose(policy.outputs(windows), full.outputs(windows), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(policy.act(windows), TorchPolicy(ckpt).act(windows))
    if kind == "snn":
        assert meta["verification"]["action_mismatches"] == 0


def test_energy_report_tells_the_decision_only_baseline_from_the_full_one(tmp_path):
    """Each accounting takes its own ANN graph: the files say which one they hold, and a
    checkpoint gives both (the same counts as its exported files)."""
    from spikingmind.workflows.energy_report import baseline_counts
    from spikingmind.errors import ConfigError

    ckpt_dir = _save_tiny(tmp_path / "ann", "ann")
    decision = export_target("onnx", ckpt_dir, tmp_path / "decision.onnx", decision_only=True)
    full = export_target("onnx", ckpt_dir, tmp_path / "full.onnx")
    counts = baseline_counts([full, decision])
    assert set(counts) == {"full_window", "decision_only"}
    assert 0 < counts["decision_only"].total("macs") < counts["full_window"].total("macs")
    from_checkpoint = baseline_counts([ckpt_dir])
    for name in counts:
        assert from_checkpoint[name].total("macs") == counts[name].total("macs")
    with pytest.raises(ConfigError, match="decision.onnx: a second decision-only baseline"):
        baseline_counts([decision, decision])


def test_a_wide_streaming_twin_exports_within_tolerance_at_late_timesteps(tmp_path):
    """A streaming twin's sinusoids reach ~1000 rad at the end of a long episode (and the
    verification's random windows go beyond): its step graph still matches PyTorch within
    ANN_OUTPUT_TOLERANCE, so the frequencies must be the same numbers in both runtimes."""
    cfg = ModelConfig(kind="ann", width=64, n_blocks=1, context_length=5, history="stream")
    ckpt_dir = untrained(tmp_path / "ann", cfg, ENV, obs_mean=(0.0, 0.1, 0.0, -0.1), obs_std=CARTPOLE_OBS_STD)
    path = export_target("onnx", ckpt_dir, tmp_path / "step.onnx")  # raises ExportError above the tolerance
    meta = json.loads({p.key: p.value for p in onnx.load(path).metadata_props}["spikingmind"])
    assert meta["streaming"]["inputs"]["keys"][-1] == 64  # the step graph, with its cache
