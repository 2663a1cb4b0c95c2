"""A Stable-Baselines3 policy as the demonstrator: ``spikingmind collect --expert sb3:PATH --trust-pickle``.

Why the flag. An SB3 ``.zip`` keeps its policy class, its spaces and its schedules as
cloudpickle inside the JSON member ``data``, and SB3's loader unpickles them: loading such a
file runs code chosen by whoever wrote it. spikingmind loads no pickle anywhere else (its
checkpoints are ``torch.load(weights_only=True)``, its datasets Minari HDF5), so this one is
opt-in and says so: without ``--trust-pickle`` the file is refused before anything in it is
unpickled. What can be read safely is read first, with the standard library only: the JSON
member names the algorithm (the module of the pickled policy class, e.g.
``stable_baselines3.dqn.policies``) and, in plain fields, the shapes of both spaces, so a model
for another environment is refused with the field that differs, before any unpickling.

The policy acts with ``model.predict(obs, deterministic=True)`` on the raw observation: a
model trained behind ``VecNormalize`` (or any other observation wrapper) needs its wrapper,
which this loader does not apply, so such a model plays badly here (the collect summary
prints its returns). SB3 itself is optional (``pip install --no-deps stable-baselines3``,
with the torch pin); ``sb3_contrib`` models (QR-DQN, TQC, ...) load when it is installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from spikingmind.errors import ConfigError

PREFIX = "sb3:"
TRUST_FLAG = "--trust-pickle"
PACKAGES = ("stable_baselines3", "sb3_contrib")  # where an algorithm's module may live


def parse_expert_source(text: str | None) -> Path | None:
    """The file of `--expert sb3:PATH` (None: the env's own expert); ConfigError for anything else."""
    if text is None or text == "builtin":
        return None
    if not text.startswith(PREFIX) or not text[len(PREFIX):]:
        raise ConfigError(f"--expert: {text!r} is not builtin or sb3:PATH (a Stable-Baselines3 .zip)")
    return Path(text[len(PREFIX):])


def read_header(path: Path) -> dict:
    """What the SB3 file says about itself, read without unpickling anything: its algorithm
    (module and class name), the spaces' shapes, the SB3 version and the file's sha256.
    ConfigError, naming the file and the member or field, when it is not an SB3 model."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the SB3 model ({error.strerror or error})") from None
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:  # the bytes just hashed, not a second read
            data = json.loads(archive.read("data").decode())
            version = archive.read("_stable_baselines3_version").decode().strip() \
                if "_stable_baselines3_version" in archive.namelist() else None
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError):  # not a zip, a damaged one, no `data`
        raise ConfigError(f"{path}: not a Stable-Baselines3 model (a .zip with a `data` member)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: member `data` is not JSON ({error})") from None
    policy = data.get("policy_class") if isinstance(data, dict) else None
    module = policy.get("__module__") if isinstance(policy, dict) else None
    parts = module.split(".") if isinstance(module, str) else []
    recurrent = parts[1:] == ["common", "recurrent", "policies"]  # needs its hidden state carried: not supported
    if len(parts) < 3 or parts[0] not in PACKAGES or parts[-1] != "policies" or recurrent:
        raise ConfigError(f"{path}: data.policy_class.__module__ is {module!r}, not the policies module of a "
                          f"feed-forward SB3 algorithm (e.g. stable_baselines3.dqn.policies)")
    algorithm = parts[-2]
    if parts[1:] == ["common", "policies"]:  # PPO and A2C share ActorCriticPolicy; only PPO stores a clip range
        algorithm = "ppo" if "clip_range" in data else "a2c"
    return {"package": parts[0], "algorithm": algorithm, "version": version,
            "observation_shape": _space_shape(data, "observation_space"),
            "action_shape": _space_shape(data, "action_space"),
            "action_n": _space_int(data, "action_space", "n"),
            "sha256": hashlib.sha256(raw).hexdigest()}


def _space_shape(data: dict, key: str) -> tuple[int, ...] | None:
    space = data.get(key)
    shape = space.get("_shape") if isinstance(space, dict) else None
    return tuple(int(n) for n in shape) if isinstance(shape, list) else None


def _space_int(data: dict, key: str, field: str) -> int | None:
    """An integer field of a space (Discrete's n is stored as its string, e.g. "2"); None if absent."""
    space = data.get(key)
    try:
        return int(space[field]) if isinstance(space, dict) and field in space else None
    except (TypeError, ValueError):
        return None


def check_spaces(path: Path, header: dict, spec) -> None:
    """ConfigError when the model's spaces (as its header records them) are not `spec`'s."""
    if header["observation_shape"] not in (None, (spec.obs_dim,)):
        raise ConfigError(f"{path}: data.observation_space has shape {header['observation_shape']}, "
                          f"{spec.env_id} observes ({spec.obs_dim},): a model of another env")
    if spec.discrete and header["action_n"] not in (None, spec.act_dim):
        raise ConfigError(f"{path}: data.action_space has {header['action_n']} actions, {spec.env_id} has {spec.act_dim}")
    if not spec.discrete and header["action_shape"] not in (None, (spec.act_dim,)):
        raise ConfigError(f"{path}: data.action_space has shape {header['action_shape']}, "
                          f"{spec.env_id} acts with ({spec.act_dim},)")


def _algorithm_class(path: Path, header: dict):
    import importlib

    package, algorithm = header["package"], header["algorithm"]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"{path}: a {package} model, and {package} is not installed "
                          f"(pip install --no-deps {package.replace('_', '-')}, next to torch==2.13.0)") from None
    for name in dir(module):
        if name.lower() == algorithm and isinstance(getattr(module, name), type):
            return getattr(module, name)
    raise ConfigError(f"{path}: {package} has no algorithm {algorithm!r} (data.policy_class.__module__)")


class SB3Expert:
    """An SB3 model's deterministic policy, obs -> action. Stateless (``predict`` of a
    feed-forward policy); it pickles as its path and header, and each process (the collect
    workers included) loads the model on first use, so the data do not depend on the workers."""

    def __init__(self, path: Path, spec, trust_pickle: bool):
        self.path = Path(path).resolve()
        self.header = read_header(self.path)
        check_spaces(self.path, self.header, spec)
        if not trust_pickle:
            raise ConfigError(f"{path}: an SB3 model is loaded by unpickling it, which runs code from the file; "
                              f"pass {TRUST_FLAG} if you trust it")
        self.discrete, self.act_dim = spec.discrete, spec.act_dim
        self.__name__ = f"sb3-{self.header['algorithm']}:{self.path.name}"
        self._model = None
        self.load()  # fail here, in one line, rather than in a worker

    def load(self):
        if self._model is None:
            import torch

            cls = _algorithm_class(self.path, self.header)
            torch.set_num_threads(1)
            try:
                self._model = cls.load(str(self.path), device="cpu")
            except Exception as error:  # whatever the unpickled objects raise
                raise ConfigError(f"{self.path}: SB3 could not load it ({type(error).__name__}: {error})") from None
        return self._model

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def __call__(self, obs: np.ndarray):
        action, _ = self.load().predict(np.asarray(obs, dtype=np.float32), deterministic=True)
        if self.discrete:
            return int(np.asarray(action).reshape(-1)[0])
        action = np.asarray(action, dtype=np.float32).reshape(self.act_dim)
        if not np.all(np.isfinite(action)):
            raise ConfigError(f"{self.path}: the SB3 policy returned a non-finite action {action.tolist()}")
        return action

    def describe(self) -> dict:
        """The dataset metadata's record of the demonstrator."""
        return {"kind": "sb3", "file": str(self.path), **{k: v for k, v in self.header.items()
                                                           if k in ("package", "algorithm", "version", "sha256")}}
