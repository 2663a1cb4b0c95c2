"""An exported NIR graph as a closed-loop policy, run by the NumPy reference simulator."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from spikingmind.errors import GraphError
from spikingmind.export.reference import ReferenceSimulator, load_graph
from spikingmind.metadata import read_policy_metadata
from spikingmind.policy import Policy, SpikeTally

SPIKING_NODES = (nir.LIF, nir.Threshold)


class NIRPolicy(Policy):
    """A spiking Decision Transformer read back from NIR, acting as docs/SEMANTICS.md decodes it.

    tokens: (B, L, D_in) channels-last from the token builder, or (L, D_in) for one window
    (then outputs/act drop the batch axis too). The graph's spikingmind metadata gives the
    decode rule and, where it names one, the env, token layout and normalisation (a graph
    without them decodes but cannot run closed loop). With `record`, every node's record of
    the last call is kept in `last_records` and the spiking nodes' spikes are tallied.
    """

    backend = "nir-reference"

    def __init__(self, graph: nir.NIRGraph | str | Path, *, source: str | None = None, record: bool = False,
                 dtype=np.float64):
        if isinstance(graph, str | Path):
            source = source or str(graph)
            graph = load_graph(graph)
        source = source or "<graph>"
        self.simulator = ReferenceSimulator(graph, dtype=dtype, source=source)
        self.graph = graph
        self.record = record
        self.last_records: dict[str, np.ndarray] | None = None
        self.tally = SpikeTally()

        sim = self.simulator
        if len(sim.input_names) != 1 or len(sim.output_names) != 1:
            raise GraphError(f"{source}: a policy needs one Input and one Output, got {sim.input_names} / "
                             f"{sim.output_names}")
        self.input_name, self.output_name = sim.input_names[0], sim.output_names[0]
        in_shape, out_shape = sim.input_shapes[self.input_name], sim.output_shapes[self.output_name]
        # (D_in, L), or (D_in, 1, L) with a unit axis between (the portable export's Conv2d grid)
        self._unit_axes = len(in_shape) - 2
        if (len(in_shape) not in (2, 3) or len(out_shape) != len(in_shape) or out_shape[-1] != in_shape[-1]
                or in_shape[-1] < 1 or any(n != 1 for n in (*in_shape[1:-1], *out_shape[1:-1]))):
            raise GraphError(f"{source}: policy needs Input (D_in, L) and Output (n_out, L), or (D_in, 1, L) and "
                             f"(n_out, 1, L), got {in_shape} and {out_shape}")
        self.token_features, self.context_tokens = in_shape[0], in_shape[-1]
        self.n_out = out_shape[0]
        if sim.time_steps is None:
            raise GraphError(f"{source}: graph metadata has no 'time_steps'")
        self.time_steps = sim.time_steps
        metadata = read_policy_metadata((graph.metadata or {}).get("spikingmind"), source, require_env=False,
                                        n_tokens=self.context_tokens, n_out=self.n_out,
                                        n_features=self.token_features)
        if metadata.decode.time_steps is not None and metadata.decode.time_steps != self.time_steps:
            raise GraphError(f"{source}: the graph's time_steps {self.time_steps} disagree with its spikingmind "
                             f"metadata's {metadata.decode.time_steps}")
        self.meta, self.decode = metadata.raw, metadata.decode
        self.spec, self.layout, self.norm = metadata.spec, metadata.layout, metadata.norm
        self.streaming = metadata.streaming
        self.carry = None
        self.last_runs: list[dict[str, np.ndarray]] = []  # a streaming step's records, one per token run

    @classmethod
    def from_file(cls, path, record: bool = True) -> "NIRPolicy":
        return cls(load_graph(path), source=str(path), record=record)

    def outputs(self, tokens: np.ndarray) -> np.ndarray:
        """Mean over T of the Output at the decision token: (B, n_out), float64."""
        tokens = np.asarray(tokens, dtype=self.simulator.dtype)
        single = tokens.ndim == 2
        batch = tokens[None] if single else tokens
        if batch.ndim != 3 or batch.shape[1:] != (self.context_tokens, self.token_features):
            raise ValueError(
                f"tokens have shape {tokens.shape}; expected (B, {self.context_tokens}, "
                f"{self.token_features}) channels-last"
            )
        channels_first = np.ascontiguousarray(batch.transpose(0, 2, 1))  # (B, D_in, L)
        result = self.simulator.run(
            channels_first.reshape(len(batch), self.token_features, *([1] * self._unit_axes), self.context_tokens),
            time_steps=self.time_steps,
            record=self.record,
        )
        self.last_records = result.records
        if self.record and result.records:
            self.tally.add({name: values for name, values in result.records.items()
                            if isinstance(self.graph.nodes[name], SPIKING_NODES)}, len(batch))
        out = result.outputs[self.output_name]  # (T, B, n_out, L) or (T, B, n_out, 1, L)
        outputs = self.decode.decision_outputs(out.reshape(*out.shape[:3], -1))  # -> (B, n_out)
        return outputs[0] if single else outputs

    def begin(self, batch: int) -> None:
        self.carry = self.simulator.initial_carry(batch)

    def step_outputs(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A streaming graph: one run per new token (B', n, F), in order, from the carried state
        of episodes `rows`; the outputs of the last token's run (B', n_out), float64."""
        tokens = np.asarray(tokens, dtype=self.simulator.dtype)
        carry = self.carry.select(rows)
        self.last_runs = []
        for index in range(tokens.shape[1]):
            run = self.simulator.run(np.ascontiguousarray(tokens[:, index, :, None]), time_steps=self.time_steps,
                                     record=self.record, carry=carry)
            carry = run.carry
            if self.record and run.records:
                self.last_runs.append(run.records)
                # spikes per decision: every run of a decision counts toward it
                self.tally.add({name: values for name, values in run.records.items()
                                if isinstance(self.graph.nodes[name], SPIKING_NODES)},
                               len(tokens) if index == tokens.shape[1] - 1 else 0)
        self.carry.put(rows, carry)
        out = run.outputs[self.output_name]  # (T, B, n_out, 1)
        return self.decode.decision_outputs(out)

    def spike_stats(self) -> dict:
        return self.tally.stats()


def load_policy(path: Path, fixed_point: bool = False) -> NIRPolicy:
    """Registry loader (`spikingmind.export.BACKENDS["reference"]`): a .nir file, or a checkpoint
    folder exported in memory, in the reference simulator, recording spikes. `fixed_point` is
    Lava's and does not apply."""
    from spikingmind.export.nir import load_or_export_graph

    if Path(path).is_dir():
        return NIRPolicy(load_or_export_graph(path), source=str(path), record=True)
    return NIRPolicy.from_file(path)
