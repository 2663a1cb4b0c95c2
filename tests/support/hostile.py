"""Helpers of the hostile-input, fault and fuzz tests: what a refused command must look like,
files before and after, and the processes that carry a test's marker."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from typer.testing import CliRunner

from spikingmind.cli import app

runner = CliRunner()


def invoke(*args, **kwargs):
    """The CLI in this process (CliRunner), arguments as strings."""
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def assert_refused(result, *fragments: str, exit_code: int = 2) -> str:
    """The command failed with `exit_code`, no traceback, and exactly one `error:` line that
    contains every fragment (a file name, a field); returns that line."""
    output = result.output
    assert result.exit_code == exit_code, (result.exit_code, output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert str(fragment) in errors[0], (fragment, errors[0])
    return errors[0]


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file (hidden ones too) under `roots` (files or folders), by path."""
    found = {}
    for root in map(Path, roots):
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_kept(before: dict[str, str], *roots: Path) -> None:
    """Every file of `before` is still there, byte for byte."""
    after = snapshot(*roots)
    changed = sorted(path for path, digest in before.items() if after.get(path) != digest)
    assert not changed, f"changed or lost: {changed}"


def processes_with(marker: str) -> list[int]:
    """Pids of the processes (other than this one) whose environment holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry))
    return found


def dead_pid() -> int:
    """The pid of a process that has just exited (for temp names of dead writers)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
