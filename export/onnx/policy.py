"""An exported ONNX graph (ANN twin or spiking DT) as a closed-loop policy in ONNX Runtime (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikingmind.errors import CheckpointError, GraphError
from spikingmind.export.onnx.metadata import INPUT_NAME, OUTPUT_NAME, STREAM_INPUTS, STREAM_OUTPUTS, read_metadata
from spikingmind.metadata import read_policy_metadata
from spikingmind.policy import Policy


def open_session(path: Path, intra_op_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxPolicy(Policy):
    """An exported ANN twin or spiking DT run by ONNX Runtime (CPU), as a closed-loop policy.

    `intra_op_threads` sets ONNX Runtime's intra-op thread pool (1-2 is fastest for one decision).
    `model_kind` is "ann" or "snn"; an SNN graph keeps its spikes inside, so `spike_stats()`
    says that spikes per decision are not available from it.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, intra_op_threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist")
        try:
            self.session = open_session(path, intra_op_threads)
        except Exception as error:  # ORT raises InvalidProtobuf / Fail / ... for damaged files
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise GraphError(f"{path}: not a readable ONNX model ({first})") from None
        self.path = path
        metadata = read_policy_metadata(read_metadata(self.session, str(path)), str(path))
        self.meta, self.decode = metadata.raw, metadata.decode
        self.spec, self.layout, self.norm = metadata.spec, metadata.layout, metadata.norm
        self.streaming = metadata.streaming
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        names_in, names_out = (list(STREAM_INPUTS), list(STREAM_OUTPUTS)) if self.streaming else \
            ([INPUT_NAME], [OUTPUT_NAME])
        if [i.name for i in inputs] != names_in or [o.name for o in outputs][:len(names_out)] != names_out:
            raise GraphError(f"{path}: expected inputs {names_in} and outputs {names_out}, found "
                             f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        shape = inputs[0].shape
        tokens = "new_tokens" if self.streaming else self.layout.n_tokens
        if list(shape[1:]) != [tokens, self.layout.n_features]:
            raise GraphError(f"{path}: input shape {shape} does not match the token layout "
                             f"(batch, {tokens}, {self.layout.n_features})")
        self.model_kind = metadata.model_kind or "ann"
        self._cache_shapes = {i.name: i.shape[1:] for i in inputs[1:]}
        self._cache: list[np.ndarray] = []

    def spike_stats(self) -> dict:
        """Empty for the ANN twin; for an SNN graph, spikes per decision marked absent (not computed)."""
        if self.model_kind != "snn":
            return {}
        return {"spikes_per_decision": None,
                "spikes_per_decision_note": "not available from ONNX Runtime: spikes stay inside the graph; "
                                            "evaluate the checkpoint or the .nir file to count them"}

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        """windows (B, L, F) -> decision-token outputs (B, n_out), float64."""
        feed = {INPUT_NAME: np.ascontiguousarray(windows, dtype=np.float32)}
        out = self.session.run([OUTPUT_NAME], feed)[0]  # (B, L, n_out), or (B, n_out) from a decision-only graph
        return (out if out.ndim == 2 else out[:, self.decode.token_index]).astype(np.float64)


    def begin(self, batch: int) -> None:
        """A streaming step graph: `batch` episodes start with empty caches."""
        keys = np.zeros((batch, *self._cache_shapes["keys"]), dtype=np.float32)
        self._cache = [keys, keys.copy(), np.zeros((batch, *self._cache_shapes["valid"]), dtype=bool)]

    def step_outputs(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The step graph on the new tokens (B', n, F) of episodes `rows`, from and into their
        cached keys and values; the decisions' outputs (B', n_out), float64."""
        feed = {INPUT_NAME: np.ascontiguousarray(tokens, dtype=np.float32)}
        feed.update({name: held[rows] for name, held in zip(STREAM_INPUTS[1:], self._cache)})
        out, *cache = self.session.run(list(STREAM_OUTPUTS), feed)
        for held, new in zip(self._cache, cache):
            held[rows] = new
        return out.astype(np.float64)


def load_policy(path: Path, fixed_point: bool = False) -> OnnxPolicy:
    """Registry loader (`spikingmind.export.BACKENDS["onnxruntime"]`): a .onnx file in ONNX
    Runtime. `fixed_point` is Lava's and does not apply."""
    return OnnxPolicy(path)
