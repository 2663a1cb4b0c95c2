"""Hostile inputs and faults (issue #16): what a careless user or a malicious file sends to every
command. One class per class of failure in the issue; every refused command must exit with
code 2, print one `error:` line naming the file or the field, and leave every file that was
there before byte for byte as it was (`tests/support/hostile.py`).

The fault test that kills `evaluate --backend lava` is `tests/test_faults_lava.py`; the fuzz
test over `.nir` metadata and config values is `tests/test_fuzz_inputs.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import textwrap
import time
import uuid
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from spikingmind.io import atomic_dir, json_text, remove_stale_temps
from tests.support.checkpoints import tiny_train_config
from tests.support.hostile import assert_kept, assert_refused, dead_pid, invoke, processes_with, snapshot

CONFIG = "run.toml"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, snn_checkpoint, ann_checkpoint):
    """Read-only originals: the SNN's model.nir, the ANN's ann.onnx, a Lava bundle (not run)."""
    from spikingmind.export import export
    from spikingmind.export.lava import export_lava_bundle

    root = tmp_path_factory.mktemp("hostile-exports")
    graph = export("nir", snn_checkpoint, root / "model.nir")
    onnx = export("onnx", ann_checkpoint, root / "ann.onnx")
    bundle = export_lava_bundle(graph, root / "bundle")
    return {"nir": graph, "onnx": onnx, "bundle": bundle}


@pytest.fixture
def ck(tmp_path, snn_checkpoint) -> Path:
    """A copy of the trained tiny spiking DT the test may damage."""
    return Path(shutil.copytree(snn_checkpoint, tmp_path / "ck"))


@pytest.fixture
def graph_file(tmp_path, exported) -> Path:
    return Path(shutil.copy(exported["nir"], tmp_path / "model.nir"))


def rewrite_nir(path: Path, top: dict | None = None, **spikingmind_fields) -> Path:
    """Change the metadata of a .nir file: top-level keys (`time_steps`) and fields of its
    spikingmind JSON (dotted paths as keyword arguments with '__' for '.')."""
    graph = nir.read(path, type_check=False)
    metadata = dict(graph.metadata)
    meta = json.loads(str(np.asarray(metadata["spikingmind"]).item()) if not isinstance(
        metadata["spikingmind"], str) else metadata["spikingmind"])
    for key, value in spikingmind_fields.items():
        *parents, leaf = key.split("__")
        target = meta
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    metadata["spikingmind"] = json.dumps(meta)
    metadata.update(top or {})
    graph.metadata = metadata
    path.unlink()
    nir.write(path, graph)
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / CONFIG
    path.write_text(textwrap.dedent(text))
    return path


def tiny_config(tmp_path: Path, dataset: str, **train) -> Path:
    """A TOML config of the tiny training run, with `train` values (TOML literals) replaced."""
    cfg = tiny_train_config(dataset).to_dict()
    model = cfg.pop("model")
    values = {k: v for k, v in cfg.items() if v is not None and k not in ("env_id", "dataset")}
    lines = ["[train]"] + [f"{k} = {train.pop(k) if k in train else json.dumps(v)}" for k, v in values.items()]
    lines += [f"{k} = {v}" for k, v in train.items() if not k.startswith("model.")]
    lines += ["[model]"] + [f"{k} = {train.get('model.' + k, json.dumps(list(v) if isinstance(v, tuple) else v))}"
                            for k, v in model.items() if k != "kind"]
    return write_config(tmp_path, "\n".join(lines) + "\n")


def train_args(cfg: Path, dataset: str, out: Path, *more):
    return ("train", "--env", "CartPole-v1", "--model", "snn", "--dataset", dataset, "--config", cfg, "--out", out,
            *more)


def interrupted_train(monkeypatch, *args) -> None:
    """`train *args`, interrupted (Ctrl-C) right after its first resume/ save: exit 130, one line."""
    import spikingmind.train as train_module

    real = train_module.evaluate_and_save

    def save_then_interrupt(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "evaluate_and_save", save_then_interrupt)
        assert_refused(invoke(*args), "interrupted", exit_code=130)


# ---------------------------------------------------------------------------- 1. orphans


class TestOrphans:
    """Item 1: nothing of a command survives it (the SIGKILL/SIGTERM cases: test_faults_lava.py)."""

    def test_a_probe_that_times_out_leaves_no_grandchild(self, tmp_path, monkeypatch, ck):
        marker = f"spikingmind-probe-{uuid.uuid4().hex}"
        wrapper = tmp_path / "python3.10"  # an interpreter that is a wrapper script, as pyenv's shims are
        wrapper.write_text(f"#!/bin/sh\nexport MARKER={marker}\nsleep 300 &\nsleep 300\n")
        wrapper.chmod(0o755)
        monkeypatch.setenv("SPIKINGMIND_LAVA_PYTHON", str(wrapper))
        monkeypatch.setattr("spikingmind.export.lava_env.PROBE_TIMEOUT_S", 1.0)
        before = snapshot(tmp_path)
        start = time.monotonic()
        result = invoke("export", ck, "--target", "lava", "-o", tmp_path / "bundle")
        assert_refused(result, f"SPIKINGMIND_LAVA_PYTHON={wrapper}", "does not run as a Python interpreter")
        assert time.monotonic() - start < 20
        assert processes_with(marker) == []
        assert_kept(before, tmp_path)
        assert not (tmp_path / "bundle").exists()

    def test_scratch_folders_of_dead_owners_are_removed_and_live_ones_kept(self, tmp_path, monkeypatch):
        from spikingmind.export.lava.sidecar import remove_stale_scratch

        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        dead = tmp_path / f"spikingmind-lava-serve-{dead_pid()}-abc123"
        live = tmp_path / f"spikingmind-lava-plan-{os.getpid()}-def456"
        foreign = tmp_path / "spikingmind-lava-old-style"  # no pid in the name: not ours to judge
        for folder in (dead, live, foreign):
            (folder / "sinks").mkdir(parents=True)
        remove_stale_scratch()
        assert not dead.exists() and live.exists() and foreign.exists()


# ---------------------------------------------------------------------------- 2. confident wrong answers


class TestConfidentWrongAnswers:
    """Item 2: a number that cannot be right is refused, never turned into a result with exit 0."""

    @pytest.mark.parametrize("payload", [b"", b"this is not an ONNX model\x00\xff"])
    def test_an_empty_or_garbage_onnx_baseline_is_an_error_not_zero_picojoules(self, tmp_path, graph_file, payload):
        baseline = tmp_path / "zero.onnx"
        baseline.write_bytes(payload)
        before = snapshot(tmp_path)
        result = invoke("energy-report", graph_file, "--baseline", baseline, "--episodes", "1",
                        "--json", tmp_path / "energy.json")
        assert_refused(result, str(baseline))
        assert_kept(before, tmp_path)
        assert not (tmp_path / "energy.json").exists()

    def test_json_output_is_always_valid_json(self):
        text = json_text({"ratio": float("inf"), "rates": [1.0, float("nan")], "ok": np.float32(0.5)})

        def refuse(token):
            raise ValueError(token)

        data = json.loads(text, parse_constant=refuse)  # NaN / Infinity tokens would raise here
        assert data == {"ratio": None, "rates": [1.0, None], "ok": 0.5,
                        "non_finite": {"ratio": "inf", "rates[1]": "nan"}}

    @pytest.mark.parametrize("train, model, field", [
        ({"lr": "inf"}, {}, "train.lr"),
        ({"grad_clip": "nan"}, {}, "train.grad_clip"),
        ({}, {"threshold": "nan"}, "model.threshold"),
        ({}, {"mix_decay_init": "[2.0, -1.0]"}, "model.mix_decay_init"),
        ({"steps": "4.7"}, {}, "train.steps"),
        ({"steps": "true"}, {}, "train.steps"),
    ])
    def test_a_non_finite_or_mistyped_training_value_is_refused_before_training(
            self, tmp_path, cartpole_dataset, train, model, field):
        cfg = tiny_config(tmp_path, cartpole_dataset, **train, **{f"model.{k}": v for k, v in model.items()})
        before = snapshot(tmp_path)
        result = invoke(*train_args(cfg, cartpole_dataset, tmp_path / "run"))
        assert_refused(result, str(cfg), field)
        assert_kept(before, tmp_path)
        assert not (tmp_path / "run").exists()

    @pytest.mark.parametrize("lr, what", [("1e8", "is no longer finite"), ("1e38", "the optimizer step overflowed")])
    def test_training_that_diverges_stops_at_that_step_and_saves_nothing(self, tmp_path, cartpole_dataset, lr, what):
        cfg = tiny_config(tmp_path, cartpole_dataset, lr=lr, warmup_steps="0")  # finite, but explodes
        before = snapshot(tmp_path)
        result = invoke(*train_args(cfg, cartpole_dataset, tmp_path / "run"))
        assert_refused(result, "training diverged at step", what, "lower train.lr")
        assert_kept(before, tmp_path)
        assert not (tmp_path / "run" / "checkpoint").exists() and not (tmp_path / "run" / "resume").exists()

    @pytest.mark.parametrize("command", [
        ("evaluate", "{ck}", "--episodes", "1"),
        ("evaluate", "{ck}", "--backend", "event", "--episodes", "1"),
        ("finetune", "{ck}", "--episodes", "8", "--out", "{tmp}/ft"),
        ("export", "{ck}", "--target", "nir", "-o", "{tmp}/model.nir"),
    ])
    def test_a_checkpoint_of_nans_is_refused_by_every_command(self, tmp_path, ck, command):
        weights = load_file(str(ck / "model.safetensors"))
        name = next(n for n in sorted(weights) if n.endswith("linear.weight"))
        weights[name] = torch.full_like(weights[name], float("nan"))
        save_file(weights, str(ck / "model.safetensors"))
        before = snapshot(tmp_path)
        result = invoke(*(part.format(ck=ck, tmp=tmp_path) for part in command))
        assert_refused(result, str(ck / "model.safetensors"), f"tensor '{name}' holds NaN")
        assert_kept(before, tmp_path)
        assert not (tmp_path / "ft").exists() and not (tmp_path / "model.nir").exists()

    def test_obs_std_of_zeros_in_a_checkpoint_is_refused(self, tmp_path, ck):
        meta = json.loads((ck / "checkpoint.json").read_text())
        meta["normalization"]["obs_std"] = [0.0] * 4
        (ck / "checkpoint.json").write_text(json.dumps(meta))
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", ck, "--episodes", "1"), str(ck / "checkpoint.json"),
                       "normalization.obs_std must be positive")
        assert_kept(before, tmp_path)

    def test_obs_std_of_zeros_in_a_graph_is_refused(self, tmp_path, graph_file):
        rewrite_nir(graph_file, normalization__obs_std=[0.0] * 4)
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", graph_file, "--episodes", "1"), str(graph_file), "normalization.obs_std")
        assert_kept(before, tmp_path)

    @pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
    def test_a_non_finite_target_return_is_refused(self, tmp_path, ck, value):
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", ck, "--episodes", "1", "--target-return", value),
                       "--target-return must be a finite number")
        assert_kept(before, tmp_path)

    def test_a_profile_constant_of_1e308_is_refused(self, tmp_path, graph_file):
        from spikingmind.energy.profiles import profiles_dir

        profile = tmp_path / "huge.toml"
        text = (profiles_dir() / "loihi.toml").read_text()
        key = next(line.split(".", 1)[1].strip("]") for line in text.splitlines() if line.startswith("[constants."))
        head, rest = text.split(f"[constants.{key}]", 1)
        rest = rest.replace(rest.split("value =", 1)[1].split("\n", 1)[0], " 1e308", 1)
        profile.write_text(f"{head}[constants.{key}]{rest}")
        before = snapshot(tmp_path)
        assert_refused(invoke("energy-report", graph_file, "--profile", profile, "--episodes", "1"),
                       f"{profile}: constants.{key}", "1e+308")
        assert_kept(before, tmp_path)


# ---------------------------------------------------------------------------- 3. lost files


class TestLostFiles:
    """Item 3: an output never destroys an input or another output; --force replaces atomically."""

    def test_evaluate_json_onto_its_own_graph_is_refused(self, tmp_path, graph_file):
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", graph_file, "--json", graph_file, "--force", "--episodes", "1"),
                       f"--json {graph_file} would overwrite the input")
        assert_kept(before, tmp_path)

    def test_energy_report_plot_onto_its_baseline_is_refused(self, tmp_path, graph_file, exported):
        baseline = Path(shutil.copy(exported["onnx"], tmp_path / "a.onnx"))
        before = snapshot(tmp_path)
        assert_refused(invoke("energy-report", graph_file, "--baseline", baseline, "--plot", baseline, "--force"),
                       f"--plot {baseline} would overwrite the input")
        assert_kept(before, tmp_path)

    def test_export_into_its_own_checkpoint_is_refused(self, tmp_path, ck):
        before = snapshot(tmp_path)
        assert_refused(invoke("export", ck, "--target", "nir", "-o", ck / "model.safetensors", "--force"),
                       "would overwrite the input")
        assert_kept(before, tmp_path)

    def test_json_and_plot_onto_one_file_is_refused(self, tmp_path, graph_file):
        before = snapshot(tmp_path)
        out = tmp_path / "report"
        assert_refused(invoke("energy-report", graph_file, "--json", out, "--plot", out),
                       "--plot", "--json", "name the same output")
        assert_kept(before, tmp_path)
        assert not out.exists()

    def test_an_interrupted_forced_rerun_keeps_the_finished_checkpoint(self, tmp_path, cartpole_dataset, monkeypatch):
        cfg = tiny_config(tmp_path, cartpole_dataset, steps="4", eval_every="2")
        out = tmp_path / "run"
        assert invoke(*train_args(cfg, cartpole_dataset, out)).exit_code == 0
        finished = snapshot(out / "checkpoint")
        cfg = tiny_config(tmp_path, cartpole_dataset, steps="6", eval_every="2")  # another config: needs --force
        interrupted_train(monkeypatch, *train_args(cfg, cartpole_dataset, out, "--force"))
        assert_kept(finished, out / "checkpoint")  # the old policy is still there, byte for byte
        result = invoke(*train_args(cfg, cartpole_dataset, out))  # resumes the forced run (no --force needed)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "checkpoint" / "checkpoint.json").read_text())["train"]["steps"] == 6

    def test_a_folder_stranded_between_two_renames_is_put_back(self, tmp_path, monkeypatch):
        import spikingmind.io as io

        target = tmp_path / "resume"
        target.mkdir()
        (target / "state.json").write_text("old")
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)  # a filesystem without RENAME_EXCHANGE
        real_rename = os.rename
        renames = []

        def killed_after_first(src, dst):
            renames.append(src)
            if len(renames) == 2:
                raise KeyboardInterrupt  # the kill between the two renames
            return real_rename(src, dst)

        monkeypatch.setattr(io.os, "rename", killed_after_first)
        with pytest.raises(KeyboardInterrupt), atomic_dir(target, overwrite=True) as tmp:
            (tmp / "state.json").write_text("new")
        monkeypatch.setattr(io.os, "rename", real_rename)
        assert not target.exists()
        aside = next(tmp_path.glob(".resume.*.old"))
        pid = aside.name.split(".")[2]
        dead = aside.with_name(aside.name.replace(f".{pid}.", f".{dead_pid()}.", 1))
        aside.rename(dead)  # as the killed process would have left it
        remove_stale_temps(target)
        assert (target / "state.json").read_text() == "old"

    def test_replacing_a_folder_is_one_exchange(self, tmp_path):
        target = tmp_path / "checkpoint"
        target.mkdir()
        (target / "a").write_text("old")
        with atomic_dir(target, overwrite=True) as tmp:
            (tmp / "a").write_text("new")
        assert (target / "a").read_text() == "new"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]

    def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(self, tmp_path, snn_checkpoint):
        run = tmp_path / "run"
        shutil.copytree(Path(snn_checkpoint).parent, run)
        dead, live = dead_pid(), os.getpid()
        stale = [run / f".resume.{dead}.ab12cd34.tmp", run / f".checkpoint.{dead}.ef56gh78.tmp"]
        stale[0].mkdir()
        stale[1].mkdir()
        kept = run / f".resume.{live}.ij90kl12.tmp"
        kept.mkdir()
        from spikingmind.runs import RunFolder

        RunFolder(run, "run.json").status({}, force=True)
        assert not any(p.exists() for p in stale) and kept.exists()


# ---------------------------------------------------------------------------- 4. resume checks its data


class TestResume:
    """Item 4: a run resumes only on the data it started on."""

    def test_resuming_on_a_recollected_dataset_is_refused_naming_both_hashes(
            self, tmp_path, datasets_root, monkeypatch):
        from spikingmind.data import collect

        dataset = f"hostile-resume-{uuid.uuid4().hex[:8]}-v0"
        _, first = collect("CartPole-v1", 4, {"expert": 1.0}, seed=0, dataset_id=dataset, root=datasets_root)
        cfg = tiny_config(tmp_path, dataset, steps="4", eval_every="2")
        out = tmp_path / "run"
        interrupted_train(monkeypatch, *train_args(cfg, dataset, out))
        shutil.rmtree(datasets_root / dataset)  # re-collected under the same id, other data
        _, second = collect("CartPole-v1", 4, {"random": 1.0}, seed=1, dataset_id=dataset, root=datasets_root)
        before = snapshot(tmp_path, datasets_root / dataset)
        line = assert_refused(invoke(*train_args(cfg, dataset, out)), str(out / "resume" / "state.json"))
        assert first["content_hash"] in line and second["content_hash"] in line, line
        assert_kept(before, tmp_path, datasets_root / dataset)
        assert not (out / "checkpoint").exists()


# ---------------------------------------------------------------------------- 5. memory and time bombs


class TestBombs:
    """Item 5: sizes are checked against the memory budget before anything is allocated."""

    def test_a_graph_asking_for_a_billion_time_steps_is_refused_at_once(self, tmp_path, graph_file):
        rewrite_nir(graph_file, {"time_steps": 10**9}, time_steps=10**9)
        before = snapshot(tmp_path)
        start = time.monotonic()
        assert_refused(invoke("evaluate", graph_file, "--episodes", "1"), str(graph_file),
                       "time_steps=1000000000", "memory budget")
        assert time.monotonic() - start < 10
        assert_kept(before, tmp_path)

    def test_a_graph_with_a_context_of_a_hundred_million_tokens_is_refused(self, tmp_path):
        tokens = 3 * 10**8
        graph = nir.NIRGraph(
            nodes={"input": nir.Input(input_type={"input": np.array([4, tokens])}),
                   "embed": nir.Conv1d(input_shape=tokens, weight=np.ones((2, 4, 1)), stride=1, padding=0,
                                       dilation=1, groups=1, bias=np.zeros(2)),
                   "lif": nir.LIF(tau=np.array(2e-3), r=np.array(2.0), v_leak=np.array(0.0),
                                  v_threshold=np.array(1.0), v_reset=np.array(0.0)),
                   "output": nir.Output(output_type={"output": np.array([2, tokens])})},
            edges=[("input", "embed"), ("embed", "lif"), ("lif", "output")],
            metadata={"dt": 1e-3, "time_steps": 4, "spikingmind": json.dumps({"action_kind": "discrete"})},
            type_check=False)
        path = tmp_path / "wide.nir"
        nir.write(path, graph, compression=None)  # h5py compresses no scalar datasets
        assert path.stat().st_size < 100_000
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", path, "--episodes", "1"), str(path), "memory budget", "300000000")
        assert_kept(before, tmp_path)

    def test_a_checkpoint_of_width_a_million_is_refused_before_it_is_built(self, tmp_path, ck):
        meta = json.loads((ck / "checkpoint.json").read_text())
        meta["model"]["width"] = 10**6
        (ck / "checkpoint.json").write_text(json.dumps(meta))
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", ck, "--episodes", "1"), str(ck / "checkpoint.json"),
                       "model.width=1000000", "memory budget of 4 GiB")
        assert_kept(before, tmp_path)

    def test_a_batch_of_a_billion_is_refused_naming_the_file(self, tmp_path, cartpole_dataset):
        cfg = tiny_config(tmp_path, cartpole_dataset, batch_size=str(10**9))
        before = snapshot(tmp_path)
        assert_refused(invoke(*train_args(cfg, cartpole_dataset, tmp_path / "run")), str(cfg),
                       "a training step of batch 1000000000", "--max-memory-gib")
        assert_kept(before, tmp_path)

    def test_the_budget_is_set_by_the_flag(self, tmp_path, ck, monkeypatch):
        from spikingmind.limits import ENV_VAR

        monkeypatch.delenv(ENV_VAR, raising=False)
        before = snapshot(tmp_path)
        try:
            assert_refused(invoke("--max-memory-gib", "0.00001", "evaluate", ck, "--episodes", "1"),
                           "memory budget of 1e-05 GiB")
        finally:
            os.environ.pop(ENV_VAR, None)
        assert_kept(before, tmp_path)
        assert_refused(invoke("--max-memory-gib", "-1", "evaluate", ck), "--max-memory-gib")


# ---------------------------------------------------------------------------- 6. one line, exit 2


class TestOneLineErrors:
    """Item 6: every failure is one line naming the file and field, exit 2, never a traceback."""

    @pytest.mark.parametrize("where", ["parent_is_a_file", "proc", "folder"])
    def test_an_unwritable_output_is_refused_before_any_work(self, tmp_path, ck, where, monkeypatch):
        blocker = tmp_path / "plain-file"
        blocker.write_text("x")
        out = {"parent_is_a_file": blocker / "eval.json", "proc": Path("/proc/self/eval.json"),
               "folder": tmp_path}[where]
        import spikingmind.workflows.evaluate as workflow

        monkeypatch.setattr(workflow, "load_policy", lambda *a, **k: pytest.fail("work started"))
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", ck, "--json", out, "--force"), f"--json {out}")
        assert_kept(before, tmp_path)

    def test_a_full_disk_is_one_line(self, tmp_path, ck, monkeypatch):
        import errno

        import spikingmind.io as io

        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(io.os, "fsync", full)
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", ck, "--episodes", "1", "--max-steps", "2", "--json", tmp_path / "e.json"),
                       str(tmp_path / "e.json"), "No space left on device")
        assert_kept(before, tmp_path)
        assert not list(tmp_path.glob(".e.json.*")) and not (tmp_path / "e.json").exists()

    def test_export_onto_a_folder_is_refused(self, tmp_path, ck):
        (tmp_path / "out").mkdir()
        before = snapshot(tmp_path)
        assert_refused(invoke("export", ck, "--target", "nir", "-o", tmp_path / "out", "--force"), "is a folder")
        assert_kept(before, tmp_path)

    @pytest.mark.parametrize("damage", ["state.json", "model.safetensors"])
    def test_a_damaged_run_folder_is_one_line(self, tmp_path, cartpole_dataset, monkeypatch, damage):
        cfg = tiny_config(tmp_path, cartpole_dataset, steps="4", eval_every="2")
        out = tmp_path / "run"
        interrupted_train(monkeypatch, *train_args(cfg, cartpole_dataset, out))
        (out / "resume" / damage).write_bytes(b"{garbage")
        before = snapshot(tmp_path)
        assert_refused(invoke(*train_args(cfg, cartpole_dataset, out)), str(out / "resume" / damage), "--force")
        assert_kept(before, tmp_path)

    @pytest.mark.parametrize("part, payload", [("lava_plan.json", b"{"), ("manifest.json", b"[]"),
                                               ("params_float.npz", b"PK\x03\x04garbage")])
    def test_a_damaged_lava_bundle_is_one_line(self, tmp_path, exported, part, payload):
        bundle = Path(shutil.copytree(exported["bundle"], tmp_path / "bundle"))
        (bundle / part).write_bytes(payload)
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", bundle, "--backend", "lava", "--episodes", "1"), str(bundle / part))
        assert_kept(before, tmp_path)

    def test_a_garbage_sidecar_reply_is_one_line_and_leaves_no_process(self, tmp_path, exported, monkeypatch):
        marker = f"spikingmind-garbage-{uuid.uuid4().hex}"
        fake = tmp_path / "fake-python"  # answers the interpreter probes, then replies garbage to a job
        fake.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            export MARKER={marker}
            case "$1" in
              -c) case "$2" in *version_info*) echo "3 10";; esac; exit 0;;
            esac
            read line
            echo 'Segmentation fault (core dumped) {{not json'
            sleep 300
            """))
        fake.chmod(0o755)
        monkeypatch.setenv("SPIKINGMIND_LAVA_PYTHON", str(fake))
        bundle = Path(shutil.copytree(exported["bundle"], tmp_path / "bundle"))
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", bundle, "--backend", "lava", "--episodes", "1"),
                       "sent a reply that is not JSON", "Segmentation fault")
        assert processes_with(marker) == []
        assert_kept(before, tmp_path)

    @pytest.mark.parametrize("time_steps", [0, -1])
    def test_graph_time_steps_of_zero_or_less_are_refused(self, tmp_path, graph_file, time_steps):
        rewrite_nir(graph_file, {"time_steps": time_steps}, time_steps=time_steps)
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", graph_file, "--episodes", "1"), str(graph_file), "time_steps")
        assert_kept(before, tmp_path)

    @pytest.mark.parametrize("fields, fragment", [
        ({"token_layout__context_length": 7}, "tokens, but the token layout has"),
        ({"time_steps": 3}, "disagree"),
        ({"normalization__obs_mean": [0.0, 0.0]}, "normalization.obs_mean must hold 4 values"),
        ({"env__env_id": ["CartPole-v1"]}, "env.env_id"),
    ])
    def test_metadata_that_disagrees_with_the_graph_is_refused(self, tmp_path, graph_file, fields, fragment):
        rewrite_nir(graph_file, **fields)
        before = snapshot(tmp_path)
        assert_refused(invoke("evaluate", graph_file, "--episodes", "1"), str(graph_file), fragment)
        assert_kept(before, tmp_path)

    @pytest.mark.parametrize("train, model, field", [
        ({"steps": '"4"'}, {}, "train.steps must be an integer"),
        ({"lr": '"fast"'}, {}, "train.lr must be a finite number"),
        ({"seed": "-3"}, {}, "train.seed"),
        ({}, {"time_steps": "2.5"}, "model.time_steps must be an integer"),
        ({}, {"width": "0"}, "model.width must be >= 1"),
        ({"batch_size": "[8]"}, {}, "train.batch_size"),
        ({"eval_episodes": "0"}, {}, "train.eval_episodes"),
        ({"warmup_steps": "-1"}, {}, "train.warmup_steps"),
        ({"stop_at_return": "nan"}, {}, "train.stop_at_return"),
        ({"continuous_loss": "1"}, {}, "train.continuous_loss"),
        ({}, {"beta": "true"}, "model.beta"),
        ({}, {"kind_of": "1"}, "unknown model config keys: kind_of"),
    ])
    def test_a_config_type_error_is_one_line_naming_the_file_and_field(
            self, tmp_path, cartpole_dataset, train, model, field):
        cfg = tiny_config(tmp_path, cartpole_dataset, **train, **{f"model.{k}": v for k, v in model.items()})
        if "kind_of" in model:
            cfg.write_text(cfg.read_text() + "kind_of = 1\n")
        before = snapshot(tmp_path)
        assert_refused(invoke(*train_args(cfg, cartpole_dataset, tmp_path / "run")), str(cfg), field)
        assert_kept(before, tmp_path)

    def test_collect_with_a_negative_seed_is_refused(self, tmp_path):
        assert_refused(invoke("collect", "--episodes", "2", "--seed", "-1", "--root", tmp_path), "--seed must be >= 0")
        assert list(tmp_path.iterdir()) == []

    def test_messages_name_the_file_not_a_placeholder(self, tmp_path, graph_file):
        graph = nir.read(graph_file, type_check=False)
        graph.metadata = {k: v for k, v in graph.metadata.items() if k != "time_steps"}
        graph_file.unlink()
        nir.write(graph_file, graph)
        line = assert_refused(invoke("energy-report", graph_file, "--episodes", "1"), str(graph_file))
        assert "<graph>" not in line

    def test_brackets_in_a_message_survive(self, tmp_path, cartpole_dataset):
        cfg = write_config(tmp_path, "[trian]\nsteps = 4\n")
        assert_refused(invoke(*train_args(cfg, cartpole_dataset, tmp_path / "run")),
                       "(expected [train], [model], [data])")

    def test_an_interrupt_while_loading_weights_is_an_interrupt_not_a_corrupt_checkpoint(
            self, tmp_path, ck, monkeypatch):
        import spikingmind.checkpoint as checkpoint

        def swallowed_interrupt(path):  # what torch inside safetensors does with a Ctrl-C
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt:
                raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'")

        monkeypatch.setattr(checkpoint, "load_file", swallowed_interrupt)
        before = snapshot(tmp_path)
        # Python raises KeyboardInterrupt only where SIGINT was not ignored at its start, and a
        # suite run as a background job (`make test &`) inherits SIGINT ignored: install the handler
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            line = assert_refused(invoke("evaluate", ck, "--episodes", "1"), "interrupted", exit_code=130)
        finally:
            signal.signal(signal.SIGINT, previous)
        assert "cannot read" not in line
        assert_kept(before, tmp_path)


# ---------------------------------------------------------------------------- 7. ablate, modes


class TestAblateAndModes:
    """Item 7: ablate checks everything before it starts; outputs get ordinary permissions."""

    @pytest.mark.parametrize("text, fragment", [
        ("[train]\nlr = inf\n", "train.lr"),
        ("[train]\nbatch_size = 100000000\n", "memory budget"),
        ("[model]\nwidth = 2.5\n", "model.width"),
    ])
    def test_ablate_refuses_a_bad_config_before_collecting(self, tmp_path, datasets_root, text, fragment):
        cfg = write_config(tmp_path, text)
        before = snapshot(tmp_path, datasets_root)
        datasets = sorted(p.name for p in datasets_root.iterdir())
        assert_refused(invoke("ablate", "--config", cfg, "--time-steps", "1,2", "--context", "1", "--seeds", "1",
                              "--out", tmp_path / "sweep"), fragment)
        assert sorted(p.name for p in datasets_root.iterdir()) == datasets  # nothing collected
        assert not (tmp_path / "sweep").exists()
        assert_kept(before, tmp_path, datasets_root)

    def test_ablate_checks_every_run_at_its_own_size(self, tmp_path, datasets_root):
        cfg = write_config(tmp_path, "[train]\nbatch_size = 64\n[model]\nwidth = 16\n")  # fine at its own T and K
        datasets = sorted(p.name for p in datasets_root.iterdir())
        assert_refused(invoke("ablate", "--config", cfg, "--time-steps", "1,512", "--context", "1",
                              "--seeds", "1", "--out", tmp_path / "sweep"), "sweep run snn T=512", "memory budget")
        assert sorted(p.name for p in datasets_root.iterdir()) == datasets

    def test_outputs_get_ordinary_permissions(self, tmp_path, ck):
        umask = os.umask(0o022)
        os.umask(umask)
        assert invoke("export", ck, "--target", "nir", "-o", tmp_path / "m.nir").exit_code == 0
        assert invoke("evaluate", tmp_path / "m.nir", "--episodes", "1", "--max-steps", "3",
                      "--json", tmp_path / "e.json").exit_code == 0
        from spikingmind.export.lava import export_lava_bundle

        export_lava_bundle(tmp_path / "m.nir", tmp_path / "bundle")
        for path, mode in ((tmp_path / "m.nir", 0o666), (tmp_path / "e.json", 0o666), (tmp_path / "bundle", 0o777)):
            assert stat.S_IMODE(path.stat().st_mode) == mode & ~umask, path
