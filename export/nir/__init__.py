"""`export --target nir`: the spiking DT as a standard NIR graph (docs/SEMANTICS.md), and the
`reference` backend that runs such a graph closed loop.

    emitters.py    module types -> NIR nodes (`model_to_graph`)
    metadata.py    what the .nir file carries to be run from alone (`export_metadata`)
    policy.py      `NIRPolicy`: an exported graph in the NumPy reference simulator
"""

from __future__ import annotations

from pathlib import Path

import nir
import torch

from spikingmind.export.nir.emitters import EMITTERS, INPUT, OUTPUT, model_to_graph
from spikingmind.export.nir.metadata import export_metadata, graph_metadata
from spikingmind.export.nir.policy import NIRPolicy, load_policy
from spikingmind.export.reference import load_graph
from spikingmind.io import atomic_path, refuse_overwrite

__all__ = ["EMITTERS", "INPUT", "OUTPUT", "NIRPolicy", "checkpoint_to_graph", "export", "export_metadata",
           "graph_metadata", "load_or_export_graph", "load_policy", "model_to_graph", "write_graph"]


def checkpoint_to_graph(path) -> nir.NIRGraph:
    """A checkpoint folder's spiking DT as a NIR graph with its metadata (float64)."""
    from spikingmind.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, dtype=torch.float64)
    return model_to_graph(ckpt.model, export_metadata(ckpt))


def load_or_export_graph(source) -> nir.NIRGraph:
    """A .nir file (validated) or a checkpoint folder (exported in memory)."""
    path = Path(source)
    if path.is_dir():
        return checkpoint_to_graph(path)
    return load_graph(path)


def write_graph(graph: nir.NIRGraph, out: str | Path, force: bool = False) -> Path:
    refuse_overwrite(out, force)
    with atomic_path(out, suffix=".nir") as tmp:
        nir.write(str(tmp), graph)
    return Path(out)


def export(checkpoint, out, force: bool = False, portable: bool = False) -> Path:
    """Registry entry point: checkpoint folder -> model.nir. With `portable`, the standard graph
    rewritten for the nirtorch / snnTorch / norse readers and verified against it
    (`export.nir.portable`; the source may then also be a standard .nir)."""
    if portable:
        from spikingmind.export.nir import portable as nir_portable

        return nir_portable.export(checkpoint, out, force)
    return write_graph(checkpoint_to_graph(checkpoint), out, force)
