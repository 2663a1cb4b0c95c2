"""Time step and neuron-parameter conversions: the one place where beta <-> tau is derived.

Discrete LIF used everywhere (PyTorch, NIR reference simulator, Lava, fixed point):

    v[t] = beta * v[t-1] + I[t]          (v[-1] = 0 at the start of every decision)
    s[t] = v[t] > v_threshold             (strict comparison)
    v[t] = v_reset if s[t] else v[t]      (zero reset, v_reset = 0)

NIR's continuous LIF  tau dv/dt = (v_leak - v) + r I  discretised by forward Euler with
step dt gives  v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak + (dt/tau) r I[t], so the
trained step is recovered with tau = dt / (1 - beta), r = tau / dt, v_leak = 0.
"""

from __future__ import annotations

import numpy as np

from spikingmind.errors import ExportError

#: Seconds per SNN time step written into every export. Any value works (only dt/tau
#: matters); 1 ms is the customary neuromorphic tick.
DT = 1e-3


def tau_from_beta(beta, dt: float = DT):
    """Membrane time constant (s) of a discrete decay `beta` in (0, 1)."""
    beta = np.asarray(beta, dtype=np.float64)
    return dt / (1.0 - beta)


def beta_from_tau(tau, dt: float = DT):
    """Discrete per-step decay of a membrane time constant `tau` (s)."""
    return 1.0 - dt / np.asarray(tau, dtype=np.float64)


def input_gain(tau, r, dt: float = DT):
    """Per-step gain on the input current: (dt / tau) * r (1 for exports of ours)."""
    return dt / np.asarray(tau, dtype=np.float64) * np.asarray(r, dtype=np.float64)


def leak_drive(tau, v_leak, dt: float = DT):
    """Constant per-step drive from the leak potential: (dt / tau) * v_leak."""
    return dt / np.asarray(tau, dtype=np.float64) * np.asarray(v_leak, dtype=np.float64)


def lif_parameters(beta, dt: float = DT) -> dict[str, np.ndarray]:
    """NIR LIF parameters (tau, r, v_leak) that reproduce `v = beta v + I` exactly.

    Raises ExportError when float64 cannot carry beta through tau and back bit-exactly
    (choose a dyadic beta such as 0.5 or 0.75).
    """
    beta = np.asarray(beta, dtype=np.float64)
    tau = tau_from_beta(beta, dt)
    r = tau / dt
    if not np.array_equal(beta_from_tau(tau, dt), beta) or not np.all(input_gain(tau, r, dt) == 1.0):
        raise ExportError(
            f"beta={np.unique(beta)} does not survive the beta -> tau -> beta round trip exactly "
            f"in float64 with dt={dt}; use a dyadic decay such as 0.5 or 0.75"
        )
    return {"tau": tau, "r": r, "v_leak": np.zeros_like(beta)}
