"""Reading .nir files: nir.read, then the validation of `spikingmind.graph` (GraphError naming the file)."""

from __future__ import annotations

from pathlib import Path

import nir

from spikingmind.errors import GraphError
from spikingmind.graph import validate_graph


def load_graph(path: str | Path) -> nir.NIRGraph:
    """Read a .nir file and validate it; any failure is a GraphError naming the file.

    NIR's own type inference is switched off (`type_check=False`): it rewrites graphs
    (adds Input/Output nodes to dangling ends) and mis-types grouped Conv1d; the checks
    of `validate_graph` replace it.
    """
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{path}: no such graph file")
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:  # h5py, KeyError, AssertionError, ValueError ... all mean "unreadable"
        message = " ".join(str(exc).split())
        detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        raise GraphError(f"{path}: cannot read NIR graph ({_node_type_hint(path)}{detail})") from exc
    validate_graph(graph, source=str(path))
    return graph


def _node_type_hint(path: Path) -> str:
    """Name the first node whose type nir.read does not know, if the file is readable."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            nodes = f["node"]["nodes"]
            for name in nodes:
                type_name = nodes[name]["type"][()]
                type_name = type_name.decode() if isinstance(type_name, bytes) else str(type_name)
                known = getattr(nir, type_name, None)
                if not (isinstance(known, type) and issubclass(known, nir.NIRNode)):
                    return f"node '{name}' has unknown type '{type_name}'; "
    except Exception:  # the hint is best effort: the main error is reported anyway
        return ""
    return ""

