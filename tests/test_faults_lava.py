"""Faults: `spikingmind evaluate --backend lava` killed with SIGKILL or SIGTERM leaves nothing
behind (issue #16, item 1) — no process of the run, no temporary folder, no shared memory.

The command runs as a real subprocess (a kill cannot be simulated in-process). Its processes
are found by a marker this test puts in its environment, which the CLI, the Lava sidecar and
every Lava runtime process inherit (read from /proc/<pid>/environ); only those pids are ever
signalled, never anything found by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from spikingmind.model import ModelConfig
from tests.support.checkpoints import CARTPOLE_OBS_STD, untrained
from tests.support.hostile import processes_with

CLI = "from spikingmind.cli import main; main()"
GONE_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def bundle(lava_python, tmp_path_factory) -> Path:
    """A Lava bundle of a tiny untrained CartPole DT (written, not verified: no Lava run needed)."""
    from spikingmind.export.lava import export_lava_bundle
    from spikingmind.export.nir import checkpoint_to_graph

    root = tmp_path_factory.mktemp("faults")
    ckpt = untrained(root / "ckpt", ModelConfig(width=8, n_blocks=1, context_length=2, time_steps=4), "CartPole-v1",
                     obs_std=CARTPOLE_OBS_STD)
    return export_lava_bundle(checkpoint_to_graph(ckpt), root / "bundle")


def _shared_memory_of(pids: list[int]) -> set[str]:
    """The /dev/shm segments these processes have mapped (Lava's channels: psm_*)."""
    names = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names |= {line.rsplit("/", 1)[1] for line in maps.splitlines() if "/dev/shm/" in line}
    return names


def _lava_runtime_running(pids: list[int]) -> bool:
    """The sidecar has started Lava's runtime: processes beyond the CLI, the sidecar and its
    resource tracker (Lava forks one per process of the network)."""
    sidecars = 0
    for pid in pids:
        try:
            sidecars += b"lava_sidecar.run" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            pass
    return sidecars >= 3


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_evaluate_with_lava_leaves_no_process_folder_or_shared_memory(bundle, signum):
    marker = f"spikingmind-fault-{uuid.uuid4().hex}"
    # a temp folder of the run's own, short: Lava's manager puts Unix sockets (<= 107 bytes) in it
    scratch = Path(tempfile.mkdtemp(prefix="smfault-", dir="/tmp"))
    env = {**os.environ, "SPIKINGMIND_FAULT_MARKER": marker, "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-c", CLI, "evaluate", str(bundle), "--backend", "lava",
                             "--episodes", "20"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _lava_runtime_running(processes_with(marker)):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "Lava's runtime never started"
            time.sleep(0.1)
        time.sleep(1.0)  # the network is running decisions now
        segments = _shared_memory_of(processes_with(marker))  # this run's, whatever other runs do meanwhile
        assert segments, "Lava's runtime mapped no shared memory"
        os.kill(proc.pid, signum)
        proc.wait(timeout=GONE_WITHIN_S)
        gone_by = time.monotonic() + GONE_WITHIN_S
        while processes_with(marker) and time.monotonic() < gone_by:
            time.sleep(0.1)
        survivors = processes_with(marker)
        assert survivors == [], f"{len(survivors)} processes of the killed run still alive after {GONE_WITHIN_S} s"
        assert sorted(p.name for p in scratch.iterdir()) == []  # spikingmind-lava-*, pymp-*: all removed
        leaked = sorted(name for name in segments if (Path("/dev/shm") / name).exists())
        assert leaked == [], f"{len(leaked)} of {len(segments)} shared-memory segments left, e.g. {leaked[:3]}"
        if signum == signal.SIGTERM:  # handled like Ctrl-C: one line, exit 130
            assert proc.returncode == 130
            assert "interrupted" in proc.stderr.read().decode()
    finally:
        for pid in processes_with(marker):  # only this run's processes, by their marker
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)
