"""The Lava sidecar environment: a Python 3.10 venv with lava-nc, nir and numpy<2, no torch.

Lava (lava-nc 0.10.0) supports Python 3.8-3.10 only, while spikingmind runs on 3.11, so Lava
lives in a venv of its own (`.venv-lava` by default) and runs as a subprocess
(`python -m spikingmind.export.lava_sidecar.run`). spikingmind itself is installed into that
venv editable and without its dependencies: the sidecar imports only `spikingmind.fixed_point`
and `spikingmind.export.lava_sidecar` (NumPy and Lava), and `import spikingmind` imports
nothing heavy. This module finds a 3.10 interpreter, creates that venv, and tells the runner
which interpreter to use.

    python -m spikingmind.export.lava_env --venv .venv-lava     # what `make lava-env` runs

Interpreter search order: $SPIKINGMIND_LAVA_PYTHON (taken as is, must be 3.10 with lava
importable or be a base 3.10 to build the venv from), then `python3.10` on PATH, then
`$(pyenv root)/versions/3.10.*/bin/python`.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from spikingmind.errors import LavaError

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (an editable install runs from it)
DEFAULT_VENV = REPO_ROOT / ".venv-lava"
LAVA_REQUIREMENTS = ("lava-nc==0.10.0", "nir==1.0.8", "numpy<2")
ENV_VAR = "SPIKINGMIND_LAVA_PYTHON"
HOW_TO_GET_ONE = (
    "install Python 3.10 (e.g. `pyenv install 3.10.13`) and run `make lava-env`, "
    f"or point {ENV_VAR} at a Python 3.10 that has lava-nc==0.10.0 installed"
)


#: Seconds an interpreter probe may take (a version query, an import of lava).
PROBE_TIMEOUT_S = 60.0


def _probe(command: list[str], timeout: float | None = None) -> tuple[int, str] | None:
    """(exit code, stdout) of a probe command run in its own process group, or None when it
    cannot start or times out. On a timeout the whole group is killed: an interpreter that is
    a wrapper script (pyenv's shims, a user's) must not leave its grandchildren running."""
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return None
    try:
        out, _ = proc.communicate(timeout=PROBE_TIMEOUT_S if timeout is None else timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()
        return None
    finally:
        if proc.poll() is None:  # interrupted: leave nothing of the probe behind
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    return proc.returncode, out.decode(errors="replace")


def _python_version(python: str | Path) -> tuple[int, int] | None:
    """(major, minor) of an interpreter that actually runs, else None."""
    result = _probe([str(python), "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                    timeout=min(30.0, PROBE_TIMEOUT_S))
    if result is None or result[0] != 0:
        return None
    try:
        major, minor = (int(part) for part in result[1].split())
    except ValueError:
        return None
    return major, minor


def _imports(python: str | Path, modules: str) -> bool:
    """Whether `python` can import `modules` (comma-separated)."""
    result = _probe([str(python), "-c", f"import {modules}, sys; sys.exit(0)"])
    return result is not None and result[0] == 0


def _has_lava(python: str | Path) -> bool:
    return _imports(python, "lava.magma, numpy")


def _has_sidecar(python: str | Path) -> bool:
    """spikingmind's sidecar modules import there (spikingmind installed into the venv)."""
    return _imports(python, "spikingmind.fixed_point, spikingmind.export.lava_sidecar.plan")


def _install_spikingmind(python: Path) -> None:
    """spikingmind into the sidecar venv: editable, without dependencies (torch & co. stay out)."""
    if not (REPO_ROOT / "pyproject.toml").is_file():
        raise LavaError(f"{python} cannot import spikingmind and no checkout is at {REPO_ROOT} to install it from; "
                        f"run `pip install --no-deps --ignore-requires-python -e <spikingmind checkout>` with it")
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                             "--ignore-requires-python", "-e", str(REPO_ROOT)], capture_output=True, text=True)
    if result.returncode != 0:
        raise LavaError(f"installing spikingmind (editable, --no-deps) into {python} failed: "
                        f"{result.stderr.strip().splitlines()[-1:] or result.returncode}")


def find_base_python310() -> Path | None:
    """A runnable Python 3.10 to build the venv from (PATH, then pyenv), or None."""
    candidates: list[str] = []
    on_path = shutil.which("python3.10")
    if on_path:
        candidates.append(on_path)
    pyenv_root = os.environ.get("PYENV_ROOT")
    if not pyenv_root and shutil.which("pyenv"):
        result = _probe(["pyenv", "root"], timeout=30)
        pyenv_root = (result[1].strip() or None) if result is not None and result[0] == 0 else None
    for root in filter(None, [pyenv_root, str(Path.home() / ".pyenv")]):
        candidates += sorted(glob.glob(os.path.join(root, "versions", "3.10.*", "bin", "python")), reverse=True)
    for candidate in candidates:
        if _python_version(candidate) == (3, 10):
            return Path(candidate)
    return None


def find_lava_python(venv: str | Path | None = None) -> Path:
    """The interpreter that runs the Lava sidecar.

    $SPIKINGMIND_LAVA_PYTHON wins when set (it must run, be Python 3.10 and import lava);
    otherwise `<venv>/bin/python` (default `.venv-lava` in the repo). Raises LavaError with
    one line saying how to get one.
    """
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        version = _python_version(explicit)
        if version is None:
            raise LavaError(f"{ENV_VAR}={explicit} does not run as a Python interpreter; {HOW_TO_GET_ONE}")
        if version != (3, 10):
            raise LavaError(f"{ENV_VAR}={explicit} is Python {version[0]}.{version[1]}, Lava needs 3.10; "
                            f"{HOW_TO_GET_ONE}")
        if not _has_lava(explicit):
            raise LavaError(f"{ENV_VAR}={explicit} cannot import lava; {HOW_TO_GET_ONE}")
        if not _has_sidecar(explicit):
            raise LavaError(f"{ENV_VAR}={explicit} cannot import spikingmind's sidecar; install it there with "
                            f"`{explicit} -m pip install --no-deps --ignore-requires-python -e {REPO_ROOT}`")
        return Path(explicit)
    python = Path(venv or DEFAULT_VENV) / "bin" / "python"
    if not python.exists():
        raise LavaError(f"no Lava environment at {python.parent.parent}; {HOW_TO_GET_ONE}")
    if _python_version(python) != (3, 10) or not _has_lava(python):
        raise LavaError(f"{python} is not a working Python 3.10 with lava-nc; {HOW_TO_GET_ONE}")
    if not _has_sidecar(python):
        raise LavaError(f"{python} cannot import spikingmind's sidecar (an environment from before it was "
                        f"installed there); run `make lava-env`")
    return python


def lava_available(venv: str | Path | None = None) -> bool:
    try:
        find_lava_python(venv)
    except LavaError:
        return False
    return True


def create_lava_env(venv: str | Path = DEFAULT_VENV, *, python: str | Path | None = None) -> Path:
    """Create (or complete) the sidecar venv; returns its interpreter. Idempotent."""
    venv = Path(venv)
    target = venv / "bin" / "python"
    if target.exists() and _python_version(target) == (3, 10) and _has_lava(target):
        if not _has_sidecar(target):
            _install_spikingmind(target)
        return target
    explicit = python or os.environ.get(ENV_VAR)
    base = Path(explicit) if explicit else find_base_python310()
    if explicit and _python_version(base) != (3, 10):
        raise LavaError(f"{base} is not a runnable Python 3.10 (Lava 0.10 needs <= 3.10); {HOW_TO_GET_ONE}")
    if base is None:
        raise LavaError(f"no Python 3.10 interpreter found (Lava 0.10 needs <= 3.10); {HOW_TO_GET_ONE}")
    if not target.exists():
        subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(target), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                             *LAVA_REQUIREMENTS], capture_output=True, text=True)
    if result.returncode != 0:
        raise LavaError(f"pip install {' '.join(LAVA_REQUIREMENTS)} into {venv} failed: "
                        f"{result.stderr.strip().splitlines()[-1:] or result.returncode}")
    if not _has_lava(target):
        raise LavaError(f"{target} still cannot import lava after installation; {HOW_TO_GET_ONE}")
    _install_spikingmind(target)
    if not _has_sidecar(target):
        raise LavaError(f"{target} still cannot import spikingmind's sidecar after installing it; {HOW_TO_GET_ONE}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(DEFAULT_VENV), help="folder of the sidecar venv")
    parser.add_argument("--python", default=None, help="base Python 3.10 to build it from")
    args = parser.parse_args(argv)
    try:
        python = create_lava_env(args.venv, python=args.python)
    except LavaError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"Lava sidecar ready: {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
