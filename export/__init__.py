"""Export targets, found through one registry: name -> (module, one-line description).

Each target module provides `export(source, out, force=False, **options) -> Path`.
Modules are imported only when their target is used (Lava stays out of this process).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from spikingmind.errors import ExportError

TARGETS: dict[str, tuple[str, str]] = {
    "nir": ("spikingmind.export.nir", "spiking DT checkpoint -> standard NIR graph (.nir); with --portable, the "
                                      "graph rewritten for nirtorch/snnTorch/norse, verified against the standard one"),
    "onnx": ("spikingmind.export.onnx", "ANN twin or spiking DT checkpoint -> ONNX inference graph (.onnx), runs in ONNX Runtime"),
    "lava": ("spikingmind.export.lava", "spiking DT checkpoint or .nir -> Lava bundle folder, verified in Lava"),
}


def export(target: str, source: str | Path, out: str | Path, force: bool = False, **options) -> Path:
    """Export `source` with the named target; unknown targets list the known ones."""
    try:
        module_name, _ = TARGETS[target]
    except KeyError:
        raise ExportError(f"unknown export target {target!r}; choose from {', '.join(TARGETS)}") from None
    module = importlib.import_module(module_name)
    return module.export(source, out, force=force, **options)
