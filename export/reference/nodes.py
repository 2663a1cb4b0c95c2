"""Node kinds of the reference simulator: pure step functions and how each NIR node compiles to one.

Neuron dynamics are pure step functions `(params, state, x) -> (output, state)` (Norse style);
`COMPILERS` maps each supported NIR node type (exactly the keys of `spikingmind.graph.NODE_KINDS`)
to the function that precomputes its constants. Conversions between continuous NIR parameters
and the discrete step come only from `spikingmind.units`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from spikingmind import units
from spikingmind.graph import Shape, conv2d_geometry, conv_geometry

# --------------------------------------------------------------------------------------
# Compiled nodes: a pure step function, its constants, and its initial state
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    step: Callable[[Any, Any, np.ndarray], tuple[np.ndarray, Any]]
    params: Any
    init_state: Callable[[int], Any]  # batch size -> state


def _no_state(batch: int) -> None:
    return None


def _zeros_state(shape: Shape, dtype) -> Callable[[int], np.ndarray]:
    return lambda batch: np.zeros((batch, *shape), dtype=dtype)


@dataclass(frozen=True)
class CompileContext:
    """What compiling a node needs besides the node itself."""

    name: str
    in_shape: Shape
    out_shape: Shape
    dt: float | None
    dtype: Any


# ---- stateless step functions --------------------------------------------------------


def _identity_step(params, state, x):
    return x, state


def _affine_step(params, state, x):
    weight_t, bias = params
    return np.matmul(x, weight_t) + bias, state


def _linear_step(params, state, x):
    return np.matmul(x, params), state


def _scale_step(params, state, x):
    return params * x, state


def _flatten_step(params, state, x):
    return x.reshape((x.shape[0], *params)), state


def _threshold_step(params, state, x):
    threshold, dtype = params
    return (x > threshold).astype(dtype), state


def _conv_pointwise_step(params, state, x):
    # kernel size 1, stride 1, no padding: one matmul, (C_out, C_in) @ (B, C_in, N)
    weight, bias = params
    out = np.matmul(weight, x)
    out += bias
    return out, state


def _conv2d_flat_step(params, state, x):
    # Conv2d as its Conv1d step on the flattened (H*W) grid: the same matmul, bit for bit
    inner, params1d, out_shape = params
    batch = x.shape[0]
    out, state = inner(params1d, state, x.reshape(batch, x.shape[1], -1))
    return out.reshape(batch, *out_shape), state


def _conv_channelwise_step(params, state, x):
    # each output channel reads only its own input channel: per-channel Toeplitz matrices
    # (C, N_out, N) @ (B, C, N, 1) -> (B, C, N_out); padding and stride are folded in
    toeplitz, bias = params
    out = np.matmul(toeplitz, x[..., None])[..., 0]
    out += bias
    return out, state


def _conv_im2col_step(params, state, x):
    index, pad, groups, weight, bias, path = params
    batch, c_in, _ = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), pad)) if pad != (0, 0) else x
    cols = padded[:, :, index]  # (B, C_in, N_out, K)
    cols = cols.reshape(batch, groups, c_in // groups, *index.shape)
    out = np.einsum("bgilk,goik->bgol", cols, weight, optimize=path)
    return out.reshape(batch, -1, index.shape[0]) + bias, state


# ---- stateful step functions (Norse style: state in, state out) -----------------------


def _lif_step(params, v, x):
    beta, gain, drive, v_threshold, v_reset, dtype = params
    v = beta * v + gain * x + drive
    spikes = v > v_threshold
    np.copyto(v, v_reset, where=spikes)  # v is this step's own array: reset in place
    return spikes.astype(dtype), v


def _lif_unit_gain_step(params, v, x):
    # gain == 1 and leak drive == 0 (our exports): `beta*v + 1*x + 0` is `beta*v + x` bit for bit
    beta, _, _, v_threshold, v_reset, dtype = params
    v = beta * v
    v += x
    spikes = v > v_threshold
    np.copyto(v, v_reset, where=spikes)
    return spikes.astype(dtype), v


def _if_step(params, v, x):
    r, v_threshold, v_reset, dtype = params
    v = v + r * x
    spikes = v > v_threshold
    np.copyto(v, v_reset, where=spikes)
    return spikes.astype(dtype), v


def _li_step(params, v, x):
    beta, gain, drive = params
    v = beta * v + gain * x + drive
    return v, v


def _i_step(params, v, x):
    v = v + params * x  # params = dt * r
    return v, v


def _cuba_lif_step(params, state, x):
    beta_syn, w_in, lif_params = params
    i_syn, v = state
    i_syn = beta_syn * i_syn + w_in * x
    spikes, v = _lif_step(lif_params, v, i_syn)
    return spikes, (i_syn, v)


def _delay_step(params, state, x):
    # ring buffer of the last max_delay + 1 inputs; slots never written read as 0
    steps = params  # (*shape) whole steps of delay per element
    t, history = state
    slots = history.shape[0]
    history = history.copy()
    history[t % slots] = x
    index = np.broadcast_to(((t - steps) % slots)[None, None], (1, *x.shape))
    return np.take_along_axis(history, index, axis=0)[0], (t + 1, history)


# ---- Conv2d: torch.nn.functional.conv2d semantics ---------------------------------------


def _conv2d_im2col_step(params, state, x):
    rows, cols, pad, groups, weight, bias, path = params
    batch, c_in = x.shape[:2]
    padded = np.pad(x, ((0, 0), (0, 0), *pad)) if pad != ((0, 0), (0, 0)) else x
    patches = padded[:, :, rows, cols]  # (B, C_in, H_out, W_out, kH, kW)
    patches = patches.reshape(batch, groups, c_in // groups, *patches.shape[2:])
    out = np.einsum("bgihwkl,goikl->bgohw", patches, weight, optimize=path)
    return out.reshape(batch, -1, *out.shape[-2:]) + bias, state


def _compile_conv2d(node, ctx: CompileContext) -> Compiled:
    """torch conv2d on (C_in, H, W). A 1x1 kernel with stride 1 and no padding is the Conv1d
    pointwise matmul on the flattened grid; a channelwise kernel becomes per-channel Toeplitz
    matrices over the flattened grid (as Conv1d); anything else is im2col."""
    in_hw = tuple(ctx.in_shape[1:])
    c_out, c_in, kernel, stride, dilation, groups, pad, out_hw = conv2d_geometry(node, in_hw)
    weight = np.asarray(node.weight, dtype=ctx.dtype)
    try:
        bias = np.broadcast_to(np.asarray(node.bias, dtype=ctx.dtype), (c_out,))
    except ValueError as exc:
        raise ValueError(f"bias shape {np.shape(node.bias)} does not fit {c_out} channels") from exc
    cg_in, cg_out = c_in // groups, c_out // groups
    dense = np.zeros((c_out, c_in, *kernel), dtype=ctx.dtype)
    for g in range(groups):
        dense[g * cg_out : (g + 1) * cg_out, g * cg_in : (g + 1) * cg_in] = weight[g * cg_out : (g + 1) * cg_out]
    out_shape = (c_out, *out_hw)
    n_in, n_out = in_hw[0] * in_hw[1], out_hw[0] * out_hw[1]
    flat_bias = np.ascontiguousarray(bias)[:, None]

    if kernel == (1, 1) and stride == (1, 1) and pad == ((0, 0), (0, 0)):
        inner = (np.ascontiguousarray(dense[:, :, 0, 0]), flat_bias)
        return Compiled(_conv2d_flat_step, (_conv_pointwise_step, inner, out_shape), _no_state)

    off_diagonal = dense.copy()
    if c_in == c_out:
        off_diagonal[np.arange(c_out), np.arange(c_in)] = 0
    if c_in == c_out and not off_diagonal.any() and c_out * n_out * n_in <= _TOEPLITZ_MAX_ELEMENTS:
        taps = dense[np.arange(c_out), np.arange(c_in)]  # (C, kH, kW)
        ho, wo, i, j = np.meshgrid(*(np.arange(n) for n in (*out_hw, *kernel)), indexing="ij")
        hi = ho * stride[0] + i * dilation[0] - pad[0][0]  # taps on padding read zeros
        wi = wo * stride[1] + j * dilation[1] - pad[1][0]
        inside = (hi >= 0) & (hi < in_hw[0]) & (wi >= 0) & (wi < in_hw[1])
        toeplitz = np.zeros((c_out, n_out, n_in), dtype=ctx.dtype)
        toeplitz[:, (ho * out_hw[1] + wo)[inside], (hi * in_hw[1] + wi)[inside]] = taps[:, i[inside], j[inside]]
        return Compiled(_conv2d_flat_step, (_conv_channelwise_step, (toeplitz, flat_bias), out_shape), _no_state)

    rows = (np.arange(out_hw[0]) * stride[0])[:, None, None, None] + (np.arange(kernel[0]) * dilation[0])[None, None, :, None]
    cols = (np.arange(out_hw[1]) * stride[1])[None, :, None, None] + (np.arange(kernel[1]) * dilation[1])[None, None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)  # (H_out, W_out, kH, kW) into the padded input
    grouped = weight.reshape(groups, cg_out, cg_in, *kernel)
    probe = np.zeros((1, groups, cg_in, *out_hw, *kernel), dtype=ctx.dtype)
    path = np.einsum_path("bgihwkl,goikl->bgohw", probe, grouped, optimize="optimal")[0]
    return Compiled(_conv2d_im2col_step, (rows, cols, pad, groups, grouped, bias[:, None, None], path), _no_state)


# ---- compilation: constants per node kind ---------------------------------------------


def _array(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _constant(value, dtype) -> np.ndarray:
    """A per-neuron parameter cast to `dtype`, shrunk to size 1 along every axis where it
    is constant: it broadcasts to the same values, and small tables stay in cache."""
    array = np.asarray(value, dtype=dtype)
    for axis in range(array.ndim):
        first = array.take([0], axis=axis)
        if np.array_equal(array, np.broadcast_to(first, array.shape)):
            array = first
    return np.ascontiguousarray(array)


def _compile_identity(node, ctx: CompileContext) -> Compiled:
    return Compiled(_identity_step, None, _no_state)


def _compile_affine(node, ctx: CompileContext) -> Compiled:
    weight = np.asarray(node.weight, dtype=ctx.dtype)
    bias = np.asarray(node.bias, dtype=ctx.dtype)
    if bias.shape not in ((), (weight.shape[0],)):
        raise ValueError(f"bias shape {bias.shape} does not match weight {weight.shape}")
    return Compiled(_affine_step, (np.ascontiguousarray(weight.T), bias), _no_state)


def _compile_linear(node, ctx: CompileContext) -> Compiled:
    weight = np.asarray(node.weight, dtype=ctx.dtype)
    return Compiled(_linear_step, np.ascontiguousarray(weight.T), _no_state)


def _compile_scale(node, ctx: CompileContext) -> Compiled:
    return Compiled(_scale_step, _constant(node.scale, ctx.dtype), _no_state)


def _compile_threshold(node, ctx: CompileContext) -> Compiled:
    threshold = _constant(node.threshold, ctx.dtype)
    return Compiled(_threshold_step, (threshold, ctx.dtype), _no_state)


def _lif_constants(tau, r, v_leak, v_threshold, v_reset, ctx: CompileContext):
    cast = lambda a: _constant(a, ctx.dtype)  # noqa: E731
    return (
        cast(units.beta_from_tau(tau, ctx.dt)),
        cast(units.input_gain(tau, r, ctx.dt)),
        cast(units.leak_drive(tau, v_leak, ctx.dt)),
        cast(v_threshold),
        cast(v_reset),
        ctx.dtype,
    )


def _compile_lif(node, ctx: CompileContext) -> Compiled:
    params = _lif_constants(node.tau, node.r, node.v_leak, node.v_threshold, node.v_reset, ctx)
    _, gain, drive, *_ = params
    step = _lif_unit_gain_step if np.all(gain == 1) and not np.any(drive) else _lif_step
    return Compiled(step, params, _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_if(node, ctx: CompileContext) -> Compiled:
    cast = lambda a: _constant(a, ctx.dtype)  # noqa: E731
    params = (cast(node.r), cast(node.v_threshold), cast(node.v_reset), ctx.dtype)
    return Compiled(_if_step, params, _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_li(node, ctx: CompileContext) -> Compiled:
    beta, gain, drive, *_ = _lif_constants(node.tau, node.r, node.v_leak, 0.0, 0.0, ctx)
    return Compiled(_li_step, (beta, gain, drive), _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_i(node, ctx: CompileContext) -> Compiled:
    gain = _constant(ctx.dt * _array(node.r), ctx.dtype)
    return Compiled(_i_step, gain, _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_cuba_lif(node, ctx: CompileContext) -> Compiled:
    lif = _lif_constants(node.tau_mem, node.r, node.v_leak, node.v_threshold, node.v_reset, ctx)
    beta_syn = _constant(units.beta_from_tau(node.tau_syn, ctx.dt), ctx.dtype)
    w_in = _constant(node.w_in, ctx.dtype)
    zeros = _zeros_state(ctx.out_shape, ctx.dtype)
    return Compiled(_cuba_lif_step, (beta_syn, w_in, lif), lambda b: (zeros(b), zeros(b)))


def _compile_delay(node, ctx: CompileContext) -> Compiled:
    steps = np.rint(_array(node.delay) / ctx.dt)
    if np.any(steps < 0):
        raise ValueError(f"delay must be >= 0, got {np.unique(node.delay)}")
    steps = np.broadcast_to(steps.astype(np.int64), ctx.out_shape)
    slots = int(steps.max(initial=0)) + 1
    shape = ctx.out_shape

    def init(batch: int):
        return 0, np.zeros((slots, batch, *shape), dtype=ctx.dtype)

    return Compiled(_delay_step, steps, init)

def _compile_flatten(node, ctx: CompileContext) -> Compiled:
    return Compiled(_flatten_step, ctx.out_shape, _no_state)


#: Largest per-channel Toeplitz table (elements) before falling back to im2col.
_TOEPLITZ_MAX_ELEMENTS = 1 << 22


def _compile_conv1d(node, ctx: CompileContext) -> Compiled:
    c_out, c_in, kernel, stride, dilation, groups, pad, n_out = conv_geometry(node, ctx.in_shape[1])
    n_in = ctx.in_shape[1]
    weight = np.asarray(node.weight, dtype=ctx.dtype)
    try:
        bias = np.broadcast_to(np.asarray(node.bias, dtype=ctx.dtype), (c_out,))
    except ValueError as exc:
        raise ValueError(f"bias shape {np.shape(node.bias)} does not fit {c_out} channels") from exc
    bias = np.ascontiguousarray(bias)[:, None]  # (C_out, 1) broadcasts over positions

    # dense equivalent of a grouped kernel: (C_out, C_in, K), zero across groups
    dense = np.zeros((c_out, c_in, kernel), dtype=ctx.dtype)
    cg_in, cg_out = c_in // groups, c_out // groups
    for g in range(groups):
        dense[g * cg_out : (g + 1) * cg_out, g * cg_in : (g + 1) * cg_in] = weight[
            g * cg_out : (g + 1) * cg_out
        ]

    if kernel == 1 and stride == 1 and pad == (0, 0):
        return Compiled(_conv_pointwise_step, (np.ascontiguousarray(dense[:, :, 0]), bias), _no_state)

    off_diagonal = dense.copy()
    if c_in == c_out:
        off_diagonal[np.arange(c_out), np.arange(c_in)] = 0
    channelwise = c_in == c_out and not off_diagonal.any()
    if channelwise and c_out * n_out * n_in <= _TOEPLITZ_MAX_ELEMENTS:
        taps = dense[np.arange(c_out), np.arange(c_in)]  # (C, K)
        out_pos, tap = np.meshgrid(np.arange(n_out), np.arange(kernel), indexing="ij")
        in_pos = out_pos * stride + tap * dilation - pad[0]  # taps on padding read zeros
        inside = (in_pos >= 0) & (in_pos < n_in)
        toeplitz = np.zeros((c_out, n_out, n_in), dtype=ctx.dtype)
        toeplitz[:, out_pos[inside], in_pos[inside]] = taps[:, tap[inside]]
        return Compiled(_conv_channelwise_step, (toeplitz, bias), _no_state)

    index = np.arange(n_out)[:, None] * stride + np.arange(kernel)[None, :] * dilation
    grouped = weight.reshape(groups, cg_out, cg_in, kernel)
    probe = np.zeros((1, groups, cg_in, n_out, kernel), dtype=ctx.dtype)
    path = np.einsum_path("bgilk,goik->bgol", probe, grouped, optimize="optimal")[0]
    return Compiled(_conv_im2col_step, (index, pad, groups, grouped, bias, path), _no_state)


#: NIR node type -> compile(node, ctx): its step function and constants (the keys of graph.NODE_KINDS).
COMPILERS: dict[type, Callable[[Any, CompileContext], Compiled]] = {
    nir.Input: _compile_identity,
    nir.Output: _compile_identity,
    nir.Affine: _compile_affine,
    nir.Linear: _compile_linear,
    nir.Scale: _compile_scale,
    nir.Conv1d: _compile_conv1d,
    nir.Conv2d: _compile_conv2d,
    nir.Flatten: _compile_flatten,
    nir.Threshold: _compile_threshold,
    nir.LIF: _compile_lif,
    nir.IF: _compile_if,
    nir.LI: _compile_li,
    nir.I: _compile_i,
    nir.CubaLIF: _compile_cuba_lif,
    nir.Delay: _compile_delay,
}
