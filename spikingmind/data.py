"""Demonstrations: collect expert/capped/noisy/late/idle/random episodes into a Minari dataset, load them back.

Datasets are written offline into a project folder (MINARI_DATASETS_PATH, default
`runs/datasets`), atomically (built in a temp root, then renamed into place). Their
policy mix, episode seeds and a content hash live in `spikingmind.json` beside Minari's
own files and in the dataset description.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

import spikingmind
from spikingmind.envs import EXPERT_KINDS, EnvSpec, get_env_spec
from spikingmind.errors import ConfigError, DatasetError, RunExistsError
from spikingmind.io import atomic_write_json, read_text
from spikingmind.validation import integer
from spikingmind.seeds import episode_seed

POLICY_KINDS = ("expert", "capped", "noisy", "late", "idle", "random", "heuristic")
#: The noisy kind's per-episode probability of a random action is drawn uniformly from this.
NOISY_EPSILON_RANGE = (0.0, 1.0)
DATASET_FORMAT = 1


def datasets_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH", "runs/datasets")).resolve()


def parse_mix(text: str) -> dict[str, float]:
    """Parse 'expert=0.7,random=0.3' into normalised weights, or ConfigError saying what is wrong."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"--mix: {part!r} is not NAME=WEIGHT (e.g. expert=0.7,random=0.3)")
        if name not in POLICY_KINDS:
            raise ConfigError(f"--mix: unknown policy {name!r}; choose from {', '.join(POLICY_KINDS)}")
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"--mix: weight of {name!r} is not a number: {value!r}") from None
        if not np.isfinite(weight) or weight < 0:
            raise ConfigError(f"--mix: weight of {name!r} must be a non-negative number, got {value!r}")
        mix[name] = mix.get(name, 0.0) + weight
    total = sum(mix.values())
    if total <= 0:
        raise ConfigError(f"--mix: {text!r} has no positive weight")
    return {name: weight / total for name, weight in mix.items()}


@dataclass
class Episodes:
    """Flat step arrays of a dataset plus episode boundaries (step index ranges)."""

    observations: np.ndarray  # (N, obs_dim) float32, the observation each action was taken in
    actions: np.ndarray  # (N,) int64 or (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    starts: np.ndarray  # (E,) first step index of each episode
    lengths: np.ndarray  # (E,)
    metadata: dict

    @property
    def returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards, self.starts) if len(self.starts) else np.zeros(0)

    def returns_to_go(self) -> np.ndarray:
        """(N,) sum of this and all later rewards of the step's episode."""
        rtg = np.empty_like(self.rewards, dtype=np.float64)
        for start, length in zip(self.starts, self.lengths):
            segment = self.rewards[start:start + length].astype(np.float64)
            rtg[start:start + length] = np.cumsum(segment[::-1])[::-1]
        return rtg

    def timesteps(self) -> np.ndarray:
        t = np.arange(len(self.rewards))
        return t - np.repeat(self.starts, self.lengths)

    def episode_of_step(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.starts)), self.lengths)


def _policy_plan(n_episodes: int, mix: dict[str, float], rng: np.random.Generator) -> list[str]:
    counts = {name: int(round(weight * n_episodes)) for name, weight in mix.items()}
    drift = n_episodes - sum(counts.values())
    counts[max(mix, key=mix.get)] += drift
    plan = [name for name in POLICY_KINDS for _ in range(counts.get(name, 0))]
    rng.shuffle(plan)
    return plan


def _random_actions(env, rng: np.random.Generator):
    """Uniform actions from the env's own action space, seeded from `rng`."""
    env.action_space.seed(int(rng.integers(2**31)))
    return lambda obs: env.action_space.sample()


class NoisyExpert:
    """The expert, except that at each step, with probability ``epsilon``, a random action.

    The random action is uniform over the env's action space, discrete or continuous alike:
    epsilon 0 is the expert, epsilon 1 the random kind, and for a continuous action the mean
    action at a state moves from the expert's toward the middle of the range as epsilon grows
    (zero-mean noise added to the expert's action would leave that mean where it is). The
    coin is tossed before the expert is asked, and the expert is asked only on the steps it
    plays: a planner replans only where a random step has moved the state off its plan.
    Stateful through the expert: call ``reset()`` at the start of every episode.
    """

    def __init__(self, expert, epsilon: float, random_action, rng: np.random.Generator):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.expert, self.epsilon, self.random_action, self.rng = expert, float(epsilon), random_action, rng

    def reset(self) -> None:
        from spikingmind.experts import reset_policy

        reset_policy(self.expert)

    def __call__(self, obs: np.ndarray):
        if self.rng.random() < self.epsilon:
            return self.random_action(obs)
        return self.expert(obs)


class LateExpert:
    """Random actions for the first ``expert_from`` steps, then the expert (the capped kind reversed).

    Where the reward comes at the end (reach the goal: MountainCar, Acrobot) an expert that
    gives up scores either its own return or the random one; one that starts late scores
    about its own return minus the steps it lost. The expert is reset at the start of the
    episode and first asked at step ``expert_from``, so a planner plans once, from there.
    """

    def __init__(self, expert, expert_from: int, random_action):
        if expert_from < 0:
            raise ValueError(f"expert_from must be >= 0, got {expert_from}")
        self.expert, self.expert_from, self.random_action = expert, int(expert_from), random_action
        self.steps_taken = 0

    def reset(self) -> None:
        from spikingmind.experts import reset_policy

        self.steps_taken = 0
        reset_policy(self.expert)

    def __call__(self, obs: np.ndarray):
        self.steps_taken += 1
        if self.steps_taken <= self.expert_from:
            return self.random_action(obs)
        return self.expert(obs)


def _make_policy(kind: str, spec: EnvSpec, env, rng: np.random.Generator):
    """The policy of one episode (reset) and what to record about it; randomness from `rng` only."""
    from spikingmind import experts

    if kind == "random":
        return _random_actions(env, rng), {}
    if kind == "heuristic":
        return _heuristic(spec.env_id), {}
    if spec.expert is None:
        raise ConfigError(f"{spec.env_id} has no expert; use --mix random=1 or register one")
    if kind == "expert":
        experts.reset_policy(spec.expert)
        return spec.expert, {}
    if kind == "noisy":
        epsilon = float(rng.uniform(*NOISY_EPSILON_RANGE))
        policy = NoisyExpert(spec.expert, epsilon, _random_actions(env, rng), rng)
        policy.reset()
        return policy, {"epsilon": epsilon}
    if kind in ("late", "idle"):
        expert_from = int(rng.integers(0, spec.max_episode_steps))
        policy = LateExpert(spec.expert, expert_from, _random_actions(env, rng) if kind == "late" else _idle(spec))
        policy.reset()
        return policy, {"expert_from": expert_from}
    give_up_after = int(rng.integers(20, int(0.9 * spec.max_episode_steps)))
    policy = experts.make_capped_expert(spec.expert, give_up_after, _random_actions(env, rng))
    policy.reset()
    return policy, {"give_up_after": give_up_after}


def _idle(spec: EnvSpec):
    """The idle kind's policy before the expert takes over: the env's idle action, held."""
    if spec.idle_action is None:
        raise ConfigError(f"--mix: {spec.env_id} has no idle action (EnvSpec.idle_action); leave `idle` out of the mix")
    idle = spec.idle_action if spec.discrete else np.asarray(spec.idle_action, dtype=np.float32)
    return lambda obs: idle


def _heuristic(env_id: str):
    """The stateless physics heuristic of a built-in env (spikingmind.experts.HEURISTIC_EXPERTS): a
    function of the observation alone, where the planner expert follows a plan made for the episode."""
    from spikingmind.experts import HEURISTIC_EXPERTS

    if env_id not in HEURISTIC_EXPERTS:
        raise ConfigError(f"--mix: {env_id} has no heuristic expert (built-in envs only: "
                          f"{', '.join(HEURISTIC_EXPERTS)}); leave `heuristic` out of the mix")
    return HEURISTIC_EXPERTS[env_id]


def _collect_episode(spec: EnvSpec, env, kind: str, dataset_seed: int, index: int) -> tuple[dict, dict]:
    """Episode `index` of a dataset: its arrays and its metadata record. Everything random in it
    (give-up or take-over step, noise level and coin tosses, random actions) derives from (dataset_seed,
    index) alone, so the data do not depend on which process plays which episode."""
    rng = np.random.default_rng([dataset_seed, index])
    policy, extra = _make_policy(kind, spec, env, rng)
    env_seed = episode_seed(dataset_seed, index)
    episode = rollout_episode(spec, env, policy, env_seed)
    return episode, {"seed": env_seed, "policy": kind, "return": float(episode["rewards"].sum()), **extra}


_worker_episode_context: tuple[EnvSpec, object] | None = None  # (spec, env) of a collect worker process


def _start_collect_worker(env_id: str, spec: EnvSpec | None) -> None:
    """Worker initializer: a built-in env is rebuilt from its id; a user-registered spec comes pickled."""
    global _worker_episode_context
    spec = spec or get_env_spec(env_id)
    _worker_episode_context = (spec, spec.make_env())


def _collect_episode_in_worker(kind: str, dataset_seed: int, index: int) -> tuple[dict, dict]:
    spec, env = _worker_episode_context
    return _collect_episode(spec, env, kind, dataset_seed, index)


def _spec_for_workers(spec: EnvSpec) -> EnvSpec | None:
    """None for a built-in env (workers rebuild it from its id), else the spec if it pickles."""
    import pickle

    from spikingmind.envs import is_builtin

    if is_builtin(spec):
        return None
    try:
        pickle.dumps(spec)
    except Exception as error:  # lambdas, closures, open handles ...
        raise ConfigError(f"{spec.env_id}: its spec cannot be sent to worker processes "
                          f"({type(error).__name__}: {error}); use --workers 1") from None
    return spec


def rollout_episode(spec: EnvSpec, env, policy, seed: int) -> dict[str, np.ndarray]:
    """Run one episode; arrays in Minari's convention (observations has one extra, final entry)."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    while True:
        action = policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminations.append(terminated)
        truncations.append(truncated)
        if terminated or truncated:
            break
    action_array = np.asarray(actions, dtype=np.int64 if spec.discrete else np.float32)
    return {
        "observations": np.asarray(observations, dtype=np.float32),
        "actions": action_array,
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminations": np.asarray(terminations, dtype=bool),
        "truncations": np.asarray(truncations, dtype=bool),
    }


def content_hash(episodes: list[dict[str, np.ndarray]]) -> str:
    """sha256 over every array of every episode, in order: equal data <=> equal hash."""
    digest = hashlib.sha256()
    for episode in episodes:
        for key in ("observations", "actions", "rewards", "terminations", "truncations"):
            array = np.ascontiguousarray(episode[key])
            digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _expert_source(expert) -> dict | None:
    """What a user-supplied expert says it is (`describe()`, e.g. an SB3 file and its sha256); None
    for the env's own expert or one that does not describe itself."""
    return expert.describe() if hasattr(expert, "describe") else None


def default_dataset_id(env_id: str, mix: dict[str, float], n_episodes: int, seed: int, expert=None) -> str:
    """e.g. cartpole-expert70-random30-n100-s0-v0; a user's SB3 expert adds sb3<algorithm><sha256[:8]>."""
    stem = re.sub(r"[^a-z0-9]+", "", env_id.split("-v")[0].lower())
    mix_slug = "-".join(f"{name}{round(100 * weight)}" for name, weight in sorted(mix.items()))
    source = _expert_source(expert)
    tag = f"-sb3{source['algorithm']}{source['sha256'][:8]}" if source else ""
    return f"{stem}{tag}-{mix_slug}-n{n_episodes}-s{seed}-v0"


def _check_dataset_id(dataset_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+-v\d+", dataset_id):
        raise ConfigError(f"dataset id {dataset_id!r} must be letters/digits/-_. and end in -vN (e.g. cartpole-demo-v0)")


def new_dataset_dir(dataset_id: str, root: Path | None = None) -> Path:
    """Folder a new dataset will occupy; refuses an id that already exists."""
    _check_dataset_id(dataset_id)
    final_dir = (root or datasets_root()).resolve() / dataset_id
    if final_dir.exists():
        raise RunExistsError(f"dataset {dataset_id} already exists at {final_dir}; choose another --dataset-id or delete it")
    return final_dir


def existing_dataset_matches(dataset_id: str, root: Path | None, env_id: str, mix: dict[str, float],
                             n_episodes: int, seed: int, expert=None) -> bool:
    """True when `dataset_id` exists and was collected with exactly these settings (and the
    same SB3 file, by sha256, when `expert` is one).

    False when it does not exist; RunExistsError when it exists with other settings.
    """
    folder = (root or datasets_root()).resolve() / dataset_id
    if not folder.exists():
        return False
    try:
        meta = json.loads((folder / "spikingmind.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise DatasetError(f"{folder}: exists but its spikingmind.json is missing or corrupt") from None
    wanted = {"env_id": env_id, "n_episodes": n_episodes, "seed": seed}
    same = all(meta.get(k) == v for k, v in wanted.items()) and meta.get("mix", {}).keys() == mix.keys() and all(
        abs(meta["mix"][k] - v) < 1e-12 for k, v in mix.items())
    source = _expert_source(expert)
    same = same and (meta.get("expert_source") or {}).get("sha256") == (source or {}).get("sha256")
    if not same:
        raise RunExistsError(f"dataset {dataset_id} exists at {folder} with other settings; choose another --dataset-id")
    return True


@contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def check_collect_options(n_episodes: int, seed: int) -> None:
    """`--episodes` an integer >= 1 and `--seed` an integer >= 0 (numpy's generators refuse
    negative seeds)."""
    integer(n_episodes, "--episodes", minimum=1)
    integer(seed, "--seed", minimum=0)


def collect(
    env_id: str,
    n_episodes: int,
    mix: dict[str, float],
    seed: int = 0,
    dataset_id: str | None = None,
    root: Path | None = None,
    progress=None,
    workers: int = 1,
    expert=None,
) -> tuple[str, dict]:
    """Collect `n_episodes` under the policy `mix` and write them as a Minari dataset.

    `expert` (obs -> action, e.g. spikingmind.experts.sb3.SB3Expert) replaces the env's own
    expert in every expert-based kind (expert, capped, noisy, late, idle); the metadata's `expert`
    names it, and `expert_source` records what its `describe()` returns (an expert without
    `describe()` gets the built-in expert's default dataset id: pass `dataset_id`).

    Episodes run in `workers` processes (1: in this one); the data are the same for any
    number. Worker processes import the main module: a script calling this with workers > 1
    needs the usual `if __name__ == "__main__":` guard. A user-registered env reaches the
    workers pickled (its make/expert must be module-level). `progress(done, total)` is
    called as episodes finish.
    Returns (dataset_id, spikingmind metadata). Refuses to overwrite an existing dataset.
    """
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    from spikingmind.experts import policy_name
    from spikingmind.parallel import check_workers, map_in_workers

    spec = get_env_spec(env_id)
    if expert is not None:
        spec = replace(spec, expert=expert)  # sent to the workers pickled
    check_collect_options(n_episodes, seed)
    check_workers(workers)
    dataset_id = dataset_id or default_dataset_id(env_id, mix, n_episodes, seed, expert)
    _check_dataset_id(dataset_id)
    final_dir = new_dataset_dir(dataset_id, root)
    root = final_dir.parent

    plan = _policy_plan(n_episodes, mix, np.random.default_rng(seed))
    if "idle" in plan:
        _idle(spec)  # refused before playing when the env has no idle action
    if spec.expert is None and set(plan) & set(EXPERT_KINDS):
        raise ConfigError(f"{spec.env_id} has no expert; use --mix random=1 or register one")
    if "heuristic" in plan:
        _heuristic(spec.env_id)  # refused before any episode is played
    jobs = [(kind, seed, index) for index, kind in enumerate(plan)]
    env = spec.make_env()
    try:
        if workers == 1:
            played = map_in_workers(lambda *job: _collect_episode(spec, env, *job), jobs, 1, progress=progress)
        else:
            played = map_in_workers(_collect_episode_in_worker, jobs, workers, progress=progress,
                                    initializer=_start_collect_worker, initargs=(env_id, _spec_for_workers(spec)))
    finally:
        env.close()
    episodes = [episode for episode, _ in played]
    records = [record for _, record in played]

    digest = content_hash(episodes)
    source = _expert_source(expert)
    metadata = {
        "format": DATASET_FORMAT,
        "dataset_id": dataset_id,
        "env_id": env_id,
        "mix": mix,
        "seed": seed,
        "n_episodes": n_episodes,
        "n_steps": int(sum(len(e["rewards"]) for e in episodes)),
        "expert": policy_name(spec.expert) if spec.expert is not None else None,
        **({"expert_source": source} if source else {}),
        "content_hash": digest,
        "episodes": records,
    }
    buffers = [
        EpisodeBuffer(id=i, seed=r["seed"], observations=e["observations"], actions=e["actions"],
                      rewards=e["rewards"], terminations=e["terminations"], truncations=e["truncations"])
        for i, (e, r) in enumerate(zip(episodes, records))
    ]
    root.mkdir(parents=True, exist_ok=True)
    import tempfile
    import shutil

    tmp_root = Path(tempfile.mkdtemp(dir=root, prefix=".collect-"))
    try:
        with _minari_root(tmp_root):
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=gym.spec(env_id) if spec.make is None else None,
                eval_env=gym.spec(env_id) if spec.make is None else None,
                action_space=env.action_space,
                observation_space=env.observation_space,
                algorithm_name="spikingmind mix " + ",".join(f"{k}={v:.3g}" for k, v in mix.items()),
                author="spikingmind",
                author_email="spikingmind@users.noreply.github.com",
                code_permalink=f"spikingmind {spikingmind.__version__} (spikingmind collect)",
                description=f"spikingmind demonstrations; content sha256 {digest}",
            )
        atomic_write_json(tmp_root / dataset_id / "spikingmind.json", metadata)
        os.replace(tmp_root / dataset_id, final_dir)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return dataset_id, metadata


def dataset_dir(dataset: str) -> Path:
    """Resolve a dataset id (under the datasets root) or a path to its folder."""
    path = Path(dataset)
    if path.is_dir():
        return path.resolve()
    candidate = datasets_root() / dataset
    if candidate.is_dir():
        return candidate
    raise DatasetError(f"dataset {dataset!r} not found (looked in {datasets_root()}); run `spikingmind collect` first")


def load_episodes(dataset: str, env_id: str | None = None) -> Episodes:
    """Load a collected dataset as flat arrays; checks it against `env_id` when given."""
    import minari

    folder = dataset_dir(dataset)
    meta_path = folder / "spikingmind.json"
    text = read_text(meta_path, DatasetError, f"{meta_path}: missing; this folder is not a spikingmind dataset")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{meta_path}: corrupt JSON ({error.msg} at line {error.lineno})") from None
    if metadata.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{meta_path}: dataset format {metadata.get('format')!r}, expected {DATASET_FORMAT}")
    spec = get_env_spec(env_id or metadata["env_id"])
    try:
        with _minari_root(folder.parent):
            ds = minari.load_dataset(folder.name)
            raw = list(ds.iterate_episodes())
    except Exception as error:  # h5py/arrow raise many types for a damaged file
        raise DatasetError(f"{folder}: cannot read the Minari data ({type(error).__name__}: {error})") from None

    observations, actions, rewards, lengths = [], [], [], []
    for episode in raw:
        obs = np.asarray(episode.observations, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != spec.obs_dim:
            raise DatasetError(
                f"{folder}: observations have shape {obs.shape[1:]} per step but {spec.env_id} has obs_dim {spec.obs_dim}"
            )
        observations.append(obs[:-1])
        actions.append(np.asarray(episode.actions))
        rewards.append(np.asarray(episode.rewards, dtype=np.float32))
        lengths.append(len(episode.rewards))
    lengths_array = np.asarray(lengths, dtype=np.int64)
    episodes = Episodes(
        observations=np.concatenate(observations),
        actions=np.concatenate(actions).astype(np.int64 if spec.discrete else np.float32),
        rewards=np.concatenate(rewards),
        starts=np.concatenate([[0], np.cumsum(lengths_array)[:-1]]).astype(np.int64),
        lengths=lengths_array,
        metadata=metadata,
    )
    if not spec.discrete:
        episodes.actions = episodes.actions.reshape(len(episodes.actions), spec.act_dim)
    if env_id is not None and metadata["env_id"] != env_id:
        raise DatasetError(f"{folder}: dataset was collected on {metadata['env_id']}, not {env_id}")
    return episodes
