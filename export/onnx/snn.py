"""The spiking DT's inference graph in plain ONNX ops, and its check against PyTorch.

`SnnGraphBuilder` writes the graph directly (T steps unrolled, LIF as Where/Mul/Add/Greater,
BatchNorm folded, the causal mix as one MatMul with the (C, L, L) decay matrix): not a
training graph and not a NIR graph. `verify_snn_against_torch` measures its spikes and
outputs against PyTorch with the shared criteria of `spikingmind.verification`; the numbers
go into the model's metadata.
"""

from __future__ import annotations

import numpy as np
import torch

import spikingmind
from spikingmind.errors import ExportError
from spikingmind.export.onnx.metadata import INPUT_NAME, METADATA_KEY, OPSET, OUTPUT_NAME, checked, set_metadata
from spikingmind.folding import as_float64, fold_causal_mix, fold_token_linears
from spikingmind.metadata import parse_metadata
from spikingmind.verification import (
    SNN_MAX_SPIKE_FLIPS,
    SNN_MIN_FLIP_FREE_WINDOWS,
    SNN_OUTPUT_TOLERANCE,
    snn_outputs_within,
    snn_verification_windows,
)


class SnnGraphBuilder:
    """The spiking DT's inference graph in plain ONNX ops, float32 (docs/SEMANTICS.md semantics).

    Layout: real tensors (T, B, L, C) with T folded into the MatMuls (one GEMM per layer for
    all steps); every LIF is unrolled over T as Where(reset) / Mul(beta) / Add(I) / Greater;
    spikes stay bool until a MatMul needs them (AND of two spike trains is a bool And); BatchNorm
    is folded into the weights in float64 (`spikingmind.folding`, one place), then cast.
    Each layer's spikes (T, B, L, C) bool are named like the NIR nodes / PyTorch `record` keys.
    """

    def __init__(self, model, decision_only: bool = False):
        self.model, self.cfg, self.decision_only = model, model.cfg, decision_only
        self.time_steps = model.cfg.time_steps
        self.n_tokens = model.cfg.n_tokens
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

        model = self.model
        x = self.affine(INPUT_NAME, as_float64(model.embed.weight), as_float64(model.embed.bias), "embed")  # (B, L, C)
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
        readout = self.affine(self.as_float(head, "head"), as_float64(model.head.weight), as_float64(model.head.bias),
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
        set_metadata(proto, metadata)
        return proto


def snn_to_onnx(model, metadata: dict, decision_only: bool = False):
    """The spiking DT (eval mode) as a checked onnx.ModelProto: its inference graph, float32
    (with `decision_only`, that of `model.decide`)."""
    if model.training:
        raise ExportError("the spiking DT must be in eval mode (BatchNorm statistics are folded)")
    return checked(SnnGraphBuilder(model, decision_only).build(metadata))


def with_spike_outputs(proto):
    """A copy of an SNN graph that also outputs every layer's spikes (T, B, L, C) bool, by record name."""
    import onnx
    from onnx import TensorProto, helper

    raw = {p.key: p.value for p in proto.metadata_props}.get(METADATA_KEY)
    names = parse_metadata(raw, "the spiking DT's ONNX graph")["spike_records"]
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    copy.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.BOOL, None) for name in names)
    return copy, names


def verify_snn_against_torch(proto, model, ckpt, source: str, decision_only: bool = False) -> dict:
    """ORT vs PyTorch (float32) on random and realistic windows; ExportError unless every check holds.

    Spikes are thresholds: a float32 rounding difference (BatchNorm folded here, not in PyTorch;
    another GEMM's summation order) can flip a spike when a membrane lands within an ulp of the
    threshold. So the checks are: spike slots that differ <= SNN_MAX_SPIKE_FLIPS; outputs within
    SNN_OUTPUT_TOLERANCE on every window where no spike differs (a flip is the only excuse for
    an output to move), with >= SNN_MIN_FLIP_FREE_WINDOWS of the windows flip-free; and (discrete
    actions) identical argmax actions on every window. Returns the measured numbers (stored in
    metadata), the share of all windows within the tolerance among them.
    """
    import onnxruntime as ort

    layout = ckpt.layout
    batches = snn_verification_windows(ckpt)
    debug, names = with_spike_outputs(proto)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    session = ort.InferenceSession(debug.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    flips = slots = windows_total = windows_within = action_mismatch = flip_free = flip_free_outside = 0
    worst = worst_flip_free = 0.0
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
            per_window = np.zeros(len(windows), dtype=np.int64)  # spike slots that differ, by window
            for name, ort_spikes in zip(names, spikes):
                differ = ort_spikes != record[name].numpy().astype(bool)  # (T, B, ...): windows on axis 1
                per_window += differ.reshape(differ.shape[0], differ.shape[1], -1).sum(axis=(0, 2))
                n_differ = int(differ.sum())
                flips, slots = flips + n_differ, slots + ort_spikes.size
                if kind == "realistic":
                    realistic_flips, realistic_slots = realistic_flips + n_differ, realistic_slots + ort_spikes.size
            error, within = snn_outputs_within(actual, expected)
            clean = per_window == 0
            worst = max(worst, float(error.max()))
            worst_flip_free = max([worst_flip_free, *error[clean].tolist()])
            windows_total += len(windows)
            windows_within += int(within.sum())
            flip_free += int(clean.sum())
            flip_free_outside += int((clean & ~within).sum())
            if layout.discrete:
                token = 0 if decision_only else layout.decision_token
                action_mismatch += int((actual[:, token].argmax(-1) != expected[:, token].argmax(-1)).sum())
    report = {"windows": windows_total, "spike_slots": slots, "spike_flips": flips,
              "spike_flip_fraction": flips / slots,
              "realistic_spike_flip_fraction": realistic_flips / realistic_slots,
              "windows_within_tolerance": windows_within / windows_total,
              "flip_free_windows": flip_free / windows_total,
              "flip_free_windows_outside_tolerance": flip_free_outside,
              "max_abs_output_error": worst, "max_abs_output_error_flip_free": worst_flip_free,
              "action_mismatches": action_mismatch,
              "criteria": {"spike_flip_fraction_at_most": SNN_MAX_SPIKE_FLIPS,
                           "output_tolerance": SNN_OUTPUT_TOLERANCE,
                           "flip_free_windows_within_tolerance": "all",
                           "flip_free_windows_at_least": SNN_MIN_FLIP_FREE_WINDOWS,
                           "action_mismatches": 0 if layout.discrete else "not checked (continuous actions: "
                                                                           "covered by the output tolerance)"},
              "reference": "PyTorch float32, torch.inference_mode()"}
    problems = []
    if report["spike_flip_fraction"] > SNN_MAX_SPIKE_FLIPS:
        problems.append(f"{flips} of {slots} spikes differ ({report['spike_flip_fraction']:.2g} > "
                        f"{SNN_MAX_SPIKE_FLIPS:g})")
    if flip_free_outside:
        problems.append(f"outputs differ by up to {worst_flip_free:.3g} (tolerance {SNN_OUTPUT_TOLERANCE:g}) on "
                        f"{flip_free_outside} windows where no spike differs")
    if report["flip_free_windows"] < SNN_MIN_FLIP_FREE_WINDOWS:
        problems.append(f"a spike differs in {windows_total - flip_free} of {windows_total} windows (at most "
                        f"{1 - SNN_MIN_FLIP_FREE_WINDOWS:.0%} may have one)")
    if action_mismatch:
        problems.append(f"{action_mismatch} of {windows_total} windows decode to a different action")
    if problems:
        raise ExportError(f"{source}: ONNX Runtime differs from PyTorch: {'; '.join(problems)}")
    return report
