"""The event-driven runtime's numba kernels: LIF loops, event-driven synapses, the causal mix
as its decay recurrence, one block and the whole decision (see the package docstring)."""

from __future__ import annotations

import numba
import numpy as np

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


def _causal_mix(kv_and, decay, scale, shift, trace, out):
    """out[t, i, c] = scale_c * (decay_c^(i+1) trace[t, c] + sum_(j<=i) decay_c^(i-j) kv_and[t, j, c]) + shift_c,
    as the recurrence acc = decay * acc + x from acc = trace: kv_and (T, L, C) uint8 -> out (T, L, C)
    float; `trace` (T, C), the sum over earlier tokens (zeros for a window), becomes the sum after
    the last token (a streaming model carries it to its next decision)."""
    acc = np.empty(kv_and.shape[2], out.dtype)
    for t in range(kv_and.shape[0]):
        acc[:] = trace[t]
        for i in range(kv_and.shape[1]):
            for c in range(kv_and.shape[2]):
                acc[c] = decay[c] * acc[c] + kv_and[t, i, c]
                out[t, i, c] = scale[c] * acc[c] + shift[c]
        trace[t] = acc
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


def _block(residual, beta, threshold, qkv_t, qkv_b, decay, mix_scale, mix_shift, trace, out_t, out_b,
           fc1_t, fc1_b, fc2_t, fc2_b):
    """residual (T, N, C) -> residual + attention, + MLP (every token), in place: SpikingBlock;
    the mix continues from `trace` (T, C) and leaves it after the last token."""
    time_steps, n, width = residual.shape
    qkv = _lif_layer(_affine(_lif_layer(residual, beta, threshold), qkv_t, qkv_b).reshape(time_steps, n, -1),
                     beta, threshold)  # q, k, v as one layer of 3C neurons: (T * N, 3C)
    kv_and = qkv[:, width:2 * width] & qkv[:, 2 * width:]
    mixed = _causal_mix(kv_and.reshape(time_steps, n, width), decay, mix_scale, mix_shift, trace,
                        np.empty((time_steps, n, width), residual.dtype))
    qkv_and = qkv[:, :width] & _lif_layer(mixed, beta, threshold)
    residual += _affine(qkv_and, out_t, out_b).reshape(time_steps, n, width)
    _mlp(residual, beta, threshold, fc1_t, fc1_b, fc2_t, fc2_b)


def _last_block(residual, at, beta, threshold, q_t, q_b, kv_t, kv_b, decay, mix_scale, mix_shift, trace, out_t,
                out_b, fc1_t, fc1_b, fc2_t, fc2_b):
    """residual (T, N, C) -> the decision token's residual after the block, (T, 1, C): k and v
    of every token (the mix reads them and carries them on in `trace`), q and everything
    after the mix at token `at` only."""
    time_steps, n, width = residual.shape
    s_in = _lif_layer(residual, beta, threshold)
    kv = _lif_layer(_affine(s_in, kv_t, kv_b).reshape(time_steps, n, -1), beta, threshold)  # (T * N, 2C)
    kv_and = kv[:, :width] & kv[:, width:]
    mixed = _causal_mix(kv_and.reshape(time_steps, n, width), decay, mix_scale, mix_shift, trace,
                        np.empty((time_steps, n, width), residual.dtype))
    kv_spikes = _lif_layer(mixed[:, at:at + 1].copy(), beta, threshold)  # (T, C)
    q_current = _affine(s_in.reshape(time_steps, n, width)[:, at].copy(), q_t, q_b)
    q = _lif_layer(q_current.reshape(time_steps, 1, width), beta, threshold)
    token = residual[:, at:at + 1].copy()
    token += _affine(q & kv_spikes, out_t, out_b).reshape(time_steps, 1, width)
    _mlp(token, beta, threshold, fc1_t, fc1_b, fc2_t, fc2_b)
    return token


def _decision(tokens, traces, at, time_steps, beta, threshold, embed_t, embed_b, qkv_t, qkv_b, decay, mix_scale,
              mix_shift, out_t, out_b, fc1_t, fc1_b, fc2_t, fc2_b, last_q_t, last_q_b, last_kv_t, last_kv_b,
              head_t, head_b, outputs):
    """One decision: the outputs (n_out,) of token `at` of tokens (N, F), every block's mix
    continuing from its trace in `traces` (n_blocks, T, C) and leaving it after the last token.

    Weights per block are stacked on a leading axis (qkv_t (n_blocks, C, 3C): q, k, v columns);
    the last block's q and k|v columns come apart as contiguous arrays (strided weights would
    stop the adds from vectorising)."""
    n_blocks, width = qkv_t.shape[0], qkv_t.shape[1]
    n_tokens = at + 1  # later tokens cannot reach the decision token
    dtype = embed_t.dtype
    zero = dtype.type(0)
    # the real-valued encoder (MACs): the same input current at every step
    x = np.empty((n_tokens, width), dtype)
    for i in range(n_tokens):
        x[i] = embed_b
        for f in range(tokens.shape[1]):
            if tokens[i, f] != zero:
                for c in range(width):
                    x[i, c] += tokens[i, f] * embed_t[f, c]
    residual = np.empty((time_steps, n_tokens, width), dtype)
    for t in range(time_steps):
        residual[t] = x
    for k in range(n_blocks - 1):
        _block(residual, beta, threshold, qkv_t[k], qkv_b[k], decay[k], mix_scale[k], mix_shift[k], traces[k],
               out_t[k], out_b[k], fc1_t[k], fc1_b[k], fc2_t[k], fc2_b[k])
    k = n_blocks - 1
    token = _last_block(residual, at, beta, threshold, last_q_t, last_q_b, last_kv_t, last_kv_b, decay[k],
                        mix_scale[k], mix_shift[k], traces[k], out_t[k], out_b[k], fc1_t[k], fc1_b[k], fc2_t[k],
                        fc2_b[k])
    readout = _affine(_lif_layer(token, beta, threshold), head_t, head_b)  # (T, n_out)
    for o in range(readout.shape[1]):
        total = zero
        for t in range(time_steps):
            total += readout[t, o]
        outputs[o] = total / time_steps  # the readout averaged over the T steps
    return outputs


def decide_windows(tokens, time_steps, at, beta, threshold, embed_t, embed_b,
                   qkv_t, qkv_b, decay, mix_scale, mix_shift, out_t, out_b, fc1_t, fc1_b, fc2_t, fc2_b,
                   last_q_t, last_q_b, last_kv_t, last_kv_b, head_t, head_b, outputs):
    """Decision-token outputs (B, n_out) of token windows (B, L, F), as DecisionTransformer.decide:
    every window from zero traces."""
    traces = np.empty((qkv_t.shape[0], time_steps, qkv_t.shape[1]), embed_t.dtype)
    for b in range(tokens.shape[0]):
        traces[:] = embed_t.dtype.type(0)
        _decision(tokens[b], traces, at, time_steps, beta, threshold, embed_t, embed_b, qkv_t, qkv_b, decay,
                  mix_scale, mix_shift, out_t, out_b, fc1_t, fc1_b, fc2_t, fc2_b, last_q_t, last_q_b, last_kv_t,
                  last_kv_b, head_t, head_b, outputs[b])
    return outputs


def stream_step(tokens, rows, traces, time_steps, beta, threshold, embed_t, embed_b,
                qkv_t, qkv_b, decay, mix_scale, mix_shift, out_t, out_b, fc1_t, fc1_b, fc2_t, fc2_b,
                last_q_t, last_q_b, last_kv_t, last_kv_b, head_t, head_b, outputs):
    """A streaming model's decision for each episode b: the new tokens (B, n, F) after its carried
    traces[rows[b]] (n_blocks, T, C), updated in place; the outputs (B, n_out) of its last token.
    The work is the new tokens' alone, whatever the length of the episode so far."""
    at = tokens.shape[1] - 1
    for b in range(tokens.shape[0]):
        _decision(tokens[b], traces[rows[b]], at, time_steps, beta, threshold, embed_t, embed_b, qkv_t, qkv_b,
                  decay, mix_scale, mix_shift, out_t, out_b, fc1_t, fc1_b, fc2_t, fc2_b, last_q_t, last_q_b,
                  last_kv_t, last_kv_b, head_t, head_b, outputs[b])
    return outputs


def _compile(kernel):
    """numba.njit, compiled on first use and cached on disk (next to this file, or in numba's
    user cache where that is read-only); uncached where numba finds no cache folder at all."""
    try:
        return numba.njit(cache=True, nogil=True)(kernel)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(kernel)


(_lif, _synapses, _causal_mix, _lif_layer, _affine, _mlp, _block, _last_block, _decision, decide_windows,
 stream_step) = (
    _compile(kernel)
    for kernel in (_lif, _synapses, _causal_mix, _lif_layer, _affine, _mlp, _block, _last_block, _decision,
                   decide_windows, stream_step))
