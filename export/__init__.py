"""The backends, found through two registries: export targets and policy backends.

`TARGETS`: name -> (module, one-line description). Each target module provides
`export(source, out, force=False, **options) -> Path`.

`BACKENDS`: name -> `Backend` (module, loader, one-line description, the source kinds it
runs). Each loader is `loader(path, fixed_point=False) -> spikingmind.policy.Policy`
(`fixed_point` is Lava's; `loihi-emulation` is always fixed point). `evaluate --backend` takes exactly these names; without it the
backend follows from the source (`SOURCES`).

Modules are imported only when their target or backend is used (Lava stays out of this
process), and this package imports only the core of spikingmind: never its workflows or CLI.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import NamedTuple

from spikingmind.errors import ExportError

TARGETS: dict[str, tuple[str, str]] = {
    "nir": ("spikingmind.export.nir", "spiking DT checkpoint -> standard NIR graph (.nir); with --portable, the "
                                      "graph rewritten for nirtorch/snnTorch/norse, verified against the standard one"),
    "onnx": ("spikingmind.export.onnx", "ANN twin or spiking DT checkpoint -> ONNX inference graph (.onnx), runs in ONNX Runtime"),
    "lava": ("spikingmind.export.lava", "spiking DT checkpoint or .nir -> Lava bundle folder, verified in Lava"),
}


class Backend(NamedTuple):
    """How to run one kind of policy closed loop."""

    module: str
    loader: str  # name of the loader function in `module`
    description: str
    sources: tuple[str, ...]  # source kinds (keys of SOURCES) it runs
    takes: str  # what it runs, for error messages ("a spiking DT checkpoint folder")


BACKENDS: dict[str, Backend] = {
    "pytorch": Backend("spikingmind.policy", "load_policy", "a checkpoint's own PyTorch model (counts spikes)",
                       ("checkpoint",), "a checkpoint folder"),
    "event": Backend("spikingmind.export.event", "load_policy",
                     "the event-driven CPU runtime of a spiking DT (numba), checked against PyTorch when loaded",
                     ("checkpoint",), "a spiking DT checkpoint folder"),
    "reference": Backend("spikingmind.export.nir", "load_policy",
                         "the NumPy reference simulator of a .nir graph (or of a checkpoint exported in memory; "
                         "counts spikes)", ("nir", "checkpoint"), "a .nir graph or a checkpoint folder"),
    "onnxruntime": Backend("spikingmind.export.onnx", "load_policy", "ONNX Runtime (CPU) on a .onnx graph",
                           ("onnx",), "a .onnx graph"),
    "lava": Backend("spikingmind.export.lava", "load_policy",
                    "Lava (sidecar) on a Lava bundle folder; --fixed-point: Loihi fixed point",
                    ("lava-bundle",), "a Lava bundle folder (from `export --target lava`)"),
    "loihi-emulation": Backend("spikingmind.export.lava.emulation", "load_policy",
                               "Loihi fixed point without Lava: the Lava plan's integer arithmetic in NumPy, "
                               "bit-exact against Lava fixed_pt, batched over decisions; evaluate also runs the "
                               "float reference on the same seeds (JSON: fixed_point)",
                               ("nir", "lava-bundle", "checkpoint"),
                               "a .nir graph, a Lava bundle folder or a checkpoint folder"),
}

#: Source kind -> the backend that runs it when none is named.
SOURCES: dict[str, str] = {"checkpoint": "pytorch", "nir": "reference", "onnx": "onnxruntime", "lava-bundle": "lava"}


def source_kind(path: str | Path) -> str | None:
    """"lava-bundle" (a folder with manifest.json), "checkpoint" (any other folder), "nir" or
    "onnx" (by suffix); None for anything else."""
    path = Path(path)
    if path.is_dir():
        return "lava-bundle" if (path / "manifest.json").exists() else "checkpoint"
    return {".nir": "nir", ".onnx": "onnx"}.get(path.suffix)


def export(target: str, source: str | Path, out: str | Path, force: bool = False, **options) -> Path:
    """Export `source` with the named target; unknown targets list the known ones."""
    from spikingmind.io import check_outputs

    try:
        module_name, _ = TARGETS[target]
    except KeyError:
        raise ExportError(f"unknown export target {target!r}; choose from {', '.join(TARGETS)}") from None
    # before any work: the output must not be (or replace a folder holding) the source
    check_outputs({"--out": out}, {"the source": source}, force, folders={"--out"} if target == "lava" else ())
    module = importlib.import_module(module_name)
    return module.export(source, out, force=force, **options)


def load_backend(name: str):
    """The loader function of backend `name` (imports its module)."""
    backend = BACKENDS[name]
    return getattr(importlib.import_module(backend.module), backend.loader)
