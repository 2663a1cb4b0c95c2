"""Loihi fixed point for a Lava plan: per-population scales, weight groups, integer parameters
(the formats and the integer arithmetic are `spikingmind.fixed_point`'s)."""

from __future__ import annotations

import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind.export.lava_sidecar.plan import Plan, Population

#: k = 0 .. SCALE_CANDIDATES - 1 (threshold mantissa from 4096 down to about 128).
SCALE_STEPS_PER_OCTAVE = 8
SCALE_CANDIDATES = 40
#: At most this many synapse groups (Sparse processes) per fixed-point synapse, and the
#: factor by which each extra group must divide the squared quantization error.
MAX_WEIGHT_GROUPS = 2
GROUP_MIN_GAIN = 2.0


def _unique_weights(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    return uniq, counts


def _bias_error(bias: np.ndarray, scale: float) -> float:
    """Squared error (float units) of a bias quantized at `scale`, clipping included."""
    if not bias.size or not np.any(bias):
        return 0.0
    mant, exp = fxp.quantize_bias(bias, scale)
    return float(np.sum((fxp.effective_bias(mant, exp) / ((1 << fxp.ACT_SHIFT) * scale) - bias) ** 2))


def _choose_scale(pop: Population, theta: float, incoming: list[tuple[np.ndarray, np.ndarray]],
                  bias: np.ndarray) -> float:
    """The population's scale A (activation units per float unit), shared by every incoming
    synapse group, the bias and the threshold: the candidate that minimises the summed
    squared error (float units) of all of them, rounding and clipping together. Each
    synapse's weights are partitioned into groups (`fxp.best_partition`) at each candidate.
    Ties keep the larger scale (finer threshold, activations and bias)."""
    base = fxp.layer_scale(theta)
    best, best_cost = base, float("inf")
    for k in range(SCALE_CANDIDATES):
        scale = base * 2.0 ** (-k / SCALE_STEPS_PER_OCTAVE)
        vth = round(theta * scale)
        cost = pop.size * ((vth - theta * scale) / scale) ** 2 + _bias_error(bias, scale)
        if pop.host_input:
            cost += pop.size / 12.0 / scale ** 2  # rounding of the graded host current
        for uniq, counts in incoming:
            cost += fxp.best_partition(uniq * scale, counts, max_groups=MAX_WEIGHT_GROUPS,
                                       min_gain=GROUP_MIN_GAIN)[1] / scale ** 2
        if cost < best_cost:
            best, best_cost = scale, cost
    return best


def quantize_plan(plan: Plan, beta_of, theta_of) -> fxp.QuantizationReport:
    """Fill the plan's fixed-point fields (see spikingmind.fixed_point for the formats).

    Per population one scale A (`_choose_scale`); per synapse a partition of its weights
    into synapse groups with their own exponents (`fxp.plan_weight_groups`), each weight
    rounded to nearest; every clip is counted in the report."""
    report = fxp.QuantizationReport()

    def unstored_zeros(index_key, shape):
        return plan.arrays[index_key].shape[1] < shape[0] * shape[1]

    def quantize_matrix(w_key, idx_key, shape, scale, layer):
        implicit = unstored_zeros(idx_key, shape)
        weights = plan.arrays[w_key]
        masks, _ = fxp.plan_weight_groups(weights, scale, implicit_zero=implicit, max_groups=MAX_WEIGHT_GROUPS,
                                          min_gain=GROUP_MIN_GAIN)
        groups = fxp.quantize_weight_groups(weights, scale, masks, layer=layer, report=report,
                                            implicit_zero=implicit)
        mant = np.zeros(weights.shape, np.int32)
        group_id = np.zeros(weights.shape, np.int8)
        for g, group in enumerate(groups):
            mant[group.select], group_id[group.select] = group.mant, g
        return mant, group_id, [group.exp for group in groups]

    for pop in plan.populations:
        theta = pop.vth
        incoming = [_unique_weights(plan.arrays[f"w/{syn.name}"]) for syn in plan.synapses if syn.dst == pop.name]
        pop.scale = _choose_scale(pop, theta, incoming, plan.arrays[f"bias/{pop.name}"])
        pop.vth_int = fxp.quantize_threshold(theta, pop.scale, layer=pop.name, report=report)
        pop.dv_int = fxp.DECAY_MAX if pop.stateless else fxp.quantize_decay(
            beta_of[pop.name], layer=pop.name, report=report)
        if not pop.stateless and beta_of[pop.name] == 0.0:
            pop.stateless = True  # beta = 0: dv = 4096 is not representable, reset every step instead
        mant, exp = fxp.quantize_bias(plan.arrays[f"bias/{pop.name}"], pop.scale, layer=pop.name, report=report)
        plan.arrays[f"bias_mant/{pop.name}"], pop.bias_exp = mant, exp

    for syn in plan.synapses:
        dst = plan.population(syn.dst)
        (plan.arrays[f"w_mant/{syn.name}"], plan.arrays[f"w_group/{syn.name}"],
         syn.weight_exps) = quantize_matrix(f"w/{syn.name}", f"w_idx/{syn.name}", plan.matrix_shape(syn),
                                            dst.scale, syn.name)
    if plan.readout is not None:
        weight = plan.arrays["readout_w"]
        peak = float(np.max(np.abs(weight))) if weight.size else 1.0
        plan.readout.scale = 254.0 / (peak or 1.0)  # full mantissa at weight_exp 0; the host divides it out
        (plan.arrays["readout_w_mant"], plan.arrays["readout_w_group"],
         plan.readout.weight_exps) = quantize_matrix("readout_w", "readout_idx", plan.readout_shape(),
                                                     plan.readout.scale, plan.readout.name)
    return report

