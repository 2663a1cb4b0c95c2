"""Loihi-style fixed-point formats and a NumPy emulation of Lava's bit-accurate models.

NumPy only: imported by the main process (export, verification) and by the Lava sidecar.

Formats (Lava 0.10 `PyDenseModelBitAcc`, `PyLifModelBitAcc` / `PyLifResetModelBitAcc`):

- weights: 8-bit mantissa per synapse and one exponent per Dense (`weight_exp`); mixed-sign
  matrices lose their LSB (even mantissas in [-256, 254]), excitatory ones use [0, 255],
  inhibitory ones [-255, 0]. A Dense sends `(sum_j w_ij s_j) << weight_exp` (>> if < 0).
- neuron input: the summed activation is MSB-aligned `act << 6` into the current `u`.
- decays: 12-bit `du`, `dv` in 0..4095; `u <- u * (4096 - (du + 1)) / 4096`,
  `v <- v * (4096 - dv) / 4096`, each product truncated toward zero.
- current `u`: 24-bit, wraps around on overflow (Lava's behaviour; reported here).
- voltage `v`: 24-bit, saturates at +-(2**23 - 1) (reported here).
- bias: 13-bit signed mantissa, exponent 0..7, effective bias = mant << exp.
- threshold: 17-bit unsigned `vth`, spike when `v > vth << 6`, then `v = 0`.

Units: a layer with scale `A` (activation units per float unit) represents a float current
`x` as `round(x * A)` activation units, a membrane value as `x * A * 64` state units and the
threshold `theta` as `vth = round(theta * A)`. `A` is at most `4096 / theta` (threshold
4096, 5 bits of headroom |v| < 32 theta in the 24-bit state); the exporter
(`export/lava/quantize.py: _choose_scale`) picks, per population, the `A <= 4096 / theta` that
minimises the summed squared error of every incoming weight, the bias and the threshold
(rounding and clipping together): a smaller `A` lets a synapse whose weights exceed 255 << 7
or a bias beyond the 13-bit mantissa fit without clipping.

Synapse groups: a synapse's weights may be partitioned into several groups, each a Lava
`Sparse` with its own `weight_exp`, all from the same source to the same population (same
delay; the neuron's InPort sums them): `plan_weight_groups` splits mixed-sign matrices into
excitatory + inhibitory groups (8 bits of magnitude each instead of 7 + sign) or wide-range
ones into large and small taps (the small ones with a finer exponent) when that at least
halves the squared quantization error. Every weight is rounded to nearest.

Every clip is counted in a `QuantizationReport`; nothing is silently wrapped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

WEIGHT_BITS = 8
DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS            # 4096
DECAY_MAX = DECAY_UNITY - 1              # 4095
DU_FULL = DECAY_MAX                      # du=4095 (+ Loihi's 1-bit ds_offset) = u fully replaced
STATE_BITS = 24
STATE_LIMIT = 1 << (STATE_BITS - 1)      # 2**23
ACT_SHIFT = 6                            # activation and threshold MSB alignment
ACT_BITS = 16                            # synaptic input precision of a neuron
ACT_MAX = (1 << (ACT_BITS - 1)) - 1
VTH_BITS = 17
VTH_MAX = (1 << VTH_BITS) - 1            # 131071
BIAS_MANT_BITS = 13
BIAS_MANT_MAX = (1 << (BIAS_MANT_BITS - 1)) - 1   # 4095
BIAS_MANT_MIN = -(1 << (BIAS_MANT_BITS - 1))      # -4096
BIAS_EXP_MAX = 7
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
#: Threshold in activation units that every layer scale aims at (see module docstring).
VTH_TARGET = 1 << 12


# ---------------------------------------------------------------------------------------
# Saturation accounting


@dataclass
class ClipRecord:
    layer: str
    quantity: str
    clipped: int
    total: int
    limit: str

    def __str__(self) -> str:
        return f"{self.layer}.{self.quantity}: {self.clipped}/{self.total} values clipped to {self.limit}"


@dataclass
class QuantizationReport:
    """Every value that hit a format limit, per layer and quantity. Empty means lossless range."""

    records: list[ClipRecord] = field(default_factory=list)

    def add(self, layer: str, quantity: str, clipped: int, total: int, limit: str) -> None:
        if clipped:
            self.records.append(ClipRecord(layer, quantity, int(clipped), int(total), limit))

    @property
    def clipped(self) -> int:
        return sum(record.clipped for record in self.records)

    def merge(self, other: "QuantizationReport") -> "QuantizationReport":
        self.records.extend(other.records)
        return self

    def to_json(self) -> list[dict]:
        return [record.__dict__.copy() for record in self.records]

    def __str__(self) -> str:
        if not self.records:
            return "no value saturated"
        return "; ".join(str(record) for record in self.records)


def _clip_counted(values: np.ndarray, lo: int, hi: int, report: QuantizationReport | None,
                  layer: str, quantity: str) -> np.ndarray:
    clipped = np.clip(values, lo, hi)
    if report is not None:
        report.add(layer, quantity, int(np.count_nonzero(clipped != values)), values.size, f"[{lo}, {hi}]")
    return clipped


# ---------------------------------------------------------------------------------------
# Quantization of parameters


def sign_mode(mantissa: np.ndarray, implicit_zero: bool = False) -> str:
    """Lava's `determine_sign_mode`: excitatory, inhibitory or mixed.

    `mantissa` may be the stored values of a sparse matrix only; `implicit_zero` says the
    matrix also has unstored zeros, which scipy's min/max (and so Lava's Sparse) count.
    """
    values = np.asarray(mantissa).reshape(-1)
    if implicit_zero or values.size == 0:
        values = np.append(values, 0)
    if np.min(values) >= 0:
        return "excitatory"
    if np.max(values) <= 0:
        return "inhibitory"
    return "mixed"


def _mantissa_range(mode: str) -> tuple[int, int, int]:
    """(lowest, highest, step) of an 8-bit weight mantissa in a sign mode."""
    if mode == "mixed":
        return -(1 << WEIGHT_BITS), (1 << WEIGHT_BITS) - 2, 2
    if mode == "inhibitory":
        return -((1 << WEIGHT_BITS) - 1), 0, 1
    return 0, (1 << WEIGHT_BITS) - 1, 1


def _weight_exponent(target: np.ndarray, lo: int, hi: int, step: int) -> int:
    """Smallest exponent whose rounded mantissas of `target` fit [lo, hi] (clipped to the
    exponent's range: beyond WEIGHT_EXP_MAX the mantissas saturate, and are counted)."""
    if target.size == 0:
        return 0
    top, bottom = float(np.max(target)), float(np.min(target))
    peak = max(abs(top), abs(bottom))
    if peak == 0:
        return 0
    exp = int(np.clip(math.floor(math.log2(peak / max(abs(lo), hi))), WEIGHT_EXP_MIN, WEIGHT_EXP_MAX))
    while exp < WEIGHT_EXP_MAX and (np.round(top / 2.0 ** exp / step) * step > hi
                                    or np.round(bottom / 2.0 ** exp / step) * step < lo):
        exp += 1
    return exp


def quantize_weights(weights: np.ndarray, scale: float, *, layer: str = "?",
                     report: QuantizationReport | None = None,
                     implicit_zero: bool = False) -> tuple[np.ndarray, int]:
    """Float weights -> (int32 mantissa, weight_exp) with `mant << exp ~= weights * scale`.

    Round to nearest; the exponent is the smallest that fits every rounded mantissa, so the
    largest weight uses the mantissa's full range. `weights` may be the stored values of a
    sparse matrix (see `sign_mode` for `implicit_zero`).
    """
    target = np.asarray(weights, dtype=np.float64) * scale
    mode = sign_mode(target, implicit_zero)
    lo, hi, step = _mantissa_range(mode)
    exp = _weight_exponent(target, lo, hi, step)
    mant = np.round(target / 2.0 ** exp / step) * step
    mant = _clip_counted(mant, lo, hi, report, layer, "weight").astype(np.int32)
    return mant, exp


@dataclass
class WeightGroup:
    """One synapse group of a split weight matrix: the stored values `select`ed from the
    matrix's stored values, their mantissas and the group's exponent."""

    select: np.ndarray
    mant: np.ndarray
    exp: int


def _group_error(target: np.ndarray, counts: np.ndarray, implicit_zero: bool) -> tuple[float, int, int]:
    """(squared error, clipped count, exponent) of one group quantized alone (target: unique values)."""
    mode = sign_mode(target, implicit_zero)
    lo, hi, step = _mantissa_range(mode)
    exp = _weight_exponent(target, lo, hi, step)
    unit = 2.0 ** exp
    mant = np.round(target / unit / step) * step
    clipped = np.clip(mant, lo, hi)
    return float(np.sum(counts * (clipped * unit - target) ** 2)), int(np.sum(counts[clipped != mant])), exp


def plan_weight_groups(weights: np.ndarray, scale: float, *, implicit_zero: bool = True,
                       max_groups: int = 2, min_gain: float = 2.0) -> tuple[list[np.ndarray], float]:
    """Partition a matrix's stored values into at most `max_groups` synapse groups (each with
    its own exponent, all feeding the same population) to minimise the summed squared
    quantization error (rounding + clipping) of `weights * scale`.

    Candidates: one group; excitatory / inhibitory split (each sign gets the full 8-bit
    mantissa instead of mixed-sign 7 bits + sign); a magnitude split at |w| = peak / 2**k
    (large taps vs small ones with a finer exponent); with 4 groups both. A split is kept
    only when it divides the error by at least `min_gain`. Returns (boolean masks, error).
    """
    values = np.asarray(weights, dtype=np.float64)
    if values.size == 0:
        return [np.ones(0, bool)], 0.0
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    masks, error = best_partition(uniq * scale, counts, implicit_zero=implicit_zero, max_groups=max_groups,
                                  min_gain=min_gain)
    inverse = inverse.reshape(-1)
    return [m[inverse] for m in masks], error


def best_partition(uniq: np.ndarray, counts: np.ndarray, *, implicit_zero: bool = True, max_groups: int = 2,
                   min_gain: float = 2.0) -> tuple[list[np.ndarray], float]:
    """`plan_weight_groups` on sorted unique scaled values with their counts (masks over `uniq`)."""

    def cost(masks):
        return sum(_group_error(uniq[m], counts[m], implicit_zero)[0] for m in masks)

    everything = np.ones(uniq.size, bool)
    best, best_cost = [everything], cost([everything])
    if max_groups >= 2 and best_cost > 0:
        candidates = []
        negative = uniq < 0
        mixed = bool(negative.any() and (~negative).any())
        if mixed:
            candidates.append([~negative, negative])
        peak = float(np.max(np.abs(uniq)))
        for k in range(1, 9):
            large = np.abs(uniq) > peak / 2.0 ** k
            if (~large).any():
                candidates.append([large, ~large])
                if max_groups >= 4 and mixed:
                    candidates.append([large & ~negative, large & negative, ~large & ~negative, ~large & negative])
        for masks in candidates:
            masks = [m for m in masks if m.any()]
            c = cost(masks)
            if c * min_gain ** (len(masks) - len(best)) < best_cost:
                best, best_cost = masks, c
    return best, best_cost


def quantize_weight_groups(weights: np.ndarray, scale: float, masks: list[np.ndarray], *, layer: str = "?",
                           report: QuantizationReport | None = None,
                           implicit_zero: bool = True) -> list[WeightGroup]:
    """Quantize each group of a partition (`plan_weight_groups`) with its own exponent."""
    weights = np.asarray(weights, dtype=np.float64)
    groups = []
    for mask in masks:
        select = np.flatnonzero(mask)
        mant, exp = quantize_weights(weights[select], scale, layer=layer, report=report,
                                     implicit_zero=implicit_zero or select.size < weights.size)
        groups.append(WeightGroup(select, mant, exp))
    return groups


def quantize_bias(bias: np.ndarray, scale: float, *, layer: str = "?",
                  report: QuantizationReport | None = None) -> tuple[np.ndarray, int]:
    """Float bias (float units) -> (13-bit mantissa, shared exponent 0..7) in state units / 64.

    Lava adds `mant << exp` to the voltage directly, i.e. in state units (activation << 6),
    so the target is `bias * scale * 64`.
    """
    target = np.asarray(bias, dtype=np.float64) * scale * (1 << ACT_SHIFT)
    peak = float(np.max(np.abs(target))) if target.size else 0.0
    exp = 0
    while exp < BIAS_EXP_MAX and peak / 2.0 ** exp > BIAS_MANT_MAX:
        exp += 1
    mant = np.round(target / 2.0 ** exp)
    mant = _clip_counted(mant, BIAS_MANT_MIN, BIAS_MANT_MAX, report, layer, "bias").astype(np.int32)
    return mant, exp


def quantize_decay(beta: float, *, layer: str = "?", report: QuantizationReport | None = None) -> int:
    """Per-step voltage decay beta -> 12-bit dv with v <- v * (4096 - dv) / 4096."""
    dv = np.array([round((1.0 - float(beta)) * DECAY_UNITY)])
    return int(_clip_counted(dv, 0, DECAY_MAX, report, layer, "dv")[0])


def quantize_threshold(theta: float, scale: float, *, layer: str = "?",
                       report: QuantizationReport | None = None) -> int:
    vth = np.array([round(float(theta) * scale)])
    return int(_clip_counted(vth, 0, VTH_MAX, report, layer, "vth")[0])


def quantize_activation(current: np.ndarray, scale: float, *, layer: str = "?",
                        report: QuantizationReport | None = None) -> np.ndarray:
    """Real-valued (graded) input current -> int32 activation units, 16-bit saturated."""
    act = np.round(np.asarray(current, dtype=np.float64) * scale)
    return _clip_counted(act, -ACT_MAX - 1, ACT_MAX, report, layer, "graded_input").astype(np.int32)


def layer_scale(theta: float) -> float:
    """Activation units per float unit for a layer with threshold theta (vth = 4096)."""
    if not theta > 0:
        raise ValueError(f"threshold must be positive for fixed point, got {theta}")
    return VTH_TARGET / float(theta)


# ---------------------------------------------------------------------------------------
# Integer arithmetic of Lava's bit-accurate models


def effective_bias(mant: np.ndarray, exp) -> np.ndarray:
    mant = np.asarray(mant).astype(np.int32)
    exp = np.asarray(exp)
    return np.where(exp >= 0, np.left_shift(mant, np.maximum(exp, 0)), np.right_shift(mant, np.maximum(-exp, 0)))


def lava_weights(mant: np.ndarray, implicit_zero: bool = False) -> np.ndarray:
    """What PyDenseModelBitAcc / PySparseModelBitAcc use: clip to 8 bits, drop the LSB for
    mixed sign (`implicit_zero`: a sparse matrix's values with unstored zeros)."""
    w = np.asarray(mant).astype(np.int32)
    mode = sign_mode(w, implicit_zero)
    if mode == "inhibitory":
        w = -np.clip(-w, 0, (1 << WEIGHT_BITS) - 1)
    elif mode == "mixed":
        w = np.clip(w, -(1 << WEIGHT_BITS), (1 << WEIGHT_BITS) - 1)
        w = (w >> 1) << 1
    else:
        w = np.clip(w, 0, (1 << WEIGHT_BITS) - 1)
    return w


def dense_fixed(weights: np.ndarray, weight_exp: int, spikes: np.ndarray) -> np.ndarray:
    """Integer Dense output for binary spikes (weights already through `lava_weights`)."""
    accum = weights[:, np.asarray(spikes).astype(bool)].sum(axis=1).astype(np.int32)
    return shift_accumulated(accum, weight_exp)


def shift_accumulated(accum: np.ndarray, weight_exp: int) -> np.ndarray:
    """A synapse's integer sum scaled by its shared exponent, as Lava's bit-accurate models:
    `<< exp` when exp > 0, else an arithmetic `>> -exp` (rounds toward -inf)."""
    accum = np.asarray(accum)
    return np.left_shift(accum, weight_exp) if weight_exp > 0 else np.right_shift(accum, -weight_exp)


def _decay(state: np.ndarray, factor: int) -> np.ndarray:
    """state * factor / 4096 truncated toward zero, as Lava's `sign(p) * (|p| >> 12)` (int32).

    Computed in float64, where it is exact: |state| < 2**24 and factor / 4096 has 12 bits, so the
    product needs at most 36 of float64's 53 bits, and truncation of an exact value is exact."""
    if factor == 0:
        return np.zeros(state.shape, np.int32)
    if factor == DECAY_UNITY:
        return state.astype(np.int32)
    return np.trunc(state * (factor / DECAY_UNITY)).astype(np.int32)


@dataclass
class FixedLifState:
    u: np.ndarray
    v: np.ndarray
    wrapped: int = 0      # u overflows (Lava wraps them)
    saturated: int = 0    # v saturations (Lava clips them)


def lif_fixed_step(state: FixedLifState, act: np.ndarray, *, du: int, dv: int,
                   bias: np.ndarray, vth: int) -> np.ndarray:
    """One PyLifModelBitAcc step in place; returns the boolean spikes.

    `act` is the summed int activation; `bias` the effective bias (`effective_bias`).
    """
    decayed_u = np.left_shift(np.asarray(act, dtype=np.int32), ACT_SHIFT)
    if du + 1 < DECAY_UNITY:  # else u is replaced (decays to exactly 0)
        decayed_u = _decay(state.u, DECAY_UNITY - (du + 1)) + decayed_u
    if decayed_u.size and (decayed_u.max() > STATE_LIMIT or decayed_u.min() <= -STATE_LIMIT):
        wrapped = np.where(decayed_u > STATE_LIMIT, decayed_u - 2 * STATE_LIMIT, decayed_u)
        wrapped = np.where(wrapped <= -STATE_LIMIT, decayed_u + 2 * STATE_LIMIT, wrapped)
        state.wrapped += int(np.count_nonzero(wrapped != decayed_u))
        decayed_u = wrapped
    state.u[...] = decayed_u
    updated = _decay(state.v, DECAY_UNITY - dv) + state.u + bias
    if updated.size and (updated.max() > STATE_LIMIT - 1 or updated.min() < -STATE_LIMIT + 1):
        clipped = np.clip(updated, -STATE_LIMIT + 1, STATE_LIMIT - 1)
        state.saturated += int(np.count_nonzero(clipped != updated))
        updated = clipped
    spikes = updated > (vth << ACT_SHIFT)
    np.putmask(updated, spikes, 0)
    state.v[...] = updated
    return spikes
