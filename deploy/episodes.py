"""Episodes on the robot: the seeds of one run and the runner that records every episode it runs.

An adaptation plan (``deploy.bundles``) drives the runner: an ES policy runs its operator's query
episodes between evaluations; a dynamics model adapts inside every episode. Either way every robot
episode goes through ``EpisodeRunner.run`` and is recorded, logged and counted the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from metactl.deploy.report import EpisodeRecord
from metactl.deploy.session import Controller, RobotSession

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Seeds:
    """Distinct episode and operator seeds of one run: pre and post evaluations share one seed so they are
    comparable; every operator run and every query episode gets its own."""

    evaluation: int
    operator: list[int]
    queries: Iterator[int]

    @classmethod
    def draw(cls, seed: int, adaptation_steps: int, queries_per_step: int) -> Seeds:
        n = 1 + adaptation_steps * (1 + queries_per_step)
        s = [int(x) for x in np.random.default_rng(seed).choice(2**31 - 1, size=n, replace=False)]
        return cls(s[0], s[1 : 1 + adaptation_steps], iter(s[1 + adaptation_steps :]))


class EpisodeRunner:
    """Runs episodes in one session and records each one."""

    def __init__(self, session: RobotSession, steps: int, log_level: int = logging.DEBUG, record: bool = False):
        self.session, self.steps, self.log_level, self.record = session, steps, log_level, record
        self.records: list[EpisodeRecord] = []
        self.observations: dict[int, np.ndarray] = {}
        """Episode index -> its observations [length + 1, obs_dim], for the 'pre' and 'post' episodes if ``record``."""

    def run(self, kind: str, controller: Controller, seed: int, step: int, rnd: int = -1, query: int = -1) -> float:
        """The return of one episode of ``kind`` ('pre', 'query' or 'post') driven by ``controller``."""
        seen: list[np.ndarray] | None = [] if self.record and kind != "query" else None
        ret, length = self.session.episode(controller, seed, self.steps, seen)
        record = EpisodeRecord(len(self.records), kind, step, rnd, query, seed, ret, length)
        if seen is not None:
            self.observations[record.index] = np.array(seen)
        self.records.append(record)
        self.session.log_fn("/adaptation", dataclasses.asdict(record))
        log.log(self.log_level, "episode %d (%s, step %d): return %.3f", len(self.records) - 1, kind, step, ret)
        return ret

    def returns(self, kind: str) -> list[float]:
        return [r.episode_return for r in self.records if r.kind == kind]


class AdaptationPlan(Protocol):
    """How a bundle adapts on the robot, whatever its kind; ``run_online`` only calls this."""

    description: dict
    """What ``summary.json`` records under ``adaptation``."""
    queries_per_step: int
    """Robot episodes one adaptation step queries besides its evaluation."""
    seeds_per_step: int
    """Distinct episode seeds one adaptation step's queries need (queries may share a start state)."""
    params: np.ndarray
    """The parameters after the last adaptation step (empty where the bundle adapts inside episodes)."""

    def run(self, runner: EpisodeRunner, seeds: Seeds, adaptation_steps: int) -> None:
        """The 'pre' episode, then per adaptation step its queries and its 'post' episode."""
