"""The Lava sidecar's processes: one run per job (`run_sidecar`) or one persistent server
(`SidecarServer`), each in its own process group with a timeout; the group is killed on any
failure, so a raised LavaError means nothing of it still runs (DESIGN.md's Lava traps)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from spikingmind.errors import LavaError
from spikingmind.export import lava_env

#: The sidecar's entry point, run as a module by the Lava venv's interpreter (spikingmind is
#: installed there without dependencies: `spikingmind.export.lava_env`).
SIDECAR_MODULE = "spikingmind.export.lava_sidecar.run"
DEFAULT_TIMEOUT_S = 120.0
_STDERR_TAIL = 1500


def _kill_group(proc: subprocess.Popen, wait_s: float = 10.0) -> None:
    """SIGKILL the sidecar's process group (Lava's runtime children included) and wait until
    no member is left, so that a raised LavaError means nothing of it still runs."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = text.strip()
    return text[-_STDERR_TAIL:].replace("\n", " | ") if text else "(no stderr)"


def _sidecar_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the main venv's paths must not leak into 3.10
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_sidecar(plan_dir: Path, mode: str, host_data: dict[str, np.ndarray], n_steps: int, *,
                period: int | None = None, record: list[str] | None = None, batch: int = 1,
                timeout: float = DEFAULT_TIMEOUT_S, python: Path | None = None) -> tuple[dict, dict]:
    """One sidecar run in its own process group; returns (arrays, timing). LavaError on failure.
    `batch`: a streaming plan's episodes side by side (its host data is (batch, size, n_steps))."""
    python = python or lava_env.find_lava_python()
    with tempfile.TemporaryDirectory(prefix="spikingmind-lava-") as scratch:
        scratch = Path(scratch)
        np.savez(scratch / "host.npz", **host_data)
        job = {"plan_dir": str(plan_dir), "mode": mode, "host_data": str(scratch / "host.npz"),
               "n_steps": int(n_steps), "period": period, "record": record, "batch": int(batch),
               "out": str(scratch / "out.npz")}
        (scratch / "job.json").write_text(json.dumps(job))
        stderr_path = scratch / "stderr.txt"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen([str(python), "-m", SIDECAR_MODULE, "--job", str(scratch / "job.json")],
                                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                    start_new_session=True, env=_sidecar_env(), cwd=scratch)
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
        reply = json.loads((scratch / "out.npz.json").read_text())
        with np.load(scratch / "out.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    return arrays, reply["timing"]


class SidecarServer:
    """A persistent sidecar (`run.py --serve`) answering one JSON job per line."""

    def __init__(self, plan_dir: Path, mode: str, timeout: float, python: Path | None = None):
        self.plan_dir, self.mode, self.timeout = plan_dir, mode, timeout
        self.scratch = Path(tempfile.mkdtemp(prefix="spikingmind-lava-serve-"))
        self.stderr_path = self.scratch / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")
        python = python or lava_env.find_lava_python()
        self.proc = subprocess.Popen([str(python), "-m", SIDECAR_MODULE, "--serve", str(plan_dir), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=True, env=_sidecar_env(), cwd=self.scratch)
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
        reply = json.loads(self._readline())
        host_path.unlink(missing_ok=True)
        if not reply.get("ok"):
            raise self._fail(f"Lava sidecar ({self.mode}) failed: {reply.get('error')}")
        with np.load(out_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        out_path.unlink(missing_ok=True)
        return arrays, reply["timing"]

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

