"""The run-folder state machine shared by train and finetune: fresh, resume, finished, refused."""

from __future__ import annotations

import json

import pytest
import torch

from spikingmind.errors import RunExistsError
from spikingmind.runs import FINISHED, FRESH, RESUME, RunFolder, changed_keys, snapshot


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()  # the optimizer now has moments to save
    return model, optimizer


def test_states_from_fresh_to_resume_to_finished(tmp_path):
    run = RunFolder(tmp_path / "run", "run.json")
    record = {"lr": 0.1, "steps": 4}
    assert run.status(record, force=False) == FRESH
    run.start(record, force=False)
    assert run.status(record, force=False) == FRESH  # config written, nothing to resume yet
    model, optimizer = _model_and_optimizer()
    run.save_resume(model, optimizer, snapshot(model), {"step": 2})
    assert run.status(record, force=False) == RESUME
    (run.final).mkdir()
    assert run.status(record, force=False) == FINISHED
    assert run.status(record, force=True) == FRESH


def test_resume_restores_weights_optimizer_and_best_state(tmp_path):
    run = RunFolder(tmp_path / "run", "run.json")
    run.start({"a": 1}, force=False)
    model, optimizer = _model_and_optimizer(0)
    best = snapshot(model)
    run.save_resume(model, optimizer, best, {"step": 7, "history": [1, 2]})
    other, other_optimizer = _model_and_optimizer(1)
    state, restored_best = run.load_resume(other, other_optimizer)
    assert state == {"step": 7, "history": [1, 2]}
    for name, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], value) and torch.equal(restored_best[name], best[name])
    saved, loaded = optimizer.state_dict()["state"], other_optimizer.state_dict()["state"]
    assert all(torch.equal(saved[0][key], loaded[0][key]) for key in ("exp_avg", "exp_avg_sq", "step"))


def test_no_best_state_is_saved_or_restored_as_none(tmp_path):
    run = RunFolder(tmp_path / "run", "run.json")
    model, optimizer = _model_and_optimizer()
    run.save_resume(model, optimizer, None, {"step": 1})
    assert not (run.resume / "best.safetensors").exists()
    assert run.load_resume(model, optimizer)[1] is None


def test_another_config_is_refused_naming_what_differs(tmp_path):
    run = RunFolder(tmp_path / "run", "ft.json", kind="a fine-tuning run")
    run.start({"lr": 0.1, "steps": 4}, force=False)
    with pytest.raises(RunExistsError, match=r"holds a fine-tuning run with another config \(differs in: lr, seed\)"):
        run.status({"lr": 0.2, "steps": 4, "seed": 1}, force=False)
    assert changed_keys({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == ["b", "c"]


def test_a_forced_start_removes_the_outputs_of_the_earlier_run_but_keeps_its_checkpoint(tmp_path):
    run = RunFolder(tmp_path / "run", "run.json", outputs=("curve.csv",), record_of=lambda meta: meta.get("train"))
    run.start({"a": 1}, force=False)
    for folder in (run.final, run.resume):
        folder.mkdir()
    (run.final / "checkpoint.json").write_text(json.dumps({"train": {"a": 1}}))
    run.outputs[0].write_text("old")
    assert run.status({"a": 1}, force=False) == FINISHED
    run.start({"a": 2}, force=True)
    assert not run.resume.exists() and not run.outputs[0].exists()
    # the previous policy stays until the new run replaces it, and does not count as the new one's
    assert json.loads((run.final / "checkpoint.json").read_text()) == {"train": {"a": 1}}
    assert run.status({"a": 2}, force=False) == FRESH
