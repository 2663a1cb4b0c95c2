"""Environment registry: env id -> observation/action spec, return scale, expert, default data mix.

Extension point. Adding an environment is one `register_env(...)` call from user code;
nothing in the library changes. Either spell the spec out with `EnvSpec(...)`, or let
`spec_from_gym` read the observation/action spaces and the time limit off the env:

    from spikingmind.envs import register_env, spec_from_gym

    register_env(spec_from_gym("LunarLander-v3", target_return=250, return_scale=300))  # a gymnasium id
    register_env(spec_from_gym("MyCorridor-v0", make=MyCorridorEnv,                       # an env class
                               target_return=1.0, return_scale=1.0, expert=my_expert))

After that the id works everywhere an id is accepted (`collect`, `train`, `evaluate`,
checkpoints and exports made for it), in the same Python process: a script or a plugin
module imported before the CLI runs. Loading a checkpoint of an unregistered env fails
with UnknownEnvError listing the registered ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from spikingmind.errors import ConfigError, UnknownEnvError

#: The demonstration kinds that play the env's expert (spikingmind.data): an env without one collects random only.
EXPERT_KINDS = ("expert", "capped", "noisy", "late", "idle")


@dataclass(frozen=True)
class EnvSpec:
    """What the toolchain needs to know about an environment.

    env_id: gymnasium id (or any name when `make` is given).
    action_kind: "discrete" or "continuous".
    act_dim: number of discrete actions, or the size of a continuous action vector.
    target_return: default return-to-go asked of the policy at evaluation.
    return_scale: |return| that encodes to 1.0 in the return-to-go channel (tokens.encode_return).
    return_gain: the return-to-go feature is multiplied by it (train.return_gain overrides it).
        CartPole's 4: at 1 its spiking DT all but ignored the requested return, at 4 it gives
        up close to it. Pendulum's 1: at 4 its spiking DT did not learn the swing-up.
    max_episode_steps: episode horizon (timestep feature is t / max_episode_steps).
    expert: obs -> action policy used for demonstrations (None: no expert available); one
        with a reset() method is reset at the start of every episode (see spikingmind.experts).
    action_low/action_high: bounds of a continuous action (the host squashes the model's
        output into them with tanh, see docs/SEMANTICS.md).
    make: optional factory returning a gymnasium.Env (an env class, or any callable), for
        environments that are not registered gymnasium ids.
    default_mix: policy mix of `spikingmind collect` when --mix is not given, in --mix
        syntax ("expert=0.8,random=0.2"); None: expert=0.7,random=0.3 when an expert
        exists, else random=1.
    idle_action: the action that does nothing (MountainCar's and Acrobot's 1, Pendulum's zero
        torque), which the `idle` demonstration kind holds until the expert takes over; None:
        the env has none (CartPole always pushes), and the idle kind is refused.
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
    default_mix: str | None = None
    return_gain: float = 1.0
    idle_action: Any = None

    def __post_init__(self) -> None:
        if self.action_kind not in ("discrete", "continuous"):
            raise ValueError(f"{self.env_id}: action_kind must be 'discrete' or 'continuous', not {self.action_kind!r}")
        if self.action_kind == "continuous" and not (len(self.action_low) == len(self.action_high) == self.act_dim):
            raise ValueError(f"{self.env_id}: continuous envs need action_low/action_high of length act_dim")
        if self.action_kind == "continuous" and not all(lo < hi for lo, hi in zip(self.action_low, self.action_high)):
            raise ValueError(f"{self.env_id}: action_low must be below action_high in every dimension")
        if self.obs_dim < 1 or self.act_dim < 1:
            raise ValueError(f"{self.env_id}: obs_dim and act_dim must be >= 1")
        if self.return_scale <= 0 or self.max_episode_steps <= 0 or self.return_gain <= 0:
            raise ValueError(f"{self.env_id}: return_scale, return_gain and max_episode_steps must be positive")
        if self.idle_action is not None:
            self._check_idle_action()
        mix = self.dataset_mix()  # validates the syntax (ConfigError) ...
        if self.expert is None and set(mix) & set(EXPERT_KINDS):  # ... and that it can be collected
            raise ValueError(f"{self.env_id}: default_mix {self.default_mix!r} needs an expert, and none is given")

    def _check_idle_action(self) -> None:
        if self.discrete:
            if isinstance(self.idle_action, bool) or not isinstance(self.idle_action, (int, np.integer)) \
                    or not 0 <= self.idle_action < self.act_dim:
                raise ValueError(f"{self.env_id}: idle_action must be an action index in [0, {self.act_dim}), "
                                 f"got {self.idle_action!r}")
            return
        idle = np.asarray(self.idle_action, dtype=np.float64)
        if idle.shape != (self.act_dim,) or not np.all(np.isfinite(idle)) \
                or np.any(idle < self.action_low) or np.any(idle > self.action_high):
            raise ValueError(f"{self.env_id}: idle_action must be {self.act_dim} finite number(s) within "
                             f"action_low/action_high, got {self.idle_action!r}")

    @property
    def discrete(self) -> bool:
        return self.action_kind == "discrete"

    def dataset_mix(self) -> dict[str, float]:
        """The default collection mix as normalised weights {policy: weight}."""
        from spikingmind.data import parse_mix  # data imports this module

        text = self.default_mix or ("expert=0.7,random=0.3" if self.expert is not None else "random=1")
        return parse_mix(text)

    def make_env(self, **kwargs: Any):
        """A fresh gymnasium env for this spec."""
        import gymnasium as gym

        if self.make is not None:
            return self.make(**kwargs)
        return gym.make(self.env_id, **kwargs)


def spec_from_gym(
    env_id: str,
    *,
    target_return: float,
    return_scale: float,
    make: Callable[..., Any] | None = None,
    expert: Callable[[np.ndarray], Any] | None = None,
    max_episode_steps: int | None = None,
    default_mix: str | None = None,
) -> EnvSpec:
    """An EnvSpec read off a gymnasium env (a registered id, or `make()` for an env class).

    obs_dim, action kind/size/bounds come from the env's spaces (a 1-D Box observation;
    a Discrete or 1-D Box action); max_episode_steps from the env's TimeLimit unless given.
    Raises ConfigError naming the env when a space is of an unsupported kind.
    """
    import gymnasium as gym
    from gymnasium import spaces

    env = make() if make is not None else gym.make(env_id)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ConfigError(f"{env_id}: observation space {obs_space} is not a 1-D Box")
        if max_episode_steps is None:
            max_episode_steps = getattr(env.spec, "max_episode_steps", None) if env.spec is not None else None
        if not max_episode_steps:
            raise ConfigError(f"{env_id}: the env has no time limit; pass max_episode_steps=")
        common = dict(env_id=env_id, obs_dim=int(obs_space.shape[0]), target_return=float(target_return),
                      return_scale=float(return_scale), max_episode_steps=int(max_episode_steps),
                      expert=expert, make=make, default_mix=default_mix)
        if isinstance(act_space, spaces.Discrete):
            if int(act_space.start) != 0:
                raise ConfigError(f"{env_id}: Discrete action space must start at 0, not {act_space.start}")
            return EnvSpec(action_kind="discrete", act_dim=int(act_space.n), **common)
        if isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
            low, high = act_space.low.astype(float), act_space.high.astype(float)
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ConfigError(f"{env_id}: continuous actions need finite bounds, got {act_space}")
            return EnvSpec(action_kind="continuous", act_dim=int(act_space.shape[0]),
                           action_low=tuple(map(float, low)), action_high=tuple(map(float, high)), **common)
        raise ConfigError(f"{env_id}: action space {act_space} is neither Discrete nor a 1-D Box")
    finally:
        env.close()


_REGISTRY: dict[str, EnvSpec] = {}


def register_env(spec: EnvSpec, *, replace: bool = False) -> EnvSpec:
    """Add an environment to the registry (the extension point for users, see module docstring).

    Refuses an id that is already registered (built-ins included) unless replace=True.
    """
    _register_builtins()
    if not isinstance(spec, EnvSpec):
        raise TypeError(f"register_env takes an EnvSpec, not {type(spec).__name__}")
    if spec.env_id in _REGISTRY and not replace:
        raise ValueError(f"environment {spec.env_id!r} is already registered (pass replace=True)")
    _REGISTRY[spec.env_id] = spec
    return spec


def unregister_env(env_id: str) -> None:
    """Remove a user-registered environment (tests, notebooks); unknown ids are ignored."""
    _REGISTRY.pop(env_id, None)


def env_slug(env_id: str) -> str:
    """Short lower-case name of an env for folders and file names: 'CartPole-v1' -> 'cartpole'."""
    return env_id.split("-v")[0].lower()


def get_env_spec(env_id: str) -> EnvSpec:
    """The registered spec of `env_id`, or UnknownEnvError listing the supported ids."""
    _register_builtins()
    try:
        return _REGISTRY[env_id]
    except KeyError:
        raise UnknownEnvError(
            f"unknown environment {env_id!r}; supported: {', '.join(sorted(_REGISTRY))} "
            "(add one with spikingmind.envs.register_env)"
        ) from None


def supported_envs() -> list[str]:
    _register_builtins()
    return sorted(_REGISTRY)


_BUILTINS_DONE = False
_BUILTINS: dict[str, EnvSpec] = {}


def is_builtin(spec: EnvSpec) -> bool:
    """True for the library's own spec of a built-in env (worker processes rebuild it from its id)."""
    _register_builtins()
    return _BUILTINS.get(spec.env_id) is spec


def _register_builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    _BUILTINS_DONE = True
    from spikingmind import experts

    # target_return: what evaluation asks for; near the expert's mean (see `python -m
    # spikingmind.experts`), slightly better, so the policy imitates the best demos.
    builtins = [
        EnvSpec("CartPole-v1", obs_dim=4, action_kind="discrete", act_dim=2, target_return=500.0,
                return_scale=500.0, max_episode_steps=500, expert=experts.EXPERTS.get("CartPole-v1"),
                default_mix="expert=0.7,random=0.3", return_gain=4.0),
        EnvSpec("MountainCar-v0", obs_dim=2, action_kind="discrete", act_dim=3, target_return=-100.0,
                return_scale=200.0, max_episode_steps=200, expert=experts.EXPERTS.get("MountainCar-v0"),
                default_mix="expert=0.8,random=0.2", idle_action=1),
        EnvSpec("Acrobot-v1", obs_dim=6, action_kind="discrete", act_dim=3, target_return=-75.0,
                return_scale=500.0, max_episode_steps=500, expert=experts.EXPERTS.get("Acrobot-v1"),
                default_mix="expert=0.8,random=0.2", idle_action=1),
        EnvSpec("Pendulum-v1", obs_dim=3, action_kind="continuous", act_dim=1, target_return=-120.0,
                return_scale=1000.0, max_episode_steps=200, expert=experts.EXPERTS.get("Pendulum-v1"),
                action_low=(-2.0,), action_high=(2.0,), default_mix="expert=0.9,random=0.1", idle_action=(0.0,)),
    ]
    for spec in builtins:
        _BUILTINS[spec.env_id] = spec
        _REGISTRY.setdefault(spec.env_id, spec)
