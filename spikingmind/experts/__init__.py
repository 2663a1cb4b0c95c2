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

    planning.py      what the planners share (LQR, Jacobians, the sequence planner's loop)
    cartpole.py, mountaincar.py, acrobot.py, pendulum.py
                     each env's dynamics, its planner and the heuristic it replaced
    registry.py      EXPERTS, HEURISTIC_EXPERTS, ZOO_RESULTS
    wrappers.py      policy_name, reset_policy, the capped expert, random_policy, play_episode
    report.py        evaluate_experts and the report's main (``__main__.py`` runs it)
"""

from spikingmind.experts.acrobot import AcrobotPlanner, acrobot_heuristic
from spikingmind.experts.cartpole import cartpole_expert, cartpole_heuristic
from spikingmind.experts.mountaincar import MountainCarPlanner, mountain_car_heuristic
from spikingmind.experts.pendulum import PendulumPlanner, pendulum_heuristic
from spikingmind.experts.planning import Action
from spikingmind.experts.registry import EXPERTS, HEURISTIC_EXPERTS, ZOO_RESULTS
from spikingmind.experts.report import evaluate_experts, main
from spikingmind.experts.wrappers import (CappedExpert, make_capped_expert, play_episode, policy_name,
                                          random_policy, reset_policy, run_episode)

__all__ = ["EXPERTS", "HEURISTIC_EXPERTS", "ZOO_RESULTS", "Action", "AcrobotPlanner", "CappedExpert",
           "MountainCarPlanner", "PendulumPlanner", "acrobot_heuristic", "cartpole_expert", "cartpole_heuristic",
           "evaluate_experts", "main", "make_capped_expert", "mountain_car_heuristic", "pendulum_heuristic",
           "play_episode", "policy_name", "random_policy", "reset_policy", "run_episode"]
