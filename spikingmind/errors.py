"""Domain exceptions. The library raises these; the CLI turns them into one line and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping


class SpikingmindError(Exception):
    """Base class: a user-facing error whose message is one readable line."""

    exit_code = 2


class ConfigError(SpikingmindError):
    """A config file or option is invalid (names the file and field)."""


class UnknownEnvError(SpikingmindError):
    """An environment id is not registered."""


class DatasetError(SpikingmindError):
    """A dataset is missing, corrupt or does not match the environment."""


class CheckpointError(SpikingmindError):
    """A checkpoint is missing, corrupt or of another format version."""


class RunExistsError(SpikingmindError):
    """A finished result would be overwritten."""


class UnsupportedModuleError(SpikingmindError):
    """The exporter met a module it cannot express (names the module and its path)."""


class GraphError(SpikingmindError):
    """An exported graph is malformed, corrupt or uses an unsupported node."""


class ExportError(SpikingmindError):
    """An export target failed or is unknown."""


class ProfileError(SpikingmindError):
    """A hardware profile is invalid (names the file and key)."""


class LavaError(SpikingmindError):
    """The Lava sidecar is missing, crashed or timed out."""


class OutputError(SpikingmindError):
    """An output path cannot be written, or would overwrite one of the command's inputs."""


class DivergedError(SpikingmindError):
    """Training stopped because the loss or a weight stopped being finite (names the step)."""


def check_known_keys(values: Mapping, known: Iterable[str], message: str,
                     error: type[SpikingmindError] = ConfigError) -> None:
    """Raise `error(message)` when `values` has keys outside `known`; the text `{keys}` in
    `message` becomes the sorted unknown keys ("run.toml: unknown train keys: {keys}")."""
    unknown = set(values) - set(known)
    if unknown:
        raise error(message.replace("{keys}", ", ".join(sorted(unknown))))


def exit_on_error(main: Callable[[], object]) -> None:
    """Run a script's `main()`: a SpikingmindError becomes one line on stderr and its exit code
    (the CLI has its own handler; this is for benchmarks/ and scripts/)."""
    try:
        main()
    except SpikingmindError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
