"""Pendulum-v1: iLQR over the whole episode from the cheapest bang-bang-then-LQR starts, tracked
with its time-varying gains; and the energy-shaping + lookahead heuristic it replaced."""

from __future__ import annotations

import functools

import numpy as np

from spikingmind.experts.planning import discrete_lqr, jacobians, wrap_angle

_PEND_G, _PEND_DT, _PEND_MAX_TORQUE, _PEND_MAX_SPEED = 10.0, 0.05, 2.0, 8.0
# Cost per step: _W_ANGLE theta^2 + _W_SPEED theta_dot^2 + _W_TORQUE u^2 (theta wrapped, 0 upright)
_PEND_W_ANGLE, _PEND_W_SPEED, _PEND_W_TORQUE = 1.0, 0.1, 0.001
_PEND_HORIZON = 200  # the TimeLimit of Pendulum-v1
_PEND_KP, _PEND_KD = 10.0, 2.0  # PD stabiliser near the top (theta = 0 is upright)
_PEND_CATCH_COS = 0.85  # the stabiliser takes over when cos(theta) exceeds this
_PEND_SWING_GAIN = 1.0  # energy-shaping gain, torque per unit energy error
# Swing-up lookahead candidates: hold one torque for some steps, then the base controller.
_PEND_LOOKAHEAD_STEPS = 80
_PEND_HOLD_TORQUES = np.repeat([-2.0, -1.0, 0.0, 1.0, 2.0], 7)
_PEND_HOLD_STEPS = np.tile([1, 3, 6, 10, 15, 20, 30], 5)


def _pendulum_step(theta: np.ndarray, theta_dot: np.ndarray, torque: np.ndarray):
    """One Pendulum-v1 step, batched; returns (theta, theta_dot, cost), each (N,)."""
    wrapped = wrap_angle(theta)
    cost = _PEND_W_ANGLE * wrapped**2 + _PEND_W_SPEED * theta_dot**2 + _PEND_W_TORQUE * torque**2
    theta_dot = theta_dot + (1.5 * _PEND_G * np.sin(theta) + 3.0 * torque) * _PEND_DT
    theta_dot = np.clip(theta_dot, -_PEND_MAX_SPEED, _PEND_MAX_SPEED)
    return theta + theta_dot * _PEND_DT, theta_dot, cost


def _pendulum_state_step(state: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """_pendulum_step on (N, 2) states (theta, theta_dot) and (N, 1) torques -> (N, 2)."""
    theta, theta_dot, _ = _pendulum_step(state[:, 0], state[:, 1], torque[:, 0])
    return np.stack([theta, theta_dot], axis=1)


def _pendulum_base_torque(theta: np.ndarray, theta_dot: np.ndarray) -> np.ndarray:
    """Energy-shaping swing-up far from the top, PD near it. Batched: (N,), (N,) -> (N,).

    With theta = 0 upright, thddot = 1.5 g sin(theta) + 3 u, so E = 0.5 thdot^2 +
    1.5 g cos(theta) is conserved at u = 0 and equals 1.5 g at rest upright; the torque
    pumps along the velocity while E is short of that and brakes while above it.
    """
    cos_theta = np.cos(theta)
    wrapped = wrap_angle(theta)
    stabilise = -_PEND_KP * wrapped - _PEND_KD * theta_dot
    energy_error = 0.5 * theta_dot**2 + 1.5 * _PEND_G * (cos_theta - 1.0)
    direction = np.where(theta_dot != 0.0, np.sign(theta_dot), 1.0)
    swing = -_PEND_SWING_GAIN * energy_error * direction
    torque = np.where(cos_theta > _PEND_CATCH_COS, stabilise, swing)
    return np.clip(torque, -_PEND_MAX_TORQUE, _PEND_MAX_TORQUE)


def pendulum_heuristic(obs: np.ndarray) -> np.ndarray:
    """Pendulum-v1 heuristic: PD stabilisation near the top; during the swing-up, a lookahead
    with the known dynamics picks whichever held torque (then energy shaping) costs least over
    the next 4 s, or the energy-shaping torque itself when nothing beats it.
    obs = (cos theta, sin theta, theta_dot); returns torque, shape (1,), in [-2, 2]."""
    theta = np.array([np.arctan2(obs[1], obs[0])], dtype=np.float64)
    theta_dot = np.array([obs[2]], dtype=np.float64)
    base_torque = _pendulum_base_torque(theta, theta_dot)
    if obs[0] > _PEND_CATCH_COS:
        return base_torque.astype(np.float32)
    # Candidate 0 is the base controller throughout; the rest hold a torque first.
    hold_torques = np.append(0.0, _PEND_HOLD_TORQUES)
    hold_steps = np.append(0, _PEND_HOLD_STEPS)
    thetas = np.repeat(theta, hold_torques.size)
    theta_dots = np.repeat(theta_dot, hold_torques.size)
    total_cost = np.zeros(hold_torques.size)
    for t in range(_PEND_LOOKAHEAD_STEPS):
        torque = np.where(t < hold_steps, hold_torques, _pendulum_base_torque(thetas, theta_dots))
        thetas, theta_dots, cost = _pendulum_step(thetas, theta_dots, torque)
        total_cost += cost
    best = int(np.argmin(total_cost))  # ties keep the base controller (index 0)
    if best == 0:
        return base_torque.astype(np.float32)
    return np.array([hold_torques[best]], dtype=np.float32)


@functools.cache
def _pendulum_lqr() -> tuple[np.ndarray, np.ndarray]:
    """LQR gain (2,) and cost-to-go P (2, 2) of the pendulum linearised about upright at rest,
    with the env's own cost weights: the catch of the bang-bang starts and iLQR's terminal cost."""
    a, b = jacobians(_pendulum_state_step, np.zeros((1, 2)), np.zeros((1, 1)))
    gain, p = discrete_lqr(a[0], b[0], np.diag([_PEND_W_ANGLE, _PEND_W_SPEED]), np.array([[_PEND_W_TORQUE]]))
    return gain[0], p


def _pendulum_terminal_cost(theta: np.ndarray, theta_dot: np.ndarray) -> np.ndarray:
    _, p = _pendulum_lqr()
    wrapped = wrap_angle(theta)
    return p[0, 0] * wrapped**2 + 2.0 * p[0, 1] * wrapped * theta_dot + p[1, 1] * theta_dot**2


# Bang-bang starts: full torque one way for n1 steps, the other way for n2, the first way for
# n3 (each n from this list, both signs), then the LQR catch; the cheapest few go to iLQR.
_PEND_SWITCH_STEPS = np.array([0, 3, 6, 9, 12, 15, 18, 22, 26, 30, 35, 40, 50])
_PEND_STARTS = 6
_PEND_ILQR_ITERATIONS = 100
_PEND_LINE_SEARCH = 0.5 ** np.arange(10)


def _pendulum_bang_bang_starts(theta: float, theta_dot: float, horizon: int, n_keep: int) -> np.ndarray:
    """The n_keep cheapest distinct bang-bang-then-LQR torque sequences from (theta, theta_dot). (n_keep, horizon)"""
    gain, _ = _pendulum_lqr()
    sign, n1, n2, n3 = (grid.ravel() for grid in np.meshgrid([1.0, -1.0], _PEND_SWITCH_STEPS, _PEND_SWITCH_STEPS,
                                                             _PEND_SWITCH_STEPS, indexing="ij"))
    first_switch, second_switch, catch = n1, n1 + n2, n1 + n2 + n3
    thetas, theta_dots = np.full(sign.size, theta), np.full(sign.size, theta_dot)
    torques = np.empty((sign.size, horizon))
    total = np.zeros(sign.size)
    for t in range(horizon):
        bang = np.where((t < first_switch) | (t >= second_switch), sign, -sign) * _PEND_MAX_TORQUE
        lqr = np.clip(-(gain[0] * wrap_angle(thetas) + gain[1] * theta_dots), -_PEND_MAX_TORQUE, _PEND_MAX_TORQUE)
        torques[:, t] = np.where(t < catch, bang, lqr)
        thetas, theta_dots, cost = _pendulum_step(thetas, theta_dots, torques[:, t])
        total += cost
    total += _pendulum_terminal_cost(thetas, theta_dots)
    _, distinct = np.unique(np.round(total, 9), return_index=True)  # sorted by cost, duplicates dropped
    return torques[distinct[:n_keep]]


def _pendulum_rollout(theta: float, theta_dot: float, torques: np.ndarray, reference: np.ndarray | None = None,
                      gains: np.ndarray | None = None):
    """Roll out a batch of torque plans (C, H) from one state, optionally with feedback
    u = plan + gains . (x - reference) (reference (C, H+1, 2), gains (C, H, 2)), torques clipped.
    Returns states (C, H+1, 2), applied torques (C, H), total cost incl. terminal (C,)."""
    n_plans, horizon = torques.shape
    states = np.empty((n_plans, horizon + 1, 2))
    applied = np.empty_like(torques)
    thetas, theta_dots = np.full(n_plans, theta), np.full(n_plans, theta_dot)
    states[:, 0, 0], states[:, 0, 1] = thetas, theta_dots
    total = np.zeros(n_plans)
    for t in range(horizon):
        torque = torques[:, t]
        if gains is not None:
            torque = (torque + gains[:, t, 0] * wrap_angle(thetas - reference[:, t, 0])
                      + gains[:, t, 1] * (theta_dots - reference[:, t, 1]))
        applied[:, t] = np.clip(torque, -_PEND_MAX_TORQUE, _PEND_MAX_TORQUE)
        thetas, theta_dots, cost = _pendulum_step(thetas, theta_dots, applied[:, t])
        total += cost
        states[:, t + 1, 0], states[:, t + 1, 1] = thetas, theta_dots
    return states, applied, total + _pendulum_terminal_cost(thetas, theta_dots)


def _pendulum_backward(states: np.ndarray, torques: np.ndarray, regulariser: float):
    """One control-limited iLQR backward pass along a trajectory (states (H+1, 2), torques (H,)).

    Dynamics Jacobians come from the env step itself, the cost derivatives from its weights.
    A step whose optimal torque lies outside [-2, 2] is clamped and gets no feedback gain.
    Returns feedforward (H,) and gains (H, 2) for the torque, as du = k + K dx.
    """
    horizon = len(torques)
    fx, fu = jacobians(_pendulum_state_step, states[:-1], torques[:, None])
    fx, fu = fx.tolist(), fu[:, :, 0].tolist()
    thetas, theta_dots = wrap_angle(states[:, 0]).tolist(), states[:, 1].tolist()
    _, p = _pendulum_lqr()
    # value function V = Vx . dx + 0.5 dx' Vxx dx, from the terminal cost
    vx0 = 2.0 * (p[0, 0] * thetas[-1] + p[0, 1] * theta_dots[-1])
    vx1 = 2.0 * (p[0, 1] * thetas[-1] + p[1, 1] * theta_dots[-1])
    v00, v01, v11 = 2.0 * p[0, 0], 2.0 * p[0, 1], 2.0 * p[1, 1]
    feedforward, gains = np.zeros(horizon), np.zeros((horizon, 2))
    for t in range(horizon - 1, -1, -1):
        (f00, f01), (f10, f11) = fx[t]
        fu0, fu1 = fu[t]
        u = float(torques[t])
        qx0 = 2.0 * _PEND_W_ANGLE * thetas[t] + f00 * vx0 + f10 * vx1
        qx1 = 2.0 * _PEND_W_SPEED * theta_dots[t] + f01 * vx0 + f11 * vx1
        qu = 2.0 * _PEND_W_TORQUE * u + fu0 * vx0 + fu1 * vx1
        a0, a1 = v00 * f00 + v01 * f10, v01 * f00 + v11 * f10  # Vxx fx[:, 0]
        b0, b1 = v00 * f01 + v01 * f11, v01 * f01 + v11 * f11  # Vxx fx[:, 1]
        g0, g1 = v00 * fu0 + v01 * fu1, v01 * fu0 + v11 * fu1  # Vxx fu
        qxx00 = 2.0 * _PEND_W_ANGLE + f00 * a0 + f10 * a1
        qxx01 = f00 * b0 + f10 * b1
        qxx11 = 2.0 * _PEND_W_SPEED + f01 * b0 + f11 * b1
        qux0, qux1 = f00 * g0 + f10 * g1, f01 * g0 + f11 * g1
        quu = 2.0 * _PEND_W_TORQUE + fu0 * g0 + fu1 * g1
        quu_reg = max(quu + regulariser, 1e-9)
        k, k0, k1 = -qu / quu_reg, -qux0 / quu_reg, -qux1 / quu_reg
        if not -_PEND_MAX_TORQUE <= u + k <= _PEND_MAX_TORQUE:
            k = min(max(u + k, -_PEND_MAX_TORQUE), _PEND_MAX_TORQUE) - u
            k0 = k1 = 0.0
        feedforward[t], gains[t] = k, (k0, k1)
        vx0 = qx0 + k0 * quu * k + k0 * qu + qux0 * k
        vx1 = qx1 + k1 * quu * k + k1 * qu + qux1 * k
        v00 = qxx00 + k0 * quu * k0 + 2.0 * k0 * qux0
        v01 = qxx01 + k0 * quu * k1 + k0 * qux1 + k1 * qux0
        v11 = qxx11 + k1 * quu * k1 + 2.0 * k1 * qux1
    return feedforward, gains


def _pendulum_ilqr(theta: float, theta_dot: float, torques: np.ndarray):
    """iLQR from one torque plan (H,): returns the locally optimal plan (H,), its states (H+1, 2),
    its tracking gains (H, 2) and its total cost (incl. the LQR terminal cost)."""
    states, torques, cost = (array[0] for array in _pendulum_rollout(theta, theta_dot, torques[None]))
    regulariser = 1e-6
    n_alpha = _PEND_LINE_SEARCH.size
    for _ in range(_PEND_ILQR_ITERATIONS):
        feedforward, gains = _pendulum_backward(states, torques, regulariser)
        # every line-search step at once: plans torques + alpha k, feedback K around the nominal
        trial_states, trial_torques, trial_cost = _pendulum_rollout(
            theta, theta_dot, torques + _PEND_LINE_SEARCH[:, None] * feedforward,
            np.broadcast_to(states, (n_alpha, *states.shape)), np.broadcast_to(gains, (n_alpha, *gains.shape)))
        best = int(np.argmin(trial_cost))
        if trial_cost[best] < cost:
            improvement = cost - trial_cost[best]
            states, torques, cost = trial_states[best], trial_torques[best], float(trial_cost[best])
            regulariser = max(regulariser / 4.0, 1e-9)
            if improvement < 1e-7 * max(cost, 1.0):
                break
        else:
            regulariser *= 10.0
            if regulariser > 1e4:
                break
    _, gains = _pendulum_backward(states, torques, 1e-9)  # gains around the final plan, for tracking
    return torques, states, gains, cost


class PendulumPlanner:
    """Pendulum-v1: iLQR over the whole episode, then tracked with its time-varying gains.

    The first call plans _PEND_HORIZON steps (the episode) from the observed state: the
    _PEND_STARTS cheapest bang-bang-then-LQR sequences are each refined by iLQR with the env's
    cost (terminal cost: the LQR cost-to-go), the cheapest result kept. Later calls play
    plan + gains . (state - planned state); a state off the plan (> 1e-3) replans.
    Usually one plan per episode. Returns the torque, shape (1,), float32.
    """

    _TOLERANCE = 1e-3

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the plan: the next call plans from its observation."""
        self._torques: np.ndarray | None = None
        self._step = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        theta, theta_dot = float(np.arctan2(obs[1], obs[0])), float(obs[2])
        if self._torques is not None and self._step < len(self._torques):
            planned = self._states[self._step]
            if max(abs(wrap_angle(theta - planned[0])), abs(theta_dot - planned[1])) > self._TOLERANCE:
                self._torques = None
        else:
            self._torques = None
        if self._torques is None:
            plans = [_pendulum_ilqr(theta, theta_dot, start)
                     for start in _pendulum_bang_bang_starts(theta, theta_dot, _PEND_HORIZON, _PEND_STARTS)]
            self._torques, self._states, self._gains, _ = min(plans, key=lambda plan: plan[3])
            self._step = 0
        t, planned = self._step, self._states[self._step]
        torque = (self._torques[t] + self._gains[t, 0] * wrap_angle(theta - planned[0])
                  + self._gains[t, 1] * (theta_dot - planned[1]))
        self._step += 1
        return np.array([np.clip(torque, -_PEND_MAX_TORQUE, _PEND_MAX_TORQUE)], dtype=np.float32)
