"""`export --target onnx`: the ANN twin, or the spiking DT's inference graph, as an ONNX model
that ONNX Runtime runs.

Spiking DT: `SnnGraphBuilder` writes the inference graph directly (T steps unrolled, LIF as
Where/Mul/Add/Greater, BatchNorm folded, the causal mix as one MatMul with the (C, L, L)
decay matrix); same input/output names and metadata format as the ANN's, plus `time_steps`,
the neuron rules, `graph.inference_only` and the spike-agreement numbers measured at export
(`verify_snn_against_torch`). It is not a training graph and not a NIR graph.

ANN twin: the graph comes from PyTorch's torch.export-based exporter (`torch.onnx.export(dynamo=True)`,
opset 18): it gives a clean graph of MatMul / Add / LayerNormalization / Softmax / Erf
nodes, where the legacy TorchScript exporter leaves Shape/Gather/Concat chains for the
dynamic batch axis. Input `tokens` (batch, L, F) float32, output `action_outputs`
(batch, L, n_out); the batch axis is dynamic. `--decision-only` exports
`DecisionTransformer.decide` instead (either model): output (batch, n_out), the decision
token's alone. Everything a stranger needs to run the policy (env, token layout,
normalisation, decoding) is stored as JSON in the model's
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
SNN_EXPORTER = "spikingmind.export.onnx.SnnGraphBuilder (onnx.helper)"
TOLERANCE = 1e-5  # max |ORT - PyTorch|, relative to the output scale where that exceeds 1
NIR_ONLY_KEYS = ("nir_version", "dt", "time_steps", "neuron")


def export_metadata(ckpt, decision_only: bool = False) -> dict:
    """The NIR export's metadata (`spikingmind.export.nir.export_metadata`) adapted to ONNX:
    decoding reads `action_outputs` at the last state token. The ANN twin has no SNN time axis
    and no neuron semantics; the spiking DT keeps `time_steps`, `dt` and the neuron rules and
    says that its graph is an inference-only unrolling whose spikes equal PyTorch's."""
    from spikingmind.export.nir import export_metadata as nir_metadata

    spiking = ckpt.config.kind == "snn"
    dropped = ("nir_version",) if spiking else NIR_ONLY_KEYS
    meta = {key: value for key, value in nir_metadata(ckpt).items() if key not in dropped}
    meta["decode"]["output_node"] = OUTPUT_NAME
    meta["decode"]["shape"] = ["batch", ckpt.layout.n_tokens, ckpt.model.n_out]
    if decision_only:
        meta["decode"]["shape"] = ["batch", ckpt.model.n_out]
        meta["decode"]["decision_only"] = ("the graph computes the decision token's output alone (the last block "
                                           "only where that token reads it: DecisionTransformer.decide)")
    if not spiking:
        meta["decode"].pop("reduce", None)
        meta["time_steps"] = None  # the ANN twin has no SNN time axis: one evaluation per decision
    else:
        meta["decode"]["reduce"] = "mean over the time_steps steps (inside the graph)"
        meta["graph"] = {
            "model": "snn", "time_steps": ckpt.config.time_steps, "inference_only": True,
            "unrolled": "T steps unrolled in the graph; LIF as Where/Mul/Add/Greater, AND as And, BatchNorm "
                        "folded, the causal mix as a MatMul with the (C, L, L) decay matrix",
            "spikes": "equal PyTorch's (torch.inference_mode, float32) up to float32 rounding; the measured "
                      "share of differing spikes is in 'verification'",
            "spikes_per_decision": "not available: spikes are internal to the graph",
        }
    return {
        **meta,
        "format": "spikingmind-onnx",
        "format_version": 1,
        "spikingmind_version": spikingmind.__version__,
        "onnx": {"opset": OPSET, "exporter": SNN_EXPORTER if spiking else EXPORTER, "torch_version": torch.__version__},
        "input": {"name": INPUT_NAME, "shape": ["batch", ckpt.layout.n_tokens, ckpt.layout.n_features],
                  "dtype": "float32", "layout": "token windows per docs/SEMANTICS.md (no SNN time axis)"},
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


class _Decide(torch.nn.Module):
    """`model.decide` as a module's forward, for the exporter."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.decide(tokens)


def model_to_onnx(model, metadata: dict, decision_only: bool = False):
    """The ANN twin (float32, eval mode) as a checked onnx.ModelProto with `metadata` attached;
    with `decision_only` the graph of `model.decide` (output (batch, n_out))."""
    import onnx

    example = torch.zeros(2, 3 * model.cfg.context_length, model.n_features)  # batch 2: keeps the axis symbolic
    was_training = model.training
    model.eval()
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                _Decide(model) if decision_only else model, (example,), dynamo=True, opset_version=OPSET,
                input_names=[INPUT_NAME],
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


def verify_against_torch(path: Path, ckpt, n_random: int = 4, n_realistic: int = 16,
                         decision_only: bool = False) -> float:
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
            tokens = torch.from_numpy(windows)
            expected = (ckpt.model.decide(tokens) if decision_only else ckpt.model(tokens)).numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]
        if actual.shape != expected.shape:
            raise ExportError(f"{path}: ONNX Runtime output shape {actual.shape}, PyTorch {expected.shape}")
        error = float(np.abs(actual - expected).max())
        worst = max(worst, error)
        if not error <= TOLERANCE * max(1.0, float(np.abs(expected).max())):
            raise ExportError(f"{path}: ONNX Runtime differs from PyTorch by {error:.3g} "
                              f"(tolerance {TOLERANCE:g}) on windows of batch {len(windows)}")
    return worst


# ---------------------------------------------------------------------------- spiking DT inference graph

SNN_OUTPUT_TOLERANCE = 1e-4  # |ORT - PyTorch| per window, relative to the output scale where that exceeds 1
# share of verification windows (70) whose outputs must be within SNN_OUTPUT_TOLERANCE: one flipped
# readout spike moves an output by |w| / T (~0.03), so 0.99 would forbid a single float32 flip
SNN_MIN_WINDOWS_WITHIN = 0.95
SNN_MAX_SPIKE_FLIPS = 1e-3  # largest share of spike slots allowed to differ from PyTorch's


class SnnGraphBuilder:
    """The spiking DT's inference graph in plain ONNX ops, float32 (docs/SEMANTICS.md semantics).

    Layout: real tensors (T, B, L, C) with T folded into the MatMuls (one GEMM per layer for
    all steps); every LIF is unrolled over T as Where(reset) / Mul(beta) / Add(I) / Greater;
    spikes stay bool until a MatMul needs them (AND of two spike trains is a bool And); BatchNorm
    is folded into the weights in float64 (`export.nir.fold_batch_norm`, one place), then cast.
    Each layer's spikes (T, B, L, C) bool are named like the NIR nodes / PyTorch `record` keys.
    """

    def __init__(self, model, decision_only: bool = False):
        self.model, self.cfg, self.decision_only = model, model.cfg, decision_only
        self.time_steps = model.cfg.time_steps
        self.n_tokens = 3 * model.cfg.context_length
        self.nodes, self.initializers, self.spike_names = [], [], []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str, n_outputs: int = 1, names=None, **attrs):
        from onnx import helper

        outputs = list(names) if names else [self._name(hint) for _ in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self._name(f"{hint}/{op_type}"), **attrs))
        return outputs if n_outputs > 1 else outputs[0]

    def const(self, hint: str, value) -> str:
        from onnx import numpy_helper

        name = self._name(hint)
        array = np.asarray(value)
        array = array.astype(np.float32) if array.dtype.kind == "f" else array
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    # ---- layers
    def affine(self, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
        """x (..., C_in) @ W^T + b, W (C_out, C_in) float64 (already BN-folded)."""
        y = self.op("MatMul", [x, self.const(f"{hint}.weight_t", weight.T)], hint)
        return self.op("Add", [y, self.const(f"{hint}.bias", bias)], hint)

    def token_linear(self, module, x: str, hint: str) -> str:
        from spikingmind.export.nir import fold_token_linears

        return self.affine(x, *fold_token_linears(module), hint)

    def lif(self, lif, currents: str, hint: str, constant: bool = False, names=None) -> str:
        """Currents (T, B, L, C) -> spikes (T, B, L, C) bool; with `constant` the currents are
        (B, L, C), the same at every step. v = beta*v + I; s = v > th; v = 0 where s (zero reset)."""
        steps = [currents] * self.time_steps if constant else (
            [currents] if self.time_steps == 1 else
            self.op("Split", [currents], f"{hint}.steps", n_outputs=self.time_steps, axis=0,
                    num_outputs=self.time_steps))
        beta, threshold = self.const(f"{hint}.beta", lif.beta), self.const(f"{hint}.threshold", lif.threshold)
        zero = self.const(f"{hint}.reset", 0.0)
        spikes, mem = [], None
        for t, current in enumerate(steps):
            if t == 0:
                mem = current  # beta * 0 + I == I exactly
            else:
                reset = self.op("Where", [spikes[-1], zero, mem], f"{hint}.reset")
                mem = self.op("Add", [self.op("Mul", [reset, beta], f"{hint}.decay"), current], f"{hint}.mem")
            spikes.append(self.op("Greater", [mem, threshold], f"{hint}.spikes"))
        if constant:  # T x (B, L, C) -> (T*B, L, C) -> (T, B, L, C)
            channels = self.cfg.width
            stacked = self.op("Concat", spikes, hint, axis=0)
            shape = self.const("shape_tblc", np.array([self.time_steps, -1, self.n_tokens, channels], np.int64))
            return self.op("Reshape", [stacked, shape], hint, names=names)
        if len(spikes) == 1:
            return self.op("Identity", spikes, hint, names=names)
        return self.op("Concat", spikes, hint, axis=0, names=names)

    def spikes(self, name: str, spikes: str) -> str:
        self.spike_names.append(name)
        return spikes

    def as_float(self, spikes: str, hint: str) -> str:
        from onnx import TensorProto

        return self.op("Cast", [spikes], hint, to=TensorProto.FLOAT)

    def causal_mix(self, module, spikes: str, hint: str) -> str:
        """(T, B, L, C) bool -> (T, B, L, C): the BN-folded (C, L, L) matrix as one batched MatMul
        over the (C, L, T*B) view (what `CausalDecayMix` computes at inference)."""
        from spikingmind.export.nir import fold_causal_mix

        matrix, shift = fold_causal_mix(module)
        c, n = matrix.shape[0], self.n_tokens
        x = self.op("Transpose", [spikes], hint, perm=[3, 2, 0, 1])  # (C, L, T, B)
        x = self.op("Reshape", [self.as_float(x, hint), self.const("shape_cl", np.array([c, n, -1], np.int64))], hint)
        y = self.op("MatMul", [self.const(f"{hint}.matrix", matrix), x], hint)  # (C, L, T*B)
        y = self.op("Reshape", [y, self.const("shape_clt", np.array([c, n, self.time_steps, -1], np.int64))], hint)
        y = self.op("Transpose", [y], hint, perm=[2, 3, 1, 0])  # (T, B, L, C)
        return self.op("Add", [y, self.const(f"{hint}.bias", shift)], hint)

    def decision_attention(self, attn, s_in: str, prefix: str) -> str:
        """Token `decision_token`'s attention output (T, B, C) (`SpikingSelfAttention` with `at`):
        k, v over every token, the mix's one row, q and the rest at that token only."""
        from spikingmind.export.nir import fold_causal_mix, fold_token_linears

        at = self.model.decision_token
        kv = self.affine(self.as_float(s_in, prefix), *fold_token_linears(attn.k, attn.v), f"{prefix}.kv")
        k, v = self.op("Split", [self.lif(attn.k_lif, kv, f"{prefix}.k_v_lif")], prefix, n_outputs=2, axis=-1,
                       num_outputs=2)
        kv_and = self.as_float(self.op("And", [k, v], prefix), prefix)  # (T, B, L, C)
        matrix, shift = fold_causal_mix(attn.mix)
        row = self.const(f"{prefix}.mix.row", matrix[:, at, :].T)  # (L, C): zero beyond `at` (causal)
        mixed = self.op("ReduceSum", [self.op("Mul", [kv_and, row], prefix), self.const("axis2", np.array([2], np.int64))],
                        prefix, keepdims=0)  # (T, B, C)
        kv_spikes = self.lif(attn.kv_lif, self.op("Add", [mixed, self.const(f"{prefix}.mix.bias", shift)], prefix),
                             f"{prefix}.kv_lif")
        s_at = self.op("Gather", [s_in, self.const("decision_token", np.array(at, np.int64))], prefix, axis=2)
        q = self.lif(attn.q_lif, self.token_linear(attn.q, self.as_float(s_at, prefix), f"{prefix}.q"),
                     f"{prefix}.q_lif")
        qkv_and = self.op("And", [q, kv_spikes], prefix)
        return self.token_linear(attn.out_proj, self.as_float(qkv_and, prefix), f"{prefix}.out_proj")

    def attention(self, attn, residual: str, prefix: str, constant: bool, decision: bool = False) -> str:
        s_in = self.spikes(f"{prefix}.lif_in", self.lif(attn.lif_in, residual, f"{prefix}.lif_in", constant,
                                                          names=[f"{prefix}.lif_in"]))
        from spikingmind.export.nir import fold_token_linears

        if decision:
            return self.decision_attention(attn, s_in, prefix)
        # q, k, v as one GEMM and one LIF over 3C channels (elementwise: the same spikes)
        qkv = self.affine(self.as_float(s_in, prefix), *fold_token_linears(attn.q, attn.k, attn.v), f"{prefix}.qkv")
        if len({(lif.beta, lif.threshold) for lif in (attn.q_lif, attn.k_lif, attn.v_lif)}) != 1:
            raise ExportError(f"{prefix}: q/k/v LIFs with different parameters are not supported by the ONNX export")
        qkv_spikes = self.lif(attn.q_lif, qkv, f"{prefix}.qkv_lif")
        names = [f"{prefix}.q_lif", f"{prefix}.k_lif", f"{prefix}.v_lif"]
        q, k, v = self.op("Split", [qkv_spikes], prefix, n_outputs=3, names=names, axis=-1, num_outputs=3)
        for name in names:
            self.spikes(name, name)
        kv_and = self.spikes(f"{prefix}.kv_and", self.op("And", [k, v], prefix, names=[f"{prefix}.kv_and"]))
        mixed = self.causal_mix(attn.mix, kv_and, f"{prefix}.mix")
        kv = self.spikes(f"{prefix}.kv_lif", self.lif(attn.kv_lif, mixed, f"{prefix}.kv_lif",
                                                      names=[f"{prefix}.kv_lif"]))
        qkv_and = self.spikes(f"{prefix}.qkv_and", self.op("And", [q, kv], prefix, names=[f"{prefix}.qkv_and"]))
        return self.token_linear(attn.out_proj, self.as_float(qkv_and, prefix), f"{prefix}.out_proj")

    def mlp(self, mlp, residual: str, prefix: str, decision: bool = False) -> str:
        record = (lambda name, spikes: spikes) if decision else self.spikes  # noqa: E731  (one token: not recorded)
        named = lambda name: None if decision else [name]  # noqa: E731
        s_in = record(f"{prefix}.lif_in", self.lif(mlp.lif_in, residual, f"{prefix}.lif_in",
                                                   names=named(f"{prefix}.lif_in")))
        hidden = self.token_linear(mlp.fc1, self.as_float(s_in, prefix), f"{prefix}.fc1")
        hidden = record(f"{prefix}.hidden_lif", self.lif(mlp.hidden_lif, hidden, f"{prefix}.hidden_lif",
                                                         names=named(f"{prefix}.hidden_lif")))
        return self.token_linear(mlp.fc2, self.as_float(hidden, prefix), f"{prefix}.fc2")

    def build(self, metadata: dict):
        from onnx import TensorProto, helper

        from spikingmind.export.nir import _numpy

        model = self.model
        x = self.affine(INPUT_NAME, _numpy(model.embed.weight), _numpy(model.embed.bias), "embed")  # (B, L, C)
        residual, constant = x, True  # the same input current at every step until the first block adds to it
        for index, block in enumerate(model.blocks):
            prefix = f"blocks.{index}"
            decision = self.decision_only and index == len(model.blocks) - 1
            attn = self.attention(block.attn, residual, f"{prefix}.attn", constant, decision)
            if decision:  # from here on one token: (T, B, C)
                axis = 1 if constant else 2  # the residual is still (B, L, C) when the first block is the last
                at = self.const("decision_token", np.array(model.decision_token, np.int64))
                residual = self.op("Gather", [residual, at], f"{prefix}.residual", axis=axis)
            residual = self.op("Add", [residual, attn], f"{prefix}.residual")  # broadcasts over T
            constant = False
            residual = self.op("Add", [residual, self.mlp(block.mlp, residual, f"{prefix}.mlp", decision)],
                               f"{prefix}.residual")
        if self.decision_only:
            head = self.lif(model.head_lif, residual, "head.lif", constant)
        else:
            head = self.spikes("head.lif", self.lif(model.head_lif, residual, "head.lif", constant, names=["head.lif"]))
        readout = self.affine(self.as_float(head, "head"), _numpy(model.head.weight), _numpy(model.head.bias),
                              "head.readout")  # (T, B, L, n_out), or (T, B, n_out) for the decision token alone
        self.op("ReduceMean", [readout, self.const("axis0", np.array([0], np.int64))], "head", names=[OUTPUT_NAME],
                keepdims=0)  # mean over the T steps, as PyTorch
        n, f = self.n_tokens, model.n_features
        out_shape = ["batch", model.n_out] if self.decision_only else ["batch", n, model.n_out]
        graph = helper.make_graph(
            self.nodes, "spiking_decision_transformer",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", n, f])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, out_shape)],
            self.initializers,
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="spikingmind", producer_version=spikingmind.__version__)
        proto.ir_version = 8  # opset 18 needs IR >= 8; keeps older ONNX Runtimes able to load it
        metadata["spike_records"] = list(self.spike_names)  # tensors to expose for spike checks
        _set_metadata(proto, metadata)
        return proto


def snn_to_onnx(model, metadata: dict, decision_only: bool = False):
    """The spiking DT (eval mode) as a checked onnx.ModelProto: its inference graph, float32
    (with `decision_only`, that of `model.decide`)."""
    import onnx

    if model.training:
        raise ExportError("the spiking DT must be in eval mode (BatchNorm statistics are folded)")
    proto = SnnGraphBuilder(model, decision_only).build(metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"exported ONNX model fails onnx.checker: {str(error).splitlines()[0]}") from None
    return proto


def with_spike_outputs(proto):
    """A copy of an SNN graph that also outputs every layer's spikes (T, B, L, C) bool, by record name."""
    import onnx
    from onnx import TensorProto, helper

    names = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])["spike_records"]
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    copy.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.BOOL, None) for name in names)
    return copy, names


def snn_verification_windows(ckpt) -> dict[str, list[np.ndarray]]:
    """The 70 token windows a spiking DT backend is checked on against PyTorch: random ones
    (batch 1 and 4) and realistic ones (`sample_windows`, batch 1 and 64)."""
    rng = np.random.default_rng(0)
    layout = ckpt.layout
    return {
        "random": [rng.normal(size=(1, layout.n_tokens, layout.n_features)).astype(np.float32),
                   rng.normal(size=(4, layout.n_tokens, layout.n_features)).astype(np.float32)],
        "realistic": [sample_windows(layout, ckpt.norm, ckpt.spec, 1, seed=1),
                      sample_windows(layout, ckpt.norm, ckpt.spec, 64, seed=2)],
    }


def snn_outputs_within(actual: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window (axis 0): the largest |actual - expected|, and whether it is within
    SNN_OUTPUT_TOLERANCE relative to the output scale where that exceeds 1."""
    axes = tuple(range(1, expected.ndim))
    error = np.abs(actual - expected).max(axis=axes)
    return error, error <= SNN_OUTPUT_TOLERANCE * np.maximum(1.0, np.abs(expected).max(axis=axes))


def verify_snn_against_torch(proto, model, ckpt, source: str, decision_only: bool = False) -> dict:
    """ORT vs PyTorch (float32) on random and realistic windows; ExportError unless every check holds.

    Spikes are thresholds: a float32 rounding difference (BatchNorm folded here, not in PyTorch;
    another GEMM's summation order) can flip a spike when a membrane lands within an ulp of the
    threshold. So the checks are: spike slots that differ <= SNN_MAX_SPIKE_FLIPS, outputs within
    SNN_OUTPUT_TOLERANCE on >= SNN_MIN_WINDOWS_WITHIN of the windows, and (discrete actions)
    identical argmax actions on every window. Returns the measured numbers (stored in metadata).
    """
    import onnxruntime as ort

    layout = ckpt.layout
    batches = snn_verification_windows(ckpt)
    debug, names = with_spike_outputs(proto)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    session = ort.InferenceSession(debug.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    flips = slots = windows_total = windows_within = action_mismatch = 0
    worst = 0.0
    realistic_flips = realistic_slots = 0
    for kind, group in batches.items():
        for windows in group:
            record: dict = {}
            with torch.inference_mode():
                expected = model(torch.from_numpy(windows), record).numpy()
                if decision_only:  # the decision token's outputs, from the path the graph follows
                    expected = model.decide(torch.from_numpy(windows)).numpy()[:, None]
            actual, *spikes = session.run([OUTPUT_NAME, *names], {INPUT_NAME: windows})
            if decision_only:
                actual = actual[:, None]  # (B, 1, n_out), the one token the graph computes
            if actual.shape != expected.shape:
                raise ExportError(f"{source}: ONNX Runtime output shape {actual.shape}, PyTorch {expected.shape}")
            for name, ort_spikes in zip(names, spikes):
                differ = int((ort_spikes != record[name].numpy().astype(bool)).sum())
                flips, slots = flips + differ, slots + ort_spikes.size
                if kind == "realistic":
                    realistic_flips, realistic_slots = realistic_flips + differ, realistic_slots + ort_spikes.size
            error, within = snn_outputs_within(actual, expected)
            worst = max(worst, float(error.max()))
            windows_total += len(windows)
            windows_within += int(within.sum())
            if layout.discrete:
                token = 0 if decision_only else layout.decision_token
                action_mismatch += int((actual[:, token].argmax(-1) != expected[:, token].argmax(-1)).sum())
    report = {"windows": windows_total, "spike_slots": slots, "spike_flips": flips,
              "spike_flip_fraction": flips / slots,
              "realistic_spike_flip_fraction": realistic_flips / realistic_slots,
              "windows_within_tolerance": windows_within / windows_total,
              "max_abs_output_error": worst, "action_mismatches": action_mismatch,
              "criteria": {"spike_flip_fraction_at_most": SNN_MAX_SPIKE_FLIPS,
                           "output_tolerance": SNN_OUTPUT_TOLERANCE,
                           "windows_within_tolerance_at_least": SNN_MIN_WINDOWS_WITHIN,
                           "action_mismatches": 0 if layout.discrete else "not checked (continuous actions: "
                                                                           "covered by the output tolerance)"},
              "reference": "PyTorch float32, torch.inference_mode()"}
    problems = []
    if report["spike_flip_fraction"] > SNN_MAX_SPIKE_FLIPS:
        problems.append(f"{flips} of {slots} spikes differ ({report['spike_flip_fraction']:.2g} > "
                        f"{SNN_MAX_SPIKE_FLIPS:g})")
    if report["windows_within_tolerance"] < SNN_MIN_WINDOWS_WITHIN:
        problems.append(f"outputs within {SNN_OUTPUT_TOLERANCE:g} on only {windows_within} of {windows_total} "
                        f"windows (max error {worst:.3g})")
    if action_mismatch:
        problems.append(f"{action_mismatch} of {windows_total} windows decode to a different action")
    if problems:
        raise ExportError(f"{source}: ONNX Runtime differs from PyTorch: {'; '.join(problems)}")
    return report


def export(checkpoint, out, force: bool = False, decision_only: bool = False) -> Path:
    """Registry entry point: checkpoint folder -> .onnx, verified in ONNX Runtime before it appears.

    ANN twin: torch.onnx's graph, outputs within TOLERANCE. Spiking DT: its inference graph
    (`SnnGraphBuilder`), checked by `verify_snn_against_torch`; the numbers go into the metadata.
    `decision_only`: the graph of `DecisionTransformer.decide`, output (batch, n_out), the
    decision token's alone (faster; the full graph is what the energy report counts)."""
    from spikingmind.checkpoint import load_checkpoint

    import onnx

    refuse_overwrite(out, force)
    ckpt = load_checkpoint(checkpoint, dtype=torch.float32)
    metadata = export_metadata(ckpt, decision_only)
    if ckpt.model.spiking:
        proto = snn_to_onnx(ckpt.model, metadata, decision_only)
        metadata["verification"] = verify_snn_against_torch(proto, ckpt.model, ckpt, str(checkpoint), decision_only)
        _set_metadata(proto, metadata)
        with atomic_path(out, suffix=".onnx") as tmp:
            onnx.save_model(proto, str(tmp))
        return Path(out)
    proto = model_to_onnx(ckpt.model, metadata, decision_only)
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save_model(proto, str(tmp))
        verify_against_torch(tmp, ckpt, decision_only=decision_only)  # the file only appears if it passes
    return Path(out)


def _set_metadata(proto, metadata: dict) -> None:
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = json.dumps(metadata)
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)


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
    """An exported ANN twin or spiking DT run by ONNX Runtime (CPU), as a closed-loop policy.

    `intra_op_threads` sets ONNX Runtime's intra-op thread pool (1-2 is fastest for one decision).
    `model_kind` is "ann" or "snn"; an SNN graph keeps its spikes inside, so `spike_stats()`
    says that spikes per decision are not available from it.
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
        self.model_kind = self.meta.get("model", {}).get("kind", "ann")

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
        return (out if out.ndim == 2 else out[:, self.layout.decision_token]).astype(np.float64)

    def act(self, windows: np.ndarray) -> np.ndarray:
        from spikingmind.rollout import decode_for_env

        return decode_for_env(self.outputs(windows), self.spec)
