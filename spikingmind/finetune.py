"""Online fine-tuning of an offline checkpoint with REINFORCE (policy gradient).

The offline Decision Transformer is warm-started and improved by interacting with the
environment. Each update:
  1. plays `batch_episodes` episodes in lockstep (rollout.run_episodes, so the token
     windows are exactly those of evaluation), sampling actions from the policy:
     discrete: the softmax of the decision-token logits (divided by a temperature);
     continuous: a Gaussian around the squashed mean (docs/SEMANTICS.md decode), std a
     learnable per-dimension parameter (or fixed), the sample clipped to the bounds;
  2. recomputes the log-probabilities of the taken actions with gradients, through the
     SNN's surrogate gradients (model in train mode, every BatchNorm in eval mode so that
     it keeps using the offline running statistics and the sampling policy is unchanged);
  3. steps on  -mean(advantage * log pi(a|window))  with advantage = return-to-go minus a
     per-timestep batch-mean baseline, divided by its std (return normalisation).
Every `eval_every` updates the greedy policy (argmax / squashed mean, as at evaluation)
is scored on validation seeds. `finetune` reads as its steps: `Learner.build` (model, head,
optimizer), resume, then per update `play_batch` and `policy_gradient_step`, a greedy
evaluation every `eval_every` updates, `finish`. The run folder (`spikingmind.runs`) holds:
    finetune.json          the FinetuneConfig + the parent checkpoint (reproducible from them)
    resume/                weights, optimizer, std, curve: rewritten atomically at each evaluation
    learning_curve.csv     one row per update (greedy_return where evaluated)
    learning_curve.png     sampled and greedy returns against episodes played
    checkpoint/            the fine-tuned policy (best greedy validation return); "done"
Re-running the same config resumes an interrupted run and leaves a finished one alone;
another config in the same folder is refused (force=True starts over).

Why one file over 500 lines: the REINFORCE loop, its config and its named steps are one
algorithm; the run-folder state machine it shares with train lives in spikingmind/runs.py.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from spikingmind.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from spikingmind.envs import EnvSpec
from spikingmind.errors import ConfigError, DivergedError, check_known_keys
from spikingmind.io import atomic_path
from spikingmind.limits import check_model_memory
from spikingmind.model import DecisionTransformer
from spikingmind.policy import Policy, TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.runs import FINISHED, FRESH, RESUME, RunFolder, changed_keys, guarded_step, snapshot
from spikingmind.seeds import finetune_seeds, validation_seeds
from spikingmind.validation import check_fields

ALGORITHMS = ("reinforce",)


@dataclass(frozen=True)
class FinetuneConfig:
    """Every knob of a fine-tuning run. Saved in finetune.json and in the checkpoint."""

    algo: str = "reinforce"
    episodes: int = 200  # environment episodes played in total (updates = episodes / batch_episodes)
    batch_episodes: int = 8  # episodes per policy-gradient update
    lr: float = 1e-4
    weight_decay: float = 0.0
    gamma: float = 1.0  # discount of the returns-to-go used as REINFORCE targets
    normalize_advantages: bool = True  # divide the baselined returns by their std
    entropy_weight: float = 0.0
    grad_clip: float = 1.0
    max_decisions_per_update: int = 1024  # random subset of a batch's decisions enters the gradient
    grad_chunk: int = 256  # windows per forward/backward chunk (memory)
    temperature: float = 1.0  # discrete: sample from softmax(logits / temperature) (< 1: closer to greedy)
    action_std: float = 0.2  # continuous: initial Gaussian std as a fraction of (high - low) / 2
    learn_std: bool = True
    target_return: float | None = None  # return-to-go asked during fine-tuning (None: the env's)
    eval_every: int = 2  # updates between greedy evaluations
    eval_episodes: int = 10
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict, source: str = "finetune config") -> "FinetuneConfig":
        check_known_keys(values, (f.name for f in fields(cls)), f"{source}: unknown finetune keys: {{keys}}")
        try:
            cfg = cls(**values)
        except TypeError as error:
            raise ConfigError(f"{source}: {error}") from None
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "finetune config") -> None:
        check_fields(self, source)
        if self.algo not in ALGORITHMS:
            raise ConfigError(f"{source}: --algo {self.algo!r} is not supported; choose from {', '.join(ALGORITHMS)}")
        for name in ("episodes", "batch_episodes", "eval_every", "eval_episodes", "max_decisions_per_update", "grad_chunk"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{source}: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.episodes < self.batch_episodes:
            raise ConfigError(f"{source}: episodes ({self.episodes}) must be >= batch_episodes ({self.batch_episodes})")
        if not self.lr > 0:
            raise ConfigError(f"{source}: lr must be positive, got {self.lr!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"{source}: gamma must be in (0, 1], got {self.gamma!r}")
        if not self.temperature > 0:
            raise ConfigError(f"{source}: temperature must be positive, got {self.temperature!r}")
        if not self.action_std > 0:
            raise ConfigError(f"{source}: action_std must be positive, got {self.action_std!r}")
        if not self.grad_clip > 0:
            raise ConfigError(f"{source}: grad_clip must be positive, got {self.grad_clip!r}")
        for name in ("weight_decay", "entropy_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{source}: {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"{source}: seed must be in 0 .. 2**63 - 1, got {self.seed!r}")

    @property
    def updates(self) -> int:
        return self.episodes // self.batch_episodes

    def to_dict(self) -> dict:
        return asdict(self)


def load_finetune_file(path: str | Path) -> dict:
    """A TOML file's [finetune] table (FinetuneConfig keys; e.g. configs/pendulum-finetune.toml),
    checked against FinetuneConfig's fields; the only table such a file may hold."""
    from spikingmind.io import read_toml_tables

    table = read_toml_tables(path, ("finetune",)).get("finetune", {})
    FinetuneConfig.from_dict(table, source=f"{path}: [finetune]")  # names the file and the key
    return dict(table)


# ---------------------------------------------------------------------------- policy pieces


def policy_gradient_mode(model: DecisionTransformer) -> DecisionTransformer:
    """Train mode (surrogate-gradient graph, differentiable causal mix) with every BatchNorm
    in eval mode: normalisation keeps the offline running statistics, so the network with
    gradients computes the same function as the one that sampled the actions."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


class GaussianHead(torch.nn.Module):
    """Continuous actions: N(squashed mean, std), std = exp(log_std) in action units, per dimension."""

    def __init__(self, spec: EnvSpec, init_fraction: float, learnable: bool):
        super().__init__()
        self.register_buffer("low", torch.tensor(spec.action_low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(spec.action_high, dtype=torch.float32))
        log_std = torch.log(init_fraction * (self.high - self.low) / 2)
        self.log_std = torch.nn.Parameter(log_std, requires_grad=learnable)

    def mean(self, outputs: torch.Tensor) -> torch.Tensor:
        """Decision-token outputs (B, act_dim) -> squashed action mean, as policy.decode_actions."""
        return self.low + (torch.tanh(outputs) + 1) / 2 * (self.high - self.low)

    def distribution(self, outputs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(outputs), self.log_std.exp().expand_as(outputs))


class SamplingPolicy(Policy):
    """The checkpoint's model as a stochastic policy for run_episodes; remembers every window
    and the action sampled for it, in the order run_episodes steps the envs."""

    def __init__(self, ckpt: Checkpoint, head: GaussianHead | None, rng: np.random.Generator,
                 env_spec: EnvSpec | None = None, temperature: float = 1.0):
        self.model, self.layout, self.norm = ckpt.model, ckpt.layout, ckpt.norm
        self.spec = env_spec or ckpt.spec  # run_episodes makes its envs from this spec
        self.head, self.rng, self.temperature = head, rng, temperature
        self.windows: list[np.ndarray] = []
        self.sampled: list[np.ndarray] = []  # pre-clipping samples (continuous) or action ids

    def act(self, windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            outputs = self.model(torch.as_tensor(windows))[:, self.layout.decision_token].double()
        if self.spec.discrete:
            probs = torch.softmax(outputs / self.temperature, dim=-1).numpy()
            cumulative = probs.cumsum(axis=-1)
            draws = self.rng.random((len(probs), 1)) * cumulative[:, -1:]
            actions = np.minimum((cumulative < draws).sum(axis=-1), probs.shape[-1] - 1)
            sampled, env_actions = actions, actions
        else:
            with torch.inference_mode():
                mean = self.head.mean(outputs.float()).double().numpy()
                std = self.head.log_std.exp().double().numpy()
            sampled = mean + std * self.rng.standard_normal(mean.shape)
            env_actions = np.clip(sampled, self.spec.action_low, self.spec.action_high).astype(np.float32)
        self.windows.append(np.asarray(windows, dtype=np.float32))
        self.sampled.append(np.asarray(sampled))
        return env_actions


class _RewardLog:
    """Every env.step of a batch, in call order: (episode index, reward)."""

    def __init__(self) -> None:
        self.episode: list[int] = []
        self.reward: list[float] = []


def _recording_spec(spec: EnvSpec, log: _RewardLog) -> EnvSpec:
    """The same env spec whose envs write each step's reward into `log` (episode = creation order)."""
    import gymnasium as gym

    counter = iter(range(1 << 30))

    class RecordReward(gym.Wrapper):
        def __init__(self, env):
            super().__init__(env)
            self.index = next(counter)

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            log.episode.append(self.index)
            log.reward.append(float(reward))
            return obs, reward, terminated, truncated, info

    return dataclasses.replace(spec, make=lambda **kwargs: RecordReward(spec.make_env(**kwargs)))


def returns_to_go(rewards: np.ndarray, episode: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted sum of each step's reward and its episode's later rewards. (N,) -> (N,)"""
    out = np.zeros(len(rewards), dtype=np.float64)
    for e in np.unique(episode):
        idx = np.flatnonzero(episode == e)
        running = 0.0
        for i in idx[::-1]:
            running = rewards[i] + gamma * running
            out[i] = running
    return out


def advantages(rtg: np.ndarray, episode: np.ndarray, timestep: np.ndarray, normalize: bool) -> np.ndarray:
    """REINFORCE targets: return-to-go minus the batch mean at the same timestep (an episode
    that already ended counts with 0), divided by the std over the batch when `normalize`."""
    n_episodes = len(np.unique(episode))
    baseline = np.zeros(int(timestep.max()) + 1)
    np.add.at(baseline, timestep, rtg)
    baseline /= n_episodes
    adv = rtg - baseline[timestep]
    if normalize:
        adv = adv / (adv.std() + 1e-8)
    return adv


# ---------------------------------------------------------------------------- the run


CURVE_COLUMNS = ("update", "episodes", "env_steps", "sample_return_mean", "sample_return_std", "loss",
                 "action_std", "greedy_return", "elapsed_s")


def run_folder(run_dir: str | Path) -> RunFolder:
    """The fine-tuning run folder (module docstring): finetune.json, resume/, checkpoint/, curves."""
    return RunFolder(run_dir, "finetune.json", kind="a fine-tuning run",
                     outputs=("learning_curve.csv", "learning_curve.png"),
                     record_of=lambda meta: {k: (meta.get("finetune") or {}).get(k) for k in ("config", "parent")})


def _changed(saved: dict, record: dict) -> list[str]:
    """What differs between two {config, parent} records: config keys, and the parent checkpoint."""
    changed = changed_keys(saved.get("config", {}), record["config"])
    if saved.get("parent") != record["parent"]:
        changed.append("parent checkpoint")
    return changed


def write_curve(run: RunFolder, curve: list[dict], env_id: str, expert_return: float | None = None) -> None:
    """learning_curve.csv (one row per update, greedy_return empty where not evaluated) and
    learning_curve.png (sampled and greedy returns against episodes played)."""
    csv_path, png_path = run.outputs
    with atomic_path(csv_path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
            writer.writeheader()
            for row in curve:
                writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CURVE_COLUMNS})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    sampled = [r for r in curve if r.get("sample_return_mean") is not None]
    if sampled:
        ax.plot([r["episodes"] for r in sampled], [r["sample_return_mean"] for r in sampled],
                color="tab:blue", alpha=0.6, label="sampled policy (batch mean)")
    greedy = [r for r in curve if r.get("greedy_return") is not None]
    ax.plot([r["episodes"] for r in greedy], [r["greedy_return"] for r in greedy], "o-", color="tab:red",
            label="greedy policy (validation seeds)")
    if expert_return is not None:
        ax.axhline(expert_return, color="gray", linestyle="--", label="target return")
    ax.set_xlabel("fine-tuning episodes")
    ax.set_ylabel("episode return")
    ax.set_title(f"{env_id}: REINFORCE fine-tuning")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def greedy_return(ckpt: Checkpoint, episodes: int, target_return: float | None) -> float:
    """Mean return of the deterministic policy (argmax / squashed mean) on validation seeds."""
    was_training = ckpt.model.training
    ckpt.model.eval()
    try:
        result = run_episodes(TorchPolicy(ckpt), validation_seeds(episodes), target_return)
    finally:
        if was_training:
            policy_gradient_mode(ckpt.model)
    return float(np.mean(result.returns))


def _parent_record(checkpoint: Path, meta: dict) -> dict:
    return {"path": str(checkpoint.resolve()), "env_id": meta["env"]["env_id"], "model": meta["model"],
            "dataset": meta.get("dataset", {}).get("id"), "dataset_hash": meta.get("dataset", {}).get("content_hash")}


@dataclass
class Learner:
    """What is being fine-tuned: the checkpoint's model, the Gaussian head of continuous actions
    (None for discrete ones), the trained parameters and their optimizer."""

    ckpt: Checkpoint
    head: GaussianHead | None
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer

    @classmethod
    def build(cls, ckpt: Checkpoint, cfg: FinetuneConfig) -> "Learner":
        torch.manual_seed(cfg.seed)
        head = None if ckpt.spec.discrete else GaussianHead(ckpt.spec, cfg.action_std, cfg.learn_std)
        params = [p for p in ckpt.model.parameters() if p.requires_grad]
        if head is not None and cfg.learn_std:
            params.append(head.log_std)
        return cls(ckpt, head, params, torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay))


@dataclass
class Progress:
    """Where a fine-tuning run stands (what resume/state.json holds) and the best weights so far."""

    update: int = 0
    elapsed_before: float = 0.0  # seconds of earlier, interrupted processes
    curve: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"return": -np.inf, "update": -1})
    best_state: dict | None = None

    @classmethod
    def resume(cls, run: RunFolder, learner: Learner) -> "Progress":
        saved, best_state = run.load_resume(learner.ckpt.model, learner.optimizer)
        if learner.head is not None:
            learner.head.log_std.data.copy_(torch.tensor(saved["log_std"], dtype=torch.float32))
        return cls(saved["update"], saved["elapsed"], saved["curve"], saved["best"], best_state)

    def save(self, run: RunFolder, learner: Learner, update: int, elapsed: float) -> None:
        head = learner.head
        run.save_resume(learner.ckpt.model, learner.optimizer, self.best_state, {
            "update": update, "elapsed": elapsed, "curve": self.curve, "best": self.best,
            "log_std": head.log_std.detach().tolist() if head is not None else None})

    def evaluate_greedy(self, learner: Learner, cfg: FinetuneConfig, update: int, entry: dict) -> None:
        """The greedy validation return into `entry`; ties keep the later, more trained policy."""
        entry["greedy_return"] = greedy_return(learner.ckpt, cfg.eval_episodes, cfg.target_return)
        if entry["greedy_return"] >= self.best["return"]:
            self.best = {"return": entry["greedy_return"], "update": update}
            self.best_state = snapshot(learner.ckpt.model)


@dataclass
class Batch:
    """One update's episodes: every decision's window and sampled action, in env-step order."""

    windows: np.ndarray  # (N, L, F)
    sampled: np.ndarray  # (N,) action ids or (N, act_dim) pre-clipping samples
    episode: np.ndarray  # (N,) episode index of each decision
    rewards: np.ndarray  # (N,)
    returns: np.ndarray  # (batch_episodes,) episode returns


def play_batch(learner: Learner, cfg: FinetuneConfig, update: int, rng: np.random.Generator) -> Batch:
    """Play update `update`'s episodes (its own fine-tuning seeds) with actions sampled from the policy."""
    ckpt = learner.ckpt
    seeds = finetune_seeds(cfg.seed, (update - 1) * cfg.batch_episodes, cfg.batch_episodes)
    log = _RewardLog()
    sampler = SamplingPolicy(ckpt, learner.head, rng, env_spec=_recording_spec(ckpt.spec, log),
                             temperature=cfg.temperature)
    episode_results = run_episodes(sampler, seeds, cfg.target_return, batch=cfg.batch_episodes)
    windows = np.concatenate(sampler.windows)
    episode = np.asarray(log.episode)
    if len(episode) != len(windows):
        raise RuntimeError(f"fine-tuning bookkeeping: {len(windows)} decisions but {len(episode)} env steps")
    return Batch(windows, np.concatenate(sampler.sampled), episode, np.asarray(log.reward),
                 np.asarray(episode_results.returns))


def policy_gradient_step(learner: Learner, cfg: FinetuneConfig, batch: Batch, rng: np.random.Generator) -> float:
    """One REINFORCE step on the batch (an unbiased subsample of its decisions); returns the loss."""
    ckpt, model = learner.ckpt, learner.ckpt.model
    windows = batch.windows
    timestep = np.rint(windows[:, ckpt.layout.decision_token, ckpt.layout.time_channel]
                       * ckpt.norm.max_episode_steps).astype(np.int64)
    rtg = returns_to_go(batch.rewards, batch.episode, cfg.gamma)
    adv = advantages(rtg, batch.episode, timestep, cfg.normalize_advantages)

    chosen = np.arange(len(windows))
    if len(chosen) > cfg.max_decisions_per_update:  # unbiased subsample of the batch's decisions
        chosen = np.sort(rng.choice(len(windows), cfg.max_decisions_per_update, replace=False))
    learner.optimizer.zero_grad(set_to_none=True)
    loss_total = 0.0
    for first in range(0, len(chosen), cfg.grad_chunk):
        part = chosen[first:first + cfg.grad_chunk]
        outputs = model(torch.from_numpy(windows[part]))[:, ckpt.layout.decision_token]
        log_prob, entropy = _log_prob(outputs, batch.sampled[part], learner.head, cfg.temperature)
        adv_part = torch.as_tensor(adv[part], dtype=log_prob.dtype)
        loss = -(adv_part * log_prob).sum() / len(chosen) - cfg.entropy_weight * entropy.sum() / len(chosen)
        loss.backward()
        loss_total += float(loss.detach())
    torch.nn.utils.clip_grad_norm_(learner.params, cfg.grad_clip)
    guarded_step(learner.optimizer, model)
    return loss_total


def finish(run: RunFolder, learner: Learner, cfg: FinetuneConfig, progress: Progress, record: dict,
           seconds: float) -> tuple[Path, dict]:
    """The best weights into checkpoint/ with the run's metrics and learning curve."""
    ckpt, curve = learner.ckpt, progress.curve
    ckpt.model.load_state_dict(progress.best_state)
    ckpt.model.eval()
    write_curve(run, curve, ckpt.spec.env_id, ckpt.spec.target_return)
    greedy = [r for r in curve if r["greedy_return"] is not None]
    validation = validation_seeds(cfg.eval_episodes)
    played = finetune_seeds(cfg.seed, 0, cfg.updates * cfg.batch_episodes)
    metrics = {
        "updates": cfg.updates,
        "episodes": cfg.updates * cfg.batch_episodes,
        "env_steps": curve[-1]["env_steps"],
        "seconds": seconds,
        "start_greedy_return": greedy[0]["greedy_return"],
        "final_greedy_return": greedy[-1]["greedy_return"],
        "best_greedy_return": progress.best["return"],
        "best_update": progress.best["update"],
        "final_action_std": _std_value(learner.head),
        "validation_seeds": [validation[0], validation[-1]],
        "finetune_seeds": [played[0], played[-1]],
    }
    meta = dict(ckpt.meta)
    meta["finetune"] = {**record, "metrics": metrics, "learning_curve": run.outputs[0].name}
    save_checkpoint(run.final, Checkpoint(model=ckpt.model, spec=ckpt.spec, layout=ckpt.layout, norm=ckpt.norm,
                                          meta=meta), overwrite=True)  # a --force run replaces the previous one only now
    return run.final, metrics


def finetune(
    checkpoint: str | Path,
    run_dir: str | Path,
    cfg: FinetuneConfig,
    force: bool = False,
    on_progress: Callable[[dict], None] | None = None,
) -> tuple[Path, dict]:
    """Fine-tune (or resume) `checkpoint` in `run_dir`; returns (new checkpoint path, metrics)."""
    cfg.validate()
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    check_model_memory(ckpt.config, cfg.grad_chunk, True, f"{checkpoint} fine-tuned with grad_chunk {cfg.grad_chunk}")
    run = run_folder(run_dir)
    run.refuse_inputs({"checkpoint": checkpoint})
    record = {"config": cfg.to_dict(), "parent": _parent_record(checkpoint, ckpt.meta)}
    status = run.status(record, force, _changed)
    if status == FINISHED:
        return run.final, {**run.finished_meta().get("finetune", {}).get("metrics", {}), "status": "already finished"}
    run.start(record, force)
    learner = Learner.build(ckpt, cfg)
    progress = Progress.resume(run, learner) if status == RESUME else Progress()
    clock = time.perf_counter()

    def elapsed() -> float:
        return progress.elapsed_before + time.perf_counter() - clock

    if status == FRESH:  # the offline policy's greedy score is the curve's first point
        entry = {"update": 0, "episodes": 0, "env_steps": 0, "sample_return_mean": None, "sample_return_std": None,
                 "loss": None, "action_std": _std_value(learner.head), "greedy_return": None, "elapsed_s": 0.0}
        progress.evaluate_greedy(learner, cfg, 0, entry)
        entry["elapsed_s"] = elapsed()
        progress.curve.append(entry)
        progress.save(run, learner, 0, elapsed())
        if on_progress:
            on_progress(entry)

    policy_gradient_mode(ckpt.model)
    for update in range(progress.update + 1, cfg.updates + 1):
        rng = np.random.default_rng([cfg.seed, update])  # per-update stream: resuming replays it
        batch = play_batch(learner, cfg, update, rng)
        try:
            loss = policy_gradient_step(learner, cfg, batch, rng)
            if not np.isfinite(loss):
                raise DivergedError(f"the loss is {loss}")
        except DivergedError as error:
            raise DivergedError(f"fine-tuning diverged at update {update}: {error}; nothing of this update was saved "
                                "(resume/ keeps the last good state); lower --lr") from None
        curve = progress.curve
        entry = {"update": update, "episodes": update * cfg.batch_episodes,
                 "env_steps": (curve[-1]["env_steps"] if curve else 0) + len(batch.windows),
                 "sample_return_mean": float(batch.returns.mean()), "sample_return_std": float(batch.returns.std()),
                 "loss": loss, "action_std": _std_value(learner.head), "greedy_return": None, "elapsed_s": None}
        if update % cfg.eval_every == 0 or update == cfg.updates:
            progress.evaluate_greedy(learner, cfg, update, entry)
        entry["elapsed_s"] = elapsed()
        curve.append(entry)
        if entry["greedy_return"] is not None:
            progress.save(run, learner, update, entry["elapsed_s"])
            write_curve(run, curve, ckpt.spec.env_id, ckpt.spec.target_return)
        if on_progress:
            on_progress(entry)
    return finish(run, learner, cfg, progress, record, elapsed())


def _std_value(head: GaussianHead | None) -> float | None:
    return None if head is None else float(head.log_std.detach().exp().mean())


def _log_prob(outputs: torch.Tensor, sampled: np.ndarray, head: GaussianHead | None, temperature: float = 1.0):
    """log pi(sampled | window) and the policy entropy per decision, both (B,)."""
    if head is None:
        log_probs = torch.log_softmax(outputs / temperature, dim=-1)
        actions = torch.as_tensor(sampled, dtype=torch.int64)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_probs.gather(1, actions[:, None])[:, 0], entropy
    dist = head.distribution(outputs)
    actions = torch.as_tensor(sampled, dtype=outputs.dtype)
    return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)
