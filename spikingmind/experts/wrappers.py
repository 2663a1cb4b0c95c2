"""Around any expert: its name, per-episode reset, the capped expert that gives up after N steps
(return-conditioning data), a uniformly random policy, and playing one episode."""

from __future__ import annotations

from typing import Callable

import numpy as np

from spikingmind.experts.planning import Action


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
