"""The portable export (export/nir/portable.py) run by third-party NIR readers, each through
its own importer and entry point: what tests/test_third_party_readers.py asserts and
benchmarks/portable_readers.py measures (docs/THIRD_PARTY_READERS.md).

A reader builds a torch module from a `nir.NIRGraph` read from the file; `run_reader` steps it
T times on the same input from zero state (`state=None`, as every importer here takes it) and
records every LIF's spikes with forward hooks on the modules the importer built (named like
the NIR nodes, "." -> "_"). torch and the readers are imported only when used.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import nir
import numpy as np


@dataclass(frozen=True)
class Reader:
    """One library's way in: `build(graph, dtype) -> module`, and where a LIF module's spikes are in its output."""

    package: str
    entry_point: str
    build: Callable
    spikes_of: Callable = staticmethod(lambda out: out)
    dtypes: tuple[str, ...] = ("float64", "float32")


def _nirtorch(graph: nir.NIRGraph, dtype):
    # nirtorch maps no neuron model: LIF goes to norse's own NIR mapping (norse exports no public name for
    # it), the rest to nirtorch's DEFAULT_MAP
    import nirtorch
    from norse.torch.utils.import_nir import _import_norse_module

    dt = float(np.asarray(graph.metadata["dt"]).reshape(-1)[0])
    return nirtorch.nir_to_torch(graph, {nir.LIF: functools.partial(_import_norse_module, dt=dt)}, dtype=dtype)


def _snntorch(graph: nir.NIRGraph, dtype):
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its subgraph search and weight scaling
        net = import_from_nir(graph)
    snntorch.utils.reset(net)  # its Leaky neurons (init_hidden=True) keep their membranes between calls
    return net


def _norse(graph: nir.NIRGraph, dtype):
    import norse.torch

    dt = float(np.asarray(graph.metadata["dt"]).reshape(-1)[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="nirtorch.load is being deprecated")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # "r is expected to be 1" for graphs other than ours
        try:
            net = norse.torch.from_nir(graph, dt=dt)
        finally:
            logging.disable(previous)
    return net.to(dtype)


READERS: dict[str, Reader] = {
    "nirtorch": Reader("nirtorch", "nirtorch.nir_to_torch(graph, {nir.LIF: norse's _import_norse_module(dt)}, "
                                   "dtype); everything else nirtorch's DEFAULT_MAP",
                       _nirtorch, lambda out: out[0]),
    "snntorch": Reader("snntorch", "snntorch.import_nir.import_from_nir(graph); snntorch.utils.reset(net) "
                                   "before each batch of decisions", _snntorch, dtypes=("float32",)),
    "norse": Reader("norse", "norse.torch.from_nir(graph, dt=graph.metadata['dt']), .to(torch.float64) for float64",
                    _norse, lambda out: out[0]),
}


def reader_version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(READERS[name].package)


def build_reader(name: str, graph: nir.NIRGraph, dtype: str = "float64"):
    """The torch module the reader's importer builds from `graph` (dtype "float64" or "float32")."""
    import torch

    return READERS[name].build(graph, getattr(torch, dtype))


def run_module(name: str, net, graph: nir.NIRGraph, decisions: np.ndarray, dtype: str = "float64",
               lifs: list[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run `decisions` (B, D_in, 1, L) through a reader's module for the graph's time_steps, the
    same input at every step from zero state: outputs (T, B, n_out, 1, L) and each LIF's spikes
    (T, B, C, 1, L), as float64 arrays."""
    import torch

    reader = READERS[name]
    lifs = [n for n, node in graph.nodes.items() if isinstance(node, nir.LIF)] if lifs is None else lifs
    spikes: dict[str, list[np.ndarray]] = {n: [] for n in lifs}

    def hook(node_name):
        return lambda module, args, out: spikes[node_name].append(reader.spikes_of(out).detach().double().numpy().copy())

    hooks = [net.get_submodule(n.replace(".", "_")).register_forward_hook(hook(n)) for n in lifs]
    state, outputs = None, []
    x = torch.as_tensor(decisions, dtype=getattr(torch, dtype))
    try:
        with torch.no_grad():
            for _ in range(int(np.asarray(graph.metadata["time_steps"]).reshape(-1)[0])):
                y, state = net(x, state)
                outputs.append(y.double().numpy())
    finally:
        for handle in hooks:
            handle.remove()
    return np.stack(outputs), {n: np.stack(steps) for n, steps in spikes.items()}


def run_reader(name: str, graph: nir.NIRGraph, decisions: np.ndarray, dtype: str = "float64",
               lifs: list[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """build_reader + run_module."""
    return run_module(name, build_reader(name, graph, dtype), graph, decisions, dtype, lifs)


def decoded_actions(outputs: np.ndarray) -> np.ndarray:
    """SEMANTICS.md decoding of (T, B, n_out, 1, L) outputs: argmax of the mean over T at token L-2."""
    return outputs[..., 0, -2].mean(axis=0).argmax(axis=-1)


def agreement(reference_outputs: np.ndarray, reference_spikes: dict, outputs: np.ndarray, spikes: dict) -> dict:
    """Measured agreement of a reader's run with the reference simulator's."""
    mismatches = {n: int((spikes[n] != reference_spikes[n]).sum()) for n in reference_spikes}
    actions, expected = decoded_actions(outputs), decoded_actions(reference_outputs)
    return {"decisions": int(outputs.shape[1]), "spiking_layers": len(reference_spikes),
            "spike_values": int(sum(s.size for s in reference_spikes.values())),
            "spikes": int(sum(s.sum() for s in reference_spikes.values())),
            "spike_mismatches": sum(mismatches.values()),
            "layers_differing": sorted(n for n, count in mismatches.items() if count),
            "actions_agreeing": int((actions == expected).sum()),
            "max_output_difference": float(np.abs(outputs - reference_outputs).max())}
