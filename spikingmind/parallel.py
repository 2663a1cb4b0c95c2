"""Independent jobs in worker processes: results in job order, progress as jobs finish, and
a clean Ctrl-C. Used by data collection and the expert report."""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

from spikingmind.errors import ConfigError


def check_workers(workers: Any) -> int:
    """`workers` as an int >= 1, or ConfigError."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a whole number >= 1, got {workers!r}")
    return workers


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    # Ctrl-C reaches the whole process group: only the parent acts on it (it cancels what
    # is queued and waits for the running jobs), so workers never die mid-job with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def map_in_workers(function: Callable[..., Any], jobs: Sequence[tuple], workers: int, *,
                   progress: Callable[[int, int], None] | None = None,
                   initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> list:
    """[function(*job) for job in jobs], computed in `workers` processes; 1 runs in this process.

    Workers start fresh interpreters (forkserver, else spawn: safe after torch or threads),
    so `function`, `jobs` and `initargs` must pickle (module-level functions); `initializer`
    runs once in each worker only. `progress(done, total)` is called in this process as jobs
    finish. A job's exception is re-raised here. On Ctrl-C queued jobs are cancelled, running
    ones finish, then KeyboardInterrupt propagates.
    """
    check_workers(workers)
    jobs = list(jobs)
    total = len(jobs)
    if workers == 1 or total <= 1:
        results = []
        for done, job in enumerate(jobs, start=1):
            results.append(function(*job))
            if progress is not None:
                progress(done, total)
        return results
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    executor = ProcessPoolExecutor(max_workers=min(workers, total), mp_context=multiprocessing.get_context(method),
                                   initializer=_start_worker, initargs=(initializer, initargs))
    results: list = [None] * total
    try:
        futures = {executor.submit(function, *job): index for index, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, total)
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results
