"""Environment registry: env id -> observation/action spec, return scale, expert.

Adding an environment is one `register_env(EnvSpec(...))` call from user code (see README,
"Adding an environment"); nothing in the library needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from spikingmind.errors import UnknownEnvError


@dataclass(frozen=True)
class EnvSpec:
    """What the toolchain needs to know about an environment.

    env_id: gymnasium id (or any name when `make` is given).
    action_kind: "discrete" or "continuous".
    act_dim: number of discrete actions, or the size of a continuous action vector.
    target_return: default return-to-go asked of the policy at evaluation.
    return_scale: divides returns-to-go before they enter the model.
    max_episode_steps: episode horizon (timestep feature is t / max_episode_steps).
    expert: obs -> action heuristic used for demonstrations (None: no expert available).
    make: optional factory returning a gymnasium.Env (for env classes that are not registered ids).
    """

    env_id: str
    obs_dim: int
    action_kind: str
    act_dim: int
    target_return: float
    return_scale: float
    max_episode_steps: int
    expert: Callable[[np.ndarray], Any] | None = None
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    make: Callable[..., Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.action_kind not in ("discrete", "continuous"):
            raise ValueError(f"{self.env_id}: action_kind must be 'discrete' or 'continuous', not {self.action_kind!r}")
        if self.action_kind == "continuous" and len(self.action_low) != self.act_dim:
            raise ValueError(f"{self.env_id}: continuous envs need action_low/action_high of length act_dim")
        if self.return_scale <= 0 or self.max_episode_steps <= 0:
            raise ValueError(f"{self.env_id}: return_scale and max_episode_steps must be positive")

    @property
    def discrete(self) -> bool:
        return self.action_kind == "discrete"

    def make_env(self, **kwargs: Any):
        """A fresh gymnasium env for this spec."""
        import gymnasium as gym

        if self.make is not None:
            return self.make(**kwargs)
        return gym.make(self.env_id, **kwargs)


_REGISTRY: dict[str, EnvSpec] = {}


def register_env(spec: EnvSpec, *, replace: bool = False) -> EnvSpec:
    """Add an environment to the registry (the extension point for users)."""
    if spec.env_id in _REGISTRY and not replace:
        raise ValueError(f"environment {spec.env_id!r} is already registered (pass replace=True)")
    _REGISTRY[spec.env_id] = spec
    return spec


def get_env_spec(env_id: str) -> EnvSpec:
    """The registered spec of `env_id`, or UnknownEnvError listing the supported ids."""
    _register_builtins()
    try:
        return _REGISTRY[env_id]
    except KeyError:
        raise UnknownEnvError(
            f"unknown environment {env_id!r}; supported: {', '.join(sorted(_REGISTRY))}"
        ) from None


def supported_envs() -> list[str]:
    _register_builtins()
    return sorted(_REGISTRY)


def _register_builtins() -> None:
    if "CartPole-v1" in _REGISTRY:
        return
    from spikingmind import experts

    builtins = [
        EnvSpec("CartPole-v1", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500.0,
                return_scale=500.0, max_episode_steps=500, expert=experts.EXPERTS.get("CartPole-v1")),
        EnvSpec("MountainCar-v0", obs_dim=2, action_kind="discrete", act_dim=3, target_return=-100.0,
                return_scale=200.0, max_episode_steps=200, expert=experts.EXPERTS.get("MountainCar-v0")),
        EnvSpec("Acrobot-v1", obs_dim=6, action_kind="discrete", act_dim=3, target_return=-75.0,
                return_scale=500.0, max_episode_steps=500, expert=experts.EXPERTS.get("Acrobot-v1")),
        EnvSpec("Pendulum-v1", obs_dim=3, action_kind="continuous", act_dim=1, target_return=-120.0,
                return_scale=1000.0, max_episode_steps=200, expert=experts.EXPERTS.get("Pendulum-v1"),
                action_low=(-2.0,), action_high=(2.0,)),
    ]
    for spec in builtins:
        _REGISTRY.setdefault(spec.env_id, spec)
