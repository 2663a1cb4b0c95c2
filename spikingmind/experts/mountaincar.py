"""MountainCar-v0: minimum-time breadth-first search over action sequences (states merged on a
fine grid), and the one-step lookahead heuristic it replaced (also the planner's fallback)."""

from __future__ import annotations

import numpy as np

from spikingmind.experts.planning import SequencePlanner

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


class MountainCarPlanner(SequencePlanner):
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
