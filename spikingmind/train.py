"""Offline training with the Decision Transformer loss, resumable and deterministic.

A run lives in one folder (`spikingmind.runs`):
    run.json        the full TrainConfig (a run is reproducible from it + its seed)
    resume/         weights + optimizer moments + history, rewritten atomically at each evaluation
    checkpoint/     the finished policy (see spikingmind.checkpoint); its presence means "done"
Re-running the same config resumes an interrupted run and leaves a finished one alone;
a different config in the same folder is refused. `train` reads as its steps: `prepare`
(data, model, optimizer), resume, `train_step` per step, `evaluate_and_save` every
`eval_every` steps, `finish`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spikingmind.checkpoint import Checkpoint, checkpoint_meta, save_checkpoint
from spikingmind.data import Episodes, dataset_dir, load_episodes
from spikingmind.energy.profiles import HardwareProfile, load_profile
from spikingmind.energy.regularizer import SpikeEnergy, layer_spike_rates, spike_energy, spike_energy_table
from spikingmind.envs import EnvSpec, get_env_spec
from spikingmind.errors import ConfigError, DivergedError, RunExistsError, check_known_keys
from spikingmind.io import atomic_write_text, json_text, read_toml_tables
from spikingmind.limits import check_model_memory
from spikingmind.model import DecisionTransformer, ModelConfig
from spikingmind.policy import TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.runs import FINISHED, RESUME, RunFolder, guarded_step, snapshot
from spikingmind.seeds import validation_seeds
from spikingmind.tokens import STATE, Normalization, TokenLayout, step_tokens, window_indices, windows
from spikingmind.validation import check_fields


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of an offline run. Saved in run.json and in the checkpoint."""

    env_id: str = "CartPole-v1"
    dataset: str = ""  # Minari dataset id (under MINARI_DATASETS_PATH) or folder
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 1.0
    # Energy-aware training (spiking DT only; docs in spikingmind.energy.regularizer):
    spike_rate_weight: float = 0.0  # penalty on each layer's spike rate above spike_rate_target (mean over layers)
    spike_rate_target: float = 0.05
    energy_weight: float = 0.0  # penalty on the spike-driven energy, as a share of its all-neurons-fire maximum
    energy_profile: str = "loihi"  # hardware profile (name or .toml) that prices the spikes for energy_weight
    eval_every: int = 50
    eval_episodes: int = 5
    stop_at_return: float | None = None  # stop early once validation mean return reaches it
    return_gain: float | None = None  # gain of the return-to-go feature; None: the env's (EnvSpec.return_gain)
    # Continuous actions: regress the squashed action ("squashed") or the model's raw output
    # against the un-squashed target, atanh of the action scaled to (-1, 1) ("pre_squash").
    # Pendulum's spiking DT: pre_squash -179 +- 92 against squashed -299 +- 136 (20 unseen seeds).
    continuous_loss: str = "pre_squash"

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """A validated TrainConfig; every failure is one ConfigError naming `source` and the field."""
        values = dict(values)
        check_known_keys(values, (f.name for f in fields(cls)), f"{source}: unknown train keys: {{keys}}")
        if "model" in values and not isinstance(values["model"], ModelConfig):
            values["model"] = ModelConfig.from_dict(values["model"], source)
        try:
            cfg = cls(**values)
        except TypeError as error:
            raise ConfigError(f"{source}: {error}") from None
        check_fields(cfg, source, "train.")
        for name in ("steps", "batch_size", "eval_every", "eval_episodes"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{source}: train.{name} must be >= 1, got {getattr(cfg, name)!r}")
        if not 0 <= cfg.seed < 2**63:
            raise ConfigError(f"{source}: train.seed must be in 0 .. 2**63 - 1, got {cfg.seed!r}")
        if cfg.warmup_steps < 0:
            raise ConfigError(f"{source}: train.warmup_steps must be >= 0, got {cfg.warmup_steps!r}")
        for name in ("lr", "grad_clip"):
            if not getattr(cfg, name) > 0:
                raise ConfigError(f"{source}: train.{name} must be positive, got {getattr(cfg, name)!r}")
        if cfg.continuous_loss not in CONTINUOUS_LOSSES:
            raise ConfigError(f"{source}: train.continuous_loss must be one of {', '.join(CONTINUOUS_LOSSES)}, "
                              f"got {cfg.continuous_loss!r}")
        if cfg.return_gain is not None and not cfg.return_gain > 0:
            raise ConfigError(f"{source}: train.return_gain must be positive, got {cfg.return_gain!r}")
        for name in ("spike_rate_weight", "energy_weight", "weight_decay"):
            if not getattr(cfg, name) >= 0:
                raise ConfigError(f"{source}: train.{name} must be >= 0, got {getattr(cfg, name)!r}")
        if not 0 <= cfg.spike_rate_target <= 1:
            raise ConfigError(f"{source}: train.spike_rate_target must be in [0, 1], got {cfg.spike_rate_target!r}")
        if cfg.energy_weight > 0:
            from spikingmind.energy.profiles import load_profile
            from spikingmind.errors import ProfileError

            try:
                load_profile(cfg.energy_profile)
            except ProfileError as error:
                raise ConfigError(f"{source}: train.energy_profile: {error}") from None
        check_model_memory(cfg.model, cfg.batch_size, True, source)
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


DATA_KEYS = ("episodes", "mix")  # a config's [data] table: what `make results` collects for it


def _read_config(path: str | Path) -> tuple[Path, dict]:
    path = Path(path)
    return path, read_toml_tables(path, ("train", "model", "data"))


def _data_table(path: Path, table: dict) -> dict:
    """The [data] table, validated: `episodes` an integer >= 1, `mix` a policy mix string."""
    from spikingmind.data import parse_mix

    check_known_keys(table, DATA_KEYS, f"{path}: unknown [data] keys {{keys}} (expected {', '.join(DATA_KEYS)})")
    if "episodes" in table:
        episodes = table["episodes"]
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ConfigError(f"{path}: data.episodes must be an integer >= 1, got {episodes!r}")
    if "mix" in table:
        if not isinstance(table["mix"], str):
            raise ConfigError(f"{path}: data.mix must be a string like \"expert=0.7,random=0.3\", got {table['mix']!r}")
        try:
            parse_mix(table["mix"])
        except ConfigError as error:
            raise ConfigError(f"{path}: data.mix: {str(error).removeprefix('--mix: ')}") from None
    return dict(table)


def load_config_file(path: str | Path) -> dict:
    """Read a TOML config with optional [train] and [model] tables -> TrainConfig kwargs.

    A [data] table (`episodes = 150`, `mix = "..."`: the dataset `make results` collects) is
    validated (`load_data_config`) and not part of the training config."""
    path, raw = _read_config(path)
    _data_table(path, raw.get("data", {}))
    values = dict(raw.get("train", {}))
    if "model" in raw:
        values["model"] = dict(raw["model"])
    return values


def load_data_config(path: str | Path) -> dict:
    """A config file's [data] table, validated ({} without one): keys among DATA_KEYS."""
    path, raw = _read_config(path)
    return _data_table(path, raw.get("data", {}))


# ---------------------------------------------------------------------------- data -> batches


@dataclass
class TrainingData:
    """Token rows of every dataset step plus what is needed to cut windows and targets."""

    rows: np.ndarray  # (N, 3, F)
    actions: np.ndarray  # (N,) or (N, act_dim)
    episode_start: np.ndarray  # (N,) first step index of each step's episode
    layout: TokenLayout
    norm: Normalization

    @classmethod
    def from_episodes(cls, episodes: Episodes, layout: TokenLayout, return_scale: float, max_steps: int,
                      return_gain: float = 1.0) -> "TrainingData":
        norm = Normalization.from_observations(episodes.observations, return_scale, max_steps, return_gain)
        rows = step_tokens(layout, norm, episodes.observations, episodes.actions,
                           episodes.returns_to_go(), episodes.timesteps())
        return cls(rows, episodes.actions, np.repeat(episodes.starts, episodes.lengths), layout, norm)

    def batch(self, rng: np.random.Generator, size: int):
        """Windows ending at uniformly sampled steps of the whole dataset."""
        ends = rng.integers(0, len(self.rows), size=size)
        index, valid = window_indices(ends, self.episode_start[ends], self.layout.context_length)
        return windows(self.rows, index, valid), self.actions[index], valid


CONTINUOUS_LOSSES = ("squashed", "pre_squash")
PRE_SQUASH_LIMIT = 0.995  # |scaled action| is clipped to it before atanh: a bound action -> +-2.99


def dt_loss(outputs: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor, layout: TokenLayout, spec,
            continuous_loss: str) -> torch.Tensor:
    """Decision Transformer loss at the state tokens of the window's valid steps.

    Continuous actions (the host decodes low + (tanh(out) + 1) / 2 * (high - low)): "squashed"
    is the MSE of the decoded action, scaled to (-1, 1); "pre_squash" the MSE of the raw output
    against atanh of the scaled target. The squashed loss's gradient vanishes towards the
    bounds, so bang-bang targets end up short of them (measured on Pendulum's swing-up).
    """
    state_out = outputs[:, STATE::3]  # (B, K, n_out): outputs at state tokens
    if spec.discrete:
        loss = F.cross_entropy(state_out.reshape(-1, state_out.shape[-1]), actions.reshape(-1), reduction="none")
    else:
        low = torch.as_tensor(spec.action_low, dtype=outputs.dtype)
        high = torch.as_tensor(spec.action_high, dtype=outputs.dtype)
        if continuous_loss == "pre_squash":
            scaled = (2 * (actions - low) / (high - low) - 1).clamp(-PRE_SQUASH_LIMIT, PRE_SQUASH_LIMIT)
            loss = ((state_out - torch.atanh(scaled)) ** 2).mean(-1).reshape(-1)
        else:
            predicted = low + (torch.tanh(state_out) + 1) / 2 * (high - low)
            loss = ((predicted - actions) ** 2 / ((high - low) / 2) ** 2).mean(-1).reshape(-1)
    mask = valid.reshape(-1).to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------------------- the run


def activity_penalty(record: dict, energy_table, cfg: TrainConfig) -> tuple[torch.Tensor | None, dict]:
    """The energy-aware terms of the loss (None when both weights are 0) and what is logged.

    `spike_rate_weight` x the mean over layers of each layer's spike rate above
    `spike_rate_target`; `energy_weight` x the spike-driven energy of the window
    (`spikingmind.energy.regularizer`) as a share of its all-neurons-fire maximum. Logged:
    the mean spike rate and that energy in uJ per window (profile `energy_profile`).
    """
    rates = layer_spike_rates(record)
    energy = spike_energy(record, energy_table)
    penalty = None
    if cfg.spike_rate_weight > 0:
        penalty = cfg.spike_rate_weight * F.relu(rates - cfg.spike_rate_target).mean()
    if cfg.energy_weight > 0:
        term = cfg.energy_weight * energy / energy_table.max_pj
        penalty = term if penalty is None else penalty + term
    spikes = sum(float(values.detach().sum()) for values in record.values())
    slots = sum(values.numel() for values in record.values())
    return penalty, {"spike_rate": spikes / slots, "energy_uj": float(energy.detach()) / 1e6}


METRICS = "metrics.jsonl"  # in the run folder: one line per evaluation step


def write_metrics(path: Path, history: list[dict]) -> None:
    """metrics.jsonl: one JSON line per evaluation step of the run so far (rewritten atomically)."""
    atomic_write_text(path, "".join(json_text(entry, indent=None) + "\n" for entry in history))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 10% of lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))


def validate(model: DecisionTransformer, spec, layout, norm, episodes: int) -> float:
    """Mean return of the model (eval mode) on the validation seeds; leaves it in train mode."""
    model.eval()
    policy = TorchPolicy(Checkpoint(model=model, spec=spec, layout=layout, norm=norm))
    result = run_episodes(policy, validation_seeds(episodes))
    model.train()
    return float(np.mean(result.returns))


def _reward_threshold(env_id: str) -> float | None:
    """gymnasium's 'solved' return for the env (CartPole-v1: 475), if it declares one."""
    import gymnasium as gym

    try:
        return gym.spec(env_id).reward_threshold
    except Exception:  # custom envs registered only with spikingmind
        return None


@dataclass
class Setup:
    """What a run trains on and with: the env, its dataset as token rows, the model and optimizer."""

    spec: EnvSpec
    episodes: Episodes
    layout: TokenLayout
    data: TrainingData
    model: DecisionTransformer
    optimizer: torch.optim.Optimizer
    energy_profile: HardwareProfile | None = None  # prices the spikes the energy term counts (spiking DT)
    energy_table: SpikeEnergy | None = None

    def refresh_energy_table(self) -> None:
        """Per-spike energies follow the weights (a weight or BatchNorm gain may reach 0)."""
        if self.energy_profile is not None:
            self.energy_table = spike_energy_table(self.model, self.energy_profile)


def prepare(cfg: TrainConfig) -> Setup:
    """Load and tokenise the dataset, then build the model (seeded) and its optimizer."""
    spec = get_env_spec(cfg.env_id)
    episodes = load_episodes(cfg.dataset, cfg.env_id)
    if spec.discrete and (episodes.actions.min() < 0 or episodes.actions.max() >= spec.act_dim):
        raise ConfigError(f"dataset {cfg.dataset}: actions outside 0..{spec.act_dim - 1} for {cfg.env_id}")
    layout = TokenLayout(spec.obs_dim, spec.act_dim, spec.discrete, cfg.model.context_length)
    gain = spec.return_gain if cfg.return_gain is None else cfg.return_gain
    data = TrainingData.from_episodes(episodes, layout, spec.return_scale, spec.max_episode_steps, gain)
    torch.manual_seed(cfg.seed)
    model = DecisionTransformer(cfg.model, layout.n_features, spec.act_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    setup = Setup(spec, episodes, layout, data, model, optimizer,
                  energy_profile=load_profile(cfg.energy_profile) if model.spiking else None)
    setup.refresh_energy_table()
    return setup


@dataclass
class Progress:
    """Where a run stands (what resume/state.json holds) and the best weights so far."""

    step: int = 0
    elapsed_before: float = 0.0  # seconds trained by earlier, interrupted processes
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"return": -np.inf, "step": -1})
    best_state: dict | None = None
    loss: float = float("nan")
    time_to_stop: float | None = None

    @classmethod
    def resume(cls, run: RunFolder, setup: Setup) -> "Progress":
        state, best_state = run.load_resume(setup.model, setup.optimizer)
        run.check_dataset(state, dataset_record(setup.episodes))
        try:
            return cls(state["step"], state["elapsed"], state["history"], state["best"], best_state)
        except KeyError as error:
            raise RunExistsError(f"{run.resume / 'state.json'}: missing field {error}; pass --force to start over") \
                from None

    def state(self, elapsed: float, dataset: dict) -> dict:
        return {"step": self.step, "elapsed": elapsed, "history": self.history, "best": self.best,
                "dataset": dataset}


def train_step(setup: Setup, cfg: TrainConfig, step: int) -> tuple[float, dict]:
    """One optimizer step on the batch of step `step` (its own RNG stream: resuming replays the
    same batches); returns the loss and the spiking DT's activity (`activity_penalty`)."""
    model, optimizer = setup.model, setup.optimizer
    rng = np.random.default_rng([cfg.seed, step])
    tokens, actions, valid = setup.data.batch(rng, cfg.batch_size)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    record = {} if model.spiking else None
    if model.cfg.streaming:  # left padding must reach no real token: nothing precedes an episode's start
        outputs = model(torch.from_numpy(tokens), record, valid=torch.from_numpy(np.repeat(valid, 3, axis=1)))
    else:
        outputs = model(torch.from_numpy(tokens), record)
    action_tensor = torch.from_numpy(actions)
    loss = dt_loss(outputs, action_tensor, torch.from_numpy(valid), setup.layout, setup.spec, cfg.continuous_loss)
    activity = {}
    if record is not None:
        penalty, activity = activity_penalty(record, setup.energy_table, cfg)
        if penalty is not None:
            loss = loss + penalty
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    value = float(loss.detach())
    if not np.isfinite(value):
        raise DivergedError(f"training diverged at step {step + 1}: the loss is {value}; {_KEPT}")
    try:
        guarded_step(optimizer, model)
    except DivergedError as error:
        raise DivergedError(f"training diverged at step {step + 1}: {error}; {_KEPT}") from None
    return value, activity


_KEPT = "nothing of this step was saved (resume/ and checkpoint/ keep the last good state); lower train.lr"


def dataset_record(episodes: Episodes) -> dict:
    """The dataset a run trains on, as resume/state.json records it (id and content hash)."""
    return {"id": episodes.metadata.get("dataset_id"), "content_hash": episodes.metadata.get("content_hash")}


def evaluate_and_save(run: RunFolder, setup: Setup, cfg: TrainConfig, progress: Progress, entry: dict,
                      elapsed: Callable[[], float]) -> None:
    """Validation return into `entry` and the history, the best weights kept, resume/ rewritten."""
    entry["val_return"] = validate(setup.model, setup.spec, setup.layout, norm=setup.data.norm,
                                   episodes=cfg.eval_episodes)
    entry["elapsed_s"] = elapsed()
    progress.history.append(entry)
    if entry["val_return"] >= progress.best["return"]:
        progress.best = {"return": entry["val_return"], "step": progress.step}
        progress.best_state = snapshot(setup.model)
    run.save_resume(setup.model, setup.optimizer, progress.best_state,
                    progress.state(entry["elapsed_s"], dataset_record(setup.episodes)))
    write_metrics(run.run_dir / METRICS, progress.history)
    setup.refresh_energy_table()


def finish(run: RunFolder, setup: Setup, cfg: TrainConfig, progress: Progress, seconds: float) -> tuple[Path, dict]:
    """The best weights into checkpoint/, with the run's metrics; returns (checkpoint, metrics)."""
    model, history = setup.model, progress.history
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    model.eval()
    threshold = _reward_threshold(cfg.env_id)
    reached = [h for h in history if threshold is not None and h["val_return"] >= threshold]
    seeds = validation_seeds(cfg.eval_episodes)
    metrics = {
        "reward_threshold": threshold,
        "time_to_reward_threshold_s": reached[0]["elapsed_s"] if reached else None,
        "steps_to_reward_threshold": reached[0]["step"] if reached else None,
        "steps": progress.step,
        "train_seconds": seconds,
        "final_loss": progress.loss,
        "best_val_return": progress.best["return"],
        "best_step": progress.best["step"],
        "time_to_stop_at_return_s": progress.time_to_stop,
        "validation_seeds": [seeds[0], seeds[-1]],
        "history": history,
    }
    dataset_meta = setup.episodes.metadata
    meta = checkpoint_meta(
        model, setup.spec, setup.layout, setup.data.norm,
        dataset={"id": dataset_meta["dataset_id"], "content_hash": dataset_meta["content_hash"],
                 "mix": dataset_meta["mix"], "seed": dataset_meta["seed"], "n_episodes": dataset_meta["n_episodes"],
                 "episode_seeds": [e["seed"] for e in dataset_meta["episodes"]]},
        train=cfg.to_dict(),
        metrics=metrics,
    )
    save_checkpoint(run.final, Checkpoint(model=model, spec=setup.spec, layout=setup.layout, norm=setup.data.norm,
                                          meta=meta), overwrite=True)  # a --force run replaces the previous one only now
    return run.final, metrics


def train(
    run_dir: str | Path,
    cfg: TrainConfig,
    force: bool = False,
    on_progress: Callable[[dict], None] | None = None,
) -> tuple[Path, dict]:
    """Train (or resume) the run in `run_dir`; returns (checkpoint path, metrics)."""
    run = RunFolder(run_dir, "run.json", outputs=(METRICS,), record_of=lambda meta: meta.get("train"))
    status = run.status(cfg.to_dict(), force)
    if status == FINISHED:
        return run.final, {**run.finished_meta().get("metrics", {}), "status": "already finished"}
    if not cfg.dataset:
        raise ConfigError("no dataset given (--dataset ID, or train.dataset in the config file)")
    run.refuse_inputs({"dataset": dataset_dir(cfg.dataset)})
    setup = prepare(cfg)
    run.start(cfg.to_dict(), force)
    progress = Progress.resume(run, setup) if status == RESUME else Progress()

    setup.model.train()
    clock = time.perf_counter()

    def elapsed() -> float:
        return progress.elapsed_before + time.perf_counter() - clock

    while progress.step < cfg.steps:
        progress.loss, activity = train_step(setup, cfg, progress.step)
        progress.step += 1
        entry = {"step": progress.step, "loss": progress.loss, "elapsed_s": elapsed(), **activity}
        if progress.step % cfg.eval_every == 0 or progress.step == cfg.steps:
            evaluate_and_save(run, setup, cfg, progress, entry, elapsed)
            if cfg.stop_at_return is not None and entry["val_return"] >= cfg.stop_at_return:
                progress.time_to_stop = entry["elapsed_s"]
                if on_progress:
                    on_progress(entry)
                break
        if on_progress:
            on_progress(entry)
    return finish(run, setup, cfg, progress, elapsed())
