"""Rollout workers: chunks of episodes evaluated in this process, local processes or Ray.

Only what defines an episode crosses a process boundary — parameters, small task
records, seeds — and only returns, lengths and per-episode observation sums come
back. Every row's result is independent of how rows were chunked, and results are
merged in row order, so a run is bit-identical with any number of workers. A
worker that dies makes the whole batch run again on a fresh pool (jobs are pure,
so a retry cannot change the answer); a second death is reported, never ignored.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import numpy as np

from metactl.controllers import NormalizerSnapshot, PolicySpec
from metactl.sim import RolloutResult, Task, TaskFamily, make_family, rollout

log = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    """Rollout workers failed in a way a retry did not fix."""


@dataclasses.dataclass(frozen=True)
class RolloutJob:
    """One episode per row: ``params`` [m, P] on ``tasks`` [m] from ``seeds`` [m]."""

    family: str
    spec: PolicySpec
    norm_mean: np.ndarray
    norm_std: np.ndarray
    horizon: int
    params: np.ndarray
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...]


def run_job(job: RolloutJob) -> RolloutResult:
    """Evaluate a job in this process (the function every backend runs)."""
    family: TaskFamily = make_family(job.family)
    norm = NormalizerSnapshot(job.norm_mean, job.norm_std)
    params, forward = job.params, job.spec.forward
    sim = family.make_batch(job.tasks)
    return rollout(sim, lambda obs: forward(params, norm.normalize(obs)), job.seeds, job.horizon)


class Backend(Protocol):
    workers: int

    def map(self, jobs: Sequence[RolloutJob]) -> list[RolloutResult]:
        """Results of ``jobs``, in order."""

    def close(self) -> None: ...


class InProcess:
    """Runs every job here, one after the other."""

    workers = 1

    def map(self, jobs: Sequence[RolloutJob]) -> list[RolloutResult]:
        return [run_job(j) for j in jobs]

    def close(self) -> None:
        pass


class LocalProcesses:
    """A pool of ``workers`` local processes (forkserver: no inherited threads or locks)."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        return self._pool

    def map(self, jobs: Sequence[RolloutJob]) -> list[RolloutResult]:
        for attempt in (1, 2):
            try:
                return list(self._executor().map(run_job, jobs))
            except BrokenProcessPool as e:
                self.close()
                if attempt == 2:
                    raise WorkerError(
                        f"a rollout worker process died twice on the same batch ({e}); "
                        "check memory (dmesg) and the worker's log, or run with --workers 1"
                    ) from e
                log.warning("a rollout worker process died (%s); restarting the pool and re-running the batch", e)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayWorkers:
    """Ray tasks: a local Ray instance with ``workers`` CPUs, or the cluster at ``address``.

    Ray re-runs a task whose worker process died (``max_retries=1``); a second failure
    is reported. Ray is an optional extra (``pip install metactl[ray]``).
    """

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise WorkerError("--backend ray needs Ray: pip install 'metactl[ray]'") from None
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(
                address=address,
                num_cpus=workers if address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        self._remote = ray.remote(max_retries=1)(run_job)
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map(self, jobs: Sequence[RolloutJob]) -> list[RolloutResult]:
        import ray

        try:
            return ray.get([self._remote.remote(j) for j in jobs])
        except ray.exceptions.RayError as e:
            raise WorkerError(f"a Ray rollout task failed after a retry: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        import ray

        if self._owns and ray.is_initialized():
            ray.shutdown()


BACKENDS = ("local", "ray")


def make_backend(workers: int | None, backend: str = "local", address: str | None = None) -> Backend:
    """Local: ``InProcess`` for one worker, else a process pool (``None``: one per core). Ray: ``RayWorkers``."""
    if backend == "ray":
        return RayWorkers(workers, address)
    if backend != "local":
        raise WorkerError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    n = (os.cpu_count() or 1) if workers is None else workers
    return InProcess() if n <= 1 else LocalProcesses(n)


def chunk_bounds(rows: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) row ranges: one chunk in-process, two per worker otherwise."""
    chunks = 1 if workers <= 1 else min(rows, 2 * workers)
    edges = np.linspace(0, rows, chunks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]
