"""A run whose policy runs on the motor controller (``[robot] policy_on = "controller"``, protocol version 2).

The controller holds the exported policy (``firmware/``, built from the bundle) and runs it at its control
rate; the host supervises. For every episode the adaptation plan asks for, ``ControllerSession.episode``
uploads the episode's parameter vector (PARAMS chunks + a CRC-checked commit, only when it changed),
starts the episode, feeds the controller's watchdog, and watches the stream of STEPs: each observation is
checked against the state limits, logged like a host-driven run's, and the command the controller wrote is
compared with what the bundle's onnxruntime graph and the host's safety layer give for the same observation
(``parity``: the largest difference and the steps over 1e-5). The episode's return comes from the
controller's EPISODE_END, whose parameter CRC must be the one uploaded. ES-MAML's operator (``OperatorPlan``)
runs unchanged on the host: one episode per parameter vector, returns in, adapted parameters out.

Failures end the run safely (``RunStoppedError``): a lost link, the controller's watchdog or motor bus, a
state limit (the host sends SAFE_STOP first). There is no simulated fallback in this mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from metactl.deploy import protocol2 as p2
from metactl.deploy.c_export import params_crc, policy_id
from metactl.deploy.controller_link import ControllerLink
from metactl.deploy.errors import BundleError
from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.safety import SafetyLayer, SafetyStopError
from metactl.deploy.serial_robot import RobotFaultError
from metactl.deploy.session import Controller, RunStoppedError
from metactl.deploy.transport import LinkLostError

log = logging.getLogger(__name__)
Logger = Callable[[str, dict[str, Any], int], None]
PARITY_TOL = 1e-5
"""A controller command further than this from the host's onnxruntime command counts as a mismatch."""


class ControllerHealth:
    """Per-run figures of the controller link: parity of its commands, uploads, steps (``summary()``)."""

    def __init__(self) -> None:
        self.steps = 0
        self.max_abs_diff = 0.0
        self.mismatches = 0
        self.episode_seconds: list[float] = []

    def compare(self, want: np.ndarray, got: np.ndarray) -> None:
        diff = np.abs(np.asarray(want, dtype=np.float64) - np.asarray(got, dtype=np.float64))
        same_nan = np.isnan(want) == np.isnan(got)
        worst = float(np.nanmax(diff, initial=0.0)) if same_nan.all() else float("inf")
        self.steps += 1
        self.max_abs_diff = max(self.max_abs_diff, worst)
        self.mismatches += worst > PARITY_TOL

    def summary(self) -> dict[str, Any]:
        mean_s = float(np.mean(self.episode_seconds)) if self.episode_seconds else 0.0
        return {
            "paced_by": "controller",
            "steps": self.steps,
            "parity_max_abs_diff": self.max_abs_diff,
            "parity_mismatches": self.mismatches,
            "parity_tolerance": PARITY_TOL,
            "episode_seconds_mean": mean_s,
        }


class ControllerSession:
    """The controller of ``config`` running ``bundle``'s policy; the ``RobotSession`` interface the runtime's
    episode runner and report use. ``time_scale``: 1 paces at the controller's control period, 0 runs its
    ticks back to back (only for a plant that steps once per motor write, i.e. emulation)."""

    def __init__(
        self,
        config: HardwareConfig,
        *,
        bundle: Any,
        task: int | Mapping[str, Any] | None = None,
        port: str | None = None,
        log_fn: Logger | None = None,
        time_scale: float = 1.0,
        idle_fn: Callable[[float], None] | None = None,
    ):
        if time_scale not in (0, 1):
            raise ValueError(f"policy_on = 'controller': the controller paces itself; time_scale must be 1 (its "
                             f"control period) or 0 (unpaced, emulated plants only), got {time_scale}")  # fmt: skip
        if not hasattr(bundle.meta, "spec"):
            raise BundleError(f"bundle {bundle.directory} is not a policy bundle; only policies run on a controller")
        if task is not None:
            log.warning("task %r ignored: the controller's robot (or its plant) defines the task", task)
        self.config, self.bundle = config, bundle
        self._log = log_fn or (lambda topic, record, t_ns=None: None)
        self._t0_ns, self._steps_done, self._simulated_time = time.time_ns(), 0, time_scale == 0
        self.failed_over = False  # no simulated fallback in this mode
        self.safety = SafetyLayer(config, sink=self.log_fn)  # state limits on the stream
        self._expected = SafetyLayer(config)  # what the controller's safety layer should do with the bundle's action
        self.timer = ControllerHealth()
        self.flags = p2.START_STREAM | (p2.START_UNPACED if time_scale == 0 else 0)
        self.events: list[dict[str, Any]] = []
        self.missed_steps = 0
        self._idle_fn = idle_fn
        self._index = 0
        self._faults_seen = 0
        self._observations: list[np.ndarray] | None = None
        self.link = ControllerLink(config, port)
        try:
            meta = bundle.meta
            self.link.check_policy(meta.num_params, policy_id(meta.spec, meta.normalizer), bundle.directory)
        except BaseException:
            self.link.close()
            raise
        self._event("/link", {"event": "open", "link": self.link.describe()})

    def log_fn(self, topic: str, record: dict[str, Any]) -> None:
        """Log ``record`` stamped with wall time, or with the controller's own time on an unpaced (emulated) run."""
        if self._simulated_time:
            self._log(topic, record, self._t0_ns + round(self._steps_done * self.config.control.period_s * 1e9))
        else:
            self._log(topic, record, time.time_ns())

    def __enter__(self) -> ControllerSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None  # type: ignore[assignment]

    def episode(
        self, controller: Controller, seed: int, steps: int, observations: list[np.ndarray] | None = None
    ) -> tuple[float, int]:
        """(return, length) of one episode run by the controller with ``controller.params``; its streamed
        observations are appended to ``observations`` if given."""
        self._observations = observations
        params = getattr(controller, "params", None)
        params = np.asarray(self.bundle.params if params is None else params, dtype=np.float64)
        index = self._index
        self._index += 1
        try:
            uploaded = self.link.upload(params)
            if uploaded:
                self.log_fn("/params", {"episode": index, "crc": self.link.params_crc, "count": params.size})
            self.safety.reset()
            self._expected.reset()
            t0 = time.perf_counter()
            end = self.link.episode(seed, steps, self.flags, lambda s: self._on_step(index, s, params))
            self.timer.episode_seconds.append(time.perf_counter() - t0)
            self._log_faults()
            if end.status in (p2.EndStatus.WATCHDOG, p2.EndStatus.BUS, p2.EndStatus.REFUSED):
                last = self.link.faults[-1][2] if self.link.faults else "no fault message received"
                raise RobotFaultError(f"the controller ended the episode: {p2.EndStatus(end.status).name} ({last})")
            if end.params_crc != params_crc(params):
                raise RobotFaultError(f"the controller ran parameters with CRC {end.params_crc:08x}, not the "
                                      f"{params_crc(params):08x} uploaded")  # fmt: skip
            self.log_fn("/timing", {"episode": index, "steps": end.steps, "controller_status": end.status})
            return float(end.episode_return), int(end.steps)
        except (LinkLostError, RobotFaultError, SafetyStopError) as e:
            self._stop(e)
        finally:
            if self._idle_fn is not None:
                self._idle_fn(float("inf"))

    def _on_step(self, index: int, step: p2.Step, params: np.ndarray) -> None:
        obs = step.obs.astype(np.float64)
        self._steps_done += 1
        if self._observations is not None:
            self._observations.append(obs)
        sent = step.action.astype(np.float64)
        want = self._expected.command(self.bundle.act(obs, params))
        self.timer.compare(want, sent)
        self.log_fn("/state", {"episode": index, "step": step.step, "t": step.step * self.config.control.period_s,
                               "obs": obs, "reward": step.reward})  # fmt: skip
        self.log_fn("/command", {"episode": index, "step": step.step, "policy": want, "sent": sent})
        self.safety.check_state(obs)

    def _stop(self, error: Exception) -> None:
        confirmed = self.link.safe_stop()
        kind = {LinkLostError: "link_lost", RobotFaultError: "robot_fault"}.get(type(error), "safety_stop")
        self._log_faults()
        self._event("/fault", {"source": "runtime", "code": kind, "detail": str(error),
                               "safe_stop_confirmed": confirmed})  # fmt: skip
        raise RunStoppedError(kind, f"{error}; the controller was safe-stopped and the run ended") from None

    def link_counters(self) -> dict[str, int]:
        """The serial link's counters (see ``LinkCounters``)."""
        return self.link.counters()

    def controller_status(self) -> dict[str, Any]:
        """The controller's own counters (STATUS_REPORT) and the host's view of the link."""
        try:
            report = self.link.status()
        except LinkLostError as e:
            return {"status_error": str(e)}
        return {"episodes": report.episodes, "watchdog_trips": report.watchdog_trips,
                "params_applied": report.params_applied, "bad_frames": report.bad_frames,
                "stack_bytes": report.stack_bytes, "tick_overruns": report.overruns,
                "uploads": vars(self.link.uploads)}  # fmt: skip

    def _log_faults(self) -> None:
        for t, code, message in self.link.faults[self._faults_seen :]:
            self._event("/fault", {"source": "robot", "code": code, "detail": message, "t": t})
        self._faults_seen = len(self.link.faults)

    def _event(self, topic: str, record: dict[str, Any]) -> None:
        self.events.append({"topic": topic, **record})
        self.log_fn(topic, record)
