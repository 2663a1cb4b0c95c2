"""Checkpoints: a folder with `model.safetensors` (weights) and `checkpoint.json` (everything
else: model config, env, token layout, normalisation, dataset id + hash, versions, metrics).
No pickle anywhere; a checkpoint of another format version is refused with both versions named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import spikingmind
from spikingmind.envs import EnvSpec
from spikingmind.errors import CheckpointError, ConfigError, SpikingmindError
from spikingmind.io import atomic_dir, atomic_write_json, interrupts_noted
from spikingmind.limits import check_model_memory
from spikingmind.metadata import read_policy_metadata
from spikingmind.model import DecisionTransformer, ModelConfig
from spikingmind.tokens import Normalization, TokenLayout
from spikingmind.validation import integer, non_finite_tensor

FORMAT = "spikingmind-checkpoint"
FORMAT_VERSION = 2  # 2: return-to-go also on the state token (tokens.step_tokens)
WEIGHTS, META = "model.safetensors", "checkpoint.json"


@dataclass
class Checkpoint:
    """A trained policy: model + everything needed to feed it and to trace where it came from."""

    model: DecisionTransformer
    spec: EnvSpec
    layout: TokenLayout
    norm: Normalization
    meta: dict = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg


def versions() -> dict[str, str]:
    import nir
    import snntorch

    return {"spikingmind": spikingmind.__version__, "torch": torch.__version__,
            "snntorch": snntorch.__version__, "nir": nir.__version__}


def describe_env(spec: EnvSpec) -> dict:
    return {"env_id": spec.env_id, "obs_dim": spec.obs_dim, "action_kind": spec.action_kind,
            "act_dim": spec.act_dim, "action_low": list(spec.action_low), "action_high": list(spec.action_high),
            "target_return": spec.target_return, "return_scale": spec.return_scale,
            "max_episode_steps": spec.max_episode_steps}


def checkpoint_meta(model: DecisionTransformer, spec: EnvSpec, layout: TokenLayout, norm: Normalization, **extra) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "model": model.cfg.to_dict(),
        "n_features": model.n_features,
        "n_out": model.n_out,
        "env": describe_env(spec),
        "token_layout": layout.describe(),
        "normalization": {"obs_mean": list(norm.obs_mean), "obs_std": list(norm.obs_std),
                          "return_scale": norm.return_scale, "max_episode_steps": norm.max_episode_steps,
                          "return_gain": norm.return_gain},
        **extra,
    }


def read_tensors(path: str | Path, error: type[SpikingmindError], what: str = "weights") -> dict:
    """The tensors of a safetensors file: `error` naming the file when it is missing, damaged
    or holds a NaN or an infinity; an interrupt while reading stays an interrupt (never
    reported as a damaged file)."""
    path = Path(path)
    with interrupts_noted() as noted:
        try:
            tensors = load_file(str(path))
        except FileNotFoundError:
            raise error(f"{path}: missing") from None
        except Exception as exc:  # safetensors raises its own error types for damaged files
            if noted["signal"] is not None:
                raise KeyboardInterrupt from None
            raise error(f"{path}: cannot read {what} ({' '.join(str(exc).split())[:200]})") from None
    bad = non_finite_tensor(tensors)
    if bad is not None:
        raise error(f"{path}: tensor '{bad}' holds NaN or infinite values; the {what} are unusable")
    return tensors


def save_checkpoint(path: str | Path, ckpt: Checkpoint, *, overwrite: bool = False) -> Path:
    """Write the checkpoint folder atomically (temp folder + rename)."""
    state = {name: tensor.detach().contiguous().clone() for name, tensor in ckpt.model.state_dict().items()}
    with atomic_dir(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        atomic_write_json(tmp / META, ckpt.meta)
    return Path(path)


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    meta_path = path / META
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: no {META}; this is not a spikingmind checkpoint folder")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_path}: corrupt JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: checkpoint format version {meta.get('format_version')!r}, this spikingmind "
            f"({spikingmind.__version__}) reads version {FORMAT_VERSION}"
        )
    return meta


def load_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32) -> Checkpoint:
    """Load a checkpoint folder; every failure is a CheckpointError naming the file and field.

    Checked before anything is built: the model config's types and ranges, its memory at one
    decision against the budget (`spikingmind.limits`), that the metadata agrees with itself;
    then every weight is finite (a diverged run's NaNs are refused, not evaluated)."""
    path = Path(path)
    meta = read_meta(path)
    source = str(path / META)
    policy = read_policy_metadata(meta, source, error=CheckpointError)
    spec, layout, norm = policy.spec, policy.layout, policy.norm
    try:
        cfg = ModelConfig.from_dict(meta["model"], source)
        n_features = integer(meta["n_features"], f"{source}: n_features", CheckpointError, minimum=1)
        n_out = integer(meta["n_out"], f"{source}: n_out", CheckpointError, minimum=1)
    except KeyError as error:
        raise CheckpointError(f"{source}: missing field {error}") from None
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    for field_name, value, expected in (("n_features", n_features, layout.n_features), ("n_out", n_out, spec.act_dim),
                                        ("model.context_length", cfg.context_length, layout.context_length)):
        if value != expected:
            raise CheckpointError(f"{source}: {field_name} {value} disagrees with the token layout / env ({expected})")
    check_model_memory(cfg, 1, False, source, n_features, n_out, error=CheckpointError)
    model = DecisionTransformer(cfg, n_features, n_out)
    state = read_tensors(path / WEIGHTS, CheckpointError)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0] if str(error) else "mismatch"
        raise CheckpointError(f"{path / WEIGHTS}: weights do not match the model config ({first})") from None
    model.to(dtype).eval()
    return Checkpoint(model=model, spec=spec, layout=layout, norm=norm, meta=meta)


def untrained_checkpoint(path: str | Path, env_id: str, cfg: ModelConfig, *, obs_mean=None, obs_std=None,
                         seed: int | None = 0, dataset: dict | None = None) -> Path:
    """A checkpoint folder of a freshly initialised model on `env_id` (benchmarks and tests:
    shapes, speed and agreement between backends, not skill). Normalisation: `obs_mean` /
    `obs_std` (default 0 / 1); `seed` seeds torch's global generator first (None: as it is)."""
    from spikingmind.envs import get_env_spec

    spec = get_env_spec(env_id)
    layout = TokenLayout(spec.obs_dim, spec.act_dim, spec.discrete, cfg.context_length)
    norm = Normalization(tuple(obs_mean) if obs_mean is not None else (0.0,) * spec.obs_dim,
                         tuple(obs_std) if obs_std is not None else (1.0,) * spec.obs_dim,
                         spec.return_scale, spec.max_episode_steps)
    if seed is not None:
        torch.manual_seed(seed)
    model = DecisionTransformer(cfg, layout.n_features, spec.act_dim)
    extra = {} if dataset is None else {"dataset": dataset}
    meta = checkpoint_meta(model, spec, layout, norm, **extra)
    return save_checkpoint(path, Checkpoint(model, spec, layout, norm, meta=meta))
