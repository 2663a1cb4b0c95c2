"""The experts of the built-in environments, the heuristics they replaced, and RL Baselines3
Zoo's best agents for reference."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from spikingmind.experts.acrobot import AcrobotPlanner, acrobot_heuristic
from spikingmind.experts.cartpole import cartpole_expert, cartpole_heuristic
from spikingmind.experts.mountaincar import MountainCarPlanner, mountain_car_heuristic
from spikingmind.experts.pendulum import PendulumPlanner, pendulum_heuristic
from spikingmind.experts.planning import Action

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
