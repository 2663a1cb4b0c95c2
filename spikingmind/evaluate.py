"""Evaluate any exported or trained policy closed loop: one loader per source kind."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


from spikingmind.errors import ConfigError, SpikingmindError
from spikingmind.rollout import TorchPolicy, evaluation_seeds, run_episodes


def _load_checkpoint_policy(path: Path, backend: str | None, fixed_point: bool):
    from spikingmind.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    info = {"model": ckpt.config.kind, "backend": "pytorch", "dataset": ckpt.meta.get("dataset", {})}
    if backend == "event":
        from spikingmind.event_runtime import EventPolicy

        policy = EventPolicy(ckpt, source=str(path))
        return policy, {**info, "backend": "event", "verification": policy.verification}
    return TorchPolicy(ckpt, record_spikes=True), info


def _load_nir_policy(path: Path, backend: str | None, fixed_point: bool):
    from spikingmind.export.nir import NIRReferencePolicy

    policy = NIRReferencePolicy.from_file(path)
    return policy, {"model": "snn", "backend": "nir-reference", "dataset": policy.meta.get("dataset", {})}


def _load_onnx_policy(path: Path, backend: str | None, fixed_point: bool):
    from spikingmind.export.onnx import OnnxPolicy

    policy = OnnxPolicy(path)
    return policy, {"model": policy.model_kind, "backend": "onnxruntime", "dataset": policy.meta.get("dataset", {})}


def _load_lava_policy(path: Path, backend: str | None, fixed_point: bool):
    from spikingmind.export.lava import LavaPolicy

    policy = LavaPolicy(path, fixed_point=fixed_point)
    return policy, {"model": "snn", "backend": "lava-fixed_pt" if fixed_point else "lava-floating_pt",
                    "dataset": getattr(policy, "meta", {}).get("dataset", {})}


#: (matches(path), loader) in order; the first match loads the source.
LOADERS: list[tuple[Callable[[Path], bool], Callable]] = [
    (lambda p: p.is_dir() and (p / "manifest.json").exists(), _load_lava_policy),
    (lambda p: p.is_dir(), _load_checkpoint_policy),
    (lambda p: p.suffix == ".nir", _load_nir_policy),
    (lambda p: p.suffix == ".onnx", _load_onnx_policy),
]


def load_policy(source: str | Path, backend: str | None = None, fixed_point: bool = False):
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if backend not in (None, "lava", "event", "pytorch", "nir", "onnx"):
        raise ConfigError(f"--backend {backend!r}: choose lava or event (others follow from the source)")
    if backend == "lava" and not (path.is_dir() and (path / "manifest.json").exists()):
        raise ConfigError(f"--backend lava needs a Lava bundle folder (from `export --target lava`), not {path}")
    if backend == "event" and not (path.is_dir() and not (path / "manifest.json").exists()):
        raise ConfigError(f"--backend event runs a spiking DT checkpoint folder, not {path}")
    for matches, loader in LOADERS:
        if matches(path):
            return loader(path, backend, fixed_point)
    raise ConfigError(f"{path}: not a checkpoint folder, .nir, .onnx or Lava bundle")


def evaluate(source, episodes: int = 20, seed: int = 0, target_return: float | None = None,
             backend: str | None = None, fixed_point: bool = False, progress=None, loaded=None,
             max_steps: int | None = None) -> dict:
    """Closed-loop returns of a policy on evaluation seeds (disjoint from its training data).

    `loaded` is an already loaded (policy, info) pair from `load_policy`.
    """
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    policy, info = loaded or load_policy(source, backend, fixed_point)
    seeds = evaluation_seeds(episodes, seed)
    training_seeds = set(info.get("dataset", {}).get("episode_seeds", []))
    if training_seeds & set(seeds):
        raise SpikingmindError("evaluation seeds overlap the training data's episode seeds")
    target = policy.spec.target_return if target_return is None else float(target_return)
    results = run_episodes(policy, seeds, target, progress=progress, max_steps=max_steps)
    out = {"env_id": policy.spec.env_id, "model": info["model"], "backend": info["backend"], "source": str(source),
           "target_return": target, "seed": seed, "max_steps": max_steps, **results.summary()}
    if "verification" in info:  # a backend checked against PyTorch when it was built (event)
        out["verification"] = info["verification"]
    for optional in ("spike_stats", "decision_stats"):  # spikes (PyTorch, NIR), backend timing (Lava)
        if hasattr(policy, optional):
            out.update(getattr(policy, optional)())
    if hasattr(policy, "close"):
        policy.close()
    return out
