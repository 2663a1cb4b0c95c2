"""The spiking DT's inference weights for the event-driven kernels, and one decision through them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikingmind.errors import ConfigError, ExportError
from spikingmind.export.event.kernels import decide_windows, stream_step

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

        from spikingmind.folding import as_float64, batch_norm_affine, fold_token_linears
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
                   embed_t=typed(as_float64(model.embed.weight).T), embed_b=typed(as_float64(model.embed.bias)),
                   head_t=typed(as_float64(model.head.weight).T), head_b=typed(as_float64(model.head.bias)),
                   **{name: stack(values) for name, values in per_block.items()})


def decide(weights: EventWeights, tokens: np.ndarray) -> np.ndarray:
    """Decision-token outputs (B, n_out), in the weights' dtype, of token windows (B, L, F)."""
    w = weights
    tokens = np.ascontiguousarray(tokens, dtype=w.embed_t.dtype)
    outputs = np.empty((tokens.shape[0], w.head_t.shape[1]), w.embed_t.dtype)
    return decide_windows(tokens, w.time_steps, w.decision_token, w.beta, w.threshold, w.embed_t, w.embed_b,
                   w.qkv_t, w.qkv_b, w.decay, w.mix_scale, w.mix_shift, w.out_t, w.out_b,
                   w.fc1_t, w.fc1_b, w.fc2_t, w.fc2_b, w.last_q_t, w.last_q_b, w.last_kv_t, w.last_kv_b,
                   w.head_t, w.head_b, outputs)



def initial_traces(weights: EventWeights, batch: int) -> np.ndarray:
    """A streaming model's carried state at the start of `batch` episodes: every block's mix
    trace, zeros (B, n_blocks, T, C)."""
    n_blocks, width = weights.qkv_t.shape[0], weights.qkv_t.shape[1]
    return np.zeros((batch, n_blocks, weights.time_steps, width), weights.embed_t.dtype)


def step(weights: EventWeights, tokens: np.ndarray, rows: np.ndarray, traces: np.ndarray) -> np.ndarray:
    """A streaming model's decision: new tokens (B', n, F) of episodes `rows` after their
    `traces` (B, n_blocks, T, C), updated in place -> outputs of the last token (B', n_out)."""
    w = weights
    tokens = np.ascontiguousarray(tokens, dtype=w.embed_t.dtype)
    outputs = np.empty((tokens.shape[0], w.head_t.shape[1]), w.embed_t.dtype)
    return stream_step(tokens, np.asarray(rows, dtype=np.int64), traces, w.time_steps, w.beta, w.threshold,
                       w.embed_t, w.embed_b, w.qkv_t, w.qkv_b, w.decay, w.mix_scale, w.mix_shift, w.out_t, w.out_b,
                       w.fc1_t, w.fc1_b, w.fc2_t, w.fc2_b, w.last_q_t, w.last_q_b, w.last_kv_t, w.last_kv_b,
                       w.head_t, w.head_b, outputs)
