"""Event-driven CPU runtime of the spiking DT's decision: the policy path compiled with numba.

What a neuromorphic core does, on a CPU: a synapse layer adds the weight rows of the inputs
that spiked (no multiply, no work for silent inputs), each LIF layer is one fused loop over
its T steps, and the causal mix runs as the decay recurrence kv_i = g * kv_(i-1) + x_i
instead of a dense (L, L) matrix. Only the tokens up to the decision token are computed
(later ones cannot reach it) and the last block only where the decision token reads it,
as `DecisionTransformer.decide`.

Same network, same time semantics (docs/SEMANTICS.md) as the PyTorch model: BatchNorm is
folded in float64 (`export.nir`'s folding helpers, one place), everything runs in float32
(the kernels take the dtype of the weights: float64 weights, `EventWeights.from_model(model,
np.float64)`, give a float64 runtime that tests compare with PyTorch in float64).
Sums run in another order than PyTorch's BLAS, so a membrane that lands within float32
rounding of the threshold can flip a spike: `verify_against_torch` measures the output
error and the actions on random and realistic windows, and `EventPolicy` refuses a model
outside the bounds the ONNX export of the spiking DT uses (`export.onnx.SNN_*`).

Shapes: tokens (B, L, F); inside, one window at a time: residual currents (T, L', C) with
L' = decision_token + 1, spikes uint8 of the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from spikingmind.errors import ConfigError, ExportError

# ---------------------------------------------------------------------------- kernels


def _lif(currents, beta, threshold, spikes):
    """LIF over the leading T axis, zero reset: currents (T, N) float -> spikes (T, N) uint8.
    v = beta * v + I; s = v > threshold; v = 0 where s."""
    zero = currents.dtype.type(0)  # a constant of the currents' dtype keeps the arithmetic in it
    mem = np.zeros(currents.shape[1], currents.dtype)
    for t in range(currents.shape[0]):
        for n in range(currents.shape[1]):
            v = beta * mem[n] + currents[t, n]
            fired = v > threshold
            spikes[t, n] = fired
            mem[n] = zero if fired else v
    return spikes


def _synapses(spikes, weight_t, bias, out):
    """Event-driven affine map: out (N, C_out) = bias + the sum of weight_t's rows (C_in, C_out)
    of the inputs that spiked, spikes (N, C_in) uint8; silent inputs cost nothing. Each row's
    spikes are first listed without branching (a branch per input mispredicts at these rates)."""
    events = np.empty(spikes.shape[1], np.int64)
    for n in range(spikes.shape[0]):
        count = 0
        for k in range(spikes.shape[1]):
            events[count] = k
            count += spikes[n, k]
        for j in range(out.shape[1]):
            out[n, j] = bias[j]
        for e in range(count):
            k = events[e]
            for j in range(out.shape[1]):
                out[n, j] += weight_t[k, j]
    return out


def _causal_mix(kv_and, decay, scale, shift, out):
    """out[t, i, c] = scale_c * sum_(j<=i) decay_c^(i-j) kv_and[t, j, c] + shift_c, as the
    recurrence acc = decay * acc + x: kv_and (T, L, C) uint8 -> out (T, L, C) float."""
    acc = np.empty(kv_and.shape[2], out.dtype)
    for t in range(kv_and.shape[0]):
        acc[:] = out.dtype.type(0)
        for i in range(kv_and.shape[1]):
            for c in range(kv_and.shape[2]):
                acc[c] = decay[c] * acc[c] + kv_and[t, i, c]
                out[t, i, c] = scale[c] * acc[c] + shift[c]
    return out


def _lif_layer(currents, beta, threshold):
    """_lif on (T, N, C) currents: spikes (T * N, C) uint8, rows ordered (t, token)."""
    time_steps, n, width = currents.shape
    spikes = np.empty((time_steps, n * width), np.uint8)
    _lif(currents.reshape(time_steps, n * width), beta, threshold, spikes)
    return spikes.reshape(time_steps * n, width)


def _affine(spikes, weight_t, bias):
    return _synapses(spikes, weight_t, bias, np.empty((spikes.shape[0], weight_t.shape[1]), weight_t.dtype))


def _mlp(residual, beta, threshold, fc1_t, fc1_b, fc2_t, fc2_b):
    """residual (T, N, C) += SpikingMLP(residual), in place."""
    time_steps, n, width = residual.shape
    hidden = _affine(_lif_layer(residual, beta, threshold), fc1_t, fc1_b)  # (T * N, H)
    hidden_spikes = _lif_layer(hidden.reshape(time_steps, n, -1), beta, threshold)
    residual += _affine(hidden_spikes, fc2_t, fc2_b).reshape(time_steps, n, width)


def _block(residual, beta, threshold, qkv_t, qkv_b, decay, mix_scale, mix_shift, out_t, out_b,
           fc1_t, fc1_b, fc2_t, fc2_b):
    """residual (T, N, C) -> residual + attention, + MLP (every token), in place: SpikingBlock."""
    time_steps, n, width = residual.shape
    qkv = _lif_layer(_affine(_lif_layer(residual, beta, threshold), qkv_t, qkv_b).reshape(time_steps, n, -1),
                     beta, threshold)  # q, k, v as one layer of 3C neurons: (T * N, 3C)
    kv_and = qkv[:, width:2 * width] & qkv[:, 2 * width:]
    mixed = _causal_mix(kv_and.reshape(time_steps, n, width), decay, mix_scale, mix_shift,
                        np.empty((time_steps, n, width), residual.dtype))
    qkv_and = qkv[:, :width] & _lif_layer(mixed, beta, threshold)
    residual += _affine(qkv_and, out_t, out_b).reshape(time_steps, n, width)
    _mlp(residual, beta, threshold, fc1_t, fc1_b, fc2_t, fc2_b)


def _last_block(residual, at, beta, threshold, q_t, q_b, kv_t, kv_b, decay, mix_scale, mix_shift, out_t, out_b,
                fc1_t, fc1_b, fc2_t, fc2_b):
    """residual (T, N, C) -> the decision token's residual after the block, (T, 1, C): k and v
    of every token (the mix reads them), q and everything after the mix at token `at` only."""
    time_steps, n, width = residual.shape
    s_in = _lif_layer(residual, beta, threshold)
    kv = _lif_layer(_affine(s_in, kv_t, kv_b).reshape(time_steps, n, -1), beta, threshold)  # (T * N, 2C)
    kv_and = kv[:, :width] & kv[:, width:]
    mixed = _causal_mix(kv_and.reshape(time_steps, n, width), decay, mix_scale, mix_shift,
                        np.empty((time_steps, n, width), residual.dtype))
    kv_spikes = _lif_layer(mixed[:, at:at + 1].copy(), beta, threshold)  # (T, C)
    q_current = _affine(s_in.reshape(time_steps, n, width)[:, at].copy(), q_t, q_b)
    q = _lif_layer(q_current.reshape(time_steps, 1, width), beta, threshold)
    token = residual[:, at:at + 1].copy()
    token += _affine(q & kv_spikes, out_t, out_b).reshape(time_steps, 1, width)
    _mlp(token, beta, threshold, fc1_t, fc1_b, fc2_t, fc2_b)
    return token


def _decide(tokens, time_steps, at, beta, threshold, embed_t, embed_b,
            qkv_t, qkv_b, decay, mix_scale, mix_shift, out_t, out_b, fc1_t, fc1_b, fc2_t, fc2_b,
            last_q_t, last_q_b, last_kv_t, last_kv_b, head_t, head_b, outputs):
    """Decision-token outputs (B, n_out) of token windows (B, L, F), as DecisionTransformer.decide.

    Weights per block are stacked on a leading axis (qkv_t (n_blocks, C, 3C): q, k, v columns);
    the last block's q and k|v columns come apart as contiguous arrays (strided weights would
    stop the adds from vectorising)."""
    n_blocks, width = qkv_t.shape[0], qkv_t.shape[1]
    n_tokens = at + 1  # later tokens cannot reach the decision token
    dtype = embed_t.dtype
    zero = dtype.type(0)
    for b in range(tokens.shape[0]):
        # the real-valued encoder (MACs): the same input current at every step
        x = np.empty((n_tokens, width), dtype)
        for i in range(n_tokens):
            x[i] = embed_b
            for f in range(tokens.shape[2]):
                if tokens[b, i, f] != zero:
                    for c in range(width):
                        x[i, c] += tokens[b, i, f] * embed_t[f, c]
        residual = np.empty((time_steps, n_tokens, width), dtype)
        for t in range(time_steps):
            residual[t] = x
        for k in range(n_blocks - 1):
            _block(residual, beta, threshold, qkv_t[k], qkv_b[k], decay[k], mix_scale[k], mix_shift[k], out_t[k],
                   out_b[k], fc1_t[k], fc1_b[k], fc2_t[k], fc2_b[k])
        k = n_blocks - 1
        token = _last_block(residual, at, beta, threshold, last_q_t, last_q_b, last_kv_t, last_kv_b, decay[k],
                            mix_scale[k], mix_shift[k], out_t[k], out_b[k], fc1_t[k], fc1_b[k], fc2_t[k], fc2_b[k])
        readout = _affine(_lif_layer(token, beta, threshold), head_t, head_b)  # (T, n_out)
        for o in range(readout.shape[1]):
            total = zero
            for t in range(time_steps):
                total += readout[t, o]
            outputs[b, o] = total / time_steps  # the readout averaged over the T steps
    return outputs


def _compile(kernel):
    """numba.njit, compiled on first use and cached on disk (next to this file, or in numba's
    user cache where that is read-only); uncached where numba finds no cache folder at all."""
    try:
        return numba.njit(cache=True, nogil=True)(kernel)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(kernel)


(_lif, _synapses, _causal_mix, _lif_layer, _affine, _mlp, _block, _last_block, _decide) = (
    _compile(kernel)
    for kernel in (_lif, _synapses, _causal_mix, _lif_layer, _affine, _mlp, _block, _last_block, _decide))


# ---------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class EventWeights:
    """The spiking DT's inference weights, BatchNorm folded, float32 (or float64), transposed to
    (C_in, C_out). The kernels compute in the dtype of these arrays."""

    time_steps: int
    decision_token: int
    beta: np.floating
    threshold: np.floating
    embed_t: np.ndarray  # (F, C)
    embed_b: np.ndarray  # (C,)
    qkv_t: np.ndarray  # (n_blocks, C, 3C)
    qkv_b: np.ndarray  # (n_blocks, 3C)
    decay: np.ndarray  # (n_blocks, C) causal-mix decay g per channel
    mix_scale: np.ndarray  # (n_blocks, C) the mix's BatchNorm, folded
    mix_shift: np.ndarray  # (n_blocks, C)
    out_t: np.ndarray  # (n_blocks, C, C)
    out_b: np.ndarray
    fc1_t: np.ndarray  # (n_blocks, C, H)
    fc1_b: np.ndarray
    fc2_t: np.ndarray  # (n_blocks, H, C)
    fc2_b: np.ndarray
    head_t: np.ndarray  # (C, n_out)
    head_b: np.ndarray
    # the last block's q columns (C, C) and k|v columns (C, 2C) of qkv_t, contiguous copies
    last_q_t: np.ndarray = field(init=False)
    last_q_b: np.ndarray = field(init=False)
    last_kv_t: np.ndarray = field(init=False)
    last_kv_b: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        width = self.qkv_t.shape[1]
        for name, value in (("last_q_t", self.qkv_t[-1][:, :width]), ("last_q_b", self.qkv_b[-1][:width]),
                            ("last_kv_t", self.qkv_t[-1][:, width:]), ("last_kv_b", self.qkv_b[-1][width:])):
            object.__setattr__(self, name, np.ascontiguousarray(value))

    @classmethod
    def from_model(cls, model, dtype=np.float32) -> "EventWeights":
        """From a spiking `DecisionTransformer` in eval mode (every LIF must share beta and threshold);
        `dtype` float32 (the runtime) or float64 (for exact comparisons with a float64 model)."""
        import torch

        from spikingmind.export.nir import _numpy, batch_norm_affine, fold_token_linears
        from spikingmind.model import LIF

        if not model.spiking:
            raise ConfigError("the event-driven runtime runs the spiking DT, not the ANN twin")
        if model.training:
            raise ExportError("the spiking DT must be in eval mode (BatchNorm statistics are folded)")
        neurons = {(m.beta, m.threshold) for m in model.modules() if isinstance(m, LIF)}
        if len(neurons) != 1:
            raise ExportError(f"the event-driven runtime needs one (beta, threshold) for every LIF, found {sorted(neurons)}")
        (beta, threshold), = neurons

        def affine(*modules):
            weight, bias = fold_token_linears(*modules)
            return weight.T, bias

        def stack(values):
            return np.ascontiguousarray(np.stack(values), dtype=dtype)

        per_block: dict[str, list] = {name: [] for name in ("qkv_t", "qkv_b", "decay", "mix_scale", "mix_shift",
                                                             "out_t", "out_b", "fc1_t", "fc1_b", "fc2_t", "fc2_b")}
        for block in model.blocks:
            attn, mlp = block.attn, block.mlp
            for name, modules in (("qkv", (attn.q, attn.k, attn.v)), ("out", (attn.out_proj,)), ("fc1", (mlp.fc1,)),
                                  ("fc2", (mlp.fc2,))):
                weight_t, bias = affine(*modules)
                per_block[f"{name}_t"].append(weight_t)
                per_block[f"{name}_b"].append(bias)
            with torch.no_grad():
                per_block["decay"].append(torch.sigmoid(attn.mix.decay_logit.double()).numpy())
            scale, shift = batch_norm_affine(attn.mix.norm)
            per_block["mix_scale"].append(scale)
            per_block["mix_shift"].append(shift)
        typed = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
        return cls(time_steps=model.cfg.time_steps, decision_token=model.decision_token,
                   beta=np.dtype(dtype).type(beta), threshold=np.dtype(dtype).type(threshold),
                   embed_t=typed(_numpy(model.embed.weight).T), embed_b=typed(_numpy(model.embed.bias)),
                   head_t=typed(_numpy(model.head.weight).T), head_b=typed(_numpy(model.head.bias)),
                   **{name: stack(values) for name, values in per_block.items()})


def decide(weights: EventWeights, tokens: np.ndarray) -> np.ndarray:
    """Decision-token outputs (B, n_out), in the weights' dtype, of token windows (B, L, F)."""
    w = weights
    tokens = np.ascontiguousarray(tokens, dtype=w.embed_t.dtype)
    outputs = np.empty((tokens.shape[0], w.head_t.shape[1]), w.embed_t.dtype)
    return _decide(tokens, w.time_steps, w.decision_token, w.beta, w.threshold, w.embed_t, w.embed_b,
                   w.qkv_t, w.qkv_b, w.decay, w.mix_scale, w.mix_shift, w.out_t, w.out_b,
                   w.fc1_t, w.fc1_b, w.fc2_t, w.fc2_b, w.last_q_t, w.last_q_b, w.last_kv_t, w.last_kv_b,
                   w.head_t, w.head_b, outputs)


def verify_against_torch(weights: EventWeights, ckpt, source: str = "checkpoint") -> dict:
    """The runtime against `model.decide` (PyTorch) on random and realistic windows.

    The same criteria as the ONNX export of the spiking DT (`export.onnx.SNN_*`): outputs
    within SNN_OUTPUT_TOLERANCE on >= SNN_MIN_WINDOWS_WITHIN of the windows and, for discrete
    actions, the same argmax action on every window. ExportError naming `source` otherwise;
    returns the measured numbers.
    """
    import torch

    from spikingmind.export.onnx import (SNN_MIN_WINDOWS_WITHIN, SNN_OUTPUT_TOLERANCE, snn_outputs_within,
                                         snn_verification_windows)

    windows = np.concatenate([w for group in snn_verification_windows(ckpt).values() for w in group])
    model = ckpt.model
    with torch.inference_mode():
        expected = model.decide(torch.as_tensor(windows, dtype=next(model.parameters()).dtype)).float().numpy()
    actual = decide(weights, windows)
    error, within = snn_outputs_within(actual, expected)
    mismatches = int((actual.argmax(1) != expected.argmax(1)).sum()) if ckpt.layout.discrete else 0
    report = {"windows": len(windows), "windows_within_tolerance": float(within.mean()),
              "max_abs_output_error": float(error.max()), "action_mismatches": mismatches,
              "criteria": {"output_tolerance": SNN_OUTPUT_TOLERANCE,
                           "windows_within_tolerance_at_least": SNN_MIN_WINDOWS_WITHIN, "action_mismatches": 0},
              "reference": "PyTorch model.decide in the checkpoint's dtype, torch.inference_mode()"}
    if report["windows_within_tolerance"] < SNN_MIN_WINDOWS_WITHIN or mismatches:
        raise ExportError(f"{source}: the event-driven runtime differs from PyTorch: outputs within "
                          f"{SNN_OUTPUT_TOLERANCE:g} on {int(within.sum())} of {len(windows)} windows "
                          f"(max error {report['max_abs_output_error']:.3g}), {mismatches} different actions")
    return report


class EventPolicy:
    """A spiking DT checkpoint run by the event-driven runtime, as a closed-loop policy.

    Built from the loaded checkpoint (BatchNorm folded, float32) and checked against PyTorch
    first (`verify_against_torch`, stored in `.verification`). Spikes stay inside the kernels:
    count them with the PyTorch policy or the NIR reference.
    """

    def __init__(self, ckpt, source: str = "checkpoint"):
        self.spec, self.layout, self.norm = ckpt.spec, ckpt.layout, ckpt.norm
        self.weights = EventWeights.from_model(ckpt.model)
        self.verification = verify_against_torch(self.weights, ckpt, source)

    def outputs(self, windows: np.ndarray) -> np.ndarray:
        """windows (B, L, F) -> decision-token outputs (B, n_out), float64."""
        return decide(self.weights, windows).astype(np.float64)

    def act(self, windows: np.ndarray) -> np.ndarray:
        from spikingmind.rollout import decode_for_env

        return decode_for_env(self.outputs(windows), self.spec)

    def spike_stats(self) -> dict:
        return {"spikes_per_decision": None,
                "spikes_per_decision_note": "not available from the event-driven runtime: spikes stay inside its "
                                            "kernels; evaluate with the PyTorch backend or the .nir file to count them"}
