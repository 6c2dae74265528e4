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
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from metactl.deploy.bundles import DeployedBundle, load_bundle
from metactl.deploy.episodes import EpisodeRunner, Seeds
from metactl.deploy.errors import BundleError
from metactl.deploy.hardware_config import HardwareConfig, load_hardware_config
from metactl.deploy.metadata import BundleMetadata
from metactl.deploy.report import OnlineReport, write_report
from metactl.deploy.run_logger import RunLogger
from metactl.deploy.session import RobotSession, RunStoppedError
from metactl.summary import package_versions

log = logging.getLogger(__name__)
LOG_FILE = "run.mcap"
"""The run's log in ``out_dir``: open it in Foxglove, or read it with the ``mcap`` library."""


def check_compatibility(meta: BundleMetadata, config: HardwareConfig) -> None:
    """Raise ``BundleError`` at the first disagreement between a bundle and a robot's config:
    observation/action counts, names and order, or control period (relative tolerance 1e-9)."""
    src = config.path
    pairs = (
        ("observation", list(meta.observation_names), list(config.signals.observations)),
        ("action", list(meta.action_names), list(config.signals.actions)),
    )
    for kind, ours, theirs in pairs:
        fix = f"export a bundle trained for this robot, or fix signals.{kind}s in the config"
        if len(ours) != len(theirs):
            raise BundleError(f"the bundle has {len(ours)} {kind}s but {src} lists {len(theirs)}; {fix}")
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if a != b:
                order = " (same names, different order)" if sorted(ours) == sorted(theirs) else ""
                raise BundleError(f"{kind} {i} is {a!r} in the bundle but {b!r} in {src}{order}; {fix}")
    period = meta.control_period
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
    record: bool = False,
    observers: Sequence[LogSink] = (),
) -> OnlineReport:
    """Adapt the bundle on the robot of ``config`` (a ``HardwareConfig`` or a TOML path).

    ``task`` overrides the config's ``[sim] task`` (test-task index or task dict); ``port`` the
    ``[serial] port``. Every episode seed and the operator's noise derive from ``seed``. A policy bundle runs
    ``1 + adaptation_steps * (queries + 1)`` robot episodes, a model bundle ``1 + adaptation_steps`` in ``mode``
    (default: its own method; 'mb' freezes any model, 'mb_de' runs an MB model with dynamic evaluation); see the
    module docstring. Episodes are paced at the control rate x ``time_scale`` (default: real time on a serial
    robot, unpaced on a simulated one). Writes the report and ``run.mcap`` to ``out_dir`` if given. A run that
    had to stop safely (link lost, state limit) returns a report whose ``status`` says why. ``progress`` logs
    every episode at INFO. ``record`` keeps the observations of the pre and post episodes in the report (for videos).
    ``observers`` receive every log record as the MCAP log does (e.g. ``metactl.live.LiveView``).
    """
    if isinstance(adaptation_steps, bool) or not isinstance(adaptation_steps, int) or adaptation_steps < 1:
        raise ValueError(f"adaptation_steps must be a positive integer, got {adaptation_steps!r}")
    if not isinstance(config, HardwareConfig):
        config = load_hardware_config(config)
    bundle = load_bundle(bundle_dir)
    plan = bundle.plan(mode)  # a wrong mode is refused before the robot is touched
    check_compatibility(bundle.meta, config)
    steps = config.control.episode_steps or bundle.meta.horizon
    seeds = Seeds.draw(seed, adaptation_steps, plan.seeds_per_step)
    if time_scale is None:
        time_scale = 1.0 if config.robot.link == "serial" else 0.0
    logger = None
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        run = {"seed": seed, "adaptation_steps": adaptation_steps, "time_scale": time_scale, "mode": mode}
        logger = open_log(os.path.join(out_dir, LOG_FILE), bundle, config, plan.description, run)
    for sink in observers:
        name_signals(sink, config)
    sinks = [s for s in (logger, *observers) if s is not None]
    log_fn = (lambda topic, rec, t_ns: [s.log(topic, rec, t_ns) for s in sinks]) if sinks else None
    status, detail, failed_over, runner = "completed", "", False, None
    link_info, health, events = {"link": config.robot.link}, {}, ()
    session_type, session_args = RobotSession, {}
    if config.robot.policy_on == "controller":  # the policy runs on the motor controller (protocol v2)
        from metactl.deploy.controller_session import ControllerSession

        session_type, session_args = ControllerSession, {"bundle": bundle}
    try:
        with (
            realtime_process(),
            session_type(
                config,
                task=task,
                port=port,
                log_fn=log_fn,
                time_scale=time_scale,
                idle_fn=logger.set_budget if logger else None,
                **session_args,
            ) as session,
        ):
            runner = EpisodeRunner(session, steps, logging.INFO if progress else logging.DEBUG, record)
            try:
                plan.run(runner, seeds, adaptation_steps)
            except RunStoppedError as e:
                status, detail = e.reason, e.detail
                log.warning("run stopped safely: %s", e)
            failed_over = session.failed_over
            link_info = session.link.describe()
            health = {"timing": session.timer.summary(), "safety": dict(session.safety.counts)}
            if counters := session.link_counters():
                health["link_counters"] = counters
            health["reconnects"] = getattr(session, "reconnects", 0)
            health["missed_steps"] = session.missed_steps
            if hasattr(session, "controller_status"):
                health["controller"] = session.controller_status()
            events = tuple(session.events)
    except RunStoppedError as e:  # the robot failed during start-up, before any episode
        status, detail = e.reason, e.detail
        log.warning("run stopped safely during start-up: %s", e)
    finally:
        if logger is not None:
            logger.close()
            health["log"] = logger.counts()

    records = tuple(runner.records) if runner is not None else ()
    pre = [r.episode_return for r in records if r.kind == "pre"]
    report = OnlineReport(
        episodes=records,
        pre_adaptation_return=pre[0] if pre else math.nan,
        post_adaptation_returns=tuple(r.episode_return for r in records if r.kind == "post"),
        adapted_params=plan.params,
        bundle_dir=bundle_dir,
        config_path=config.path,
        link=link_info,
        adaptation=plan.description,
        seed=seed,
        status=status,
        detail=detail,
        failed_over=failed_over,
        events=events,
        health=health,
        observations=runner.observations if runner is not None else {},
    )
    log.info("adaptation on %s: return %.3f -> %.3f", config.robot.name, report.pre_adaptation_return,
             report.post_adaptation_return)  # fmt: skip
    if out_dir is not None:
        write_report(report, out_dir, dataclasses.asdict(config))
    return report


def open_log(
    path: str, bundle: DeployedBundle, config: HardwareConfig, adaptation: dict[str, Any], run: dict[str, Any]
) -> RunLogger:
    """The run's MCAP log, opened with what a reader needs to understand it: named signal fields, a Metadata record
    (bundle, config, adaptation, versions) and the bundle's metadata and the hardware config as attachments."""
    logger = RunLogger(path)
    name_signals(logger, config)
    logger.metadata("run", {"bundle": os.path.abspath(bundle.directory), "bundle_kind": bundle.meta.kind,
                            "family": bundle.meta.family, "config": os.path.abspath(config.path),
                            "robot": config.robot.name, "link": config.robot.link, "adaptation": adaptation,
                            "observation_names": list(config.signals.observations),
                            "action_names": list(config.signals.actions), **run,
                            "versions": package_versions()})  # fmt: skip
    logger.attach("bundle/metadata.json", "application/json", json.dumps(bundle.meta.raw, indent=2).encode())
    with open(config.path, "rb") as f:
        logger.attach(os.path.basename(config.path), "application/toml", f.read())
    return logger


class LogSink(Protocol):
    """Where a run's records go: the MCAP log, a live view."""

    def log(self, topic: str, record: dict[str, Any], t_ns: int) -> None: ...

    def name_fields(self, topic: str, field: str, names: Sequence[str]) -> None: ...


def name_signals(sink: LogSink, config: HardwareConfig) -> None:
    """States and commands are written with the robot's signal names (Foxglove plots each by name)."""
    sink.name_fields("/state", "obs", config.signals.observations)
    for field in ("policy", "sent"):
        sink.name_fields("/command", field, config.signals.actions)


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
