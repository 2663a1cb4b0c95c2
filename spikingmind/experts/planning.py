"""What the planners share: angle wrapping, discrete LQR, Jacobians of a batched env step, and
the plan-and-replay loop of the sequence planners (MountainCar, Acrobot)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Action = Any  # int for discrete environments, np.ndarray of shape (1,) for Pendulum


def wrap_angle(theta):
    """Angle in [-pi, pi), as Pendulum-v1's angle_normalize."""
    return (theta + np.pi) % (2.0 * np.pi) - np.pi


def discrete_lqr(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-horizon discrete LQR by Riccati iteration: gain K (u = -K x) and cost-to-go P."""
    p = q.copy()
    for _ in range(10_000):
        gain = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p_next = q + a.T @ p @ (a - b @ gain)
        if np.allclose(p_next, p, rtol=1e-13, atol=1e-13):
            break
        p = p_next
    return gain, p_next


def jacobians(step: Callable[[np.ndarray, np.ndarray], np.ndarray], state: np.ndarray, control: np.ndarray,
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


class SequencePlanner:
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
