"""Rollout workers: identical results with any number of processes; a dying worker is retried."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time

import numpy as np
import pytest

from metactl import sim, train
from metactl.controllers import NormalizerSnapshot, PolicySpec
from metactl.train.workers import InProcess, LocalProcesses, RolloutJob, WorkerError, chunk_bounds

TINY = {"iterations": 2, "directions": 3, "tasks_per_iteration": 2, "eval_every": 1, "eval_repeats": 1}


def test_chunks_cover_all_rows_in_order() -> None:
    for rows in (1, 5, 96, 1000):
        for workers in (1, 2, 3, 8):
            bounds = chunk_bounds(rows, workers)
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a < b for a, b in bounds)
            assert all(b == c for (_, b), (c, _) in itertools.pairwise(bounds))
    assert chunk_bounds(96, 1) == [(0, 96)]


@pytest.mark.parametrize(
    ("family", "extra"),
    [
        ("four_corners", {}),
        (
            "halfcheetah_fb",
            {"horizon": 20, "adaptation": {"name": "hill_climb", "queries": 2, "sigma": 0.1, "mode": "average"}},
        ),
    ],
)
def test_one_and_two_workers_give_identical_runs(tmp_path, family: str, extra: dict) -> None:
    cfg = train.config_for(family, **TINY, **extra)
    one = train.train(cfg, str(tmp_path / "one"), progress=False, workers=1)
    two = train.train(cfg, str(tmp_path / "two"), progress=False, workers=2)
    with np.load(one.policy_path) as a, np.load(two.policy_path) as b:
        for key in ("params", "norm_mean", "norm_std"):
            np.testing.assert_array_equal(a[key], b[key])
    for key in ("heldout_pre_per_task", "heldout_post_per_task", "episodes", "env_steps"):
        assert one.summary[key] == two.summary[key]


def _jobs(rows: int = 8, horizon: int = 200) -> list[RolloutJob]:
    fam = sim.make_family("halfcheetah_fb")
    spec = PolicySpec("linear", fam.obs_dim, fam.act_dim, tuple(fam.action_low), tuple(fam.action_high))
    params = 0.3 * np.random.default_rng(0).standard_normal((rows, spec.num_params))
    norm = NormalizerSnapshot.identity(fam.obs_dim)
    tasks = fam.sample_tasks(np.random.default_rng(1), rows)
    half = rows // 2
    return [
        RolloutJob(fam.name, spec, norm.mean, norm.std, horizon, params[a:b], tuple(tasks[a:b]), tuple(range(a, b)))
        for a, b in ((0, half), (half, rows))
    ]


def test_a_worker_killed_mid_batch_is_retried_and_the_answer_is_unchanged() -> None:
    jobs = _jobs()
    expected = InProcess().map(jobs)
    pool = LocalProcesses(2)
    try:
        pool.map(jobs[:1])  # start the workers
        victim = next(iter(pool._pool._processes.values()))  # type: ignore[union-attr]
        killer = threading.Timer(0.2, os.kill, (victim.pid, signal.SIGKILL))
        killer.start()
        t0 = time.perf_counter()
        got = pool.map(jobs * 4)
        killer.join()
        assert time.perf_counter() - t0 > 0.2  # the kill landed while the batch was running
    finally:
        pool.close()
    for g, e in zip(got, expected * 4, strict=True):
        np.testing.assert_array_equal(g.returns, e.returns)


class _DyingPool(LocalProcesses):
    """A pool whose worker processes are killed as soon as they have started."""

    def _executor(self):  # type: ignore[no-untyped-def]
        executor = super()._executor()
        executor.submit(os.getpid).result()  # the workers are up
        for proc in list(executor._processes.values()):  # type: ignore[union-attr]
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
        return executor


def test_a_worker_that_keeps_dying_is_reported_not_ignored() -> None:
    pool = _DyingPool(1)
    try:
        with pytest.raises(WorkerError, match="died twice"):
            pool.map(_jobs(rows=2, horizon=5))
    finally:
        pool.close()
