"""Resumable run folders, shared by offline training (`train`) and online fine-tuning (`finetune`).

A run folder holds
    <config file>   the run's config record (a run is reproducible from it)
    resume/         weights, optimizer moments, best weights, state.json: rewritten atomically
                    at each evaluation
    checkpoint/     the finished policy (spikingmind.checkpoint); its presence means "done"
and is in one of three states for a given config record: "fresh" (nothing to resume, or
forced), "resume" (an interrupted run of the same config) or "finished". A folder holding
another config is refused, naming what differs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from spikingmind.errors import RunExistsError
from spikingmind.io import atomic_dir, atomic_write_json

FRESH, RESUME, FINISHED = "fresh", "resume", "finished"


def changed_keys(saved: dict, wanted: dict) -> list[str]:
    """The top-level keys whose values differ between two config records, sorted."""
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimizer's state as flat named tensors ("<param index>.<key>") for safetensors."""
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).clone()
    return tensors


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore an optimizer's state from `optimizer_tensors`."""
    state_dict = optimizer.state_dict()
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (the best state so far, or what resume/ saves)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class RunFolder:
    """The files of one run folder (see the module docstring).

    `config_name`: the config record's file name; `kind`: what the run is, for messages
    ("a run", "a fine-tuning run"); `outputs`: further files of the folder that a forced
    restart deletes (learning curves).
    """

    def __init__(self, run_dir: str | Path, config_name: str, kind: str = "a run", outputs: tuple[str, ...] = ()):
        self.run_dir = Path(run_dir)
        self.config_path = self.run_dir / config_name
        self.resume = self.run_dir / "resume"
        self.final = self.run_dir / "checkpoint"
        self.kind = kind
        self.outputs = tuple(self.run_dir / name for name in outputs)

    def status(self, record: dict, force: bool,
               changed: Callable[[dict, dict], list[str]] = changed_keys) -> str:
        """FRESH, RESUME or FINISHED for `record`; RunExistsError when the folder holds another
        record (`changed(saved, wanted)` names what differs)."""
        if force or not self.config_path.exists():
            return FRESH
        saved = json.loads(self.config_path.read_text())
        wanted = json.loads(json.dumps(record))  # as it reads back from the file
        if saved != wanted:
            raise RunExistsError(
                f"{self.run_dir} holds {self.kind} with another config (differs in: "
                f"{', '.join(changed(saved, wanted))}); use another --out or pass --force to start over"
            )
        if self.final.exists():
            return FINISHED
        return RESUME if (self.resume / "state.json").exists() else FRESH

    def finished_meta(self) -> dict:
        """The finished checkpoint's metadata (checkpoint.json)."""
        return json.loads((self.final / "checkpoint.json").read_text())

    def start(self, record: dict, force: bool) -> None:
        """Clear what a forced restart replaces, create the folder and write the config record."""
        if force:
            for stale in (self.final, self.resume, *self.outputs):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_path, record)

    def save_resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    best_state: dict[str, torch.Tensor] | None, state: dict) -> None:
        """resume/: weights, optimizer moments, the best weights so far (if any) and `state`."""
        with atomic_dir(self.resume, overwrite=True) as tmp:
            save_file(snapshot(model), str(tmp / "model.safetensors"))
            save_file(optimizer_tensors(optimizer), str(tmp / "optimizer.safetensors"))
            if best_state is not None:
                save_file(best_state, str(tmp / "best.safetensors"))
            atomic_write_json(tmp / "state.json", state)

    def load_resume(self, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor] | None]:
        """Restore weights and optimizer from resume/; returns (state, best weights or None)."""
        state = json.loads((self.resume / "state.json").read_text())
        model.load_state_dict(load_file(str(self.resume / "model.safetensors")))
        load_optimizer_tensors(optimizer, load_file(str(self.resume / "optimizer.safetensors")))
        best = self.resume / "best.safetensors"
        return state, (load_file(str(best)) if best.exists() else None)
