"""Online adaptation on the robot: the ES-MAML operator run episode by episode, or adaptive MPC every step.

Song et al., "ES-MAML: Simple Hessian-Free Meta Learning", ICLR 2020: the meta-trained
policy is adapted to the task at hand by the same operator U(theta, T) used in training
(ES gradient step or hill climbing), now with real robot episodes as the queries.

``run_online``: load and check the bundle, open the robot, evaluate the trained
parameters (pre), then per adaptation step run the operator — every parameter vector
it asks for is exactly one robot episode, inferred by the ONNX graph with the vector
fed as ``params`` — and evaluate the adapted parameters (post). Pre and every post
episode share one seed so they are comparable; query episodes get distinct seeds.

A model bundle (GrBAL / ReBAL / MB, Nagabandi et al., ICLR 2019) adapts within the episode, at
every control step: "pre" is an episode with the model frozen at its trained weights (no
adaptation), and each "post" episode adapts online as trained, on the same episode seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from controllers import AdaptationError, AdaptationOperator, make_operator
from deploy import metadata as md
from deploy.bundle import Bundle
from deploy.errors import BundleError
from deploy.hardware_config import HardwareConfig, load_hardware_config
from deploy.model_bundle import ModelBundle, read_metadata
from deploy.report import EpisodeRecord, OnlineReport, write_report
from deploy.run_logger import RunLogger
from deploy.session import Controller, PolicyController, RobotSession, RunStoppedError

log = logging.getLogger(__name__)
LOG_FILE = "run.mcap"
"""The run's log in ``out_dir``: open it in Foxglove, or read it with the ``mcap`` library."""


def check_compatibility(bundle_metadata: Mapping[str, Any], config: HardwareConfig) -> None:
    """Raise ``BundleError`` at the first disagreement between a bundle and a robot's config:
    observation/action counts, names and order, or control period (relative tolerance 1e-9)."""
    src = config.path
    pairs = (
        ("observation", list(bundle_metadata["observation_names"]), list(config.signals.observations)),
        ("action", list(bundle_metadata["action_names"]), list(config.signals.actions)),
    )
    for kind, ours, theirs in pairs:
        fix = f"export a bundle trained for this robot, or fix signals.{kind}s in the config"
        if len(ours) != len(theirs):
            raise BundleError(f"the bundle has {len(ours)} {kind}s but {src} lists {len(theirs)}; {fix}")
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if a != b:
                order = " (same names, different order)" if sorted(ours) == sorted(theirs) else ""
                raise BundleError(f"{kind} {i} is {a!r} in the bundle but {b!r} in {src}{order}; {fix}")
    period = float(bundle_metadata["control_period"])
    if not math.isclose(period, config.control.period_s, rel_tol=1e-9):
        raise BundleError(
            f"the bundle was trained with control period {period} s but {src} has "
            f"control.period_s = {config.control.period_s}; export a bundle trained at this rate, or fix the config"
        )


def run_online(
    bundle_dir: str,
    config: HardwareConfig | str,
    *,
    task: int | Mapping[str, Any] | None = None,
    adaptation_steps: int = 1,
    seed: int = 0,
    out_dir: str | None = None,
    progress: bool = False,
    port: str | None = None,
    time_scale: float | None = None,
    mode: str | None = None,
) -> OnlineReport:
    """Adapt the bundle's policy on the robot of ``config`` (a ``HardwareConfig`` or a TOML path).

    ``task`` overrides the config's ``[sim] task`` (test-task index or task dict); ``port`` the
    ``[serial] port``. Every episode seed and the operator's noise derive from ``seed``. Runs
    ``1 + adaptation_steps * (sum(operator.schedule()) + 1)`` robot episodes, paced at the control
    rate x ``time_scale`` (default: real time on a serial robot, unpaced on a simulated one). Writes
    the report and ``run.mcap`` to ``out_dir`` if given. A run that had to stop safely (link lost,
    state limit) returns a report whose ``status`` says why. ``progress`` logs every episode at INFO.
    A model bundle runs 1 + ``adaptation_steps`` episodes (see the module docstring) in ``mode`` (default: its
    own method; 'mb' freezes any model, 'mb_de' runs an MB model with dynamic evaluation).
    """
    if isinstance(adaptation_steps, bool) or not isinstance(adaptation_steps, int) or adaptation_steps < 1:
        raise ValueError(f"adaptation_steps must be a positive integer, got {adaptation_steps!r}")
    if not isinstance(config, HardwareConfig):
        config = load_hardware_config(config)
    model_based = md.bundle_kind(read_metadata(bundle_dir)) == md.MODEL_KIND
    bundle: Bundle | ModelBundle = ModelBundle.load(bundle_dir) if model_based else Bundle.load(bundle_dir)
    meta = bundle.metadata
    if mode is not None and not model_based:
        raise BundleError(f"bundle {bundle_dir} is an ES policy; --mode applies to model bundles only")
    check_compatibility(meta, config)
    operator = None
    if isinstance(bundle, ModelBundle):
        bundle.controller(0, mode=mode)  # refuse a wrong mode before touching the robot
        adaptation = {"name": mode or bundle.method, "method": bundle.method, "planner": meta["planner"],
                      "window": meta["window"]}  # fmt: skip
    else:
        try:
            operator = make_operator(meta["adaptation"])
        except (AdaptationError, TypeError) as e:
            fix = "re-run `metactl export`"
            raise BundleError(f"bundle {bundle_dir}: metadata 'adaptation' is invalid ({e}); {fix}") from None
        adaptation = dict(meta["adaptation"])
    steps = config.control.episode_steps or meta["horizon"]
    seeds = _Seeds.draw(seed, adaptation_steps, sum(operator.schedule()) if operator else 0)
    if time_scale is None:
        time_scale = 1.0 if config.robot.link == "serial" else 0.0
    logger = None
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        logger = RunLogger(os.path.join(out_dir, LOG_FILE))
    params = np.array(bundle.params, dtype=np.float64) if operator else np.zeros(0)
    pre, post, status = math.nan, [], "completed"
    runner, link_info, health, events = None, {"link": config.robot.link}, {}, ()
    try:
        with (
            realtime_process(),
            RobotSession(
                config,
                task=task,
                port=port,
                log_fn=logger.log if logger else None,
                time_scale=time_scale,
                idle_fn=logger.set_budget if logger else None,
            ) as session,
        ):
            runner = _EpisodeRunner(session, steps, logging.INFO if progress else logging.DEBUG)
            try:
                if isinstance(bundle, ModelBundle):  # adapts inside every episode; the planner's noise is seeded
                    frozen = bundle.controller(seeds.operator[0], mode=mode, adapt=False)
                    pre = runner.run("pre", frozen, seeds.evaluation, step=0)
                    for step in range(1, adaptation_steps + 1):
                        online = bundle.controller(seeds.operator[step - 1], mode=mode)
                        post.append(runner.run("post", online, seeds.evaluation, step=step))
                else:
                    pre = runner.run("pre", PolicyController(bundle.act, params), seeds.evaluation, step=0)
                    for step in range(1, adaptation_steps + 1):
                        params = _adapt(operator, runner, bundle, params, seeds.operator[step - 1], seeds.queries, step)
                        post.append(runner.run("post", PolicyController(bundle.act, params), seeds.evaluation, step))
            except RunStoppedError as e:
                status = f"stopped: {e}"
                log.warning("run stopped safely: %s", e)
            link_info = session.link.describe()
            health = {"timing": session.timer.summary(), "safety": dict(session.safety.counts)}
            if hasattr(session.link, "counters"):
                health["link_counters"] = session.link.counters()
            elif session.lost_link_counters is not None:  # failed over: the serial link's record
                health["link_counters"] = session.lost_link_counters
            health["missed_steps"] = session.missed_steps
            events = tuple(session.events)
    except RunStoppedError as e:  # the robot failed during start-up, before any episode
        status = f"stopped: {e}"
        log.warning("run stopped safely during start-up: %s", e)
    finally:
        if logger is not None:
            logger.close()

    report = OnlineReport(
        episodes=tuple(runner.records) if runner is not None else (),
        pre_adaptation_return=pre,
        post_adaptation_returns=tuple(post),
        adapted_params=params,
        bundle_dir=bundle_dir,
        config_path=config.path,
        link=link_info,
        adaptation=adaptation,
        seed=seed,
        status=status,
        events=events,
        health=health,
    )
    log.info("adaptation on %s: return %.3f -> %.3f", config.robot.name, pre, report.post_adaptation_return)
    if out_dir is not None:
        write_report(report, out_dir, dataclasses.asdict(config))
    return report


@dataclasses.dataclass
class _Seeds:
    """Distinct episode and operator seeds of one run: pre and post evaluations share one seed so they are
    comparable; every operator run and every query episode gets its own."""

    evaluation: int
    operator: list[int]
    queries: Iterator[int]

    @classmethod
    def draw(cls, seed: int, adaptation_steps: int, queries_per_step: int) -> _Seeds:
        n = 1 + adaptation_steps * (1 + queries_per_step)
        s = [int(x) for x in np.random.default_rng(seed).choice(2**31 - 1, size=n, replace=False)]
        return cls(s[0], s[1 : 1 + adaptation_steps], iter(s[1 + adaptation_steps :]))


@contextlib.contextmanager
def realtime_process() -> Iterator[None]:
    """For the duration of a run: SIGTERM ends it like Ctrl-C (so the robot is safe-stopped and the log
    closed on the way out), and the GIL is handed over every 0.1 ms, so the logging thread never holds the
    control loop for the interpreter's default 5 ms."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if main:
            signal.signal(signal.SIGTERM, old)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class _EpisodeRunner:
    """Runs episodes in one session and records each one."""

    def __init__(self, session: RobotSession, steps: int, log_level: int):
        self.session, self.steps, self.log_level = session, steps, log_level
        self.records: list[EpisodeRecord] = []

    def run(self, kind: str, controller: Controller, seed: int, step: int, rnd: int = -1, query: int = -1) -> float:
        ret, length = self.session.episode(controller, seed, self.steps)
        record = EpisodeRecord(len(self.records), kind, step, rnd, query, seed, ret, length)
        self.records.append(record)
        self.session.log_fn("/adaptation", dataclasses.asdict(record))
        log.log(self.log_level, "episode %d (%s, step %d): return %.3f", len(self.records) - 1, kind, step, ret)
        return ret


def _adapt(
    operator: AdaptationOperator,
    runner: _EpisodeRunner,
    bundle: Bundle,
    params: np.ndarray,
    op_seed: int,
    query_seeds: Iterator[int],
    step: int,
) -> np.ndarray:
    """One run of ``operator`` from ``params``; every vector it asks for is one robot episode. New params.

    The operator's own work (ask, tell) runs between episodes, off the control loop; its time is logged."""
    state = operator.start(params, op_seed)
    for rnd, n in enumerate(operator.schedule()):
        t0 = time.perf_counter()
        candidates = operator.ask(state)
        ask_s = time.perf_counter() - t0
        if len(candidates) != n:
            raise RuntimeError(f"operator asked for {len(candidates)} queries in round {rnd}; its schedule says {n}")
        returns = [
            runner.run("query", PolicyController(bundle.act, c), next(query_seeds), step, rnd, q)
            for q, c in enumerate(candidates)
        ]
        t0 = time.perf_counter()
        state = operator.tell(state, np.asarray(returns))
        adapt_ms = 1e3 * (ask_s + time.perf_counter() - t0)
        runner.session.log_fn("/adaptation_step", {"step": step, "round": rnd, "queries": n, "adapt_ms": adapt_ms})
    return np.asarray(state.params, dtype=np.float64)
