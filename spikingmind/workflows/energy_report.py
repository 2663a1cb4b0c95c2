"""From a policy to an energy report: record the spikes it fires on real closed-loop
decisions (reference simulator), count them under both accountings, count the ANN baseline's
graphs, price both. Shared by `energy-report` and the ablation sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikingmind.checkpoint import load_checkpoint
from spikingmind.energy.onnx_counts import count_onnx, load_onnx
from spikingmind.energy.profiles import load_profile
from spikingmind.energy.report import Accounted, EnergyReport, build_report
from spikingmind.energy.snn_counts import count_snn, decision_cone, merge_counts
from spikingmind.errors import ConfigError
from spikingmind.export.nir import NIRPolicy, graph_metadata, load_or_export_graph
from spikingmind.export.onnx import METADATA_KEY, export_metadata, model_to_onnx
from spikingmind.export.reference import ReferenceSimulator
from spikingmind.metadata import parse_metadata, read_policy_metadata
from spikingmind.rollout import record_decision_inputs

#: Decisions simulated per chunk: bounds the memory that full per-node records need.
RECORD_CHUNK = 64


def count_snn_on_inputs(graph, inputs: np.ndarray, accountings=("decision_only", "full_window"),
                        source: str = "graph") -> dict:
    """SNN counts of `graph` (read from the file `source`) over decision inputs (N, D_in, L),
    simulated in chunks, for each accounting: {"decision_only": SNNCounts (the decision
    token's cone), "full_window": ...}."""
    simulator = ReferenceSimulator(graph, source=source)
    input_names = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    token = int(read_policy_metadata(graph.metadata.get("spikingmind"), source, require_env=False).decode.token_index)
    parts: dict[str, list] = {name: [] for name in accountings}
    cone = None
    for start in range(0, len(inputs), RECORD_CHUNK):
        chunk = inputs[start:start + RECORD_CHUNK]
        records = dict(simulator.run(chunk, record=True).records)
        for name in input_names:  # the Input's record is the decision input at every step
            if name not in records:
                steps = next(iter(records.values())).shape[0]
                records[name] = np.broadcast_to(chunk, (steps, *chunk.shape))
        if cone is None:
            cone = decision_cone(graph, token, {name: values.shape[2:] for name, values in records.items()})
        for name in accountings:
            parts[name].append(count_snn(graph, records, cone if name == "decision_only" else None))
    return {name: merge_counts(counted) for name, counted in parts.items()}


def _onnx_is_decision_only(model) -> bool:
    """Whether an ONNX file of ours holds the decision token's graph alone (foreign files: no)."""
    raw = {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)
    try:
        decode = parse_metadata(raw, "onnx", ConfigError).get("decode")
    except ConfigError:  # foreign or damaged metadata: a full graph of someone else's
        return False
    return bool(isinstance(decode, dict) and decode.get("decision_only"))


def baseline_counts(baselines) -> dict:
    """ANN counts per accounting from `baselines`: ONNX files (full or --decision-only, told
    apart by their metadata) or ANN checkpoint folders (both graphs exported in memory)."""
    counts: dict = {}
    for baseline in baselines:
        path = Path(baseline)
        if path.is_dir():
            ckpt = load_checkpoint(path)
            if ckpt.config.kind != "ann":
                raise ConfigError(f"{path}: a baseline checkpoint must be the ANN twin, not a {ckpt.config.kind} model")
            for name, decision_only in (("full_window", False), ("decision_only", True)):
                proto = model_to_onnx(ckpt.model, export_metadata(ckpt, decision_only), decision_only)
                counts[name] = count_onnx(proto, label=f"{path} ({name.replace('_', '-')} graph)")
            continue
        model = load_onnx(path)  # read once: its metadata is checked, its graph counted
        name = "decision_only" if _onnx_is_decision_only(model) else "full_window"
        if name in counts:
            raise ConfigError(f"{path}: a second {name.replace('_', '-')} baseline; give one full and one "
                              "--decision-only ONNX graph, or the ANN checkpoint")
        counts[name] = count_onnx(model, label=str(path))
    return counts


def estimate_energy(source, profiles=("loihi",), baselines=(),
                    baseline_profiles: list[str] | tuple[str, ...] = ("cmos45nm-fp32", "cmos45nm-int8"),
                    episodes: int = 5, seed: int = 0, max_decisions: int | None = None) -> EnergyReport:
    """The energy report of a checkpoint or .nir (SNN) against its ANN twin (ONNX files or its checkpoint).

    Decisions come from closed-loop episodes of the exported graph on evaluation seeds. The
    verdict's accounting is decision-only when a decision-only ANN graph is given (or the ANN
    checkpoint), else full-window; both are reported where both sides have them.
    """
    if isinstance(profiles, str):
        profiles = [profiles]
    if isinstance(baselines, (str, Path)):
        baselines = [baselines]
    snn_profiles = [load_profile(name) for name in profiles]
    ann_counts = baseline_counts(baselines)
    ann_profiles = [load_profile(name) for name in baseline_profiles] if ann_counts else []
    graph = load_or_export_graph(source)
    inputs = np.asarray(record_decision_inputs(NIRPolicy(graph, source=str(source)), episodes, seed))  # (N, D_in, L)
    if max_decisions is not None:
        inputs = inputs[:max_decisions]
    snn_counts = count_snn_on_inputs(graph, inputs, source=str(source))
    order = ["decision_only", "full_window"] if "decision_only" in ann_counts or not ann_counts else \
        ["full_window", "decision_only"]
    accountings = [Accounted(name, snn_counts[name], ann_counts.get(name)) for name in order]
    return build_report(
        accountings, snn_profiles, ann_profiles,
        provenance={"source": str(source), "baselines": [str(b) for b in baselines],
                    "episodes": episodes, "seed": seed, "decisions": int(len(inputs)),
                    "env": graph_metadata(graph, str(source))["env"]["env_id"]},
    )
