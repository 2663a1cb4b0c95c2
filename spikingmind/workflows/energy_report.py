"""From a policy to an energy report: record the spikes it fires on real closed-loop
decisions (reference simulator), count them, count the ONNX baseline, price both. Shared by
`energy-report` and the ablation sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikingmind.energy.onnx_counts import count_onnx, load_onnx
from spikingmind.energy.profiles import load_profile
from spikingmind.energy.report import EnergyReport, build_report
from spikingmind.energy.snn_counts import SNNCounts, count_snn, merge_counts
from spikingmind.errors import ConfigError
from spikingmind.export.nir import NIRPolicy, graph_metadata, load_or_export_graph
from spikingmind.export.onnx import METADATA_KEY
from spikingmind.export.reference import ReferenceSimulator
from spikingmind.metadata import parse_metadata
from spikingmind.rollout import record_decision_inputs

#: Decisions simulated per chunk: bounds the memory that full per-node records need.
RECORD_CHUNK = 64


def count_snn_on_inputs(graph, inputs: np.ndarray) -> SNNCounts:
    """SNN counts of `graph` over decision inputs (N, D_in, L), simulated in chunks."""
    simulator = ReferenceSimulator(graph)
    input_names = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    parts = []
    for start in range(0, len(inputs), RECORD_CHUNK):
        chunk = inputs[start:start + RECORD_CHUNK]
        records = dict(simulator.run(chunk, record=True).records)
        for name in input_names:  # the Input's record is the decision input at every step
            if name not in records:
                steps = next(iter(records.values())).shape[0]
                records[name] = np.broadcast_to(chunk, (steps, *chunk.shape))
        parts.append(count_snn(graph, records))
    return merge_counts(parts)


def refuse_decision_only(model, baseline: Path) -> None:
    """The SNN is counted on its full graph (every token, as NIR exports it): a baseline
    (loaded ONNX `model` of the file `baseline`) exported with --decision-only would be
    counted on less work, so it is refused. ONNX files not written by spikingmind pass."""
    raw = {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)
    try:
        decode = parse_metadata(raw, str(baseline), ConfigError).get("decode")
    except ConfigError:  # foreign or damaged metadata: nothing to refuse on
        return
    if isinstance(decode, dict) and decode.get("decision_only"):
        raise ConfigError(f"{baseline}: a --decision-only ONNX graph; the SNN is counted on its full graph, so "
                          "compare against the full one (export --target onnx without --decision-only)")


def estimate_energy(source, profile: str = "loihi", baseline: Path | None = None,
                    baseline_profiles: list[str] | tuple[str, ...] = ("cmos45nm-fp32", "cmos45nm-int8"),
                    episodes: int = 5, seed: int = 0, max_decisions: int | None = None) -> EnergyReport:
    """The energy report of a checkpoint or .nir (SNN) against an ONNX baseline (ANN twin).

    Decisions come from closed-loop episodes of the exported graph on evaluation seeds.
    """
    snn_profile = load_profile(profile)
    ann_profiles = [load_profile(name) for name in baseline_profiles] if baseline is not None else []
    ann_counts = None
    if baseline is not None:
        model = load_onnx(baseline)  # read once: its metadata is checked, its graph counted
        refuse_decision_only(model, baseline)
        ann_counts = count_onnx(model, label=str(baseline))
    graph = load_or_export_graph(source)
    inputs = np.asarray(record_decision_inputs(NIRPolicy(graph), episodes, seed))  # (N, D_in, L)
    if max_decisions is not None:
        inputs = inputs[:max_decisions]
    return build_report(
        count_snn_on_inputs(graph, inputs), snn_profile, ann_counts, ann_profiles,
        provenance={"source": str(source), "baseline": str(baseline) if baseline else None,
                    "episodes": episodes, "seed": seed, "decisions": int(len(inputs)),
                    "env": graph_metadata(graph, str(source))["env"]["env_id"]},
    )
