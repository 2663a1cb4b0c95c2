"""Expert policies for the classic-control environments: planners that use each environment's
own equations of motion, and the simpler physics heuristics they replaced (kept to compare).

Every expert maps the observations of one episode to actions, deterministically: the same
observations since its last ``reset()`` give the same actions, bit for bit on one machine.
Stateful planners keep their plan between calls (call ``reset()`` at the start of every
episode; ``run_episode`` and the collector do) and replan from the observation alone when
an observation leaves the predicted path, so a missed reset cannot leak one episode into
the next. The planners rebuild the state from the observation; all four envs are fully
observed, and their dynamics below (one batched numpy step per env) are the env's own.

- CartPole-v1: LQR on the linearised cart-pole, bang-bang on the sign of its force.
- MountainCar-v0: breadth-first search over action sequences from the start, merging states
  that share a cell of a fine (position, velocity) grid; the first sequence to reach the
  goal is played (minimum time up to the merging).
- Acrobot-v1: beam search over action sequences to the goal line with the env's rk4
  dynamics, the beam kept diverse (one state per cell) and ranked by energy and tip height.
- Pendulum-v1: iLQR over the whole 200-step episode, started from the cheapest of a few
  thousand bang-bang-then-LQR torque sequences, tracked with its time-varying gains.

``make_capped_expert`` degrades an expert after a chosen number of steps (then acts at
random) so that demonstrations with controllable returns can be generated for return
conditioning.

``python -m spikingmind.experts --episodes 100 --workers 2 --json PATH`` measures every
expert and heuristic on the expert-evaluation seeds (``seeds.expert_evaluation_seeds``) and
writes the report, with RL Baselines3 Zoo's best agents for reference (ZOO_RESULTS).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import numpy as np

Action = Any  # int for discrete environments, np.ndarray of shape (1,) for Pendulum


def _wrap_angle(theta):
    """Angle in [-pi, pi), as Pendulum-v1's angle_normalize."""
    return (theta + np.pi) % (2.0 * np.pi) - np.pi


def _discrete_lqr(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-horizon discrete LQR by Riccati iteration: gain K (u = -K x) and cost-to-go P."""
    p = q.copy()
    for _ in range(10_000):
        gain = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p_next = q + a.T @ p @ (a - b @ gain)
        if np.allclose(p_next, p, rtol=1e-13, atol=1e-13):
            break
        p = p_next
    return gain, p_next


def _jacobians(step: Callable[[np.ndarray, np.ndarray], np.ndarray], state: np.ndarray, control: np.ndarray,
               eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference Jacobians of a batched step at a batch of points, from the step itself
    (so the physics lives in one place). step: (N, n), (N, m) -> (N, n); state (T, n),
    control (T, m). Returns df/dx (T, n, n) and df/du (T, n, m)."""
    n, m = state.shape[1], control.shape[1]
    directions = np.eye(n + m) * eps  # each row perturbs one coordinate of (x, u)
    points = np.concatenate([state, control], axis=1)  # (T, n + m)
    probes = np.concatenate([points[:, None] + directions, points[:, None] - directions], axis=1)  # (T, 2(n+m), n+m)
    flat = probes.reshape(-1, n + m)
    out = step(flat[:, :n], flat[:, n:]).reshape(len(points), 2, n + m, n)
    derivative = (out[:, 0] - out[:, 1]) / (2.0 * eps)  # (T, n + m, n): row j = d f / d coordinate j
    return derivative[:, :n].transpose(0, 2, 1), derivative[:, n:].transpose(0, 2, 1)


class _SequencePlanner:
    """Plans a whole action sequence to the goal from the current state and plays it.

    The plan comes with the states it predicts. A call whose state is far from the predicted
    one (_TOLERANCE: a new episode) replans; one that has drifted from it (_DRIFT: float32
    observations, amplified by the dynamics) re-simulates the rest of the plan from the
    observed state and replans only if that no longer reaches the goal on time. Subclasses
    define the state, one batched step, the goal test and the search.
    """

    _TOLERANCE = 1e-4
    _DRIFT = 1e-6

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the plan: the next call plans from its observation."""
        self._plan: list[int] = []
        self._path = np.zeros((0, 0))  # (len(plan), state size): predicted state before each planned action

    def __call__(self, obs: np.ndarray) -> int:
        state = self._state(obs)
        off_path = self._distance(state, self._path[0]) if self._plan else np.inf
        if off_path >= self._DRIFT:
            plan = self._plan if off_path < self._TOLERANCE else []
            path, steps = self._simulate(state, plan)
            if not plan or steps != len(plan):  # no plan, or it stopped working: plan anew from here
                plan = self._search(state)
                path, steps = self._simulate(state, plan)
            if not plan or steps != len(plan):  # nothing reaches the goal within the horizon
                self._plan = []
                return self._fallback(obs)
            self._plan, self._path = plan, path
        self._path = self._path[1:]
        return self._plan.pop(0)

    def _simulate(self, state: np.ndarray, plan: list[int]) -> tuple[np.ndarray, int | None]:
        """States before each action of `plan` played from `state` (len(plan), n), and the
        number of steps after which it first reaches the goal (None: it does not)."""
        path, states = [state], state[None]
        for step, action in enumerate(plan, start=1):
            states = self._step(states, np.array([action]))
            if self._at_goal(states)[0]:
                return np.array(path), step
            path.append(states[0])
        return np.array(path[:len(plan)]), None

    @staticmethod
    def _backtrack(parents: list[np.ndarray], actions: list[np.ndarray], last: int) -> list[int]:
        """The action sequence leading to entry `last` of the final search layer."""
        sequence = []
        for layer in range(len(actions) - 1, -1, -1):
            sequence.append(int(actions[layer][last]))
            last = int(parents[layer][last])
        return sequence[::-1]

    # subclass interface
    def _state(self, obs: np.ndarray) -> np.ndarray: raise NotImplementedError
    def _step(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray: raise NotImplementedError
    def _at_goal(self, states: np.ndarray) -> np.ndarray: raise NotImplementedError
    def _distance(self, a: np.ndarray, b: np.ndarray) -> float: return float(np.max(np.abs(a - b)))
    def _search(self, state: np.ndarray) -> list[int]: raise NotImplementedError
    def _fallback(self, obs: np.ndarray) -> int: raise NotImplementedError


# ----------------------------------------------------------------------------- CartPole

_CP_GRAVITY, _CP_CART_MASS, _CP_POLE_MASS, _CP_HALF_LENGTH = 9.8, 1.0, 0.1, 0.5
_CP_FORCE, _CP_TAU = 10.0, 0.02


def _cartpole_step(state: np.ndarray, force: np.ndarray) -> np.ndarray:
    """One CartPole-v1 (Euler) step. state (N, 4) as (x, x_dot, theta, theta_dot); force (N,) in N."""
    x, x_dot, theta, theta_dot = state.T
    total_mass = _CP_CART_MASS + _CP_POLE_MASS
    polemass_length = _CP_POLE_MASS * _CP_HALF_LENGTH
    cos_theta, sin_theta = np.cos(theta), np.sin(theta)
    temp = (force + polemass_length * theta_dot**2 * sin_theta) / total_mass
    theta_acc = (_CP_GRAVITY * sin_theta - cos_theta * temp) / (
        _CP_HALF_LENGTH * (4.0 / 3.0 - _CP_POLE_MASS * cos_theta**2 / total_mass))
    x_acc = temp - polemass_length * theta_acc * cos_theta / total_mass
    return np.stack([x + _CP_TAU * x_dot, x_dot + _CP_TAU * x_acc,
                     theta + _CP_TAU * theta_dot, theta_dot + _CP_TAU * theta_acc], axis=1)


# Linear state feedback on (x, x_dot, theta, theta_dot); bang-bang on its sign. The small
# cart terms keep the cart near the centre over 500 steps, the pole terms dominate.
_CARTPOLE_HEURISTIC_GAINS = np.array([0.1, 0.5, 10.0, 2.0])


def cartpole_heuristic(obs: np.ndarray) -> int:
    """CartPole-v1 heuristic: push right (1) when a hand-tuned feedback force is positive."""
    return int(float(np.dot(_CARTPOLE_HEURISTIC_GAINS, obs)) > 0.0)


# LQR weights on (x, x_dot, theta, theta_dot) and on the force: the pole angle dominates, the
# cart position keeps the cart centred (from starts of +-0.2 its peak |x| averaged 0.24 over
# 20 seeds, the heuristic's 0.84; a weight of 1 on x gave 0.33).
_CARTPOLE_LQR_Q, _CARTPOLE_LQR_R = np.diag([10.0, 1.0, 100.0, 1.0]), np.array([[0.1]])


@functools.cache
def _cartpole_lqr_gain() -> np.ndarray:
    """LQR gain (4,) of the cart-pole linearised about upright at rest (u = -K x, force in N)."""
    a, b = _jacobians(lambda x, u: _cartpole_step(x, u[:, 0]), np.zeros((1, 4)), np.zeros((1, 1)))
    gain, _ = _discrete_lqr(a[0], b[0], _CARTPOLE_LQR_Q, _CARTPOLE_LQR_R)
    return gain[0]


def cartpole_expert(obs: np.ndarray) -> int:
    """CartPole-v1: push right (1) when the LQR force -K x is positive, else left (0)."""
    return int(-float(np.dot(_cartpole_lqr_gain(), np.asarray(obs, dtype=np.float64))) > 0.0)


# -------------------------------------------------------------------------- MountainCar

_MC_FORCE, _MC_GRAVITY, _MC_MAX_SPEED = 0.001, 0.0025, 0.07
_MC_MIN_POSITION, _MC_MAX_POSITION, _MC_GOAL_POSITION = -1.2, 0.6, 0.5
_MC_HORIZON = 200  # the TimeLimit of MountainCar-v0
_MC_ACTIONS = np.array([0, 1, 2])  # push left, coast, push right


def _mountain_car_step(position: np.ndarray, velocity: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One MountainCar-v0 step, batched (same clipping and left wall). (N,) x 3 -> (N,), (N,)."""
    velocity = velocity + ((action - 1) * _MC_FORCE + np.cos(3.0 * position) * (-_MC_GRAVITY))
    velocity = np.clip(velocity, -_MC_MAX_SPEED, _MC_MAX_SPEED)
    position = np.clip(position + velocity, _MC_MIN_POSITION, _MC_MAX_POSITION)
    velocity = np.where((position == _MC_MIN_POSITION) & (velocity < 0.0), 0.0, velocity)
    return position, velocity


def _mountain_car_at_goal(position: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    return (position >= _MC_GOAL_POSITION) & (velocity >= 0.0)


def mountain_car_heuristic(obs: np.ndarray) -> int:
    """MountainCar-v0 heuristic: one-step lookahead over {right, left, coast}, each followed by
    pushing along the velocity, choosing the first action that reaches the goal soonest."""
    first = np.array([2, 0, 1])  # ties prefer pushing right
    position = np.full(3, float(obs[0]))
    velocity = np.full(3, float(obs[1]))
    steps = np.full(3, _MC_HORIZON + 1)
    action = first
    for step in range(1, _MC_HORIZON + 1):
        position, velocity = _mountain_car_step(position, velocity, action)
        steps = np.where(_mountain_car_at_goal(position, velocity) & (steps > _MC_HORIZON), step, steps)
        action = np.where(velocity >= 0.0, 2, 0)
    return int(first[int(np.argmin(steps))])


# Merge cell of the search, (position, velocity): on 40 starts, halving it found no shorter
# path, doubling it lost 0.35 steps per episode.
_MC_CELL = (5e-3, 5e-4)


class MountainCarPlanner(_SequencePlanner):
    """MountainCar-v0: minimum-time action sequence by breadth-first search from the state.

    Each layer holds every state reachable in that many steps, one per grid cell (_MC_CELL),
    each with the exact action sequence that reached it; the first layer that touches the
    goal ends the search. Usually one plan per episode.
    """

    _DRIFT = 1e-6  # float32 observations are within ~3e-8 of the state

    def _state(self, obs):
        return np.asarray(obs[:2], dtype=np.float64)

    def _step(self, states, actions):
        return np.stack(_mountain_car_step(states[:, 0], states[:, 1], actions), axis=1)

    def _at_goal(self, states):
        return _mountain_car_at_goal(states[:, 0], states[:, 1])

    def _fallback(self, obs):
        return mountain_car_heuristic(obs)

    def _search(self, state):
        positions, velocities = state[:1], state[1:2]
        parents: list[np.ndarray] = []
        actions: list[np.ndarray] = []
        n_velocity_cells = int(np.ceil(2 * _MC_MAX_SPEED / _MC_CELL[1])) + 1
        n_cells = (int(np.ceil((_MC_MAX_POSITION - _MC_MIN_POSITION) / _MC_CELL[0])) + 1) * n_velocity_cells
        for _ in range(_MC_HORIZON):
            parent = np.repeat(np.arange(positions.size), _MC_ACTIONS.size)
            action = np.tile(_MC_ACTIONS, positions.size)
            positions, velocities = _mountain_car_step(positions[parent], velocities[parent], action)
            reached = np.flatnonzero(_mountain_car_at_goal(positions, velocities))
            if reached.size:
                last = reached[np.argmax(positions[reached])]  # furthest over the line: most margin
                return self._backtrack(parents, actions, parent[last]) + [int(action[last])]
            cell = (np.floor((positions - _MC_MIN_POSITION) / _MC_CELL[0]).astype(np.int64) * n_velocity_cells
                    + np.floor((velocities + _MC_MAX_SPEED) / _MC_CELL[1]).astype(np.int64))
            first = np.full(n_cells, cell.size)
            np.minimum.at(first, cell, np.arange(cell.size))  # the first state in each cell
            keep = first[first < cell.size]
            positions, velocities = positions[keep], velocities[keep]
            parents.append(parent[keep])
            actions.append(action[keep])
        return []


# ------------------------------------------------------------------------------ Acrobot

_ACROBOT_DT = 0.2
_ACROBOT_MAX_VEL = (4.0 * np.pi, 9.0 * np.pi)
_ACROBOT_TORQUES = (-1.0, 0.0, 1.0)
_ACROBOT_HORIZON = 500  # the TimeLimit of Acrobot-v1


def _acrobot_derivatives(state: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """Time derivative of a batch of Acrobot-v1 states ("book" dynamics, unit links).

    state: (N, 4) as (theta1, theta2, dtheta1, dtheta2); torque: (N,). Returns (N, 4).
    """
    theta1, theta2, dtheta1, dtheta2 = state.T
    g = 9.8
    # m1 = m2 = l1 = 1, lc1 = lc2 = 0.5, I1 = I2 = 1
    d1 = 0.25 + (1.0 + 0.25 + np.cos(theta2)) + 2.0
    d2 = 0.25 + 0.5 * np.cos(theta2) + 1.0
    phi2 = 0.5 * g * np.cos(theta1 + theta2 - np.pi / 2.0)
    phi1 = (
        -0.5 * dtheta2**2 * np.sin(theta2)
        - dtheta2 * dtheta1 * np.sin(theta2)
        + 1.5 * g * np.cos(theta1 - np.pi / 2.0)
        + phi2
    )
    ddtheta2 = (torque + d2 / d1 * phi1 - 0.5 * dtheta1**2 * np.sin(theta2) - phi2) / (
        0.25 + 1.0 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return np.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], axis=1)


def _acrobot_step(state: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """One RK4 step of dt = 0.2 s with the env's velocity clipping. (N, 4) -> (N, 4)."""
    half = _ACROBOT_DT / 2.0
    k1 = _acrobot_derivatives(state, torque)
    k2 = _acrobot_derivatives(state + half * k1, torque)
    k3 = _acrobot_derivatives(state + half * k2, torque)
    k4 = _acrobot_derivatives(state + _ACROBOT_DT * k3, torque)
    nxt = state + _ACROBOT_DT / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    nxt[:, 2] = np.clip(nxt[:, 2], -_ACROBOT_MAX_VEL[0], _ACROBOT_MAX_VEL[0])
    nxt[:, 3] = np.clip(nxt[:, 3], -_ACROBOT_MAX_VEL[1], _ACROBOT_MAX_VEL[1])
    return nxt


def _acrobot_tip_height(state: np.ndarray) -> np.ndarray:
    """Height of the free end above the pivot, in link lengths (goal: > 1). (N,)"""
    return -np.cos(state[:, 0]) - np.cos(state[:, 0] + state[:, 1])


def _acrobot_energy(state: np.ndarray) -> np.ndarray:
    """Total mechanical energy of a batch of states, zero when hanging at rest. (N,)"""
    theta1, theta2, dtheta1, dtheta2 = state.T
    g = 9.8
    kinetic = 0.5 * (
        (0.25 + 1.0 + 1.0 + 0.25 + 2.0 + np.cos(theta2)) * dtheta1**2
        + 2.0 * (0.25 + 1.0 + 0.5 * np.cos(theta2)) * dtheta1 * dtheta2
        + (0.25 + 1.0) * dtheta2**2
    )
    potential = -g * (1.5 * np.cos(theta1) + 0.5 * np.cos(theta1 + theta2)) + 2.0 * g
    return kinetic + potential


def _acrobot_state(obs: np.ndarray) -> np.ndarray:
    """(theta1, theta2, dtheta1, dtheta2) from the observation (cos, sin, cos, sin, dtheta1, dtheta2)."""
    obs = np.asarray(obs, dtype=np.float64)
    return np.array([np.arctan2(obs[1], obs[0]), np.arctan2(obs[3], obs[2]), obs[4], obs[5]])


# Lookahead tree: every sequence of _ACROBOT_DEPTH macro-actions in {-1, 0, +1}, each held
# for _ACROBOT_HOLD env steps. Precomputed once: (n_sequences, depth * hold) torque table.
_ACROBOT_DEPTH, _ACROBOT_HOLD = 3, 2
_ACROBOT_SEQUENCES = np.repeat(
    np.array(np.meshgrid(*[_ACROBOT_TORQUES] * _ACROBOT_DEPTH, indexing="ij")).reshape(
        _ACROBOT_DEPTH, -1
    ).T,
    _ACROBOT_HOLD,
    axis=1,
)


def acrobot_heuristic(obs: np.ndarray) -> int:
    """Acrobot-v1 heuristic: tree lookahead with the known dynamics. Every macro-action sequence
    is simulated in one batch; a sequence scores by how early the tip crosses the goal line,
    else by the energy it ends with (energy pumping). Returns the first action of the best."""
    n_sequences, horizon = _ACROBOT_SEQUENCES.shape
    state = np.tile(_acrobot_state(obs), (n_sequences, 1))
    reached_at = np.full(n_sequences, horizon + 1)
    for t in range(horizon):
        state = _acrobot_step(state, _ACROBOT_SEQUENCES[:, t])
        crossed = (_acrobot_tip_height(state) > 1.0) & (reached_at > horizon)
        reached_at[crossed] = t + 1
    # Reaching the goal sooner dominates; otherwise more energy and a higher tip is better.
    score = -1000.0 * reached_at + _acrobot_energy(state) + _acrobot_tip_height(state)
    best = int(np.argmax(score))
    return int(_ACROBOT_SEQUENCES[best, 0]) + 1


# Beam search: width, diversity cell (theta1, theta2 in rad; dtheta1, dtheta2 in rad/s) and the
# tip-height weight of the ranking. Measured on 20 starts: width 3000 found the same paths as
# 1000; cells of 0.15/0.3 or 0.25/0.5 and weights 0, 5, 10 were 0.5-1 steps longer on average.
_ACROBOT_BEAM = 1000
_ACROBOT_CELL = np.array([0.2, 0.2, 0.4, 0.4])
_ACROBOT_TIP_WEIGHT = 2.0


class AcrobotPlanner(_SequencePlanner):
    """Acrobot-v1: beam search to the goal line with the env's rk4 dynamics.

    Layer by layer every beam state is expanded by the three torques; the layer keeps its best
    state per diversity cell, then the _ACROBOT_BEAM best of those, ranked by mechanical energy
    plus tip height (energy pumping, then reaching up). The first layer that crosses the line
    gives the plan. Usually one plan per episode.
    """

    _TORQUES = np.array(_ACROBOT_TORQUES)
    _DRIFT = 1e-5  # float32 observations are within ~5e-7 of the state (velocities up to 9 pi)

    def _state(self, obs):
        return _acrobot_state(obs)

    def _step(self, states, actions):
        return _acrobot_step(states, self._TORQUES[actions])

    def _at_goal(self, states):
        return _acrobot_tip_height(states) > 1.0

    def _distance(self, a, b):
        return float(max(np.abs(_wrap_angle(a[:2] - b[:2])).max(), np.abs(a[2:] - b[2:]).max()))

    def _fallback(self, obs):
        return acrobot_heuristic(obs)

    def _search(self, state):
        beam = state[None]
        parents: list[np.ndarray] = []
        actions: list[np.ndarray] = []
        n_actions = self._TORQUES.size
        for _ in range(_ACROBOT_HORIZON):
            parent = np.repeat(np.arange(len(beam)), n_actions)
            action = np.tile(np.arange(n_actions), len(beam))
            beam = _acrobot_step(beam[parent], self._TORQUES[action])
            tip = _acrobot_tip_height(beam)
            reached = np.flatnonzero(tip > 1.0)
            if reached.size:
                last = reached[np.argmax(tip[reached])]  # highest over the line: most margin
                return self._backtrack(parents, actions, parent[last]) + [int(action[last])]
            score = _acrobot_energy(beam) + _ACROBOT_TIP_WEIGHT * tip
            angles = np.mod(beam[:, :2], 2.0 * np.pi)
            cell = np.floor(np.concatenate([angles, beam[:, 2:] + _ACROBOT_MAX_VEL[1]], axis=1)
                            / _ACROBOT_CELL).astype(np.int64)  # each coordinate in [0, 1000)
            key = ((cell[:, 0] * 1000 + cell[:, 1]) * 1000 + cell[:, 2]) * 1000 + cell[:, 3]
            order = np.lexsort((-score, key))  # by cell, best first within a cell
            sorted_key = key[order]
            best_in_cell = order[np.r_[True, sorted_key[1:] != sorted_key[:-1]]]
            keep = best_in_cell[np.argsort(-score[best_in_cell], kind="stable")[:_ACROBOT_BEAM]]
            beam = beam[keep]
            parents.append(parent[keep])
            actions.append(action[keep])
        return []


# ----------------------------------------------------------------------------- Pendulum

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
    wrapped = _wrap_angle(theta)
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
    wrapped = _wrap_angle(theta)
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
    a, b = _jacobians(_pendulum_state_step, np.zeros((1, 2)), np.zeros((1, 1)))
    gain, p = _discrete_lqr(a[0], b[0], np.diag([_PEND_W_ANGLE, _PEND_W_SPEED]), np.array([[_PEND_W_TORQUE]]))
    return gain[0], p


def _pendulum_terminal_cost(theta: np.ndarray, theta_dot: np.ndarray) -> np.ndarray:
    _, p = _pendulum_lqr()
    wrapped = _wrap_angle(theta)
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
        lqr = np.clip(-(gain[0] * _wrap_angle(thetas) + gain[1] * theta_dots), -_PEND_MAX_TORQUE, _PEND_MAX_TORQUE)
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
            torque = (torque + gains[:, t, 0] * _wrap_angle(thetas - reference[:, t, 0])
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
    fx, fu = _jacobians(_pendulum_state_step, states[:-1], torques[:, None])
    fx, fu = fx.tolist(), fu[:, :, 0].tolist()
    thetas, theta_dots = _wrap_angle(states[:, 0]).tolist(), states[:, 1].tolist()
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
            if max(abs(_wrap_angle(theta - planned[0])), abs(theta_dot - planned[1])) > self._TOLERANCE:
                self._torques = None
        else:
            self._torques = None
        if self._torques is None:
            plans = [_pendulum_ilqr(theta, theta_dot, start)
                     for start in _pendulum_bang_bang_starts(theta, theta_dot, _PEND_HORIZON, _PEND_STARTS)]
            self._torques, self._states, self._gains, _ = min(plans, key=lambda plan: plan[3])
            self._step = 0
        t, planned = self._step, self._states[self._step]
        torque = (self._torques[t] + self._gains[t, 0] * _wrap_angle(theta - planned[0])
                  + self._gains[t, 1] * (theta_dot - planned[1]))
        self._step += 1
        return np.array([np.clip(torque, -_PEND_MAX_TORQUE, _PEND_MAX_TORQUE)], dtype=np.float32)


# ---------------------------------------------------------------------- Wrappers, registry

#: The experts of the built-in environments (EnvSpec.expert); stateful ones need reset() per episode.
EXPERTS: dict[str, Callable[[np.ndarray], Action]] = {
    "CartPole-v1": cartpole_expert,
    "MountainCar-v0": MountainCarPlanner(),
    "Acrobot-v1": AcrobotPlanner(),
    "Pendulum-v1": PendulumPlanner(),
}

#: The physics heuristics the planners replaced, for comparison (all stateless).
HEURISTIC_EXPERTS: dict[str, Callable[[np.ndarray], Action]] = {
    "CartPole-v1": cartpole_heuristic,
    "MountainCar-v0": mountain_car_heuristic,
    "Acrobot-v1": acrobot_heuristic,
    "Pendulum-v1": pendulum_heuristic,
}

#: RL Baselines3 Zoo's best online agents (mean return ± std in its benchmark), for reference.
ZOO_RESULTS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {"return": 500.0, "std": 0.0, "algo": "PPO"},
    "MountainCar-v0": {"return": -100.8, "std": 9.9, "algo": "DQN"},
    "Acrobot-v1": {"return": -69.1, "std": 10.0, "algo": "QR-DQN"},
    "Pendulum-v1": {"return": -151.9, "std": 90.2, "algo": "TD3"},
}


def policy_name(policy: Callable[[np.ndarray], Action]) -> str:
    """A policy's function or class name (reports, dataset metadata)."""
    return getattr(policy, "__name__", type(policy).__name__)


def reset_policy(policy: Callable[[np.ndarray], Action]) -> None:
    """Start a new episode for `policy` (a no-op for stateless ones)."""
    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset()


class CappedExpert:
    """Plays ``expert`` for ``give_up_after`` steps, then ``give_up`` (a policy, or one fixed action).

    Stateful (counts steps): call ``reset()`` at the start of every episode; it resets the
    expert too. The collector gives up with uniformly random actions: a fixed action could be
    copied from the action history in the context window, and a model that copies it never
    needs the return-to-go. For CartPole random actions topple the pole within a few steps,
    so an episode's return is just above ``give_up_after``.
    """

    def __init__(self, expert: Callable[[np.ndarray], Action], give_up_after: int,
                 give_up: Callable[[np.ndarray], Action] | Action):
        if give_up_after < 0:
            raise ValueError(f"give_up_after must be >= 0, got {give_up_after}")
        self.expert = expert
        self.give_up_after = int(give_up_after)
        self.give_up = give_up
        self.steps_taken = 0

    def reset(self) -> None:
        """Start a new episode: the next ``give_up_after`` calls play the (reset) expert."""
        self.steps_taken = 0
        reset_policy(self.expert)

    def __call__(self, obs: np.ndarray) -> Action:
        self.steps_taken += 1
        if self.steps_taken <= self.give_up_after:
            return self.expert(obs)
        if callable(self.give_up):
            return self.give_up(obs)
        return self.give_up.copy() if isinstance(self.give_up, np.ndarray) else self.give_up


def make_capped_expert(
    expert: Callable[[np.ndarray], Action], give_up_after: int, give_up: Callable[[np.ndarray], Action] | Action
) -> CappedExpert:
    """Expert for ``give_up_after`` steps of an episode, then ``give_up`` (a policy or a fixed action)."""
    return CappedExpert(expert, give_up_after, give_up)


def random_policy(action_space, rng: np.random.Generator) -> Callable[[np.ndarray], Action]:
    """Uniformly random policy over a gymnasium Discrete or Box space, drawn from ``rng``."""
    n = getattr(action_space, "n", None)
    if n is not None:
        start = int(getattr(action_space, "start", 0))
        return lambda obs: int(rng.integers(n)) + start
    low = np.asarray(action_space.low, dtype=np.float32)
    high = np.asarray(action_space.high, dtype=np.float32)
    return lambda obs: rng.uniform(low, high).astype(np.float32)


def run_episode(env, policy: Callable[[np.ndarray], Action], seed: int) -> float:
    """Play one episode of ``policy`` in ``env`` (reset with ``seed``); returns its return."""
    return play_episode(env, policy, seed)[0]


def play_episode(env, policy: Callable[[np.ndarray], Action], seed: int) -> tuple[float, list[Action]]:
    """Play one episode of ``policy`` (reset first) in ``env`` reset with ``seed``: (return, actions)."""
    reset_policy(policy)
    obs, _ = env.reset(seed=seed)
    episode_return, done, actions = 0.0, False, []
    while not done:
        action = policy(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += float(reward)
        done = terminated or truncated
    return episode_return, actions


# ------------------------------------------------------------------------ Expert report

_REPORT_POLICIES = {"expert": EXPERTS, "heuristic": HEURISTIC_EXPERTS}
_worker_envs: dict[str, Any] = {}  # per process: env id -> env, reused across episodes


def _evaluate_episode(env_id: str, kind: str, seed: int) -> tuple[float, int, float]:
    """One evaluation episode of EXPERTS or HEURISTIC_EXPERTS (kind) in this process:
    (return, steps, seconds)."""
    import gymnasium as gym

    env = _worker_envs.get(env_id)
    if env is None:
        env = _worker_envs[env_id] = gym.make(env_id)
    policy = _REPORT_POLICIES[kind][env_id]
    start = time.perf_counter()
    episode_return, actions = play_episode(env, policy, seed)
    return episode_return, len(actions), time.perf_counter() - start


def evaluate_experts(env_ids: list[str] | None = None, episodes: int = 100, workers: int = 1,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, dict]:
    """Measure every expert and heuristic of `env_ids` (default all) on the first `episodes`
    expert-evaluation seeds, in `workers` processes. Returns the report: {env_id: {"expert":
    {mean, std, min, max, returns, seeds, steps, seconds, seconds_per_step, policy}, "heuristic":
    {...}, "zoo": ZOO_RESULTS[env_id]}}; seconds are summed over episodes (policy + env)."""
    from spikingmind.seeds import expert_evaluation_seeds
    from spikingmind.errors import ConfigError
    from spikingmind.parallel import check_workers, map_in_workers

    check_workers(workers)
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    env_ids = list(EXPERTS) if env_ids is None else list(env_ids)
    unknown = [env_id for env_id in env_ids if env_id not in EXPERTS]
    if unknown:
        raise ConfigError(f"no built-in expert for {', '.join(unknown)}; choose from {', '.join(EXPERTS)}")
    seeds = expert_evaluation_seeds(episodes)
    tasks = [(env_id, kind, seed) for env_id in env_ids for kind in _REPORT_POLICIES for seed in seeds]
    outcomes = np.array(map_in_workers(_evaluate_episode, tasks, workers, progress=progress))  # (tasks, 3)
    report: dict[str, dict] = {}
    for first in range(0, len(tasks), len(seeds)):  # one block of seeds per (env, kind)
        env_id, kind, _ = tasks[first]
        block = outcomes[first:first + len(seeds)]
        returns, steps, seconds = block[:, 0], block[:, 1].astype(int), block[:, 2]
        policy = _REPORT_POLICIES[kind][env_id]
        report.setdefault(env_id, {})[kind] = {
            "policy": policy_name(policy),
            "mean": float(returns.mean()), "std": float(returns.std()),
            "min": float(returns.min()), "max": float(returns.max()),
            "returns": returns.tolist(), "seeds": seeds,
            "steps": int(steps.sum()), "seconds": float(seconds.sum()),
            "seconds_per_step": float(seconds.sum() / max(int(steps.sum()), 1)),
        }
    for env_id in env_ids:
        report[env_id]["zoo"] = dict(ZOO_RESULTS[env_id])
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m spikingmind.experts`: print (and optionally write) the expert report."""
    import argparse
    import os
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from spikingmind.errors import SpikingmindError
    from spikingmind.io import atomic_write_json

    parser = argparse.ArgumentParser(prog="python -m spikingmind.experts", description=main.__doc__)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per expert (default 20)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--envs", default=",".join(EXPERTS), help="comma-separated env ids (default all)")
    parser.add_argument("--json", type=str, default=None, help="write the report here (atomically)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        env_ids = [env_id.strip() for env_id in args.envs.split(",") if env_id.strip()]
        with Progress(TextColumn("[bold]experts"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task("experts", total=2 * len(env_ids) * args.episodes)
            report = evaluate_experts(env_ids, args.episodes, args.workers,
                                      progress=lambda done, total: bar.update(task, completed=done))
    except SpikingmindError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        console.print("interrupted: workers stopped, no report written")
        return 130
    for env_id, entry in report.items():
        zoo = entry["zoo"]
        for kind in _REPORT_POLICIES:
            result = entry[kind]
            print(f"{env_id:15s} {kind:9s} {result['policy']:22s} mean {result['mean']:8.2f} ± {result['std']:6.2f}  "
                  f"min {result['min']:8.2f}  {1000 * result['seconds_per_step']:7.2f} ms/step")
        print(f"{env_id:15s} {'zoo':9s} {zoo['algo']:22s} mean {zoo['return']:8.2f} ± {zoo['std']:6.2f}")
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that worker processes unpickle its functions by their
    # real name (spikingmind.experts, not __main__).
    from spikingmind.experts import main as _main

    raise SystemExit(_main())
