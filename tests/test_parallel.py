"""Worker processes: results in job order whatever the finishing order, progress per job,
a job's error re-raised in the caller, bad worker counts refused."""

import os
import time

import pytest

from spikingmind.errors import ConfigError, DatasetError
from spikingmind.parallel import map_in_workers


def _slow_square(value: int, delay: float) -> tuple[int, int]:
    time.sleep(delay)
    return value * value, os.getpid()


def _fail_on(value: int) -> int:
    if value == 2:
        raise DatasetError(f"job {value} failed")
    return value


def test_results_keep_job_order_and_run_in_other_processes():
    jobs = [(1, 0.4), (2, 0.0), (3, 0.0), (4, 0.0)]  # the first job finishes last
    seen = []
    results = map_in_workers(_slow_square, jobs, 2, progress=lambda done, total: seen.append((done, total)))
    assert [square for square, _ in results] == [1, 4, 9, 16]
    assert os.getpid() not in {pid for _, pid in results}
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_one_worker_runs_in_this_process():
    results = map_in_workers(_slow_square, [(5, 0.0), (6, 0.0)], 1)
    assert results == [(25, os.getpid()), (36, os.getpid())]


def test_a_job_error_reaches_the_caller():
    with pytest.raises(DatasetError, match="job 2 failed"):
        map_in_workers(_fail_on, [(1,), (2,), (3,)], 2)


@pytest.mark.parametrize("workers", [0, -2, 2.0, True, "2"])
def test_bad_worker_counts_are_refused(workers):
    with pytest.raises(ConfigError, match="--workers"):
        map_in_workers(_fail_on, [(1,)], workers)
