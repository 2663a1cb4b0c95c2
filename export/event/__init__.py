"""The `event` backend: the spiking DT's decision as an event-driven CPU runtime compiled with numba.

What a neuromorphic core does, on a CPU: a synapse layer adds the weight rows of the inputs
that spiked (no multiply, no work for silent inputs), each LIF layer is one fused loop over
its T steps, and the causal mix runs as the decay recurrence kv_i = g * kv_(i-1) + x_i
instead of a dense (L, L) matrix. Only the tokens up to the decision token are computed
(later ones cannot reach it) and the last block only where the decision token reads it,
as `DecisionTransformer.decide`.

Same network, same time semantics (docs/SEMANTICS.md) as the PyTorch model: BatchNorm is
folded in float64 (`spikingmind.folding`, one place), everything runs in float32 (the
kernels take the dtype of the weights: float64 weights, `EventWeights.from_model(model,
np.float64)`, give a float64 runtime that tests compare with PyTorch in float64).
Sums run in another order than PyTorch's BLAS, so a membrane that lands within float32
rounding of the threshold can flip a spike: `verify_against_torch` measures the output
error and the actions on random and realistic windows, and `EventPolicy` refuses a model
outside the bounds every spiking backend is held to (`spikingmind.verification.SNN_*`).

    kernels.py        the numba kernels (shapes: tokens (B, L, F); inside, one window at a time:
                      residual currents (T, L', C) with L' = decision_token + 1, spikes uint8)
    weights.py        `EventWeights` (the folded inference weights) and `decide`
    verification.py   `verify_against_torch`
    policy.py         `EventPolicy`: a spiking DT checkpoint on this runtime
"""

from spikingmind.export.event.policy import EventPolicy, load_policy
from spikingmind.export.event.verification import verify_against_torch
from spikingmind.export.event.weights import EventWeights, decide

__all__ = ["EventPolicy", "EventWeights", "decide", "load_policy", "verify_against_torch"]
