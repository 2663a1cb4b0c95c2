"""Resumable run folders, shared by offline training (`train`) and online fine-tuning (`finetune`).

A run folder holds
    <config file>   the run's config record (a run is reproducible from it)
    resume/         weights, optimizer moments, best weights, state.json: rewritten atomically
                    at each evaluation
    checkpoint/     the finished policy (spikingmind.checkpoint); its presence means "done"
and is in one of three states for a given config record: "fresh" (nothing to resume, or
forced), "resume" (an interrupted run of the same config) or "finished" (checkpoint/ holds
that config's policy). A folder holding another config is refused, naming what differs.

A forced restart keeps the previous checkpoint/ until the new run finishes and replaces it
in one atomic swap (`io.replace_dir`): an interrupted `--force` run leaves the old policy in
place (and resumes when re-run), never nothing. resume/ records the dataset's content hash;
resuming on other data is refused, naming both.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from spikingmind.errors import DatasetError, DivergedError, OutputError, RunExistsError
from spikingmind.io import atomic_dir, atomic_write_json, remove_stale_temps, same_or_inside
from spikingmind.validation import non_finite_tensor

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


def guarded_step(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    """optimizer.step(), then check that every weight and buffer of `model` is finite.
    DivergedError saying what diverged otherwise (callers add the step and the advice); an
    optimizer step that overflows float32 (AdamW's first step at lr ~1e38) counts as one."""
    try:
        optimizer.step()
    except RuntimeError as error:
        if "overflow" not in str(error):
            raise
        raise DivergedError(f"the optimizer step overflowed ({error})") from None
    bad = non_finite_tensor(model.state_dict())
    if bad is not None:
        raise DivergedError(f"weight '{bad}' is no longer finite")


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights (the best state so far, or what resume/ saves)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class RunFolder:
    """The files of one run folder (see the module docstring).

    `config_name`: the config record's file name; `kind`: what the run is, for messages
    ("a run", "a fine-tuning run"); `outputs`: further files of the folder that a forced
    restart deletes (learning curves); `record_of(checkpoint meta)`: the config record a
    finished checkpoint was made from (a checkpoint of another record, which a forced run
    keeps until it finishes, does not make the run finished).
    """

    def __init__(self, run_dir: str | Path, config_name: str, kind: str = "a run", outputs: tuple[str, ...] = (),
                 record_of: Callable[[dict], dict | None] | None = None):
        self.run_dir = Path(run_dir)
        self.config_path = self.run_dir / config_name
        self.resume = self.run_dir / "resume"
        self.final = self.run_dir / "checkpoint"
        self.kind = kind
        self.outputs = tuple(self.run_dir / name for name in outputs)
        self.record_of = record_of

    def _read_json(self, path: Path) -> dict:
        try:
            value = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunExistsError(f"{path}: damaged ({getattr(error, 'strerror', None) or error}); "
                                 "pass --force to start the run over") from None
        if not isinstance(value, dict):
            raise RunExistsError(f"{path}: damaged (not a JSON object); pass --force to start the run over")
        return value

    def status(self, record: dict, force: bool,
               changed: Callable[[dict, dict], list[str]] = changed_keys) -> str:
        """FRESH, RESUME or FINISHED for `record`; RunExistsError when the folder holds another
        record (`changed(saved, wanted)` names what differs) or a damaged one."""
        for part in (self.resume, self.final):
            remove_stale_temps(part)  # what killed writers left (or stranded aside) next to them
        if force or not self.config_path.exists():
            return FRESH
        saved = self._read_json(self.config_path)
        wanted = json.loads(json.dumps(record))  # as it reads back from the file
        if saved != wanted:
            raise RunExistsError(
                f"{self.run_dir} holds {self.kind} with another config (differs in: "
                f"{', '.join(changed(saved, wanted))}); use another --out or pass --force to start over"
            )
        if self.final.exists() and self._finished_for(wanted):
            return FINISHED
        return RESUME if (self.resume / "state.json").exists() else FRESH

    def _finished_for(self, wanted: dict) -> bool:
        """Whether checkpoint/ was made from `wanted` (not the previous policy a forced run keeps)."""
        if self.record_of is None:
            return True
        meta = self._read_json(self.final / "checkpoint.json")
        return json.loads(json.dumps(self.record_of(meta))) == wanted

    def finished_meta(self) -> dict:
        """The finished checkpoint's metadata (checkpoint.json)."""
        return self._read_json(self.final / "checkpoint.json")

    def start(self, record: dict, force: bool) -> None:
        """Clear what a forced restart replaces (resume state and outputs; the finished
        checkpoint stays until the new one replaces it), create the folder, write the record."""
        if force:
            for stale in (self.resume, *self.outputs):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_path, record)

    def refuse_inputs(self, inputs: dict[str, str | Path | None]) -> None:
        """OutputError before any work when the run would write over one of its inputs (label ->
        path): an input folder holding the run folder, or an input at a path the run writes."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise OutputError(f"--out {self.run_dir} is a file; a run needs a folder")
        parts = (self.config_path, self.resume, self.final, *self.outputs)
        for label, source in inputs.items():
            if source is not None and (same_or_inside(self.run_dir, Path(source))
                                       or any(same_or_inside(Path(source), part) for part in parts)):
                raise OutputError(f"--out {self.run_dir} would write over the input {label} {source}; "
                                  "use another --out")

    def check_dataset(self, state: dict, dataset: dict) -> None:
        """Refuse to resume on another dataset than the run started on (DatasetError naming
        both content hashes); a state written before datasets were recorded is not checked."""
        started = state.get("dataset")
        if isinstance(started, dict) and started.get("content_hash") != dataset.get("content_hash"):
            raise DatasetError(
                f"{self.resume / 'state.json'}: the run started on dataset {started.get('id')} with content hash "
                f"{started.get('content_hash')}, but {dataset.get('id')} now has content hash "
                f"{dataset.get('content_hash')}; restore that data, or pass --force to start over on the new data")

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
        """Restore weights and optimizer from resume/; returns (state, best weights or None).
        A damaged resume/ is a RunExistsError naming the file (pass --force to start over)."""
        from spikingmind.checkpoint import read_tensors

        state = self._read_json(self.resume / "state.json")
        best = self.resume / "best.safetensors"
        try:
            weights = read_tensors(self.resume / "model.safetensors", RunExistsError, "resume weights")
            moments = read_tensors(self.resume / "optimizer.safetensors", RunExistsError, "optimizer state")
            best_state = read_tensors(best, RunExistsError, "best weights") if best.exists() else None
            model.load_state_dict(weights)
            load_optimizer_tensors(optimizer, moments)
        except RunExistsError as error:
            raise RunExistsError(f"{error}; pass --force to start the run over") from None
        except (RuntimeError, ValueError, KeyError) as error:
            first = (str(error).splitlines() or ["mismatch"])[0]
            raise RunExistsError(f"{self.resume}: damaged resume state ({first}); pass --force to start the run over") \
                from None
        return state, best_state
