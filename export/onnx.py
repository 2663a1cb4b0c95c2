"""`export --target onnx`: the ANN twin as an ONNX model that ONNX Runtime runs.

The graph comes from PyTorch's torch.export-based exporter (`torch.onnx.export(dynamo=True)`,
opset 18): it gives a clean graph of MatMul / Add / LayerNormalization / Softmax / Erf
nodes, where the legacy TorchScript exporter leaves Shape/Gather/Concat chains for the
dynamic batch axis. Input `tokens` (batch, L, F) float32, output `action_outputs`
(batch, L, n_out); the batch axis is dynamic. Everything a stranger needs to run the policy
(env, token layout, normalisation, decoding) is stored as JSON in the model's
`metadata_props["spikingmind"]`. Before the file appears, ONNX Runtime's outputs are
checked against PyTorch's on random and realistic token windows.
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

import spikingmind
from spikingmind.errors import CheckpointError, ExportError, GraphError
from spikingmind.io import atomic_path, refuse_overwrite

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "tokens", "action_outputs"
METADATA_KEY = "spikingmind"
EXPORTER = "torch.onnx.export(dynamo=True)"
TOLERANCE = 1e-5  # max |ORT - PyTorch|, relative to the output scale where that exceeds 1
NIR_ONLY_KEYS = ("nir_version", "dt", "time_steps", "neuron")


def export_metadata(ckpt) -> dict:
    """The NIR export's metadata (`spikingmind.export.nir.export_metadata`) adapted to the ANN:
    no SNN time axis, no neuron semantics; decoding reads the output at the last state token."""
    from spikingmind.export.nir import export_metadata as nir_metadata

    meta = {key: value for key, value in nir_metadata(ckpt).items() if key not in NIR_ONLY_KEYS}
    meta["decode"].pop("reduce", None)
    meta["decode"]["output_node"] = OUTPUT_NAME
    meta["decode"]["shape"] = ["batch", ckpt.layout.n_tokens, ckpt.model.n_out]
    return {
        **meta,
        "format": "spikingmind-onnx",
        "format_version": 1,
        "spikingmind_version": spikingmind.__version__,
        "onnx": {"opset": OPSET, "exporter": EXPORTER, "torch_version": torch.__version__},
        "input": {"name": INPUT_NAME, "shape": ["batch", ckpt.layout.n_tokens, ckpt.layout.n_features],
                  "dtype": "float32", "layout": "token windows per docs/SEMANTICS.md (no SNN time axis)"},
        "time_steps": None,  # the ANN twin has no SNN time axis: one evaluation per decision
    }


def sample_windows(layout, norm, spec, n_windows: int, seed: int = 0) -> np.ndarray:
    """Realistic token windows (n, L, F) float32 without running the env: observations drawn
    around the normalisation statistics, valid actions, falling returns-to-go, left padding."""
    from spikingmind.tokens import step_tokens, window_indices, windows

    rng = np.random.default_rng(seed)
    k = layout.context_length
    steps = n_windows * k
    observations = rng.normal(np.asarray(norm.obs_mean), np.asarray(norm.obs_std), (steps, layout.obs_dim))
    if layout.discrete:
        actions = rng.integers(0, layout.act_dim, steps)
    else:
        low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
        actions = rng.uniform(low, high, (steps, layout.act_dim))
    timesteps = np.tile(np.arange(k), n_windows)
    returns_to_go = spec.target_return * (1.0 - timesteps / norm.max_episode_steps)
    rows = step_tokens(layout, norm, observations.astype(np.float32), actions, returns_to_go, timesteps)
    starts = np.arange(n_windows) * k
    ends = starts + rng.integers(0, k, n_windows)  # window i holds 1..K steps of its episode
    index, valid = window_indices(ends, starts, k)
    return windows(rows, index, valid).astype(np.float32)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs optional-dependency notes (torchvision) and deprecation warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def model_to_onnx(model, metadata: dict):
    """The ANN twin (float32, eval mode) as a checked onnx.ModelProto with `metadata` attached."""
    import onnx

    example = torch.zeros(2, 3 * model.cfg.context_length, model.n_features)  # batch 2: keeps the axis symbolic
    was_training = model.training
    model.eval()
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes={"tokens": {0: torch.export.Dim("batch")}},
                verbose=False, optimize=True,
            )
    except Exception as error:  # the exporter raises many types; name it and stop
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.onnx.export failed: {first}") from error
    finally:
        model.train(was_training)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"exported ONNX model fails onnx.checker: {str(error).splitlines()[0]}") from None
    return proto


def verify_against_torch(path: Path, ckpt, n_random: int = 4, n_realistic: int = 16) -> float:
    """Max |ORT - PyTorch| over random and realistic windows (batch 1 and batched);
    ExportError if above TOLERANCE."""
    rng = np.random.default_rng(0)
    layout = ckpt.layout
    batches = [
        rng.normal(size=(1, layout.n_tokens, layout.n_features)).astype(np.float32),
        rng.normal(size=(n_random, layout.n_tokens, layout.n_features)).astype(np.float32),
        sample_windows(layout, ckpt.norm, ckpt.spec, 1, seed=1),
        sample_windows(layout, ckpt.norm, ckpt.spec, n_realistic, seed=2),
    ]
    session = _session(path, intra_op_threads=1)
    worst = 0.0
    for windows in batches:
        with torch.inference_mode():
            expected = ckpt.model(torch.from_numpy(windows)).numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]
        if actual.shape != expected.shape:
            raise ExportError(f"{path}: ONNX Runtime output shape {actual.shape}, PyTorch {expected.shape}")
        error = float(np.abs(actual - expected).max())
        worst = max(worst, error)
        if not error <= TOLERANCE * max(1.0, float(np.abs(expected).max())):
            raise ExportError(f"{path}: ONNX Runtime differs from PyTorch by {error:.3g} "
                              f"(tolerance {TOLERANCE:g}) on windows of batch {len(windows)}")
    return worst


def export(checkpoint, out, force: bool = False) -> Path:
    """Registry entry point: ANN-twin checkpoint folder -> ann.onnx (verified in ONNX Runtime)."""
    from spikingmind.checkpoint import load_checkpoint, read_meta

    refuse_overwrite(out, force)
    if read_meta(checkpoint).get("model", {}).get("kind") == "snn":
        raise ExportError(f"{checkpoint} is a spiking DT checkpoint (model kind 'snn'); ONNX export is for the "
                          "ANN twin (kind 'ann'): export spiking checkpoints with --target nir")
    ckpt = load_checkpoint(checkpoint, dtype=torch.float32)
    proto = model_to_onnx(ckpt.model, export_metadata(ckpt))
    import onnx

    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save_model(proto, str(tmp))
        verify_against_torch(tmp, ckpt)  # the file only appears if it passes
    return Path(out)


# ---------------------------------------------------------------------------- closed-loop policy


def _session(path: Path, intra_op_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def read_onnx_metadata(session, source: str) -> dict:
    """The spikingmind metadata of a loaded ONNX model; GraphError naming the file otherwise."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise GraphError(f"{source}: no '{METADATA_KEY}' metadata; not exported by spikingmind")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as error:
        raise GraphError(f"{source}: corrupt spikingmind metadata ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != "spikingmind-onnx":
        raise GraphError(f"{source}: spikingmind metadata is not of format 'spikingmind-onnx'")
    return meta


class OnnxPolicy:
    """An exported ANN twin run by ONNX Runtime (CPU), as a closed-loop policy.

    `intra_op_threads` sets ONNX Runtime's intra-op thread pool (1-2 is fastest for one decision).
    """

    def __init__(self, path: str | Path, intra_op_threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist")
        try:
            self.session = _session(path, intra_op_threads)
        except Exception as error:  # ORT raises InvalidProtobuf / Fail / ... for damaged files
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise GraphError(f"{path}: not a readable ONNX model ({first})") from None
        from spikingmind.rollout import policy_context

        self.path = path
        self.meta = read_onnx_metadata(self.session, str(path))
        self.spec, self.layout, self.norm = policy_context(self.meta, str(path))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise GraphError(f"{path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', found "
                             f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
        shape = inputs[0].shape
        if list(shape[1:]) != [self.layout.n_tokens, self.layout.n_features]:
            raise GraphError(f"{path}: input shape {shape} does not match the token layout "
                             f"(batch, {self.layout.n_tokens}, {self.layout.n_features})")

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        """windows (B, L, F) -> decision-token outputs (B, n_out), float64."""
        feed = {INPUT_NAME: np.ascontiguousarray(windows, dtype=np.float32)}
        out = self.session.run([OUTPUT_NAME], feed)[0]  # (B, L, n_out)
        return out[:, self.layout.decision_token].astype(np.float64)

    def act(self, windows: np.ndarray) -> np.ndarray:
        from spikingmind.rollout import decode_for_env

        return decode_for_env(self.outputs(windows), self.spec)
