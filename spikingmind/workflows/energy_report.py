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
from spikingmind.energy.snn_counts import add_runs, carried_cone, count_snn, decision_cone, merge_counts
from spikingmind.errors import ConfigError
from spikingmind.export.nir import NIRPolicy, graph_metadata, load_or_export_graph
from spikingmind.export.onnx import INPUT_NAME, METADATA_KEY, export_metadata, model_to_onnx
from spikingmind.export.reference import ReferenceSimulator
from spikingmind.metadata import is_streaming, parse_metadata, read_policy_metadata
from spikingmind.rollout import record_decision_inputs, run_episodes
from spikingmind.seeds import evaluation_seeds

#: Decisions simulated per chunk: bounds the memory that full per-node records need.
RECORD_CHUNK = 64
#: A streaming decision in steady state reads 3 new tokens (action, return-to-go, state); an
#: episode's first decision reads 2 and is not counted, on either side.
STREAM_NEW_TOKENS = 3


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


class _CountingStream(NIRPolicy):
    """A streaming graph's closed-loop decisions, counted as they happen: each steady-state
    decision is the sum of its 3 runs (one per new token: the previous action, the return-to-go,
    the state).
    Decision-only, a run computes what the runs after it read (`carried_cone`) and the state
    token's run also the decision; full-window, every run computes every node."""

    def __init__(self, graph, accountings, max_decisions: int | None = None, source: str = "graph"):
        super().__init__(graph, record=True, source=source)
        self.accountings, self.max_decisions = accountings, max_decisions
        self.parts: dict[str, list] = {name: [] for name in accountings}
        self.decisions = 0
        self._input_names = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
        self._cones = None

    def step_outputs(self, tokens, rows):
        outputs = super().step_outputs(tokens, rows)
        if tokens.shape[1] != STREAM_NEW_TOKENS or \
                (self.max_decisions is not None and self.decisions >= self.max_decisions):
            return outputs  # an episode's first decision (2 runs) is not a steady-state one
        runs = []
        for index, records in enumerate(self.last_runs):
            records = dict(records)
            steps = next(iter(records.values())).shape[0]
            token = np.ascontiguousarray(np.asarray(tokens, dtype=self.simulator.dtype)[:, index, :, None])
            for name in self._input_names:
                records.setdefault(name, np.broadcast_to(token, (steps, *token.shape)))
            runs.append(records)
        if self._cones is None:
            shapes = {name: values.shape[2:] for name, values in runs[0].items()}
            carried = carried_cone(self.graph, shapes)
            decision = decision_cone(self.graph, 0, shapes)
            self._cones = (carried, {name: carried[name] | decision[name] for name in carried})
        carried, deciding = self._cones
        for name in self.accountings:
            counted = [count_snn(self.graph, records,
                                 None if name == "full_window" else deciding if i == len(runs) - 1 else carried)
                       for i, records in enumerate(runs)]
            self.parts[name].append(add_runs(counted))
        self.decisions += len(rows)
        return outputs


def count_snn_streaming(graph, episodes: int, seed: int = 0, max_decisions: int | None = None,
                        accountings=("decision_only", "full_window"), source: str = "graph") -> tuple[dict, int]:
    """SNN counts of a streaming graph over closed-loop episodes on evaluation seeds, and the
    number of decisions counted (every steady-state one, or the first batches up to `max_decisions`)."""
    policy = _CountingStream(graph, accountings, max_decisions, source)
    run_episodes(policy, evaluation_seeds(episodes, seed))
    return {name: merge_counts(parts) for name, parts in policy.parts.items()}, policy.decisions


def _our_metadata(model) -> dict:
    """The spikingmind metadata of an ONNX file of ours; {} for a foreign or damaged one."""
    raw = {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)
    try:
        return parse_metadata(raw, "onnx", ConfigError)
    except ConfigError:  # foreign or damaged metadata: a full graph of someone else's
        return {}


def _accounting_of(meta: dict) -> str:
    decode = meta.get("decode")
    return "decision_only" if isinstance(decode, dict) and decode.get("decision_only") else "full_window"


def _count_stream_step(model, label: str) -> dict:
    """A streaming twin's step graph, counted at a steady-state decision (3 new tokens, a full
    cache): the same decision in both accountings (its graph computes nothing else)."""
    tokens = next(i for i in model.graph.input if i.name == INPUT_NAME)
    features = tokens.type.tensor_type.shape.dim[2].dim_value
    counted = count_onnx(model, {INPUT_NAME: (1, STREAM_NEW_TOKENS, features)}, label=label)
    return {"decision_only": counted, "full_window": counted}


def baseline_counts(baselines) -> dict:
    """ANN counts per accounting from `baselines`: ONNX files (full or --decision-only, told
    apart by their metadata) or ANN checkpoint folders (both graphs exported in memory). A
    streaming twin's step graph counts for both accountings."""
    counts: dict = {}
    for baseline in baselines:
        path = Path(baseline)
        if path.is_dir():
            ckpt = load_checkpoint(path)
            if ckpt.config.kind != "ann":
                raise ConfigError(f"{path}: a baseline checkpoint must be the ANN twin, not a {ckpt.config.kind} model")
            if ckpt.config.streaming:
                counts.update(_count_stream_step(model_to_onnx(ckpt.model, export_metadata(ckpt)),
                                                 f"{path} (streaming step graph)"))
                continue
            for name, decision_only in (("full_window", False), ("decision_only", True)):
                proto = model_to_onnx(ckpt.model, export_metadata(ckpt, decision_only), decision_only)
                counts[name] = count_onnx(proto, label=f"{path} ({name.replace('_', '-')} graph)")
            continue
        model = load_onnx(path)  # read once: its metadata is checked, its graph counted
        meta = _our_metadata(model)
        if is_streaming(meta):
            counts.update(_count_stream_step(model, str(path)))
            continue
        name = _accounting_of(meta)
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
    policy = NIRPolicy(graph, source=str(source))
    if policy.streaming:
        snn_counts, decisions = count_snn_streaming(graph, episodes, seed, max_decisions, source=str(source))
    else:
        inputs = np.asarray(record_decision_inputs(policy, episodes, seed))  # (N, D_in, L)
        if max_decisions is not None:
            inputs = inputs[:max_decisions]
        snn_counts, decisions = count_snn_on_inputs(graph, inputs, source=str(source)), len(inputs)
    order = ["decision_only", "full_window"] if "decision_only" in ann_counts or not ann_counts else \
        ["full_window", "decision_only"]
    accountings = [Accounted(name, snn_counts[name], ann_counts.get(name)) for name in order]
    return build_report(
        accountings, snn_profiles, ann_profiles,
        provenance={"source": str(source), "baselines": [str(b) for b in baselines],
                    "episodes": episodes, "seed": seed, "decisions": int(decisions),
                    "env": graph_metadata(graph, str(source))["env"]["env_id"]},
    )
