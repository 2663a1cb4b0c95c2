"""The metadata an exported NIR graph carries: everything a stranger needs to run the policy
from the .nir file alone (written here, read back by `spikingmind.metadata`)."""

from __future__ import annotations

import nir

import spikingmind
from spikingmind import units
from spikingmind.export.nir.emitters import OUTPUT
from spikingmind.metadata import parse_metadata


def export_metadata(ckpt) -> dict:
    """Everything a stranger needs to run the policy from the .nir file alone."""
    meta = ckpt.meta
    spec, layout = ckpt.spec, ckpt.layout
    return {
        "format": "spikingmind-nir",
        "format_version": 1,
        "spikingmind_version": spikingmind.__version__,
        "nir_version": nir.__version__,
        "dt": units.DT,
        "time_steps": ckpt.config.time_steps,
        "neuron": {
            "discretization": "forward Euler of NIR LIF with step dt: v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak "
                              "+ (dt/tau) r I[t]; exported so that this is v[t] = beta v[t-1] + I[t]",
            "reset": "to v_reset (0) at the step of the spike",
            "threshold_compare": ">",
            "state_init": "all membranes 0 at the start of every decision",
            "edge_summation": "inputs of a node are summed in edge-list order",
            "time": "zero delay: every node is evaluated once per step in topological order",
        },
        # flat keys: enough to decode actions without the env (spikingmind.metadata reads both forms)
        "action_kind": spec.action_kind,
        "action_low": list(spec.action_low),
        "action_high": list(spec.action_high),
        "context_length": layout.context_length,
        "token_features": layout.n_features,
        "env": meta["env"],
        "token_layout": meta["token_layout"],
        "normalization": meta["normalization"],
        "model": meta["model"],
        "decode": {
            "output_node": OUTPUT,
            "reduce": "mean over the time_steps steps",
            "token_index": layout.decision_token,
            "action": "argmax" if spec.discrete else "action_low + (tanh(y) + 1) / 2 * (action_high - action_low)",
            "action_low": list(spec.action_low),
            "action_high": list(spec.action_high),
        },
        "dataset": meta.get("dataset", {}),
        "source_checkpoint_versions": meta.get("versions", {}),
    }



def graph_metadata(graph: nir.NIRGraph, source: str = "graph") -> dict:
    """The spikingmind metadata of an exported graph as a dict (GraphError naming `source`)."""
    return parse_metadata(graph.metadata.get("spikingmind"), source)
