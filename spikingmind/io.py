"""Files in and out: atomic writes, the one JSON encoder, output paths checked before any work.

Writes: a result is either complete on disk or absent, never half written. Files and folders
are written under a temporary name next to their target and renamed onto it; the temporary
name carries the writer's pid (`.<name>.<pid>.<random>.tmp`), so that what a killed process
left behind is recognised and removed by the next write next to it (`remove_stale_temps`;
a name whose pid is alive, or not ours to judge, is left alone). Replacing a folder is one
`renameat2(RENAME_EXCHANGE)` where the filesystem has it: a kill at any moment leaves the old
or the new folder in place, never neither (elsewhere two renames, and the next write puts
an old folder a kill stranded aside back in place). Results get ordinary permissions
(0666 / 0777 less the umask), like any file the user writes.

JSON: `json_text` never writes `NaN` or `Infinity` (not JSON): a non-finite number becomes
null, and a top-level "non_finite" object says which field held what.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from spikingmind.errors import OutputError, RunExistsError, SpikingmindError

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE, DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


def read_text(path: str | Path, error: type[SpikingmindError], missing: str) -> str:
    """The text of `path`; `error(missing)` (a one-line message naming the file) when it does
    not exist, `error` naming the file when it cannot be read as UTF-8 text."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def read_toml_tables(path: str | Path, tables: tuple[str, ...]) -> dict[str, dict]:
    """A TOML config file whose top level holds only the named tables -> {table: values}.
    ConfigError, naming the file, when it is missing, not TOML, or has another key or a non-table."""
    import tomllib

    from spikingmind.errors import ConfigError, check_known_keys

    text = read_text(path, ConfigError, f"config file {path} does not exist")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from None
    expected = ", ".join(f"[{name}]" for name in tables)
    check_known_keys(raw, tables, f"{path}: unknown tables {{keys}} (expected {expected})")
    for table, value in raw.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {table} must be a table ([{table}]), got {value!r}")
    return raw


# ---------------------------------------------------------------------------- JSON


def _finite_json(value: Any, path: str, notes: dict[str, str]) -> Any:
    """`value` with numpy types as Python ones and every NaN / infinity as None (noted)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes[path or "value"] = "nan" if value != value else ("inf" if value > 0 else "-inf")
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite_json(v, f"{path}.{k}" if path else str(k), notes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v, f"{path}[{i}]", notes) for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(obj: Any, indent: int | None = 2) -> str:
    """The JSON text of `obj`, always valid JSON: numpy values as numbers and lists, paths as
    strings, NaN and infinities as null with a top-level "non_finite" {field: "nan" | "inf" |
    "-inf"} saying where (an object at the top level; elsewhere just null)."""
    notes: dict[str, str] = {}
    clean = _finite_json(obj, "", notes)
    if notes and isinstance(clean, dict):
        clean["non_finite"] = notes
    try:
        return json.dumps(clean, indent=indent, allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"not JSON serialisable: {exc}") from None


# ---------------------------------------------------------------------------- temp files of dead writers


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts as alive: not ours to judge)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def remove_stale_temps(path: str | Path) -> None:
    """Remove the temporary files and folders that dead processes left next to `path`
    (`.<name>.<pid>.<random>.tmp`); a folder a kill stranded aside while replacing `path`
    (`.<name>.<pid>.<random>.old`) is put back when `path` is missing, else removed."""
    path = Path(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[A-Za-z0-9_]+\.(tmp|old)(\.[A-Za-z0-9]+)?$")
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or pid_alive(int(match.group(1))):
            continue
        try:
            if match.group(2) == "old" and not os.path.lexists(path):
                os.rename(entry, path)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError:
            pass


# ---------------------------------------------------------------------------- atomic writes


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    """One line for a failed write of `path` (read-only folder, full disk, a file in the way)."""
    return OutputError(f"{path}: cannot write: {exc.strerror or exc}")


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write `payload` to `path` through a temp file in the same folder + rename."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
        os.fchmod(fd, FILE_MODE)  # mkstemp creates 0600; give results the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """`obj` as JSON (`json_text`: valid JSON, non-finite numbers as null + "non_finite")."""
    return atomic_write_text(path, json_text(obj) + "\n")


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it is renamed onto `path`.

    For writers (h5py, onnx, nir) that insist on a file name of their own.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp" + (suffix or path.suffix))
        os.close(fd)
        os.chmod(tmp, FILE_MODE)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one syscall (Linux renameat2 RENAME_EXCHANGE); False where
    the system or filesystem does not offer it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not offered here
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def replace_dir(new: Path, path: Path) -> None:
    """Put the folder `new` at `path`, replacing what is there, so that a kill at any moment
    leaves the old or the new folder at `path` (see the module docstring)."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    if _exchange(new, path):  # `new` now holds the old folder
        shutil.rmtree(new, ignore_errors=True)
        return
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".old"))
    os.rmdir(aside)
    os.rename(path, aside)  # a kill here: remove_stale_temps puts `aside` back
    os.rename(new, path)
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder next to `path`; on success it replaces `path` (`replace_dir`)."""
    path = Path(path)
    remove_stale_temps(path)
    if path.exists() and not overwrite:
        raise RunExistsError(f"{path} already exists; pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp"))
        os.chmod(tmp, DIR_MODE)  # mkdtemp creates 0700
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        yield tmp
        replace_dir(tmp, path)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def refuse_overwrite(path: str | Path, force: bool) -> None:
    """Raise unless `path` is absent or the user asked for --force."""
    if Path(path).exists() and not force:
        raise RunExistsError(f"{path} already exists; pass --force to overwrite it")


# ---------------------------------------------------------------------------- outputs against inputs


def same_or_inside(inner: Path, outer: Path) -> bool:
    """`inner` is `outer` or lies inside it (symlinks resolved; hard links of existing files too)."""
    if inner.exists() and outer.exists():
        try:
            if os.path.samefile(inner, outer):
                return True
        except OSError:
            pass
    a, b = inner.resolve(), outer.resolve()
    return a == b or b in a.parents


def _writable_folder(path: Path, label: str) -> None:
    """The nearest existing folder above `path` accepts a new file (probed, so that read-only
    mounts and folders count as what they are, whoever runs)."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{label} {path}: cannot write: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{label} {path}: cannot write into {folder}: {exc.strerror or exc}") from None


def check_outputs(outputs: Mapping[str, str | Path | None],
                  inputs: Mapping[str, str | Path | None] | Iterable[tuple[str, str | Path | None]] = (),
                  force: bool = False, folders: Iterable[str] = ()) -> None:
    """Before any work: every output (option label -> path; None: not asked for) is refused
    with one line when it is an existing file without `force`, a folder where a file is
    written (labels not in `folders`), in a folder that cannot be written, the same path as
    another output, or the same path as an input ((what it is, path) pairs or a mapping),
    inside an input folder, or (a folder output) a folder that holds an input."""
    wanted = {label: Path(p) for label, p in outputs.items() if p is not None}
    pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
    given = [(label, Path(p)) for label, p in pairs if p is not None]
    folders = set(folders)
    seen: list[tuple[str, Path]] = []
    for label, path in wanted.items():
        for other_label, other in seen:
            if same_or_inside(path, other) or same_or_inside(other, path):
                raise OutputError(f"{label} {path} and {other_label} {other} name the same output; give each its own")
        seen.append((label, path))
        for in_label, source in given:
            if same_or_inside(path, source):
                raise OutputError(f"{label} {path} would overwrite the input {source} ({in_label}); choose another path")
            if label in folders and same_or_inside(source, path):
                raise OutputError(f"{label} {path} would replace the folder holding the input {source} ({in_label}); "
                                  "choose another path")
        if label not in folders and path.is_dir():
            raise OutputError(f"{label} {path} is a folder; give a file name")
        if path.exists() and not force:
            raise RunExistsError(f"{path} already exists; pass --force to overwrite it")
        _writable_folder(path, label)


# ---------------------------------------------------------------------------- reading through an interrupt


@contextmanager
def interrupts_noted() -> Iterator[dict]:
    """While a library reads a file: note every SIGINT/SIGTERM, so that one which the library
    turned into an error of its own (torch inside safetensors reports a Ctrl-C as "could not
    determine the shape of object type") can be re-raised as the KeyboardInterrupt it was:
    `if noted["signal"]: raise KeyboardInterrupt`. Outside the main thread: notes nothing."""
    noted = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = {}

    def note(signum, frame):
        noted["signal"] = signum
        previous[signum](signum, frame)  # Ctrl-C's handler raises KeyboardInterrupt
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):  # a Python handler (Ctrl-C's, the CLI's SIGTERM): SIG_DFL stays as it is
            previous[signum] = handler
            signal.signal(signum, note)
    try:
        yield noted
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
