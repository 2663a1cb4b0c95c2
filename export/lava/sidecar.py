"""The Lava sidecar's processes: one run per job (`run_sidecar`) or one persistent server
(`SidecarServer`), each in its own process group with a timeout; the group is killed on any
failure, so a raised LavaError means nothing of it still runs (DESIGN.md's Lava traps).

The sidecar dies with its parent: it is told the parent's pid and its temporary folders
(`SPIKINGMIND_LAVA_PARENT_PID`, `SPIKINGMIND_LAVA_SCRATCH`) and, once orphaned, removes them
and kills its whole process group, Lava's runtime processes included (`lava_sidecar.run`).
Temporary folders are named `spikingmind-lava-<kind>-<pid>-...`; those whose owner died
anyway (a power cut) are removed by the next sidecar start (`remove_stale_scratch`)."""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from spikingmind.errors import LavaError
from spikingmind.export import lava_env
from spikingmind.io import pid_alive

#: The sidecar's entry point, run as a module by the Lava venv's interpreter (spikingmind is
#: installed there without dependencies: `spikingmind.export.lava_env`).
SIDECAR_MODULE = "spikingmind.export.lava_sidecar.run"
DEFAULT_TIMEOUT_S = 120.0
_STDERR_TAIL = 1500


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_group(proc: subprocess.Popen, wait_s: float = 10.0, grace_s: float = 3.0) -> None:
    """End the sidecar's process group (Lava's runtime children included) and wait until no
    member is left, so that a raised LavaError means nothing of it still runs.

    SIGTERM first: the sidecar then kills its children itself and leaves multiprocessing's
    resource tracker to unlink Lava's shared-memory segments (`lava_sidecar.run`); whatever
    is left after `grace_s` (a sidecar stuck in C code) gets SIGKILL."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
            time.sleep(0.02)  # poll() reaps the sidecar; the group then holds what it left (the tracker)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.02)


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = text.strip()
    return text[-_STDERR_TAIL:].replace("\n", " | ") if text else "(no stderr)"


SCRATCH_PREFIX = "spikingmind-lava-"
_SCRATCH_NAME = re.compile(rf"^{SCRATCH_PREFIX}(?:[a-z]+-)?(\d+)-")


def scratch_dir(kind: str) -> Path:
    """A new temporary folder `spikingmind-lava-<kind>-<pid>-...` (the pid says whose it is)."""
    remove_stale_scratch()
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{kind}-{os.getpid()}-"))


def remove_stale_scratch() -> None:
    """Remove this user's `spikingmind-lava-*-<pid>-*` temporary folders whose process is gone."""
    root = Path(tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _SCRATCH_NAME.match(entry.name)
        try:
            mine = entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid()
        except OSError:
            continue
        if match and mine and not pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _sidecar_env(*scratch: Path) -> dict[str, str]:
    """The sidecar's environment: without the main venv's paths, with the parent's pid and the
    folders to remove should the parent die (`lava_sidecar.run` watches it)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the main venv's paths must not leak into 3.10
    env.setdefault("OMP_NUM_THREADS", "1")
    env["SPIKINGMIND_LAVA_PARENT_PID"] = str(os.getpid())
    env["SPIKINGMIND_LAVA_SCRATCH"] = os.pathsep.join(str(p) for p in scratch)
    # the parent-death signal follows the thread that starts the child: ask for it only from
    # the main thread, which lives as long as the process (the getppid watchdog covers the rest)
    env["SPIKINGMIND_LAVA_PDEATHSIG"] = "1" if threading.current_thread() is threading.main_thread() else "0"
    return env


def run_sidecar(plan_dir: Path, mode: str, host_data: dict[str, np.ndarray], n_steps: int, *,
                period: int | None = None, record: list[str] | None = None, batch: int = 1,
                timeout: float = DEFAULT_TIMEOUT_S, python: Path | None = None) -> tuple[dict, dict]:
    """One sidecar run in its own process group; returns (arrays, timing). LavaError on failure.
    `batch`: a streaming plan's episodes side by side (its host data: `host.stream_inputs`)."""
    python = python or lava_env.find_lava_python()
    scratch = scratch_dir("job")
    try:
        np.savez(scratch / "host.npz", **host_data)
        job = {"plan_dir": str(plan_dir), "mode": mode, "host_data": str(scratch / "host.npz"),
               "n_steps": int(n_steps), "period": period, "record": record, "batch": int(batch),
               "out": str(scratch / "out.npz")}
        (scratch / "job.json").write_text(json.dumps(job))
        stderr_path = scratch / "stderr.txt"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen([str(python), "-m", SIDECAR_MODULE, "--job", str(scratch / "job.json")],
                                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                    start_new_session=True, env=_sidecar_env(scratch), cwd=scratch)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise LavaError(f"Lava sidecar ({mode}) timed out after {timeout:.0f} s and was killed; "
                                f"stderr: {_tail(stderr_path)}") from None
            finally:
                _kill_group(proc)  # Lava's runtime children, should any survive
        if rc != 0 or not (scratch / "out.npz").exists():
            raise LavaError(f"Lava sidecar ({mode}) failed with exit code {rc}; stderr: {_tail(stderr_path)}")
        try:
            reply = json.loads((scratch / "out.npz.json").read_text())
            with np.load(scratch / "out.npz", allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            timing = reply["timing"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise LavaError(f"Lava sidecar ({mode}) left an unreadable result ({type(error).__name__}: "
                            f"{' '.join(str(error).split())[:200]})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return arrays, timing


class SidecarServer:
    """A persistent sidecar (`run.py --serve`) answering one JSON job per line."""

    def __init__(self, plan_dir: Path, mode: str, timeout: float, python: Path | None = None):
        self.plan_dir, self.mode, self.timeout = plan_dir, mode, timeout
        self.proc = None
        python = python or lava_env.find_lava_python()
        self.scratch = scratch_dir("serve")
        # folders the sidecar removes when orphaned: its own, and the plan only where it is a scratch copy
        owned = [self.scratch] + ([plan_dir] if _SCRATCH_NAME.match(Path(plan_dir).name) else [])
        self.stderr_path = self.scratch / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen([str(python), "-m", SIDECAR_MODULE, "--serve", str(plan_dir), mode],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         start_new_session=True, env=_sidecar_env(*owned), cwd=self.scratch)
        except OSError as error:
            self._stderr.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise LavaError(f"cannot start the Lava sidecar {python}: {error.strerror or error}") from None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        self._buffer = b""
        self.jobs = 0

    def request(self, host_data: dict[str, np.ndarray], n_steps: int, *, period: int | None = None,
                record: list[str] | None = None, batch: int = 1, fresh: bool = False) -> tuple[dict, dict]:
        """One job; a streaming plan's `batch` episodes side by side, `fresh`: new episodes (a new
        network)."""
        if self.proc.poll() is not None:
            raise self._fail(f"Lava sidecar ({self.mode}) is not running (exit code {self.proc.returncode})")
        self.jobs += 1
        host_path = self.scratch / f"host{self.jobs}.npz"
        out_path = self.scratch / f"out{self.jobs}.npz"
        np.savez(host_path, **host_data)
        job = {"host_data": str(host_path), "n_steps": int(n_steps), "period": period, "record": record,
               "batch": int(batch), "fresh": bool(fresh), "out": str(out_path)}
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail(f"Lava sidecar ({self.mode}) closed its input") from None
        line = self._readline()
        host_path.unlink(missing_ok=True)
        try:
            reply = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise self._fail(f"Lava sidecar ({self.mode}) sent a reply that is not JSON: {line[:80]!r}") from None
        if not isinstance(reply, dict):
            raise self._fail(f"Lava sidecar ({self.mode}) sent a reply that is not a JSON object: {line[:80]!r}")
        if not reply.get("ok"):
            raise self._fail(f"Lava sidecar ({self.mode}) failed: {reply.get('error')}")
        try:
            with np.load(out_path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            timing = dict(reply["timing"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise self._fail(f"Lava sidecar ({self.mode}) replied ok without a readable result "
                             f"({type(error).__name__}: {' '.join(str(error).split())[:120]})") from None
        out_path.unlink(missing_ok=True)
        return arrays, timing

    def _readline(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"Lava sidecar ({self.mode}) timed out after {self.timeout:.0f} s and was killed")
            if not self._selector.select(timeout=remaining):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                self.proc.wait(timeout=5) if self.proc.poll() is None else None
                raise self._fail(f"Lava sidecar ({self.mode}) exited (code {self.proc.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _fail(self, message: str) -> LavaError:
        tail = _tail(self.stderr_path)
        self.close(graceful=False)
        return LavaError(f"{message}; stderr: {tail}")

    def close(self, graceful: bool = True) -> None:
        """End the sidecar: EOF on its input lets it stop Lava cleanly; then kill the group."""
        if getattr(self, "proc", None) is None:
            return
        try:
            if graceful and self.proc.poll() is None and self.proc.stdin:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _kill_group(self.proc)
        self._selector.close()
        self._stderr.close()
        self.proc = None
        shutil.rmtree(self.scratch, ignore_errors=True)

