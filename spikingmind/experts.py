"""Physics-based heuristic expert policies for the classic-control environments.

Each expert is a pure, deterministic function ``expert(obs) -> action`` that needs no
training: it uses the known equations of motion of its environment (numpy only). They
produce demonstration data; ``make_capped_expert`` degrades an expert after a chosen
number of steps (then acts at random) so that demonstrations with controllable returns can be
generated for return conditioning.

Measured returns (mean over seeds 1000..1019) are printed by ``python -m spikingmind.experts``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Action = Any  # int for discrete environments, np.ndarray of shape (1,) for Pendulum


# ----------------------------------------------------------------------------- CartPole

# Linear state feedback on (x, x_dot, theta, theta_dot); bang-bang on its sign. The small
# cart terms keep the cart near the centre over 500 steps, the pole terms dominate.
_CARTPOLE_GAINS = np.array([0.1, 0.5, 10.0, 2.0])


def cartpole_expert(obs: np.ndarray) -> int:
    """CartPole-v1: push right (1) when the feedback force is positive, else left (0)."""
    return int(float(np.dot(_CARTPOLE_GAINS, obs)) > 0.0)


# -------------------------------------------------------------------------- MountainCar

_MC_FORCE, _MC_GRAVITY, _MC_MAX_SPEED = 0.001, 0.0025, 0.07
_MC_MIN_POSITION, _MC_GOAL_POSITION = -1.2, 0.5
_MC_HORIZON = 200  # the TimeLimit of MountainCar-v0


def _mountain_car_step(position: float, velocity: float, action: int) -> tuple[float, float]:
    """One step of the MountainCar-v0 equations of motion (same clipping and wall)."""
    velocity += (action - 1) * _MC_FORCE - np.cos(3.0 * position) * _MC_GRAVITY
    velocity = min(max(velocity, -_MC_MAX_SPEED), _MC_MAX_SPEED)
    position = min(max(position + velocity, _MC_MIN_POSITION), _MC_GOAL_POSITION)
    if position == _MC_MIN_POSITION and velocity < 0.0:
        velocity = 0.0
    return position, velocity


def _mountain_car_steps_to_goal(position: float, velocity: float, first_action: int) -> int:
    """Steps to reach the goal playing ``first_action`` then pushing along the velocity."""
    action = first_action
    for step in range(1, _MC_HORIZON + 1):
        position, velocity = _mountain_car_step(position, velocity, action)
        if position >= _MC_GOAL_POSITION:
            return step
        action = 2 if velocity >= 0.0 else 0
    return _MC_HORIZON + 1


def mountain_car_expert(obs: np.ndarray) -> int:
    """MountainCar-v0: one-step lookahead over {left, coast, right} with a
    push-along-velocity rollout, choosing the action that reaches the goal soonest."""
    position, velocity = float(obs[0]), float(obs[1])
    steps = [_mountain_car_steps_to_goal(position, velocity, a) for a in (2, 0, 1)]
    return (2, 0, 1)[int(np.argmin(steps))]  # ties prefer pushing right


# ------------------------------------------------------------------------------ Acrobot

_ACROBOT_DT = 0.2
_ACROBOT_MAX_VEL = (4.0 * np.pi, 9.0 * np.pi)
_ACROBOT_TORQUES = (-1.0, 0.0, 1.0)


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


def acrobot_expert(obs: np.ndarray) -> int:
    """Acrobot-v1: tree lookahead with the known dynamics. Every macro-action sequence is
    simulated in one batch; a sequence scores by how early the tip crosses the goal line,
    else by the energy it ends with (energy pumping). Returns the first action of the best."""
    theta1 = np.arctan2(obs[1], obs[0])
    theta2 = np.arctan2(obs[3], obs[2])
    n_sequences, horizon = _ACROBOT_SEQUENCES.shape
    state = np.tile(np.array([theta1, theta2, obs[4], obs[5]], dtype=np.float64), (n_sequences, 1))
    reached_at = np.full(n_sequences, horizon + 1)
    for t in range(horizon):
        state = _acrobot_step(state, _ACROBOT_SEQUENCES[:, t])
        crossed = (_acrobot_tip_height(state) > 1.0) & (reached_at > horizon)
        reached_at[crossed] = t + 1
    # Reaching the goal sooner dominates; otherwise more energy and a higher tip is better.
    score = -1000.0 * reached_at + _acrobot_energy(state) + _acrobot_tip_height(state)
    best = int(np.argmax(score))
    return int(_ACROBOT_SEQUENCES[best, 0]) + 1


# ----------------------------------------------------------------------------- Pendulum

_PEND_G, _PEND_DT, _PEND_MAX_TORQUE, _PEND_MAX_SPEED = 10.0, 0.05, 2.0, 8.0
_PEND_KP, _PEND_KD = 10.0, 2.0  # PD stabiliser near the top (theta = 0 is upright)
_PEND_CATCH_COS = 0.85  # the stabiliser takes over when cos(theta) exceeds this
_PEND_SWING_GAIN = 1.0  # energy-shaping gain, torque per unit energy error
# Swing-up lookahead candidates: hold one torque for some steps, then the base controller.
_PEND_LOOKAHEAD_STEPS = 80
_PEND_HOLD_TORQUES = np.repeat([-2.0, -1.0, 0.0, 1.0, 2.0], 7)
_PEND_HOLD_STEPS = np.tile([1, 3, 6, 10, 15, 20, 30], 5)


def _pendulum_base_torque(theta: np.ndarray, theta_dot: np.ndarray) -> np.ndarray:
    """Energy-shaping swing-up far from the top, PD near it. Batched: (N,), (N,) -> (N,).

    With theta = 0 upright, thddot = 1.5 g sin(theta) + 3 u, so E = 0.5 thdot^2 +
    1.5 g cos(theta) is conserved at u = 0 and equals 1.5 g at rest upright; the torque
    pumps along the velocity while E is short of that and brakes while above it.
    """
    cos_theta = np.cos(theta)
    wrapped = (theta + np.pi) % (2.0 * np.pi) - np.pi
    stabilise = -_PEND_KP * wrapped - _PEND_KD * theta_dot
    energy_error = 0.5 * theta_dot**2 + 1.5 * _PEND_G * (cos_theta - 1.0)
    direction = np.where(theta_dot != 0.0, np.sign(theta_dot), 1.0)
    swing = -_PEND_SWING_GAIN * energy_error * direction
    torque = np.where(cos_theta > _PEND_CATCH_COS, stabilise, swing)
    return np.clip(torque, -_PEND_MAX_TORQUE, _PEND_MAX_TORQUE)


def _pendulum_step(theta: np.ndarray, theta_dot: np.ndarray, torque: np.ndarray):
    """One Pendulum-v1 step, batched; returns (theta, theta_dot, cost), each (N,)."""
    wrapped = (theta + np.pi) % (2.0 * np.pi) - np.pi
    cost = wrapped**2 + 0.1 * theta_dot**2 + 0.001 * torque**2
    theta_dot = theta_dot + (1.5 * _PEND_G * np.sin(theta) + 3.0 * torque) * _PEND_DT
    theta_dot = np.clip(theta_dot, -_PEND_MAX_SPEED, _PEND_MAX_SPEED)
    return theta + theta_dot * _PEND_DT, theta_dot, cost


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    """Pendulum-v1: PD stabilisation near the top; during the swing-up, a lookahead with
    the known dynamics picks whichever held torque (then energy shaping) costs least over
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


# ---------------------------------------------------------------------- Wrappers, registry

EXPERTS: dict[str, Callable[[np.ndarray], Action]] = {
    "CartPole-v1": cartpole_expert,
    "MountainCar-v0": mountain_car_expert,
    "Acrobot-v1": acrobot_expert,
    "Pendulum-v1": pendulum_expert,
}


class CappedExpert:
    """Plays ``expert`` for ``give_up_after`` steps, then ``give_up`` (a policy, or one fixed action).

    Stateful (counts steps): call ``reset()`` at the start of every episode. The collector
    gives up with uniformly random actions: a fixed action could be copied from the action
    history in the context window, and a model that copies it never needs the return-to-go.
    For CartPole random actions topple the pole within a few steps, so an episode's return is
    just above ``give_up_after``.
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
        """Start a new episode: the next ``give_up_after`` calls play the expert."""
        self.steps_taken = 0

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
    if hasattr(policy, "reset"):
        policy.reset()
    obs, _ = env.reset(seed=seed)
    episode_return, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        episode_return += float(reward)
        done = terminated or truncated
    return episode_return


if __name__ == "__main__":
    import gymnasium as gym

    seeds = range(1000, 1020)
    for env_id, expert in EXPERTS.items():
        env = gym.make(env_id)
        returns = np.array([run_episode(env, expert, s) for s in seeds])
        print(f"{env_id:15s} expert  mean {returns.mean():8.2f}  std {returns.std():6.2f}  "
              f"min {returns.min():8.2f}")
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    for give_up_after in (50, 100, 200):  # gives up at random, as the collector's capped experts do
        capped = make_capped_expert(cartpole_expert, give_up_after, give_up=lambda obs: env.action_space.sample())
        returns = np.array([run_episode(env, capped, s) for s in seeds])
        print(f"CartPole-v1     capped@{give_up_after:<3d} mean {returns.mean():8.2f}  "
              f"std {returns.std():6.2f}")
