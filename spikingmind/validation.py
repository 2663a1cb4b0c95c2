"""The one place where numbers entering spikingmind are checked: typed config fields, finite
values, finite tensors.

Configs (TOML files, CLI options, `checkpoint.json`), metadata (`.nir`, `.onnx`), profiles and
weights all come from files a user or another tool wrote. Everything that reads them checks
through here, so that `steps = 4.7`, `lr = inf`, `threshold = nan` or a NaN weight is refused
with one line naming the file and the field instead of training 5 steps, diverging or acting
on NaN tokens. (Sizes are checked against the memory budget in `spikingmind.limits`.)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from spikingmind.errors import ConfigError, SpikingmindError

_REPR_LIMIT = 60


def shown(value: Any) -> str:
    """repr(value), cut to a readable length for one-line errors."""
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def is_number(value: Any) -> bool:
    """An int or float (bool is not a number here, although Python says it is)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_number(value: Any, what: str, error: type[SpikingmindError] = ConfigError) -> float:
    """`value` as a float; `error("<what> must be a finite number, got ...")` for NaN, +-inf,
    bools, strings and anything else that is not an int or float."""
    if not is_number(value) or not math.isfinite(value):
        raise error(f"{what} must be a finite number, got {shown(value)}")
    return float(value)


def integer(value: Any, what: str, error: type[SpikingmindError] = ConfigError, minimum: int | None = None) -> int:
    """`value` as an int (4.7, True and "4" are refused, not rounded); at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what} must be an integer, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise error(f"{what} must be >= {minimum}, got {value}")
    return value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(parts) + (" or none" if type(None) in typing.get_args(hint) else "")
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a list of {len(args)} numbers" if all(a in (int, float) for a in args) else f"a list of {len(args)}"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
            dict: "a table"}.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return is_number(value) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, Mapping)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(item, args[0]) for item in value)
        return len(value) == len(args) and all(_fits(item, arg) for item, arg in zip(value, args))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this checker does not know: left to the class


def check_fields(config: Any, source: str, prefix: str = "", error: type[SpikingmindError] = ConfigError) -> None:
    """Every field of the dataclass instance `config` holds its annotated type: an `int` field
    an integer (not 4.7, not true, not "4"), a `float` field a finite int or float, a `str`
    field a string, `X | None` X or none, `tuple[float, float]` two numbers. Raises
    `error("<source>: <prefix><field> must be ..., got ...")` for the first field that does not."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if not _fits(value, hints[item.name]):
            where = f"{source}: " if source else ""
            raise error(f"{where}{prefix}{item.name} must be {_describe(hints[item.name])}, got {shown(value)}")


def non_finite_tensor(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor of `tensors` that holds a NaN or an
    infinity (weights, optimizer moments, BatchNorm statistics), or None."""
    import torch

    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def non_finite_value(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity inside a JSON-like value, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "value")
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = non_finite_value(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = non_finite_value(item, f"{path}[{index}]")
            if found:
                return found
    return None
