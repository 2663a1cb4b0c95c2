"""Inference weights of the spiking DT in float64, BatchNorm folded into the affine map before it.

Every backend that does not run the PyTorch modules themselves (the NIR and ONNX exporters,
the event-driven runtime) takes its weights from here, so BatchNorm is folded in one place
and in one precision (float64, cast afterwards where a backend runs in float32).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spikingmind.model import CausalDecayMix, TokenLinear


def as_float64(tensor: torch.Tensor) -> np.ndarray:
    """A parameter or buffer as a float64 NumPy copy (detached, on the CPU)."""
    return tensor.detach().to(torch.float64).cpu().numpy().copy()


def batch_norm_affine(norm: nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as y = scale * x + shift per channel, float64."""
    scale = as_float64(norm.weight) / np.sqrt(as_float64(norm.running_var) + norm.eps)
    return scale, as_float64(norm.bias) - as_float64(norm.running_mean) * scale


def fold_batch_norm(weight: np.ndarray, bias: np.ndarray, norm: nn.BatchNorm1d | None):
    """Affine y = W x + b followed by eval-mode BatchNorm -> one affine map (W', b')."""
    if norm is None:
        return weight, bias
    scale, shift = batch_norm_affine(norm)
    return weight * scale.reshape(-1, *([1] * (weight.ndim - 1))), bias * scale + shift


def fold_token_linears(*modules: TokenLinear) -> tuple[np.ndarray, np.ndarray]:
    """Per-token linear maps of one input with their BatchNorm folded, stacked along the output
    axis: W (sum of C_out, C_in), b (sum of C_out,), float64 (q, k, v as one map, say)."""
    folded = [fold_batch_norm(as_float64(m.linear.weight), as_float64(m.linear.bias), m.norm) for m in modules]
    return np.concatenate([w for w, _ in folded]), np.concatenate([b for _, b in folded])


def fold_causal_mix(module: CausalDecayMix) -> tuple[np.ndarray, np.ndarray]:
    """The mix at inference: its (C, L, L) matrix with the BatchNorm after it folded in, and the shift (C,)."""
    return fold_batch_norm(as_float64(module.mixing_matrix()), np.zeros(module.norm.num_features), module.norm)
