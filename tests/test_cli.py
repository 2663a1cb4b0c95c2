"""The CLI: every bad input is one clear line and a non-zero exit; nothing on disk is lost."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from spikingmind.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert fragment in result.output.replace("\n", " "), result.output
    assert "Traceback" not in result.output


def test_unknown_env_lists_supported_ones(cartpole_dataset):
    result = invoke("train", "--env", "Pong-v9", "--dataset", cartpole_dataset)
    assert_one_line_error(result, "unknown environment 'Pong-v9'; supported: Acrobot-v1, CartPole-v1")


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(invoke("evaluate", tmp_path / "nope"), "does not exist")


def test_corrupt_checkpoint_is_reported_and_left_in_place(snn_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(snn_checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    assert_one_line_error(invoke("evaluate", broken, "--episodes", "1"), "cannot read weights")
    assert (broken / "model.safetensors").read_bytes() == b"\x00" * 10


def test_dataset_with_wrong_observation_size(cartpole_dataset, tmp_path):
    result = invoke("train", "--env", "Acrobot-v1", "--dataset", cartpole_dataset, "--out", tmp_path / "run")
    assert_one_line_error(result, "obs_dim")
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_bad_mix_string(tmp_path):
    result = invoke("collect", "--env", "CartPole-v1", "--episodes", "2", "--mix", "expert=lots", "--root", tmp_path)
    assert_one_line_error(result, "--mix: weight of 'expert' is not a number")
    assert not any(tmp_path.iterdir())


def test_existing_dataset_and_results_are_kept(cartpole_dataset, datasets_root, snn_checkpoint, tmp_path):
    meta = datasets_root / cartpole_dataset / "spikingmind.json"
    before = meta.read_bytes()
    result = invoke("collect", "--env", "CartPole-v1", "--episodes", "1", "--dataset-id", cartpole_dataset,
                    "--root", datasets_root)
    assert_one_line_error(result, "already exists")
    assert meta.read_bytes() == before
    out = tmp_path / "eval.json"
    out.write_text("precious")
    assert_one_line_error(invoke("evaluate", snn_checkpoint, "--episodes", "1", "--json", out), "already exists")
    assert out.read_text() == "precious"


def test_evaluate_writes_the_documented_json(snn_checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    result = invoke("evaluate", snn_checkpoint, "--episodes", "2", "--seed", "3", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("env_id", "model", "mean_return", "std_return", "returns", "spikes_per_decision", "spike_rate"):
        assert key in data
    assert data["model"] == "snn" and len(data["returns"]) == 2
    assert set(data["spike_rate"]) >= {"blocks.0.attn.qkv_and", "head.lif"}
    assert all(0.0 <= rate <= 1.0 for rate in data["spike_rate"].values())


def test_evaluate_with_the_event_backend_reports_its_verification(snn_checkpoint, tmp_path):
    out = tmp_path / "event.json"
    result = invoke("evaluate", snn_checkpoint, "--backend", "event", "--episodes", "2", "--seed", "3", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["backend"] == "event" and data["model"] == "snn" and len(data["returns"]) == 2
    assert data["verification"]["action_mismatches"] == 0 and data["spikes_per_decision"] is None


def test_event_backend_needs_a_spiking_checkpoint(ann_checkpoint, tmp_path):
    assert_one_line_error(invoke("evaluate", ann_checkpoint, "--backend", "event"), "not the ANN twin")
    nir_file = tmp_path / "model.nir"
    nir_file.write_bytes(b"")
    assert_one_line_error(invoke("evaluate", nir_file, "--backend", "event"),
                          "--backend event runs a spiking DT checkpoint folder")


def test_evaluate_backend_takes_exactly_the_registry_names(snn_checkpoint, tmp_path):
    from spikingmind.export import BACKENDS, load_backend

    assert set(BACKENDS) == {"pytorch", "event", "reference", "onnxruntime", "lava", "loihi-emulation"}
    assert all(callable(load_backend(name)) for name in BACKENDS)  # every entry names a real loader
    assert_one_line_error(invoke("evaluate", snn_checkpoint, "--backend", "nir"),
                          "--backend 'nir': choose from pytorch, event, reference, onnxruntime, lava, loihi-emulation")
    assert_one_line_error(invoke("evaluate", snn_checkpoint, "--backend", "onnxruntime"),
                          "--backend onnxruntime runs a .onnx graph, not")
    assert_one_line_error(invoke("evaluate", snn_checkpoint, "--backend", "lava"),
                          "--backend lava runs a Lava bundle folder (from `export --target lava`), not")
    onnx_file = tmp_path / "ann.onnx"
    onnx_file.write_bytes(b"")
    assert_one_line_error(invoke("evaluate", onnx_file, "--backend", "loihi-emulation"),
                          "--backend loihi-emulation runs a .nir graph, a Lava bundle folder or a checkpoint folder, not")


def test_reference_backend_runs_a_checkpoint_exported_in_memory(snn_checkpoint, tmp_path):
    out = tmp_path / "reference.json"
    result = invoke("evaluate", snn_checkpoint, "--backend", "reference", "--episodes", "1", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["backend"] == "nir-reference" and data["spikes_per_decision"] > 0


def test_help_lists_evaluate_backends():
    """--backend's help is generated from the registry: every name with its description."""
    from spikingmind.export import BACKENDS

    result = runner.invoke(app, ["evaluate", "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    for name, backend in BACKENDS.items():
        assert f"{name}: {' '.join(backend.description.split())}" in text, name


def test_unknown_export_target_lists_targets(snn_checkpoint, tmp_path):
    assert_one_line_error(invoke("export", snn_checkpoint, "--target", "tflite", "-o", tmp_path / "x"),
                          "choose from nir, onnx, lava")


def test_decision_only_is_an_onnx_option(snn_checkpoint, tmp_path):
    result = invoke("export", snn_checkpoint, "--target", "nir", "--decision-only", "-o", tmp_path / "x.nir")
    assert_one_line_error(result, "--decision-only applies to --target onnx, not nir")
    assert not (tmp_path / "x.nir").exists()


def test_help_lists_export_targets():
    """--help shows every registered target with the registry's own description (not the
    command's docstring, which names targets too)."""
    from spikingmind.export import TARGETS

    result = runner.invoke(app, ["export", "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # rich's box, wrapping undone
    assert len(TARGETS) >= 3
    for name, (_, description) in TARGETS.items():
        assert f"{name}: {' '.join(description.split())}" in text, name


@pytest.mark.parametrize("content, fragment", [("[train\nsteps=", "invalid TOML"), ("[train]\nsteps = 0\n", "train.steps")])
def test_bad_config_file(cartpole_dataset, tmp_path, content, fragment):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = invoke("train", "--dataset", cartpole_dataset, "--config", config, "--out", tmp_path / "run")
    assert_one_line_error(result, fragment)
