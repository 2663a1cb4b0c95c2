"""The one reader and validator of the policy metadata every checkpoint and export carries.

A checkpoint's `checkpoint.json`, the JSON string in a NIR graph's `metadata["spikingmind"]`
and in an ONNX model's `metadata_props["spikingmind"]` all describe the same policy: the env,
the token layout, the input normalisation and the decoding rule (docs/SEMANTICS.md). This
module reads any of them into one frozen `PolicyMetadata`; every failure names the file and
the missing or invalid field, raised as the caller's error type (CheckpointError for a
checkpoint, GraphError for a graph).

Graphs written by hand (tests, other tools) may carry only the decoding keys
(`{"action_kind": "discrete"}`): read them with `require_env=False`; they get no env,
layout or normalisation and cannot run closed loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spikingmind.envs import EnvSpec, get_env_spec
from spikingmind.errors import GraphError, SpikingmindError
from spikingmind.tokens import Normalization, TokenLayout, decision_token_index
from spikingmind.validation import check_fields, finite_number, integer, non_finite_value, shown

ACTION_KINDS = ("discrete", "continuous")
_LAYOUT_KEYS = ("obs_dim", "act_dim", "discrete", "context_length")
#: what runs the policy (a NaN there is refused; records such as training metrics are not read)
_POLICY_KEYS = ("env", "token_layout", "normalization", "decode", "time_steps", "dt", "action_low", "action_high",
                "model")


@dataclass(frozen=True)
class DecodeRule:
    """How a backend's outputs become env actions (docs/SEMANTICS.md, "Decoding").

    Outputs are read at token `token_index` (the last state token), averaged over the
    `time_steps` SNN steps; discrete actions are their argmax, continuous ones
    `action_low + (tanh(y) + 1) / 2 * (action_high - action_low)`.
    """

    discrete: bool
    token_index: int
    action_low: tuple[float, ...] | None = None  # continuous actions only
    action_high: tuple[float, ...] | None = None
    time_steps: int | None = None  # None: no SNN time axis (the ANN twin) or not stated
    output_node: str | None = None

    @classmethod
    def for_env(cls, spec: EnvSpec, layout: TokenLayout, time_steps: int | None = None) -> "DecodeRule":
        """The rule of a policy on `spec` with `layout` (what every export writes down)."""
        bounds = (tuple(spec.action_low), tuple(spec.action_high)) if not spec.discrete else (None, None)
        return cls(spec.discrete, layout.decision_token, *bounds, time_steps=time_steps)

    def decision_outputs(self, output: np.ndarray) -> np.ndarray:
        """An Output node's record (T, B, n_out, L) -> (B, n_out): the mean over the T steps
        at the decision token."""
        return output[:, :, :, self.token_index].mean(axis=0)


@dataclass(frozen=True)
class PolicyMetadata:
    """A checkpoint's or an export's policy metadata, read and validated.

    `spec`, `layout` and `norm` are None only for graphs read with `require_env=False`
    that name no env. `raw` is the metadata as stored (dataset, versions, model config ...).
    """

    source: str
    raw: dict[str, Any]
    decode: DecodeRule
    spec: EnvSpec | None = None
    layout: TokenLayout | None = None
    norm: Normalization | None = None

    @property
    def model_kind(self) -> str | None:
        """"snn" or "ann" where the metadata names the model config."""
        model = self.raw.get("model")
        return model.get("kind") if isinstance(model, Mapping) else None

    @property
    def streaming(self) -> bool:
        """A streaming export: it continues an episode from carried state on the tokens since the
        last decision (docs/SEMANTICS.md, "Streaming")."""
        return is_streaming(self.raw)


def is_streaming(meta: Mapping[str, Any]) -> bool:
    """Whether metadata describes a streaming export (its `streaming` section)."""
    return isinstance(meta.get("streaming"), Mapping)


def parse_metadata(raw: Any, source: str, error: type[SpikingmindError] = GraphError) -> dict[str, Any]:
    """The spikingmind metadata as a dict, from a mapping or its JSON text (str, bytes, or the
    0-d array nir.read gives back); `error` naming `source` when it is absent or corrupt."""
    if raw is None:
        raise error(f"{source}: no 'spikingmind' metadata; not exported by spikingmind")
    if isinstance(raw, np.ndarray):
        raw = raw.item()
    if isinstance(raw, bytes | np.bytes_):
        raw = raw.decode("utf-8")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise error(f"{source}: corrupt spikingmind metadata ({exc})") from None
    if not isinstance(raw, Mapping):
        raise error(f"{source}: the spikingmind metadata must be a JSON object, got {type(raw).__name__}")
    return dict(raw)


def read_policy_metadata(raw: Any, source: str, *, error: type[SpikingmindError] = GraphError,
                         require_env: bool = True, n_tokens: int | None = None,
                         n_out: int | None = None, n_features: int | None = None) -> PolicyMetadata:
    """Read and validate the policy metadata `raw` (see `parse_metadata`) of the file `source`.

    `n_tokens` / `n_out` / `n_features`: what the model or graph itself says (its input and
    output shapes), checked against the metadata where given. Every number is checked
    (`spikingmind.validation`): integers are integers, constants finite, obs_std and
    return_scale positive. Raises `error` naming `source` and the field.
    """
    meta = parse_metadata(raw, source, error)
    bad = non_finite_value({key: meta[key] for key in _POLICY_KEYS if key in meta})
    if bad is not None:
        raise error(f"{source}: metadata field '{bad}' is NaN or infinite")
    spec = layout = norm = None
    if require_env or "env" in meta:
        spec, layout, norm = _context(meta, source, error)
        if n_features is not None and n_features != layout.n_features:
            raise error(f"{source}: {n_features} input features, but the token layout has {layout.n_features}")
    return PolicyMetadata(source, meta, _decode_rule(meta, source, error, spec, layout, n_tokens, n_out),
                          spec, layout, norm)


def _field(meta: Mapping, path: str, source: str, error):
    value: Any = meta
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise error(f"{source}: missing field '{path}'")
        value = value[key]
    return value


def _context(meta: dict, source: str, error) -> tuple[EnvSpec, TokenLayout, Normalization]:
    """(env spec, token layout, normalisation) of the metadata."""
    env_id = _field(meta, "env.env_id", source, error)
    if not isinstance(env_id, str):
        raise error(f"{source}: invalid field 'env.env_id' {shown(env_id)} (not a string)")
    spec = get_env_spec(env_id)
    raw_layout = {key: _field(meta, f"token_layout.{key}", source, error) for key in _LAYOUT_KEYS}
    raw_norm = _field(meta, "normalization", source, error)
    if not isinstance(raw_norm, Mapping):
        raise error(f"{source}: invalid field 'normalization' (not an object)")
    try:
        layout = TokenLayout(**raw_layout)
        norm = Normalization(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw_norm.items()})
        check_fields(layout, source, "token_layout.", error)
        check_fields(norm, source, "normalization.", error)
    except (TypeError, ValueError, AttributeError) as exc:
        raise error(f"{source}: invalid field 'token_layout' or 'normalization' ({exc})") from None
    for key in ("obs_dim", "act_dim", "context_length"):
        integer(getattr(layout, key), f"{source}: token_layout.{key}", error, minimum=1)
    if layout.obs_dim != spec.obs_dim:
        raise error(f"{source}: obs_dim {layout.obs_dim} does not match {spec.env_id} ({spec.obs_dim})")
    if (layout.act_dim, layout.discrete) != (spec.act_dim, spec.discrete):
        raise error(f"{source}: token_layout act_dim {layout.act_dim} / discrete {layout.discrete} do not match "
                    f"{spec.env_id} ({spec.act_dim} / {spec.discrete})")
    for key in ("obs_mean", "obs_std"):
        if len(getattr(norm, key)) != spec.obs_dim:
            raise error(f"{source}: normalization.{key} must hold {spec.obs_dim} values, got {len(getattr(norm, key))}")
    if not all(std > 0 for std in norm.obs_std):
        raise error(f"{source}: normalization.obs_std must be positive (it divides the observations), "
                    f"got {list(norm.obs_std)}")
    for key in ("return_scale", "return_gain"):
        if not getattr(norm, key) > 0:
            raise error(f"{source}: normalization.{key} must be positive, got {getattr(norm, key)!r}")
    integer(norm.max_episode_steps, f"{source}: normalization.max_episode_steps", error, minimum=1)
    return spec, layout, norm


def _decode_rule(meta: dict, source: str, error, spec: EnvSpec | None, layout: TokenLayout | None,
                 n_tokens: int | None, n_out: int | None) -> DecodeRule:
    decode = meta.get("decode") or {}
    if not isinstance(decode, Mapping):
        raise error(f"{source}: invalid field 'decode' (not an object)")
    kinds = []  # every statement of the action kind must agree
    if "action" in decode:
        kinds.append(("decode.action", "discrete" if decode["action"] == "argmax" else "continuous"))
    if "action_kind" in meta:
        if meta["action_kind"] not in ACTION_KINDS:
            raise error(f"{source}: metadata action_kind must be 'discrete' or 'continuous', "
                        f"got {meta['action_kind']!r}")
        kinds.append(("action_kind", meta["action_kind"]))
    if spec is not None:
        kinds.append(("env.action_kind", spec.action_kind))
    if not kinds:
        raise error(f"{source}: missing field 'action_kind' (how to decode actions)")
    if len({kind for _, kind in kinds}) != 1:
        raise error(f"{source}: the action kind disagrees: " + ", ".join(f"{k} {v!r}" for k, v in kinds))
    discrete = kinds[0][1] == "discrete"

    low = high = None
    if not discrete:
        bounds = []
        for key in ("action_low", "action_high"):
            value = decode.get(key, meta.get(key, None if spec is None else getattr(spec, key)))
            if value is None:
                raise error(f"{source}: continuous actions need metadata '{key}'")
            values = value if isinstance(value, (list, tuple)) else [value]
            bounds.append(tuple(finite_number(v, f"{source}: metadata {key}", error) for v in values))
        low, high = bounds
        width = n_out if n_out is not None else (spec.act_dim if spec is not None else len(low))
        if len(low) != width or len(high) != width:
            raise error(f"{source}: action_low/action_high must hold {width} values, got {len(low)}/{len(high)}")

    if is_streaming(meta):  # one token per run: the output of each state token's run is its decision
        if n_tokens not in (None, 1) or decode.get("token_index", 0) != 0:
            raise error(f"{source}: a streaming export runs one token at a time (decode.token_index 0), got "
                        f"{n_tokens} tokens and token_index {decode.get('token_index')!r}")
        time_steps = meta.get("time_steps")
        return DecodeRule(discrete, 0, low, high, None if time_steps is None else int(time_steps),
                          decode.get("output_node"))
    if n_tokens is None and layout is not None:
        n_tokens = layout.n_tokens
    if layout is not None and n_tokens != layout.n_tokens:
        raise error(f"{source}: {n_tokens} tokens, but the token layout has {layout.n_tokens}")
    if "token_index" in decode:
        token_index = decode["token_index"]
    elif n_tokens is not None:
        token_index = decision_token_index(n_tokens)
    else:
        raise error(f"{source}: missing field 'decode.token_index' (and no token layout to derive it from)")
    expected = None if n_tokens is None else decision_token_index(n_tokens)
    if isinstance(token_index, bool) or not isinstance(token_index, int) or (
            expected is not None and token_index != expected) or (n_tokens is not None and not 0 <= token_index < n_tokens):
        raise error(f"{source}: invalid field 'decode.token_index' {token_index!r}: the decision token of "
                    f"{n_tokens} tokens is {expected}")
    time_steps = meta.get("time_steps")
    if time_steps is not None:
        integer(time_steps, f"{source}: metadata time_steps", error, minimum=1)
    return DecodeRule(discrete, token_index, low, high, time_steps, decode.get("output_node"))
