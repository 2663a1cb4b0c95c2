"""NumPy reference simulator of NIR graphs: the executable statement of docs/SEMANTICS.md.

Every other backend (PyTorch, Lava, fixed point, the energy counter) is checked against
this file, so it is written for clarity first and speed second. It imports no torch.

Time semantics (zero delay): at every SNN step each node is evaluated once, in a
topological order, and reads the *current* step's outputs of its sources. Several edges
into one node are summed in edge-list order (`acc = e0; acc = acc + e1; ...`).

Recurrence: a cycle is allowed only when it contains a stateful node (LIF, IF, LI, I,
CubaLIF, Delay). Inside a strongly connected component, every edge that *leaves* a stateful
node is a feedback edge: its destination reads the source's output of the *previous*
step (zeros at step 0), as a recurrent synapse does. All other edges are zero delay.

Neuron dynamics are pure step functions `(params, state, x) -> (output, state)`; the
one table `NODE_KINDS` maps each supported NIR node type to how its shapes are checked
and how it is compiled into a step function. Conversions between continuous NIR
parameters and the discrete step come only from `spikingmind.units`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import nir
import numpy as np

from spikingmind import units
from spikingmind.errors import GraphError

__all__ = [
    "NODE_KINDS",
    "STATEFUL_NODE_TYPES",
    "NIRPolicy",
    "ReferenceSimulator",
    "SimulationResult",
    "load_graph",
    "validate_graph",
]

Shape = tuple[int, ...]


class _ShapeMismatch(Exception):
    """Internal: an input shape does not fit a node; carries what the node expects."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


# --------------------------------------------------------------------------------------
# Compiled nodes: a pure step function, its constants, and its initial state
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    step: Callable[[Any, Any, np.ndarray], tuple[np.ndarray, Any]]
    params: Any
    init_state: Callable[[int], Any]  # batch size -> state


def _no_state(batch: int) -> None:
    return None


def _zeros_state(shape: Shape, dtype) -> Callable[[int], np.ndarray]:
    return lambda batch: np.zeros((batch, *shape), dtype=dtype)


@dataclass(frozen=True)
class _Context:
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


# ---- per node kind: shapes and compilation -------------------------------------------


def _array(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _as_int(value, what: str) -> int:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be one integer, got {value!r}")
    return int(array.reshape(-1)[0])


def _param_shape(node, names: Iterable[str]) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*(np.shape(getattr(node, n)) for n in names)))
    except ValueError as exc:
        raise ValueError(
            f"parameters {', '.join(names)} have incompatible shapes "
            f"{[np.shape(getattr(node, n)) for n in names]}"
        ) from exc


def _elementwise_input(param_names: tuple[str, ...]):
    """Input shape rule of nodes acting element by element: their parameter shape."""

    def input_shape(node, candidate: Shape | None) -> Shape:
        shape = _param_shape(node, param_names)
        if shape == ():  # scalar parameters broadcast over any shape
            if candidate is None:
                raise _ShapeMismatch("an input shape (its parameters are scalars)")
            return candidate
        if candidate is not None and candidate != shape:
            raise _ShapeMismatch(str(shape))
        return shape

    return input_shape


def _same_shape(node, in_shape: Shape) -> Shape:
    return in_shape


def _fixed_input(node, candidate: Shape | None, declared) -> Shape:
    if declared is None:
        if candidate is None:
            raise _ShapeMismatch("an input shape (none declared)")
        return candidate
    shape = tuple(int(n) for n in np.asarray(declared).reshape(-1))
    if candidate is not None and candidate != shape:
        raise _ShapeMismatch(str(shape))
    return shape


def _input_shape_of_input(node, candidate):
    return _fixed_input(node, candidate, node.input_type.get("input"))


def _input_shape_of_output(node, candidate):
    return _fixed_input(node, candidate, node.output_type.get("output"))


def _matrix_input(node, candidate: Shape | None) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {weight.shape}")
    n_in = weight.shape[1]
    if candidate is None:
        return (n_in,)
    if len(candidate) < 1 or candidate[-1] != n_in:
        raise _ShapeMismatch(f"(..., {n_in})")
    return candidate


def _matrix_output(node, in_shape: Shape) -> Shape:
    return (*in_shape[:-1], int(np.shape(node.weight)[0]))


def _constant(value, dtype) -> np.ndarray:
    """A per-neuron parameter cast to `dtype`, shrunk to size 1 along every axis where it
    is constant: it broadcasts to the same values, and small tables stay in cache."""
    array = np.asarray(value, dtype=dtype)
    for axis in range(array.ndim):
        first = array.take([0], axis=axis)
        if np.array_equal(array, np.broadcast_to(first, array.shape)):
            array = first
    return np.ascontiguousarray(array)


def _compile_identity(node, ctx: _Context) -> _Compiled:
    return _Compiled(_identity_step, None, _no_state)


def _compile_affine(node, ctx: _Context) -> _Compiled:
    weight = np.asarray(node.weight, dtype=ctx.dtype)
    bias = np.asarray(node.bias, dtype=ctx.dtype)
    if bias.shape not in ((), (weight.shape[0],)):
        raise ValueError(f"bias shape {bias.shape} does not match weight {weight.shape}")
    return _Compiled(_affine_step, (np.ascontiguousarray(weight.T), bias), _no_state)


def _compile_linear(node, ctx: _Context) -> _Compiled:
    weight = np.asarray(node.weight, dtype=ctx.dtype)
    return _Compiled(_linear_step, np.ascontiguousarray(weight.T), _no_state)


def _compile_scale(node, ctx: _Context) -> _Compiled:
    return _Compiled(_scale_step, _constant(node.scale, ctx.dtype), _no_state)


def _compile_threshold(node, ctx: _Context) -> _Compiled:
    threshold = _constant(node.threshold, ctx.dtype)
    return _Compiled(_threshold_step, (threshold, ctx.dtype), _no_state)


def _lif_constants(tau, r, v_leak, v_threshold, v_reset, ctx: _Context):
    cast = lambda a: _constant(a, ctx.dtype)  # noqa: E731
    return (
        cast(units.beta_from_tau(tau, ctx.dt)),
        cast(units.input_gain(tau, r, ctx.dt)),
        cast(units.leak_drive(tau, v_leak, ctx.dt)),
        cast(v_threshold),
        cast(v_reset),
        ctx.dtype,
    )


def _compile_lif(node, ctx: _Context) -> _Compiled:
    params = _lif_constants(node.tau, node.r, node.v_leak, node.v_threshold, node.v_reset, ctx)
    _, gain, drive, *_ = params
    step = _lif_unit_gain_step if np.all(gain == 1) and not np.any(drive) else _lif_step
    return _Compiled(step, params, _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_if(node, ctx: _Context) -> _Compiled:
    cast = lambda a: _constant(a, ctx.dtype)  # noqa: E731
    params = (cast(node.r), cast(node.v_threshold), cast(node.v_reset), ctx.dtype)
    return _Compiled(_if_step, params, _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_li(node, ctx: _Context) -> _Compiled:
    beta, gain, drive, *_ = _lif_constants(node.tau, node.r, node.v_leak, 0.0, 0.0, ctx)
    return _Compiled(_li_step, (beta, gain, drive), _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_i(node, ctx: _Context) -> _Compiled:
    gain = _constant(ctx.dt * _array(node.r), ctx.dtype)
    return _Compiled(_i_step, gain, _zeros_state(ctx.out_shape, ctx.dtype))


def _compile_cuba_lif(node, ctx: _Context) -> _Compiled:
    lif = _lif_constants(node.tau_mem, node.r, node.v_leak, node.v_threshold, node.v_reset, ctx)
    beta_syn = _constant(units.beta_from_tau(node.tau_syn, ctx.dt), ctx.dtype)
    w_in = _constant(node.w_in, ctx.dtype)
    zeros = _zeros_state(ctx.out_shape, ctx.dtype)
    return _Compiled(_cuba_lif_step, (beta_syn, w_in, lif), lambda b: (zeros(b), zeros(b)))


def _compile_delay(node, ctx: _Context) -> _Compiled:
    steps = np.rint(_array(node.delay) / ctx.dt)
    if np.any(steps < 0):
        raise ValueError(f"delay must be >= 0, got {np.unique(node.delay)}")
    steps = np.broadcast_to(steps.astype(np.int64), ctx.out_shape)
    slots = int(steps.max(initial=0)) + 1
    shape = ctx.out_shape

    def init(batch: int):
        return 0, np.zeros((slots, batch, *shape), dtype=ctx.dtype)

    return _Compiled(_delay_step, steps, init)


def _flatten_output(node, in_shape: Shape) -> Shape:
    ndim = len(in_shape)
    start, end = _as_int(node.start_dim, "start_dim"), _as_int(node.end_dim, "end_dim")
    start, end = start % ndim if ndim else 0, end % ndim if ndim else 0
    if ndim == 0 or start > end:
        raise _ShapeMismatch(f"at least {max(start, end) + 1} dimensions (start_dim..end_dim)")
    merged = int(np.prod(in_shape[start : end + 1]))
    return (*in_shape[:start], merged, *in_shape[end + 1 :])


def _flatten_input(node, candidate):
    return _fixed_input(node, candidate, node.input_type.get("input"))


def _compile_flatten(node, ctx: _Context) -> _Compiled:
    return _Compiled(_flatten_step, ctx.out_shape, _no_state)


# ---- Conv1d: torch.nn.functional.conv1d semantics --------------------------------------


def _conv_geometry(node, n_in: int):
    weight = np.asarray(node.weight)
    if weight.ndim != 3:
        raise ValueError(f"weight must be 3-D (C_out, C_in/groups, K), got shape {weight.shape}")
    c_out, c_in_group, kernel = weight.shape
    stride = _as_int(node.stride, "stride")
    dilation = _as_int(node.dilation, "dilation")
    groups = _as_int(node.groups, "groups")
    if stride < 1 or dilation < 1 or groups < 1 or c_out % groups:
        raise ValueError(
            f"stride={stride}, dilation={dilation}, groups={groups} invalid for {c_out} output channels"
        )
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0)
        elif padding == "same":
            if stride != 1:
                raise ValueError("padding='same' requires stride 1 (as in torch)")
            total = dilation * (kernel - 1)
            pad = (total // 2, total - total // 2)  # torch puts the odd element on the right
        else:
            raise ValueError(f"padding must be an int, 'same' or 'valid', got {padding!r}")
    else:
        p = _as_int(padding, "padding")
        if p < 0:
            raise ValueError(f"padding must be >= 0, got {p}")
        pad = (p, p)
    n_out = (n_in + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1
    return c_out, c_in_group * groups, kernel, stride, dilation, groups, pad, n_out


def _conv_input(node, candidate: Shape | None) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 3:
        raise ValueError(f"weight must be 3-D (C_out, C_in/groups, K), got shape {weight.shape}")
    c_in = weight.shape[1] * _as_int(node.groups, "groups")
    n_in = None if node.input_shape is None else _as_int(node.input_shape, "input_shape")
    if candidate is None:
        if n_in is None:
            raise _ShapeMismatch(f"({c_in}, N) (input_shape not declared)")
        return (c_in, n_in)
    if len(candidate) != 2 or candidate[0] != c_in or (n_in is not None and candidate[1] != n_in):
        raise _ShapeMismatch(f"({c_in}, {'N' if n_in is None else n_in})")
    return candidate


def _conv_output(node, in_shape: Shape) -> Shape:
    c_out, *_, n_out = _conv_geometry(node, in_shape[1])
    if n_out < 1:
        raise ValueError(f"input length {in_shape[1]} is too short for the kernel")
    return (c_out, n_out)


#: Largest per-channel Toeplitz table (elements) before falling back to im2col.
_TOEPLITZ_MAX_ELEMENTS = 1 << 22


def _compile_conv1d(node, ctx: _Context) -> _Compiled:
    c_out, c_in, kernel, stride, dilation, groups, pad, n_out = _conv_geometry(node, ctx.in_shape[1])
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
        return _Compiled(_conv_pointwise_step, (np.ascontiguousarray(dense[:, :, 0]), bias), _no_state)

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
        return _Compiled(_conv_channelwise_step, (toeplitz, bias), _no_state)

    index = np.arange(n_out)[:, None] * stride + np.arange(kernel)[None, :] * dilation
    grouped = weight.reshape(groups, cg_out, cg_in, kernel)
    probe = np.zeros((1, groups, cg_in, n_out, kernel), dtype=ctx.dtype)
    path = np.einsum_path("bgilk,goik->bgol", probe, grouped, optimize="optimal")[0]
    return _Compiled(_conv_im2col_step, (index, pad, groups, grouped, bias, path), _no_state)


# ---- Conv2d: torch.nn.functional.conv2d semantics --------------------------------------


def _pair(value, what: str) -> tuple[int, int]:
    array = np.asarray(value)
    if array.size == 1:
        return (_as_int(array, what),) * 2
    if array.shape != (2,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be one integer or two, got {value!r}")
    return int(array[0]), int(array[1])


def _conv2d_geometry(node, in_hw: tuple[int, int]):
    """(C_out, C_in, (kH, kW), stride, dilation, groups, ((top, bottom), (left, right)), (H_out, W_out))."""
    weight = np.asarray(node.weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {weight.shape}")
    c_out, c_in_group, *kernel = weight.shape
    stride, dilation = _pair(node.stride, "stride"), _pair(node.dilation, "dilation")
    groups = _as_int(node.groups, "groups")
    if min(*stride, *dilation, groups) < 1 or c_out % groups:
        raise ValueError(
            f"stride={stride}, dilation={dilation}, groups={groups} invalid for {c_out} output channels"
        )
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SU":
        padding = str(padding.item()) if padding.dtype.kind == "U" else padding.item().decode()
    if isinstance(padding, str):
        if padding == "valid":
            pad = ((0, 0), (0, 0))
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' requires stride 1 (as in torch)")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pad = tuple((t // 2, t - t // 2) for t in totals)  # torch: the odd element on the right
        else:
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        p = _pair(padding, "padding")
        if min(p) < 0:
            raise ValueError(f"padding must be >= 0, got {p}")
        pad = ((p[0], p[0]), (p[1], p[1]))
    out = tuple(
        (n + lo + hi - d * (k - 1) - 1) // s + 1
        for n, (lo, hi), d, k, s in zip(in_hw, pad, dilation, kernel, stride)
    )
    return c_out, c_in_group * groups, tuple(kernel), stride, dilation, groups, pad, out


def _conv2d_input(node, candidate: Shape | None) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {weight.shape}")
    c_in = weight.shape[1] * _as_int(node.groups, "groups")
    hw = None if node.input_shape is None else tuple(int(n) for n in np.asarray(node.input_shape).reshape(-1))
    if hw is not None and len(hw) != 2:
        raise ValueError(f"input_shape must be (H, W), got {node.input_shape!r}")
    if candidate is None:
        if hw is None:
            raise _ShapeMismatch(f"({c_in}, H, W) (input_shape not declared)")
        return (c_in, *hw)
    if len(candidate) != 3 or candidate[0] != c_in or (hw is not None and tuple(candidate[1:]) != hw):
        raise _ShapeMismatch(f"({c_in}, {'H, W' if hw is None else ', '.join(map(str, hw))})")
    return candidate


def _conv2d_output(node, in_shape: Shape) -> Shape:
    c_out, *_, out = _conv2d_geometry(node, tuple(in_shape[1:]))
    if min(out) < 1:
        raise ValueError(f"input {tuple(in_shape[1:])} is too small for the kernel")
    return (c_out, *out)


def _conv2d_im2col_step(params, state, x):
    rows, cols, pad, groups, weight, bias, path = params
    batch, c_in = x.shape[:2]
    padded = np.pad(x, ((0, 0), (0, 0), *pad)) if pad != ((0, 0), (0, 0)) else x
    patches = padded[:, :, rows, cols]  # (B, C_in, H_out, W_out, kH, kW)
    patches = patches.reshape(batch, groups, c_in // groups, *patches.shape[2:])
    out = np.einsum("bgihwkl,goikl->bgohw", patches, weight, optimize=path)
    return out.reshape(batch, -1, *out.shape[-2:]) + bias, state


def _compile_conv2d(node, ctx: _Context) -> _Compiled:
    """torch conv2d on (C_in, H, W). A 1x1 kernel with stride 1 and no padding is the Conv1d
    pointwise matmul on the flattened grid; a channelwise kernel becomes per-channel Toeplitz
    matrices over the flattened grid (as Conv1d); anything else is im2col."""
    in_hw = tuple(ctx.in_shape[1:])
    c_out, c_in, kernel, stride, dilation, groups, pad, out_hw = _conv2d_geometry(node, in_hw)
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
        return _Compiled(_conv2d_flat_step, (_conv_pointwise_step, inner, out_shape), _no_state)

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
        return _Compiled(_conv2d_flat_step, (_conv_channelwise_step, (toeplitz, flat_bias), out_shape), _no_state)

    rows = (np.arange(out_hw[0]) * stride[0])[:, None, None, None] + (np.arange(kernel[0]) * dilation[0])[None, None, :, None]
    cols = (np.arange(out_hw[1]) * stride[1])[None, :, None, None] + (np.arange(kernel[1]) * dilation[1])[None, None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)  # (H_out, W_out, kH, kW) into the padded input
    grouped = weight.reshape(groups, cg_out, cg_in, *kernel)
    probe = np.zeros((1, groups, cg_in, *out_hw, *kernel), dtype=ctx.dtype)
    path = np.einsum_path("bgihwkl,goikl->bgohw", probe, grouped, optimize="optimal")[0]
    return _Compiled(_conv2d_im2col_step, (rows, cols, pad, groups, grouped, bias[:, None, None], path), _no_state)


# ---- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeKind:
    """How one NIR node type is checked and simulated.

    input_shape(node, candidate) -> the node's input shape given the first source's
    output shape (None when unknown); raises when they cannot fit.
    output_shape(node, in_shape) -> the node's output shape (batch axis excluded).
    compile(node, ctx) -> a pure step function with its precomputed constants.
    """

    input_shape: Callable[[Any, Shape | None], Shape]
    output_shape: Callable[[Any, Shape], Shape]
    compile: Callable[[Any, _Context], _Compiled]
    stateful: bool = False
    needs_dt: bool = False


_LIF_PARAMS = ("tau", "r", "v_leak", "v_threshold", "v_reset")
_CUBA_PARAMS = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")

#: The one mapping from NIR node type to its semantics. Exact types: subclasses are
#: custom nodes and are rejected.
NODE_KINDS: dict[type, NodeKind] = {
    nir.Input: NodeKind(_input_shape_of_input, _same_shape, _compile_identity),
    nir.Output: NodeKind(_input_shape_of_output, _same_shape, _compile_identity),
    nir.Affine: NodeKind(_matrix_input, _matrix_output, _compile_affine),
    nir.Linear: NodeKind(_matrix_input, _matrix_output, _compile_linear),
    nir.Scale: NodeKind(_elementwise_input(("scale",)), _same_shape, _compile_scale),
    nir.Conv1d: NodeKind(_conv_input, _conv_output, _compile_conv1d),
    nir.Conv2d: NodeKind(_conv2d_input, _conv2d_output, _compile_conv2d),
    nir.Flatten: NodeKind(_flatten_input, _flatten_output, _compile_flatten),
    nir.Threshold: NodeKind(_elementwise_input(("threshold",)), _same_shape, _compile_threshold),
    nir.LIF: NodeKind(_elementwise_input(_LIF_PARAMS), _same_shape, _compile_lif, True, True),
    nir.IF: NodeKind(
        _elementwise_input(("r", "v_threshold", "v_reset")), _same_shape, _compile_if, True
    ),
    nir.LI: NodeKind(_elementwise_input(("tau", "r", "v_leak")), _same_shape, _compile_li, True, True),
    nir.I: NodeKind(_elementwise_input(("r",)), _same_shape, _compile_i, True, True),
    nir.CubaLIF: NodeKind(_elementwise_input(_CUBA_PARAMS), _same_shape, _compile_cuba_lif, True, True),
    nir.Delay: NodeKind(_elementwise_input(("delay",)), _same_shape, _compile_delay, True, True),
}

STATEFUL_NODE_TYPES = tuple(t for t, kind in NODE_KINDS.items() if kind.stateful)
_TIME_CONSTANTS = ("tau", "tau_mem", "tau_syn")
_SUPPORTED_NAMES = ", ".join(t.__name__ for t in NODE_KINDS)
_STATEFUL_NAMES = "/".join(t.__name__ for t in STATEFUL_NODE_TYPES)


# --------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------


def load_graph(path: str | Path) -> nir.NIRGraph:
    """Read a .nir file and validate it; any failure is a GraphError naming the file.

    NIR's own type inference is switched off (`type_check=False`): it rewrites graphs
    (adds Input/Output nodes to dangling ends) and mis-types grouped Conv1d; the checks
    of `validate_graph` replace it.
    """
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{path}: no such graph file")
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:  # h5py, KeyError, AssertionError, ValueError ... all mean "unreadable"
        message = " ".join(str(exc).split())
        detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        raise GraphError(f"{path}: cannot read NIR graph ({_node_type_hint(path)}{detail})") from exc
    validate_graph(graph, source=str(path))
    return graph


def _node_type_hint(path: Path) -> str:
    """Name the first node whose type nir.read does not know, if the file is readable."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            nodes = f["node"]["nodes"]
            for name in nodes:
                type_name = nodes[name]["type"][()]
                type_name = type_name.decode() if isinstance(type_name, bytes) else str(type_name)
                known = getattr(nir, type_name, None)
                if not (isinstance(known, type) and issubclass(known, nir.NIRNode)):
                    return f"node '{name}' has unknown type '{type_name}'; "
    except Exception:  # the hint is best effort: the main error is reported anyway
        return ""
    return ""


def _graph_dt(graph: nir.NIRGraph) -> float | None:
    metadata = graph.metadata if isinstance(graph.metadata, Mapping) else {}
    if "dt" not in metadata:
        return None
    dt = np.asarray(metadata["dt"], dtype=np.float64)
    if dt.size != 1 or not np.isfinite(dt).all() or float(dt.reshape(-1)[0]) <= 0:
        raise ValueError(f"metadata dt must be one positive number of seconds, got {metadata['dt']!r}")
    return float(dt.reshape(-1)[0])


@dataclass(frozen=True)
class _Plan:
    """Everything the simulator needs, derived once from a validated graph."""

    order: list[str]  # topological order over zero-delay edges
    sources: dict[str, list[tuple[str, bool]]]  # node -> [(source, is_feedback)] in edge order
    in_shapes: dict[str, Shape]
    out_shapes: dict[str, Shape]
    dt: float | None


def validate_graph(graph: nir.NIRGraph, source: str = "<graph>") -> dict[str, Shape]:
    """Check that `graph` means something under docs/SEMANTICS.md; raise GraphError if not.

    Returns every node's output shape (batch axis excluded).
    """
    return _plan(graph, source).out_shapes


def _plan(graph: nir.NIRGraph, source: str) -> _Plan:
    """Validate `graph` and derive order, feedback edges and shapes; GraphError names `source`."""
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"{source}: expected a nir.NIRGraph, got {type(graph).__name__}")
    nodes: dict[str, Any] = dict(graph.nodes)
    edges = [(str(a), str(b)) for a, b in graph.edges]
    try:
        _check_node_types(nodes)
        _check_edges(nodes, edges)
        _check_parameters(nodes)
        dt = _check_dt(graph, nodes)
        incoming = _check_connectivity(nodes, edges)
        order, feedback = _order_and_feedback(nodes, edges)
        sources = {name: [(a, (a, name) in feedback) for a in incoming[name]] for name in nodes}
        in_shapes, out_shapes = _infer_shapes(nodes, edges, order, sources)
    except _Invalid as exc:
        raise GraphError(f"{source}: {exc}") from None
    return _Plan(order, sources, in_shapes, out_shapes, dt)


class _Invalid(Exception):
    """Internal: one validation failure, message without the file name."""


def _label(name: str, node) -> str:
    return f"node '{name}' ({type(node).__name__})"


def _check_node_types(nodes: dict[str, Any]) -> None:
    for name, node in nodes.items():
        if type(node) not in NODE_KINDS:
            raise _Invalid(
                f"node '{name}' has unsupported type {type(node).__name__} "
                f"(supported: {_SUPPORTED_NAMES})"
            )


def _check_edges(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> None:
    seen: set[tuple[str, str]] = set()
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise _Invalid(f"edge '{a}' -> '{b}' names missing node '{end}' (dangling edge)")
        if (a, b) in seen:
            raise _Invalid(f"edge '{a}' -> '{b}' appears twice")
        seen.add((a, b))
        if isinstance(nodes[b], nir.Input):
            raise _Invalid(f"edge '{a}' -> '{b}' leads into an Input node")
    for kind in (nir.Input, nir.Output):
        if not any(isinstance(n, kind) for n in nodes.values()):
            raise _Invalid(f"graph has no {kind.__name__} node")


def _check_parameters(nodes: dict[str, Any]) -> None:
    for name, node in nodes.items():
        for f in fields(node):
            value = getattr(node, f.name)
            if f.name in ("input_type", "output_type", "metadata") or value is None:
                continue
            if isinstance(value, str | bytes):
                continue
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise _Invalid(f"{_label(name, node)} parameter '{f.name}' is not numeric") from None
            if not np.isfinite(array).all():
                raise _Invalid(f"{_label(name, node)} parameter '{f.name}' contains NaN or inf")
            if f.name in _TIME_CONSTANTS and not (array > 0).all():
                raise _Invalid(f"{_label(name, node)} parameter '{f.name}' must be > 0 seconds")


def _check_dt(graph: nir.NIRGraph, nodes: dict[str, Any]) -> float | None:
    try:
        dt = _graph_dt(graph)
    except (TypeError, ValueError) as exc:
        raise _Invalid(str(exc)) from None
    for name, node in nodes.items():
        if NODE_KINDS[type(node)].needs_dt and dt is None:
            raise _Invalid(f"{_label(name, node)} needs metadata['dt'] but the graph has none")
    return dt


def _check_connectivity(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Every node but an Input has inputs and is reachable from an Input; returns sources."""
    incoming: dict[str, list[str]] = {name: [] for name in nodes}
    outgoing: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in edges:
        incoming[b].append(a)
        outgoing[a].append(b)
    for name, node in nodes.items():
        if not isinstance(node, nir.Input) and not incoming[name]:
            raise _Invalid(f"{_label(name, node)} has no incoming edges")
    reached = {n for n, node in nodes.items() if isinstance(node, nir.Input)}
    frontier = list(reached)
    while frontier:
        for nxt in outgoing[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    for name, node in nodes.items():
        if name not in reached:
            raise _Invalid(f"{_label(name, node)} is not reachable from any Input node")
    return incoming


def _order_and_feedback(
    nodes: dict[str, Any], edges: list[tuple[str, str]]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Feedback edges (inside a strongly connected component, leaving a stateful node) and a
    topological order of the rest; a cycle left over has no stateful node."""
    outgoing: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in edges:
        outgoing[a].append(b)
    component = _strongly_connected(list(nodes), outgoing)
    feedback = {
        (a, b)
        for a, b in edges
        if component[a] == component[b] and NODE_KINDS[type(nodes[a])].stateful
    }
    forward = [e for e in edges if e not in feedback]
    order = _topological_order(list(nodes), forward)
    if len(order) < len(nodes):
        cycle = _find_cycle(set(nodes) - set(order), forward, list(nodes))
        raise _Invalid(
            f"cycle {' -> '.join(repr(n) for n in cycle)} contains no stateful node "
            f"({_STATEFUL_NAMES}), so it has no defined order within a step"
        )
    return order, feedback


def _infer_shapes(nodes, edges, order, sources) -> tuple[dict[str, Shape], dict[str, Shape]]:
    """Input and output shape of every node (batch axis excluded); every edge must match."""
    in_shapes: dict[str, Shape] = {}
    out_shapes: dict[str, Shape] = {}
    for name in order:
        node, kind = nodes[name], NODE_KINDS[type(nodes[name])]
        # the first source already shaped (feedback sources later in the order are not yet)
        first = next(((a, out_shapes[a]) for a, _ in sources[name] if a in out_shapes), None)
        try:
            in_shapes[name] = kind.input_shape(node, None if first is None else first[1])
            out_shapes[name] = tuple(int(n) for n in kind.output_shape(node, in_shapes[name]))
        except _ShapeMismatch as exc:
            if first is None:
                raise _Invalid(f"{_label(name, node)} needs {exc.expected}") from None
            raise _Invalid(_mismatch(first[0], nodes[first[0]], first[1], name, node, exc.expected)) from None
        except (ValueError, TypeError, AssertionError) as exc:
            raise _Invalid(f"{_label(name, node)}: {exc}") from None
    for a, b in edges:  # every edge, feedback ones included
        if out_shapes[a] != in_shapes[b]:
            raise _Invalid(_mismatch(a, nodes[a], out_shapes[a], b, nodes[b], str(in_shapes[b])))
    return in_shapes, out_shapes


def _mismatch(src: str, src_node, shape: Shape, dst: str, dst_node, expected: str) -> str:
    return (
        f"shape mismatch on edge '{src}' -> '{dst}': '{src}' ({type(src_node).__name__}) outputs "
        f"{shape} but '{dst}' ({type(dst_node).__name__}) expects {expected}"
    )


def _strongly_connected(names: list[str], outgoing: dict[str, list[str]]) -> dict[str, int]:
    """Tarjan's algorithm, iterative; returns node -> component id."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = outgoing[node]
            if child < len(successors):
                work.append((node, child + 1))
                nxt = successors[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = index[node]
                    if member == node:
                        break
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return component


def _topological_order(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm; ties broken by node insertion order (deterministic)."""
    position = {n: i for i, n in enumerate(names)}
    indegree = {n: 0 for n in names}
    outgoing: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        indegree[b] += 1
        outgoing[a].append(b)
    ready = sorted((n for n in names if indegree[n] == 0), key=position.__getitem__, reverse=True)
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for nxt in outgoing[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
                ready.sort(key=position.__getitem__, reverse=True)
    return order


def _find_cycle(remaining: set[str], edges: list[tuple[str, str]], order: list[str]) -> list[str]:
    """One cycle among nodes left over by Kahn's algorithm (each has a remaining predecessor)."""
    predecessor = {b: a for a, b in edges if a in remaining and b in remaining}
    node = min(remaining)
    path: list[str] = []
    while node not in path:
        path.append(node)
        node = predecessor[node]
    cycle = path[path.index(node) :][::-1]  # walked backwards: reverse into edge direction
    start = cycle.index(min(cycle, key=order.index))  # start at the earliest declared node
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]


# --------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------


@dataclass
class SimulationResult:
    """Outputs (and optionally per-node records) of one run.

    outputs: Output node name -> array (T, B, *shape).
    records: node name -> array (T, B, *shape) of that node's output at every step
    (0/1 for spiking nodes); None when the run did not record.
    """

    outputs: dict[str, np.ndarray]
    records: dict[str, np.ndarray] | None = None
    time_steps: int = 0

    @property
    def output(self) -> np.ndarray:
        """The only Output's array (T, B, *shape); an error when there are several."""
        if len(self.outputs) != 1:
            raise ValueError(f"graph has {len(self.outputs)} outputs: {sorted(self.outputs)}")
        return next(iter(self.outputs.values()))


@dataclass(frozen=True)
class _Program:
    name: str
    index: int
    step: Callable
    params: Any
    init_state: Callable[[int], Any]
    sources: tuple[int, ...]  # value slots in edge-list order; feedback edges read slot + n


class ReferenceSimulator:
    """Step a validated NIR graph with NumPy, exactly as docs/SEMANTICS.md states.

    Constants (decays, Toeplitz tables of Conv1d, topological order) are computed once
    here; `run` only steps.
    """

    def __init__(self, graph: nir.NIRGraph, dtype=np.float64, *, source: str = "<graph>"):
        plan = _plan(graph, source)
        self.graph = graph
        self.dtype = np.dtype(dtype)
        self.dt = plan.dt
        self.output_shapes: dict[str, Shape] = dict(plan.out_shapes)
        self.input_names = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Input)]
        self.output_names = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Output)]
        self.input_shapes = {n: plan.out_shapes[n] for n in self.input_names}
        metadata = graph.metadata if isinstance(graph.metadata, Mapping) else {}
        self.time_steps: int | None = None
        if "time_steps" in metadata:
            try:
                self.time_steps = _as_int(metadata["time_steps"], "metadata time_steps")
            except ValueError as exc:
                raise GraphError(f"{source}: {exc}") from None

        slot = {name: i for i, name in enumerate(plan.order)}
        self._names = list(plan.order)
        self._programs: list[_Program] = []
        for name in plan.order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                continue
            ctx = _Context(name, plan.in_shapes[name], plan.out_shapes[name], plan.dt, self.dtype)
            try:
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    compiled = NODE_KINDS[type(node)].compile(node, ctx)
            except (ValueError, TypeError) as exc:
                raise GraphError(f"{source}: node '{name}' ({type(node).__name__}): {exc}") from exc
            for constant in _arrays_in(compiled.params):
                if not np.isfinite(constant).all():
                    raise GraphError(
                        f"{source}: node '{name}' ({type(node).__name__}) has parameters that give "
                        f"non-finite step constants (e.g. tau = 0)"
                    )
            srcs = plan.sources[name]
            self._programs.append(
                _Program(
                    name,
                    slot[name],
                    compiled.step,
                    compiled.params,
                    compiled.init_state,
                    tuple(slot[a] + len(plan.order) * feedback for a, feedback in srcs),
                )
            )
        # nodes read one step late through a feedback edge: their "previous" output starts at 0
        self._fed_back = {a for srcs in plan.sources.values() for a, feedback in srcs if feedback}

    def run(
        self,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        time_steps: int | None = None,
        record: bool | Iterable[str] = False,
        *,
        time_varying: bool = False,
    ) -> SimulationResult:
        """Simulate `time_steps` steps from zero state.

        inputs: array (B, *input_shape) presented at every step, or a dict Input name ->
        array when the graph has several Inputs. With `time_varying=True` each array is
        (T, B, *input_shape), one slice per step, and T defaults to its length.
        time_steps: defaults to graph.metadata["time_steps"].
        record: True for every node, or the node names to record.
        """
        arrays = self._input_arrays(inputs)
        if time_varying:
            lengths = {a.shape[0] for a in arrays.values()}
            if len(lengths) != 1:
                raise ValueError(f"time-varying inputs have different lengths {sorted(lengths)}")
            (length,) = lengths
            if time_steps is None:
                time_steps = length
            elif time_steps > length:
                raise ValueError(f"time_steps={time_steps} but the inputs hold {length} steps")
        if time_steps is None:
            if self.time_steps is None:
                raise ValueError("time_steps not given and the graph metadata has no 'time_steps'")
            time_steps = self.time_steps
        time_steps = int(time_steps)
        if time_steps < 1:
            raise ValueError(f"time_steps must be >= 1, got {time_steps}")

        batch = None
        for name, array in arrays.items():
            shape = array.shape[1:] if time_varying else array.shape
            want = self.input_shapes[name]
            if len(shape) != len(want) + 1 or tuple(shape[1:]) != want:
                layout = "(T, B, *shape)" if time_varying else "(B, *shape)"
                raise ValueError(
                    f"input '{name}' has shape {array.shape}; expected {layout} with shape {want}"
                )
            if batch is not None and shape[0] != batch:
                raise ValueError("inputs have different batch sizes")
            batch = shape[0]

        recorded = self._recorded_names(record)
        recorded_slots = [self._names.index(n) for n in recorded]
        output_slots = [self._names.index(n) for n in self.output_names]
        n_slots = len(self._names)
        programs = [(p.index, p.step, p.params, p.sources[0], p.sources[1:]) for p in self._programs]
        states = [p.init_state(batch) for p in self._programs]
        previous: list[Any] = [
            np.zeros((batch, *self.output_shapes[n]), dtype=self.dtype) if n in self._fed_back else None
            for n in self._names
        ]
        input_items = [(self._names.index(n), arrays[n]) for n in self.input_names]
        output_steps: list[list[np.ndarray]] = [[] for _ in output_slots]
        record_steps: list[list[np.ndarray]] = [[] for _ in recorded_slots]

        # slots [0, n): this step's outputs; [n, 2n): the previous step's (feedback edges)
        for t in range(time_steps):
            values: list[Any] = [None] * n_slots + previous
            for slot, array in input_items:
                values[slot] = array[t] if time_varying else array
            for i, (slot, step, params, first, rest) in enumerate(programs):
                x = values[first]
                for source in rest:  # edge-list order: acc = e0; acc = acc + e1 ...
                    x = x + values[source]
                values[slot], states[i] = step(params, states[i], x)
            previous = values[:n_slots]
            for k, slot in enumerate(output_slots):
                output_steps[k].append(previous[slot])
            for k, slot in enumerate(recorded_slots):
                record_steps[k].append(previous[slot])

        outputs = {n: np.stack(steps) for n, steps in zip(self.output_names, output_steps)}
        records = (
            {n: np.stack(steps) for n, steps in zip(recorded, record_steps)} if record else None
        )
        return SimulationResult(outputs, records, time_steps)

    def _input_arrays(self, inputs) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            missing = set(self.input_names) - set(inputs)
            extra = set(inputs) - set(self.input_names)
            if missing or extra:
                raise ValueError(
                    f"inputs must name the Input nodes {self.input_names}; "
                    f"missing {sorted(missing)}, unknown {sorted(extra)}"
                )
            return {n: np.asarray(inputs[n], dtype=self.dtype) for n in self.input_names}
        if len(self.input_names) != 1:
            raise ValueError(f"graph has Inputs {self.input_names}: pass a dict name -> array")
        return {self.input_names[0]: np.asarray(inputs, dtype=self.dtype)}

    def _recorded_names(self, record) -> list[str]:
        if record is True:
            return list(self._names)
        if not record:
            return []
        names = [record] if isinstance(record, str) else list(record)
        unknown = [n for n in names if n not in self.output_shapes]
        if unknown:
            raise ValueError(f"cannot record unknown nodes {unknown}")
        return names


def _arrays_in(params) -> Iterable[np.ndarray]:
    if isinstance(params, np.ndarray):
        if np.issubdtype(params.dtype, np.floating):
            yield params
    elif isinstance(params, tuple | list):
        for item in params:
            yield from _arrays_in(item)


# --------------------------------------------------------------------------------------
# Closed-loop policy
# --------------------------------------------------------------------------------------


class NIRPolicy:
    """A spiking Decision Transformer read back from NIR, acting as SEMANTICS.md decodes it.

    tokens: (B, L, D_in) channels-last from the token builder, or (L, D_in) for one
    window (then logits/act drop the batch axis too).
    """

    def __init__(
        self,
        graph: nir.NIRGraph | str | Path,
        *,
        record: bool = False,
        dtype=np.float64,
    ):
        source = "<graph>"
        if isinstance(graph, str | Path):
            source = str(graph)
            graph = load_graph(graph)
        self.simulator = ReferenceSimulator(graph, dtype=dtype, source=source)
        self.graph = graph
        self.record = record
        self.last_records: dict[str, np.ndarray] | None = None

        def fail(message: str):
            raise GraphError(f"{source}: {message}")

        sim = self.simulator
        if len(sim.input_names) != 1 or len(sim.output_names) != 1:
            fail(f"a policy needs one Input and one Output, got {sim.input_names} / {sim.output_names}")
        self.input_name, self.output_name = sim.input_names[0], sim.output_names[0]
        in_shape, out_shape = sim.input_shapes[self.input_name], sim.output_shapes[self.output_name]
        # (D_in, L), or (D_in, 1, L) with a unit axis between (the portable export's Conv2d grid)
        unit_axes = len(in_shape) - 2
        if (len(in_shape) not in (2, 3) or len(out_shape) != len(in_shape) or out_shape[-1] != in_shape[-1]
                or in_shape[-1] < 2 or any(n != 1 for n in (*in_shape[1:-1], *out_shape[1:-1]))):
            fail(f"policy needs Input (D_in, L) and Output (n_out, L), or (D_in, 1, L) and (n_out, 1, L), "
                 f"got {in_shape} and {out_shape}")
        self.token_features, self.context_tokens = in_shape[0], in_shape[-1]
        self.n_out = out_shape[0]
        self._unit_axes = unit_axes
        if sim.time_steps is None:
            fail("graph metadata has no 'time_steps'")
        self.time_steps = sim.time_steps
        self.metadata = _policy_metadata(graph, fail)
        self.action_kind = self.metadata["action_kind"]
        if self.action_kind == "continuous":
            low = np.asarray(self.metadata["action_low"], dtype=np.float64)
            high = np.asarray(self.metadata["action_high"], dtype=np.float64)
            if low.shape != (self.n_out,) or high.shape != (self.n_out,):
                fail(f"action_low/action_high must hold {self.n_out} values, got {low.shape}/{high.shape}")
            self.action_low, self.action_high = low, high

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        """Mean over T of the Output at the last state token (column L-2): (B, n_out)."""
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
        out = result.outputs[self.output_name]  # (T, B, n_out, L) or (T, B, n_out, 1, L)
        logits = out.reshape(*out.shape[:3], -1)[..., self.context_tokens - 2].mean(axis=0)
        return logits[0] if single else logits

    def act(self, tokens: np.ndarray) -> np.ndarray:
        """Argmax action indices (discrete) or actions squashed into [low, high] (continuous)."""
        from spikingmind.rollout import decode_actions

        discrete = self.action_kind == "discrete"
        return decode_actions(self.logits(tokens), discrete, getattr(self, "action_low", None),
                              getattr(self, "action_high", None))


def _policy_metadata(graph: nir.NIRGraph, fail) -> dict[str, Any]:
    raw = (graph.metadata or {}).get("spikingmind")
    if raw is None:
        fail("graph metadata has no 'spikingmind' entry (not exported by spikingmind?)")
    if isinstance(raw, bytes | np.bytes_):
        raw = raw.decode("utf8")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f"metadata 'spikingmind' is not valid JSON ({exc})")
    if not isinstance(raw, Mapping):
        fail("metadata 'spikingmind' must be a JSON object")
    metadata = dict(raw)
    if metadata.get("action_kind") not in ("discrete", "continuous"):
        fail(f"metadata action_kind must be 'discrete' or 'continuous', got {metadata.get('action_kind')!r}")
    if metadata["action_kind"] == "continuous":
        for key in ("action_low", "action_high"):
            if key not in metadata:
                fail(f"continuous action graph lacks metadata '{key}'")
    return metadata
