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
is scored on validation seeds. The run folder holds:
    finetune.json          the FinetuneConfig + the parent checkpoint (reproducible from them)
    resume/                weights, optimizer, std, curve: rewritten atomically at each evaluation
    learning_curve.csv     one row per update (greedy_return where evaluated)
    learning_curve.png     sampled and greedy returns against episodes played
    checkpoint/            the fine-tuned policy (best greedy validation return); "done"
Re-running the same config resumes an interrupted run and leaves a finished one alone;
another config in the same folder is refused (force=True starts over).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from spikingmind.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from spikingmind.envs import EnvSpec
from spikingmind.errors import ConfigError, RunExistsError
from spikingmind.io import atomic_dir, atomic_path, atomic_write_json
from spikingmind.model import DecisionTransformer
from spikingmind.rollout import run_episodes
from spikingmind.train import VALIDATION_SEED_BASE, _load_optimizer_tensors, _optimizer_tensors

ALGORITHMS = ("reinforce",)
#: Fine-tuning episodes use env seeds from here: disjoint from dataset seeds (< 1e9),
#: evaluation seeds (1e9 + seed * 1e4 + i) and validation seeds (2e9 + i).
FINETUNE_SEED_BASE = 1_600_000_000


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
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"{source}: unknown finetune keys: {', '.join(sorted(unknown))}")
        try:
            cfg = cls(**values)
        except TypeError as error:
            raise ConfigError(f"{source}: {error}") from None
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "finetune config") -> None:
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

    @property
    def updates(self) -> int:
        return self.episodes // self.batch_episodes

    def to_dict(self) -> dict:
        return asdict(self)


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
        """Decision-token outputs (B, act_dim) -> squashed action mean, as rollout.decode_actions."""
        return self.low + (torch.tanh(outputs) + 1) / 2 * (self.high - self.low)

    def distribution(self, outputs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(outputs), self.log_std.exp().expand_as(outputs))


class SamplingPolicy:
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


class FinetuneRun:
    """Files of a fine-tuning folder (see module docstring)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.config_path = run_dir / "finetune.json"
        self.resume = run_dir / "resume"
        self.final = run_dir / "checkpoint"
        self.csv = run_dir / "learning_curve.csv"
        self.png = run_dir / "learning_curve.png"

    def check(self, record: dict, force: bool) -> str:
        """'fresh', 'resume' or 'finished'; refuses a folder holding another config/parent."""
        if force or not self.config_path.exists():
            return "fresh"
        saved = json.loads(self.config_path.read_text())
        record = json.loads(json.dumps(record))
        if saved != record:
            keys = set(saved.get("config", {})) | set(record["config"])
            changed = sorted(k for k in keys if saved.get("config", {}).get(k) != record["config"].get(k))
            if saved.get("parent") != record["parent"]:
                changed.append("parent checkpoint")
            raise RunExistsError(f"{self.run_dir} holds a fine-tuning run with another config (differs in: "
                                 f"{', '.join(changed)}); use another --out or pass --force to start over")
        if self.final.exists():
            return "finished"
        return "resume" if (self.resume / "state.json").exists() else "fresh"


CURVE_COLUMNS = ("update", "episodes", "env_steps", "sample_return_mean", "sample_return_std", "loss",
                 "action_std", "greedy_return", "elapsed_s")


def write_curve(run: FinetuneRun, curve: list[dict], env_id: str, expert_return: float | None = None) -> None:
    """learning_curve.csv (one row per update, greedy_return empty where not evaluated) and
    learning_curve.png (sampled and greedy returns against episodes played)."""
    with atomic_path(run.csv, suffix=".csv") as tmp:
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
    with atomic_path(run.png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def greedy_return(ckpt: Checkpoint, episodes: int, target_return: float | None) -> float:
    """Mean return of the deterministic policy (argmax / squashed mean) on validation seeds."""
    from spikingmind.rollout import TorchPolicy

    was_training = ckpt.model.training
    ckpt.model.eval()
    try:
        result = run_episodes(TorchPolicy(ckpt), [VALIDATION_SEED_BASE + i for i in range(episodes)], target_return)
    finally:
        if was_training:
            policy_gradient_mode(ckpt.model)
    return float(np.mean(result.returns))


def _parent_record(checkpoint: Path, meta: dict) -> dict:
    return {"path": str(checkpoint.resolve()), "env_id": meta["env"]["env_id"], "model": meta["model"],
            "dataset": meta.get("dataset", {}).get("id"), "dataset_hash": meta.get("dataset", {}).get("content_hash")}


def finetune(
    checkpoint: str | Path,
    run_dir: str | Path,
    cfg: FinetuneConfig,
    force: bool = False,
    on_progress: Callable[[dict], None] | None = None,
) -> tuple[Path, dict]:
    """Fine-tune (or resume) `checkpoint` in `run_dir`; returns (new checkpoint path, metrics)."""
    cfg.validate()
    checkpoint, run_dir = Path(checkpoint), Path(run_dir)
    ckpt = load_checkpoint(checkpoint)
    spec, model = ckpt.spec, ckpt.model
    run = FinetuneRun(run_dir)
    record = {"config": cfg.to_dict(), "parent": _parent_record(checkpoint, ckpt.meta)}
    status = run.check(record, force)
    if status == "finished":
        meta = json.loads((run.final / "checkpoint.json").read_text())
        return run.final, {**meta.get("finetune", {}).get("metrics", {}), "status": "already finished"}
    if force:
        for stale in (run.final, run.resume, run.csv, run.png):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.config_path, record)

    torch.manual_seed(cfg.seed)
    head = None if spec.discrete else GaussianHead(spec, cfg.action_std, cfg.learn_std)
    params = [p for p in model.parameters() if p.requires_grad]
    if head is not None and cfg.learn_std:
        params.append(head.log_std)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    curve: list[dict] = []
    start_update, elapsed_before = 0, 0.0
    best = {"return": -np.inf, "update": -1}
    best_state = None
    if status == "resume":
        saved = json.loads((run.resume / "state.json").read_text())
        model.load_state_dict(load_file(str(run.resume / "model.safetensors")))
        _load_optimizer_tensors(optimizer, load_file(str(run.resume / "optimizer.safetensors")))
        if head is not None:
            head.log_std.data.copy_(torch.tensor(saved["log_std"], dtype=torch.float32))
        start_update, elapsed_before, curve, best = saved["update"], saved["elapsed"], saved["curve"], saved["best"]
        best_state = load_file(str(run.resume / "best.safetensors"))

    def save_resume(update: int, elapsed: float) -> None:
        with atomic_dir(run.resume, overwrite=True) as tmp:
            save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
            save_file(_optimizer_tensors(optimizer), str(tmp / "optimizer.safetensors"))
            save_file(best_state, str(tmp / "best.safetensors"))
            atomic_write_json(tmp / "state.json", {
                "update": update, "elapsed": elapsed, "curve": curve, "best": best,
                "log_std": head.log_std.detach().tolist() if head is not None else None})

    def evaluate_greedy(update: int, entry: dict) -> None:
        nonlocal best, best_state
        entry["greedy_return"] = greedy_return(ckpt, cfg.eval_episodes, cfg.target_return)
        if entry["greedy_return"] >= best["return"]:  # ties keep the later, more trained policy
            best = {"return": entry["greedy_return"], "update": update}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    clock = time.perf_counter()
    if status == "fresh":  # the offline policy's greedy score is the curve's first point
        entry = {"update": 0, "episodes": 0, "env_steps": 0, "sample_return_mean": None, "sample_return_std": None,
                 "loss": None, "action_std": _std_value(head), "greedy_return": None, "elapsed_s": 0.0}
        evaluate_greedy(0, entry)
        entry["elapsed_s"] = elapsed_before + time.perf_counter() - clock
        curve.append(entry)
        save_resume(0, elapsed_before + time.perf_counter() - clock)
        if on_progress:
            on_progress(entry)

    policy_gradient_mode(model)
    for update in range(start_update + 1, cfg.updates + 1):
        rng = np.random.default_rng([cfg.seed, update])  # per-update stream: resuming replays it
        seeds = [FINETUNE_SEED_BASE + cfg.seed * 1_000_000 + (update - 1) * cfg.batch_episodes + i
                 for i in range(cfg.batch_episodes)]
        log = _RewardLog()
        sampler = SamplingPolicy(ckpt, head, rng, env_spec=_recording_spec(spec, log), temperature=cfg.temperature)
        episode_results = run_episodes(sampler, seeds, cfg.target_return, batch=cfg.batch_episodes)
        windows = np.concatenate(sampler.windows)
        sampled = np.concatenate(sampler.sampled)
        episode = np.asarray(log.episode)
        if len(episode) != len(windows):
            raise RuntimeError(f"fine-tuning bookkeeping: {len(windows)} decisions but {len(episode)} env steps")
        rewards = np.asarray(log.reward)
        timestep = np.rint(windows[:, ckpt.layout.decision_token, ckpt.layout.time_channel]
                           * ckpt.norm.max_episode_steps).astype(np.int64)
        rtg = returns_to_go(rewards, episode, cfg.gamma)
        adv = advantages(rtg, episode, timestep, cfg.normalize_advantages)

        chosen = np.arange(len(windows))
        if len(chosen) > cfg.max_decisions_per_update:  # unbiased subsample of the batch's decisions
            chosen = np.sort(rng.choice(len(windows), cfg.max_decisions_per_update, replace=False))
        optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        for first in range(0, len(chosen), cfg.grad_chunk):
            part = chosen[first:first + cfg.grad_chunk]
            outputs = model(torch.from_numpy(windows[part]))[:, ckpt.layout.decision_token]
            log_prob, entropy = _log_prob(outputs, sampled[part], head, cfg.temperature)
            adv_part = torch.as_tensor(adv[part], dtype=log_prob.dtype)
            loss = -(adv_part * log_prob).sum() / len(chosen) - cfg.entropy_weight * entropy.sum() / len(chosen)
            loss.backward()
            loss_total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()

        returns = np.asarray(episode_results.returns)
        entry = {"update": update, "episodes": update * cfg.batch_episodes,
                 "env_steps": (curve[-1]["env_steps"] if curve else 0) + len(windows),
                 "sample_return_mean": float(returns.mean()), "sample_return_std": float(returns.std()),
                 "loss": loss_total, "action_std": _std_value(head), "greedy_return": None, "elapsed_s": None}
        if not np.isfinite(loss_total):
            raise ConfigError(f"fine-tuning diverged at update {update} (loss {loss_total}); lower --lr")
        last = update == cfg.updates
        if update % cfg.eval_every == 0 or last:
            evaluate_greedy(update, entry)
        entry["elapsed_s"] = elapsed_before + time.perf_counter() - clock
        curve.append(entry)
        if entry["greedy_return"] is not None:
            save_resume(update, entry["elapsed_s"])
            write_curve(run, curve, spec.env_id, spec.target_return)
        if on_progress:
            on_progress(entry)

    model.load_state_dict(best_state)
    model.eval()
    write_curve(run, curve, spec.env_id, spec.target_return)
    greedy = [r for r in curve if r["greedy_return"] is not None]
    metrics = {
        "updates": cfg.updates,
        "episodes": cfg.updates * cfg.batch_episodes,
        "env_steps": curve[-1]["env_steps"],
        "seconds": elapsed_before + time.perf_counter() - clock,
        "start_greedy_return": greedy[0]["greedy_return"],
        "final_greedy_return": greedy[-1]["greedy_return"],
        "best_greedy_return": best["return"],
        "best_update": best["update"],
        "final_action_std": _std_value(head),
        "validation_seeds": [VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + cfg.eval_episodes - 1],
        "finetune_seeds": [FINETUNE_SEED_BASE + cfg.seed * 1_000_000,
                           FINETUNE_SEED_BASE + cfg.seed * 1_000_000 + cfg.updates * cfg.batch_episodes - 1],
    }
    meta = dict(ckpt.meta)
    meta["finetune"] = {**record, "metrics": metrics, "learning_curve": run.csv.name}
    save_checkpoint(run.final, Checkpoint(model=model, spec=spec, layout=ckpt.layout, norm=ckpt.norm, meta=meta))
    return run.final, metrics


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
