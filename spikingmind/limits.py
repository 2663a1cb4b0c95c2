"""The memory budget: sizes from configs and files are checked before anything is allocated.

A 30 KB `.nir` can declare `time_steps = 10**9`, a `checkpoint.json` `width = 10**6`; built
as asked, they fill the machine's memory for minutes before a MemoryError. Every reader of
a size (model configs, checkpoints, NIR graphs) estimates the bytes it is about to allocate
with the formulas below and refuses above the budget, with one line naming the file, the
fields and the limit.

The budget is 4 GiB unless `SPIKINGMIND_MAX_MEMORY_GIB` says otherwise (the CLI's
`spikingmind --max-memory-gib N ...` sets it for the command and every process it starts).
"""

from __future__ import annotations

import math
import os

from spikingmind.errors import ConfigError, SpikingmindError

ENV_VAR = "SPIKINGMIND_MAX_MEMORY_GIB"
DEFAULT_GIB = 4.0
GIB = 1 << 30
FLOAT32 = 4


def max_memory_bytes() -> float:
    """The budget in bytes: $SPIKINGMIND_MAX_MEMORY_GIB (a positive number of GiB) or 4 GiB."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_GIB * GIB
    try:
        gib = float(raw)
    except ValueError:
        gib = float("nan")
    if not math.isfinite(gib) or gib <= 0:
        raise ConfigError(f"{ENV_VAR}={raw!r}: must be a positive number of GiB")
    return gib * GIB


def check_memory(estimate_bytes: float, source: str, what: str, error: type[SpikingmindError] = ConfigError) -> None:
    """Raise `error` when `estimate_bytes` exceeds the budget: "<source>: <what> needs about
    X GiB, above the memory budget of Y GiB (...how to raise it)"."""
    limit = max_memory_bytes()
    if not estimate_bytes <= limit:  # also catches a NaN estimate
        raise error(f"{source}: {what} needs about {estimate_bytes / GIB:.3g} GiB, above the memory budget of "
                    f"{limit / GIB:.3g} GiB (raise it with `spikingmind --max-memory-gib N ...` or {ENV_VAR})")


def model_parameters(kind: str, width: int, n_blocks: int, mlp_ratio: int, n_tokens: int,
                     n_features: int = 0, n_out: int = 0) -> int:
    """Parameter count of `spikingmind.model.DecisionTransformer` (weights and biases; BatchNorm
    and LayerNorm terms are O(width) per layer and included as 16 x width per block):
    embed F C + n_blocks (4 C^2 + 2 H C^2 + 16 C) + head C n_out, plus the ANN's position
    table L C (H = mlp_ratio). Python ints: no overflow for absurd sizes."""
    c, h = width, mlp_ratio
    per_block = 4 * c * c + 2 * h * c * c + 16 * c
    params = n_features * c + n_blocks * per_block + c * n_out + c
    return params + (n_tokens * c if kind == "ann" else 0)


def model_memory_bytes(kind: str, width: int, n_blocks: int, mlp_ratio: int, n_tokens: int, time_steps: int,
                       batch: int, training: bool, n_heads: int = 1, n_features: int = 0, n_out: int = 0) -> int:
    """Bytes (float32) one forward pass (inference) or one forward + backward + AdamW step
    (`training`) of the Decision Transformer allocates at its peak, for `batch` windows of
    L = `n_tokens` tokens.

    With C = width, H = mlp_ratio, P = `model_parameters`, S = T B L C (one spiking layer's
    tensor over the T steps), A = heads B L^2 (one softmax attention map):

        spiking DT, training:   4 [ 4 P + n_blocks ((40 + 10 H) S + 3 C L^2) ]
        spiking DT, inference:  4 [   P + n_blocks ((12 +  2 H) S +   C L^2) ]
        ANN twin,   training:   4 [ 4 P + n_blocks (( 9 +  4 H) B L C + 3 A) ]
        ANN twin,   inference:  4 [   P + n_blocks (( 4 +  2 H) B L C + 3 A) ]

    4 P: weights, gradients and AdamW's two moments. The per-block factors count the
    tensors of that size a block keeps: in training what autograd saves (every TokenLinear's
    output and BatchNorm output, three per step per LIF layer for the surrogate gradient,
    the ANDs, the residual sums; the MLP's hidden layers are H times wider), at inference the
    ones alive at once plus the recorded spikes; C L^2 is the causal mixing matrix (and its
    graph in training), 3 A the ANN's scores, masked scores and softmax. Measured peak RSS
    increase on CPU (torch 2.13, T 4-8, L 60-300, C 64-128, B 16-128): within 10 % of
    these formulas.
    """
    p = model_parameters(kind, width, n_blocks, mlp_ratio, n_tokens, n_features, n_out)
    c, h, length = width, mlp_ratio, n_tokens
    if kind == "snn":
        s = time_steps * batch * length * c
        per_block = ((40 + 10 * h) * s + 3 * c * length * length) if training else \
            ((12 + 2 * h) * s + c * length * length)
    else:
        attention = n_heads * batch * length * length
        per_block = ((9 + 4 * h) * batch * length * c if training else (4 + 2 * h) * batch * length * c) \
            + 3 * attention
    return FLOAT32 * ((4 if training else 1) * p + n_blocks * per_block)


def check_model_memory(cfg, batch: int, training: bool, source: str, n_features: int = 0, n_out: int = 0,
                       error: type[SpikingmindError] = ConfigError) -> None:
    """`check_memory` of `model_memory_bytes` for a ModelConfig `cfg`; the message names the
    fields that set the size."""
    estimate = model_memory_bytes(cfg.kind, cfg.width, cfg.n_blocks, cfg.mlp_ratio, cfg.n_tokens, cfg.time_steps,
                                  batch, training, cfg.n_heads, n_features, n_out)
    step = f"a training step of batch {batch}" if training else f"a decision of batch {batch}"
    sizes = (f"model.width={cfg.width}, n_blocks={cfg.n_blocks}, mlp_ratio={cfg.mlp_ratio}, "
             f"context_length={cfg.context_length}" + (f", time_steps={cfg.time_steps}" if cfg.kind == "snn" else ""))
    check_memory(estimate, source, f"{step} at {sizes}", error)


def graph_memory_bytes(out_shapes: dict[str, tuple[int, ...]], kept: list[str], time_steps: int, batch: int,
                       itemsize: int = 8) -> int:
    """Bytes a simulation of a NIR graph (`spikingmind.export.reference`) allocates: every
    node's output of one step is alive at once, with the previous step's (feedback) and one
    temporary, and the kept nodes (Outputs, recorded nodes) hold all T steps twice while
    they are stacked:

        itemsize B (2 T sum_kept N_v + 3 sum_all N_v),   N_v = prod(shape of node v)
    """
    size = {name: math.prod(shape) for name, shape in out_shapes.items()}
    return itemsize * batch * (2 * time_steps * sum(size[n] for n in kept) + 3 * sum(size.values()))


def check_graph_memory(out_shapes: dict[str, tuple[int, ...]], kept: list[str], time_steps: int, batch: int,
                       source: str, itemsize: int = 8, error: type[SpikingmindError] = ConfigError) -> None:
    """`check_memory` of `graph_memory_bytes`; the message names time_steps, the batch and the
    largest node."""
    estimate = graph_memory_bytes(out_shapes, kept, time_steps, batch, itemsize)
    largest = max(out_shapes, key=lambda name: math.prod(out_shapes[name]))
    check_memory(estimate, source, f"simulating time_steps={time_steps} at batch {batch} (largest node "
                                   f"'{largest}' of shape {tuple(out_shapes[largest])})", error)
